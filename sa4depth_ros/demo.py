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

from sa4depth_core.data.bag_reader import open_bag
from sa4depth_core.data.kitti2bag import convert
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.data.kitti_recording import ODOMETRY_EPOCH_S
from sa4depth_core.data.pose_io import load_tum_poses, save_kitti_poses, save_tum_poses
from sa4depth_core.data.synth import generate_sequence
from sa4depth_core.eval.recorded import match_frames, score_recording
from sa4depth_core.eval.report import format_table, write_json
from sa4depth_core.eval.trajectory_plot import TrajectoryPlot, depth_strip, plot_trajectories
from sa4depth_core.stamps import stamp_seconds

from .frame_accounting import account_frames, count, frame_ranges, node_settled
from .image_codec import msg_to_depth
from .ros_env import ensure_loopback_dds

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
                             "train.save_every=1000000", "train.lr=2e-4", f"train.out_dir={run}"])
    log(f"model: training one for {args.train_minutes:g} min on a generated sequence (sa4depth-train does the same "
        f"with model.height={h} model.width={w})")
    trainer = Trainer(cfg, TripletDataset(KittiOdometrySequence(data, "00"), h, w, augment=True), None, log=log)
    trainer.fit()
    return model


def images_in_bag(bag: Path, topic: str = IMAGE_TOPIC) -> int:
    """How many messages the bag holds on `topic` (what the player sends of it)."""
    with open_bag(bag) as reader:
        return sum(1 for _ in reader.messages([c for c in reader.connections if c.topic == topic]))


def run_graph(bag: Path, checkpoint: Path, domain: int, rate: float, traj_dir: Path, log) -> dict:
    """Node + player as processes. Returns {depth: [(stamp s, (h,w) depth)], odom: count, trajectory:
    (stamps, poses) the node saved, node: its final diagnostics values, output_hz: depth images per
    second as they arrived}."""
    from .frame_client import FrameClient

    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE=os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"])
    node = subprocess.Popen(
        [sys.executable, "-m", "sa4depth_ros.perception_node", "--ros-args", "-p", f"checkpoint:={checkpoint}",
         "-p", f"trajectory_dir:={traj_dir}", "-p", "odometry.on_failure:=posenet",
         "-r", f"image:={IMAGE_TOPIC}", "-r", f"camera_info:={INFO_TOPIC}"], env=env)
    # The client never publishes: its image topics match the bag's only so that wait_connected
    # can tell when the node subscribed to them.
    client = FrameClient(domain, topics=("depth/image", "odom"), tf=False, keep=100000, image_topic=IMAGE_TOPIC,
                         camera_info_topic=INFO_TOPIC)
    try:
        if not client.wait_connected(timeout=60, info=True, outputs=("depth/image", "odom")):
            raise RuntimeError("the perception node did not come up within 60 s")
        log(f"perception node up; playing {bag.name} at {rate:g}x")
        # Only the node's inputs, and only once the node subscribes to them: its best-effort
        # subscriptions drop whatever a publisher sends before they have matched it (the first
        # frames of a run went missing that way). The player's --delay covers the other side of
        # the match, which its subscription count cannot see.
        subprocess.run([sys.executable, "-m", "sa4depth_ros.bag_player", str(bag), "--rate", str(rate),
                        "--topics", IMAGE_TOPIC, INFO_TOPIC, "--wait-subscribers", "60"], env=env, check=True)
        played = time.monotonic()
        # Frames still in the node's mailbox or pipeline: wait until it has accounted for each one
        # and the client holds every depth image it published.
        diag = client.diagnostics(timeout=30.0, after=played, predicate=lambda d: node_settled(d) and client.count(
            "depth/image") >= (count(d, "frames_published") or 0))
        diag = diag or client.diagnostics(timeout=5.0, after=played) or {}
        ok, message = client.trigger("save_trajectory")
        log(f"save_trajectory: {message}")
        if not ok:
            raise RuntimeError(f"save_trajectory failed: {message}")
        arrivals = client.arrivals("depth/image")
        depth = [(stamp_seconds(m.header.stamp), msg_to_depth(m)) for _, m in arrivals]
        n_odom = client.count("odom")
    finally:
        client.close()
        node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:  # never leave a node running behind the demo
            log("the perception node did not stop within 30 s of SIGINT: killed")
            node.kill()
            node.wait()
    tum = sorted(traj_dir.glob("*_tum.txt"))
    if not tum:
        raise RuntimeError(f"the node wrote no trajectory into {traj_dir}")
    span = arrivals[-1][0] - arrivals[0][0] if len(arrivals) > 1 else 0.0
    return {"depth": depth, "odom": n_odom, "trajectory": load_tum_poses(tum[-1]), "node": diag,
            "output_hz": (len(arrivals) - 1) / span if span > 0 else float("nan")}


