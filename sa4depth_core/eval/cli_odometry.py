"""`sa4depth-eval odom`: evaluate an estimated trajectory file against a ground-truth file.

Reads KITTI (12 numbers per line: row-major 3x4 camera-to-world) or TUM
(`timestamp tx ty tz qx qy qz qw`) files through data.pose_io, prints the kitti-odom-eval
numbers plus the 5-frame snippet ATE, and optionally writes them to JSON and a top-view plot
of both trajectories after the same alignment.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from sa4depth_core.data.pose_io import load_kitti_poses, load_tum_poses
from sa4depth_core.errors import InputError
from sa4depth_core.eval.odometry_metrics import (ALIGNMENTS, absolute_to_relative,
                                                 odometry_errors, snippet_ate)
from sa4depth_core.eval.report import format_table, write_json
from sa4depth_core.eval.trajectory_plot import plot_trajectories


def _check_increasing(path: str | Path, stamps: np.ndarray) -> None:
    bad = np.flatnonzero(np.diff(stamps) <= 0)
    if bad.size:
        k = int(bad[0]) + 1
        raise InputError(f"{path}: timestamps must increase, but pose {k} (t={stamps[k]!r}) "
                         f"does not follow pose {k - 1} (t={stamps[k - 1]!r})")


def associate_timestamps(t_gt: np.ndarray, t_est: np.ndarray,
                         max_dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Match each estimated stamp to the nearest GT stamp within max_dt (s), one-to-one.

    t_gt (G,), t_est (E,): strictly increasing. When several estimates pick the same GT stamp
    the closest one keeps it. Returns index arrays (idx_gt, idx_est) of equal length, sorted.
    """
    above = np.searchsorted(t_gt, t_est)
    left = np.clip(above - 1, 0, len(t_gt) - 1)
    right = np.clip(above, 0, len(t_gt) - 1)
    take_left = np.abs(t_est - t_gt[left]) <= np.abs(t_est - t_gt[right])
    nearest = np.where(take_left, left, right)
    dt = np.abs(t_est - t_gt[nearest])
    idx_est = np.flatnonzero(dt <= max_dt)
    # Closest first, then keep the first estimate for each GT index.
    order = idx_est[np.argsort(dt[idx_est], kind="stable")]
    _, first = np.unique(nearest[order], return_index=True)
    idx_est = np.sort(order[first])
    return nearest[idx_est], idx_est


def load_trajectory_pair(gt_path: str | Path, est_path: str | Path, fmt: str,
                         max_dt: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Read GT and estimate in `fmt` ('kitti' or 'tum') as matched (N,4,4) stacks."""
    if fmt == "kitti":
        gt, est = load_kitti_poses(gt_path), load_kitti_poses(est_path)
        if len(gt) != len(est):
            raise InputError(f"{gt_path} has {len(gt)} poses but {est_path} has {len(est)}; "
                             f"KITTI files are matched line by line and must be equally long")
        return gt, est
    if fmt == "tum":
        (t_gt, gt), (t_est, est) = load_tum_poses(gt_path), load_tum_poses(est_path)
        _check_increasing(gt_path, t_gt)
        _check_increasing(est_path, t_est)
        idx_gt, idx_est = associate_timestamps(t_gt, t_est, max_dt)
        if len(idx_gt) < 2:
            raise InputError(f"only {len(idx_gt)} of the {len(t_est)} poses in {est_path} have a "
                             f"ground-truth stamp in {gt_path} within {max_dt} s; need at least 2")
        return gt[idx_gt], est[idx_est]
    raise InputError(f"unknown trajectory format {fmt!r}; use 'kitti' or 'tum'")


def evaluate_trajectory_files(gt_path: str | Path, est_path: str | Path, fmt: str = "kitti",
                              alignment: str = "none", max_dt: float = 0.01, plot: str | Path | None = None) -> dict:
    """kitti-odom-eval numbers plus the 5-frame snippet ATE for one pair of files; with `plot`,
    also a top view of both (`plot_trajectories`, the same alignment) whose path is in `plot`."""
    gt, est = load_trajectory_pair(gt_path, est_path, fmt, max_dt)
    result = odometry_errors(gt, est, alignment)
    snippets = snippet_ate(absolute_to_relative(est), gt)
    result["ate_5frame_mean"] = snippets["mean"]
    result["ate_5frame_std"] = snippets["std"]
    if plot is not None:
        result["plot"] = plot_trajectories(plot, gt, est, alignment, f"{Path(est_path).name} vs {Path(gt_path).name}").path
    return result


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of `sa4depth-eval odom`."""
    parser = argparse.ArgumentParser(
        prog="sa4depth-eval odom",
        description="KITTI drift (t_err %, r_err deg/100 m over 100..800 m segments), ATE, RPE "
                    "and 5-frame ATE of an estimated trajectory against ground truth.")
    parser.add_argument("--gt", required=True, type=Path, help="ground-truth trajectory file")
    parser.add_argument("--est", required=True, type=Path, help="estimated trajectory file")
    parser.add_argument("--format", choices=("kitti", "tum"), default="kitti",
                        help="file format of both files (default: kitti)")
    parser.add_argument("--align", choices=ALIGNMENTS, default="none",
                        help="alignment of the estimate after both are expressed in their first "
                             "frame, as kitti-odom-eval (default: none; monocular estimates "
                             "usually need scale or 7dof)")
    parser.add_argument("--max-dt", type=float, default=0.01,
                        help="TUM only: timestamp association tolerance in s (default: 0.01)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--plot", type=Path, help="top-view PNG of both trajectories after the alignment "
                                                  "(default: next to --json)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `sa4depth-eval odom`; returns the process exit code (2 on bad input)."""
    args = build_parser().parse_args(argv)
    try:
        plot = args.plot or (args.json.with_suffix(".png") if args.json is not None else None)
        result = evaluate_trajectory_files(args.gt, args.est, args.format, args.align,
                                           args.max_dt, plot)
        row = {"align": result["alignment"], "scale": result["scale"],
               "t_err(%)": result["t_err"], "r_err(deg/100m)": result["r_err"],
               "ATE(m)": result["ate"], "RPE(m)": result["rpe_trans"],
               "RPE(deg)": result["rpe_rot"], "ATE5(m)": result["ate_5frame_mean"],
               "ATE5_std(m)": result["ate_5frame_std"], "frames": result["num_frames"],
               "segments": result["num_segments"]}
        print(format_table({args.est.name: row}, title=f"Odometry: {args.est} vs {args.gt}",
                           label_header="trajectory"))
        if result["num_segments"] == 0:
            print("note: the trajectory is shorter than 100 m, so t_err / r_err are undefined")
        if plot is not None:
            print(f"wrote {result['plot']}")
        if args.json is not None:
            write_json(args.json, {"gt": args.gt, "est": args.est, "format": args.format,
                                   **result})
            print(f"wrote {args.json}")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
