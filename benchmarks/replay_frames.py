"""Frames of real sizes through the replay graph on its defaults, and a reload during a stream.

1. Replay: a bag played by `sa4depth-run --bag BAG --rate 1.0` with nothing but the graph's
   defaults (backend auto, the YAML's network size, qos.image auto), as a user replays KITTI:
   - a grey KITTI-size bag (1226x370 mono8, a synthetic world in KITTI's layout, --frames frames),
   - the real Karlsruhe car sequence (672x186 mono8, its first --frames frames) when
     ../shared/data holds it.
   Where every frame went, from the player's count and the node's shutdown line.
2. Reload: perception_node on its default backend fed a 10 Hz stream, ~/reload_model called
   after 3 s; how many frames never came back before the call (what the node keeps up with
   here) and from the call until 1 s after its answer.

    python benchmarks/replay_frames.py [--frames 160]

Run it alone: a busy machine makes the node slower than the bag and frames are then dropped stale
(counted as such).
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import flags_line, machine  # noqa: E402
from sa4depth_core.data import karlsruhe  # noqa: E402
from sa4depth_core.data.kitti2bag import convert  # noqa: E402
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence  # noqa: E402
from sa4depth_core.data.synth import generate_sequence  # noqa: E402
from sa4depth_ros.frame_accounting import shutdown_counts  # noqa: E402
from sa4depth_ros.frame_client import FrameClient  # noqa: E402
from sa4depth_ros.ros_env import ensure_loopback_dds  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

KARLSRUHE = REPO.parent / "shared" / "data" / "karlsruhe_2010_03_09_drive_0019"
DOMAIN = 87
KEYS = ("images_arrived", "frames_received", "frames_processed", "frames_dropped_stale", "frames_rejected",
        "frames_failed", "frames_unpaired")


def grey_kitti_tree(root: Path, frames: int) -> Path:
    """A synthetic world in KITTI's odometry layout with its grey left camera (image_0)."""
    generate_sequence(root, "00", num_frames=frames, height=370, width=1226, seed=5)
    seq = root / "sequences" / "00"
    (seq / "image_0").mkdir(exist_ok=True)
    for png in sorted((seq / "image_2").glob("*.png")):
        cv2.imwrite(str(seq / "image_0" / png.name), cv2.imread(str(png), cv2.IMREAD_GRAYSCALE))
    return seq


