"""Inference backends: each available backend and precision agrees with torch fp32 within the
documented tolerances, `auto` follows its rule and falls back to torch (with the reason said)
when a runtime is missing, fails to compile or gives wrong outputs, and a new model is one call."""
import importlib.util
import logging
import subprocess
import sys

import pytest
import torch

from sa4depth_core import backends
from sa4depth_core.backends import BackendUnavailable, make_networks, plan
from sa4depth_core.backends import openvino_nets, onnxruntime_nets, torch_nets
from sa4depth_core.backends.hardware import native_bf16
from sa4depth_core.backends.parity import TOLERANCES, beyond_tolerance, compare, outputs, probe_images
from sa4depth_core.config import load_config
from sa4depth_core.errors import InputError
from sa4depth_core.loaded_model import load_model

CPU = torch.device("cpu")
H, W = 64, 128
HAVE = {"torch": True, "openvino": importlib.util.find_spec("openvino") is not None,
        "onnxruntime": importlib.util.find_spec("onnxruntime") is not None}
BF16 = bool(native_bf16())
COMBOS = [("torch", "bf16"), ("openvino", "fp32"), ("openvino", "bf16"), ("onnxruntime", "fp32")]


def _tiny(seed: int):
    torch.manual_seed(seed)
    return load_model(None, CPU, load_config(None, [f"model.height={H}", f"model.width={W}"]))


@pytest.fixture(scope="module")
def tiny():
    return _tiny(0)


@pytest.fixture(scope="module")
def reference(tiny):
    return make_networks(tiny, "torch", "fp32")[0]


def _skip_unless_runs(backend, precision):
    if not HAVE[backend]:
        pytest.skip(f"{backend} is not installed")
    if precision == "bf16" and not BF16:
        pytest.skip("this CPU has no native bf16 unit")


@pytest.mark.parametrize("backend, precision", COMBOS)
def test_backend_matches_torch_fp32_within_tolerance(tiny, reference, backend, precision):
    _skip_unless_runs(backend, precision)
    nets, description = make_networks(tiny, backend, precision, verify=False, fallback=False)
    assert (nets.backend, nets.precision) == (backend, precision) and description == nets.description
    diffs = compare(reference, nets)
    assert beyond_tolerance(diffs, precision) == "", diffs
    # every output is float32 on the model's device with torch's shapes
    got, want = outputs(nets), outputs(reference)
    for key in want:
        for g, w in zip(*((v if isinstance(v, list) else [v]) for v in (got[key], want[key]))):
            assert g.dtype == torch.float32 and g.shape == w.shape, key
    target, source = probe_images(H, W, CPU)
    forward = nets.relative_pose(target, source, 1)
    assert (forward - tiny.model.relative_pose(target, source, 1)).abs().max() <= TOLERANCES[precision]["pose"]


def test_torch_fp32_networks_are_the_model_itself(tiny, reference):
    target, source = probe_images(H, W, CPU)
    with torch.inference_mode():
        assert torch.equal(reference.depth(target), tiny.model.depth(target))
        assert torch.equal(reference.relative_pose(target, source, -1), tiny.model.relative_pose(target, source, -1))
        for (f, c), (f0, c0) in zip(reference.feature_net(target), tiny.model.feature_net(target)):
            assert torch.equal(f, f0) and torch.equal(c, c0)
    assert reference.description == "torch fp32 (cpu)"


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_graph_backend_batches_sizes_and_owns_its_outputs(tiny, reference, backend):
    _skip_unless_runs(backend, "fp32")
    nets, _ = make_networks(tiny, backend, "fp32", verify=False, fallback=False)
    a, b = probe_images(H, W, CPU)
    first = [t.clone() for level in nets.feature_net(a) for t in level]
    kept = [t for level in nets.feature_net(a) for t in level]
    nets.feature_net(b)  # a runtime that hands out its reused buffers would overwrite `kept`
    assert all(torch.equal(x, y) for x, y in zip(first, kept))
    batch = torch.cat([a, b])
    assert torch.allclose(nets.depth(batch), torch.cat([nets.depth(a), nets.depth(b)]))
    assert torch.allclose(nets.relative_pose(batch, batch.flip(0), -1),
                          reference.relative_pose(batch, batch.flip(0), -1), atol=TOLERANCES["fp32"]["pose"])
    with pytest.raises(InputError, match="built for \\(B,3,64,128\\)"):
        nets.depth(torch.rand(1, 3, 96, 128))
    with pytest.raises(InputError, match="non-zero"):
        nets.relative_pose(a, b, 0)


