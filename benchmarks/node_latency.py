"""Latency, throughput and memory of perception_node against the bare core pipeline.

For each network size (default 96x320 and 192x640), in one run, with the same weights on both sides:
1. side by side, frame by frame: the bare core (PerceptionPipeline.process in this process: depth +
   scale + refined odometry) on frame i, then frame i through a perception_node process (publish
   image + CameraInfo, wait for its depth). Alternating cancels the drift of a shared machine,
   which moved the core's own median by 10-20 % between 30-frame runs here; end-to-end latency,
   throughput and overhead over the core;
2. ROS open loop: --frames frames published at --rate-factor x the closed-loop frame rate, so
   the node must drop frames; its output rate, resident memory (RSS) at the start, middle and end,
   which must stay flat, and where the frames went: sent, received, dropped stale, processed,
   published by the node, received back (sa4depth_ros.frame_accounting).

    python benchmarks/node_latency.py                       # 300 frames per size
    python benchmarks/node_latency.py --frames 10000        # the long memory run

Prints markdown tables. Without --checkpoint both sides load one randomly initialised checkpoint
written for the run (speed does not depend on training).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import flags_line, machine  # noqa: E402
from process_memory import rss_mb  # noqa: E402
from sa4depth_core.checkpoint import save_checkpoint  # noqa: E402
from sa4depth_core.config import Config  # noqa: E402
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence  # noqa: E402
from sa4depth_core.data.synth import generate_sequence  # noqa: E402
from sa4depth_core.loaded_model import load_model  # noqa: E402
from sa4depth_core.model import SA4DepthModel  # noqa: E402
from sa4depth_core.pipeline import PerceptionPipeline  # noqa: E402
from sa4depth_core.pipeline_options import PipelineOptions  # noqa: E402
from sa4depth_ros.frame_accounting import account_frames, counts_since, node_settled  # noqa: E402
from sa4depth_ros.frame_client import FrameClient  # noqa: E402
from sa4depth_ros.ros_env import ensure_loopback_dds  # noqa: E402

OUTPUTS = ("depth/image", "depth/camera_info", "odom", "path")  # what a typical consumer subscribes to


def _frames(size: tuple[int, int], tmp: Path, count: int = 8):
    h, w = size
    generate_sequence(tmp, "00", num_frames=count, height=h, width=w, seed=0)
    seq = KittiOdometrySequence(tmp, "00")
    return [seq.image(i) for i in range(len(seq))], seq.intrinsics()


def untrained_checkpoint(size, path: Path) -> str:
    """Write a randomly initialised model for `size` to `path`, so node and core share weights;
    its features are declared trained, so that both run the refinement (time does not depend on
    the weights; without the flag the odometry would be PoseNet's alone)."""
    cfg = Config()
    cfg.model.height, cfg.model.width = size
    save_checkpoint(path, config=cfg.to_dict(), model=SA4DepthModel(cfg).state_dict(), features_trained=True)
    return str(path)


def _summary(times_ms: list) -> dict:
    return {"p50": float(np.median(times_ms)), "p95": float(np.percentile(times_ms, 95)),
            "fps": 1e3 / float(np.mean(times_ms))}


def start_node(size, args, checkpoint: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "sa4depth_ros.perception_node", "--ros-args",
           "--params-file", str(REPO / "config" / "sa4depth.yaml"),
           "-p", f"input_height:={size[0]}", "-p", f"input_width:={size[1]}", "-p", f"threads:={args.threads}",
           "-p", f"checkpoint:={checkpoint}", "-p", "diagnostics_period:=1.0",
           "-p", f"backend:={args.backend}", "-p", f"precision:={args.precision}",
           "-p", f"parallel:={str(args.parallel).lower()}"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def side_by_side(client: FrameClient, proc, core, core_frame, images, K, args, t0: float) -> tuple[dict, list]:
    """Frame i through the core, then through the node with one frame in flight; returns the ROS
    summary (with `paired`: the median over frames of ROS / core - 1) and the core's per-frame
    milliseconds. End-to-end ROS latency runs from publish to the depth's arrival. A frame whose
    depth does not come back within 10 s (best-effort input: DDS may drop it) is counted as lost
    and left out of the timing.

    The core runs in a worker thread, as in the node: with a busy CPU, torch's intra-op threads
    started from the main thread showed multi-second stalls here that a worker thread did not."""
    latencies, core_ms, ratios, lost, busy = [], [], [], 0, 0.0
    for i in range(args.latency_frames):
        start = time.perf_counter()
        core.submit(core_frame, images[i % len(images)], K, 0.1 * i).result()
        core_ms.append(1e3 * (time.perf_counter() - start))
        sent = time.monotonic()
        stamp = client.send(images[i % len(images)], K, t0 + 0.1 * i)
        if client.with_stamp("depth/image", stamp, 10.0) is None:
            if proc.poll() is not None:
                raise RuntimeError(f"perception_node exited with {proc.returncode}")
            lost += 1
            continue
        arrived = next(t for t, m in client.arrivals("depth/image") if m.header.stamp == stamp)
        latencies.append(1e3 * (arrived - sent))
        busy += arrived - sent
        ratios.append(latencies[-1] / core_ms[-1])
    return {**_summary(latencies), "fps": len(latencies) / busy, "lost": lost,
            "paired": float(np.median(ratios)) - 1.0}, core_ms


def settled_status(client: FrameClient, after: float, published_before: dict | None = None) -> dict:
    """The node's newest diagnostics once every frame it received has met its fate and, given the
    status `published_before` the client's counts were cleared at, the client holds each depth
    image published since; {} if that takes over 30 s."""
    def settled(d):
        if not node_settled(d):
            return False
        if published_before is None:
            return True
        published = counts_since(d, published_before)["frames_published"]
        return published == "n/a" or client.count("depth/image") >= published
    return client.diagnostics(timeout=30.0, after=after, predicate=settled) or {}


def open_loop(client: FrameClient, proc, images, K, rate: float, args, t0: float) -> dict:
    """--frames frames at `rate` Hz; RSS of the node at start, middle, end and its largest of
    ten samples spread over the run; where the frames went (frame_accounting)."""
    before = settled_status(client, time.monotonic())  # the node counts since it started
    client.clear()
    rss = {"start": rss_mb(proc.pid)}
    period, start = 1.0 / rate, time.monotonic()
    for i in range(args.frames):
        target = start + i * period
        time.sleep(max(0.0, target - time.monotonic()))
        client.send(images[i % len(images)], K, t0 + i * period)
        if i == args.frames // 2:
            rss["middle"] = rss_mb(proc.pid)
        if i % max(1, args.frames // 10) == 0:
            rss["max"] = max(rss.get("max", 0.0), rss_mb(proc.pid))
    sent_for = time.monotonic() - start
    diag = settled_status(client, time.monotonic(), before)
    rss["end"] = rss_mb(proc.pid)
    rss["max"] = max(rss["max"], rss["end"])
    received = client.count("depth/image")
    frames, losses = account_frames(args.frames, counts_since(diag, before), {"depth": received})
    return {"in_hz": args.frames / sent_for, "out_hz": received / sent_for, "received": received,
            "frames": frames, "losses": losses, "rss": rss}


def measure(size, args, domain: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        images, K = _frames(size, Path(tmp))
        checkpoint = args.checkpoint or untrained_checkpoint(size, Path(tmp) / "untrained.pt")
        torch.set_num_threads(args.threads)
        pipe = PerceptionPipeline(load_model(checkpoint, "cpu"), torch.device("cpu"),
                                  PipelineOptions(height=size[0], width=size[1], backend=args.backend,
                                                  precision=args.precision, threads=args.threads,
                                                  parallel=args.parallel))
        result = {"size": f"{size[0]}x{size[1]}", "backend": pipe.status()["inference_backend"]}
        proc = start_node(size, args, checkpoint)
        client = FrameClient(domain, topics=OUTPUTS, tf=False, keep=20)
        core = ThreadPoolExecutor(max_workers=1)
        try:
            if not client.wait_connected(timeout=60, outputs=OUTPUTS) or client.warm_up(images[0], K) is None:
                raise RuntimeError("perception_node did not come up")
            for i in range(args.warmup):
                core.submit(pipe.process, images[i % len(images)], K, 0.1 * i).result()
                client.with_stamp("depth/image", client.send(images[i % len(images)], K, 1000.0 + 0.1 * i), 60.0)
            pipe.reset()  # the measured frames restart the core's stamps at 0
            result["ros"], core_ms = side_by_side(client, proc, core, pipe.process, images, K, args, t0=2000.0)
            result["core"] = _summary(core_ms)
            # the node's own view of the same frames: pipeline time and receipt -> published
            diag = client.diagnostics(timeout=5.0, after=time.monotonic()) or {}
            result["ros"]["node_inference_p50"] = float(diag.get("inference_ms_p50", "nan"))
            result["ros"]["node_latency_p50"] = float(diag.get("latency_ms_p50", "nan"))
            # above what the node just managed with one frame in flight, so it has to drop frames
            rate = args.rate_factor * result["ros"]["fps"]
            result["open"] = open_loop(client, proc, images, K, rate, args, t0=5000.0)
        finally:
            core.shutdown()
            client.close()
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=300, help="open-loop frames per size (memory run)")
    p.add_argument("--latency-frames", type=int, default=50, help="closed-loop and core frames per size")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--sizes", default="96x320,192x640", help="network sizes HxW, comma separated")
    # One thread: on a CPU shared with other processes, torch's OpenMP threads (default active
    # waiting) stalled for seconds at a time here, which buries the overhead being measured.
    p.add_argument("--threads", type=int, default=1, help="torch threads of node and core alike")
    p.add_argument("--backend", default="torch", help="inference backend of node and core alike (auto picks "
                   "the fastest that works here)")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--parallel", action="store_true", help="depth beside PoseNet and features in both")
    p.add_argument("--rate-factor", type=float, default=2.0, help="open-loop input rate / core frame rate")
    p.add_argument("--checkpoint", default="")
    p.add_argument("--domain-id", type=int, default=1 + os.getpid() % 100)
    args = p.parse_args(argv)
    ensure_loopback_dds(args.domain_id)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    results = [measure(size, args, args.domain_id) for size in sizes]

    print(f"\n## node_latency ({machine()})\n{flags_line()}; networks on "
          f"{'; '.join(sorted({r['size'] + ': ' + r['backend'] for r in results}))} (node and core alike, backend "
          f"{args.backend}, precision {args.precision}{', parallel' if args.parallel else ''}); depth + refined odometry "
          f"(features declared trained)\n")
    print(f"\n### perception_node vs core pipeline, frame by frame ({args.threads} torch thread(s) in both, "
          f"{args.latency_frames} frames, one in flight, same weights)\n")
    print("| size (HxW) | core p50 ms | core p95 ms | core fps | ROS p50 ms | ROS p95 ms | ROS fps | overhead p50 "
          "| overhead, median of per-frame ratios | lost | node: pipeline p50 ms | node: receipt -> published p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        c, ros = r["core"], r["ros"]
        print(f"| {r['size']} | {c['p50']:.1f} | {c['p95']:.1f} | {c['fps']:.1f} | {ros['p50']:.1f} | "
              f"{ros['p95']:.1f} | {ros['fps']:.1f} | {100 * (ros['p50'] / c['p50'] - 1):+.0f} % | "
              f"{100 * ros['paired']:+.0f} % | {ros['lost']} | "
              f"{ros['node_inference_p50']:.1f} | {ros['node_latency_p50']:.1f} |")
    print(f"\n### Open loop: {args.frames} frames at {args.rate_factor:g}x the node's closed-loop frame rate\n")
    print("| size (HxW) | input Hz | output Hz | depth received | RSS start MB | RSS middle MB | RSS end MB "
          "| RSS max MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        o = r["open"]
        print(f"| {r['size']} | {o['in_hz']:.1f} | {o['out_hz']:.1f} | {o['received']} | "
              f"{o['rss']['start']:.0f} | {o['rss'].get('middle', float('nan')):.0f} | {o['rss']['end']:.0f} | {o['rss']['max']:.0f} |")
    stages = list(results[0]["open"]["frames"])
    print(f"\n### Open loop: where the frames went (sent by this script -> perception_node -> its depth back)\n")
    print("| size (HxW) | " + " | ".join(stages) + " |")
    print("|---|" + "---|" * len(stages))
    for r in results:
        print(f"| {r['size']} | " + " | ".join(str(r["open"]["frames"][k]) for k in stages) + " |")
    for r in results:
        for finding in r["open"]["losses"]:
            print(f"- {r['size']}: {finding}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
