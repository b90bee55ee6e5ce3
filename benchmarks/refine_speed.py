"""Speed of the feature-metric LM refiner on this CPU.

Times one refinement of a target frame against 2 source frames (batch of 2 pairs) at 96x320
and 192x640. It does this for the refiner defaults (dense) and for a 4096-point cap per
level, forward only and forward + backward. The backward pass starts from a loss on every
level's pose, as in training. The feature network's own forward time for the 3 frames is
printed for comparison.

    python benchmarks/refine_speed.py [--repeats 5] [--threads 0]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import machine

from sa4depth_core.geometry import se3_exp
from sa4depth_core.networks.feature_net import FeatureNet
from sa4depth_core.refine import FeatureMetricRefiner


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: allocator and thread pool
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _problem(height: int, width: int, net: FeatureNet):
    """Features of 3 smooth random frames, depth, K and initial poses for 2 pairs."""
    g = torch.Generator().manual_seed(0)
    images = torch.nn.functional.interpolate(torch.rand(3, 3, height // 8, width // 8, generator=g), size=(height, width), mode="bicubic")
    with torch.no_grad():
        feats = net(images.clamp(0, 1))
    target = [(f[:1].expand(2, -1, -1, -1).contiguous(), c[:1].expand(2, -1, -1, -1).contiguous()) for f, c in feats]
    sources = [(f[1:].contiguous(), c[1:].contiguous()) for f, c in feats]
    depth = 5 + 20 * torch.rand(2, 1, height // 16, width // 16, generator=g)
    depth = torch.nn.functional.interpolate(depth, size=(height, width), mode="bilinear")
    K = torch.tensor([[0.58 * width, 0, width / 2], [0, 1.92 * height, height / 2], [0, 0, 1]]).expand(2, 3, 3)
    T_init = se3_exp(torch.tensor([[0.01, 0.0, -0.5, 0.005, 0.01, 0.0], [0.0, 0.01, 0.5, -0.005, -0.01, 0.0]]))
    return images, target, sources, depth, K, T_init


def _forward(refiner, depth, K, T_init, target, sources) -> None:
    with torch.no_grad():
        refiner(depth, K, T_init, target, sources)


def _forward_backward(refiner, depth, K, T_init, target, sources) -> None:
    """Backward from a loss on every level's pose, as in training."""
    ft = [tuple(x.detach().requires_grad_() for x in level) for level in target]
    fs = [tuple(x.detach().requires_grad_() for x in level) for level in sources]
    result = refiner(depth, K, T_init, ft, fs)
    sum(p[:, :3].square().sum() for p in result.level_poses).backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    net = FeatureNet()
    defaults = FeatureMetricRefiner()
    print(f"\n## LM refinement alone ({machine()})")
    print(f"{torch.get_num_threads()} threads, strides {defaults.strides}, {defaults.iterations} iterations per level, "
          f"2 pairs per call, median of {args.repeats}\n")
    print("| resolution | points per level | forward ms | forward + backward ms |")
    print("|---|---|---:|---:|")
    for height, width in ((96, 320), (192, 640)):
        images, target, sources, depth, K, T_init = _problem(height, width, net)
        for cap in (None, 4096):
            refiner = FeatureMetricRefiner(max_points=cap)
            problem = (refiner, depth, K, T_init, target, sources)
            sizes = [f.shape[-2] * f.shape[-1] for f, _ in target]
            used = ("dense " if cap is None else "") + "/".join(str(n if cap is None else min(n, cap)) for n in sizes)
            fwd = _median_ms(lambda p=problem: _forward(*p), args.repeats)
            both = _median_ms(lambda p=problem: _forward_backward(*p), args.repeats)
            print(f"| {height}x{width} | {used} | {fwd:.1f} | {both:.1f} |")
        with torch.no_grad():
            feat_ms = _median_ms(lambda x=images: net(x), args.repeats)
        print(f"| {height}x{width} | FeatureNet forward, 3 frames | {feat_ms:.1f} | |")

if __name__ == "__main__":
    main()
