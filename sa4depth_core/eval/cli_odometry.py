"""`sa4depth-eval odom`: evaluate an estimated trajectory file against a ground-truth file.

Reads KITTI or TUM files matched as `trajectory_matching.load_trajectory_pair` (line by line,
or by nearest stamp), prints the kitti-odom-eval numbers plus the 5-frame snippet ATE, and
optionally writes them to JSON and a top-view plot of both trajectories after the same alignment.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from sa4depth_core.errors import InputError
from sa4depth_core.eval.odometry_metrics import (ALIGNMENTS, absolute_to_relative,
                                                 odometry_errors, pair_errors, snippet_ate)
from sa4depth_core.eval.report import format_table, pair_columns, refuse_directories, write_json
from sa4depth_core.eval.trajectory_matching import FORMATS, load_trajectory_pair
from sa4depth_core.eval.trajectory_plot import plot_trajectories


def evaluate_trajectory_files(gt_path: str | Path, est_path: str | Path, fmt: str = "kitti",
                              alignment: str = "none", max_dt: float = 0.01, plot: str | Path | None = None) -> dict:
    """kitti-odom-eval numbers plus the 5-frame snippet ATE and the per-pair errors (`pairs`,
    odometry_metrics.pair_errors) for one pair of files; with `plot`, also a top view of both
    (`plot_trajectories`, the same alignment) whose path is in `plot`."""
    gt, est = load_trajectory_pair(gt_path, est_path, fmt, max_dt)
    result = odometry_errors(gt, est, alignment)
    snippets = snippet_ate(absolute_to_relative(est), gt)
    result["ate_5frame_mean"] = snippets["mean"]
    result["ate_5frame_std"] = snippets["std"]
    result["pairs"] = pair_errors(absolute_to_relative(gt), absolute_to_relative(est))
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
    parser.add_argument("--format", choices=FORMATS, default="kitti",
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


def plot_path(plot: str | Path | None, json: str | Path | None) -> Path | None:
    """Where the top-view plot goes: `--plot`, else beside the `--json` numbers as .png, else nowhere."""
    if plot:
        return Path(plot)
    return Path(json).with_suffix(".png") if json else None


def run(gt: str | Path, est: str | Path, fmt: str = "kitti", align: str = "none", max_dt: float = 0.01,
        plot: str | Path | None = None) -> dict:
    """Print the table of `evaluate_trajectory_files` (and write the plot); returns its numbers with
    the file names and format, what `--json` holds."""
    gt, est = Path(gt), Path(est)
    result = evaluate_trajectory_files(gt, est, fmt, align, max_dt, plot)
    row = {"align": result["alignment"], "scale": result["scale"],
           "t_err(%)": result["t_err"], "r_err(deg/100m)": result["r_err"],
           "ATE(m)": result["ate"], "RPE(m)": result["rpe_trans"],
           "RPE(deg)": result["rpe_rot"], "ATE5(m)": result["ate_5frame_mean"],
           "ATE5_std(m)": result["ate_5frame_std"], **pair_columns(result["pairs"]), "frames": result["num_frames"],
           "segments": result["num_segments"]}
    print(format_table({est.name: row}, title=f"Odometry: {est} vs {gt}", label_header="trajectory"))
    if result["num_segments"] == 0:
        print("note: the trajectory is shorter than 100 m, so t_err / r_err are undefined")
    if plot is not None:
        print(f"wrote {result['plot']}")
    return {"gt": gt, "est": est, "format": fmt, **result}


def main(argv: Sequence[str] | None = None) -> int:
    """Run `sa4depth-eval odom`; returns the process exit code (2 on bad input)."""
    args = build_parser().parse_args(argv)
    try:
        refuse_directories(json=args.json, plot=args.plot)
        result = run(args.gt, args.est, args.format, args.align, args.max_dt, plot_path(args.plot, args.json))
        if args.json is not None:
            write_json(args.json, result)
            print(f"wrote {args.json}")
    except (InputError, OSError) as exc:  # OSError: an output that is a directory, a full disk
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
