"""The training objective: Monodepth2's multi-scale minimum-reprojection loss, driven by the
LM-refined poses when SA4Depth refinement is on, plus PoseNet's own learning signal."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import Config
from .geometry import invert_transform, se3_log, warp
from .losses import min_reprojection_loss, photometric_error, smoothness_loss
from .model import SA4DepthModel
from .networks.depth_decoder import disp_to_depth


def reprojection_loss(target, sources, depth, poses, K, K_inv, alpha, automask):
    """Minimum-reprojection loss of one depth map under one set of poses (Monodepth2's
    per-pixel minimum over sources, SSIM + L1, optional auto-mask); also the online score's term.

    Args:
        target: (B,3,H,W); sources: list of (B,3,H,W); depth: (B,1,H,W);
        poses: list of (B,4,4) T_t->s; K, K_inv: (B,3,3) at (H,W).
    Returns:
        scalar loss, auto-mask (B,1,H,W)
    """
    warped_errors, masks = [], []
    for source, T in zip(sources, poses):
        warped, valid = warp(source, depth, T, K, K_inv)
        warped_errors.append(photometric_error(warped, target, alpha))
        masks.append(valid)
    identity = [photometric_error(s, target, alpha) for s in sources] if automask else None
    return min_reprojection_loss(warped_errors, identity, masks)


def compute_losses(model: SA4DepthModel, batch: dict, cfg: Config, refine: bool | None = None) -> tuple[torch.Tensor, dict]:
    """Total loss for a batch of frame tuples, and scalar statistics for logging.

    Args:
        batch: images (B,F,3,H,W) ordered as cfg.model.frame_offsets (target first), K (B,3,3),
            and optionally images_aug (B,F,3,H,W): colour-jittered copies that the networks see
            while the photometric loss compares the original colours.
        refine: override cfg.refine.enabled (None = use the config).
    Returns:
        total loss (scalar tensor), stats {name: float}
    """
    offsets = list(cfg.model.frame_offsets)
    images, K = batch["images"], batch["K"]
    K_inv = torch.inverse(K)
    net_images = batch.get("images_aug", images)
    target = images[:, 0]
    sources = [images[:, i] for i in range(1, len(offsets))]
    disps = model.disparities(net_images[:, 0])
    use_refine = cfg.refine.enabled if refine is None else refine
    H, W = target.shape[-2:]
    stats: dict[str, float] = {}

    depths = {}
    for s in cfg.model.scales:
        disp = F.interpolate(disps[("disp", s)], size=(H, W), mode="bilinear", align_corners=False)
        depths[s] = disp_to_depth(disp, cfg.model.min_depth, cfg.model.max_depth)[1]

    level_poses: list[list[torch.Tensor]] = []
    if use_refine:
        feats = model.feature_net(net_images.flatten(0, 1))
        n_frames = images.shape[1]
        per_frame = [[(f.unflatten(0, (-1, n_frames))[:, i], c.unflatten(0, (-1, n_frames))[:, i]) for f, c in feats]
                     for i in range(n_frames)]
        posenet, refined, success, cost = [], [], [], []
        for i, offset in enumerate(offsets[1:], 1):
            T0, result = model.pose_step(net_images[:, 0], net_images[:, i], offset, depths[0], K, per_frame[0],
                                         per_frame[i])
            posenet.append(T0)
            refined.append(result.pose)
            level_poses.append(result.level_poses[:-1])
            success.append(result.success.float().mean().item())
            cost.append(result.cost.mean().item())
        stats["refine_success"] = sum(success) / len(success)
        stats["refine_cost"] = sum(cost) / len(cost)
        delta = se3_log(invert_transform(torch.stack(posenet)) @ torch.stack(refined).detach())
        stats["refine_dt"] = delta[..., :3].norm(dim=-1).mean().item()
        stats["refine_drot_deg"] = torch.rad2deg(delta[..., 3:].norm(dim=-1)).mean().item()
    else:
        posenet = [model.relative_pose(net_images[:, 0], net_images[:, i], o) for i, o in enumerate(offsets[1:], 1)]
        refined = posenet

    alpha, automask = cfg.loss.ssim_alpha, cfg.loss.automask
    photo = 0.0
    for s in cfg.model.scales:
        loss_s, mask = reprojection_loss(target, sources, depths[s], refined, K, K_inv, alpha, automask)
        smooth_img = F.interpolate(target, size=disps[("disp", s)].shape[-2:], mode="area")
        photo = photo + loss_s + cfg.loss.smoothness * smoothness_loss(disps[("disp", s)], smooth_img) / (2**s)
        if s == 0:
            stats["automask_fraction"] = mask.mean().item()
    total = photo / len(cfg.model.scales)
    stats["photometric"] = float(total.detach())

    # The auxiliary terms below add full-resolution photometric losses on top of the main one;
    # whether they also train the depth network is a switch, so the comparison with the baseline
    # can isolate what the refinement itself does (benchmarks/study.py).
    aux_depth = depths[0] if cfg.refine.aux_trains_depth else depths[0].detach()
    if not use_refine and cfg.loss.baseline_aux:
        # the control: the same auxiliary weight as SA4Depth's (PoseNet's own term plus the level
        # terms), all with PoseNet's pose
        aux, _ = reprojection_loss(target, sources, aux_depth, posenet, K, K_inv, alpha, automask)
        total = total + (1 + cfg.refine.level_loss_weight) * aux
        stats["baseline_aux_photometric"] = aux.item()
    if use_refine:
        supervision = cfg.refine.pose_supervision
        if "pose_net" in model.frozen:  # fitting the refiner alone: PoseNet's terms have no gradient
            supervision = "none"
        if supervision in ("photometric", "both"):
            posenet_loss, _ = reprojection_loss(target, sources, aux_depth, posenet, K, K_inv, alpha, automask)
            total = total + posenet_loss
            stats["posenet_photometric"] = posenet_loss.item()
        if supervision in ("distill", "both"):
            pull = torch.stack([se3_log(invert_transform(T0) @ Tr.detach()) for T0, Tr in zip(posenet, refined)])
            distill = pull.norm(dim=-1).mean()
            total = total + cfg.refine.distill_weight * distill
            stats["pose_distill"] = distill.item()
        # Coarser LM levels get their own photometric loss, otherwise a detach between levels
        # would leave their features and damping without gradient.
        if cfg.refine.level_loss_weight > 0 and level_poses and level_poses[0]:
            n_levels = len(level_poses[0])
            level_loss = 0.0
            for level in range(n_levels):
                poses = [lp[level] for lp in level_poses]
                level_loss = level_loss + reprojection_loss(target, sources, aux_depth, poses, K, K_inv, alpha, automask)[0]
            total = total + cfg.refine.level_loss_weight * level_loss / n_levels
            stats["level_photometric"] = level_loss.item() / n_levels
    stats["loss"] = total.item()
    return total, stats