def test_plan_follows_the_documented_rule(monkeypatch):
    monkeypatch.setattr(backends, "native_bf16", lambda: "AMX")
    assert plan("auto", "auto", CPU) == [("openvino", "bf16"), ("torch", "bf16"), ("torch", "fp32")]
    assert plan("openvino", "auto", CPU) == [("openvino", "bf16"), ("openvino", "fp32"), ("torch", "fp32")]
    assert plan("onnxruntime", "auto", CPU) == [("onnxruntime", "fp32"), ("torch", "fp32")]
    monkeypatch.setattr(backends, "native_bf16", lambda: "")
    assert plan("auto", "auto", CPU) == [("openvino", "fp32"), ("onnxruntime", "fp32"), ("torch", "fp32")]
    assert plan("torch", "bf16", CPU) == [("torch", "bf16"), ("torch", "fp32")]
    assert plan("auto", "fp16", CPU)[-1] == ("torch", "fp32")
    cuda = torch.device("cuda:1")
    assert plan("auto", "auto", cuda) == [("torch", "fp16"), ("torch", "fp32")]
    monkeypatch.setattr(backends, "_tensorrt_available", lambda: True)
    assert plan("auto", "auto", cuda) == [("onnxruntime", "fp16"), ("torch", "fp16"), ("torch", "fp32")]
    with pytest.raises(InputError, match="backend 'tensorrt' is not one of"):
        plan("tensorrt", "auto", CPU)
    with pytest.raises(InputError, match="precision 'int8' is not one of"):
        plan("auto", "int8", CPU)


def test_onnxruntime_providers_for_cuda(tmp_path):
    """The GPU path cannot run here; its provider choice is a pure function and is checked."""
    cuda, every = torch.device("cuda:1"), ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    (trt, trt_options), cuda_ep = onnxruntime_nets.providers_for(cuda, "fp16", every, tmp_path)
    assert trt == "TensorrtExecutionProvider" and cuda_ep == ("CUDAExecutionProvider", {"device_id": 1})
    assert trt_options["trt_fp16_enable"] and trt_options["trt_engine_cache_path"] == str(tmp_path / "tensorrt")
    assert onnxruntime_nets.providers_for(cuda, "fp32", every[1:], tmp_path) == [cuda_ep]
    with pytest.raises(BackendUnavailable, match="fp16 on CUDA needs the TensorRT execution provider"):
        onnxruntime_nets.providers_for(cuda, "fp16", every[1:], tmp_path)
    with pytest.raises(BackendUnavailable, match="no CUDA or TensorRT execution provider"):
        onnxruntime_nets.providers_for(cuda, "fp32", every[2:], tmp_path)
    with pytest.raises(BackendUnavailable, match="runs fp32 on the CPU, not bf16"):
        onnxruntime_nets.providers_for(CPU, "bf16", every, tmp_path)


def test_auto_falls_back_to_torch_saying_why(tiny, monkeypatch, caplog):
    """openvino missing, onnxruntime failing to compile: torch fp32 runs and both reasons are told."""
    monkeypatch.setattr(backends, "native_bf16", lambda: "")
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError

    def broken(*args, **kwargs):
        raise RuntimeError("simulated compiler crash")
    monkeypatch.setattr(onnxruntime_nets, "compile_graphs", broken)
    with caplog.at_level(logging.WARNING, logger="sa4depth_core.backends"):
        nets, description = make_networks(tiny, "auto", "auto")
    assert (nets.backend, nets.precision) == ("torch", "fp32")
    assert description.startswith("torch fp32 (cpu); not used: ")
    assert "openvino fp32: openvino is not installed" in description
    assert "onnxruntime fp32: simulated compiler crash" in description
    assert "inference backend openvino fp32 not used: openvino is not installed" in caplog.text
    with pytest.raises(BackendUnavailable, match="openvino is not installed"):
        make_networks(tiny, "openvino", "fp32", fallback=False)