def replay(bag: Path, timeout: float = 900.0) -> tuple[dict, int, float]:
    """(node's shutdown counts, images the player published, wall seconds) of one replay."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "sa4depth_ros.run", "--domain-id", str(DOMAIN), "--bag", str(bag),
                             "--rate", "1.0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:  # the player's summary line ends the replay
        lines.append(line)
        if "sa4depth-play: published" in line or time.monotonic() - start > timeout:
            break
    time.sleep(3.0)  # the node finishes the frames in flight; they are counted either way
    proc.send_signal(signal.SIGINT)
    output = "".join(lines) + proc.communicate(timeout=120)[0]
    played = re.search(r"/image_raw: (\d+)", output)
    return shutdown_counts(output), int(played.group(1)) if played else -1, time.monotonic() - start


def reload_during_stream(tmp: Path, backend: str = "", network: str = "") -> tuple[int, int, int, int, str]:
    """(frames lost, frames sent) of a 10 Hz stream before a ~/reload_model call and from the call
    to 1 s after its answer, and the backend."""
    generate_sequence(tmp / "stream", "00", num_frames=8, height=192, width=640, seed=6)
    seq = KittiOdometrySequence(tmp / "stream", "00")
    images, K = [seq.image(i) for i in range(len(seq))], seq.intrinsics()
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get(
        "PYTHONPATH", "")]))
    log = tmp / "node.log"
    with open(log, "w") as out:
        node = subprocess.Popen([sys.executable, "-m", "sa4depth_ros.perception_node", "--ros-args", "--params-file",
                                 str(REPO / "config" / "sa4depth.yaml")] + (["-p", f"backend:={backend}"] if backend else [])
                                + (["-p", f"input_height:={network.split('x')[0]}", "-p",
                                    f"input_width:={network.split('x')[1]}"] if network else []),
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    client = FrameClient(DOMAIN, topics=("depth/image",), tf=False)
    try:
        if not client.wait_connected(timeout=120) or client.warm_up(images[0], K, timeout=120) is None:
            raise RuntimeError(f"the node never answered:\n{log.read_text()[-2000:]}")
        reload = client.node.create_client(Trigger, "/perception_node/reload_model")
        reload.wait_for_service(timeout_sec=60)
        client.clear()
        # 3 s of the stream alone (what the node keeps up with here), then the call; the reload
        # window runs from the call to 1 s after its answer
        stamps, answer, answered, call_index, t = [], None, None, 0, 1000.0
        started = time.monotonic()
        while answered is None or time.monotonic() < answered + 1.0:
            t += 0.1
            stamps.append(client.send(images[len(stamps) % len(images)], K, t))
            if answer is None and time.monotonic() - started >= 3.0:
                answer, call_index = reload.call_async(Trigger.Request()), len(stamps)
            elif answer is not None and answered is None and answer.done():
                answered = time.monotonic()
            time.sleep(0.1)
        client.with_stamp("depth/image", stamps[-1], 30.0)
        back = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in client.messages("depth/image")}
        lost = [(s.sec, s.nanosec) not in back for s in stamps]
        backend = re.search(r"inference (\S+ \S+)", log.read_text())
        return (sum(lost[:call_index]), call_index, sum(lost[call_index:]), len(stamps) - call_index,
                backend.group(1) if backend else "?")
    finally:
        client.close()
        node.send_signal(signal.SIGINT)
        node.wait(timeout=120)


def replay_table(tmp: Path, frames: int) -> None:
    bags = {"grey KITTI size (1226x370, synthetic)": tmp / "kitti_bag"}
    convert(grey_kitti_tree(tmp / "kitti", frames), bags["grey KITTI size (1226x370, synthetic)"], cameras=(0,))
    if KARLSRUHE.is_dir():
        karlsruhe.convert(KARLSRUHE, tmp / "karlsruhe", max_frames=frames, depth=False)
        bags["Karlsruhe real (672x186)"] = tmp / "karlsruhe_bag"
        convert(tmp / "karlsruhe" / "sequences" / "00", bags["Karlsruhe real (672x186)"], cameras=(0,))
    print("| bag | played | " + " | ".join(KEYS) + " | wall s |")
    print("|---|---|" + "---|" * len(KEYS) + "---|")
    for name, bag in bags.items():
        counts, played, wall = replay(bag)
        print(f"| {name} | {played} | " + " | ".join(str(counts.get(k, "?")) for k in KEYS) + f" | {wall:.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=160)
    parser.add_argument("--reload-only", action="store_true", help="only the reload part")
    parser.add_argument("--backends", nargs="+", default=[""], help="backends of the reload part (default: the YAML's)")
    parser.add_argument("--networks", nargs="+", default=[""], metavar="HxW",
                        help="network sizes of the reload part (default: the model's)")
    args = parser.parse_args()
    ensure_loopback_dds(DOMAIN)
    print(f"# Replay and reload on the defaults\n\n{machine()}; {flags_line()}; {time.strftime('%Y-%m-%d')}\n")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.reload_only:
            replay_table(tmp, args.frames)
        for backend in args.backends:
            for network in args.networks:
                lost0, sent0, lost, sent, used = reload_during_stream(tmp / f"{backend or 'default'}_{network}",
                                                                      backend, network)
                print(f"\nReload during a 10 Hz stream (192x640 frames, network {network or 'the model size'}, "
                      f"backend {used}): {lost0} of {sent0} frames lost in the 3 s before the call, {lost} of {sent} "
                      "from the call to 1 s after its answer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
