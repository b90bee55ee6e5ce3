"""KITTI -> ROS 2 bag conversion speed and bag random-access read speed, both storages.

    python benchmarks/kitti2bag_speed.py                    # 500 synthetic 192x640 frames (generated once)
    python benchmarks/kitti2bag_speed.py --frames 100

Conversion: `sa4depth-kitti2bag` of one odometry sequence (left colour camera, CameraInfo,
static TF, ground-truth odometry + TF) as raw sensor_msgs/Image and as CompressedImage (PNG
bytes passed through). Reading: `BagImageSequence` index time, then `image(i)` in random order
with the frame cache off (what a shuffled training loader does), against decoding the PNG files.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine, save_result, synthetic

from sa4depth_core.data.bag_sequence import BagImageSequence
from sa4depth_core.data.kitti2bag import convert
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def _random_read_ms(seq, order: np.ndarray) -> float:
    started = time.perf_counter()
    for i in order:
        seq.image(int(i))
    return 1000 * (time.perf_counter() - started) / len(order)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--size", default="192x640", help="HEIGHTxWIDTH")
    parser.add_argument("--reads", type=int, default=200, help="random image reads per bag")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    t0 = time.perf_counter()
    root, seq_name = synthetic(f"kitti2bag{args.frames}", args.frames, height, width, seed=0)
    print(f"synthetic sequence ready in {time.perf_counter() - t0:.1f} s: {root}")
    reference = KittiOdometrySequence(root, seq_name)
    order = np.random.default_rng(0).integers(0, len(reference), args.reads)
    png_ms = _random_read_ms(reference, order)

    rows = []
    work = Path(tempfile.mkdtemp(prefix="kitti2bag_bench_"))
    try:
        for storage in ("sqlite3", "mcap"):
            for compressed in (False, True):
                out = work / f"{storage}_{'png' if compressed else 'raw'}"
                result = convert(root / "sequences" / seq_name, out, storage=storage, compressed=compressed)
                started = time.perf_counter()
                bag_seq = BagImageSequence(out, cache_frames=0)
                index_s = time.perf_counter() - started
                read_ms = _random_read_ms(bag_seq, order)
                assert all(np.array_equal(bag_seq.image(int(i)), reference.image(int(i))) for i in order[:5])
                bag_seq.close()
                rows.append({"storage": storage, "images": "CompressedImage (png)" if compressed else "Image (bgr8)",
                             "frames": result.frames, "convert_s": result.seconds,
                             "frames_per_s": result.frames / result.seconds, "bag_mb": _dir_mb(out),
                             "index_s": index_s, "random_read_ms": read_ms})
                shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{machine()}\n{args.frames} frames {width}x{height}; PNG files read in random order: {png_ms:.2f} ms/frame\n")
    print("| storage | images | convert (frames/s) | bag size (MB) | index (s) | random read (ms/frame) |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['storage']} | {r['images']} | {r['frames_per_s']:.0f} | {r['bag_mb']:.0f} | "
              f"{r['index_s']:.2f} | {r['random_read_ms']:.2f} |")
    path = save_result("kitti2bag_speed", {"frames": args.frames, "height": height, "width": width,
                                           "png_random_read_ms": png_ms, "rows": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
