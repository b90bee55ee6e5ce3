"""benchmarks/study.py on a tiny budget (2 arms x 1 seed x 2 steps, 8-frame worlds, one learning
rate) in a temporary directory, so that the script behind the README's table cannot rot."""
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from study import silog  # noqa: E402

TINY = ["--arms", "monodepth2", "sa4depth", "--seeds", "0", "--lrs", "1e-4", "--steps", "2", "--sup-steps", "2",
        "--pose-steps", "2", "--frames", "8", "--size", "64x96", "--batch", "2", "--threads", "1"]


def _study(tmp_path: Path, *extra: str) -> str:
    cmd = [sys.executable, str(REPO / "benchmarks" / "study.py"), *TINY, "--out", str(tmp_path / "out"),
           "--cache", str(tmp_path / "cache"), *extra]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


def test_study_prints_the_whole_table_and_resumes_from_its_saved_runs(tmp_path):
    out = _study(tmp_path)
    section = out[out.index("\n## study ("):]
    assert "validation AbsRel" in section and "Chosen: (1) Monodepth2 loss lr 0.0001, (3) SA4Depth lr 0.0001" in section
    assert "| model | lr | seed 0 | mean ± std |" in section  # validation AbsRel per seed, against the start
    assert "Baseline check on the validation worlds: start " in section
    # three test tables (depth, PoseNet-only, refined odometry), each with the start row and per-seed rows
    tables = section[section.index("**Test worlds**"):section.index("Wall time")]
    assert tables.count("| start | — |") == 3
    assert tables.count("| (1) Monodepth2 loss | 0 |") == 3 and tables.count("| (3) SA4Depth | mean ± std |") == 3
    refined = tables[tables.index("Refined odometry"):]
    assert "| (1) Monodepth2 loss | 0 | — | — |" in refined  # no trained features: no refined rows
    sa4depth_row = next(line for line in refined.splitlines() if line.startswith("| (3) SA4Depth | 0 |"))
    assert "—" not in sa4depth_row
    assert "| direction err (deg) |" in refined and "| ‖t‖ ratio std/mean |" in refined  # issue 23: parts, not a mix
    saved = tmp_path / "out"
    assert (saved / "study.json").is_file() and (saved / "sa4depth_lr0.0001_seed0_test.json").is_file()

    # a second run trains and evaluates nothing: every piece is saved, and the same table comes back
    again = _study(tmp_path, "--sections", "final")
    assert "steps on the" not in again and " on test: " not in again and " on val: " not in again, again
    assert again[again.index("**Test worlds**"):again.index("Wall time")] == tables


def test_the_supervised_start_loss_ignores_invalid_pixels_and_with_lambda_1_the_scale():
    gt = torch.rand(2, 1, 8, 12) * 50 + 1
    gt[:, :, :2] = 0  # sky: no ground truth
    depth = gt.clamp_min(1.0) * torch.exp(0.1 * torch.randn_like(gt))
    assert silog(gt.clamp_min(1.0), gt) < 1e-3
    assert torch.isclose(silog(depth * 3.0, gt, lam=1.0), silog(depth, gt, lam=1.0), rtol=1e-4)
    assert silog(depth * 3.0, gt) > silog(depth, gt)  # lambda < 1 keeps some of the metric scale
    sky_changed = depth.clone()
    sky_changed[:, :, :2] = 99.0
    assert torch.isclose(silog(sky_changed, gt), silog(depth, gt))
