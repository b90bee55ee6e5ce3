"""Hostile command lines (issue 27): bad files, full disks, mount points and bad settings each give
one line on stderr and exit code 2, never a traceback, and leave no partial output behind."""
import errno
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rosbags.rosbag2 import Writer

from sa4depth_core.checkpoint import save_checkpoint
from sa4depth_core.config import load_config
from sa4depth_core.data import kitti2bag
from sa4depth_core.eval import cli as eval_cli
from sa4depth_core.eval import cli_odometry
from sa4depth_core.model import SA4DepthModel
from sa4depth_core.train import cli as train_cli

SMALL = ["model.height=64", "model.width=128"]


def _one_error_line(capsys, *words):
    """The captured stderr is one line holding every word; returns it."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for w in words:
        assert w in err[0], err[0]
    return err[0]


def _leftovers(directory):
    """Hidden staging directories a conversion left in `directory`."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".partial"))


# ------------------------------------------------------------------------------------------------
# F5: sa4depth-kitti2bag on a full disk or a mount point


def _convert(synth_root, out, *extra):
    return kitti2bag.main([str(synth_root / "sequences" / "00"), str(out), "--max-frames", "3", "--quiet", *extra])


def _fill_disk_after(monkeypatch, writes, error):
    """Make the bag writer raise `error` from its `writes`-th message on, as a full disk does."""
    real = Writer.write
    count = [0]

    def write(self, *args, **kwargs):
        count[0] += 1
        if count[0] >= writes:
            raise error
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Writer, "write", write)


@pytest.mark.parametrize("storage, error, words", [
    ("sqlite3", sqlite3.OperationalError("database or disk is full"), "disk is full"),
    ("mcap", OSError(errno.ENOSPC, "No space left on device"), "No space left"),
])
def test_kitti2bag_on_a_full_disk_says_so_and_leaves_nothing(synth_root, tmp_path, monkeypatch, capsys,
                                                             storage, error, words):
    _fill_disk_after(monkeypatch, 4, error)
    out = tmp_path / "bag"
    assert _convert(synth_root, out, "--storage", storage) == 2
    _one_error_line(capsys, str(out), words)
    assert not out.exists() and _leftovers(tmp_path) == []


def _rename_fails(monkeypatch, failing, code):
    """os.rename raises OSError(code) when `failing(src, dst)` says so, else renames."""
    real = os.rename

    def rename(src, dst, *args, **kwargs):
        if failing(os.fspath(src), os.fspath(dst)):
            raise OSError(code, os.strerror(code), os.fspath(src))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)


