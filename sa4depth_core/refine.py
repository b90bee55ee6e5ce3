"""Differentiable Levenberg-Marquardt refinement of a relative pose on learned feature maps.

This is the SA4Depth core (arXiv 2605.28477), built as PixLoc's solver (Sarlin et al., CVPR
2021; the README's method notes list what the paper leaves open and what was chosen). The target
depth lifts the target pixels to 3-D. The current pose T_t->s moves them into the source camera.
A damped Gauss-Newton step on the residual r = F_s(p') - F_t(p) then updates the pose as
T <- Exp(delta) T. The residual is weighted by confidence and robustified.
Everything is plain autograd through the unrolled iterations, so a loss on the refined pose
trains the features, the confidences and the damping.

Choices the notes leave open, and why:
  * Depth is brought to each level by a masked area average. A level pixel's centre is the
    centroid of its footprint, which matches geometry.scale_intrinsics exactly. Nearest
    sampling would read the depth up to (stride-1)/2 input pixels away from that centre.
    A level pixel needs at least half of its footprint valid.
  * One LM step (residuals, Jacobians, normal equations, the solve) lives in lm_step.py with
    the choices made there.
  * Damping starts at lambda = 1e-3, not PixLoc's 0.316. On a ray-cast room scene at
    96x320 (image pyramid 8/4/2/1 as features, 3.5-5 deg and +-30 % scale off), lambda
    <= 1e-3 reaches the converged pose in 3 steps per level. 1e-2 needs 5 steps, and
    0.1-0.316 is still 0.1-2 deg off after 10. Scaling the diagonal slows the coupled
    translation/rotation directions most. Lower lambda did not narrow the basin, since all
    values lost the same 8 deg / x1.5 start. Learned damping can still move from this start.
  * The iteration count is fixed, as in PixLoc training, so the unrolled graph is the same
    for every batch element, and training never rejects a step. Odometry asks for an
    acceptance test (a TrustRegion): the finest level's cost at the start and at the result,
    on the points valid at both poses, must not have risen, the result must be finite, and it
    must stay within a trust region around the start (PoseNet's pose). Descent alone is not
    enough: a solve can slide into another, lower minimum far from the true pose. A solve
    that ends in a local minimum near its start passes all of that, but its cost stays far
    above what converged solves of the same features reach (on the Middlebury pair 0.035
    against 0.0045): with a reference cost from the caller (odometry: the median of its
    recently accepted solves) the test also rejects a final cost above
    TrustRegion.max_cost_ratio times the reference.
  * A prior on the pose (PosePrior, e.g. PoseNet's motion with its calibrated uncertainty)
    enters every step as a second residual: (H + s Λp) δ = -(g + s Λp e), e = Log(T Tp^-1),
    with s the level's mean cost, the residual variance the published covariance H^-1 s
    assumes, so the prior weighs against the features' information in the same units.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError
from .geometry import backproject, invert_transform, scale_intrinsics, se3_exp, se3_log, so3_log
from .lm_step import (Linearization, add_prior, all_finite, damped_step, is_informative, linearize,
                      normal_equations, source_maps)

LOG10_DAMPING_RANGE = (-6.0, 5.0)  # learned damping lives in 10^[a, b] (PixLoc's DampingNet)
# see TrustRegion: the smallest of 2, 3, 4, 5, 8 that keeps 99 % of the accepted plain solves on the
# validation worlds (benchmarks/fusion.py: 486 solves, 3 seeds, largest ratio 1.49, all kept); far
# starts that ended off on the Middlebury pair were 3 to 15 times the converged cost
MAX_COST_RATIO = 2.0


class PosePrior(NamedTuple):
    """A prior on the refined pose: pose (B,4,4) T_t->s and information (B,6,6), the inverse
    covariance of the left twist e = Log(T pose^-1) (translation first, the pose's units)."""

    pose: torch.Tensor
    information: torch.Tensor

def resize_depth(depth: torch.Tensor, ok: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked area average of valid depths.

    Args:
        depth: (B,1,H,W) with finite values everywhere; ok: (B,1,H,W) bool validity.
        size: (h, w) of the level.
    Returns:
        depth (B,1,h,w) (1 where invalid), ok (B,1,h,w) bool: at least half the footprint valid.
    """
    okf = ok.to(depth.dtype)
    total = F.interpolate(depth * okf, size=size, mode="area")
    share = F.interpolate(okf, size=size, mode="area")
    ok_level = share >= 0.5
    return torch.where(ok_level, total / torch.where(ok_level, share, 1.0), 1.0), ok_level


@dataclass
class LevelStats:
    """Statistics of one pyramid level, at the linearisation point of its last iteration.

    cost (B,): mean over valid points of C_t C_s rho(|r|^2); num_valid (B,) and
    valid_fraction (B,) of the points used; success (B,) bool: every step of the level solved.
    """

    cost: torch.Tensor
    num_valid: torch.Tensor
    valid_fraction: torch.Tensor
    success: torch.Tensor


@dataclass(frozen=True)
class TrustRegion:
    """How far a refined pose may move from its start and still be accepted.

    max_rotation_deg: largest rotation between the start and the result.
    max_translation: largest change of the translation, as a fraction of the target's median
        depth, so the bound does not depend on the networks' scene scale.
    max_cost_ratio: largest final cost, as a multiple of a reference cost that converged solves
        of the same features reach (only when the caller gives one), so the bound does not
        depend on the features' scale either.

    The defaults are about twice the largest move of a refinement that improved on PoseNet over
    177 frame pairs of three validation worlds (2.2 deg and 0.072 x the median depth, with a
    briefly trained 64x192 model; benchmarks/trust_region.py). No refinement there made the pose
    worse, so nothing argues for tighter bounds yet.
    """

    max_rotation_deg: float = 5.0
    max_translation: float = 0.15
    max_cost_ratio: float = MAX_COST_RATIO

    def __post_init__(self):
        if not (self.max_rotation_deg > 0 and self.max_translation > 0 and self.max_cost_ratio >= 1):
            raise InputError(f"trust region bounds must be > 0 and the cost ratio >= 1, got {self.max_rotation_deg} "
                             f"deg, {self.max_translation}, cost ratio {self.max_cost_ratio}")


@dataclass
class Acceptance:
    """Whether each refined pose may be used instead of its start.

    cost_start, cost_final (B,): mean C_t C_s rho(|r|^2) at the finest level over the points
    valid at both poses (num_common (B,) of them). rotation_deg, translation (B,): how far the
    result moved from the start (translation as a fraction of the median target depth).
    accepted (B,) bool: solved, finite, enough common points, cost not higher than at the
    start, inside the trust region, and (with a reference) cost_final at most
    TrustRegion.max_cost_ratio times the reference.
    """

    cost_start: torch.Tensor
    cost_final: torch.Tensor
    num_common: torch.Tensor
    rotation_deg: torch.Tensor
    translation: torch.Tensor
    accepted: torch.Tensor
    reasons: list

    def reason(self, i: int) -> str:
        """Why element i was rejected ('' when accepted)."""
        return self.reasons[i]


@dataclass
class RefineResult:
    """Output of FeatureMetricRefiner.

    pose (B,4,4): refined T_t->s, equal to T_init for elements where every step failed.
    level_poses: list of (B,4,4), coarse to fine, each still attached to its graph (the last
    one is `pose`). level_stats: list of LevelStats, coarse to fine.
    success (B,) bool: every step of every level solved.
    hessian (B,6,6): undamped Gauss-Newton H of the features' residuals at the last step (zeros
    where it failed), without a prior's information.
    acceptance: the acceptance test when a TrustRegion was given, else None.
    """

    pose: torch.Tensor
    level_poses: list
    level_stats: list
    success: torch.Tensor
    hessian: torch.Tensor
    acceptance: Acceptance | None = None

    @property
    def cost(self) -> torch.Tensor:
        """(B,) cost of the finest level."""
        return self.level_stats[-1].cost

    def covariance(self, max_variance: float = 1e6) -> torch.Tensor:
        """Gauss-Newton covariance H^-1 of the twist (translation first), detached.

        It assumes unit residual variance, so the numbers are relative. Failed, singular (e.g.
        a fence: no texture along one axis) or non-invertible elements get max_variance * I.

        Returns:
            (B,6,6) finite, symmetric.
        """
        H = self.hessian.detach()
        eye = torch.eye(6, dtype=H.dtype, device=H.device).expand_as(H)
        usable = self.success & torch.isfinite(H).all(-1).all(-1)
        L, info = torch.linalg.cholesky_ex(torch.where(usable[:, None, None], H, eye))
        # A failed factor is partly garbage: only factors that succeeded may be inverted.
        usable = usable & (info == 0)
        cov = torch.cholesky_inverse(torch.where(usable[:, None, None], L, eye))
        cov = 0.5 * (cov + cov.transpose(-1, -2))
        usable = usable & torch.isfinite(cov).all(-1).all(-1)
        usable = usable & (cov.diagonal(dim1=-2, dim2=-1) <= max_variance).all(-1)
        return torch.where(usable[:, None, None], cov, max_variance * eye)


def _per_level(value, n: int, name: str) -> list:
    """An int/None broadcast to n levels, or a sequence of length n."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n:
            raise InputError(f"refiner: {name} has {len(value)} entries but there are {n} levels")
        return list(value)
    return [value] * n


class LevelProblem(NamedTuple):
    """What one pyramid level's solve works on: target points (B,3,M) with their validity
    (B,M), features (B,C,M) and confidences (B,M); the source maps (B,h,w,3C+1) of source_maps();
    and the level's intrinsics K (B,3,3)."""

    points: torch.Tensor
    ok: torch.Tensor
    feat: torch.Tensor
    conf: torch.Tensor
    source: torch.Tensor
    K: torch.Tensor


class FeatureMetricRefiner(nn.Module):
    """Coarse-to-fine LM refinement of T_t->s on feature pyramids (SA4Depth / PixLoc style).

    Args:
        strides: feature strides, coarse to fine (e.g. (8, 4, 2)). They set the number of
            levels and are used to check the sizes of the given maps (floor or ceil of
            H / stride). The intrinsics of a level follow the actual map size.
        iterations: LM steps per level, an int or one per level.
        damping: 'learned' (lambda = 10^(a + sigmoid(c)(b - a)), c per level and DoF) or 'fixed'.
        init_damping: starting lambda (learned) or the constant lambda (fixed).
        robust_alpha, robust_scale: Barron kernel on the squared residual norm.
        detach_between_levels: start each level from the previous level's pose, detached
            (PixLoc). Coarser levels then need their own loss.
        detach_depth: treat the depth as a constant inside the solver.
        min_valid_points: fewer valid points than this fail the step.
        margin: pixels kept clear of the source border.
        max_points: most target pixels used per level, an int or one per level. None or 0
            means all. A random subset is used in training mode, a fixed seeded one in eval.
    """

    def __init__(
        self,
        strides: Sequence[int] = (8, 4, 2),
        iterations: int | Sequence[int] = 3,
        damping: str = "learned",
        init_damping: float = 1e-3,
        robust_alpha: float = 0.0,
        robust_scale: float = 0.1,
        detach_between_levels: bool = True,
        detach_depth: bool = True,
        min_valid_points: int = 10,
        margin: float = 1.0,
        max_points: int | None | Sequence[int | None] = None,
    ):
        super().__init__()
        self.strides = [int(s) for s in strides]
        n = len(self.strides)
        if n == 0 or min(self.strides) < 1:
            raise InputError(f"refiner: strides must be a non-empty list of positive ints, got {list(strides)}")
        self.iterations = [int(i) for i in _per_level(iterations, n, "iterations")]
        if min(self.iterations) < 1:
            raise InputError(f"refiner: iterations must be >= 1 per level, got {self.iterations}")
        self.max_points = [p or None for p in _per_level(max_points, n, "max_points")]
        if not (math.isfinite(robust_alpha) and robust_scale > 0):
            raise InputError(f"refiner: robust kernel needs a finite alpha and scale > 0, got {robust_alpha}, {robust_scale}")
        self.robust_alpha, self.robust_scale = float(robust_alpha), float(robust_scale)
        self.detach_between_levels, self.detach_depth = bool(detach_between_levels), bool(detach_depth)
        self.min_valid_points, self.margin = int(min_valid_points), float(margin)
        self.learned_damping = damping == "learned"
        if damping == "learned":
            lo, hi = LOG10_DAMPING_RANGE
            if not 10**lo < init_damping < 10**hi:
                raise InputError(f"refiner: learned init_damping must lie in (1e{lo:g}, 1e{hi:g}), got {init_damping}")
            frac = (math.log10(init_damping) - lo) / (hi - lo)
            self.damping_logits = nn.Parameter(torch.full((n, 6), math.log(frac / (1 - frac))))
        elif damping == "fixed":
            if not init_damping >= 0:
                raise InputError(f"refiner: fixed init_damping must be >= 0, got {init_damping}")
            self.register_buffer("fixed_damping", torch.full((n, 6), float(init_damping)))
        else:
            raise InputError(f"refiner: damping must be 'learned' or 'fixed', got {damping!r}")

    def with_budget(self, iterations: int | Sequence[int] | None = None,
                    max_points: int | Sequence[int | None] | None = None) -> FeatureMetricRefiner:
        """This refiner with other iteration counts or point caps (None keeps them), sharing its
        learned damping: a cheaper solve at inference from the same trained weights."""
        if not iterations and not max_points:
            return self
        light = copy.copy(self)
        n = len(self.strides)
        if iterations:
            light.iterations = [int(i) for i in _per_level(iterations, n, "iterations")]
            if min(light.iterations) < 1:
                raise InputError(f"refiner: iterations must be >= 1 per level, got {light.iterations}")
        if max_points:
            light.max_points = [p or None for p in _per_level(max_points, n, "max_points")]
        return light

    def damping(self, level: int) -> torch.Tensor:
        """Lambda per DoF of one level.

        Returns:
            (6,)
        """
        if self.learned_damping:
            lo, hi = LOG10_DAMPING_RANGE
            return 10 ** (lo + torch.sigmoid(self.damping_logits[level]) * (hi - lo))
        return self.fixed_damping[level]

    def forward(self, depth_t: torch.Tensor, K: torch.Tensor, T_init: torch.Tensor, feats_t, feats_s,
                trust: TrustRegion | None = None, prior: PosePrior | None = None,
                cost_reference: torch.Tensor | None = None) -> RefineResult:
        """Refine T_t->s.

        Args:
            depth_t: (B,1,H,W) target depth; 0 or non-finite marks invalid pixels.
            K: (B,3,3) intrinsics at (H, W).
            T_init: (B,4,4) initial target -> source pose.
            feats_t, feats_s: per level, coarse to fine, (features (B,C,h,w), confidence (B,1,h,w)).
            trust: when given, also test each result for acceptance (RefineResult.acceptance).
            prior: when given, a prior on the pose inside every step (see the module notes).
            cost_reference: (B,) cost that converged solves of these features reach, for the
                acceptance's cost-ratio test (NaN or None: no such test).
        Returns:
            RefineResult. It is computed in float64 if the features are float64, otherwise in
            float32, with autocast off.
        """
        self._check(depth_t, K, T_init, feats_t, feats_s)
        dtype = torch.float64 if feats_t[0][0].dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=depth_t.device.type, enabled=False):
            depth = depth_t.detach() if self.detach_depth else depth_t
            depth = depth.to(dtype)
            depth_ok = torch.isfinite(depth) & (depth > 0)
            depth = torch.where(depth_ok, depth, 1.0)
            T = T_init.to(dtype)
            poses, stats = [], []
            for level, ((f_t, c_t), (f_s, c_s)) in enumerate(zip(feats_t, feats_s)):
                if level > 0 and self.detach_between_levels:
                    T = T.detach()
                problem = self._level_problem(level, depth, depth_ok, K.to(dtype), f_t.to(dtype), c_t.to(dtype),
                                              f_s.to(dtype), c_s.to(dtype))
                T, level_stats, hessian = self._refine_level(level, T, problem, prior)
                poses.append(T)
                stats.append(level_stats)
            success = torch.stack([s.success for s in stats]).all(0)
            acceptance = None
            if trust is not None:
                acceptance = self._accept(problem, T_init.to(dtype), T, depth, depth_ok, success, trust,
                                          cost_reference)
        return RefineResult(pose=T, level_poses=poses, level_stats=stats, success=success, hessian=hessian,
                            acceptance=acceptance)

    def _level_problem(self, level, depth, depth_ok, K, f_t, c_t, f_s, c_s) -> LevelProblem:
        """Target points, features and source maps of one level."""
        _, _, h, w = f_t.shape
        H_full, W_full = depth.shape[-2:]
        K_level = scale_intrinsics(K, w / W_full, h / H_full)
        d, ok = resize_depth(depth, depth_ok, (h, w))
        points = backproject(d, torch.linalg.inv(K_level))
        feat, conf, ok = f_t.flatten(2), c_t.flatten(1), ok.flatten(1)
        subset = self._subset(h * w, level, points.device)
        if subset is not None:
            points, feat, conf, ok = points[..., subset], feat[..., subset], conf[:, subset], ok[:, subset]
        if not (all_finite(feat) and all_finite(conf)):
            ok = ok & torch.isfinite(feat).all(1) & torch.isfinite(conf)
        feat, conf = torch.where(ok[:, None], feat, 0.0), torch.where(ok, conf, 0.0)
        return LevelProblem(points, ok, feat, conf, source_maps(f_s, c_s), K_level)

    def _linearize(self, problem: LevelProblem, T: torch.Tensor) -> Linearization:
        return linearize(T, problem.points, problem.ok, problem.feat, problem.conf, problem.source, problem.K,
                         self.margin, self.robust_alpha, self.robust_scale)

    def _refine_level(self, level: int, T: torch.Tensor, problem: LevelProblem, prior: PosePrior | None = None):
        """LM iterations at one level; returns the pose, LevelStats and the last H (without the prior)."""
        B = T.shape[0]
        damping = self.damping(level).to(T.dtype)
        solved_all = torch.ones(B, dtype=torch.bool, device=T.device)
        if prior is not None:
            prior_inv = invert_transform(prior.pose.to(T.dtype))
            information = prior.information.to(T.dtype)
        for _ in range(self.iterations[level]):
            lin = self._linearize(problem, T)
            H, g = normal_equations(lin)
            H_step, g_step = H, g
            if prior is not None:
                variance = lin.cost.sum(1) / lin.valid.sum(1).clamp(min=1)
                H_step, g_step = add_prior(H, g, se3_log(T @ prior_inv), information, variance)
            delta, solved = damped_step(H_step, g_step, damping, is_informative(lin, self.min_valid_points))
            T = se3_exp(delta) @ T
            solved_all = solved_all & solved
        num_valid = lin.valid.sum(1).to(T.dtype)
        stats = LevelStats(
            cost=lin.cost.sum(1) / num_valid.clamp(min=1),
            num_valid=num_valid,
            valid_fraction=num_valid / problem.points.shape[-1],
            success=solved_all,
        )
        return T, stats, torch.where(solved[:, None, None], H, 0.0)

    @torch.no_grad()
    def _accept(self, problem: LevelProblem, T_start, T_final, depth, depth_ok, success,
                trust: TrustRegion, cost_reference: torch.Tensor | None = None) -> Acceptance:
        """The acceptance test of the finest level's result against its start (see TrustRegion)."""
        T_final = T_final.detach()
        start, final = self._linearize(problem, T_start), self._linearize(problem, T_final)
        common = start.valid & final.valid
        num_common = common.sum(1)
        n = num_common.clamp(min=1).to(T_final.dtype)
        cost_start = torch.where(common, start.cost, 0.0).sum(1) / n
        cost_final = torch.where(common, final.cost, 0.0).sum(1) / n
        rotation = torch.rad2deg(so3_log(T_final[:, :3, :3] @ T_start[:, :3, :3].transpose(1, 2)).norm(dim=-1))
        median = torch.nanmedian(torch.where(depth_ok, depth, torch.nan).flatten(1), dim=1).values
        translation = (T_final[:, :3, 3] - T_start[:, :3, 3]).norm(dim=-1) / median
        checks = (
            (success, "the solve failed"),
            (torch.isfinite(T_final).all(-1).all(-1) & torch.isfinite(cost_final), "the result is not finite"),
            (num_common >= self.min_valid_points, "too few points valid at both poses"),
            (cost_final <= cost_start, "the cost rose"),
            (rotation <= trust.max_rotation_deg, f"it rotated more than {trust.max_rotation_deg:g} deg from the start"),
            (translation <= trust.max_translation,
             f"it moved more than {trust.max_translation:g} x the median depth from the start"),
        )
        if cost_reference is not None:
            reference = torch.as_tensor(cost_reference, dtype=cost_final.dtype, device=cost_final.device)
            # NaN (no reference yet) passes: the comparison below is False only for a real excess
            excess = cost_final > trust.max_cost_ratio * reference.expand_as(cost_final)
            checks += ((~excess, f"its cost stayed above {trust.max_cost_ratio:g} x what converged solves reach"),)
        accepted = torch.ones_like(success)
        reasons = [""] * len(success)
        for ok, text in checks:
            for i in torch.nonzero(accepted & ~ok).flatten().tolist():
                reasons[i] = text
            accepted = accepted & ok
        return Acceptance(cost_start, cost_final, num_common, rotation, translation, accepted, reasons)

    def _subset(self, n: int, level: int, device) -> torch.Tensor | None:
        """Indices of the target pixels used at a level, or None for all."""
        cap = self.max_points[level]
        if cap is None or n <= cap:
            return None
        generator = None if self.training else torch.Generator().manual_seed(level)
        return torch.randperm(n, generator=generator)[:cap].to(device)

    def _check(self, depth, K, T_init, feats_t, feats_s) -> None:
        """Raise InputError for shapes that cannot belong together."""
        n = len(self.strides)
        if depth.dim() != 4 or depth.shape[1] != 1:
            raise InputError(f"refiner: depth_t must be (B,1,H,W), got {tuple(depth.shape)}")
        B, _, H, W = depth.shape
        if tuple(K.shape) != (B, 3, 3) or tuple(T_init.shape) != (B, 4, 4):
            raise InputError(f"refiner: K must be ({B},3,3) and T_init ({B},4,4), got {tuple(K.shape)} and {tuple(T_init.shape)}")
        if len(feats_t) != n or len(feats_s) != n:
            raise InputError(f"refiner: expected {n} feature levels (strides {self.strides}), got {len(feats_t)} and {len(feats_s)}")
        for stride, (f_t, c_t), (f_s, c_s) in zip(self.strides, feats_t, feats_s):
            if f_t.dim() != 4 or f_t.shape != f_s.shape or f_t.shape[0] != B:
                raise InputError(f"refiner: stride-{stride} features must both be ({B},C,h,w), got {tuple(f_t.shape)} and {tuple(f_s.shape)}")
            expected = (B, 1, *f_t.shape[-2:])
            if tuple(c_t.shape) != expected or tuple(c_s.shape) != expected:
                raise InputError(f"refiner: stride-{stride} confidences must be {expected}, got {tuple(c_t.shape)} and {tuple(c_s.shape)}")
            h, w = f_t.shape[-2:]
            if h not in (H // stride, -(-H // stride)) or w not in (W // stride, -(-W // stride)):
                raise InputError(
                    f"refiner: stride-{stride} maps should be about {H / stride:g}x{W / stride:g} for depth {H}x{W}, "
                    f"got {h}x{w} (levels must be ordered coarse to fine)"
                )
