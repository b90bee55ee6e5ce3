"""OpenVINO on the CPU: the ONNX graphs compiled with an inference-precision hint (f32, or bf16
on CPUs with AMX / AVX512-BF16), one infer request per graph."""
from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from .hardware import native_bf16
from .networks import BackendUnavailable

_HINT = {"fp32": "f32", "bf16": "bf16"}
_CORE_LOCK = threading.Lock()
_CORE = []  # the process's one ov.Core, made on first use


def _shared_core(ov):
    """The one OpenVINO Core of this process, never released.

    Each Core's CPU plugin installs an alternate signal stack of its own on the thread that loads
    it and, when that Core goes, puts back the stack it found and unmaps its own. Two Cores that
    end in the order they began (a model hot swap: the old networks go after the new ones exist)
    leave the thread on an unmapped signal stack, and the next Python signal handler there (Ctrl-C,
    SIGCHLD, faulthandler) kills the process with SIGSEGV and no message. One Core for the life of
    the process never unloads its plugin.
    """
    with _CORE_LOCK:
        if not _CORE:
            _CORE.append(ov.Core())
        return _CORE[0]


class _Request:
    """One compiled graph with its infer request; the lock serialises callers on other threads
    (a request runs one inference at a time)."""

    def __init__(self, compiled):
        self.request = compiled.create_infer_request()
        self.outputs = compiled.outputs
        self.lock = threading.Lock()

    def __call__(self, inputs: list) -> list:
        with self.lock:
            results = self.request.infer(inputs, share_inputs=True, share_outputs=False)
            return [np.asarray(results[port]) for port in self.outputs]


def compile_graphs(graphs: Callable[[], dict], precision: str, threads: int) -> tuple[dict, str]:
    """Compile the ONNX graphs {name: bytes} that graphs() gives (called once OpenVINO imports) for the CPU.

    Returns:
        ({name: runner}, description such as "openvino bf16 (AMX)").
    Raises:
        BackendUnavailable: OpenVINO is not installed, the precision is not native here, or a
            graph does not compile.
    """
    if precision not in _HINT:
        raise BackendUnavailable(f"openvino runs fp32 or bf16 on the CPU, not {precision}")
    unit = native_bf16()
    if precision == "bf16" and not unit:
        raise BackendUnavailable("this CPU has no native bf16 unit (avx512_bf16 / amx_bf16 flags): "
                                 "emulated bf16 would be slower than fp32")
    try:
        import openvino as ov
    except ImportError as exc:
        raise BackendUnavailable(f"openvino is not installed ({exc})") from exc
    core = _shared_core(ov)
    config = {"INFERENCE_PRECISION_HINT": _HINT[precision], "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_NUM_THREADS": int(threads)}
    runners = {}
    for name, graph in graphs().items():
        try:
            compiled = core.compile_model(core.read_model(graph, b""), "CPU", config)
        except RuntimeError as exc:
            raise BackendUnavailable(f"openvino could not compile the {name} graph: {str(exc).strip()[:300]}") from exc
        got = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if got != _HINT[precision]:
            raise BackendUnavailable(f"openvino compiled the {name} graph at {got}, not {precision}")
        runners[name] = _Request(compiled)
    return runners, f"openvino {precision}" + (f" ({unit})" if precision == "bf16" else "")
