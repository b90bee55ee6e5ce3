"""sa4depth-export: depth, pose and feature networks of a checkpoint or a Monodepth2 folder to ONNX
files with static shapes, tensor names and metadata, folded constants, and a parity check
against torch printed at export time; the export never disturbs the model it reads."""
import contextlib
import importlib.util
import io
import json

import pytest
import torch

from sa4depth_core import export, export_cli
from sa4depth_core.backends import make_networks
from sa4depth_core.checkpoint import save_checkpoint
from sa4depth_core.config import load_config
from sa4depth_core.loaded_model import load_model
from sa4depth_core.model import SA4DepthModel
from sa4depth_core.networks.monodepth2_io import save_monodepth2_folder

onnx = pytest.importorskip("onnx")
H, W = 64, 128
RUNTIMES = [r for r in ("onnxruntime", "openvino") if importlib.util.find_spec(r) is not None]


def _model(seed: int) -> tuple:
    cfg = load_config(None, [f"model.height={H}", f"model.width={W}"])
    torch.manual_seed(seed)
    return cfg, SA4DepthModel(cfg)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(checkpoint path, output folder, printed text) of one CLI run on a tiny checkpoint."""
    tmp = tmp_path_factory.mktemp("export")
    cfg, model = _model(0)
    save_checkpoint(tmp / "tiny.pt", config=cfg.to_dict(), model=model.state_dict())
    out = io.StringIO()  # a module-scoped fixture cannot use capsys
    with contextlib.redirect_stdout(out):
        code = export_cli.main(["--checkpoint", str(tmp / "tiny.pt"), "--out", str(tmp / "onnx")])
    assert code == 0
    return tmp / "tiny.pt", tmp / "onnx", out.getvalue()


def test_graphs_have_static_shapes_names_and_metadata(exported):
    ckpt, out, _ = exported
    strides = load_config(None, []).refine.strides
    want = {
        "depth": ({"image": [1, 3, H, W]}, {"disparity": [1, 1, H, W], "depth": [1, 1, H, W]}),
        "pose": ({"image_earlier": [1, 3, H, W], "image_later": [1, 3, H, W]},
                 {"axisangle": [1, 1, 3], "translation": [1, 1, 3]}),
        "features": ({"image": [1, 3, H, W]},
                     {f"{k}_s{s}": [1, 32 if k == "features" else 1, H // s, W // s]
                      for s in strides for k in ("features", "confidence")}),
    }
    for name, (inputs, outputs) in want.items():
        proto = onnx.load(out / f"{name}.onnx")
        onnx.checker.check_model(proto)

        def shapes(values):
            return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}
        assert shapes(proto.graph.input) == inputs and shapes(proto.graph.output) == outputs, name
        assert [(o.domain, o.version) for o in proto.opset_import] == [("", export.OPSET)]
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["model_id"] == load_model(ckpt).model_id and meta["source"] == str(ckpt)
        assert (meta["height"], meta["width"], meta["min_depth"], meta["max_depth"]) == (str(H), str(W), "0.1", "100.0")
        ops = {n.op_type for n in proto.graph.node}
        if "onnxruntime" in RUNTIMES:  # folded: no shape arithmetic is left for TensorRT
            assert not ops & {"Shape", "ConstantOfShape", "Identity"}, (name, ops)


def test_export_prints_and_saves_parity_for_each_installed_runtime(exported):
    _, out, printed = exported
    if not RUNTIMES:
        pytest.skip("no ONNX runtime installed")
    report = json.loads((out / "export.json").read_text())
    assert sorted(d.split()[0] for d in report["parity"]) == sorted(RUNTIMES)
    for description, diffs in report["parity"].items():
        assert f"parity {description} vs torch fp32 (max abs diff): disparity" in printed
        assert set(diffs) == {"disparity", "depth", "pose", "features", "confidence"}
        assert max(diffs.values()) < 1e-4, (description, diffs)


def test_exported_files_load_as_a_backend_only_for_their_own_model(exported):
    ckpt, out, _ = exported
    if "onnxruntime" not in RUNTIMES:
        pytest.skip("onnxruntime is not installed")
    nets, description = make_networks(load_model(ckpt), "onnxruntime", "fp32", onnx_dir=out)
    assert description == "onnxruntime fp32 (CPUExecutionProvider)"
    cfg, other = _model(1)  # same architecture, other weights: the start-up check refuses the files
    stranger = load_model(None, "cpu", cfg)
    stranger.model.load_state_dict(other.state_dict())
    nets, description = make_networks(stranger, "onnxruntime", "fp32", onnx_dir=out)
    assert nets.backend == "torch" and "outputs differ from torch fp32 beyond tolerance" in description


def test_export_leaves_the_serving_model_untouched():
    """torch's exporter flips the modules it is given to eval and back to their previous mode; a
    wrapper left in training mode would switch the caller's model to training (and its batch-norm
    statistics would drift on the next frames)."""
    cfg, model = _model(0)
    loaded = load_model(None, "cpu", cfg)
    loaded.model.load_state_dict(model.state_dict())
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    export.export_graphs(loaded)
    assert not any(m.training for m in loaded.model.modules())
    with torch.inference_mode():
        loaded.model.depth(torch.rand(1, 3, H, W))
    assert all(torch.equal(v, before[k]) for k, v in loaded.model.state_dict().items())


def test_export_of_a_monodepth2_folder(tmp_path, capsys):
    _, model = _model(3)
    save_monodepth2_folder(tmp_path / "md2", model.depth_encoder, model.depth_decoder, height=H, width=W,
                           pose_encoder=model.pose_net.encoder, pose_decoder=model.pose_net.decoder)
    assert export_cli.main(["--checkpoint", str(tmp_path / "md2"), "--out", str(tmp_path / "onnx")]) == 0
    meta = {p.key: p.value for p in onnx.load(tmp_path / "onnx" / "depth.onnx").metadata_props}
    assert meta["model_id"].startswith("monodepth2:") and (meta["height"], meta["width"]) == (str(H), str(W))
    assert "wrote " in capsys.readouterr().out


def test_bad_inputs_give_one_clear_line(tmp_path, capsys, exported):
    ckpt, _, _ = exported
    assert export_cli.main(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert export_cli.main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "o"), "--height", "100"]) == 2
    assert "must be multiples of 32" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
