"""Where a model's photometric loss comes from: its depth or its PoseNet.

For each world of a split, the Monodepth2 minimum-reprojection loss (SSIM + L1, auto-mask) of
evenly spaced frame triplets under four combinations: the model's depth and PoseNet's poses (what
training sees), the model's depth with the exact poses, the exact depth with the exact poses (the
floor of the objective on these worlds) and the exact depth with PoseNet's poses. Exact poses and
depth are brought to the model's depth scale (each batch's median predicted/exact depth ratio);
pixels without exact depth (sky) keep the model's depth. Also the auto-mask fraction (pixels that
use a warp rather than the identity) and PoseNet's translation length over the exact one.

If the exact poses lower the loss far more than the exact depth does, the poses are what the
photometric gradient will mostly try to fix, and a depth network trained jointly with them will
bend to absorb their error (the study's start, benchmarks/study.py).

    python benchmarks/photometric_check.py CHECKPOINT [--split val] [--frames 60]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from common import exact_geometry, machine
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.data.sequence import TripletDataset
from sa4depth_core.loaded_model import load_model
from sa4depth_core.objective import reprojection_loss
from sa4depth_core.train.trainer import collate
from worlds import WORLDS, worlds

COMBINATIONS = ("model depth, PoseNet", "model depth, exact poses", "exact depth, exact poses",
                "exact depth, PoseNet")


def check_world(model, cfg, root: Path, seq: str, triplets: int) -> dict:
    """{combination: (loss, auto-mask fraction)} and "translation_ratio" over `triplets` evenly
    spaced triplets of one world."""
    m = cfg.model
    data = TripletDataset([KittiOdometrySequence(root, seq)], m.height, m.width, augment=False, with_depth=True)
    batch = collate([data[i] for i in range(0, len(data), max(1, len(data) // triplets))][:triplets])
    images, K = batch["images"], batch["K"]
    K_inv = torch.inverse(K)
    target, sources = images[:, 0], [images[:, i] for i in range(1, images.shape[1])]
    with torch.no_grad():
        depth = model.depth(target)
        scale, exact, exact_poses = exact_geometry(depth, batch)
        posenet = [model.relative_pose(target, images[:, i], offset)
                   for i, offset in enumerate(m.frame_offsets[1:], 1)]
        exact_depth = torch.where(exact > 0, exact * scale, depth)
        out = {}
        for name, d, poses in zip(COMBINATIONS, (depth, depth, exact_depth, exact_depth),
                                  (posenet, exact_poses, exact_poses, posenet)):
            loss, mask = reprojection_loss(target, sources, d, poses, K, K_inv, cfg.loss.ssim_alpha, True)
            out[name] = (loss.item(), mask.mean().item())
        lengths = [(p[:, :3, 3].norm(dim=-1).mean() / e[:, :3, 3].norm(dim=-1).mean()).item()
                   for p, e in zip(posenet, exact_poses)]
    out["translation_ratio"] = sum(lengths) / len(lengths)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--split", choices=list(WORLDS), default="val")
    p.add_argument("--frames", type=int, default=60, help="frames per world (the study: 120 pretrain/train, 60 val/test)")
    p.add_argument("--triplets", type=int, default=24, help="evenly spaced triplets per world")
    args = p.parse_args(argv)
    loaded = load_model(args.checkpoint)
    model, cfg = loaded.model.eval(), loaded.cfg
    print(f"\n## photometric check ({machine()})\n\n{args.checkpoint} on the {args.split} worlds "
          f"({cfg.model.height}x{cfg.model.width}, {args.triplets} triplets per world): loss / auto-mask fraction\n")
    print("| world | PoseNet translation ÷ exact | " + " | ".join(COMBINATIONS) + " |")
    print("|---|---|" + "---|" * len(COMBINATIONS))
    for root, seq in worlds(args.split, cfg.model.height, cfg.model.width, args.frames):
        row = check_world(model, cfg, root, seq, args.triplets)
        print(f"| {root.name} | {row['translation_ratio']:.2f} | "
              + " | ".join(f"{row[c][0]:.4f} / {row[c][1]:.2f}" for c in COMBINATIONS) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
