"""One damped Gauss-Newton (Levenberg-Marquardt) step of the feature-metric pose refinement:
the warped residual r = F_s(p') - F_t(p), its Jacobian, the weighted normal equations and a solve
that never puts NaN into the graph. refine.FeatureMetricRefiner iterates these over a pyramid.

Choices the notes leave open, and why:
  * Feature gradients are central differences of bilinear samples at +-1 px, as in PixLoc.
    These are continuous in p'. The exact bilinear derivative jumps at every pixel border,
    which would make the unrolled solver's own gradient jump too. Bilinear interpolation
    commutes with integer shifts. Sampling a precomputed central-difference map at p' is
    therefore exactly the difference of the +-1 px samples (for margin >= 1). So the
    features, their two gradients and the confidence are read in one pass, from a
    channels-last map whose rows hold all of a pixel's values (geometry.sample_rows).
  * The update uses the full SE(3) exponential (geometry.se3_exp). At delta = 0 its Jacobian
    equals PixLoc's (so3exp, rho) approximation, so the analytic Jacobian below holds for both.
  * Samples are not re-normalised after bilinear interpolation. The network normalises every
    pixel, and interpolating between neighbours barely changes the norm.
  * An element fails for an iteration if it has too few valid points, no feature texture
    (zero feature gradients), non-finite normal equations, or a failed solve. A failed
    element gets delta = 0, so its pose is unchanged, bit for bit.
  * Invalid points are not masked out of the big per-point tensors. Their inputs are made
    finite before any division or sample, and their weight is zero. Masking would cost a
    full pass over the tensors, and a NaN left in an unused torch.where branch would still
    poison the backward pass.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .geometry import in_view, project, sample_rows, transform_points

_MIN_DAMPING = 1e-6  # floor of the damping added to each diagonal entry of H
_MIN_Z = 1e-3  # same cut as geometry.in_view
# Mean squared feature gradient (per unit weight) below which a pair has no usable texture.
# Textureless maps give O(1e-14) from float32 interpolation rounding, real ones give >1e-4.
_MIN_TEXTURE = 1e-10


def robust_weight(cost: torch.Tensor, alpha: float, scale: float) -> torch.Tensor:
    """IRLS weight rho'(s) of the scaled Barron loss on squared residual norms.

    rho(s) = 2 c^2 Barron(sqrt(s); alpha, c), so rho'(0) = 1. alpha = 0 gives
    1 / (1 + s / (2 c^2)); alpha = 2 is plain least squares.

    Args:
        cost: (...) squared residual norms s >= 0.
    Returns:
        (...) weights, 1 at s = 0 (decreasing in s for alpha < 2).
    """
    if alpha == 2:
        return torch.ones_like(cost)
    if alpha == 0:
        return 1 / (1 + cost / (2 * scale**2))
    return (cost / (scale**2 * abs(alpha - 2)) + 1) ** (alpha / 2 - 1)


def robust_cost(cost: torch.Tensor, alpha: float, scale: float) -> torch.Tensor:
    """Scaled Barron loss rho(s) whose derivative is robust_weight.

    Args:
        cost: (...) squared residual norms s >= 0.
    Returns:
        (...) robust costs.
    """
    if alpha == 2:
        return cost
    if alpha == 0:
        return 2 * scale**2 * torch.log1p(cost / (2 * scale**2))
    b = abs(alpha - 2)
    return 2 * scale**2 * b / alpha * ((cost / (scale**2 * b) + 1) ** (alpha / 2) - 1)


def pixel_jacobian(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Derivative of the projected pixel w.r.t. a left twist, T <- Exp(delta) T.

    delta = (rho, phi), translation first. The derivative is evaluated at delta = 0 and needs
    only the already transformed point X' = (X, Y, Z). With x = X/Z and y = Y/Z it is
    K[:2,:2] @ [[1/Z, 0, -x/Z, -x y, 1 + x^2, -y], [0, 1/Z, -y/Z, -(1 + y^2), x y, x]]
    (K[1,0] is taken as 0; a skew term K[0,1] is handled).

    Args:
        points: (B,3,N) points in the source camera, Z > 0.
        K: (B,3,3)
    Returns:
        (B,6,2,N): entry [b, k, i, n] is d pixel_i / d delta_k of point n. This layout lets
        the normal equations reduce over (i, n) in a single matrix product.
    """
    X, Y, Z = points.unbind(1)
    inv_z = 1 / Z
    x, y = X * inv_z, Y * inv_z
    zero = torch.zeros_like(x)
    du = torch.stack([inv_z, zero, -x * inv_z, -x * y, 1 + x * x, -y], dim=1)
    dv = torch.stack([zero, inv_z, -y * inv_z, -(1 + y * y), x * y, x], dim=1)
    fx, skew, fy = (K[:, 0, 0, None, None], K[:, 0, 1, None, None], K[:, 1, 1, None, None])
    return torch.stack([fx * du + skew * dv, fy * dv], dim=2)


