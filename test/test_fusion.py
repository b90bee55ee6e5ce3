"""Fusion of PoseNet's motion with the LM's (PipelineOptions.fusion, issue 23): the fusion rules by
hand, what each mode publishes on the node's path, and the cost-ratio acceptance of the estimator."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.errors import InputError
from sa4depth_core.eval.run_model import run_sequence
from sa4depth_core.geometry import make_transform, so3_exp, so3_log
from sa4depth_core.odometry import (MIN_COST_HISTORY, Tracking, fuse_by_covariance, keep_direction,
                                    posenet_covariance)
from sa4depth_core.pipeline_options import PipelineOptions
from sa4depth_core.refine import TrustRegion

F64 = torch.float64
LOOSE = TrustRegion(max_rotation_deg=180.0, max_translation=1e6)  # random features wander far
CPU = torch.device("cpu")


def _pose(t, axis=(0.0, 1.0, 0.0), deg=0.0):
    axis = torch.tensor(axis, dtype=F64)
    return make_transform(so3_exp(axis / axis.norm() * math.radians(deg)), torch.tensor(t, dtype=F64))


def test_posenet_covariance_is_relative_to_the_median_depth_and_in_radians():
    cov = posenet_covariance((0.01, 0.02, 0.03, 1.0, 2.0, 3.0), median_depth=10.0)
    expected = torch.tensor([0.1, 0.2, 0.3] + [math.radians(d) for d in (1.0, 2.0, 3.0)], dtype=F64) ** 2
    torch.testing.assert_close(cov, torch.diag(expected))


def test_fusion_by_covariance_hand_computed():
    # equal covariances: the midpoint, half the variance
    T, cov = fuse_by_covariance(_pose((0, 0, 1)), torch.eye(6, dtype=F64), _pose((2, 0, 1)), torch.eye(6, dtype=F64))
    torch.testing.assert_close(T[:3, 3], torch.tensor([1.0, 0, 1], dtype=F64))
    torch.testing.assert_close(cov, 0.5 * torch.eye(6, dtype=F64))
    # the LM sure of x only, PoseNet sure of everything else: x from the LM, z from PoseNet
    cov_l = torch.diag(torch.tensor([1e-6, 1e6, 1e6, 1e6, 1e6, 1e6], dtype=F64))
    T, cov = fuse_by_covariance(_pose((0, 0, 1)), torch.eye(6, dtype=F64), _pose((2, 0, 3)), cov_l)
    torch.testing.assert_close(T[:3, 3], torch.tensor([2.0, 0, 1], dtype=F64), atol=1e-5, rtol=0)
    assert cov[0, 0] < 1e-5 and cov[2, 2] > 0.99


def test_keep_direction_takes_posenets_direction_where_posenet_is_surer_of_it():
    T_p, T_l = _pose((0, 0, 1)), _pose((0.3, 0, 2), deg=2.0)
    cov_p = torch.diag(torch.tensor([0.01, 0.02, 0.03, 4.0, 5.0, 6.0], dtype=F64))
    cov_l = torch.diag(torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], dtype=F64))
    # across the direction: PoseNet 0.03 / 1^2, the LM about 0.3 / 4.09: PoseNet is surer
    T, cov = keep_direction(T_p, cov_p, T_l, cov_l)
    torch.testing.assert_close(T[:3, :3], T_l[:3, :3])
    torch.testing.assert_close(T[:3, 3], torch.tensor([0.0, 0.0, math.hypot(0.3, 2.0)], dtype=F64))
    scale2 = 0.3 ** 2 + 2.0 ** 2  # PoseNet's sideways variance at the LM's length
    torch.testing.assert_close(cov.diagonal(),
                               torch.tensor([0.01 * scale2, 0.02 * scale2, 0.3, 0.4, 0.5, 0.6], dtype=F64))
    # a PoseNet less sure of its direction than the LM leaves the LM's pose alone
    T, cov = keep_direction(T_p, 100 * cov_p, T_l, cov_l)
    assert torch.equal(T, T_l) and torch.equal(cov, cov_l)
    T, cov = keep_direction(_pose((0, 0, 0)), cov_p, T_l, cov_l)  # no direction to keep
    assert torch.equal(T, T_l) and torch.equal(cov, cov_l)


def test_options_refuse_unknown_fusions_and_bad_sigmas():
    for bad in ({"fusion": "average"}, {"posenet_sigma": (0.01,) * 5}, {"posenet_sigma": (0.0,) * 6},
                {"posenet_sigma": ("a",) * 6}, {"posenet_sigma": (True,) * 6}):
        with pytest.raises(InputError):
            PipelineOptions(**bad).check()
    PipelineOptions(fusion="direction", posenet_sigma=(0.1,) * 6).check()


def _first_step(small_pipeline, loaded, frames, **options):
    """(relative motion (4,4), published twist covariance (6,6), tracking) of the second frame."""
    images, K = frames
    pipe = small_pipeline(loaded, trust=LOOSE, **options)
    first = pipe.process(images[0], K, 0.0).odometry
    second = pipe.process(images[1], K, 0.1).odometry
    return np.linalg.inv(first.camera_pose) @ second.camera_pose, second.twist_covariance, second.tracking


def _angle_deg(R):
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))


def test_each_fusion_publishes_what_it_promises(refining, frames, small_pipeline):
    posenet, cov_posenet, tracking = _first_step(small_pipeline, refining, frames, fusion="posenet")
    assert tracking == Tracking.POSENET
    lm, cov_lm, tracking = _first_step(small_pipeline, refining, frames, fusion="lm")
    assert tracking == Tracking.REFINED
    off = _angle_deg(posenet[:3, :3].T @ lm[:3, :3])
    assert off > 0.05  # random features move the pose: there is something to fuse

    direction, _, _ = _first_step(small_pipeline, refining, frames, fusion="direction", posenet_sigma=(1e-6,) * 6)
    np.testing.assert_allclose(direction[:3, :3], lm[:3, :3], atol=1e-6)
    t_d, t_l, t_p = direction[:3, 3], lm[:3, 3], posenet[:3, 3]
    assert np.linalg.norm(t_d) == pytest.approx(np.linalg.norm(t_l), rel=1e-6)
    np.testing.assert_allclose(t_d / np.linalg.norm(t_d), t_p / np.linalg.norm(t_p), atol=1e-6)
    unsure, _, _ = _first_step(small_pipeline, refining, frames, fusion="direction", posenet_sigma=(1e3,) * 6)
    np.testing.assert_allclose(unsure, lm, atol=1e-9)

    for fusion in ("prior", "covariance"):
        # PoseNet (almost) certain: its motion; PoseNet (almost) clueless: the LM's
        sure, cov_sure, _ = _first_step(small_pipeline, refining, frames, fusion=fusion, posenet_sigma=(1e-6,) * 6)
        np.testing.assert_allclose(sure, posenet, atol=1e-4)
        assert np.trace(cov_sure) < np.trace(cov_lm)
        unsure, _, _ = _first_step(small_pipeline, refining, frames, fusion=fusion, posenet_sigma=(1e3,) * 6)
        np.testing.assert_allclose(unsure, lm, atol=1e-4)
    # the fused covariance is smaller than either input's
    _, cov_fused, _ = _first_step(small_pipeline, refining, frames, fusion="covariance")
    assert np.trace(cov_fused) < min(np.trace(cov_lm), np.trace(cov_posenet))


def test_a_solve_whose_cost_stays_far_above_the_accepted_ones_is_rejected(refining, frames, small_pipeline):
    images, K = frames
    pipe = small_pipeline(refining, trust=LOOSE, on_failure="posenet")
    pipe.process(images[0], K, 0.0)
    assert pipe.process(images[1], K, 0.1).odometry.tracking == Tracking.REFINED
    est = pipe.estimator
    assert math.isnan(est.cost_reference())  # one accepted solve is no reference yet
    # converged solves of these features reached a thousandth of this pair's cost
    est._accepted_costs.extend([1e-3 * est._accepted_costs[0]] * MIN_COST_HISTORY)
    out = pipe.process(images[2], K, 0.2).odometry
    assert out.tracking == Tracking.FALLBACK and "converged solves" in out.reason


def test_evaluation_runs_every_fusion_as_the_node_does(refining, synth_root):
    seq = KittiOdometrySequence(synth_root, "01")
    options = PipelineOptions(trust=LOOSE)
    run = run_sequence(refining, seq, CPU, refine_modes=("posenet", "lm", "direction"), options=options)
    assert set(run.poses) == {"posenet", "lm", "direction"} and set(run.acceptances) == {"lm", "direction"}
    assert run.acceptance == run.acceptances["lm"]  # no "refined" mode: the first refining one
    alone = run_sequence(refining, seq, CPU, refine_modes=("refined",),
                         options=dataclasses.replace(options, fusion="direction"))
    np.testing.assert_array_equal(alone.poses["refined"], run.poses["direction"])
    with pytest.raises(ValueError, match="unknown odometry modes"):
        run_sequence(refining, seq, CPU, refine_modes=("fused",))


def test_fusion_benchmark_prints_the_comparison_on_a_tiny_budget(tmp_path):
    """benchmarks/fusion.py end to end (2 seeds x 2 training steps, 8-frame worlds), so the script
    behind the RESULTS.md section cannot rot."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(repo / "benchmarks" / "fusion.py"), "--steps", "2", "--seeds", "0", "1", "--frames", "8",
           "--train-frames", "8", "--size", "64x96", "--runs", str(tmp_path / "runs"), "--cache",
           str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    section = run.stdout[run.stdout.index("\n## fusion ("):]
    assert "VALIDATION worlds only" in section and "posenet_sigma" in section
    for mode in ("posenet", "lm", "prior", "covariance", "direction"):
        assert f"| {mode} | 0 |" in section and f"| {mode} | 1 |" in section and f"| {mode} | mean ± std |" in section
    assert "| direction err (deg) |" in section
    saved = json.loads((tmp_path / "out" / "fusion.json").read_text())
    assert saved["chosen"] in ("lm", "prior", "covariance", "direction")
    assert len(saved["sigma"]) == 6 and all(s > 0 for s in saved["sigma"])
    assert f"Default fusion by the rule above: **{saved['chosen']}**" in section

