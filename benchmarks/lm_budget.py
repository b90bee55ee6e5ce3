"""The LM solver's budget at inference: accuracy against time, to choose iterations and points
per level for odometry (chosen on the validation worlds; the test worlds are not touched).

Accuracy: a model trained with SA4Depth (64x192) runs refined odometry on the validation worlds
with each budget (the same trained damping; refine.FeatureMetricRefiner.with_budget): refined
ATE after Sim(3) alignment, 5-frame ATE and acceptance rate. At 64x192 the levels hold 192 / 768 /
3072 pixels, so the point caps below are absolute numbers of points per level, the quantity the
solve's precision depends on. Time: one refinement of one pair (with its acceptance test) at
96x320 and 192x640 with the same budget (untrained weights: the time does not depend on them).
The chosen budget is the cheapest at 192x640 whose refined ATE and 5-frame ATE are within
`--tolerance` of the full budget's on every validation world.

    python benchmarks/lm_budget.py [--checkpoint runs/x/best.pt] [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from common import machine, save_result, trained_model
from sa4depth_core.config import load_config
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.eval.odometry_metrics import absolute_to_relative, odometry_errors, pair_errors, snippet_ate
from sa4depth_core.eval.run_model import run_sequence
from sa4depth_core.loaded_model import LoadedModel, load_model
from sa4depth_core.model import SA4DepthModel
from sa4depth_core.odometry import OdometryEstimator
from sa4depth_core.pipeline_options import PipelineOptions
from sa4depth_core.refine import TrustRegion
from worlds import worlds

ITERATIONS = (1, 2, 3)
POINTS = (256, 512, 1024, 4096)


def accuracy(loaded: LoadedModel, seqs, iterations: int, points: int) -> dict:
    """Refined ATE, 5-frame ATE, mean rotation / direction errors (deg) and acceptance per
    validation world with this budget."""
    out = {}
    for root, s in seqs:
        seq = KittiOdometrySequence(root, s)
        budget = PipelineOptions(refine_iterations=iterations, refine_max_points=points)
        run = run_sequence(loaded, seq, torch.device("cpu"), refine_modes=("refined",), options=budget)
        gt = np.stack([seq.pose(i) for i in range(len(seq))])
        est = run.poses["refined"]
        pairs = pair_errors(absolute_to_relative(gt), absolute_to_relative(est))
        out[root.name] = {"ate": odometry_errors(gt, est, "7dof")["ate"],
                          "ate5": snippet_ate(absolute_to_relative(est), gt)["mean"], "acceptance": run.acceptance,
                          "rot_deg": pairs["rotation_deg_mean"], "dir_deg": pairs["direction_deg_mean"]}
    return out


def lm_ms(height: int, width: int, iterations: int, points: int, repeats: int) -> float:
    """Median ms of one pair's refinement with its acceptance test."""
    cfg = load_config(None, [f"model.height={height}", f"model.width={width}"])
    model = SA4DepthModel(cfg).eval()
    loaded = LoadedModel(model, cfg, "timing", "timing", False, True)
    est = OdometryEstimator(loaded, torch.device("cpu"), PipelineOptions(
        refine_iterations=iterations, refine_max_points=points, trust=TrustRegion(180.0, 1e9)))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, height, width, generator=g)
    depth = torch.full((1, 1, height, width), 10.0)
    K = np.array([[0.58 * width, 0, width / 2], [0, 1.92 * height, height / 2], [0, 0, 1]])
    with torch.inference_mode():
        feats = [model.feature_net(x[i:i + 1]) for i in range(2)]
        Kt = torch.from_numpy(K).float()[None]
        T0 = model.relative_pose(x[1:], x[:1], -1)

        def solve():
            est.refiner(depth, Kt, T0, feats[1], feats[0], est.options.trust)

        solve()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            solve()
            times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="a model trained with SA4Depth (default: train one, 64x192, 400 steps)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--frames", type=int, default=60, help="frames per validation world")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tolerance", type=float, default=0.02, help="relative ATE loss allowed against the full budget")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(args.checkpoint or trained_model(f"sa4depth_{args.steps}", True, args.steps))
    h, w = loaded.cfg.model.height, loaded.cfg.model.width
    val = worlds("val", h, w, args.frames)
    rows = []
    for iterations in ITERATIONS:
        for points in POINTS:
            acc = accuracy(loaded, val, iterations, points)
            rows.append({"iterations": iterations, "points": points, "worlds": acc,
                         "ate": float(np.mean([a["ate"] for a in acc.values()])),
                         "ate5": float(np.mean([a["ate5"] for a in acc.values()])),
                         "acceptance": float(np.mean([a["acceptance"] for a in acc.values()])),
                         "rot_deg": float(np.mean([a["rot_deg"] for a in acc.values()])),
                         "dir_deg": float(np.nanmean([a["dir_deg"] for a in acc.values()])),
                         "ms_96x320": lm_ms(96, 320, iterations, points, args.repeats),
                         "ms_192x640": lm_ms(192, 640, iterations, points, args.repeats)})
            print(f"{iterations} it, {points} pts: {rows[-1]['ate']:.4f} m, {rows[-1]['ms_192x640']:.1f} ms", flush=True)
    full = next(r for r in rows if r["iterations"] == max(ITERATIONS) and r["points"] == max(POINTS))

    def within(r):
        return all(r["worlds"][k][m] <= (1 + args.tolerance) * full["worlds"][k][m] + 1e-9
                   for k in full["worlds"] for m in ("ate", "ate5"))

    chosen = min((r for r in rows if within(r)), key=lambda r: r["ms_192x640"])
    print(f"\n## lm_budget ({machine()})")
    print(f"model {loaded.model_id} ({w}x{h}), {len(val)} validation worlds of {args.frames} frames; LM time of one "
          f"pair with its acceptance test, {args.threads} threads, median of {args.repeats}\n")
    print("| iterations per level | points per level (cap) | refined ATE (m) | 5-frame ATE (m) | rotation err (deg) | "
          "direction err (deg) | acceptance | LM ms 96x320 | LM ms 192x640 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mark = " **(chosen)**" if r is chosen else ""
        print(f"| {r['iterations']} | {r['points']}{mark} | {r['ate']:.4f} | {r['ate5']:.4f} | {r['rot_deg']:.3f} | "
              f"{r['dir_deg']:.3f} | {r['acceptance']:.1%} | "
              f"{r['ms_96x320']:.1f} | {r['ms_192x640']:.1f} |")
    print(f"\nchosen: {chosen['iterations']} iterations and {chosen['points']} points per level, the cheapest within "
          f"{args.tolerance:.0%} of the full budget's ATE and 5-frame ATE on every validation world: "
          f"{chosen['ms_192x640']:.1f} vs {full['ms_192x640']:.1f} ms at 192x640 "
          f"({full['ms_192x640'] / chosen['ms_192x640']:.2f}x, same run)")
    path = save_result("lm_budget", {"args": vars(args), "model": loaded.model_id, "rows": rows,
                                     "chosen": {k: chosen[k] for k in ("iterations", "points")}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