def source_maps(features: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
    """Source features, their central differences in u and v, and the confidence, in one
    channels-last map, so that each solver iteration reads a point's 3C+1 values as one row.

    Non-finite values are replaced by 0 so that no sample can carry them into the solver.
    The border uses one-sided differences, which a margin of at least 1 px never reads.

    Args:
        features: (B,C,h,w); confidence: (B,1,h,w)
    Returns:
        (B,h,w,3C+1) contiguous
    """
    B, C, h, w = features.shape
    padded = F.pad(features, (1, 1, 1, 1), mode="replicate")
    # written part by part into the channels-last map: one pass each instead of a cat and a transposed copy
    maps = features.new_empty(B, h, w, 3 * C + 1)
    maps[..., :C] = features.permute(0, 2, 3, 1)
    maps[..., C:2 * C] = ((padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2).permute(0, 2, 3, 1)
    maps[..., 2 * C:3 * C] = ((padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2).permute(0, 2, 3, 1)
    maps[..., 3 * C] = confidence[:, 0]
    return _finite_or_zero(maps)


def all_finite(x: torch.Tensor) -> bool:
    """True when every value is finite, in one reduction: a NaN or inf anywhere makes the sum
    non-finite (and a sum that overflows only sends finite values down the careful path)."""
    return bool(torch.isfinite(x.detach().sum()))


def _finite_or_zero(x: torch.Tensor) -> torch.Tensor:
    """x with non-finite values replaced by 0; x itself when all are finite (the common case,
    which then costs one reduction instead of five full passes)."""
    return x if all_finite(x) else torch.where(torch.isfinite(x), x, 0.0)


class Linearization(NamedTuple):
    """Residuals and their Jacobian factors at one pose.

    residual (B,C,M), feature_grad (B,2,C,M) as d/du and d/dv, pixel_jac (B,6,2,M),
    weight (B,M) = C_t C_s rho'(|r|^2), cost (B,M) = C_t C_s rho(|r|^2), valid (B,M) bool.
    Invalid points hold finite values of no meaning, and their weight and cost are zero.
    """

    residual: torch.Tensor
    feature_grad: torch.Tensor
    pixel_jac: torch.Tensor
    weight: torch.Tensor
    cost: torch.Tensor
    valid: torch.Tensor

    def residual_jacobian(self) -> torch.Tensor:
        """J = G @ dp/ddelta.

        Returns:
            (B,M,C,6)
        """
        return torch.einsum("bicm,bkim->bmck", self.feature_grad, self.pixel_jac)


def linearize(
    T: torch.Tensor,
    points: torch.Tensor,
    point_ok: torch.Tensor,
    feat_t: torch.Tensor,
    conf_t: torch.Tensor,
    source: torch.Tensor,
    K: torch.Tensor,
    margin: float = 1.0,
    robust_alpha: float = 0.0,
    robust_scale: float = 0.1,
) -> Linearization:
    """Warp target points into the source and linearise the feature residual.

    Points that are behind the camera or not finite are replaced by a harmless point before
    the projection, so every pixel is finite. Out-of-view pixels are sampled at the clamped
    border and their weight is zero.

    Args:
        T: (B,4,4) target -> source.
        points: (B,3,M) target-camera points; point_ok: (B,M) bool, False for invalid depth.
        feat_t: (B,C,M) target features at the points (finite); conf_t: (B,M) their confidences.
        source: (B,h,w,3C+1) from source_maps().
        K: (B,3,3) intrinsics at this level.
        margin: pixels kept clear of the border; at least 1 keeps the +-1 px differences exact.
    Returns:
        Linearization
    """
    C = feat_t.shape[1]
    h, w = source.shape[1:3]
    moved = transform_points(T, points)
    front = point_ok & torch.isfinite(moved).all(1) & (moved[:, 2] > _MIN_Z)
    moved = torch.where(front[:, None], moved, moved.new_tensor([0.0, 0.0, 1.0])[None, :, None])
    pixels, z = project(moved, K)
    valid = front & in_view(pixels, z, h, w, margin)

    # split, not slicing: its backward is one concatenation instead of three zero-filled copies.
    feat_s, grad_s, conf_s = torch.split(sample_rows(source, pixels), [C, 2 * C, 1], dim=1)
    residual = feat_s - feat_t
    sq = (residual * residual).sum(1)
    conf = torch.where(valid, conf_t * conf_s[:, 0], 0.0)
    return Linearization(
        residual=residual,
        feature_grad=grad_s.unflatten(1, (2, C)),
        pixel_jac=pixel_jacobian(moved, K),
        weight=conf * robust_weight(sq, robust_alpha, robust_scale),
        cost=conf * robust_cost(sq, robust_alpha, robust_scale),
        valid=valid,
    )


def normal_equations(lin: Linearization) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Newton system H = sum w J^T J and g = sum w J^T r.

    The C channels are contracted first, with G^T G (2x2) and G^T r (2) per point. This keeps
    the per-point tensors at 6x2 instead of Cx6.

    Returns:
        H (B,6,6), g (B,6)
    """
    G, J = lin.feature_grad, lin.pixel_jac
    B, _, _, M = J.shape
    Gr = (G * lin.residual[:, None]).sum(2)
    guu, guv, gvv = (G[:, 0] * G[:, 0]).sum(1), (G[:, 0] * G[:, 1]).sum(1), (G[:, 1] * G[:, 1]).sum(1)
    Ju, Jv = J[:, :, 0], J[:, :, 1]
    GGJ = torch.stack([guu[:, None] * Ju + guv[:, None] * Jv, guv[:, None] * Ju + gvv[:, None] * Jv], dim=2)
    Jw = (J * lin.weight[:, None, None]).reshape(B, 6, 2 * M)
    g = (Jw @ Gr.reshape(B, 2 * M, 1))[..., 0]
    H = Jw @ GGJ.reshape(B, 6, 2 * M).transpose(1, 2)
    return H, g


def is_informative(lin: Linearization, min_valid_points: int) -> torch.Tensor:
    """Whether a pair has enough valid points with feature texture to constrain the pose.

    Returns:
        (B,) bool
    """
    texture = (lin.weight * lin.feature_grad.square().sum((1, 2))).sum(1)
    return (lin.valid.sum(1) >= min_valid_points) & (texture > _MIN_TEXTURE * lin.weight.sum(1))


def _solve_spd(A: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve A x = b by Cholesky, with LU where Cholesky fails, and x = 0 where both fail.

    Each decomposition that autograd sees gets a matrix known to work, with the identity
    swapped in elsewhere. A failed factorisation therefore leaves no NaN in the graph.

    Args:
        A: (B,6,6); b: (B,6)
    Returns:
        x (B,6), ok (B,) bool
    """
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device).expand_as(A)
    with torch.no_grad():
        chol_ok = torch.linalg.cholesky_ex(A)[1] == 0
        x_lu, lu_info = torch.linalg.solve_ex(torch.where(chol_ok[:, None, None], eye, A), b)
        lu_ok = ~chol_ok & (lu_info == 0) & torch.isfinite(x_lu).all(-1)
    L = torch.linalg.cholesky(torch.where(chol_ok[:, None, None], A, eye))
    x_chol = torch.cholesky_solve(b[..., None], L)[..., 0]
    x_lu = torch.linalg.solve(torch.where(lu_ok[:, None, None], A, eye), b)
    x = torch.where(chol_ok[:, None], x_chol, torch.where(lu_ok[:, None], x_lu, 0.0))
    return x, chol_ok | lu_ok


def add_prior(H: torch.Tensor, g: torch.Tensor, error: torch.Tensor, information: torch.Tensor,
              variance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The normal equations with a prior residual e on the twist added.

    The step solves (H + s Λ) δ = -(g + s Λ e): the features' H and g assume unit residual
    variance, so the prior's information Λ is brought to their units by the residual variance s.
    e = Log(T Tp^-1) moves by δ to first order under the left update T <- Exp(δ) T.

    Args:
        H: (B,6,6); g: (B,6); error: (B,6) e; information: (B,6,6) Λ; variance: (B,) s.
    Returns:
        H (B,6,6), g (B,6)
    """
    weighted = variance[:, None, None] * information
    return H + weighted, g + (weighted @ error[..., None])[..., 0]


def damped_step(
    H: torch.Tensor, g: torch.Tensor, damping: torch.Tensor, ok: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """LM step delta = -(H + diag(max(lambda * diag(H), 1e-6)))^-1 g.

    Args:
        H: (B,6,6); g: (B,6); damping: (6,) lambda per DoF; ok: (B,) elements worth solving.
    Returns:
        delta (B,6), zero where not solved; solved (B,) bool
    """
    diag = H.diagonal(dim1=-2, dim2=-1)
    H = H + torch.diag_embed((damping * diag).clamp(min=_MIN_DAMPING))
    ok = ok & torch.isfinite(H).all(-1).all(-1) & torch.isfinite(g).all(-1)
    eye = torch.eye(6, dtype=H.dtype, device=H.device)
    delta, solved = _solve_spd(torch.where(ok[:, None, None], H, eye), torch.where(ok[:, None], -g, 0.0))
    solved = solved & ok & torch.isfinite(delta).all(-1)
    return torch.where(solved[:, None], delta, 0.0), solved
