"""How far does a good refinement move from PoseNet's pose? The trust region's defaults, chosen
on validation worlds (neither training nor test worlds of any published figure).

For every frame pair of the validation worlds, with a model trained with SA4Depth, it runs
PoseNet and the LM refinement without a trust region and records how far the refined pose moved
from PoseNet's (rotation in degrees; translation as a fraction of the target's median depth, the
unit refine.TrustRegion uses), the cost test, and whether the refined pose is closer to the
ground truth than PoseNet's in each component on its own: rotation, translation direction and
translation length (after the frame's ground-truth/prediction depth scale). A single mixed
translation error called a refinement that fixed the scale and ruined the direction "better".
It prints the distribution of both moves for refinements better in all three components and
worse in any, and the acceptance and per-component error figures of candidate bounds.

    python benchmarks/trust_region.py [--checkpoint runs/x/best.pt] [--steps 400]
"""
from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from common import machine, save_result, trained_model
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.eval.odometry_metrics import pair_errors
from sa4depth_core.infer import DepthPredictor
from sa4depth_core.loaded_model import load_model
from sa4depth_core.refine import TrustRegion
from worlds import worlds

UNBOUNDED = TrustRegion(max_rotation_deg=180.0, max_translation=1e9)
COMPONENTS = ("rotation", "direction", "scale")
CANDIDATES = [(1.0, 0.02), (2.0, 0.05), (3.0, 0.05), (5.0, 0.1), (5.0, 0.15), (5.0, 0.2), (10.0, 0.5)]


# a component is "worse" only beyond these margins: smaller changes are below what one pair resolves
WORSE_MARGIN = {"rotation": 0.05, "direction": 0.5, "scale": 0.02}  # deg, deg, fraction of |t_gt|


def component_errors(T: np.ndarray, gt: np.ndarray, scale: np.ndarray) -> dict:
    """Per pair errors of (P,4,4) estimates T against (P,4,4) ground truth gt (same convention):
    rotation and translation direction (deg), and |scale * |t| / |t_gt| - 1| with scale (P,) the
    frame's ground-truth/predicted depth ratio (the pose in metres, judged against the depth's
    own scale). NaN where a pair has no direction or does not move."""
    pairs = pair_errors(gt, T)
    return {"rotation": np.array(pairs["rotation_deg"]), "direction": np.array(pairs["direction_deg"]),
            "scale": np.abs(scale * np.array(pairs["scale_ratio"]) - 1.0)}


