"""A camera in its own process, as a driver would be: publishes frames of given sizes with their
CameraInfo (reliable or best effort), one at a time, each once its depth image came back or
`--timeout` passed, and prints one JSON line with what it sent and what came back.

    python test/camera_process.py --domain 7 --qos sensor_data --frames 5 640x480:rgb8 1226x370:mono8

Its own process because Fast DDS reads FASTDDS_DEFAULT_PROFILES_FILE once per process: a
best-effort camera of large frames runs with the profile the package ships, as its docs ask of a
camera driver. `--infos-only` publishes only the CameraInfos (images lost on the way, as far as
the node can tell).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sa4depth_ros.camera_info import K_to_camera_info  # noqa: E402
from sa4depth_ros.frame_client import FrameClient  # noqa: E402
from sa4depth_ros.stamps import stamp_msg  # noqa: E402
from std_msgs.msg import Header  # noqa: E402


def frame(width: int, height: int, seed: int) -> np.ndarray:
    """(H,W,3) uint8 blocky texture, so decoding and resizing work on something image-like."""
    small = np.random.default_rng(seed).integers(0, 256, (max(height // 16, 2), max(width // 16, 2), 3), np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)


def intrinsics(width: int, height: int) -> np.ndarray:
    """(3,3) a plausible pinhole for the size (horizontal field of view about 70 degrees)."""
    f = 0.7 * width
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("sizes", nargs="+", help="WIDTHxHEIGHT:ENCODING")
    parser.add_argument("--domain", type=int, required=True)
    parser.add_argument("--qos", default="reliable")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--infos-only", action="store_true")
    args = parser.parse_args()
    client = FrameClient(args.domain, camera_qos=args.qos, topics=("depth/image",), tf=False, diagnostics=False)
    report = {"qos": args.qos, "sizes": []}
    t = 1.0
    try:
        if not client.wait_connected(timeout=args.timeout):
            report["error"] = "the node never subscribed"
            return 1
        for k, size in enumerate(args.sizes):
            dims, encoding = size.split(":")
            width, height = (int(v) for v in dims.split("x"))
            rgb, K = frame(width, height, k), intrinsics(width, height)
            entry = {"size": size, "warm_up_sent": 0, "sent": 0, "returned": 0}
            if args.infos_only:
                for _ in range(args.frames):
                    t += 0.1
                    header = Header(stamp=stamp_msg(t), frame_id="camera_optical")
                    client.send_messages(None, K_to_camera_info(K, width, height, header))
                    entry["sent"] += 1
                    time.sleep(0.1)  # a camera's pace, 10 Hz
                report["sizes"].append(entry)
                continue
            if k == 0:  # a best-effort reader drops what comes before it has matched the writer
                while True:
                    t += 1.0
                    entry["warm_up_sent"] += 1
                    stamp = client.send(rgb, K, t, encoding=encoding)
                    if client.with_stamp("depth/image", stamp, 2.0) is not None:
                        break
                    if entry["warm_up_sent"] * 2.0 > args.timeout:
                        report["error"] = "no depth for any warm-up frame"
                        return 1
            for _ in range(args.frames):
                t += 0.1
                stamp = client.send(rgb, K, t, encoding=encoding)
                entry["sent"] += 1
                if client.with_stamp("depth/image", stamp, args.timeout) is not None:
                    entry["returned"] += 1
            report["sizes"].append(entry)
        return 0
    finally:
        print(json.dumps(report), flush=True)
        client.close()


if __name__ == "__main__":
    sys.exit(main())
