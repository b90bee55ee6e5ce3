"""Command line `sa4depth-synth`: render a synthetic sequence (see sequence.generate_sequence)."""
from __future__ import annotations

import argparse
import re
import sys
import time

from sa4depth_core.data.synth.sequence import TRAJECTORY_KINDS, generate_sequence
from sa4depth_core.errors import InputError


def _parse_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise InputError(f"--size must look like HEIGHTxWIDTH, e.g. 192x640, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def main(argv: list[str] | None = None) -> int:
    """Command line `sa4depth-synth`; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="sa4depth-synth", description=(
        "Render a synthetic street sequence with exact depth and pose in the KITTI odometry layout."))
    parser.add_argument("--out", required=True, help="dataset root; gets sequences/SS/ and poses/SS.txt")
    parser.add_argument("--seq", default="00", help="two-digit sequence name (default 00)")
    parser.add_argument("--frames", type=int, default=100, help="number of frames (default 100)")
    parser.add_argument("--size", default="192x640", help="HEIGHTxWIDTH in pixels (default 192x640)")
    parser.add_argument("--seed", type=int, default=0, help="scene/trajectory seed (default 0)")
    parser.add_argument("--trajectory", choices=TRAJECTORY_KINDS, default="car")
    parser.add_argument("--kitti-poses", help="KITTI poses file to follow (with --trajectory kitti)")
    parser.add_argument("--start", type=int, default=0, help="first frame of the KITTI poses file to use")
    parser.add_argument("--kitti-scale", type=float, default=1.0, help="factor on the KITTI translations")
    parser.add_argument("--camera-height", type=float, default=1.65, help="metres above the road (default 1.65)")
    parser.add_argument("--max-depth", type=float, default=80.0, help="farther surfaces become sky, depth 0 (default 80)")
    parser.add_argument("--overwrite", action="store_true", help="replace the frames of an existing sequence")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        height, width = _parse_size(args.size)
        started = time.perf_counter()
        seq_dir = generate_sequence(args.out, args.seq, args.frames, height, width, args.seed, args.trajectory,
                                    args.kitti_poses, args.start, args.kitti_scale, args.camera_height,
                                    args.max_depth, args.overwrite, progress=not args.quiet)
    except (InputError, OSError) as exc:  # OSError: e.g. a full disk while writing calib.txt or times.txt
        print(f"sa4depth-synth: error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    print(f"wrote {args.frames} frames ({width}x{height}) to {seq_dir} "
          f"in {elapsed:.1f} s ({1000 * elapsed / args.frames:.1f} ms/frame)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