@torch.inference_mode()
def measure(loaded, seqs) -> list[dict]:
    """One record per frame pair (target t, source t-1): how far the unbounded refinement moved,
    its cost test, and per component (rotation, direction, scale) PoseNet's and the refined
    error and whether the refinement is better (not larger) or worse (beyond WORSE_MARGIN)."""
    model = loaded.model
    records, posenet, refined, exact, scales = [], [], [], [], []
    for root, s in seqs:
        seq = KittiOdometrySequence(root, s)
        predictor = DepthPredictor(loaded, torch.device("cpu"))
        prev = None
        for i in range(len(seq)):
            depth, K, x = predictor(seq.image(i), seq.intrinsics())
            if prev is not None:
                x_prev, i_prev = prev
                T0, result = model.pose_step(x, x_prev, -1, depth, torch.from_numpy(K).float()[None],
                                             trust=UNBOUNDED)
                gt_depth = seq.gt_depth(i)
                pred = depth[0, 0].numpy()
                ok = (gt_depth > 0) & np.isfinite(pred)
                scales.append(float(np.median(gt_depth[ok]) / np.median(pred[ok])))
                exact.append(np.linalg.inv(seq.pose(i_prev)) @ seq.pose(i))  # T_t->s
                posenet.append(T0[0].double().numpy())
                refined.append(result.pose[0].double().numpy())
                a = result.acceptance
                records.append({
                    "world": root.name, "frame": i, "success": bool(result.success[0]),
                    "cost_rose": bool(a.cost_final[0] > a.cost_start[0]),
                    "moved_deg": float(a.rotation_deg[0]), "moved_depth": float(a.translation[0]),
                    "motion_m": float(np.linalg.norm(exact[-1][:3, 3]))})
            prev = (x, i)
    scales = np.array(scales)
    e0 = component_errors(np.stack(posenet), np.stack(exact), scales)
    e1 = component_errors(np.stack(refined), np.stack(exact), scales)
    for n, rec in enumerate(records):
        for c in COMPONENTS:
            a, b = float(e0[c][n]), float(e1[c][n])
            rec[f"{c}_err_posenet"], rec[f"{c}_err_refined"] = a, b
            # a pair without a direction (standing still) is neither better nor worse in it
            rec[f"better_{c}"] = bool(not np.isfinite(a) or b <= a)
            rec[f"worse_{c}"] = bool(np.isfinite(a) and b > a + WORSE_MARGIN[c])
        rec["better"] = all(rec[f"better_{c}"] for c in COMPONENTS)
        rec["worse"] = any(rec[f"worse_{c}"] for c in COMPONENTS)
    return records


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="a model trained with SA4Depth (default: train one, 64x192)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--frames", type=int, default=60, help="frames per validation world")
    args = p.parse_args()
    torch.set_num_threads(1)
    h, w = 64, 192
    loaded = load_model(args.checkpoint or trained_model(f"sa4depth_{args.steps}", True, args.steps))
    loaded = dataclasses.replace(loaded, model=loaded.model.eval())
    h, w = loaded.cfg.model.height, loaded.cfg.model.width
    val = worlds("val", h, w, args.frames)
    records = measure(loaded, val)
    moved = np.array([[r["moved_deg"], r["moved_depth"]] for r in records])
    better = np.array([r["better"] for r in records])
    worse = np.array([r["worse"] for r in records])
    cost_ok = np.array([r["success"] and not r["cost_rose"] for r in records])
    print(f"\n## trust_region ({machine()})")
    print(f"{len(records)} frame pairs of {len(val)} validation worlds, model {loaded.model_id}; cost test passed on "
          f"{cost_ok.mean():.0%}. Refined against PoseNet per component (better: error not larger; worse: larger by "
          "more than " + ", ".join(f"{WORSE_MARGIN[c]:g} {u}" for c, u in zip(COMPONENTS, ("deg", "deg", "of |t|")))
          + "): " + "; ".join(f"{c} better on {np.mean([r[f'better_{c}'] for r in records]):.0%}, worse on "
                              f"{np.mean([r[f'worse_{c}'] for r in records]):.0%}" for c in COMPONENTS)
          + f"; better in all three on {better.mean():.0%}, worse in any on {worse.mean():.0%}\n")
    print("| refinements | n | moved deg p50 / p95 / p99 / max | moved x median depth p50 / p95 / p99 / max |")
    print("|---|---|---|---|")
    for name, sel in (("better than PoseNet in all three", better), ("worse than PoseNet in any", worse),
                      ("all", np.ones_like(better))):
        if sel.any():
            q = np.percentile(moved[sel], [50, 95, 99, 100], axis=0)
            print(f"| {name} | {int(sel.sum())} | " + " / ".join(f"{v:.3f}" for v in q[:, 0]) + " | "
                  + " / ".join(f"{v:.4f}" for v in q[:, 1]) + " |")
    errs = {(c, who): np.array([r[f"{c}_err_{who}"] for r in records]) for c in COMPONENTS
            for who in ("posenet", "refined")}
    print("\n| bound (deg, x depth) | accepted | better ones rejected | worse ones accepted | "
          "mean rotation err deg (PoseNet / published) | mean direction err deg (PoseNet / published) | "
          "mean scale err (PoseNet / published) |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for rot, trans in CANDIDATES:
        accepted = cost_ok & (moved[:, 0] <= rot) & (moved[:, 1] <= trans)
        published = {c: float(np.nanmean(np.where(accepted, errs[c, "refined"], errs[c, "posenet"])))
                     for c in COMPONENTS}
        rows.append({"rot": rot, "trans": trans, "accepted": float(accepted.mean()),
                     "better_rejected": float((better & ~accepted).sum() / max(better.sum(), 1)),
                     "worse_accepted": float((worse & accepted).sum() / max(worse.sum(), 1)),
                     **{f"{c}_err": v for c, v in published.items()}})
        row = rows[-1]
        print(f"| {rot:g}, {trans:g} | {row['accepted']:.1%} | {row['better_rejected']:.1%} | "
              f"{row['worse_accepted']:.1%} | " + " | ".join(
                  f"{np.nanmean(errs[c, 'posenet']):.3f} / {published[c]:.3f}" for c in COMPONENTS) + " |")
    path = save_result("trust_region", {"model": loaded.model_id, "records": records, "candidates": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
