"""Self-supervised validation score of a model on held-out triplets (lower is better).

score = photometric + scale_weight * depth_inconsistency

photometric: Monodepth2's per-pixel minimum reprojection error (SSIM + L1, auto-mask) of the
    target frame, with the sources warped by the LM-refined poses and the full-resolution depth.
depth_inconsistency: scale-consistency proxy. The target depth, moved into each source frame
    with the refined pose, should equal the source frame's own predicted depth; the mean of
    |z_t->s - d_s| / (z_t->s + d_s) (in [0, 1]) over pixels that land in the source view is 0 for a
    depth network whose scale does not wander from frame to frame (the geometry-consistency
    term of SC-SfMLearner, used here only as a measure). It is scale-free, so it compares
    models of different scales fairly.

The refinement samples random pixels and the auto-mask breaks ties with noise: scoring runs
under a fixed seed so two models are compared on identical draws.
"""
from __future__ import annotations

import numpy as np
import torch

from ..config import Config
from ..errors import InputError
from ..geometry import backproject, in_view, project, sample, transform_points
from ..model import SA4DepthModel
from ..objective import reprojection_loss
from .keyframes import Triplet


def triplet_batch(images: np.ndarray, K: np.ndarray, device: torch.device) -> dict:
    """Network batch from stacked triplets.

    Args:
        images: (B,3,H,W,3) uint8 or float in [0,1]; K: (B,3,3).
    Returns:
        {"images": (B,3,3,H,W) float32 in [0,1], "K": (B,3,3) float32}, the layout of
        objective.compute_losses with frame offsets (0, -1, 1).
    """
    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    return {"images": x.permute(0, 1, 4, 2, 3).contiguous().to(device),
            "K": torch.from_numpy(np.asarray(K, dtype=np.float32)).to(device)}


def depth_inconsistency(depth_t: torch.Tensor, depth_s: torch.Tensor, T: torch.Tensor, K: torch.Tensor,
                        K_inv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised difference between the target depth moved into the source view and the source depth.

    Args:
        depth_t, depth_s: (B,1,H,W); T: (B,4,4) T_t->s; K, K_inv: (B,3,3).
    Returns:
        (sum over valid pixels, number of valid pixels), both scalar tensors.
    """
    H, W = depth_t.shape[-2:]
    pixels, z = project(transform_points(T, backproject(depth_t, K_inv)), K)
    valid = in_view(pixels, z, H, W)
    sampled = sample(depth_s, pixels)[:, 0]
    diff = (z - sampled).abs() / (z + sampled).clamp_min(1e-6)
    return torch.where(valid, diff, torch.zeros_like(diff)).sum(), valid.sum()


@torch.no_grad()
def _batch_terms(model: SA4DepthModel, batch: dict, cfg: Config) -> tuple[float, float, int, float]:
    images, K = batch["images"], batch["K"]
    K_inv = torch.inverse(K)
    target = images[:, 0]
    depth_t = model.depth(target)
    feats_t = model.feature_net(target) if cfg.refine.enabled else None
    inconsistent, counted, refined_ok = 0.0, 0, 0.0
    offsets = list(cfg.model.frame_offsets)[1:]
    sources, poses = [images[:, i] for i in range(1, len(offsets) + 1)], []
    for source, offset in zip(sources, offsets):
        if cfg.refine.enabled:
            _, result = model.pose_step(target, source, offset, depth_t, K, feats_t)
            T = result.pose
            refined_ok += result.success.float().mean().item() / len(offsets)
        else:
            T = model.relative_pose(target, source, offset)
        poses.append(T)
        total, count = depth_inconsistency(depth_t, model.depth(source), T, K, K_inv)
        inconsistent += total.item()
        counted += int(count.item())
    photometric, _ = reprojection_loss(target, sources, depth_t, poses, K, K_inv, cfg.loss.ssim_alpha,
                                       cfg.loss.automask)
    return photometric.item(), inconsistent, counted, refined_ok


def validation_score(model: SA4DepthModel, triplets: list[Triplet], cfg: Config, scale_weight: float,
                     batch_size: int, device: torch.device, seed: int = 0) -> dict:
    """Score a model on validation triplets (see the module docstring).

    The model is left in eval mode.

    Returns:
        {"score", "photometric", "depth_inconsistency", "refine_success", "triplets"} floats
        (non-finite when the model produces non-finite output).
    """
    if not triplets:
        raise InputError("validation_score needs at least one triplet")
    model.eval()
    devices = [device.index or 0] if device.type == "cuda" else []
    photometric, inconsistent, counted, refined = 0.0, 0.0, 0, 0.0
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, len(triplets), batch_size):
            chunk = triplets[start:start + batch_size]
            batch = triplet_batch(np.stack([t.images for t in chunk]), np.stack([t.K for t in chunk]), device)
            p, s, c, r = _batch_terms(model, batch, cfg)
            photometric += p * len(chunk)
            refined += r * len(chunk)
            inconsistent += s
            counted += c
    n = len(triplets)
    photometric /= n
    # No target pixel landing in a source view (e.g. a PoseNet that diverged to metres of motion
    # per frame) is total disagreement, the measure's maximum.
    inconsistency = inconsistent / counted if counted else 1.0
    return {"score": photometric + scale_weight * inconsistency, "photometric": photometric,
            "depth_inconsistency": inconsistency, "refine_success": refined / n, "triplets": float(n)}
