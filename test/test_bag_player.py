"""sa4depth-play: QoS and window rules, and a separate rclpy process receiving every played message."""
import hashlib
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)

from sa4depth_core.data.bag_reader import open_bag
from sa4depth_core.data.kitti2bag import convert
from sa4depth_core.data.synth import generate_sequence
from sa4depth_core.errors import InputError
from sa4depth_ros import bag_player
from sa4depth_ros.bag_player import BagPlayer, play_window, qos_for

ZERO = QosTime(0, 0)


def _qos(reliability, durability, depth=7, history=QosHistory.KEEP_LAST):
    return Qos(history, depth, reliability, durability, ZERO, ZERO, QosLiveliness.AUTOMATIC, ZERO, False)


def test_qos_follows_the_recording_and_defaults():
    both = qos_for("/a", [_qos(QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL)] * 2)
    assert (both.reliability, both.durability, both.depth) == (ReliabilityPolicy.RELIABLE,
                                                               DurabilityPolicy.TRANSIENT_LOCAL, 7)
    mixed = qos_for("/a", [_qos(QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL),
                           _qos(QosReliability.BEST_EFFORT, QosDurability.VOLATILE)])
    assert (mixed.reliability, mixed.durability) == (ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE)
    unknown_depth = qos_for("/a", [_qos(QosReliability.RELIABLE, QosDurability.VOLATILE, depth=0,
                                        history=QosHistory.UNKNOWN)])
    assert (unknown_depth.history, unknown_depth.depth) == (HistoryPolicy.KEEP_LAST, 10)
    static = qos_for("/tf_static", [])
    assert (static.reliability, static.durability, static.depth) == (ReliabilityPolicy.RELIABLE,
                                                                     DurabilityPolicy.TRANSIENT_LOCAL, 1)
    assert qos_for("/image", []).durability == DurabilityPolicy.VOLATILE


def test_play_window():
    s = 1_000_000_000_000
    assert play_window(s, s + 5_000_000_000, 0.0, None) == (s, s + 5_000_000_000)
    assert play_window(s, s + 5_000_000_000, 1.5, 2.0) == (s + 1_500_000_000, s + 3_500_000_000)
    assert play_window(s, s + 5_000_000_000, 4.0, 9.0) == (s + 4_000_000_000, s + 5_000_000_000)
    with pytest.raises(InputError, match="past the end of the bag"):
        play_window(s, s + 5_000_000_000, 6.0, None)
    with pytest.raises(InputError, match="--duration must be > 0"):
        play_window(s, s + 5_000_000_000, 0.0, 0.0)


LISTENER = r'''
import hashlib, json, sys, time
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from nav_msgs.msg import Odometry
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

expected, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
rclpy.init()
node = rclpy.create_node("bag_listener")
got = {t: [] for t in expected}
clock = []
def on(topic):
    def cb(msg):
        if topic.endswith("image_raw"):
            got[topic].append([msg.header.stamp.sec, msg.header.stamp.nanosec, hashlib.sha1(bytes(msg.data)).hexdigest()])
        elif topic.endswith("camera_info"):
            got[topic].append([msg.header.stamp.sec, msg.header.stamp.nanosec, list(msg.k)])
        elif topic.endswith("odom"):
            p = msg.pose.pose.position
            got[topic].append([msg.header.stamp.sec, msg.header.stamp.nanosec, [p.x, p.y, p.z]])
        else:
            got[topic].append(sorted(t.child_frame_id for t in msg.transforms))
    return cb
types = {"image_raw": Image, "camera_info": CameraInfo, "odom": Odometry, "tf": TFMessage, "tf_static": TFMessage}
latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
subs = [node.create_subscription(types[t.rsplit("/", 1)[1]], t, on(t), latched if t == "/tf_static" else 20)
        for t in expected]
subs.append(node.create_subscription(Clock, "/clock", lambda m: clock.append(m.clock.sec * 10**9 + m.clock.nanosec),
                                     QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)))
print("ready", flush=True)
end = time.monotonic() + timeout
while time.monotonic() < end and any(len(got[t]) < n for t, n in expected.items()):
    rclpy.spin_once(node, timeout_sec=0.05)
sys.stdin.readline()  # the player has exited, so every reliable message it sent was acknowledged
def taken():
    return sum(map(len, got.values())) + len(clock)
before = -1
while taken() != before:  # take whatever is still queued (a repeated or extra message would be)
    before = taken()
    rclpy.spin_once(node, timeout_sec=0)
print(json.dumps({"got": got, "clock": clock}), flush=True)
node.destroy_node()
rclpy.shutdown()
'''


@pytest.fixture(scope="module")
def played_bag(tmp_path_factory):
    root = tmp_path_factory.mktemp("play")
    generate_sequence(root / "kitti", "00", num_frames=6, height=32, width=64, seed=3)
    convert(root / "kitti" / "sequences" / "00", root / "bag", storage="mcap")
    return root / "bag"


