"""`make demo`: the whole path on an embedded default, with no data and no GPU.

1. Generate synthetic street sequences with exact depth and poses (KITTI odometry layout).
2. Get a model: --checkpoint, else the one an earlier demo run trained, else train one briefly on
   the training sequence with the project's own trainer (SA4Depth loss, from scratch).
3. Convert the held-out sequence to a ROS 2 bag (mcap).
4. Start the perception node and the bag player as separate processes on loopback DDS, record
   what the node publishes over real topics, save its trajectory through its service.
5. Score depth against the ground-truth depth and odometry against the ground-truth poses, and
   write depth colour strips, a trajectory plot, TUM/KITTI trajectories and a metrics JSON.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from sa4depth_core.data.kitti2bag import ODOMETRY_EPOCH_S, convert
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.data.pose_io import load_tum_poses, save_kitti_poses, save_tum_poses
from sa4depth_core.data.synth import generate_sequence
from sa4depth_core.eval.recorded import score_recording
from sa4depth_core.eval.report import format_table, write_json
from sa4depth_core.eval.trajectory_plot import depth_strip, plot_trajectories

from .image_codec import msg_to_depth
from .ros_env import ensure_loopback_dds
from .stamps import stamp_seconds

ROOT = Path(__file__).resolve().parents[1]
SIZE = (64, 192)  # learns several times faster per CPU minute than 96x320 (benchmarks/RESULTS.md)
IMAGE_TOPIC = "/kitti/camera_color_left/image_raw"
INFO_TOPIC = "/kitti/camera_color_left/camera_info"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="sa4depth-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "outputs" / "demo"))
    p.add_argument("--checkpoint", default="", help="use this model instead of training one")
    p.add_argument("--train-minutes", type=float, default=5.0, help="training budget of the demo model")
    p.add_argument("--retrain", action="store_true", help="train anew even if an earlier run left a model")
    p.add_argument("--train-frames", type=int, default=400, help="frames of the generated training sequence")
    p.add_argument("--frames", type=int, default=150, help="frames of the held-out sequence")
    p.add_argument("--rate", type=float, default=0.5, help="bag playback rate (1 = real time, 10 Hz)")
    p.add_argument("--domain-id", type=int, default=None)
    return p.parse_args(argv)


def get_model(args, out: Path, log) -> Path:
    if args.checkpoint:
        return Path(args.checkpoint)
    h, w = SIZE
    run = out / f"train_{h}x{w}"
    model = run / "best.pt"
    if model.exists() and not args.retrain:
        log(f"model: {model} from an earlier demo run (--retrain trains a new one)")
        return model
    from sa4depth_core.config import load_config
    from sa4depth_core.data.sequence import TripletDataset
    from sa4depth_core.train.trainer import Trainer

    shutil.rmtree(run, ignore_errors=True)  # no leftovers of an interrupted or older run
    data = out / "data"
    generate_sequence(data, "00", num_frames=args.train_frames, height=h, width=w, seed=0, overwrite=True)
    cfg = load_config(None, [f"model.height={h}", f"model.width={w}", "train.batch_size=6", "train.epochs=1000",
                             f"train.max_minutes={args.train_minutes}", "train.val_every=1000000",
                             "train.save_every=1000000", "train.lr=2e-4", f"train.out_dir={run}",
                             "train.progress=false"])
    log(f"model: training one for {args.train_minutes:g} min on a generated sequence (sa4depth-train does the same "
        f"with model.height={h} model.width={w})")
    trainer = Trainer(cfg, TripletDataset(KittiOdometrySequence(data, "00"), h, w, augment=True), None, log=log)
    trainer.fit()
    return model


def run_graph(bag: Path, checkpoint: Path, domain: int, rate: float, traj_dir: Path, log):
    """Node + player as processes; returns the recorder's depth and odom messages."""
    from .frame_client import FrameClient

    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE=os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"])
    node = subprocess.Popen(
        [sys.executable, "-m", "sa4depth_ros.perception_node", "--ros-args", "-p", f"checkpoint:={checkpoint}",
         "-p", f"trajectory_dir:={traj_dir}", "-p", "odometry.on_failure:=posenet",
         "-r", f"image:={IMAGE_TOPIC}", "-r", f"camera_info:={INFO_TOPIC}"], env=env)
    # The client never publishes: its image topics match the bag's only so that wait_connected
    # can tell when the node subscribed to them.
    client = FrameClient(domain, topics=("depth", "odom"), keep=100000, image_topic=IMAGE_TOPIC,
                         camera_info_topic=INFO_TOPIC)
    try:
        if not client.wait_connected(timeout=60, info=True, outputs=("depth", "odom")):
            raise RuntimeError("the perception node did not come up within 60 s")
        log(f"perception node up; playing {bag.name} at {rate:g}x")
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "sa4depth_ros.bag_player", str(bag), "--rate", str(rate)], env=env,
                       check=True)
        client.wait_for(lambda: False, 3.0)  # the last frames are still in flight
        wall = time.monotonic() - t0
        ok, message = client.trigger("save_trajectory")
        log(f"save_trajectory: {message}")
        if not ok:
            raise RuntimeError(f"save_trajectory failed: {message}")
        depth = [(stamp_seconds(m.header.stamp), msg_to_depth(m)) for m in client.messages("depth")]
        n_odom = client.count("odom")
        diag = client.diagnostics(timeout=5.0) or {}
    finally:
        client.close()
        node.send_signal(signal.SIGINT)
        node.wait(timeout=30)
    tum = sorted(traj_dir.glob("*_tum.txt"))
    if not tum:
        raise RuntimeError(f"the node wrote no trajectory into {traj_dir}")
    return depth, n_odom, load_tum_poses(tum[-1]), diag, wall


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    ensure_loopback_dds(args.domain_id if args.domain_id is not None else 40 + os.getpid() % 50)
    domain = int(os.environ["ROS_DOMAIN_ID"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    def log(msg):
        print(f"[demo {time.time() - t_start:5.0f}s] {msg}", flush=True)

    checkpoint = get_model(args, out, log)
    data = out / "data"
    log(f"generating the held-out sequence ({args.frames} frames, {SIZE[0]}x{SIZE[1]}, another world)")
    generate_sequence(data, "07", num_frames=args.frames, height=SIZE[0], width=SIZE[1], seed=7, overwrite=True)
    seq = KittiOdometrySequence(data, "07")
    bag = out / "bag_07"
    convert(data / "sequences" / "07", bag, storage="mcap", overwrite=True, poses_path=data / "poses" / "07.txt")
    log(f"wrote ROS 2 bag {bag}")
    depths, n_odom, trajectory, diag, wall = run_graph(bag, checkpoint, domain, args.rate, out / "trajectory", log)
    stamps = ODOMETRY_EPOCH_S + np.array([seq.timestamp(i) for i in range(len(seq))])
    result = score_recording(seq, stamps, depths, trajectory)
    # artefacts
    frames = result["depth_frames"][:: max(1, len(result["depth_frames"]) // 4)][:4]
    strip = out / "depth_strip.png"
    depth_strip(strip, [seq.image(i) for i in frames], [result["depth_by_frame"][i] for i in frames],
                [f"frame {i}" for i in frames])
    est = result["trajectory"]
    gt = np.stack([seq.pose(i) for i in result["odom_frames"]])
    plot = out / "trajectory.png"
    plot_trajectories(plot, gt, est, title="demo: ground truth vs perception_node odometry (7-DoF aligned)")
    save_kitti_poses(out / "trajectory_kitti.txt", est)
    save_tum_poses(out / "trajectory_tum.txt", stamps[result["odom_frames"]], est)
    summary = {
        "frames played": len(seq),
        "depth images received": len(depths),
        "odometry messages": n_odom,
        "input rate Hz": 10 * args.rate,
        "output rate Hz": len(depths) / wall,
        "latency ms p50": diag.get("latency_ms_p50", "n/a"),
        "latency ms p95": diag.get("latency_ms_p95", "n/a"),
        "dropped frames": diag.get("dropped_frames", "n/a"),
        "model": diag.get("model_id", "n/a"),
    }
    metrics_path = write_json(out / "metrics.json", {"summary": summary, "depth": result["depth"],
                                                     "odometry": result["odometry"], "checkpoint": str(checkpoint)})
    print()
    print(format_table(summary, title="Perception node on the bag (real ROS 2 topics)"))
    print(format_table(result["depth"], title="Depth vs ground truth (median-scaled; one scale per sequence)"))
    print(format_table(result["odometry"], title="Odometry vs ground truth"))
    print(f"\nartefacts: {strip}\n           {plot}\n           {out / 'trajectory_kitti.txt'}\n"
          f"           {out / 'trajectory_tum.txt'}\n           {metrics_path}")
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
