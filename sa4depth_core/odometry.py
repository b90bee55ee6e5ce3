"""Frame-to-frame visual odometry in network units: PoseNet's motion, refined by the
feature-metric LM solver when the model's features were trained and the solve is accepted.

Everything stays in torch; the caller (pipeline.PerceptionPipeline) owns the scale, the
trajectory and the failure counts, and converts to numpy at the message edge.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import torch

from .geometry import invert_transform, make_transform, se3_exp, se3_log
from .loaded_model import LoadedModel
from .refine import PosePrior, RefineResult

if TYPE_CHECKING:  # pipeline_options imports this module's constants
    from .pipeline_options import PipelineOptions


class Tracking(str, Enum):
    """State of one odometry step.

    INIT: first frame after a reset (no motion). REFINED: the refined motion was accepted.
    POSENET: PoseNet's motion by design (refinement off, or features never trained).
    FALLBACK: the refinement was rejected or failed, PoseNet's motion is used.
    LOST: no usable motion, the pose is held.
    """

    INIT = "init"
    REFINED = "ok"
    POSENET = "posenet"
    FALLBACK = "posenet_fallback"
    LOST = "lost"

    def __str__(self) -> str:
        return self.value

    @property
    def failed(self) -> bool:
        """The step meant to refine and could not."""
        return self in (Tracking.FALLBACK, Tracking.LOST)


ON_FAILURE = ("posenet", "hold")
# How the published motion combines PoseNet's and the LM's (PipelineOptions.fusion):
#   lm: the LM's pose alone; posenet: PoseNet's alone (no solve); prior: PoseNet's pose as a
#   prior inside the solve; covariance: both estimates weighed by their covariances after the
#   solve; direction: the LM's rotation and |t| with PoseNet's translation direction when
#   PoseNet is surer of the direction than the LM (keep_direction).
FUSIONS = ("lm", "posenet", "prior", "covariance", "direction")
LOST_VARIANCE = 1e3  # per DoF of a step whose motion is not trusted (network units)
COST_WINDOW = 50  # accepted solves whose median final cost is the reference of the cost-ratio test
MIN_COST_HISTORY = 5  # fewer accepted solves give no reference: the first ones are not judged by it


def posenet_covariance(sigma, median_depth: float) -> torch.Tensor:
    """PoseNet's motion covariance from its per-DoF standard deviations.

    Args:
        sigma: 6 numbers: translation x, y, z as fractions of the target's median depth (so the
            same numbers hold for any scene scale), rotation x, y, z in degrees.
        median_depth: of the target frame, network units.
    Returns:
        (6,6) float64 diagonal, translation first, network units and radians.
    """
    s = torch.tensor(list(sigma), dtype=torch.float64)
    s[:3] *= median_depth
    s[3:] *= math.pi / 180
    return torch.diag(s * s)


def fuse_by_covariance(T_p: torch.Tensor, cov_p: torch.Tensor, T_l: torch.Tensor,
                       cov_l: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The information-weighted mean of two poses, in the tangent space at the first.

    With e = Log(T_l T_p^-1): Σ = (Σp^-1 + Σl^-1)^-1, e_f = Σ Σl^-1 e, T = Exp(e_f) T_p, so each
    direction of the twist follows the estimate that is surer of it.

    Args:
        T_p, T_l: (4,4); cov_p, cov_l: (6,6) of their left twists, positive definite.
    Returns:
        T (4,4), Σ (6,6), float64.
    """
    T_p, T_l = T_p.to(torch.float64), T_l.to(torch.float64)
    info_p, info_l = torch.linalg.inv(cov_p), torch.linalg.inv(cov_l)
    cov = torch.linalg.inv(info_p + info_l)
    cov = 0.5 * (cov + cov.T)
    e = se3_log(T_l @ invert_transform(T_p))
    return se3_exp(cov @ info_l @ e) @ T_p, cov