def _bag_contents(bag):
    """The same summaries the listener computes, read from the bag with rosbags."""
    from sa4depth_core.data.bag_reader import BAG_TYPESTORE

    out = {}
    with open_bag(bag) as reader:
        for conn, _, raw in reader.messages():
            msg = BAG_TYPESTORE.deserialize_cdr(raw, conn.msgtype)
            if conn.topic.endswith("image_raw"):
                item = [msg.header.stamp.sec, msg.header.stamp.nanosec, hashlib.sha1(msg.data.tobytes()).hexdigest()]
            elif conn.topic.endswith("camera_info"):
                item = [msg.header.stamp.sec, msg.header.stamp.nanosec, msg.k.tolist()]
            elif conn.topic.endswith("odom"):
                p = msg.pose.pose.position
                item = [msg.header.stamp.sec, msg.header.stamp.nanosec, [p.x, p.y, p.z]]
            else:
                item = sorted(t.child_frame_id for t in msg.transforms)
            out.setdefault(conn.topic, []).append(item)
    return out


def test_player_delivers_every_message_to_another_process(played_bag, ros_domain):
    pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs is not installed (build it, see ros2_feasibility §1.4)")
    expected = _bag_contents(played_bag)
    env = dict(os.environ)
    listener = subprocess.Popen([sys.executable, "-c", LISTENER, json.dumps({t: len(v) for t, v in expected.items()}),
                                 "25"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
    try:
        assert listener.stdout.readline().strip() == "ready"
        player = subprocess.run([sys.executable, "-m", "sa4depth_ros.bag_player", str(played_bag), "--rate", "2",
                                 "--clock", "50", "--delay", "0.2", "--wait-subscribers", "15"],
                                capture_output=True, text=True, env=env, timeout=40, check=False)
        assert player.returncode == 0, player.stderr
        out, err = listener.communicate("player exited\n", timeout=30)
    finally:
        listener.kill()
    result = json.loads(out.strip().splitlines()[-1])
    assert result["got"] == expected, err
    # /clock ticked along, in order, from the first message's stamp on
    clock = np.array(result["clock"])
    assert len(clock) >= 5 and np.all(np.diff(clock) >= 0)
    first_stamp = expected["/kitti/camera_color_left/image_raw"][0]
    assert clock[0] >= first_stamp[0] * 10**9 + first_stamp[1]


def test_player_rejects_unknown_topics(played_bag, ros_domain):
    player = subprocess.run([sys.executable, "-m", "sa4depth_ros.bag_player", str(played_bag), "--topics", "/nope",
                             "--delay", "0"], capture_output=True, text=True, env=dict(os.environ), timeout=30,
                            check=False)
    assert player.returncode == 2
    assert "no topic ['/nope']" in player.stderr and str(played_bag) in player.stderr


class _FakeTime:
    """Stands in for the player's `time` module: sleeping moves the clock on at once."""

    def __init__(self):
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


def test_player_sends_each_message_at_its_bag_time_over_the_rate_with_clock_between(played_bag, monkeypatch):
    clock = _FakeTime()
    monkeypatch.setattr(bag_player, "time", clock)
    monkeypatch.setattr(bag_player.rclpy, "ok", lambda: True)
    sent = []

    class Node:
        def create_publisher(self, cls, topic, qos):
            return SimpleNamespace(publish=lambda msg: sent.append((topic, clock.now, msg)))

    rate = 2.0
    with open_bag(played_bag) as reader:
        player = BagPlayer(Node(), reader, str(played_bag), clock_hz=50)
        start = reader.start_time
        recorded = [(conn.topic, t, bytes(raw)) for conn, t, raw in reader.messages()]
        assert player.play(start, reader.end_time + 1, rate) == len(recorded)
    played = [(topic, at, msg) for topic, at, msg in sent if topic != bag_player.CLOCK_TOPIC]
    assert [(topic, msg) for topic, _, msg in played] == [(topic, raw) for topic, _, raw in recorded]
    np.testing.assert_allclose([at - 100.0 for _, at, _ in played],
                               [(t - start) / 1e9 / rate for _, t, _ in recorded], atol=1e-9)
    ticks = [(at, m.clock.sec * 10**9 + m.clock.nanosec) for topic, at, m in sent if topic == bag_player.CLOCK_TOPIC]
    bag_ns = np.array([ns for _, ns in ticks])
    # in order, up to the 1 ns that truncating a float wall time to integer nanoseconds may take
    assert len(ticks) > 50 * (recorded[-1][1] - start) / 1e9 / rate and np.all(np.diff(bag_ns) >= -1)
    # between messages /clock shows the bag time the wall clock has reached
    np.testing.assert_allclose(bag_ns - start, [(at - 100.0) * rate * 1e9 for at, _ in ticks], atol=2)
