"""How far does a good refinement move from PoseNet's pose? The trust region's defaults, chosen
on validation worlds (neither training nor test worlds of any published figure).

For every frame pair of the validation worlds, with a model trained with SA4Depth, it runs
PoseNet and the LM refinement without a trust region and records how far the refined pose moved
from PoseNet's (rotation in degrees; translation as a fraction of the target's median depth, the
unit refine.TrustRegion uses), the cost test, and whether the refined pose is closer to the
ground truth than PoseNet's (rotation error, and translation error after the frame's
ground-truth/prediction depth scale). It prints the distribution of both moves for improving and
worsening refinements, and the acceptance and error figures of candidate bounds.

    python benchmarks/trust_region.py [--checkpoint runs/x/best.pt] [--steps 400]
"""
from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from common import machine, save_result, trained_model
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.geometry import so3_log
from sa4depth_core.infer import DepthPredictor, load_model
from sa4depth_core.refine import TrustRegion
from worlds import worlds

UNBOUNDED = TrustRegion(max_rotation_deg=180.0, max_translation=1e9)
CANDIDATES = [(1.0, 0.02), (2.0, 0.05), (3.0, 0.05), (5.0, 0.1), (5.0, 0.15), (5.0, 0.2), (10.0, 0.5)]


def rotation_deg(R: torch.Tensor) -> float:
    return float(torch.rad2deg(so3_log(R).norm()))


@torch.inference_mode()
def measure(loaded, seqs) -> list[dict]:
    """One record per frame pair (target t, source t-1)."""
    model = loaded.model
    records = []
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
                gt = torch.from_numpy(np.linalg.inv(seq.pose(i_prev)) @ seq.pose(i))  # T_t->s
                gt_depth = seq.gt_depth(i)
                pred = depth[0, 0].numpy()
                ok = (gt_depth > 0) & np.isfinite(pred)
                scale = float(np.median(gt_depth[ok]) / np.median(pred[ok]))
                a = result.acceptance
                T0, T = T0[0].double(), result.pose[0].double()

                def err(P):
                    rot = rotation_deg(P[:3, :3] @ gt[:3, :3].T)
                    return rot, float((scale * P[:3, 3] - gt[:3, 3]).norm())

                (r0, t0), (r1, t1) = err(T0), err(T)
                records.append({
                    "world": root.name, "frame": i, "success": bool(result.success[0]),
                    "cost_rose": bool(a.cost_final[0] > a.cost_start[0]),
                    "moved_deg": float(a.rotation_deg[0]), "moved_depth": float(a.translation[0]),
                    "rot_err_posenet": r0, "rot_err_refined": r1, "t_err_posenet": t0, "t_err_refined": t1,
                    "motion_m": float(gt[:3, 3].norm()),
                    "better": (r1 <= r0) and (t1 <= t0), "worse": (r1 > r0 + 0.05) or (t1 > t0 + 0.02 * max(
                        float(gt[:3, 3].norm()), 1e-3)),
                })
            prev = (x, i)
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
    print(f"{len(records)} frame pairs of {len(val)} validation worlds, model "
          f"{loaded.model_id}; refined better than PoseNet on {better.mean():.0%}, worse on {worse.mean():.0%}, "
          f"cost test passed on {cost_ok.mean():.0%}\n")
    print("| refinements | n | moved deg p50 / p95 / p99 / max | moved x median depth p50 / p95 / p99 / max |")
    print("|---|---|---|---|")
    for name, sel in (("better than PoseNet", better), ("worse than PoseNet", worse), ("all", np.ones_like(better))):
        if sel.any():
            q = np.percentile(moved[sel], [50, 95, 99, 100], axis=0)
            print(f"| {name} | {int(sel.sum())} | " + " / ".join(f"{v:.3f}" for v in q[:, 0]) + " | "
                  + " / ".join(f"{v:.4f}" for v in q[:, 1]) + " |")
    print("\n| bound (deg, x depth) | accepted | better ones rejected | worse ones accepted | "
          "mean rot err deg (PoseNet / published) | mean t err m (PoseNet / published) |")
    print("|---|---|---|---|---|---|")
    r0 = np.array([r["rot_err_posenet"] for r in records])
    r1 = np.array([r["rot_err_refined"] for r in records])
    t0 = np.array([r["t_err_posenet"] for r in records])
    t1 = np.array([r["t_err_refined"] for r in records])
    rows = []
    for rot, trans in CANDIDATES:
        accepted = cost_ok & (moved[:, 0] <= rot) & (moved[:, 1] <= trans)
        rows.append({"rot": rot, "trans": trans, "accepted": float(accepted.mean()),
                     "better_rejected": float((better & ~accepted).sum() / max(better.sum(), 1)),
                     "worse_accepted": float((worse & accepted).sum() / max(worse.sum(), 1)),
                     "rot_err": float(np.where(accepted, r1, r0).mean()), "t_err": float(np.where(accepted, t1, t0).mean())})
        row = rows[-1]
        print(f"| {rot:g}, {trans:g} | {row['accepted']:.1%} | {row['better_rejected']:.1%} | "
              f"{row['worse_accepted']:.1%} | {r0.mean():.3f} / {row['rot_err']:.3f} | "
              f"{t0.mean():.4f} / {row['t_err']:.4f} |")
    path = save_result("trust_region", {"model": loaded.model_id, "records": records, "candidates": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
