"""Soak: a running perception_node (reading raw images: rectified_images false) fed --frames
frames of which --hostile-share are hostile, of every kind the node must survive (broken
encodings, sizes, steps and headers; NaN, malformed, fisheye (undistorted: valid input),
unknown-model, mis-binned or mis-sized CameraInfo; a fence, a blank wall, a 1x1 image, a stamp of
zero), with a hostile ~/reload_model (corrupt, huge-size, FIFO) every --reload-every frames.

Checks, and exits 1 when one fails: every good frame (and every hostile one that is valid input)
gets its depth back; every hostile reload gets an answer (failure) and the node keeps its model;
nothing non-finite is published on odom or depth/camera_info, and no infinity on depth; the
node's resident memory (RSS) is flat: the end within max(20 MB, 5 %) of the middle. Prints the
figures, the node's own frame counts and the machine.

    python benchmarks/hostile_soak.py                        # 10 000 frames at 96x320
    python benchmarks/hostile_soak.py --frames 300 --size 64x192 --reload-every 100   # a quick check

Frames go one at a time: a good frame (and a valid hostile one) waits for its depth, an invalid
hostile frame for the node's diagnostics to count it, so nothing is dropped as stale and the
node's input history (keep last 1) never overwrites one frame with the next.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nav_msgs.msg import Odometry  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from process_memory import rss_mb  # noqa: E402
from sa4depth_core.checkpoint import save_checkpoint  # noqa: E402
from sa4depth_core.config import Config  # noqa: E402
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence  # noqa: E402
from sa4depth_core.data.synth import generate_sequence  # noqa: E402
from sa4depth_core.model import SA4DepthModel  # noqa: E402
from sa4depth_ros.camera_info import K_to_camera_info  # noqa: E402
from sa4depth_ros.frame_client import FrameClient  # noqa: E402
from sa4depth_ros.image_codec import rgb_to_msg  # noqa: E402
from sa4depth_ros.qos import reliable_qos  # noqa: E402
from sa4depth_ros.ros_env import ensure_loopback_dds  # noqa: E402
from sa4depth_ros.stamps import stamp_msg  # noqa: E402

COUNT_KEYS = ("frames_received", "frames_processed", "frames_published", "frames_dropped_stale", "frames_rejected",
              "frames_failed", "frames_unpaired", "odometry_failed")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


# -- hostile frames: each gives (image, info, depth expected) for a good frame's rgb, K and header
def _info(K, rgb, header, **fields) -> CameraInfo:
    info = K_to_camera_info(K, rgb.shape[1], rgb.shape[0], header)
    for name, value in fields.items():
        setattr(info, name, value)
    return info


def _with(values, index, value):
    out = np.array(values, dtype=np.float64)
    out[index] = value
    return out


def _raw(encoding, data, rgb, header, step=None, height=None, width=None) -> Image:
    height, width = height or rgb.shape[0], width or rgb.shape[1]
    return Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
                 step=step if step is not None else len(data) // max(height, 1), data=data)


HOSTILE = {
    "encoding yuv422": lambda rgb, K, h: (_raw("yuv422", bytes(rgb.shape[0] * rgb.shape[1] * 2), rgb, h),
                                          _info(K, rgb, h), False),
    "32FC1 of NaN": lambda rgb, K, h: (_raw("32FC1", np.full(rgb.shape[:2], np.nan, np.float32).tobytes(), rgb, h),
                                       _info(K, rgb, h), False),
    "short data": lambda rgb, K, h: (_raw("rgb8", rgb.tobytes()[:100], rgb, h, step=3 * rgb.shape[1]),
                                     _info(K, rgb, h), False),
    "step too small": lambda rgb, K, h: (_raw("rgb8", rgb.tobytes(), rgb, h, step=7), _info(K, rgb, h), False),
    "header of 2^31 pixels": lambda rgb, K, h: (_raw("rgb8", b"", rgb, h, step=3 * 2**15, height=2**16,
                                                     width=2**15), _info(K, rgb, h), False),
    "CameraInfo P NaN": lambda rgb, K, h: (rgb_to_msg(rgb, h), _info(K, rgb, h, p=_with(
        np.hstack([K, np.zeros((3, 1))]).reshape(12), 0, math.nan)), False),
    "CameraInfo D NaN": lambda rgb, K, h: (rgb_to_msg(rgb, h), _info(K, rgb, h, d=[math.nan] * 5), False),
    "CameraInfo R inf": lambda rgb, K, h: (rgb_to_msg(rgb, h), _info(K, rgb, h, r=_with(np.eye(3).reshape(9), 4,
                                                                                         math.inf)), False),
    "CameraInfo K zero": lambda rgb, K, h: (rgb_to_msg(rgb, h), _info(K, rgb, h, k=np.zeros(9)), False),
    # the node reads raw images here (rectified_images false): a fisheye D is undone, an unknown one refused
    "CameraInfo fisheye": lambda rgb, K, h: (rgb_to_msg(rgb, h), _info(K, rgb, h, distortion_model="equidistant",
                                                                       d=[0.1, 0.01, 0.0, 0.0]), True),
    "CameraInfo unknown model": lambda rgb, K, h: (rgb_to_msg(rgb, h), _info(K, rgb, h, distortion_model="mystery",
                                                                             d=[0.1]), False),
    "CameraInfo binning": lambda rgb, K, h: (rgb_to_msg(rgb, h), _info(K, rgb, h, binning_x=2, binning_y=2), False),
    "CameraInfo size mismatch": lambda rgb, K, h: (rgb_to_msg(rgb, h), _info(K, rgb, h, width=2 * rgb.shape[1]),
                                                   False),
    "fence": lambda rgb, K, h: (rgb_to_msg(_fence(rgb.shape[:2]), h), _info(K, rgb, h), True),
    "blank wall": lambda rgb, K, h: (rgb_to_msg(np.full_like(rgb, 128), h), _info(K, rgb, h), True),
    "1x1 image": lambda rgb, K, h: (rgb_to_msg(rgb[:1, :1].copy(), h),
                                    K_to_camera_info(np.diag([K[0, 0], K[1, 1], 1.0]), 1, 1, h), True),
}


def _fence(hw) -> np.ndarray:
    """Vertical stripes 4 px wide: texture along x only (a fence, a barrier)."""
    rgb = np.zeros(hw + (3,), np.uint8)
    rgb[:, (np.arange(hw[1]) // 4) % 2 == 0] = 255
    return rgb


class Watch:
    """Counts what the node publishes on odom, depth/camera_info and depth, and the non-finite
    numbers among them (NaN is how depth marks an invalid pixel; an infinity never is)."""

    def __init__(self, client: FrameClient):
        self.counts = {"odom": 0, "odom non-finite": 0, "camera_info non-finite": 0, "depth with inf": 0}
        node = client.node
        self._subs = [
            node.create_subscription(Odometry, client.topic("odom"), self._odom, reliable_qos(50)),
            node.create_subscription(CameraInfo, client.topic("depth/camera_info"), self._info, reliable_qos(50)),
            node.create_subscription(Image, client.topic("depth/image"), self._depth, reliable_qos(50)),
        ]

    def _odom(self, msg) -> None:
        p, q, t, w = msg.pose.pose.position, msg.pose.pose.orientation, msg.twist.twist.linear, msg.twist.twist.angular
        numbers = [p.x, p.y, p.z, q.x, q.y, q.z, q.w, t.x, t.y, t.z, w.x, w.y, w.z]
        self.counts["odom"] += 1
        self.counts["odom non-finite"] += not (np.isfinite(numbers).all() and np.isfinite(msg.pose.covariance).all()
                                               and np.isfinite(msg.twist.covariance).all())

    def _info(self, msg) -> None:
        finite = all(np.isfinite(getattr(msg, f)).all() for f in ("k", "d", "r", "p"))
        self.counts["camera_info non-finite"] += not finite

    def _depth(self, msg) -> None:
        self.counts["depth with inf"] += bool(np.isinf(np.frombuffer(bytes(msg.data), np.float32)).any())


def settled(d: dict) -> bool:
    """Every frame the node received has met its fate (none in the mailbox or in progress)."""
    fates = ("frames_processed", "frames_dropped_stale", "frames_rejected", "frames_failed")
    return sum(int(d[k]) for k in fates) >= int(d["frames_received"])


def write_checkpoints(tmp: Path, size) -> dict:
    """The node's good checkpoint and the hostile ones ~/reload_model is pointed at."""
    cfg = Config()
    cfg.model.height, cfg.model.width = size
    state = SA4DepthModel(cfg).state_dict()
    good = tmp / "good.pt"
    # declared trained so that the refinement runs: a fence must meet the LM solve, not PoseNet alone
    save_checkpoint(good, config=cfg.to_dict(), model=state, features_trained=True)
    corrupt = tmp / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[: 1 << 16])
    cfg.model.height = cfg.model.width = 2**20
    huge = tmp / "huge.pt"
    save_checkpoint(huge, config=cfg.to_dict(), model=state)
    return {"good": good, "corrupt": corrupt, "huge-size": huge, "fifo": tmp / "fifo.pt"}


