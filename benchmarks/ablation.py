"""Baseline (Monodepth2 pipeline) vs SA4Depth, identical budgets and seeds, on a synthetic suite.

Training sequences differ in trajectory and camera height (so in scene scale); held-out
sequences are other worlds. For every configuration and seed it reports depth accuracy
(median-scaled AbsRel, d1), scale consistency (std/mean of the per-frame GT/pred median ratio
within a sequence, and of the per-sequence mean ratio across sequences), the pose-vs-depth scale
ratio, and 5-frame / full-trajectory ATE for PoseNet-only and refined odometry; then mean ± std
over seeds, plus the training-step time of each configuration measured in the same run.

    python benchmarks/ablation.py                       # 64x192, 400 steps, seeds 0 1 2
    python benchmarks/ablation.py --seeds 0 --variants depth_detached distill both no_level_detach
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from common import KITTI_GT, RESULTS, evaluate, machine, save_result, synthetic, train
from sa4depth_core.config import load_config

CONFIGS = {
    "baseline": ["refine.enabled=false"],
    "sa4depth": ["refine.enabled=true"],
    "depth_detached": ["refine.enabled=true", "refine.detach_depth=true"],  # the default until 2026-11-26
    "distill": ["refine.enabled=true", "refine.pose_supervision=distill"],
    "both": ["refine.enabled=true", "refine.pose_supervision=both"],
    "no_level_detach": ["refine.enabled=true", "refine.detach_between_levels=false"],
}


def suite(h: int, w: int, frames: int):
    kitti = str(KITTI_GT / "00.txt") if (KITTI_GT / "00.txt").exists() else None
    train_seqs = [
        synthetic("abl_car_a", frames, h, w, seed=11, trajectory="car", camera_height=1.65),
        synthetic("abl_car_b", frames, h, w, seed=12, trajectory="car", camera_height=2.2),
        synthetic("abl_hand", frames, h, w, seed=13, trajectory="handheld", camera_height=1.3),
    ]
    if kitti:
        train_seqs.append(synthetic("abl_kitti00", frames, h, w, seed=14, trajectory="kitti", kitti_poses=kitti,
                                    kitti_start=100))
    test_seqs = [
        synthetic("abl_test_car", frames // 2, h, w, seed=21, trajectory="car", camera_height=1.4),
        synthetic("abl_test_car_high", frames // 2, h, w, seed=22, trajectory="car", camera_height=2.0),
    ]
    if kitti:
        test_seqs.append(synthetic("abl_test_kitti", frames // 2, h, w, seed=23, trajectory="kitti",
                                   kitti_poses=str(KITTI_GT / "05.txt"), kitti_start=300))
    return train_seqs, test_seqs


def flatten(result: dict) -> dict:
    """The reported scalars of one evaluation, averaged over held-out sequences."""
    seqs = list(result["sequences"].values())
    out = {
        "AbsRel": result["abs_rel"],
        "d1": result["a1"],
        "scale std/mean (in seq)": np.mean([s["scale_std_over_mean"] for s in seqs]),
        "scale std/mean (across seq)": result["scale_across_sequences_std_over_mean"],
    }
    for mode in [m for m in ("posenet", "refined") if m in seqs[0]]:  # no refined rows without trained features
        out[f"pose/depth ratio {mode}"] = np.mean([s[mode]["pose_depth_ratio_mean"] for s in seqs])
        out[f"pose/depth ratio std/mean {mode}"] = np.mean([s[mode]["pose_depth_ratio_std_over_mean"] for s in seqs])
        out[f"ATE5 {mode}"] = np.mean([s[mode]["ate5"] for s in seqs])
        out[f"ATE {mode}"] = np.mean([s[mode]["ate_7dof"] for s in seqs])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--size", default="64x192", help="HxW; 64x192 learns several times faster per CPU minute")
    p.add_argument("--frames", type=int, default=120, help="frames per training sequence (test: half)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--variants", nargs="*", default=[], choices=[k for k in CONFIGS if k not in ("baseline", "sa4depth")])
    p.add_argument("--variants-only", action="store_true",
                   help="train just sa4depth and the variants (the baseline comes from the main run)")
    args = p.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    train_seqs, test_seqs = suite(h, w, args.frames)
    names = ([] if args.variants_only else ["baseline"]) + ["sa4depth", *args.variants]
    runs: dict[str, list] = {n: [] for n in names}
    step_time: dict[str, list] = {n: [] for n in names}
    for seed in args.seeds:
        for name in names:
            overrides = [f"model.height={h}", f"model.width={w}", f"train.batch_size={args.batch}", "train.epochs=1000",
                         f"train.max_steps={args.steps}", "train.val_every=1000000", "train.save_every=1000000",
                         "train.lr=2e-4", f"train.seed={seed}", *CONFIGS[name]]
            t0 = time.time()
            trainer = train(overrides, train_seqs, RESULTS / "runs" / f"ablation_{name}_{seed}", log=lambda *a: None)
            step_time[name].append((time.time() - t0) / max(trainer.step, 1))
            result = evaluate(trainer, load_config(None, overrides), test_seqs)
            runs[name].append({"seed": seed, **flatten(result), "raw": result})
            print(f"seed {seed} {name}: AbsRel {result['abs_rel']:.3f}, {step_time[name][-1]:.2f} s/step", flush=True)
    metrics = [k for k in runs["sa4depth"][0] if k not in ("seed", "raw")]
    print(f"\n## ablation ({machine()})")
    print(f"{len(train_seqs)} training sequences, {len(test_seqs)} held-out, {h}x{w}, batch {args.batch}, "
          f"{args.steps} steps, seeds {args.seeds}; mean ± std (ddof=1) over seeds\n")
    print("| metric | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    summary = {}
    for m in metrics:
        cells = []
        for n in names:
            vals = np.array([r.get(m, np.nan) for r in runs[n]], dtype=float)
            spread = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
            summary.setdefault(n, {})[m] = (float(vals.mean()), spread)
            cells.append(f"{vals.mean():.4f} ± {spread:.4f}")
        print(f"| {m} | " + " | ".join(cells) + " |")
    cells = [f"{np.mean(step_time[n]):.2f}" for n in names]
    print("| train s/step | " + " | ".join(cells) + " |")
    if "baseline" in step_time:
        ratio = np.mean(step_time["sa4depth"]) / np.mean(step_time["baseline"])
        print(f"\ntraining step time with / without refinement: {ratio:.2f}x (same run)")
    path = save_result("ablation", {"args": vars(args), "summary": summary, "step_time": step_time, "runs": runs})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
