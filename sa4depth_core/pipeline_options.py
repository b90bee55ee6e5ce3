"""The settings of a PerceptionPipeline and the check that refuses settings no frame could be
processed with; the nodes' parameter table builds and checks them before any frame arrives.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from transforms3d.euler import euler2mat

from .backends import plan
from .errors import InputError
from .input_checks import check_rigid_transform
from .network_input import network_size_problem
from .odometry import FUSIONS, LOST_VARIANCE, ON_FAILURE
from .refine import TrustRegion
from .scale import ScaleEstimator


def pose_from_xyz_rpy(values) -> np.ndarray:
    """(4,4) transform from [x, y, z, roll, pitch, yaw] (metres, radians; URDF / tf2 convention:
    R = Rz(yaw) Ry(pitch) Rx(roll) about fixed axes)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size != 6 or not np.isfinite(v).all():
        raise InputError(f"expected 6 finite numbers [x, y, z, roll, pitch, yaw], got {list(v)}")
    T = np.eye(4)
    T[:3, :3] = euler2mat(v[3], v[4], v[5], "sxyz")
    T[:3, 3] = v[:3]
    return T


# PoseNet's error per DoF (translation x, y, z / median depth; rotation x, y, z in degrees): RMS
# of the PoseNet of a briefly trained 64x192 SA4Depth model (180 steps) on the validation worlds,
# mean over 3 seeds (benchmarks/fusion.py, RESULTS.md "fusion"). A stronger PoseNet than that is
# only under-trusted (the fusion then follows the LM more than it could); a much weaker one
# (a model on footage unlike its training) is over-trusted: calibrate for such a model.
POSENET_SIGMA = (0.041, 0.0083, 0.037, 0.29, 0.73, 0.21)


def _numbers(value) -> bool:
    """Whether `value` is a sequence of real numbers (no strings, no booleans)."""
    try:
        items = list(value)
    except TypeError:
        return False
    return all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
               for v in items)


@dataclass
class PipelineOptions:
    """Settings of a PerceptionPipeline (all can change between frames via `configure`).

    height, width: network input size, multiples of 32 and at least 64 (the encoder downsamples
        by 32 and its last map must be 2 pixels or more); 0 takes the model's own size.
    on_failure: see OdometryEstimator ("hold" keeps the last pose when refinement fails).
    trust: the trust region a refined motion must stay in around PoseNet's (refine.TrustRegion).
    refine_iterations, refine_max_points: the LM solver's budget per level (0 = the model's).
    fusion: how the published motion combines PoseNet's and the LM's (odometry.FUSIONS): "lm"
        the LM's pose, "posenet" PoseNet's alone (no solve), "prior" PoseNet's pose as a prior
        inside the solve, "covariance" both weighed by their covariances after the solve,
        "direction" the LM's rotation and |t| with PoseNet's translation direction where PoseNet
        is surer of the direction than the LM's covariance (odometry.keep_direction). The
        published covariance is the fused estimate's. "prior" by default: on the validation
        worlds it had a lower 5-frame ATE than the plain LM in each of 3 seeds (0.0574 vs 0.0583 m)
        and a lower Sim(3) ATE (0.412 vs 0.417 m), a weak-PoseNet regime only (benchmarks/fusion.py).
    posenet_sigma: PoseNet's per-DoF standard deviation, translation x, y, z as fractions of the
        frame's median depth, rotation x, y, z in degrees (camera axes), calibrated on
        validation worlds (benchmarks/fusion.py); the prior's and the fusions' uncertainty of
        PoseNet, and the covariance of PoseNet-only steps.
    backend, precision, threads: what runs the depth, pose and feature networks
        (backends.make_networks: auto picks the fastest that works here; threads 0 = torch's).
    parallel: run the depth network in a second thread beside PoseNet and the feature network
        (they need no depth), so two cores work on one frame; pays with backends that keep to
        their own threads (give them threads=1 each), see benchmarks/pipeline_backends.py.
    base_from_camera: (4,4) pose of the camera optical frame in the base frame.
    min_variance: floor added to every relative-motion variance (m^2, rad^2), so that a
        near-perfect feature match never claims impossible certainty; also the pose variance at
        the first frame.
    """

    height: int = 0
    width: int = 0
    scale_mode: str = "relative"
    scale_factor: float = 1.0
    camera_height: float = 1.65
    odometry: bool = True
    refine: bool = True
    on_failure: str = "hold"
    trust: TrustRegion = field(default_factory=TrustRegion)
    refine_iterations: int = 0
    refine_max_points: int = 0
    fusion: str = "prior"
    posenet_sigma: tuple = POSENET_SIGMA
    backend: str = "torch"
    precision: str = "fp32"
    threads: int = 0
    parallel: bool = False
    base_from_camera: np.ndarray = field(default_factory=lambda: np.eye(4))
    min_variance: float = 1e-6

    def check(self) -> None:
        """Raise InputError for settings no frame could be processed with."""
        for name in ("height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise InputError(f"network input {name} must be 0 (the model's) or a size, got {value!r}")
        # 0 takes the model's side, which the model's own check covered: test the other with the smallest valid one
        problem = network_size_problem(self.height or 64, self.width or 64)
        if problem:
            raise InputError(problem)
        plan(self.backend, self.precision, torch.device("cpu"))  # raises for unknown names
        if self.on_failure not in ON_FAILURE:
            raise InputError(f"on_failure '{self.on_failure}' is not one of {', '.join(ON_FAILURE)}")
        check_rigid_transform(self.base_from_camera, "base_from_camera")
        if self.fusion not in FUSIONS:
            raise InputError(f"fusion '{self.fusion}' is not one of {', '.join(FUSIONS)}")
        sigma = np.asarray(self.posenet_sigma, dtype=np.float64) if _numbers(self.posenet_sigma) else None
        if sigma is None or sigma.shape != (6,) or not (np.isfinite(sigma).all() and (sigma > 0).all()):
            raise InputError(f"posenet_sigma must be 6 positive numbers (translation x, y, z as fractions of the "
                             f"median depth, rotation x, y, z in degrees), got {self.posenet_sigma!r}")
        for name in ("refine_iterations", "refine_max_points"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise InputError(f"{name} must be an integer >= 0 (0 = the model's), got {value!r}")
        if not 0 < self.min_variance < LOST_VARIANCE:
            raise InputError(f"min_variance must be in (0, {LOST_VARIANCE:g}), got {self.min_variance}")
        ScaleEstimator(self.scale_mode, self.scale_factor, self.camera_height)