def keep_direction(T_p: torch.Tensor, cov_p: torch.Tensor, T_l: torch.Tensor,
                   cov_l: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The LM's rotation and translation length, with PoseNet's translation direction where
    PoseNet is surer of it than the LM.

    The LM's minimum is biased in direction by depth error while its rotation and |t| are
    better than PoseNet's (issue 23); a weak PoseNet's direction is worse still. So the two
    directions' uncertainties are compared: the variance across the translation, over |t|^2,
    of each covariance. PoseNet's direction is kept only when its own is smaller; then the
    covariance takes the LM's rotation block and its variance along the direction, and across
    it PoseNet's, scaled to the LM's length.

    Args:
        T_p, T_l: (4,4); cov_p, cov_l: (6,6), translation first.
    Returns:
        T (4,4), Σ (6,6), float64; the LM's own when PoseNet's translation is zero or its
        direction is the less certain.
    """
    T_p, T_l = T_p.to(torch.float64), T_l.to(torch.float64)
    t_p, t_l = T_p[:3, 3], T_l[:3, 3]
    n_p, n_l = float(t_p.norm()), float(t_l.norm())
    if not (n_p > 0 and n_l > 0):
        return T_l, cov_l
    eye = torch.eye(3, dtype=torch.float64)

    def across(u: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        P = eye - torch.outer(u, u)
        return P @ cov[:3, :3] @ P

    u = t_p / n_p
    if float(torch.trace(across(u, cov_p))) / n_p ** 2 >= float(torch.trace(across(t_l / n_l, cov_l))) / n_l ** 2:
        return T_l, cov_l
    along = torch.outer(u, u)
    cov = torch.zeros(6, 6, dtype=torch.float64)
    cov[:3, :3] = along @ cov_l[:3, :3] @ along + (n_l / n_p) ** 2 * across(u, cov_p)
    cov[3:, 3:] = cov_l[3:, 3:]
    return make_transform(T_l[:3, :3], n_l * u), cov


def median_depth(depth: torch.Tensor) -> float:
    """Median of the finite positive values of a (1,1,h,w) depth map (NaN when there is none)."""
    d = depth.flatten()
    d = d[torch.isfinite(d) & (d > 0)]
    return float(d.median()) if d.numel() else float("nan")


@dataclass
class OdometryStep:
    """One odometry update, in network units.

    relative: (4,4) float64 T_current->previous. covariance: (6,6) float64 of its twist
    (translation first). tracking: Tracking. cost, valid_fraction: the finest refinement level's
    statistics (NaN without refinement). reason: why the refinement was not used ('' otherwise).
    """

    relative: torch.Tensor
    covariance: torch.Tensor
    tracking: Tracking
    cost: float
    valid_fraction: float
    reason: str = ""


@dataclass
class PreparedFrame:
    """A frame after OdometryEstimator.prepare: its input x (1,3,h,w) and feature pyramid (or
    None), and unless it is the first, the previous frame's input and features and PoseNet's
    T_current->previous (1,4,4)."""

    x: torch.Tensor
    feats: list | None
    prev_x: torch.Tensor | None = None
    prev_feats: list | None = None
    posenet: torch.Tensor | None = None


def project_to_rigid(T: torch.Tensor) -> torch.Tensor:
    """The nearest rigid transform: the networks and the solver run in float32, so rotations are
    projected back onto SO(3) before thousands of them are composed.

    Args:
        T: (4,4)
    Returns:
        (4,4) with an orthonormal rotation of determinant 1.
    """
    u, _, vt = torch.linalg.svd(T[:3, :3])
    fix = torch.ones(3, dtype=T.dtype, device=T.device)
    fix[2] = torch.linalg.det(u @ vt)
    out = T.clone()
    out[:3, :3] = u @ torch.diag(fix) @ vt
    return out


class OdometryEstimator:
    """PoseNet against the previous frame, then (optionally) the LM refinement with the current
    frame's depth, accepted only inside `options.trust`, at a lower cost than PoseNet's pose and
    at most trust.max_cost_ratio times the median final cost of the last COST_WINDOW accepted
    solves; the published motion combines the two as `options.fusion` says (FUSIONS).

    Depth is not computed here: the caller passes the depth it already computed for the frame,
    so depth, point cloud and odometry share one depth pass.

    options: the pipeline's settings (pipeline_options.PipelineOptions, checked), read at each
        step, so the estimator has no defaults of its own to drift from the node's. Of them:
        refine uses the refinement only when the model's features were trained
        (LoadedModel.features_trained), otherwise the odometry is PoseNet-only (`mode` says why);
        on_failure is what a rejected or failed refinement does: "posenet" keeps PoseNet's motion
        (FALLBACK), "hold" keeps the previous pose (LOST), either way with covariance
        LOST_VARIANCE * I, and the reference advances to the current frame whatever the outcome,
        so tracking recovers by itself; trust is the region a refined motion must stay in;
        refine_iterations and refine_max_points are the solver's budget per level (0 = the
        model's), fixed when the estimator is built; fusion and posenet_sigma (PoseNet's
        calibrated uncertainty, also the covariance of PoseNet-only steps) say how the two
        motions combine.
    min_valid_fraction: fewer valid points at the finest level reject the refinement.
    nets: what runs PoseNet and the feature network (backends.make_networks; None: the model in
        torch); the LM solver is the model's refiner in torch either way.
    """

    def __init__(self, loaded: LoadedModel, device: torch.device, options: PipelineOptions, nets=None,
                 min_valid_fraction: float = 0.2):
        self.model, self.device = loaded.model, device
        self.nets = loaded.model if nets is None else nets
        self.options = options
        self.refiner = loaded.model.refiner.with_budget(options.refine_iterations, options.refine_max_points)
        self.features_trained = loaded.features_trained
        self.min_valid_fraction = min_valid_fraction
        self._prev = None
        self._accepted_costs: deque = deque(maxlen=COST_WINDOW)

    def cost_reference(self) -> float:
        """The median final cost of the recently accepted solves (NaN before MIN_COST_HISTORY)."""
        if len(self._accepted_costs) < MIN_COST_HISTORY:
            return float("nan")
        return float(torch.tensor(list(self._accepted_costs)).median())

    @property
    def refining(self) -> bool:
        """Whether steps try the refinement (asked for, not fusion "posenet", and the features
        were trained)."""
        return self.options.refine and self.options.fusion != "posenet" and self.features_trained

    @property
    def mode(self) -> str:
        """The odometry in use, in words."""
        if self.refining:
            return f"refined (PoseNet + LM on trained features, fusion {self.options.fusion})"
        if not self.options.refine:
            return "PoseNet only (refinement switched off)"
        if self.options.fusion == "posenet":
            return "PoseNet only (fusion posenet)"
        return "PoseNet only (the model's features were never trained: fit them with sa4depth-train --train refiner)"

    def restart_reference(self) -> None:
        """Forget the previous frame: the next step is an INIT (e.g. after a reset, a camera size
        change, a model swap or a failed frame)."""
        self._prev = None

    @torch.inference_mode()
    def step(self, x: torch.Tensor, depth: torch.Tensor, K) -> OdometryStep:
        """Add a frame (prepare, then finish).

        Args:
            x: (1,3,h,w) network input of the frame (from DepthPredictor).
            depth: (1,1,h,w) network depth of the frame (network units).
            K: (3,3) intrinsics at (h,w), numpy or torch.
        Returns:
            OdometryStep
        """
        return self.finish(self.prepare(x), depth, K)

    @torch.inference_mode()
    def prepare(self, x: torch.Tensor) -> PreparedFrame:
        """The half of a step that needs no depth: the frame's features and PoseNet's motion
        against the previous frame, so it can run beside the depth network. The frame becomes
        the reference of the next one.

        Args:
            x: (1,3,h,w) network input of the frame.
        """
        feats = self.nets.feature_net(x) if self.refining else None
        prev, self._prev = self._prev, (x, feats)
        if prev is None:
            return PreparedFrame(x, feats)
        prev_x, prev_feats = prev
        if self.refining and prev_feats is None:  # refinement was switched on since the previous frame
            prev_feats = self.nets.feature_net(prev_x)
        return PreparedFrame(x, feats, prev_x, prev_feats, self.nets.relative_pose(x, prev_x, -1))

    @torch.inference_mode()
    def finish(self, frame: PreparedFrame, depth: torch.Tensor, K) -> OdometryStep:
        """The motion of a prepared frame, refined with its depth when the features allow.

        Args:
            frame: from prepare(); depth: (1,1,h,w) network depth of the frame; K: (3,3) at (h,w).
        """
        eye = torch.eye(4, dtype=torch.float64)
        if frame.posenet is None:
            return OdometryStep(eye, torch.zeros(6, 6, dtype=torch.float64), Tracking.INIT, float("nan"),
                                float("nan"))
        cov_p = posenet_covariance(self.options.posenet_sigma, median_depth(depth))
        if not torch.isfinite(cov_p).all():  # no valid depth: nothing to scale PoseNet's uncertainty by
            cov_p = LOST_VARIANCE * torch.eye(6, dtype=torch.float64)
        if not self.refining or frame.prev_feats is None:
            return self._finish(frame.posenet[0], cov_p, Tracking.POSENET, float("nan"), float("nan"), "")
        fusion = self.options.fusion
        Kt = torch.as_tensor(K, dtype=torch.float32, device=self.device)[None]
        prior = None
        if fusion == "prior":
            prior = PosePrior(frame.posenet, torch.linalg.inv(cov_p)[None])
        reference = torch.tensor([self.cost_reference()])
        T0, result = self.model.pose_step(frame.x, frame.prev_x, -1, depth, Kt, frame.feats, frame.prev_feats,
                                          trust=self.options.trust, refiner=self.refiner, posenet=frame.posenet,
                                          prior=prior, cost_reference=reference)
        stats, acceptance = result.level_stats[-1], result.acceptance
        cost, valid = float(stats.cost[0]), float(stats.valid_fraction[0])
        reason = acceptance.reason(0)
        if not reason and valid < self.min_valid_fraction:
            reason = f"only {valid:.0%} of the points were valid"
        if not reason:
            self._accepted_costs.append(float(acceptance.cost_final[0]))
            T, cov = self._fuse(fusion, T0[0], cov_p, result, cost)
            return self._finish(T, cov, Tracking.REFINED, cost, valid, "")
        if self.options.on_failure == "hold":
            return OdometryStep(eye, LOST_VARIANCE * torch.eye(6, dtype=torch.float64), Tracking.LOST, cost, valid,
                                reason)
        return self._finish(T0[0], LOST_VARIANCE, Tracking.FALLBACK, cost, valid, reason)

    @staticmethod
    def _fuse(fusion: str, T_p: torch.Tensor, cov_p: torch.Tensor, result: RefineResult,
              cost: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The published motion (4,4) and its covariance (6,6) from PoseNet's T_p with cov_p and
        an accepted solve; the LM's covariance is H^-1 times its mean cost (the residual variance)."""
        cov_l = result.covariance()[0].double() * max(cost, 1e-12)
        T_l = result.pose[0].double()
        if fusion == "prior":
            # the solve already weighed PoseNet's pose: its covariance holds both informations
            cov = torch.linalg.inv(torch.linalg.inv(cov_l) + torch.linalg.inv(cov_p))
            return T_l, 0.5 * (cov + cov.T)
        if fusion == "covariance":
            return fuse_by_covariance(T_p, cov_p, T_l, cov_l)
        if fusion == "direction":
            return keep_direction(T_p, cov_p, T_l, cov_l)
        return T_l, cov_l

    def _finish(self, T, covariance, tracking: Tracking, cost: float, valid: float, reason: str) -> OdometryStep:
        """A step with motion T (4,4); a non-finite motion becomes LOST."""
        T = T.detach().to(torch.float64).cpu()
        if isinstance(covariance, float):
            covariance = covariance * torch.eye(6, dtype=torch.float64)
        if not torch.isfinite(T).all():
            return OdometryStep(torch.eye(4, dtype=torch.float64), LOST_VARIANCE * torch.eye(6, dtype=torch.float64),
                                Tracking.LOST, cost, valid, reason or "the motion is not finite")
        return OdometryStep(project_to_rigid(T), covariance.cpu(), tracking, cost, valid, reason)

