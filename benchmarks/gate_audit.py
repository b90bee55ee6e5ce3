"""Does the online deployment gate pick the models that ground truth prefers?

The gate compares a candidate with the deployed model on held-out validation triplets by a
self-supervised score (photometric error + scale_weight x depth inconsistency), because a robot
has no ground truth. This benchmark has it: a model is trained briefly on world A (a barely trained
start is where the score is least trustworthy), then an OnlineLearner in this process learns from
world B, one new frame per training step, and at every evaluation the candidate and the deployed
model are also scored by median-scaled AbsRel on world B frames the learner never sees. The
learner's own gate decides what is deployed; every candidate/deployed pair is then judged by
several gate rules side by side:

    total       score_c < (1 - margin) score_d   (the shipped rule: sa4depth_core.online.safety.gate)
    components  total, and neither photometric nor inconsistency worse than the deployed model's
    photometric photometric_c < (1 - margin) photometric_d

For each rule: deployments, deployments that ground truth calls worse (AbsRel up), better
candidates kept back, and the mean AbsRel change over its deployments.

    python benchmarks/gate_audit.py [--pretrain-steps 40 240] [--online-steps 300] [--eval-every 10] [--min-val 3 8]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import machine, save_result, synthetic, train
from online_adaptation import world_b

from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.eval.depth_metrics import evaluate_depth
from sa4depth_core.infer import rgb_to_tensor
from sa4depth_core.online import OnlineLearner, OnlineOptions, gate
from sa4depth_core.online.deploy import DEPLOYED
from sa4depth_core.online.safety import DEPLOY


def _shipped(c: dict, d: dict, margin: float) -> bool:
    return gate(c["score"], d["score"], margin, OnlineOptions.collapse_factor).action == DEPLOY


RULES = {
    "total": _shipped,
    "components": lambda c, d, m: (_shipped(c, d, m) and c["photometric"] <= d["photometric"]
                                   and c["depth_inconsistency"] <= d["depth_inconsistency"]),
    "photometric": lambda c, d, m: c["photometric"] < (1 - m) * d["photometric"],
}


@torch.no_grad()
def abs_rel(model, images: list, gts: list) -> float:
    """Median-scaled AbsRel of `model` on (H,W,3) uint8 frames against their GT depth maps."""
    model.eval()
    h, w = gts[0].shape
    depths = [model.depth(rgb_to_tensor(image, h, w, torch.device("cpu")))[0, 0].numpy() for image in images]
    return float(evaluate_depth(gts, depths, pred_kind="depth", crop="none")["metrics"]["abs_rel"])


def run(init: str, out_dir: Path, seq: KittiOdometrySequence, stream: range, held_out: range, min_val: int,
        args) -> dict:
    """Online learning on `stream` with an audit at every evaluation.

    Returns {"records": one per evaluation, "start", "deployed", "latest": AbsRel of those models}.
    """
    options = OnlineOptions(out_dir=str(out_dir), batch_size=args.batch, lr=args.lr, eval_every=args.eval_every,
                            val_period=5, min_val=min_val, replay_capacity=200, val_capacity=12, margin=args.margin,
                            persist_buffer=False)
    torch.manual_seed(0)  # runs that differ in one option draw the same refinement points until they diverge
    learner = OnlineLearner(options, init=init)
    K = seq.intrinsics()
    images, gts = [seq.image(i) for i in held_out], [seq.gt_depth(i) for i in held_out]
    frames = iter(stream)
    records = []
    # The deployed weights change only by a deployment, which copies the candidate just measured.
    start = gt_deployed = abs_rel(learner.reference, images, gts)
    while learner.step < args.online_steps and not learner.halted:
        i = next(frames, None)
        if i is not None:
            learner.add_frame(seq.image(i), K, seq.timestamp(i))
        if learner.train_step() is None or learner.step % args.eval_every:
            continue
        gt_candidate = abs_rel(learner.model, images, gts)
        outcome = learner.evaluate()
        if outcome.candidate is None or outcome.reference is None:
            continue
        records.append({"step": learner.step, "action": outcome.action, "candidate": outcome.candidate,
                        "deployed": outcome.reference, "abs_rel_candidate": gt_candidate,
                        "abs_rel_deployed": gt_deployed})
        if outcome.action == DEPLOYED:
            gt_deployed = gt_candidate
    return {"records": records, "start": start, "deployed": gt_deployed, "latest": abs_rel(learner.model, images, gts),
            "steps": learner.step, "deployments": learner.deployments, "rollbacks": learner.rollbacks}


def judge(records: list[dict], margin: float) -> dict:
    """Per rule: what it would have decided on every audited pair, against ground truth."""
    changes = [r["abs_rel_candidate"] - r["abs_rel_deployed"] for r in records]
    out = {}
    for name, rule in RULES.items():
        deploys = [rule(r["candidate"], r["deployed"], margin) for r in records]
        deployed = [c for c, d in zip(changes, deploys) if d]
        out[name] = {
            "deploys": len(deployed),
            "deploys_gt_worse": sum(c > 0 for c in deployed),
            "better_kept": sum(c < 0 and not d for c, d in zip(changes, deploys)),
            "mean_abs_rel_change": float(np.mean(deployed)) if deployed else float("nan"),
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="64x192")
    p.add_argument("--pretrain-steps", type=int, nargs="+", default=[40, 240], help="world A training budgets")
    p.add_argument("--online-steps", type=int, default=300)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--frames-a", type=int, default=200)
    p.add_argument("--frames-b", type=int, default=240, help="world B frames: 3/4 streamed, the rest held out")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--margin", type=float, default=0.01)
    p.add_argument("--min-val", type=int, nargs="+", default=[3],
                   help="validation triplets needed before the first evaluation (one online run each)")
    args = p.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    started = time.time()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    world_a = synthetic(f"online_a_car_{args.frames_a}", args.frames_a, h, w, seed=0)
    root_b, seq_b = world_b(args.frames_b, h, w)
    seq = KittiOdometrySequence(root_b, seq_b)
    stream_end = args.frames_b * 3 // 4
    stream, held_out = range(stream_end), range(stream_end, args.frames_b)
    run_dir = Path(tempfile.mkdtemp(prefix="gate_audit_"))

    runs = {}
    for steps in args.pretrain_steps:
        overrides = [f"model.height={h}", f"model.width={w}", f"train.batch_size={args.batch}", "train.epochs=1000",
                     f"train.max_steps={steps}", "train.val_every=1000000", "train.save_every=1000000",
                     "train.lr=2e-4", "train.threads=2"]
        train(overrides, [world_a], run_dir / f"pretrain_{steps}", log=lambda *a: None)
        init = str(max((run_dir / f"pretrain_{steps}" / "checkpoints").glob("step_*.pt")))
        for min_val in args.min_val:
            result = run(init, run_dir / f"online_{steps}_{min_val}", seq, stream, held_out, min_val, args)
            runs[f"{steps} steps, min_val {min_val}"] = {**result, "judged": judge(result["records"], args.margin)}
    shutil.rmtree(run_dir)

    print(f"\n## gate_audit ({machine()})")
    print(f"size {h}x{w}; world A pretraining budgets {args.pretrain_steps} steps; world B: {args.online_steps} "
          f"online steps (batch {args.batch}, lr {args.lr:g}, one new frame per step), an evaluation every "
          f"{args.eval_every} steps; ground truth = median-scaled AbsRel on the {len(held_out)} world B frames "
          f"the learner never sees; margin {args.margin:g}; min_val = validation triplets before the first "
          "evaluation. The shipped rule ('total') decided what was deployed; every rule is judged on the same "
          "candidate/deployed pairs.\n")
    print("| start | pairs | GT prefers candidate | rule | deploys | of which GT-worse | better kept back | "
          "mean AbsRel change per deploy |")
    print("|---|---|---|---|---|---|---|---|")
    for start, result in runs.items():
        records = result["records"]
        better = sum(r["abs_rel_candidate"] < r["abs_rel_deployed"] for r in records)
        for name, j in result["judged"].items():
            print(f"| {start} | {len(records)} | {better} | {name} | {j['deploys']} | {j['deploys_gt_worse']} | "
                  f"{j['better_kept']} | {j['mean_abs_rel_change']:+.4f} |")
    for start, r in runs.items():
        worst = max((x["abs_rel_candidate"] - x["abs_rel_deployed"] for x in r["records"] if x["action"] == "deployed"),
                    default=float("nan"))
        print(f"\n{start}: AbsRel {r['start']:.3f} -> deployed {r['deployed']:.3f}, latest weights {r['latest']:.3f} "
              f"after {r['steps']} steps; {r['deployments']} deployments (worst AbsRel change of one: {worst:+.4f}), "
              f"{r['rollbacks']} rollbacks")
    print(f"\ntotal runtime {(time.time() - started) / 60:.1f} min")
    path = save_result("gate_audit", {"args": vars(args), "runs": runs})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
