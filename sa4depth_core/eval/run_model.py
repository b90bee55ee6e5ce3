"""Run a model over a frame sequence the way the robot would: one depth pass per frame, then
PoseNet-only and refined frame-to-frame odometry from the same depth.

A model whose features were never trained gets no refined trajectory: refining with random
features would be reported as the method's result."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.sequence import FrameSequence
from ..infer import DepthPredictor, LoadedModel
from ..odometry import OdometryEstimator, Tracking


@dataclass
class SequenceRun:
    """Per-frame outputs for one sequence.

    depths: list of (h,w) network depth maps; poses: {"posenet": (N,4,4), "refined": (N,4,4)}
    camera-to-first-frame trajectories in network units ("refined" only when the model's
    features were trained); tracking: per frame Tracking of the refined estimator;
    acceptance: fraction of the refined steps (after the first frame) whose refinement was
    accepted; ms_depth / ms_odometry: mean wall time per frame.
    """

    name: str
    depths: list = field(default_factory=list)
    poses: dict = field(default_factory=dict)
    tracking: list = field(default_factory=list)
    acceptance: float = float("nan")
    ms_depth: float = 0.0
    ms_odometry: dict = field(default_factory=dict)


def run_sequence(loaded: LoadedModel, seq: FrameSequence, device: torch.device, frames: range | None = None,
                 odometry: bool = True, refine_modes=("posenet", "refined"), nets=None) -> SequenceRun:
    """Depth for every frame in `frames` (default: all) and trajectories for each refine mode
    ("refined" is skipped for a model without trained features). nets: the inference networks
    (backends.make_networks; None: the model in torch fp32)."""
    import time

    frames = frames if frames is not None else range(len(seq))
    predictor = DepthPredictor(loaded, device, nets=nets)
    modes = [m for m in refine_modes if m != "refined" or loaded.features_trained] if odometry else []
    estimators = {m: OdometryEstimator(loaded, device, refine=(m == "refined"), nets=predictor.nets) for m in modes}
    poses = {m: torch.eye(4, dtype=torch.float64) for m in modes}
    K0 = seq.intrinsics()
    run = SequenceRun(seq.name)
    traj = {m: [] for m in estimators}
    t_depth, t_odo = 0.0, {m: 0.0 for m in estimators}
    for i in frames:
        rgb = seq.image(i)
        t0 = time.perf_counter()
        depth, K, x = predictor(rgb, K0)
        t_depth += time.perf_counter() - t0
        run.depths.append(depth[0, 0].cpu().numpy())
        for mode, est in estimators.items():
            t0 = time.perf_counter()
            step = est.step(x, depth, K)
            t_odo[mode] += time.perf_counter() - t0
            poses[mode] = poses[mode] @ step.relative
            traj[mode].append(poses[mode].numpy())
            if mode == "refined":
                run.tracking.append(step.tracking)
    steps = [t for t in run.tracking if t != Tracking.INIT]
    if steps:
        run.acceptance = sum(t == Tracking.REFINED for t in steps) / len(steps)
    n = max(len(run.depths), 1)
    run.ms_depth = 1000 * t_depth / n
    run.ms_odometry = {m: 1000 * t / n for m, t in t_odo.items()}
    run.poses = {m: np.stack(p) for m, p in traj.items()}
    return run
