"""ONNX Runtime: the ONNX graphs on the CPU (fp32), or on CUDA through the TensorRT execution
provider (fp32/fp16, engines cached on disk) or the CUDA one (fp32), whichever is installed."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from .networks import BackendUnavailable


def providers_for(device: torch.device, precision: str, available: list[str], cache_dir: Path) -> list:
    """ONNX Runtime execution providers, most preferred first, for `device` at `precision`."""
    if device.type != "cuda":
        if precision != "fp32":
            raise BackendUnavailable(f"onnxruntime runs fp32 on the CPU, not {precision}")
        return ["CPUExecutionProvider"]
    index = {"device_id": device.index or 0}
    providers = []
    if "TensorrtExecutionProvider" in available:
        # Building an engine takes minutes on a Jetson; the cache makes that a one-time cost per
        # model, size and precision (the provider names its files by a hash of the graph). Only
        # long-standing options are set, so that older Jetson builds of ONNX Runtime accept them.
        providers.append(("TensorrtExecutionProvider", {
            **index, "trt_fp16_enable": precision == "fp16", "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache_dir / "tensorrt")}))
    elif precision != "fp32":
        raise BackendUnavailable(f"onnxruntime {precision} on CUDA needs the TensorRT execution provider "
                                 f"(available: {', '.join(available)})")
    if "CUDAExecutionProvider" in available:
        providers.append(("CUDAExecutionProvider", index))
    if not providers:
        raise BackendUnavailable(f"onnxruntime has no CUDA or TensorRT execution provider here "
                                 f"(available: {', '.join(available)})")
    return providers


def _runner(session, input_names: list[str]):
    """Runner of one session (ORT sessions may be run from several threads at once)."""
    return lambda inputs: session.run(None, dict(zip(input_names, inputs)))


def compile_graphs(graphs: Callable[[], dict], precision: str, threads: int, device: torch.device,
                   cache_dir: Path) -> tuple[dict, str]:
    """One inference session per ONNX graph {name: bytes} that graphs() gives (called once ONNX
    Runtime imports and has the provider needed).

    Returns:
        ({name: runner}, description such as "onnxruntime fp32 (CPUExecutionProvider)").
    Raises:
        BackendUnavailable: ONNX Runtime or the provider needed is missing, or a session fails.
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable(f"onnxruntime is not installed ({exc})") from exc
    providers = providers_for(torch.device(device), precision, ort.get_available_providers(), Path(cache_dir))
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    # ORT's pool otherwise spins after each run, holding the cores that the torch LM solve of the
    # same frame needs next
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: the provider fallbacks are reported below
    runners, used = {}, ""
    for name, graph in graphs().items():
        try:
            session = ort.InferenceSession(graph, options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types per provider
            raise BackendUnavailable(f"onnxruntime could not load the {name} graph: {str(exc).strip()[:300]}") from exc
        used = session.get_providers()[0]
        if torch.device(device).type == "cuda" and used == "CPUExecutionProvider":
            raise BackendUnavailable("onnxruntime could not start its CUDA/TensorRT provider (CUDA libraries missing?)")
        names = [i.name for i in session.get_inputs()]
        runners[name] = _runner(session, names)
    return runners, f"onnxruntime {precision} ({used})"