def test_kitti2bag_over_a_busy_directory_keeps_it(synth_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "bag"
    assert _convert(synth_root, out) == 0
    before = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    # a mount point cannot be renamed: EBUSY when the old bag is moved aside
    _rename_fails(monkeypatch, lambda src, dst: src == str(out), errno.EBUSY)
    assert _convert(synth_root, out, "--overwrite") == 2
    _one_error_line(capsys, str(out), "busy")
    assert sorted(p.name for p in out.iterdir()) == before and _leftovers(tmp_path) == []


def test_kitti2bag_keeps_the_old_bag_when_the_new_one_cannot_take_its_place(synth_root, tmp_path, monkeypatch,
                                                                             capsys):
    out = tmp_path / "bag"
    assert _convert(synth_root, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    # the new bag cannot take the old one's place; putting the old one back still works
    _rename_fails(monkeypatch, lambda src, dst: dst == str(out) and src.endswith(".partial/bag"), errno.EXDEV)
    assert _convert(synth_root, out, "--overwrite", "--storage", "mcap") == 2
    _one_error_line(capsys, str(out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and _leftovers(tmp_path) == []


def test_kitti2bag_refuses_a_mount_point_before_converting(synth_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "mnt"
    out.mkdir()
    real = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: os.fspath(p) == str(out) or real(p))
    monkeypatch.setattr(Writer, "open", lambda self: pytest.fail("a bag was started"))
    assert _convert(synth_root, out, "--overwrite") == 2
    _one_error_line(capsys, str(out), "mount point")
    assert out.is_dir() and _leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# F6: sa4depth-eval with files that are not what they claim


@pytest.fixture
def trajectories(tmp_path):
    """{name: path}: a good KITTI ground truth, one of zero matrices, a binary file, a directory."""
    gt = np.tile(np.eye(4)[:3].reshape(1, 12), (10, 1))
    gt[:, 11] = np.arange(10.0)
    files = {"gt": tmp_path / "gt.txt", "zeros": tmp_path / "zeros.txt", "binary": tmp_path / "binary.txt",
             "dir": tmp_path / "adir"}
    np.savetxt(files["gt"], gt)
    np.savetxt(files["zeros"], np.zeros((10, 12)))
    files["binary"].write_bytes(bytes(range(256)) * 4)
    files["dir"].mkdir()
    return files


@pytest.mark.parametrize("gt, est, words", [
    ("gt", "zeros", ["zeros.txt", "line 1", "rotation"]),
    ("gt", "binary", ["binary.txt", "not a text file"]),
    ("binary", "gt", ["binary.txt", "not a text file"]),
    ("gt", "dir", ["adir", "directory"]),
])
def test_eval_odom_refuses_bad_trajectory_files(trajectories, capsys, gt, est, words):
    argv = ["odom", "--gt", str(trajectories[gt]), "--est", str(trajectories[est])]
    assert eval_cli.main(argv) == 2
    _one_error_line(capsys, *words)
    assert cli_odometry.main(argv[1:]) == 2
    _one_error_line(capsys, *words)


@pytest.mark.parametrize("option", ["--gt", "--trajectory"])
def test_eval_odom_trajectory_mode_refuses_a_binary_file(trajectories, capsys, option):
    other = "--trajectory" if option == "--gt" else "--gt"
    assert eval_cli.main(["odom", option, str(trajectories["binary"]), other, str(trajectories["gt"])]) == 2
    _one_error_line(capsys, "binary.txt", "not a text file")


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_eval_odom_refuses_a_directory_as_output(trajectories, capsys, option):
    argv = ["odom", "--gt", str(trajectories["gt"]), "--est", str(trajectories["gt"]), option, str(trajectories["dir"])]
    assert eval_cli.main(argv) == 2
    _one_error_line(capsys, "adir", "directory")
    assert cli_odometry.main(argv[1:]) == 2
    _one_error_line(capsys, "adir", "directory")
    assert list(trajectories["dir"].iterdir()) == []


def test_eval_depth_refuses_a_binary_split_file(trajectories, capsys):
    assert eval_cli.main(["depth", "--split-file", str(trajectories["binary"]), "--data-root", "."]) == 2
    _one_error_line(capsys, "binary.txt", "not a text file")


# ------------------------------------------------------------------------------------------------
# F7: sa4depth-train refuses bad settings before reading any data


@pytest.mark.parametrize("settings, words", [
    (["train.lr=nan"], ["train.lr", "nan", "> 0"]),
    (["train.lr=-1"], ["train.lr", "-1", "> 0"]),
    (["train.lr=inf"], ["train.lr", "inf"]),
    (["train.batch_size=0"], ["train.batch_size", "0", ">= 1"]),
    (["train.batch_size=nan"], ["train.batch_size", "nan", "integer"]),
    (["data.workers=-3"], ["data.workers", "-3", "from 0"]),
    (["train.threads=2147483648"], ["train.threads", "2147483648", "1024"]),
    (["model.height=65536", "model.width=65536"], ["65536x65536", "budget"]),
    (["model.height=100"], ["model.height", "multiples of 32"]),
    (["train.log_every=0"], ["train.log_every", ">= 1"]),
    (["loss.ssim_alpha=2"], ["loss.ssim_alpha", "2", "0", "1"]),
    (["train.trainable=everything"], ["train.trainable", "everything", "refiner"]),
])
def test_train_refuses_bad_settings_before_reading_data(tmp_path, capsys, settings, words):
    # the data root does not exist: a message about it would mean the data was looked at first
    argv = ["--data-root", str(tmp_path / "no_data"), "--sequences", "00", "--out", str(tmp_path / "out"), *settings]
    assert train_cli.main(argv) == 2
    line = _one_error_line(capsys, *words)
    assert "no_data" not in line
    assert not (tmp_path / "out").exists()


def _diverged_init(tmp_path, kind):
    """(weights to start from whose first pose encoder weight holds NaN, as a project checkpoint or a
    Monodepth2 folder; the name of that tensor as the error names it)."""
    cfg = load_config(None, SMALL)
    model = SA4DepthModel(cfg)
    name, weight = next((n, p) for n, p in model.named_parameters() if n.startswith("pose_net.encoder"))
    with torch.no_grad():
        weight.view(-1)[0] = float("nan")
    if kind == "checkpoint":
        init = tmp_path / "diverged.pt"
        save_checkpoint(init, config=cfg.to_dict(), model=model.state_dict())
    else:
        from sa4depth_core.networks.monodepth2_io import save_monodepth2_folder

        init = tmp_path / "diverged_md2"
        save_monodepth2_folder(init, model.depth_encoder, model.depth_decoder, height=64, width=128,
                               pose_encoder=model.pose_net.encoder, pose_decoder=model.pose_net.decoder)
    return init, name


@pytest.mark.parametrize("kind", ["checkpoint", "monodepth2"])
def test_train_refuses_init_weights_holding_nan(synth_root, tmp_path, capsys, kind):
    init, name = _diverged_init(tmp_path, kind)
    argv = ["--data-root", str(synth_root), "--sequences", "00", "--out", str(tmp_path / "out"), "--init", str(init),
            *SMALL, "train.batch_size=2", "train.max_steps=6", "train.progress=false", "refine.enabled=false"]
    assert train_cli.main(argv) == 2
    _one_error_line(capsys, init.name, name, "NaN")
    assert not (tmp_path / "out" / "best.pt").exists()


def test_train_on_a_disk_that_fills_up_is_one_line_and_keeps_no_partial_checkpoint(synth_root, tmp_path, capsys,
                                                                                     monkeypatch):
    import sa4depth_core.checkpoint as checkpoint

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", full_disk)
    argv = ["--data-root", str(synth_root), "--sequences", "00", "--out", str(tmp_path / "out"), *SMALL,
            "train.batch_size=2", "train.max_steps=2", "train.progress=false", "refine.enabled=false"]
    assert train_cli.main(argv) == 2
    _one_error_line(capsys, "No space left")
    assert not list((tmp_path / "out").rglob("*.pt")) and not list((tmp_path / "out").rglob("*.tmp*"))


def test_karlsruhe_into_a_file_is_one_line(tmp_path, capsys):
    from sa4depth_core.data import karlsruhe

    source = Path(__file__).resolve().parents[2] / "shared" / "data" / "karlsruhe_2010_03_09_drive_0019"
    if not source.is_dir():
        pytest.skip(f"the Karlsruhe sequence is not at {source}")
    out = tmp_path / "a_file"
    out.write_text("not a folder")
    assert karlsruhe.main([str(source), str(out), "--max-frames", "2", "--no-depth"]) == 2
    _one_error_line(capsys, "a_file")


# ------------------------------------------------------------------------------------------------
# The installed commands as a shell runs them: exit code 2 and one line, no traceback


@pytest.mark.parametrize("argv, words", [
    (["-m", "sa4depth_core.train.cli", "train.lr=-1"], ["train.lr"]),
    (["-m", "sa4depth_core.eval.cli", "odom", "--gt", "{gt}", "--est", "{zeros}"], ["zeros.txt", "rotation"]),
])
def test_commands_exit_2_with_one_line(trajectories, tmp_path, argv, words):
    argv = [a.format(**trajectories) for a in argv]
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and all(w in err[0] for w in words), done.stderr


# ------------------------------------------------------------------------------------------------
# sa4depth-export and sa4depth-synth: the same classes of error


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    cfg = load_config(None, SMALL)
    path = tmp_path_factory.mktemp("export") / "small.pt"
    save_checkpoint(path, config=cfg.to_dict(), model=SA4DepthModel(cfg).state_dict())
    return path


@pytest.mark.parametrize("opset", ["7", "99999"])
def test_export_refuses_an_opset_it_cannot_write_before_exporting(small_checkpoint, tmp_path, capsys, opset):
    from sa4depth_core import export_cli

    out = tmp_path / "onnx"
    assert export_cli.main(["--checkpoint", str(small_checkpoint), "--out", str(out), "--opset", opset]) == 2
    _one_error_line(capsys, "--opset", opset)
    assert not out.exists()


def test_synth_on_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from sa4depth_core.data.synth import cli as synth_cli

    real = Path.write_text

    def write_text(self, *args, **kwargs):
        if self.name == "times.txt":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    assert synth_cli.main(["--out", str(tmp_path), "--frames", "2", "--size", "32x64", "--quiet"]) == 2
    _one_error_line(capsys, "No space left", "times.txt")
