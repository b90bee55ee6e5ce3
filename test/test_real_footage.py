"""benchmarks/real_footage.py: the mounting fit on exact motions, and the whole script on its --quick
budget (18 real frames, a 2-step start, 2 fine-tuning steps, two rates) in a temporary directory, so that the
script behind the README's real-footage table cannot rot."""
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from real_footage import (DATA, DEPTH_COLUMNS, ODOM_COLUMNS, ODOM_METHODS, _rotvec, fit_mounting,  # noqa: E402
                          remount)


def _pose(rvec, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], _ = cv2.Rodrigues(np.asarray(rvec, np.float64))
    T[:3, 3] = t
    return T


def _drive(turns: bool) -> np.ndarray:
    """Camera-to-world poses of a car driving forward (camera z), turning about the camera's y
    axis now and then, plus noise."""
    rng = np.random.default_rng(0)
    poses = [np.eye(4)]
    for k in range(120):
        yaw = np.radians(3.0) if turns and k % 10 < 4 else 0.0
        step = _pose(rng.normal(0, 1e-3, 3) + [0, yaw, 0], [0, 0, 0.6] + rng.normal(0, 0.01, 3))
        poses.append(poses[-1] @ step)
    return np.stack(poses)


def _rel(poses: np.ndarray) -> np.ndarray:
    return np.linalg.inv(poses[1:]) @ poses[:-1]


def test_the_mounting_is_recovered_from_turns_and_driving():
    nominal = _drive(turns=True)
    X = _pose([np.radians(-6.0), np.radians(2.0), np.radians(1.0)], [0, 0, 0])[:3, :3]
    camera = remount(nominal, X)  # what a camera mounted rotated by X from the nominal one moves
    fitted = fit_mounting(_rel(nominal), _rel(camera))
    assert np.degrees(np.linalg.norm(_rotvec(fitted.T @ X))) < 0.3
    assert np.allclose(remount(nominal, fitted)[0], np.eye(4))


def test_without_turns_only_the_direction_of_travel_is_fitted():
    nominal = _drive(turns=False)
    X = _pose([np.radians(-6.0), 0, 0], [0, 0, 0])[:3, :3]  # a tilt: seen in the direction alone
    fitted = fit_mounting(_rel(nominal), _rel(remount(nominal, X)))
    assert np.degrees(np.linalg.norm(_rotvec(fitted.T @ X))) < 0.5


@pytest.mark.skipif(not (DATA / "poses.txt").is_file(), reason=f"the Karlsruhe sequence is not at {DATA}")
def test_quick_run_prints_every_column_and_resumes_from_its_saved_pieces(tmp_path):
    cmd = [sys.executable, str(REPO / "benchmarks" / "real_footage.py"), "--quick", "--threads", "1",
           "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    report = out[out.index("\n## real_footage ("):]
    assert "Machine: " in report and "Budget: 2 fine-tuning steps" in report
    for column in DEPTH_COLUMNS + ODOM_COLUMNS:
        assert f"| {column} |" in report or f" {column} |" in report, column
    for method in ODOM_METHODS:
        assert method in report, method
    assert "| demo start + SA4Depth | 0.0001 | 0 |" in report  # both rates of the grid on the validation frames
    assert report.count("| demo start (no fine-tuning) |") == 4  # depth, PoseNet, refined, classical + depth scale
    for arm in ("SA4Depth", "Monodepth2 loss"):
        assert len(re.findall(rf"\| demo start \+ {arm} \(lr [0-9.e-]+\) \| 0 \|", report)) == 4, arm
    assert (tmp_path / "out" / "real_footage.md").read_text().strip() == report.strip()
    picture = cv2.imread(str(tmp_path / "out" / "real_footage_depth.png"))
    assert picture is not None and picture.shape[0] > 2 * picture.shape[1] * 186 / 672  # three rows
    assert not (REPO / "benchmarks" / ".cache" / "karlsruhe_18f").exists()  # the cache went where it was told

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "evaluated " not in again.stdout and "fine-tuned " not in again.stdout
    tables = report[report.index("**Depth**"):report.index("Classical odometry against")]
    assert tables in again.stdout
