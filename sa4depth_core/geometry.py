"""Camera geometry in torch: SO(3)/SE(3) maps, back-projection, projection, warping, intrinsics.

Conventions used across the project:
  * Pixel (u, v) with integer values at pixel centres; u is the column, v the row.
  * Relative pose T_t->s (B,4,4) maps points of the target camera into the source camera.
  * Twists are (B,6) with translation first: (rho_x, rho_y, rho_z, phi_x, phi_y, phi_z).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_SMALL_ANGLE = 1e-4


def skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrices.

    Args:
        v: (..., 3)
    Returns:
        (..., 3, 3) with skew(v) @ x == cross(v, x).
    """
    zero = torch.zeros_like(v[..., 0])
    x, y, z = v.unbind(-1)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*v.shape[:-1], 3, 3)


def _taylor_safe_theta(phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Angle and a gradient-safe copy of it for division.

    Returns theta (...,) and theta_safe (...,) which is 1 where the angle is tiny so that
    the closed-form coefficients never divide by zero (their Taylor branch is used there).
    """
    theta2 = (phi * phi).sum(-1)
    small = theta2 < _SMALL_ANGLE**2
    theta_safe = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
    return small, theta_safe


def so3_exp(phi: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula.

    Args:
        phi: (..., 3) axis-angle (radians).
    Returns:
        (..., 3, 3) rotation matrices.
    """
    small, theta = _taylor_safe_theta(phi)
    theta2 = (phi * phi).sum(-1)
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta**2)
    W = skew(phi)
    eye = torch.eye(3, dtype=phi.dtype, device=phi.device).expand_as(W)
    return eye + a[..., None, None] * W + b[..., None, None] * (W @ W)