def hostile_reload(client: FrameClient, checkpoints: dict, kind: str) -> str:
    """Point the node at a hostile checkpoint, reload, and go back to the good one; returns ''
    or what went wrong."""
    path = checkpoints[kind]
    if kind == "fifo":  # checked as a regular file, then swapped for a FIFO
        path.write_bytes(checkpoints["good"].read_bytes())
    ok, reason = client.set_parameters(checkpoint=str(path), input_width=0, input_height=0)[0]
    problem = ""
    if kind == "fifo":
        path.unlink()
        os.mkfifo(path)
    try:
        done, message = client.trigger("reload_model", timeout=180.0)
        if done:
            problem = f"reload of the {kind} checkpoint succeeded: {message}"
    except TimeoutError as exc:
        problem = f"reload of the {kind} checkpoint got no answer: {exc}"
    finally:
        if kind == "fifo":
            try:  # release a load that still waits for a writer
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            path.unlink()
    return problem if ok else f"checkpoint parameter {kind} refused: {reason}"


def restore(client: FrameClient, checkpoints: dict, size) -> str:
    """Set the good checkpoint and the network size back; '' or what went wrong."""
    results = client.set_parameters(checkpoint=str(checkpoints["good"]), input_width=size[1], input_height=size[0])
    return "" if all(ok for ok, _ in results) else f"could not restore the parameters: {results}"


