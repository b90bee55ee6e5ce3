"""SA4Depth odometry on top of existing depth and pose weights: fit only the feature network and
the damping (`sa4depth-train --train refiner`), the depth and pose networks fixed.

Two starts, trained on the training worlds for the same budget: one with the plain Monodepth2
loss (its features were never trained, so it has PoseNet-only odometry) and one with SA4Depth.
From each, the refiner is fitted for a fixed number of steps per seed on the training worlds,
then evaluated on the held-out test worlds: full-trajectory ATE after Sim(3) alignment and
5-frame ATE of PoseNet-only and refined odometry, the spread (std/mean) of the pose-vs-depth
scale ratio, the refinement's acceptance rate, AbsRel (which must not move), and the fitting
step time. Per seed, then mean +- std (ddof=1) over seeds. Nothing here is tuned: the fit uses
the benchmarks' training settings.

    python benchmarks/refiner_fit.py [--fit-steps 200] [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from common import RESULTS, evaluate, machine, save_result, summarize, train, trained_model
from sa4depth_core.loaded_model import load_model
from worlds import worlds

STARTS = ("without refinement (Monodepth2 loss)", "with refinement (SA4Depth)")


def base_overrides(h: int, w: int, steps: int, seed: int) -> list[str]:
    return [f"model.height={h}", f"model.width={w}", "train.batch_size=4", "train.epochs=1000",
            f"train.max_steps={steps}", "train.val_every=1000000", "train.save_every=1000000", "train.lr=2e-4",
            f"train.seed={seed}"]


# the rows of the table, from common.summarize
METRICS = {"abs_rel": "AbsRel", "posenet ate_7dof": "ATE posenet (m)", "posenet ate5": "ATE5 posenet (m)",
           "posenet pose_depth_ratio_std_over_mean": "pose/depth ratio std/mean posenet",
           "refined ate_7dof": "ATE refined (m)", "refined ate5": "ATE5 refined (m)",
           "refined pose_depth_ratio_std_over_mean": "pose/depth ratio std/mean refined",
           "posenet rotation_deg_mean": "rotation err posenet (deg)",
           "posenet direction_deg_mean": "direction err posenet (deg)",
           "refined rotation_deg_mean": "rotation err refined (deg)",
           "refined direction_deg_mean": "direction err refined (deg)",
           "refined acceptance": "acceptance"}


def scored(path: Path, test_seqs) -> dict:
    """The table's figures for the model in `path`, on the held-out worlds."""
    loaded = load_model(path)
    figures = summarize(evaluate(loaded.model, loaded.cfg, test_seqs))
    return {label: figures[key] for key, label in METRICS.items() if key in figures}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start-steps", type=int, default=400, help="training steps of each start")
    p.add_argument("--fit-steps", type=int, default=200)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--frames", type=int, default=120, help="frames per training world (test: half)")
    p.add_argument("--size", default="64x192")
    args = p.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    train_seqs = worlds("train", h, w, args.frames)
    test_seqs = worlds("test", h, w, args.frames // 2)
    rows: dict[str, dict] = {}
    for start_name in STARTS:
        refine = "SA4" in start_name
        start_model = trained_model(f"{'sa4depth' if refine else 'baseline'}_{args.start_steps}", refine,
                                    args.start_steps, size=(h, w))
        start = scored(start_model, test_seqs)
        print(f"{start_name}: start AbsRel {start['AbsRel']:.4f}, features trained: {'acceptance' in start}",
              flush=True)
        fits = []
        for seed in args.seeds:
            out = RESULTS / "runs" / f"refiner_fit_{start_model.parent.name}_{seed}"
            t0 = time.time()
            trainer = train(base_overrides(h, w, args.fit_steps, seed) + [
                "refine.enabled=true", "train.trainable=refiner", f"train.init={start_model}"],
                train_seqs, out, log=lambda *a: None)
            step_s = (time.time() - t0) / max(trainer.step, 1)
            fits.append({"seed": seed, **scored(out / "best.pt", test_seqs), "fit s/step": step_s})
            print(f"  seed {seed}: {fits[-1]}", flush=True)
        rows[start_name] = {"start": start, "fits": fits}
    print(f"\n## refiner_fit ({machine()})")
    print(f"{len(train_seqs)} training worlds, {len(test_seqs)} held-out test worlds, {h}x{w}; starts trained "
          f"{args.start_steps} steps (seed 0), refiner fitted {args.fit_steps} steps per seed {args.seeds} with the "
          "depth and pose networks frozen; per seed, then mean ± std (ddof=1)\n")
    for start_name, data in rows.items():
        metrics = list(data["fits"][0])[1:]
        print(f"**start {start_name}**\n")
        print("| metric | start | " + " | ".join(f"fit seed {f['seed']}" for f in data["fits"]) + " | fit mean ± std |")
        print("|---|---|" + "---|" * (len(data["fits"]) + 1))
        for m in metrics:
            vals = np.array([f[m] for f in data["fits"]], dtype=float)
            start_val = data["start"].get(m)
            start_cell = f"{start_val:.4f}" if start_val is not None else "—"
            cells = " | ".join(f"{v:.4f}" for v in vals)
            spread = vals.std(ddof=1) if len(vals) > 1 else float("nan")
            print(f"| {m} | {start_cell} | {cells} | {vals.mean():.4f} ± {spread:.4f} |")
        print()
    path = save_result("refiner_fit", {"args": vars(args), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