def test_a_backend_with_wrong_outputs_is_rejected_at_start_up(tiny, monkeypatch):
    _skip_unless_runs("onnxruntime", "fp32")
    real = onnxruntime_nets.compile_graphs

    def off_by_a_little(*args):
        runners, description = real(*args)
        depth = runners["depth"]
        runners["depth"] = lambda inputs: [o + 0.05 for o in depth(inputs)]
        return runners, description
    monkeypatch.setattr(onnxruntime_nets, "compile_graphs", off_by_a_little)
    nets, description = make_networks(tiny, "onnxruntime", "fp32")
    assert nets.backend == "torch"
    assert "outputs differ from torch fp32 beyond tolerance (disparity 5.0e-02 > 1e-04)" in description


def test_precisions_without_native_units_fall_back(tiny, monkeypatch):
    monkeypatch.setattr(torch_nets, "native_bf16", lambda: "")
    monkeypatch.setattr(openvino_nets, "native_bf16", lambda: "")
    nets, description = make_networks(tiny, "torch", "bf16")
    assert nets.precision == "fp32" and "no native bf16 unit" in description
    nets, description = make_networks(tiny, "torch", "fp16")
    assert nets.precision == "fp32" and "fp16 is offered on CUDA devices only" in description
    if HAVE["openvino"]:
        nets, description = make_networks(tiny, "openvino", "bf16")
        assert description.startswith("openvino fp32; not used: openvino bf16: this CPU has no native bf16 unit")


def test_description_names_the_bf16_unit(tiny):
    _skip_unless_runs("openvino", "bf16")
    nets, description = make_networks(tiny, "auto", "auto")
    assert description == f"openvino bf16 ({native_bf16()})"
    nets, description = make_networks(tiny, "torch", "bf16")
    assert description == f"torch bf16 autocast + channels_last ({native_bf16()})"


def test_reduced_precision_leaves_the_callers_model_alone(tiny):
    _skip_unless_runs("torch", "bf16")
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    nets, _ = make_networks(tiny, "torch", "bf16", verify=False)
    nets.depth(probe_images(H, W, CPU)[0])
    conv = tiny.model.depth_encoder.encoder.conv1.weight
    assert conv.is_contiguous() and conv.dtype == torch.float32 and not tiny.model.training
    assert all(torch.equal(v, before[k]) for k, v in tiny.model.state_dict().items())


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime", "torch"])
def test_hot_swap_builds_networks_for_the_new_model(backend):
    _skip_unless_runs(backend, "fp32")
    first, second = _tiny(1), _tiny(2)
    image = probe_images(H, W, CPU)[0]
    depths = []
    for loaded in (first, second):
        nets, _ = make_networks(loaded, backend, "fp32", fallback=False)
        with torch.inference_mode():
            want = loaded.model.depth(image)
        got = nets.depth(image)
        assert (got - want).abs().max() < 1e-3 and nets.model_id == loaded.model_id
        depths.append(got)
    assert (depths[0] - depths[1]).abs().max() > 1e-2  # the second call did not reuse the first model


_HOT_SWAPS_THEN_A_SIGNAL = """
import faulthandler, gc, os, signal, torch
from sa4depth_core.backends import make_networks
from sa4depth_core.config import load_config
from sa4depth_core.loaded_model import load_model
faulthandler.enable()  # pytest has it on: its signal stack is the one a plugin can replace
config = load_config(None, ["model.height=64", "model.width=128"])
old = make_networks(load_model(None, torch.device("cpu"), config), "openvino", "fp32", fallback=False)
new = make_networks(load_model(None, torch.device("cpu"), config), "openvino", "fp32", fallback=False)
del old  # a hot swap: the old networks go first, then the new ones
gc.collect()
del new
gc.collect()
handled = []
signal.signal(signal.SIGUSR1, lambda *_: handled.append(1))
os.kill(os.getpid(), signal.SIGUSR1)
print("handled", len(handled))
"""


def test_openvino_hot_swaps_leave_python_signal_handlers_working():
    """Before one Core was kept per process, this ended in SIGSEGV without a word: see _shared_core."""
    _skip_unless_runs("openvino", "fp32")
    done = subprocess.run([sys.executable, "-c", _HOT_SWAPS_THEN_A_SIGNAL], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "handled 1" in done.stdout, (done.returncode, done.stderr[-2000:])


def test_importing_the_core_loads_no_optional_runtime():
    code = ("import sys, sa4depth_core.backends, sa4depth_core.export, sa4depth_core.infer; "
            "print(sorted(m for m in ('onnx', 'onnxruntime', 'openvino') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