def run(args) -> int:
    size = tuple(int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        generate_sequence(tmp, "00", num_frames=16, height=size[0], width=size[1], seed=0)
        seq = KittiOdometrySequence(tmp, "00")
        images, K = [seq.image(i) for i in range(len(seq))], seq.intrinsics()
        checkpoints = write_checkpoints(tmp, size)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        cmd = [sys.executable, "-m", "sa4depth_ros.perception_node", "--ros-args",
               "--params-file", str(REPO / "config" / "sa4depth.yaml"), "-p", f"threads:={args.threads}",
               "-p", f"checkpoint:={checkpoints['good']}", "-p", f"input_height:={size[0]}",
               "-p", f"input_width:={size[1]}", "-p", "reload_timeout:=60.0", "-p", f"trajectory_dir:={tmp}",
               "-p", "diagnostics_period:=0.2", "-p", "rectified_images:=false"]
        log = tmp / "node.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        client = FrameClient(args.domain_id, topics=("depth/image", "depth/camera_info", "odom"), tf=False, keep=20)
        watch = Watch(client)
        problems, unanswered, unseen, sent = [], [], [], {}
        rss = {}
        try:
            if not client.wait_connected(timeout=60, outputs=("depth/image", "depth/camera_info", "odom")) \
                    or client.warm_up(images[0], K) is None:
                raise RuntimeError(f"perception_node did not come up:\n{log.read_text()[-2000:]}")
            kinds = list(HOSTILE)
            every = max(1, round(1 / args.hostile_share)) if args.hostile_share > 0 else 0
            reload_kinds = args.reloads.split(",") if args.reload_every else []
            # one of each reload first: the allocator's first large loads raise RSS once (~200 MB),
            # which must not pass for growth
            for kind in reload_kinds:
                problems += [p for p in (hostile_reload(client, checkpoints, kind),
                                         restore(client, checkpoints, size)) if p]
                sent[f"reload {kind}"] = 1
            start = time.monotonic()
            t = 1000.0
            for i in range(args.frames):
                if i == args.frames // 50:
                    rss["start"] = rss_mb(proc.pid)
                if i == args.frames // 2:
                    rss["middle"] = rss_mb(proc.pid)
                if i % max(1, args.frames // 20) == 0:
                    rss["max"] = max(rss.get("max", 0.0), rss_mb(proc.pid))
                if args.reload_every and i and i % args.reload_every == 0:
                    kind = reload_kinds[(i // args.reload_every - 1) % len(reload_kinds)]
                    problems += [p for p in (hostile_reload(client, checkpoints, kind),
                                             restore(client, checkpoints, size)) if p]
                    sent[f"reload {kind}"] = sent.get(f"reload {kind}", 0) + 1
                t += 0.1
                header = Header(stamp=stamp_msg(t), frame_id="camera_optical")
                rgb = images[i % len(images)]
                if every and i % every == every - 1:
                    kind = kinds[(i // every) % len(kinds)]
                    image, info, expect = HOSTILE[kind](rgb, K, header)
                    before = client.diagnostics(timeout=30.0, after=time.monotonic(), predicate=settled)
                    client.send_messages(image, info)
                    sent[kind] = sent.get(kind, 0) + 1
                    if not expect:
                        received = int(before["frames_received"]) if before else math.inf
                        if client.diagnostics(timeout=10.0, after=time.monotonic(), predicate=lambda d: settled(
                                d) and int(d["frames_received"]) > received) is None:
                            unseen.append(f"{i} ({kind})")
                        continue
                else:
                    client.send_messages(rgb_to_msg(rgb, header), _info(K, rgb, header))
                    sent["good"] = sent.get("good", 0) + 1
                    expect = True
                if client.with_stamp("depth/image", header.stamp, args.timeout) is None:
                    if proc.poll() is not None:
                        raise RuntimeError(f"perception_node exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
                    unanswered.append(i)
            seconds = time.monotonic() - start
            rss["end"] = rss_mb(proc.pid)
            rss["max"] = max(rss["max"], rss["end"])
            diag = client.diagnostics(timeout=30.0, after=time.monotonic()) or {}
            counts = {key: diag.get(key, "n/a") for key in COUNT_KEYS}
        finally:
            client.close()
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                problems.append("the node did not exit within 60 s of SIGINT")
        tail = log.read_text(errors="replace")
        if "Traceback" in tail:
            problems.append("the node's log holds a traceback")
        shutdown = [line for line in tail.splitlines() if "frame counts at shutdown" in line]

    if unseen:
        problems.append(f"{len(unseen)} hostile frames never reached the node's counts: {unseen[:10]}")
    if unanswered:
        problems.append(f"{len(unanswered)} frames expecting depth got none (frames {unanswered[:10]} ...)")
    for key in ("odom non-finite", "camera_info non-finite", "depth with inf"):
        if watch.counts[key]:
            problems.append(f"{watch.counts[key]} published messages: {key}")
    if not rss.get("end", math.inf) <= rss.get("middle", 0.0) + max(20.0, 0.05 * rss.get("middle", 0.0)):
        problems.append("resident memory grew between the middle and the end of the run")

    print(f"\n### Hostile soak: {args.frames} frames at {size[0]}x{size[1]}, {100 * args.hostile_share:g} % hostile, "
          f"a hostile reload every {args.reload_every} frames (and one of each first)\n")
    print(f"machine: {cpu_name()}; {args.threads} torch thread(s); {seconds:.0f} s, "
          f"{args.frames / seconds:.1f} frames/s")
    print("\n| sent | count |\n|---|---|")
    for kind, n in sent.items():
        print(f"| {kind} | {n} |")
    print("\n| node (diagnostics) | count |\n|---|---|")
    for key, value in counts.items():
        print(f"| {key} | {value} |")
    print(f"\nfrom the node's log: {shutdown[-1].split(']: ')[-1] if shutdown else 'no shutdown line'}")
    print(f"published: {watch.counts['odom']} odom messages, {watch.counts['odom non-finite']} non-finite; "
          f"depth/camera_info non-finite {watch.counts['camera_info non-finite']}; "
          f"depth with an infinity {watch.counts['depth with inf']}")
    print(f"frames expecting depth without it: {len(unanswered)}; hostile frames the node never counted: "
          f"{len(unseen)}")
    print(f"RSS MB: start {rss.get('start', math.nan):.0f}, middle {rss.get('middle', math.nan):.0f}, "
          f"end {rss.get('end', math.nan):.0f}, max {rss.get('max', math.nan):.0f}")
    print("\nresult: " + ("PASS" if not problems else "FAIL\n- " + "\n- ".join(problems)))
    return 0 if not problems else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=10000)
    p.add_argument("--size", default="96x320", help="network input and frame size HxW")
    p.add_argument("--hostile-share", type=float, default=0.05, help="share of hostile frames (0.05 = 1 in 20)")
    p.add_argument("--reload-every", type=int, default=1000, help="frames between hostile reloads (0 = none)")
    p.add_argument("--reloads", default="corrupt,huge-size,fifo", help="hostile reload kinds, taken in turn")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the node")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a frame's depth")
    p.add_argument("--domain-id", type=int, default=1 + os.getpid() % 100)
    args = p.parse_args(argv)
    ensure_loopback_dds(args.domain_id)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
