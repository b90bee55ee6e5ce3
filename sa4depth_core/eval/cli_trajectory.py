"""`sa4depth-eval odom --bag / --trajectory`: score a recorded or saved trajectory against ground truth.

The estimate is a trajectory file (`--trajectory`, KITTI or TUM, told apart by column count)
or an Odometry topic in the bag (`--est-topic`, default: the bag's only non-ground-truth
Odometry topic). Ground truth is a poses file (`--gt`) or the bag's (see
`data.bag_ground_truth.find_ground_truth`). With stamps on both sides the ground truth is
interpolated at the estimate's stamps; otherwise poses are matched line by line. When the bag's
`/tf_static` connects the two body frames, the ground truth is moved to the estimate's frame.
Writes the metrics (table, `--json`), a top-view plot (`--plot`, default next to the JSON) and,
with `--checkpoint`, a depth strip of a few bag frames (`<plot>_depth.png`).
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np

from ..data.bag_ground_truth import (
    GT_FRAME_PREFIX,
    StaticTransforms,
    find_ground_truth,
    is_ground_truth_topic,
    read_odometry,
)
from ..data.bag_reader import COMPRESSED_TYPE, IMAGE_TYPE, ODOMETRY_TYPE, bag_topics, deserialize, open_bag
from ..data.bag_sequence import BagImageSequence
from ..errors import InputError
from ..infer import DepthPredictor, select_device
from ..loaded_model import load_model
from .cli_odometry import plot_path
from .odometry_metrics import absolute_to_relative, odometry_errors, pair_errors, snippet_ate
from .report import format_table, pair_columns
from .trajectory_matching import load_trajectory, match_trajectories
from .trajectory_plot import depth_strip, plot_trajectories

STRIP_FRAMES = 4


def _load_file(path: str | Path) -> tuple[np.ndarray | None, np.ndarray]:
    """A KITTI or TUM trajectory file, its stamps in int64 ns like a bag's.

    Returns:
        stamps (N,) int64 ns or None for KITTI, and poses (N,4,4).
    """
    stamps, poses = load_trajectory(path)
    return (None if stamps is None else np.round(stamps * 1e9).astype(np.int64)), poses


def _body_change(static: StaticTransforms, gt_body: str, est_body: str) -> np.ndarray | None:
    """(4,4) pose of the estimate's body in the ground truth's body (a `gt_X` body is looked up
    as `X`), or None when they are the same frame or `/tf_static` does not connect them."""
    for body in (gt_body, gt_body[len(GT_FRAME_PREFIX):]) if gt_body.startswith(GT_FRAME_PREFIX) else (gt_body,):
        if body == est_body:
            return None
        T = static.lookup(body, est_body)
        if T is not None:
            return T
    return None


def _estimate(args, reader, where: str, gt_topic: str | None) -> tuple[np.ndarray | None, np.ndarray, str, str]:
    """(stamps or None, poses, body frame or '', description) of the estimate."""
    if args.trajectory:
        stamps, poses = _load_file(args.trajectory)
        return stamps, poses, "", str(args.trajectory)
    if reader is None:
        raise InputError("sa4depth-eval odom: give an estimate with --trajectory FILE or --bag BAG (--est-topic)")
    topic = args.est_topic
    if not topic:
        odom = sorted(t for t, typ in bag_topics(reader).items()
                      if typ == ODOMETRY_TYPE and t != gt_topic and not is_ground_truth_topic(t))
        if len(odom) != 1:
            raise InputError(f"{where}: cannot tell which odometry topic is the estimate ({odom or 'none'}); "
                             f"use --est-topic or --trajectory")
        topic = odom[0]
    traj = read_odometry(reader, topic, where)
    return traj.stamps_ns, traj.poses, traj.child_frame_id, f"{where} {topic}"


def _camera_frame(reader) -> str:
    """frame_id of the bag's only image topic, else ''."""
    images = [c for c in reader.connections if c.msgtype in (IMAGE_TYPE, COMPRESSED_TYPE)]
    if len({c.topic for c in images}) != 1:
        return ""
    first = next(iter(reader.messages(images)), None)
    return deserialize(first[2], images[0].msgtype, f"{reader.bag} {images[0].topic}").header.frame_id if first else ""


