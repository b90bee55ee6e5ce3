"""benchmarks/photometric_check.py: the exact geometry of a synthetic world must explain its frames
far better than an untrained network does, otherwise the check (and the warp) is wrong."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from photometric_check import COMBINATIONS, check_world  # noqa: E402
from sa4depth_core.config import load_config  # noqa: E402
from sa4depth_core.model import SA4DepthModel  # noqa: E402


def test_exact_depth_and_poses_explain_the_frames_better_than_an_untrained_model(synth_root):
    torch.manual_seed(0)
    cfg = load_config(None, ["model.height=64", "model.width=128", "refine.enabled=false"])
    row = check_world(SA4DepthModel(cfg).eval(), cfg, synth_root, "00", triplets=6)
    untrained_loss, untrained_mask = row["model depth, PoseNet"]
    exact_loss, exact_mask = row["exact depth, exact poses"]
    assert exact_loss < 0.6 * untrained_loss, row
    assert exact_mask > 0.7 and exact_mask > untrained_mask, row
    # the exact poses alone already help; every combination is a finite loss and a fraction
    assert row["model depth, exact poses"][0] < untrained_loss, row
    assert all(0 <= row[c][1] <= 1 and torch.isfinite(torch.tensor(row[c][0])) for c in COMBINATIONS)
    assert row["translation_ratio"] > 0
