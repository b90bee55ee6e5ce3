"""Inference backends for the depth, pose and feature networks, chosen by one setting.

    nets, description = make_networks(loaded, backend="auto", precision="auto")
    depth = nets.depth(x); T = nets.relative_pose(x, prev_x, -1); feats = nets.feature_net(x)

Every backend takes and returns float32 torch tensors on the model's device (see
networks.InferenceNetworks), so the LM refinement in torch consumes them unchanged. OpenVINO and
ONNX Runtime are optional: they are imported only when a backend that needs them is built, and a
backend that is missing, fails to compile or fails its start-up parity check against torch fp32
is skipped with a log line, ending at torch fp32, which always works.

`auto` (measured on a 2-core Xeon with AMX, docs/backends.md):
  CPU with native bf16 (avx512_bf16 or amx_bf16):  openvino bf16 -> torch bf16 -> torch fp32
  other CPUs:                                      openvino fp32 -> onnxruntime fp32 -> torch fp32
  CUDA:  onnxruntime fp16 on TensorRT (when ORT has that provider) -> torch fp16 -> torch fp32
An explicit precision replaces the one in these chains; an explicit backend tries that backend at
the precision asked for (auto: its best one here), then that backend at fp32, then torch fp32.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch

from ..errors import InputError
from ..export import export_graphs
from ..loaded_model import LoadedModel, network_size
from . import onnxruntime_nets, openvino_nets
from .graph_nets import GraphNetworks
from .hardware import native_bf16
from .networks import BackendUnavailable, InferenceNetworks
from .parity import beyond_tolerance, max_abs_diffs, outputs
from .torch_nets import TorchNetworks

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

__all__ = ["BACKENDS", "PRECISIONS", "BackendUnavailable", "InferenceNetworks", "make_networks", "plan"]


def _tensorrt_available() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "TensorrtExecutionProvider" in onnxruntime.get_available_providers()


def best_precision(backend: str, device: torch.device) -> str:
    """The precision `auto` gives `backend` on `device` (see the module docstring)."""
    if device.type == "cuda":
        return "fp16" if backend == "torch" or (backend == "onnxruntime" and _tensorrt_available()) else "fp32"
    return "bf16" if backend in ("torch", "openvino") and native_bf16() else "fp32"


def plan(backend: str, precision: str, device: torch.device) -> list[tuple[str, str]]:
    """(backend, precision) pairs to try in order; the last is always ("torch", "fp32")."""
    if backend not in BACKENDS:
        raise InputError(f"backend '{backend}' is not one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise InputError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if backend == "auto":
        if device.type == "cuda":
            order = (["onnxruntime"] if _tensorrt_available() else []) + ["torch"]
        elif (precision if precision != "auto" else best_precision("torch", device)) == "fp32":
            # At fp32 ONNX Runtime beat torch; torch bf16 beats ONNX Runtime fp32 (docs/backends.md).
            order = ["openvino", "onnxruntime", "torch"]
        else:
            order = ["openvino", "torch"]
        steps = [(b, precision if precision != "auto" else best_precision(b, device)) for b in order]
    else:
        steps = [(backend, precision if precision != "auto" else best_precision(backend, device)), (backend, "fp32")]
    steps.append(("torch", "fp32"))
    return list(dict.fromkeys(steps))


def default_cache_dir() -> Path:
    """Where compiled engines are kept (TensorRT): $XDG_CACHE_HOME/sa4depth or ~/.cache/sa4depth."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sa4depth"


def _build(loaded: LoadedModel, backend: str, precision: str, device: torch.device, size: tuple[int, int],
           threads: int, graphs, cache_dir: Path) -> InferenceNetworks:
    """One backend's networks; `graphs()` gives the ONNX graphs (exported once, on first use)."""
    if backend == "torch":
        return TorchNetworks(loaded, *size, device, precision)
    if backend == "openvino":
        if device.type != "cpu":
            raise BackendUnavailable(f"openvino runs on the CPU here, the model is on {device}")
        runners, description = openvino_nets.compile_graphs(graphs, precision, threads)
    else:
        runners, description = onnxruntime_nets.compile_graphs(graphs, precision, threads, device, cache_dir)
    return GraphNetworks(loaded, *size, device, runners, backend, precision, description)