def so3_log(R: torch.Tensor) -> torch.Tensor:
    """Inverse of so3_exp for angles in [0, pi).

    Args:
        R: (..., 3, 3) rotation matrices.
    Returns:
        (..., 3) axis-angle.
    """
    trace = R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2]
    cos = ((trace - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    theta = torch.acos(cos)
    vee = torch.stack(
        [R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], dim=-1
    )
    small = theta < _SMALL_ANGLE
    factor = torch.where(small, 0.5 + theta**2 / 12, theta / (2 * torch.sin(torch.where(small, torch.ones_like(theta), theta))))
    return factor[..., None] * vee


def se3_exp(xi: torch.Tensor) -> torch.Tensor:
    """Exponential map of se(3).

    Args:
        xi: (..., 6) twist, translation part first.
    Returns:
        (..., 4, 4) rigid transforms.
    """
    rho, phi = xi[..., :3], xi[..., 3:]
    small, theta = _taylor_safe_theta(phi)
    theta2 = (phi * phi).sum(-1)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta**2)
    c = torch.where(small, 1.0 / 6 - theta2 / 120, (theta - torch.sin(theta)) / theta**3)
    W = skew(phi)
    eye = torch.eye(3, dtype=xi.dtype, device=xi.device).expand_as(W)
    V = eye + b[..., None, None] * W + c[..., None, None] * (W @ W)
    return make_transform(so3_exp(phi), (V @ rho[..., None])[..., 0])


def se3_log(T: torch.Tensor) -> torch.Tensor:
    """Logarithm map of SE(3), inverse of se3_exp.

    Args:
        T: (..., 4, 4) rigid transforms.
    Returns:
        (..., 6) twist, translation first.
    """
    phi = so3_log(T[..., :3, :3])
    small, theta = _taylor_safe_theta(phi)
    theta2 = (phi * phi).sum(-1)
    half = theta / 2
    # coefficient of W^2 in V^-1 = I - W/2 + d W^2
    d = torch.where(small, 1.0 / 12 + theta2 / 720, (1 - half * torch.cos(half) / torch.sin(half)) / theta**2)
    W = skew(phi)
    eye = torch.eye(3, dtype=T.dtype, device=T.device).expand_as(W)
    V_inv = eye - 0.5 * W + d[..., None, None] * (W @ W)
    rho = (V_inv @ T[..., :3, 3:4])[..., 0]
    return torch.cat([rho, phi], dim=-1)


def make_transform(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Stack rotation and translation.

    Args:
        R: (..., 3, 3); t: (..., 3)
    Returns:
        (..., 4, 4)
    """
    top = torch.cat([R, t[..., None]], dim=-1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], dim=-2)


def invert_transform(T: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms without a general matrix inverse.

    Args:
        T: (..., 4, 4)
    Returns:
        (..., 4, 4)
    """
    Rt = T[..., :3, :3].transpose(-1, -2)
    return make_transform(Rt, -(Rt @ T[..., :3, 3:4])[..., 0])


def se3_adjoint(T: torch.Tensor) -> torch.Tensor:
    """Adjoint of rigid transforms for twists ordered translation first:
    T @ se3_exp(xi) @ inv(T) == se3_exp(se3_adjoint(T) @ xi).

    Args:
        T: (..., 4, 4)
    Returns:
        (..., 6, 6) = [[R, skew(t) R], [0, R]]
    """
    R, t = T[..., :3, :3], T[..., :3, 3]
    top = torch.cat([R, skew(t) @ R], dim=-1)
    bottom = torch.cat([torch.zeros_like(R), R], dim=-1)
    return torch.cat([top, bottom], dim=-2)


def pose_from_axisangle(axisangle: torch.Tensor, translation: torch.Tensor, invert: bool = False) -> torch.Tensor:
    """Pose-network output to a transform, as Monodepth2 builds it.

    The network's translation is applied after the rotation (T = [R | t]); with invert=True the
    inverse transform is returned, which is how the pose of a source frame that precedes the
    target is turned around.

    Args:
        axisangle: (B, 1, 3) or (B, 3); translation: same shape.
    Returns:
        (B, 4, 4)
    """
    R = so3_exp(axisangle.reshape(-1, 3))
    T = make_transform(R, translation.reshape(-1, 3))
    return invert_transform(T) if invert else T


def scale_intrinsics(K, sx: float, sy: float):
    """Intrinsics of an image resized by (sx, sy) with pixel centres at integers.

    A pixel centre u maps to (u + 0.5) * sx - 0.5 (as cv2.resize samples), so cx and cy move
    by half a pixel more than a plain multiplication would.

    Args:
        K: (..., 3, 3) torch tensor or numpy array.
    Returns:
        (..., 3, 3) of the same type.
    """
    K = K.clone() if isinstance(K, torch.Tensor) else K.copy()
    K[..., 0, 0] = K[..., 0, 0] * sx
    K[..., 0, 2] = (K[..., 0, 2] + 0.5) * sx - 0.5
    K[..., 1, 1] = K[..., 1, 1] * sy
    K[..., 1, 2] = (K[..., 1, 2] + 0.5) * sy - 0.5
    return K


def pixel_grid(height: int, width: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """Homogeneous pixel coordinates in row-major order.

    Returns:
        (3, H*W) rows u, v, 1.
    """
    v, u = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device), torch.arange(width, dtype=dtype, device=device), indexing="ij"
    )
    return torch.stack([u.reshape(-1), v.reshape(-1), torch.ones(height * width, dtype=dtype, device=device)])


def backproject(depth: torch.Tensor, K_inv: torch.Tensor) -> torch.Tensor:
    """Lift every pixel to a 3-D point in its camera frame.

    Args:
        depth: (B, 1, H, W) z-depth.
        K_inv: (B, 3, 3)
    Returns:
        (B, 3, H*W) points.
    """
    B, _, H, W = depth.shape
    rays = K_inv @ pixel_grid(H, W, depth.dtype, depth.device)
    return rays * depth.reshape(B, 1, H * W)


def transform_points(T: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply rigid transforms.

    Args:
        T: (B, 4, 4); points: (B, 3, N)
    Returns:
        (B, 3, N)
    """
    return T[:, :3, :3] @ points + T[:, :3, 3:4]


def project(points: torch.Tensor, K: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Pinhole projection.

    Args:
        points: (B, 3, N) in the camera frame.
        K: (B, 3, 3)
    Returns:
        pixels (B, N, 2) as (u, v), and z (B, N). Points with z <= eps get a clamped
        denominator; callers mask them with z.
    """
    z = points[:, 2]
    uvw = K @ points
    z_safe = torch.where(z.abs() > eps, z, torch.full_like(z, eps))
    return (uvw[:, :2] / z_safe[:, None]).transpose(1, 2), z


def pixels_to_grid(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates to grid_sample's [-1, 1] range (align_corners=True).

    Args:
        pixels: (B, N, 2)
    Returns:
        (B, N, 2)
    """
    scale = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], dtype=pixels.dtype, device=pixels.device)
    return pixels * scale - 1


def sample(image: torch.Tensor, pixels: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Bilinear samples of an image at pixel positions.

    Args:
        image: (B, C, H, W); pixels: (B, N, 2) as (u, v)
    Returns:
        (B, C, N)
    """
    H, W = image.shape[-2:]
    grid = pixels_to_grid(pixels, H, W)[:, :, None]
    return F.grid_sample(image, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)[..., 0]


def sample_rows(image: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of a channels-last image at pixel positions, border-clamped, with the
    values of `sample` (align_corners, border padding): one weighted sum of the four neighbours'
    rows of C contiguous values (embedding_bag), where grid_sample reads each channel's plane
    apart. For a few thousand points on a wide map (the LM's features, their gradients and
    confidence) that is several times faster on a CPU.

    Args:
        image: (B, H, W, C) contiguous, H and W at least 2; pixels: (B, N, 2) as (u, v).
    Returns:
        (B, C, N) contiguous
    """
    B, H, W, C = image.shape
    # non-finite positions are clamped like far ones instead of becoming undefined indices
    u = torch.nan_to_num(pixels[..., 0], nan=0.0).clamp(0, W - 1)
    v = torch.nan_to_num(pixels[..., 1], nan=0.0).clamp(0, H - 1)
    u0, v0 = u.detach().floor().clamp(max=W - 2), v.detach().floor().clamp(max=H - 2)
    du, dv = u - u0, v - v0
    first = torch.arange(B, device=image.device)[:, None] * (H * W) + v0.long() * W + u0.long()
    corners = torch.stack([first, first + 1, first + W, first + W + 1], dim=-1)  # (B,N,4)
    weights = torch.stack([(1 - du) * (1 - dv), du * (1 - dv), (1 - du) * dv, du * dv], dim=-1)
    rows = F.embedding_bag(corners.reshape(-1, 4), image.reshape(B * H * W, C),
                           per_sample_weights=weights.reshape(-1, 4), mode="sum")
    return rows.view(B, -1, C).transpose(1, 2).contiguous()


def in_view(pixels: torch.Tensor, z: torch.Tensor, height: int, width: int, margin: float = 0.0) -> torch.Tensor:
    """Which projections land inside the image and in front of the camera.

    Args:
        pixels: (B, N, 2); z: (B, N)
    Returns:
        (B, N) bool
    """
    u, v = pixels[..., 0], pixels[..., 1]
    finite = torch.isfinite(pixels).all(-1) & torch.isfinite(z)
    return (
        finite
        & (z > 1e-3)
        & (u >= margin)
        & (u <= width - 1 - margin)
        & (v >= margin)
        & (v <= height - 1 - margin)
    )


def warp(source: torch.Tensor, depth: torch.Tensor, T: torch.Tensor, K: torch.Tensor, K_inv: torch.Tensor):
    """Inverse-warp a source image into the target view.

    Args:
        source: (B, C, H, W) source image.
        depth: (B, 1, H, W) target depth.
        T: (B, 4, 4) target -> source.
        K, K_inv: (B, 3, 3) at this resolution.
    Returns:
        warped (B, C, H, W) and valid (B, 1, H, W) float mask of in-view pixels.
    """
    B, _, H, W = depth.shape
    pixels, z = project(transform_points(T, backproject(depth, K_inv)), K)
    warped = sample(source, pixels)
    valid = in_view(pixels, z, H, W)
    return warped.reshape(B, -1, H, W), valid.reshape(B, 1, H, W).to(source.dtype)
