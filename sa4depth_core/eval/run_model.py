"""Run a model over a frame sequence the way the robot does: every frame through a
PerceptionPipeline (the node's per-frame path, with the node's odometry defaults), one pipeline
per odometry mode ("posenet": refinement off; "refined": the node's default; a fusion name of
odometry.FUSIONS other than "posenet": the refinement with that fusion).

A model whose features were never trained gets no refined trajectory: refining with random
features would be reported as the method's result."""
from __future__ import annotations

import dataclasses
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.sequence import FrameSequence
from ..loaded_model import LoadedModel
from ..odometry import FUSIONS, Tracking
from ..pipeline import PerceptionPipeline
from ..pipeline_options import PipelineOptions


@dataclass
class SequenceRun:
    """Per-frame outputs for one sequence.

    depths: list of (h,w) network depth maps (NaN where invalid); poses: {mode: (N,4,4)}
    camera-to-first-frame trajectories in network units (refining modes only when the model's
    features were trained); tracking: per frame Tracking of the "refined" pipeline (else of the
    first refining mode); acceptance: fraction of its steps (after the first frame) whose
    refinement was accepted; acceptances: that fraction per refining mode; ms_depth: mean wall
    time per frame of the depth stage; ms_odometry: per mode, that of the odometry stage.
    """

    name: str
    depths: list = field(default_factory=list)
    poses: dict = field(default_factory=dict)
    tracking: list = field(default_factory=list)
    acceptance: float = float("nan")
    acceptances: dict = field(default_factory=dict)
    ms_depth: float = 0.0
    ms_odometry: dict = field(default_factory=dict)


def run_sequence(loaded: LoadedModel, seq: FrameSequence, device: torch.device, frames: range | None = None,
                 odometry: bool = True, refine_modes=("posenet", "refined"), nets=None,
                 options: PipelineOptions | None = None) -> SequenceRun:
    """Depth for every frame in `frames` (default: all) and trajectories for each mode of
    `refine_modes` ("posenet", "refined", or a fusion name; refining modes are skipped for a
    model without trained features).

    nets: the inference networks (backends.make_networks; None: the options' backend, by
    default the model in torch fp32), shared by the pipelines. options: the pipelines' settings
    (default PipelineOptions(): the node's odometry defaults, network units); each mode
    overrides only `odometry`, `refine` and `fusion`.
    """
    frames = frames if frames is not None else range(len(seq))
    base = options or PipelineOptions()
    unknown = [m for m in refine_modes if m not in ("refined",) + FUSIONS]
    if unknown:
        raise ValueError(f"unknown odometry modes {unknown}: use posenet, refined or one of {', '.join(FUSIONS)}")
    modes = [m for m in refine_modes if m == "posenet" or loaded.features_trained] if odometry else []

    def mode_options(mode: str) -> PipelineOptions:
        if mode == "posenet":
            return dataclasses.replace(base, odometry=True, refine=False)
        return dataclasses.replace(base, odometry=True, refine=True, fusion=base.fusion if mode == "refined" else mode)

    settings = {m: mode_options(m) for m in modes} or {"depth only": dataclasses.replace(base, odometry=False)}
    refining = [m for m in modes if m != "posenet"]
    tracked = "refined" if "refined" in refining else (refining[0] if refining else None)
    tracking = {m: [] for m in refining}
    K0 = seq.intrinsics()
    run = SequenceRun(seq.name)
    traj = {m: [] for m in modes}
    ms_depth, ms_odo = [], {m: 0.0 for m in modes}
    with ExitStack() as stack:
        pipes = {}
        for mode, o in settings.items():
            pipes[mode] = stack.enter_context(PerceptionPipeline(loaded, device, o, nets=nets))
            nets = pipes[mode].nets  # built once, for every mode
        for i in frames:
            rgb, stamp = seq.image(i), seq.timestamp(i)
            for n, (mode, pipe) in enumerate(pipes.items()):
                result = pipe.process(rgb, K0, stamp)
                ms_depth.append(result.ms_depth)
                if n == 0:
                    run.depths.append(result.depth)
                if mode not in traj:
                    continue
                if result.odometry is None:
                    # the node publishes no pose for such a frame: a gap here would score poses against the wrong frames
                    raise RuntimeError(f"{seq.name} frame {i}: {mode} odometry failed: {result.odometry_error}")
                ms_odo[mode] += result.ms_odometry
                traj[mode].append(result.odometry.camera_pose)
                if mode in tracking:
                    tracking[mode].append(result.odometry.tracking)
    for mode, states in tracking.items():
        steps = [t for t in states if t != Tracking.INIT]
        if steps:
            run.acceptances[mode] = sum(t == Tracking.REFINED for t in steps) / len(steps)
    if tracked is not None:
        run.tracking = tracking[tracked]
        run.acceptance = run.acceptances.get(tracked, float("nan"))
    n = max(len(run.depths), 1)
    run.ms_depth = float(np.mean(ms_depth)) if ms_depth else 0.0
    run.ms_odometry = {m: t / n for m, t in ms_odo.items()}
    run.poses = {m: np.stack(p) for m, p in traj.items()}
    return run