def make_networks(loaded: LoadedModel, backend: str = "auto", precision: str = "auto",
                  device: str | torch.device | None = None, height: int = 0, width: int = 0, threads: int = 0,
                  verify: bool = True, fallback: bool = True, onnx_dir: str | Path | None = None,
                  cache_dir: str | Path | None = None) -> tuple[InferenceNetworks, str]:
    """Depth, pose and feature networks of `loaded` on the fastest backend that works here.

    Building for a new model (hot swap, a deployment of online learning) is this same call; the
    networks hold no state between frames. Conversion happens in memory from the torch model:
    at 192x640 the ONNX export takes about 2 s and compiling it under 1 s on 2 cores.

    Args:
        loaded: the torch model (load_model / load_checked_model).
        backend: auto | torch | openvino | onnxruntime; precision: auto | fp32 | bf16 | fp16.
        device: where inputs come from and outputs go (default: the model's device).
        height, width: network input size (0: the model's own); multiples of 32, at least 64.
        threads: threads of the OpenVINO / ONNX Runtime graphs (0: torch.get_num_threads()).
        verify: run each candidate once on fixed frames and reject it when its outputs are not
            within parity.TOLERANCES of torch fp32 (about one extra torch pass at start-up).
        fallback: False raises BackendUnavailable instead of trying the next candidate.
        onnx_dir: read depth/pose/features.onnx exported by sa4depth-export for exactly this model
            and size instead of exporting (verify still checks them against the torch model).
        cache_dir: engine cache (default default_cache_dir()).
    Returns:
        (networks, description): e.g. "openvino bf16 (AMX)"; after a fallback the description
        also says what was tried and why it was not used.
    Raises:
        InputError for an unknown backend or precision or a bad size; BackendUnavailable only
        with fallback=False.
    """
    device = torch.device(device) if device is not None else next(loaded.model.parameters()).device
    size = network_size(loaded, height, width)
    steps = plan(backend, precision, device)
    threads = int(threads) or torch.get_num_threads()
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    memo = {}

    def graphs() -> dict[str, bytes]:
        if "graphs" not in memo:
            t0 = time.perf_counter()
            if onnx_dir:
                memo["graphs"] = {n: (Path(onnx_dir) / f"{n}.onnx").read_bytes() for n in ("depth", "pose", "features")}
            else:
                memo["graphs"] = export_graphs(loaded, *size)
            log.info("ONNX graphs of model %s at %dx%d ready in %.1f s", loaded.model_id, size[1], size[0],
                     time.perf_counter() - t0)
        return memo["graphs"]

    def reference() -> dict:
        if "reference" not in memo:
            memo["reference"] = outputs(TorchNetworks(loaded, *size, device))
        return memo["reference"]

    failures = []
    for b, p in steps:
        t0 = time.perf_counter()
        try:
            nets = _build(loaded, b, p, device, size, threads, graphs, cache)
            if verify and (b, p) != ("torch", "fp32"):
                over = beyond_tolerance(max_abs_diffs(reference(), outputs(nets)), p)
                if over:
                    raise BackendUnavailable(f"outputs differ from torch fp32 beyond tolerance ({over})")
        except Exception as exc:  # noqa: BLE001 - any failure of an optional runtime must leave torch running
            if fallback and (b, p) != steps[-1]:
                reason = " ".join(str(exc).split())[:300]  # runtimes' messages span lines
                failures.append(f"{b} {p}: {reason}")
                log.warning("inference backend %s %s not used: %s", b, p, reason)
                continue
            if isinstance(exc, (BackendUnavailable, InputError)):
                raise
            raise BackendUnavailable(f"{b} {p}: {type(exc).__name__}: {exc}") from exc
        log.info("inference backend %s built in %.1f s", nets.description, time.perf_counter() - t0)
        break
    if failures:
        nets.description = f"{nets.description}; not used: {'; '.join(failures)}"
    log.info("inference networks: %s", nets.description)
    return nets, nets.description
