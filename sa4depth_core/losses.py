"""Self-supervised losses: SSIM + L1 photometric error, per-pixel minimum reprojection with
auto-masking, and edge-aware smoothness of mean-normalised disparity (Monodepth2's recipe)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def ssim_dissimilarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) / 2 over 3x3 windows with reflection padding.

    Args:
        x, y: (B, C, H, W) images in [0, 1].
    Returns:
        (B, C, H, W) values in [0, 1].
    """
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    var_x = F.avg_pool2d(x * x, 3, 1) - mu_x**2
    var_y = F.avg_pool2d(y * y, 3, 1) - mu_y**2
    cov = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return ((1 - num / den) / 2).clamp(0, 1)


def photometric_error(pred: torch.Tensor, target: torch.Tensor, alpha: float = 0.85) -> torch.Tensor:
    """Per-pixel alpha * SSIM term + (1 - alpha) * L1, averaged over channels.

    Args:
        pred, target: (B, 3, H, W)
    Returns:
        (B, 1, H, W)
    """
    l1 = (pred - target).abs().mean(1, keepdim=True)
    ssim = ssim_dissimilarity(pred, target).mean(1, keepdim=True)
    return alpha * ssim + (1 - alpha) * l1


def min_reprojection_loss(
    warped_errors: list[torch.Tensor],
    identity_errors: list[torch.Tensor] | None,
    valid_masks: list[torch.Tensor] | None = None,
    identity_jitter: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel minimum over source frames, with Monodepth2's auto-mask.

    A pixel whose un-warped source already matches better than any warped one (static camera,
    objects moving with the camera) is ignored: the identity errors join the minimum, so such
    pixels select an identity term and contribute no depth gradient.

    Args:
        warped_errors: per source, (B, 1, H, W) photometric error of the warped source.
        identity_errors: per source, (B, 1, H, W) error of the raw source, or None to disable
            auto-masking.
        valid_masks: per source, (B, 1, H, W) 1 where the warp landed in the image; pixels out of
            view get a large error so another source (or the identity term) is chosen.
        identity_jitter: tiny noise that breaks ties in favour of neither candidate.
    Returns:
        loss (scalar mean over pixels), and the auto-mask (B, 1, H, W) of pixels that used a warp.
    """
    if valid_masks is not None:
        warped_errors = [e + (1 - m) * 1e3 for e, m in zip(warped_errors, valid_masks)]
    warped = torch.cat(warped_errors, 1)
    n_identity = 0
    if identity_errors is not None:
        identity = torch.cat(identity_errors, 1)
        identity = identity + torch.randn_like(identity) * identity_jitter
        warped = torch.cat([identity, warped], 1)
        n_identity = identity.shape[1]
    per_pixel, idx = warped.min(1, keepdim=True)
    # Pixels that no source saw keep the out-of-view penalty: they carry no information.
    seen = per_pixel < 1e3
    automask = ((idx >= n_identity) & seen).to(per_pixel.dtype)
    return torch.where(seen, per_pixel, torch.zeros_like(per_pixel)).mean(), automask


def smoothness_loss(disp: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware first-order smoothness of mean-normalised disparity.

    Normalising by the mean keeps the penalty from shrinking the disparity's scale.

    Args:
        disp: (B, 1, H, W); image: (B, 3, H, W) at the same resolution.
    Returns:
        scalar
    """
    disp = disp / (disp.mean((2, 3), keepdim=True) + 1e-7)
    dx = (disp[..., :, :-1] - disp[..., :, 1:]).abs()
    dy = (disp[..., :-1, :] - disp[..., 1:, :]).abs()
    ix = (image[..., :, :-1] - image[..., :, 1:]).abs().mean(1, keepdim=True)
    iy = (image[..., :-1, :] - image[..., 1:, :]).abs().mean(1, keepdim=True)
    return (dx * torch.exp(-ix)).mean() + (dy * torch.exp(-iy)).mean()
