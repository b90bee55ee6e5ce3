"""The command-line tools as a user calls them: exit codes, one-line errors, written files."""
import json
import shutil

import pytest
import torch

from sa4depth_core.checkpoint import save_checkpoint
from sa4depth_core.config import load_config
from sa4depth_core.eval import cli as eval_cli
from sa4depth_core.model import SA4DepthModel
from sa4depth_core.train import cli as train_cli

SMALL = ["model.height=64", "model.width=128"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = load_config(None, SMALL)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    # declared trained so that the refined path runs; the untrained case is checked separately
    save_checkpoint(path, config=cfg.to_dict(), model=SA4DepthModel(cfg).state_dict(), features_trained=True)
    return path


def _one_error_line(capsys, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for w in words:
        assert w in err[0], err[0]


def test_train_reports_malformed_calib(synth_root, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    calib = root / "sequences" / "00" / "calib.txt"
    calib.write_text(calib.read_text().replace("P2:", "P2: 1 2 3\nX2:"))
    code = train_cli.main(["--data-root", str(root), "--sequences", "00", "--out", str(tmp_path / "out"), *SMALL])
    assert code == 2
    _one_error_line(capsys, "calib.txt", "P2")


def test_train_reports_missing_data(tmp_path, capsys):
    assert train_cli.main(["--data-root", str(tmp_path / "nope"), "--sequences", "00"]) == 2
    _one_error_line(capsys, "nope")


def test_eval_rejects_foreign_checkpoint(synth_root, tmp_path, capsys):
    bad = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, bad)
    assert eval_cli.main(["depth", "--checkpoint", str(bad), "--data-root", str(synth_root), "--sequences", "01"]) == 2
    _one_error_line(capsys, "foreign.pt", "not an sa4depth checkpoint")
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    assert eval_cli.main(["depth", "--checkpoint", str(trunc), "--data-root", str(synth_root), "--sequences", "01"]) == 2
    _one_error_line(capsys, "trunc.pt")


def test_eval_depth_and_odom_on_synthetic(synth_root, checkpoint, tmp_path, capsys):
    out = tmp_path / "depth.json"
    assert eval_cli.main(["depth", "--checkpoint", str(checkpoint), "--data-root", str(synth_root),
                          "--sequences", "00,01", "--crop", "none", "--max-frames", "6", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["depth"]["num_evaluated"] == 12 and 0 < data["depth"]["metrics"]["abs_rel"] < 10
    assert set(data["scale_consistency"]["per_sequence"]) == {"kitti_odometry/00/image_2", "kitti_odometry/01/image_2"}
    out = tmp_path / "odom.json"
    assert eval_cli.main(["odom", "--checkpoint", str(checkpoint), "--data-root", str(synth_root), "--sequences", "01",
                          "--save-dir", str(tmp_path / "traj"), "--json", str(out)]) == 0
    seq = json.loads(out.read_text())["sequences"]["kitti_odometry/01/image_2"]
    assert set(seq) == {"posenet", "refined"}
    assert seq["refined"]["errors"]["num_frames"] == 8
    est = tmp_path / "traj" / "kitti_odometry_01_image_2_refined.txt"
    assert len(est.read_text().splitlines()) == 8
    assert 0 <= seq["refined"]["acceptance"] <= 1
    for mode in ("posenet", "refined"):  # one aligned top view per trajectory, next to the JSON
        assert (tmp_path / f"odom_kitti_odometry_01_image_2_{mode}.png").stat().st_size > 0
    # the written trajectory goes back through the file-mode evaluation
    assert eval_cli.main(["odom", "--gt", str(synth_root / "poses" / "01.txt"), "--est", str(est)]) == 0
    assert "t_err" in capsys.readouterr().out


def test_eval_odom_of_untrained_features_is_posenet_only(synth_root, tmp_path, capsys):
    cfg = load_config(None, SMALL)
    path = tmp_path / "plain.pt"
    save_checkpoint(path, config=cfg.to_dict(), model=SA4DepthModel(cfg).state_dict())
    out = tmp_path / "odom.json"
    assert eval_cli.main(["odom", "--checkpoint", str(path), "--data-root", str(synth_root), "--sequences", "01",
                          "--max-frames", "4", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert not data["features_trained"] and set(data["sequences"]["kitti_odometry/01/image_2"]) == {"posenet"}
    printed = capsys.readouterr().out
    assert "never trained" in printed and "PoseNet only" in printed


def test_eval_runs_the_networks_on_another_backend(synth_root, checkpoint, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "depth.json"
    assert eval_cli.main(["depth", "--checkpoint", str(checkpoint), "--data-root", str(synth_root), "--sequences", "01",
                          "--crop", "none", "--max-frames", "3", "--backend", "onnxruntime", "--json", str(out)]) == 0
    assert "networks: onnxruntime fp32" in capsys.readouterr().out
    reference = tmp_path / "torch.json"
    assert eval_cli.main(["depth", "--checkpoint", str(checkpoint), "--data-root", str(synth_root), "--sequences", "01",
                          "--crop", "none", "--max-frames", "3", "--json", str(reference)]) == 0
    a, b = (json.loads(p.read_text())["depth"]["metrics"]["abs_rel"] for p in (out, reference))
    assert a == pytest.approx(b, rel=1e-4)


def test_train_reports_weights_of_another_architecture(synth_root, tmp_path, capsys):
    """Weights whose tensors have other shapes are a CheckpointError in one line naming the file,
    not torch's list of every mismatched tensor."""
    narrow = load_config(None, SMALL + ["refine.feature_channels=8"])
    init = tmp_path / "narrow.pt"
    save_checkpoint(init, config=narrow.to_dict(), model=SA4DepthModel(narrow).state_dict())
    code = train_cli.main(["--data-root", str(synth_root), "--sequences", "00", "--out", str(tmp_path / "out"),
                           "--init", str(init), *SMALL, "refine.feature_channels=16"])
    assert code == 2
    _one_error_line(capsys, "narrow.pt", "do not fit")

