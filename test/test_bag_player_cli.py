"""sa4depth-play started the way launch_ros starts every Node: its own arguments followed by
`--ros-args ...`. The ROS arguments reach rclpy (node name, remapping), argparse never sees them,
and the player prints what it published per topic when it stops."""
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import CameraInfo

from sa4depth_core.data.bag_reader import open_bag
from sa4depth_core.data.kitti2bag import convert
from sa4depth_core.data.synth import generate_sequence
from sa4depth_ros.executor import stop_spinning
from sa4depth_ros.qos import reliable_qos

INFO = "/kitti/camera_color_left/camera_info"
RENAMED = "/replay/camera_info"


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    root = tmp_path_factory.mktemp("player_cli")
    generate_sequence(root / "kitti", "00", num_frames=6, height=32, width=64, seed=4)
    convert(root / "kitti" / "sequences" / "00", root / "bag")
    return root / "bag"


class _Listener:
    """A node in its own context that counts CameraInfo messages on RENAMED."""

    def __init__(self, domain):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("player_cli_listener", context=self.context)
        self.received = threading.Semaphore(0)
        self.node.create_subscription(CameraInfo, RENAMED, lambda _: self.received.release(), reliable_qos(20))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()

    def close(self):
        stop_spinning(self.executor, self.spinner)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def test_player_takes_ros_arguments_as_launch_passes_them(bag, ros_domain):
    listener = _Listener(ros_domain)
    player = subprocess.Popen(
        [sys.executable, "-m", "sa4depth_ros.bag_player", str(bag), "--topics", INFO, "--rate", "4", "--loop",
         "--delay", "0", "--wait-subscribers", "30",
         "--ros-args", "-r", "__node:=replayer", "-r", f"{INFO}:={RENAMED}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # a whole pass of the bag (6 frames) arrives under the remapped name
        deadline = time.monotonic() + 60
        for i in range(6):
            while not listener.received.acquire(timeout=0.5):
                assert player.poll() is None, f"the player exited ({player.returncode}) after {i} of 6 messages"
                assert time.monotonic() < deadline, f"{i} of 6 CameraInfo on {RENAMED}"
        publishers = listener.node.get_publishers_info_by_topic(RENAMED)
        assert [p.node_name for p in publishers] == ["replayer"]
        assert listener.node.get_publishers_info_by_topic(INFO) == []
    finally:
        listener.close()
        player.send_signal(signal.SIGINT)
        out, err = player.communicate(timeout=30)
    assert player.returncode == 0, err
    assert "unrecognized arguments" not in err
    summary = [line for line in out.splitlines() if line.startswith("sa4depth-play: published ")]
    assert len(summary) == 1, out
    # only the selected topic, under its bag name, at least the one pass counted above
    counts = summary[0].split("(", 1)[1].split(")", 1)[0]
    topic, count = counts.split(": ")
    assert topic == INFO and int(count) >= 6, summary


def test_player_counts_every_topic_of_one_pass(bag, ros_domain):
    done = subprocess.run([sys.executable, "-m", "sa4depth_ros.bag_player", str(bag), "--rate", "4", "--delay", "0",
                           "--ros-args", "-r", "__node:=replayer"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    with open_bag(bag) as reader:
        expected = Counter(conn.topic for conn, _, _ in reader.messages())
    body = ", ".join(f"{t}: {n}" for t, n in sorted(expected.items()))
    assert f"sa4depth-play: published {expected.total()} messages ({body}) from {bag}" in done.stdout


def test_player_rejects_malformed_ros_arguments(bag, ros_domain):
    done = subprocess.run([sys.executable, "-m", "sa4depth_ros.bag_player", str(bag), "--ros-args", "-r"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "invalid ROS arguments" in done.stderr and "Traceback" not in done.stderr
