"""Depth, pose and feature networks on every inference backend and precision available here,
side by side in one run: milliseconds per frame, speed-up over torch fp32, start-up time (ONNX
export + compilation) and agreement with torch fp32 (max abs difference on fixed frames).

The networks are untrained ones of the shipped architecture (ResNet-18 depth and pose nets, the
feature U-Net): speed does not depend on the weights, and parity is a property of the runtime.
Timing is round-robin (one call of every backend, then the next round), so a change of load
during the run hits all backends alike.

    python benchmarks/backends.py [--sizes 96x320 192x640] [--repeats 20] [--threads 2]
"""
from __future__ import annotations

import argparse
import importlib.metadata
import statistics
import time

import torch
from common import flags_line, machine, save_result, speed_flags

from sa4depth_core.backends import make_networks, plan
from sa4depth_core.backends.parity import compare, probe_images
from sa4depth_core.config import load_config
from sa4depth_core.loaded_model import load_model

COMBOS = [("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16")]
# CPU features that decide which kernels the runtimes can use
PARTS = ("depth", "pose", "features")


def _versions() -> str:
    found = []
    for package in ("torch", "openvino", "onnxruntime"):
        try:
            found.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{package} not installed")
    return ", ".join(found)


def _round_robin_ms(calls: dict, repeats: int) -> dict:
    """{name: median ms} of calls {name: fn}, each called once per round after one warm-up round."""
    times = {name: [] for name in calls}
    for round_ in range(repeats + 1):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            if round_:
                times[name].append(1e3 * (time.perf_counter() - start))
    return {name: statistics.median(t) for name, t in times.items()}


def _bench_size(height: int, width: int, repeats: int, log) -> list[dict]:
    torch.manual_seed(0)
    loaded = load_model(None, "cpu", load_config(None, [f"model.height={height}", f"model.width={width}"]))
    built = {}
    for backend, precision in COMBOS:
        start = time.perf_counter()
        try:
            nets, description = make_networks(loaded, backend, precision, verify=False, fallback=False)
        except Exception as exc:  # noqa: BLE001 - a backend missing here is reported, not fatal
            log(f"{height}x{width} {backend} {precision}: not available ({exc})")
            continue
        built[description] = (nets, time.perf_counter() - start)
    target, source = probe_images(height, width, torch.device("cpu"))
    rows = {d: {"size": f"{height}x{width}", "backend": d, "startup_s": s} for d, (_, s) in built.items()}
    for part in PARTS:
        calls = {d: {"depth": lambda n=n: n.depth(target),
                     "pose": lambda n=n: n.relative_pose(target, source, -1),
                     "features": lambda n=n: n.feature_net(target)}[part] for d, (n, _) in built.items()}
        for d, ms in _round_robin_ms(calls, repeats).items():
            rows[d][f"{part}_ms"] = ms
    reference = built["torch fp32 (cpu)"][0]
    for d, (nets, _) in built.items():
        rows[d]["parity"] = compare(reference, nets)
    return list(rows.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", nargs="+", default=["96x320", "192x640"])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    notes = []
    rows = []
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        rows += _bench_size(h, w, args.repeats, notes.append)
    cpu = torch.device("cpu")
    auto = " -> ".join(f"{b} {p}" for b, p in plan("auto", "auto", cpu))
    flags = speed_flags()
    print(f"\n## backends ({machine()})")
    print(f"{flags_line()}; "
          f"{_versions()}. `auto` here tries {auto}. Untrained networks of the shipped architecture, "
          f"{args.threads} threads, median of {args.repeats} round-robin calls.\n")
    print("| size | backend | depth ms | pose ms | features ms | all three ms | speed-up vs torch fp32 | start-up s |")
    print("|---|---|---|---|---|---|---|---|")
    base = {r["size"]: r for r in rows if r["backend"] == "torch fp32 (cpu)"}
    for r in rows:
        total = sum(r[f"{part}_ms"] for part in PARTS)
        ref = base[r["size"]]
        speedups = " / ".join(f"{ref[f'{part}_ms'] / r[f'{part}_ms']:.2f}" for part in PARTS)
        ref_total = sum(ref[f"{part}_ms"] for part in PARTS)
        r["all_ms"] = total
        print(f"| {r['size']} | {r['backend']} | {r['depth_ms']:.1f} | {r['pose_ms']:.1f} | {r['features_ms']:.1f} | "
              f"{total:.1f} | {speedups} (all {ref_total / total:.2f}) | {r['startup_s']:.1f} |")
    print("\nSpeed-up is depth / pose / features. Agreement with torch fp32 on fixed frames (max abs difference; "
          "depth is derived from disparity in float32):\n")
    print("| size | backend | disparity | depth | pose | features | confidence |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        d = r["parity"]
        print(f"| {r['size']} | {r['backend']} | {d['disparity']:.1e} | {d['depth']:.1e} | {d['pose']:.1e} | "
              f"{d['features']:.1e} | {d['confidence']:.1e} |")
    for note in notes:
        print(f"\n{note}")
    path = save_result("backends", {"threads": args.threads, "repeats": args.repeats, "cpu_flags": flags,
                                    "versions": _versions(), "auto": auto, "rows": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
