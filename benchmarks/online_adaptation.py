"""Online adaptation to a new world on this CPU, and what it costs the perception pipeline.

1. World A (car trajectory, seed 0, camera 1.65 m): the project's Trainer trains a model briefly.
2. World B (other seed and textures, camera 1.3 m, a real KITTI trajectory with turns): its first
   frames are streamed, as a camera would, into an OnlineLearner running in a second process
   with its own thread budget (keyframes, replay/validation buffers, gate, rollback).
3. Meanwhile this process runs the perception pipeline (depth + refined odometry, one depth pass
   per frame) on world B frames: frames per second alone, then with the trainer running.
4. Before/after: AbsRel (per-frame median scaling), AbsRel with one scale for all frames, d1,
   spread of the per-frame scale (std/mean of median(gt)/median(pred)) and of the pose-vs-depth
   scale ratio, on world B frames the learner has seen and on later frames it has not.

    python benchmarks/online_adaptation.py [--pretrain-minutes 3.5] [--online-minutes 6] [--size 64x192]

Default total runtime: about 12 minutes on an otherwise idle 2-core machine (with
--pretrain-minutes 4 --rate-seconds 30 it took 12.6 min idle and 16-18 min beside other jobs).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from common import KITTI_GT, machine, save_result, synthetic, train

from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.eval.depth_metrics import evaluate_depth
from sa4depth_core.eval.odometry_metrics import absolute_to_relative
from sa4depth_core.eval.run_model import run_sequence
from sa4depth_core.eval.scale_consistency import (
    frame_scale_ratios,
    pose_depth_scale_ratios,
)
from sa4depth_core.loaded_model import load_model
from sa4depth_core.pipeline import PerceptionPipeline
from sa4depth_core.pipeline_options import PipelineOptions


def world_b(frames: int, h: int, w: int) -> tuple[Path, str]:
    kitti = KITTI_GT / "05.txt"
    if kitti.exists():
        return synthetic(f"online_b_kitti05_{frames}", frames, h, w, seed=7, trajectory="kitti", camera_height=1.3,
                         kitti_poses=str(kitti), kitti_start=100)
    return synthetic(f"online_b_handheld_{frames}", frames, h, w, seed=7, trajectory="handheld", camera_height=1.3)


def evaluate(checkpoint: str, root: Path, seq_name: str, frames: range) -> dict:
    """Depth accuracy and scale consistency of a checkpoint on some frames of a sequence."""
    loaded = load_model(checkpoint)
    seq = KittiOdometrySequence(root, seq_name)
    run = run_sequence(loaded, seq, torch.device("cpu"), frames, refine_modes=("refined",))
    gts = [seq.gt_depth(i) for i in frames]
    depth = evaluate_depth(gts, run.depths, pred_kind="depth", crop="none")
    ratios = frame_scale_ratios(gts, run.depths, pred_kind="depth", crop="none")
    gt_poses = np.stack([seq.pose(i) for i in frames])
    pose_depth = pose_depth_scale_ratios(absolute_to_relative(run.poses["refined"]), absolute_to_relative(gt_poses),
                                         ratios[1:])
    return {"abs_rel": depth["metrics"]["abs_rel"], "a1": depth["metrics"]["a1"],
            "abs_rel_one_scale": depth["global_metrics"]["abs_rel"],
            "scale_std_over_mean": float(np.nanstd(ratios) / np.nanmean(ratios)),
            "pose_depth_std_over_mean": pose_depth["std_over_mean"]}


def learner_process(init: str, out_dir: str, root: str, seq_name: str, stream: int, minutes: float, threads: int,
                    options: dict, result: str) -> None:
    """Runs in its own process: stream frames into an OnlineLearner for `minutes`, then save."""
    import cv2

    from sa4depth_core.online import (
        BackgroundTrainer,
        OnlineLearner,
        OnlineOptions,
        feed_sequence,
    )

    torch.set_num_threads(threads)
    cv2.setNumThreads(1)
    learner = OnlineLearner(OnlineOptions(out_dir=out_dir, **options), init=init)
    evaluations = []

    def record(outcome):
        evaluations.append({"step": learner.step, "action": outcome.action,
                            "candidate": (outcome.candidate or {}).get("score"),
                            "deployed": (outcome.reference or {}).get("score")})
    trainer = BackgroundTrainer(learner, threads=threads, on_outcome=record)
    trainer.start()
    stop = threading.Event()
    seq = KittiOdometrySequence(root, seq_name)
    rate = stream / (0.9 * minutes * 60)  # the stream ends a little before the budget
    feeder = threading.Thread(target=feed_sequence, args=(learner, seq, stop),
                              kwargs={"rate_hz": rate, "frames": range(stream)}, daemon=True)
    started = time.monotonic()
    feeder.start()
    stop.wait(minutes * 60)
    stop.set()
    trainer.stop()
    feeder.join()
    seconds = time.monotonic() - started
    ok, message = learner.save()
    latest = learner.store.latest()
    Path(result).write_text(json.dumps({
        "status": learner.status(), "evaluations": evaluations, "seconds": seconds, "saved": message if ok else "",
        "latest": str(learner.store.path(latest)) if latest else "", "deployed": learner.store.deployed,
        "steps_per_s": learner.step / seconds}, default=float))


def pipeline_fps(pipeline: PerceptionPipeline, images: list, K: np.ndarray, seconds: float) -> float:
    """Frames per second of the perception pipeline over `seconds` (cycling through `images`)."""
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        pipeline.process(images[n % len(images)], K, 0.1 * n)
        n += 1
    return n / (time.perf_counter() - started)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="64x192", help="HEIGHTxWIDTH of frames and networks")
    p.add_argument("--pretrain-minutes", type=float, default=3.5, help="Trainer budget on world A")
    p.add_argument("--online-minutes", type=float, default=6.0, help="online learning budget on world B")
    p.add_argument("--frames-a", type=int, default=200)
    p.add_argument("--frames-b", type=int, default=240, help="world B frames: 3/4 streamed, the rest held out")
    p.add_argument("--pipeline-threads", type=int, default=1, help="torch threads of the perception pipeline")
    p.add_argument("--trainer-threads", type=int, default=1, help="torch threads of the online learner process")
    p.add_argument("--rate-seconds", type=float, default=20.0, help="length of each frame-rate measurement")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=5e-5, help="online learning rate")
    p.add_argument("--eval-every", type=int, default=25)
    args = p.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    total_start = time.time()
    torch.manual_seed(0)

    world_a = synthetic(f"online_a_car_{args.frames_a}", args.frames_a, h, w, seed=0)
    root_b, seq_b = world_b(args.frames_b, h, w)
    stream = args.frames_b * 3 // 4
    seen, held_out = range(stream), range(stream, args.frames_b)

    torch.set_num_threads(2)
    overrides = [f"model.height={h}", f"model.width={w}", f"train.batch_size={args.batch}", "train.epochs=1000",
                 f"train.max_minutes={args.pretrain_minutes}", "train.val_every=1000000", "train.save_every=1000000",
                 "train.lr=2e-4", "train.threads=2"]
    run_dir = Path(tempfile.mkdtemp(prefix="online_adaptation_"))
    t0 = time.time()
    trainer = train(overrides, [world_a], run_dir / "pretrain", log=lambda *a: None)
    pretrain = {"steps": trainer.step, "seconds": time.time() - t0}
    init = str(max((run_dir / "pretrain" / "checkpoints").glob("step_*.pt")))

    before = {"seen": evaluate(init, root_b, seq_b, seen), "held_out": evaluate(init, root_b, seq_b, held_out)}

    torch.set_num_threads(args.pipeline_threads)
    seq = KittiOdometrySequence(root_b, seq_b)
    images, K = [seq.image(i) for i in held_out], seq.intrinsics()
    pipeline = PerceptionPipeline(load_model(init), torch.device("cpu"), PipelineOptions())
    fps_alone = pipeline_fps(pipeline, images, K, args.rate_seconds)

    options = {"batch_size": args.batch, "lr": args.lr, "eval_every": args.eval_every, "val_period": 5,
               "min_val": 3, "replay_capacity": 200, "val_capacity": 12, "margin": 0.01}
    result = run_dir / "learner.json"
    ctx = mp.get_context("spawn")
    learner = ctx.Process(target=learner_process,
                          args=(init, str(run_dir / "online"), str(root_b), seq_b, stream, args.online_minutes,
                                args.trainer_threads, options, str(result)))
    learner.start()
    time.sleep(min(20.0, 0.1 * args.online_minutes * 60))  # past the learner's start-up
    fps_with = []
    while learner.is_alive():
        fps_with.append(pipeline_fps(pipeline, images, K, min(args.rate_seconds, 10.0)))
    learner.join()
    fps_after = pipeline_fps(pipeline, images, K, args.rate_seconds)
    online = json.loads(result.read_text())

    after = {}
    for name in ("deployed", "latest"):
        after[name] = {"seen": evaluate(online[name], root_b, seq_b, seen),
                       "held_out": evaluate(online[name], root_b, seq_b, held_out)}

    s = online["status"]
    print(f"\n## online_adaptation ({machine()})")
    print(f"size {h}x{w}; world A {args.frames_a} frames, pretrained {pretrain['steps']} steps in "
          f"{pretrain['seconds'] / 60:.1f} min; world B {args.frames_b} frames, first {stream} streamed over "
          f"{online['seconds'] / 60:.1f} min to the online learner ({args.trainer_threads} thread(s), batch "
          f"{args.batch}, lr {args.lr:g}): {s['step']} steps ({online['steps_per_s']:.2f}/s), "
          f"{len(online['evaluations'])} evaluations, {s['deployments']} deployments, {s['rollbacks']} rollbacks\n")
    print("| model | frames | AbsRel | d1 | AbsRel (one scale) | scale std/mean | pose/depth std/mean |")
    print("|---|---|---|---|---|---|---|")
    rows = [("before (world A model)", before), ("after: deployed", after["deployed"]),
            ("after: latest weights", after["latest"])]
    for name, res in rows:
        for split in ("seen", "held_out"):
            r = res[split]
            print(f"| {name} | {split.replace('_', '-')} | {r['abs_rel']:.3f} | {r['a1']:.3f} | "
                  f"{r['abs_rel_one_scale']:.3f} | {r['scale_std_over_mean']:.3f} | "
                  f"{r['pose_depth_std_over_mean']:.3f} |")
    print(f"\n| perception pipeline ({args.pipeline_threads} thread(s), depth + refined odometry) | frames/s |")
    print("|---|---|")
    print(f"| alone, before | {fps_alone:.1f} |")
    print(f"| with the online learner training | {np.mean(fps_with):.1f} (min {np.min(fps_with):.1f}) |")
    print(f"| alone, after | {fps_after:.1f} |")
    print(f"\ntotal runtime {(time.time() - total_start) / 60:.1f} min")
    path = save_result("online_adaptation", {
        "args": vars(args), "pretrain": pretrain, "before": before, "after": after, "online": online,
        "fps": {"alone_before": fps_alone, "with_trainer": fps_with, "alone_after": fps_after}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