def write_trajectory_plot(path: Path, result: dict) -> TrajectoryPlot:
    """The node's trajectory over the ground truth, aligned exactly as for the printed ATE
    (`score_recording`'s poses and alignment), the scale factor in the legend."""
    return plot_trajectories(path, result["gt_poses"], result["trajectory"], result["alignment"],
                             title="demo: ground truth vs perception_node odometry")


def report_frames(sent: int, graph: dict, frame_stamps: np.ndarray) -> tuple[dict, list[str]]:
    """Frame counts from the bag through the node to the client, and where frames were lost
    (with the played frames whose depth never came back)."""
    rows, findings = account_frames(sent, graph["node"], {"depth": len(graph["depth"]), "odom": graph["odom"]})
    got = match_frames(frame_stamps, np.array([s for s, _ in graph["depth"]])) if graph["depth"] else []
    missing = sorted(set(range(len(frame_stamps))) - {int(i) for i in got})
    if missing:
        findings.append(f"frames without depth at the client: {frame_ranges(missing)}")
    return rows, findings


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
    graph = run_graph(bag, checkpoint, domain, args.rate, out / "trajectory", log)
    stamps = ODOMETRY_EPOCH_S + np.array([seq.timestamp(i) for i in range(len(seq))])
    result = score_recording(seq, stamps, graph["depth"], graph["trajectory"])
    # artefacts
    frames = result["depth_frames"][:: max(1, len(result["depth_frames"]) // 4)][:4]
    strip = out / "depth_strip.png"
    depth_strip(strip, [seq.image(i) for i in frames], [result["depth_by_frame"][i] for i in frames],
                [f"frame {i}: relative depth, colours per image" for i in frames])
    plot = write_trajectory_plot(out / "trajectory.png", result).path
    est = result["trajectory"]
    save_kitti_poses(out / "trajectory_kitti.txt", est)
    save_tum_poses(out / "trajectory_tum.txt", stamps[result["odom_frames"]], est)
    node = graph["node"]
    frames_table, findings = report_frames(images_in_bag(bag), graph, stamps)
    summary = {
        "frames played": len(seq),
        "depth images received": len(graph["depth"]),
        "odometry messages": graph["odom"],
        "input rate Hz": 10 * args.rate,
        "output rate Hz": graph["output_hz"],
        "latency ms p50": node.get("latency_ms_p50", "n/a"),
        "latency ms p95": node.get("latency_ms_p95", "n/a"),
        "model": node.get("model_id", "n/a"),
    }
    metrics_path = write_json(out / "metrics.json", {"summary": summary, "frames": frames_table,
                                                     "frame_losses": findings, "depth": result["depth"],
                                                     "odometry": result["odometry"], "checkpoint": str(checkpoint)})
    print()
    print(format_table(summary, title="Perception node on the bag (real ROS 2 topics; latency: node receipt to "
                                      "publication)"))
    print(format_table([{"stage": k, "frames": v} for k, v in frames_table.items()],
                       title="Frame accounting: bag player -> perception_node -> demo client"))
    print("\n".join(findings) if findings else "no frame lost between the bag and the client")
    print(format_table(result["depth"], title="Depth vs ground truth (median-scaled; one scale per sequence)"))
    print(format_table(result["odometry"], title="Odometry vs ground truth"))
    print(f"\nartefacts: {strip}\n           {plot}\n           {out / 'trajectory_kitti.txt'}\n"
          f"           {out / 'trajectory_tum.txt'}\n           {metrics_path}")
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
