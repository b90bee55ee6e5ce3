"""Per-frame CPU time of the networks and of one odometry step, next to the time the same
number of FLOPs takes in one bare 3x3 convolution measured in the same run.

The ratio network_ms / (network_FLOPs / bare_conv_FLOP_rate) says how far the network runs from
what this CPU does on the friendliest convolution: 1.0 would be no overhead at all.

    python benchmarks/speed.py [--repeats 20] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from common import machine, save_result
from sa4depth_core.config import load_config
from sa4depth_core.loaded_model import LoadedModel
from sa4depth_core.odometry import OdometryEstimator
from sa4depth_core.pipeline_options import PipelineOptions
from sa4depth_core.model import SA4DepthModel


def timed(fn, repeats: int) -> float:
    """Median milliseconds of fn() after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


@torch.inference_mode()
def bare_conv_rate(repeats: int) -> float:
    """FLOP/s of a 3x3, 128->128 convolution on a 96x320 map (dense, cache-friendly)."""
    conv = torch.nn.Conv2d(128, 128, 3, padding=1).eval()
    x = torch.rand(1, 128, 96, 320)
    ms = timed(lambda: conv(x), repeats)
    return flops(lambda: conv(x)) / (ms / 1000)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rate = bare_conv_rate(args.repeats)
    rows = []
    for h, w in [(96, 320), (192, 640)]:
        cfg = load_config(None, [f"model.height={h}", f"model.width={w}"])
        model = SA4DepthModel(cfg).eval()
        x = torch.rand(1, 3, h, w)
        x2 = torch.rand(1, 3, h, w)
        K = np.array([[0.58 * w, 0, w / 2], [0, 1.92 * h, h / 2], [0, 0, 1]])
        depth = torch.full((1, 1, h, w), 10.0)

        with torch.inference_mode():
            nets = {
                "depth net": lambda: model.depth(x),
                "pose net": lambda: model.relative_pose(x, x2, -1),
                "feature net": lambda: model.feature_net(x),
            }
            for name, fn in nets.items():
                ms = timed(fn, args.repeats)
                f = flops(fn)
                rows.append({"size": f"{h}x{w}", "part": name, "ms": ms, "GFLOP": f / 1e9, "ideal_ms": 1000 * f / rate})
        # untrained weights cost the same time; features_trained lets the estimator refine with them
        loaded = LoadedModel(model, cfg, "bench", "bench", False, True)
        for refine in (False, True):
            est = OdometryEstimator(loaded, torch.device("cpu"), PipelineOptions(refine=refine))
            frames = [torch.rand(1, 3, h, w) for _ in range(2)]
            est.step(frames[0], depth, K)
            state = {"i": 0}

            def step():
                state["i"] += 1
                est.step(frames[state["i"] % 2], depth, K)

            ms = timed(step, args.repeats)
            rows.append({"size": f"{h}x{w}", "part": f"odometry step ({'PoseNet + LM' if refine else 'PoseNet only'})",
                         "ms": ms, "GFLOP": float("nan"), "ideal_ms": float("nan")})
    print(f"\n## speed ({machine()})")
    print(f"bare 3x3 convolution: {rate / 1e9:.1f} GFLOP/s\n")
    print("| size | part | ms/frame | GFLOP | ms at bare-conv rate | ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["ms"] / r["ideal_ms"] if np.isfinite(r["ideal_ms"]) else float("nan")
        print(f"| {r['size']} | {r['part']} | {r['ms']:.1f} | {r['GFLOP']:.2f} | {r['ideal_ms']:.1f} | {ratio:.2f} |")
    path = save_result("speed", {"threads": args.threads, "bare_conv_gflops": rate / 1e9, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