def evaluate(args) -> dict:
    """Match estimate and ground truth from files and/or a bag and compute the odometry metrics.

    Returns the metrics dict plus `_gt` / `_est`: the matched (N,4,4) trajectories before the
    alignment, which `plot_trajectories` applies the same way as the metrics.
    """
    where = str(args.bag) if args.bag else "sa4depth-eval odom"
    with open_bag(args.bag) if args.bag else nullcontext() as reader:
        gt_topic, gt_body = None, ""
        if args.gt:
            gt_stamps, gt = _load_file(args.gt)
            gt_name = str(args.gt)
        else:
            if reader is None:
                raise InputError("sa4depth-eval odom: give ground truth with --gt FILE or --bag BAG")
            traj = find_ground_truth(reader, where, args.gt_topic)
            if traj is None:
                raise InputError(f"{where}: no ground truth (no odometry topic with a 'gt' name part, no gt_* frame "
                                 f"on /tf); pass --gt-topic or --gt FILE")
            gt_stamps, gt, gt_body, gt_topic = traj.stamps_ns, traj.poses, traj.child_frame_id, traj.topic
            gt_name = f"{where} {traj.topic}"
        est_stamps, est, est_body, est_name = _estimate(args, reader, where, gt_topic)
        change = None
        if reader is not None and gt_body:
            est_body = est_body or _camera_frame(reader)
            change = _body_change(StaticTransforms.from_reader(reader, where), gt_body, est_body)
    gt_m, est_m, stamps = match_trajectories(gt_stamps, gt, est_stamps, est, where)
    if change is not None:
        gt_m = gt_m @ change
    result = odometry_errors(gt_m, est_m, alignment=args.align)
    snippets = snippet_ate(absolute_to_relative(est_m), gt_m)
    result.update(gt=gt_name, est=est_name, ate_5frame_mean=snippets["mean"], ate_5frame_std=snippets["std"],
                  pairs=pair_errors(absolute_to_relative(gt_m), absolute_to_relative(est_m)),
                  body_frame=est_body or gt_body or None, matched_by="stamps" if stamps is not None else "line",
                  _gt=gt_m, _est=est_m)
    return result


def _strip(args, plot: Path) -> Path | None:
    if not (args.checkpoint and args.bag):
        return None
    device, _ = select_device(args.device)
    loaded = load_model(args.checkpoint, device)
    seq = BagImageSequence(args.bag)
    predictor = DepthPredictor(loaded, device)
    frames = np.unique(np.linspace(0, len(seq) - 1, min(STRIP_FRAMES, len(seq))).round().astype(int))
    rgbs = [seq.image(int(i)) for i in frames]
    depths = [predictor(rgb, seq.intrinsics())[0][0, 0].cpu().numpy() for rgb in rgbs]
    return depth_strip(plot.with_name(plot.stem + "_depth.png"), rgbs, depths,
                       [f"frame {i}  t0 + {seq.timestamp(int(i)) - seq.timestamp(0):.2f} s" for i in frames])


def run(args) -> dict:
    """`sa4depth-eval odom` in trajectory mode: print the table, write the plot (and depth strip)."""
    result = evaluate(args)
    gt, est = result.pop("_gt"), result.pop("_est")
    row = {"align": result["alignment"], "scale": result["scale"], "t_err(%)": result["t_err"],
           "r_err(deg/100m)": result["r_err"], "ATE(m)": result["ate"], "RPE(m)": result["rpe_trans"],
           "RPE(deg)": result["rpe_rot"], "ATE5(m)": result["ate_5frame_mean"],
           **pair_columns(result["pairs"]), "frames": result["num_frames"]}
    print(format_table({"estimate": row}, title=f"Odometry: {result['est']} vs {result['gt']}",
                       label_header="trajectory"))
    if result["num_segments"] == 0:
        print("note: the trajectory is shorter than 100 m, so t_err / r_err are undefined")
    plot = plot_path(args.plot, args.json)
    if plot is not None:
        drawn = plot_trajectories(plot, gt, est, result["alignment"], f"{Path(result['est']).name} vs ground truth")
        result["plot"] = drawn.path
        print(f"wrote {drawn.path}")
        strip = _strip(args, plot)
        if strip is not None:
            result["depth_strip"] = strip
            print(f"wrote {strip}")
    return result
