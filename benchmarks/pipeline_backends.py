"""The whole frame (depth, PoseNet, features, LM refinement with its acceptance test) through
PerceptionPipeline on every inference backend available here, and the accuracy each keeps.

Speed: frames at 96x320 and 192x640 (untrained weights declared trained, so the refinement runs;
time does not depend on the weights), all backends in turn frame by frame (round-robin, so load
changes hit them alike), median ms per frame, split into depth and odometry, and the ratio to
torch fp32 of the same run. `--refine-iterations/--refine-max-points` time a lighter LM budget.
Accuracy: a model trained with SA4Depth (64x192) on the test worlds, median-scaled AbsRel and
refined ATE (Sim(3)) per backend next to torch fp32, and the relative difference.

    python benchmarks/pipeline_backends.py [--frames 30] [--threads 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np
import torch

from common import evaluate, machine, save_result, summarize, trained_model
from sa4depth_core.backends import BackendUnavailable, make_networks
from sa4depth_core.config import load_config
from sa4depth_core.loaded_model import load_model
from sa4depth_core.pipeline import PerceptionPipeline
from sa4depth_core.pipeline_options import PipelineOptions
from sa4depth_core.refine import TrustRegion
from worlds import worlds

COMBOS = [("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16")]


def available(loaded, combos) -> list:
    """The (backend, precision) pairs that build here, without fallback."""
    out = []
    for backend, precision in combos:
        try:
            make_networks(loaded, backend, precision, fallback=False)
        except BackendUnavailable as exc:
            print(f"{backend} {precision}: not available ({exc})")
            continue
        out.append((backend, precision))
    return out


def frames_ms(height: int, width: int, combos, n: int, threads: int, iterations: int, points: int,
              parallel: bool) -> dict:
    """{(backend, precision): (total, depth, odometry) median ms per frame}."""
    torch.manual_seed(0)
    loaded = load_model(None, "cpu", load_config(None, [f"model.height={height}", f"model.width={width}"]))
    loaded = dataclasses.replace(loaded, features_trained=True)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(4)]
    K = np.array([[0.58 * width, 0, width / 2], [0, 1.92 * height, height / 2], [0, 0, 1]])
    pipes = {c: PerceptionPipeline(loaded, torch.device("cpu"), PipelineOptions(
        backend=c[0], precision=c[1], threads=threads, trust=TrustRegion(180.0, 1e9), refine_iterations=iterations,
        refine_max_points=points, parallel=parallel)) for c in combos}
    times = {c: [] for c in combos}
    for i in range(n + 2):
        for c, pipe in pipes.items():
            t0 = time.perf_counter()
            r = pipe.process(images[i % len(images)], K, 0.1 * i)
            if i >= 2:  # the first two frames warm up and set the odometry reference
                times[c].append((1e3 * (time.perf_counter() - t0), r.ms_depth, r.ms_odometry))
    return {c: tuple(statistics.median(x[k] for x in t) for k in range(3)) for c, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", nargs="+", default=["96x320", "192x640"])
    p.add_argument("--parallel", action="store_true", help="depth beside PoseNet and features (threads 1 each)")
    p.add_argument("--refine-iterations", type=int, default=0)
    p.add_argument("--refine-max-points", type=int, default=0)
    p.add_argument("--steps", type=int, default=400, help="training steps of the accuracy model")
    p.add_argument("--test-frames", type=int, default=60)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    probe = load_model(None, "cpu", load_config(None, ["model.height=64", "model.width=192"]))
    combos = available(probe, COMBOS)
    speed = {}
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        speed[size] = frames_ms(h, w, combos, args.frames, args.threads, args.refine_iterations, args.refine_max_points,
                                 args.parallel)
    loaded = load_model(trained_model(f"sa4depth_{args.steps}", True, args.steps))
    tests = worlds("test", loaded.cfg.model.height, loaded.cfg.model.width, args.test_frames)
    accuracy = {c: summarize(evaluate(loaded.model, loaded.cfg, tests, backend=c[0], precision=c[1])) for c in combos}
    budget = (f"LM budget {args.refine_iterations or 'the model'}'s iterations, {args.refine_max_points or 'its'} points"
              if args.refine_iterations or args.refine_max_points else "the model's LM budget")
    print(f"\n## pipeline_backends ({machine()})")
    mode = "depth beside PoseNet and features (parallel)" if args.parallel else "one stage after the other"
    print(f"PerceptionPipeline.process per frame, {mode}, {args.threads} threads, {budget}, "
          f"median of {args.frames} frames, "
          "backends in turn frame by frame; ratios against torch fp32 of the same run\n")
    print("| size | backend | ms per frame | depth ms | odometry ms | frames/s | speed-up vs torch fp32 |")
    print("|---|---|---|---|---|---|---|")
    for size, rows in speed.items():
        base = rows[("torch", "fp32")][0]
        for (b, pr), (total, depth, odo) in rows.items():
            print(f"| {size} | {b} {pr} | {total:.1f} | {depth:.1f} | {odo:.1f} | {1e3 / total:.1f} | {base / total:.2f}x |")
    print(f"\nAccuracy on {len(tests)} test worlds (model {loaded.model_id}, "
          f"{loaded.cfg.model.width}x{loaded.cfg.model.height}):\n")
    print("| backend | AbsRel | vs torch fp32 | refined ATE (m) | vs torch fp32 | acceptance |")
    print("|---|---|---|---|---|---|")
    ref = accuracy[("torch", "fp32")]
    for (b, pr), a in accuracy.items():
        print(f"| {b} {pr} | {a['abs_rel']:.4f} | {a['abs_rel'] / ref['abs_rel'] - 1:+.2%} | "
              f"{a['refined ate_7dof']:.4f} | {a['refined ate_7dof'] / ref['refined ate_7dof'] - 1:+.2%} | "
              f"{a['refined acceptance']:.1%} |")
    path = save_result("pipeline_backends", {"args": vars(args), "speed": {s: {f"{b} {pr}": v for (b, pr), v in r.items()}
                                                                           for s, r in speed.items()},
                                             "accuracy": {f"{b} {pr}": a for (b, pr), a in accuracy.items()}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
