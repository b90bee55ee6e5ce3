"""`sa4depth-eval`: depth (Eigen protocol), odometry (KITTI drift, ATE, RPE) and scale consistency.

    sa4depth-eval depth --checkpoint best.pt --data-kind kitti_raw --data-root KITTI --split-file test_files.txt
    sa4depth-eval depth --checkpoint best.pt --data-root runs/synth --sequences 10,11 --crop none
    sa4depth-eval odom --checkpoint best.pt --data-root KITTI/odometry --sequences 09,10 --save-dir out/
    sa4depth-eval odom --gt poses/09.txt --est est_09.txt --align 7dof
    sa4depth-eval odom --bag run.mcap --est-topic /odom --json out/run.json      # recorded odometry vs bag GT
    sa4depth-eval odom --bag kitti09 --trajectory traj.tum --checkpoint best.pt --plot out/09.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..config import Config
from ..data.kitti_raw import KittiRawDrive, load_split_file
from ..data.pose_io import save_kitti_poses, save_tum_poses
from ..data.sources import open_sequences
from ..errors import InputError
from ..backends import BACKENDS, PRECISIONS, make_networks
from ..infer import select_device
from ..loaded_model import load_model
from .trajectory_plot import plot_trajectories
from . import cli_odometry, cli_trajectory
from .depth_metrics import evaluate_depth
from .odometry_metrics import absolute_to_relative, odometry_errors, pair_errors, snippet_ate
from .report import format_table, pair_columns, refuse_directories, write_json
from .run_model import run_sequence
from .scale_consistency import frame_scale_ratios, pose_depth_scale_ratios, sequence_scale_consistency
from .trajectory_matching import FORMATS


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="project checkpoint (.pt) or Monodepth2 weights folder")
    p.add_argument("--data-kind", default="kitti_odometry", choices=["kitti_odometry", "kitti_raw", "folder", "bag"])
    p.add_argument("--data-root", help="dataset root")
    p.add_argument("--sequences", default="", help="comma-separated sequences / drives / folders")
    p.add_argument("--camera", default="image_2", help="KITTI camera image_0..image_3 (data.camera; default image_2)")
    p.add_argument("--max-frames", type=int, default=0, help="evaluate at most this many frames per sequence")
    p.add_argument("--device", default="auto")
    p.add_argument("--backend", default="torch", choices=BACKENDS,
                   help="what runs the networks (auto: the fastest that works here; see docs/backends.md)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--json", help="write all numbers to this JSON file")


def _model(args):
    """(loaded model, device, inference networks) from the common arguments."""
    device, note = select_device(args.device)
    if note:
        print(note, file=sys.stderr)
    loaded = load_model(args.checkpoint, device)
    nets, description = make_networks(loaded, args.backend, args.precision, device)
    print(f"networks: {description}")
    return loaded, device, nets


def _sequences(args):
    cfg = Config()
    cfg.data.kind, cfg.data.root = args.data_kind, args.data_root or ""
    cfg.data.camera = args.camera
    if getattr(args, "bag", None):
        cfg.data.kind, cfg.data.bag = "bag", args.bag
    return open_sequences(cfg, [s for s in args.sequences.split(",") if s])


def _frames(seq, max_frames: int) -> range:
    return range(min(len(seq), max_frames) if max_frames else len(seq))


def cmd_depth(args) -> dict:
    items = load_split_file(args.split_file) if args.split_file else None  # a bad file before the model loads
    loaded, device, nets = _model(args)
    if items is not None:
        jobs: dict[str, tuple] = {}
        for item in items:
            drive = jobs.setdefault(item.drive, (KittiRawDrive(Path(args.data_root) / item.drive), []))
            drive[1].append(drive[0].index_of(item.frame))
        work = [(seq, idx) for seq, idx in jobs.values()]
    else:
        work = [(seq, _frames(seq, args.max_frames)) for seq in _sequences(args)]
    gts, preds, ratios_by_seq = [], [], {}
    for seq, frames in work:
        if not seq.has_depth:
            raise InputError(f"{seq.name}: has no ground-truth depth to evaluate against")
        run = run_sequence(loaded, seq, device, frames, odometry=False, nets=nets)
        seq_gt = [seq.gt_depth(i) for i in frames]
        gts += seq_gt
        preds += run.depths
        ratios_by_seq[seq.name] = frame_scale_ratios(seq_gt, run.depths, pred_kind="depth", resize="disparity",
                                                     max_depth=args.max_depth, crop=args.crop)
    result = evaluate_depth(gts, preds, pred_kind="depth", median_scaling=not args.no_median_scaling,
                            fixed_scale=args.scale, max_depth=args.max_depth, crop=args.crop)
    rows = {"per-image scale" if not args.no_median_scaling else "no scaling": result["metrics"]}
    if result.get("global_metrics"):
        rows[f"one scale ({result['global_scale']:.3g})"] = result["global_metrics"]
    print(format_table(rows, title=f"Depth ({result['num_evaluated']} images, model {loaded.model_id})"))
    consistency = sequence_scale_consistency(ratios_by_seq)
    print(format_table({k: v for k, v in consistency["per_sequence"].items()}, title="Scale ratio median(GT)/median(pred) per sequence"))
    print(f"across sequences: std/mean of per-sequence scale = {consistency['across_sequences_std_over_mean']:.4f}")
    return {"model": loaded.model_id, "depth": result, "scale_consistency": consistency}


def cmd_odom(args) -> dict:
    if args.trajectory or args.est_topic or (args.bag and not args.checkpoint):
        return cli_trajectory.run(args)
    if args.gt or args.est:
        if not (args.gt and args.est):
            raise InputError("sa4depth-eval odom: file mode needs both --gt FILE and --est FILE")
        return cli_odometry.run(args.gt, args.est, args.format, args.align,
                                plot=cli_odometry.plot_path(args.plot, args.json))
    loaded, device, nets = _model(args)
    out: dict = {"model": loaded.model_id, "features_trained": loaded.features_trained, "sequences": {}}
    if not loaded.features_trained:
        print(f"{loaded.source}: its feature network was never trained, so only PoseNet's odometry is evaluated "
              "(fit the refiner with sa4depth-train --train refiner)")
    for seq in _sequences(args):
        if not seq.has_poses:
            raise InputError(f"{seq.name}: has no ground-truth poses to evaluate against")
        frames = _frames(seq, args.max_frames)
        run = run_sequence(loaded, seq, device, frames, nets=nets)
        gt = np.stack([seq.pose(i) for i in frames])
        gt_rel = absolute_to_relative(gt)
        depth_ratios = None
        if seq.has_depth:
            depth_ratios = frame_scale_ratios([seq.gt_depth(i) for i in frames], run.depths, pred_kind="depth",
                                              resize="disparity", crop="none")
        rows, seq_out = {}, {}
        for mode, est in run.poses.items():
            res = odometry_errors(gt, est, alignment=args.align)
            pred_rel = absolute_to_relative(est)
            pairs = pair_errors(gt_rel, pred_rel)
            row = {"t_err%": res["t_err"], "r_err/100m": res["r_err"], "ATE": res["ate"],
                   "ATE5": snippet_ate(pred_rel, gt)["mean"], **pair_columns(pairs),
                   "ms/frame": run.ms_odometry[mode] + run.ms_depth}
            if depth_ratios is not None:
                # pose i -> i+1 is tied to the depth of frame i+1, the refinement's target
                pd = pose_depth_scale_ratios(pred_rel, gt_rel, depth_ratios[1:])
                row["pose/depth scale"] = pd["mean"]
                row["its std/mean"] = pd["std_over_mean"]
            rows[mode] = row
            seq_out[mode] = {"errors": res, "ate5": row["ATE5"], "pairs": pairs, "ms_per_frame": row["ms/frame"],
                             "pose_depth_scale": pd if depth_ratios is not None else None}
            base = cli_odometry.plot_path(args.plot, args.json)
            if base is not None:
                stem = seq.name.replace("/", "_")
                plot = base.with_name(f"{base.stem}_{stem}_{mode}.png")
                plot_trajectories(plot, gt, est, args.align, title=f"{seq.name}: {mode} odometry")
                seq_out[mode]["plot"] = str(plot)
            if args.save_dir:
                d = Path(args.save_dir)
                d.mkdir(parents=True, exist_ok=True)
                stem = seq.name.replace("/", "_")
                save_kitti_poses(d / f"{stem}_{mode}.txt", est)
                save_tum_poses(d / f"{stem}_{mode}.tum", np.array([seq.timestamp(i) for i in frames]), est)
        note = "PoseNet only: untrained features"
        if "refined" in run.poses:
            rejected = sum(t.failed for t in run.tracking)
            note = f"refinement accepted on {run.acceptance:.1%} of the steps, rejected on {rejected}"
            seq_out["refined"]["acceptance"] = run.acceptance
        print(format_table(rows, title=f"Odometry {seq.name} ({len(frames)} frames, align {args.align}, {note})"))
        out["sequences"][seq.name] = seq_out
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="sa4depth-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("depth", help="Eigen-protocol depth metrics and per-sequence scale consistency")
    _model_args(d)
    d.add_argument("--split-file", help="KITTI raw split file (e.g. Eigen test_files.txt); implies kitti_raw")
    d.add_argument("--crop", default="garg", choices=["garg", "none"])
    d.add_argument("--max-depth", type=float, default=80.0)
    d.add_argument("--no-median-scaling", action="store_true", help="evaluate without per-image median scaling")
    d.add_argument("--scale", type=float, default=None, help="fixed factor applied before evaluation")
    o = sub.add_parser("odom", help="KITTI t_err/r_err, ATE, 5-frame ATE, RPE, pose-vs-depth scale")
    _model_args(o)
    o.add_argument("--gt", help="ground-truth poses file (file mode)")
    o.add_argument("--est", help="estimated poses file (file mode)")
    o.add_argument("--format", default="kitti", choices=FORMATS)
    o.add_argument("--align", default="7dof", choices=["none", "scale", "6dof", "7dof", "scale_7dof"])
    o.add_argument("--save-dir", help="write the estimated trajectories (KITTI and TUM formats) here")
    o.add_argument("--bag", help="ROS 2 bag: its ground truth (and odometry topics, or with --checkpoint its images)")
    o.add_argument("--trajectory", help="estimated trajectory file (KITTI or TUM) to score against --gt or the bag")
    o.add_argument("--est-topic", help="Odometry topic in --bag to score (default: the only non-GT one)")
    o.add_argument("--gt-topic", help="ground-truth Odometry topic in --bag (default: the one named .../gt/...)")
    o.add_argument("--plot", help="top-view trajectory PNG (default: next to --json)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        refuse_directories(json=args.json, plot=getattr(args, "plot", None))
        result = cmd_depth(args) if args.command == "depth" else cmd_odom(args)
        if args.json:  # a directory or a full disk is as much the user's to fix as a bad input
            print(f"wrote {write_json(args.json, result)}")
    except (InputError, OSError) as e:
        print(f"sa4depth-eval: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
