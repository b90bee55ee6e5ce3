"""Train from scratch on a generated sequence for a fixed budget on this CPU, then compare
median-scaled AbsRel / d1 of the untrained and the trained network on held-out frames of a
sequence generated with a different seed.

    python benchmarks/train_synthetic.py [--minutes 15] [--baseline]
"""
from __future__ import annotations

import argparse
import time

import torch

from common import RESULTS, evaluate, machine, save_result, synthetic, train
from sa4depth_core.config import load_config
from sa4depth_core.model import SA4DepthModel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--minutes", type=float, default=15.0, help="training wall-clock budget")
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps instead (0 = by time)")
    p.add_argument("--size", default="64x192", help="HxW; 64x192 learns several times faster per CPU minute")
    p.add_argument("--train-frames", type=int, default=400)
    p.add_argument("--test-frames", type=int, default=80)
    p.add_argument("--batch", type=int, default=6)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--baseline", action="store_true", help="train without the SA4Depth refinement (Monodepth2 loss)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    torch.manual_seed(args.seed)
    t0 = time.time()
    train_seq = synthetic(f"train_s{args.seed}", args.train_frames, h, w, seed=args.seed)
    test_seq = synthetic("test_s1000", args.test_frames, h, w, seed=1000)
    gen_s = time.time() - t0
    overrides = [f"model.height={h}", f"model.width={w}", f"train.batch_size={args.batch}", "train.epochs=1000",
                 f"train.max_minutes={args.minutes if not args.steps else 0}", f"train.max_steps={args.steps}",
                 "train.val_every=1000000", "train.save_every=1000000", f"train.lr={args.lr}", f"train.seed={args.seed}",
                 f"refine.enabled={not args.baseline}"]
    cfg = load_config(None, overrides)
    untrained = evaluate(SA4DepthModel(cfg), cfg, [test_seq])
    t1 = time.time()
    trainer = train(overrides, [train_seq], RESULTS / "runs" / "train_synthetic")
    train_s = time.time() - t1
    trained = evaluate(trainer, cfg, [test_seq])
    rows = [("untrained", untrained), (f"trained {trainer.step} steps", trained)]
    print(f"\n## train_synthetic ({machine()})")
    print(f"size {h}x{w}, batch {args.batch}, lr {args.lr:g}, refinement {'off (baseline)' if args.baseline else 'on (SA4Depth)'}, "
          f"{trainer.step} steps in {train_s / 60:.1f} min ({train_s / max(trainer.step, 1):.2f} s/step), "
          f"data generation {gen_s:.0f} s\n")
    print("| model | AbsRel | d1 | AbsRel (one scale) |")
    print("|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['abs_rel']:.3f} | {r['a1']:.3f} | {r['abs_rel_one_scale']:.3f} |")
    ratio = trained["abs_rel"] / untrained["abs_rel"]
    print(f"\nAbsRel trained / untrained = {ratio:.2f} (target <= 0.5)")
    path = save_result("train_synthetic", {"args": vars(args), "steps": trainer.step, "train_seconds": train_s,
                                           "untrained": untrained, "trained": trained, "abs_rel_ratio": ratio})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
