"""Image/CameraInfo pairing, TF output and the DDS environment guard (real rclpy on loopback DDS)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from sa4depth_core.errors import InputError
from sa4depth_ros.qos import sensor_qos
from sa4depth_ros.ros_env import ensure_loopback_dds
from sa4depth_ros.sync import ApproximateSyncFallback, make_image_info_sync
from sa4depth_ros.pose_msgs import pose_to_transform_stamped
from sa4depth_ros.tf_out import TF_STATIC_QOS, TransformPublisher

REPO = Path(__file__).resolve().parents[1]


def _stamped(cls, t):
    sec = int(t)
    return cls(header=Header(frame_id=f"{t:.3f}", stamp=Time(sec=sec, nanosec=round((t - sec) * 1e9))))


def _fallback(slop=0.02, queue_size=5):
    pairs = []
    sync = ApproximateSyncFallback(lambda image, info: pairs.append((image.header.frame_id, info.header.frame_id)),
                                   slop=slop, queue_size=queue_size)
    return sync, pairs


def test_fallback_pairs_within_slop_only():
    sync, pairs = _fallback(slop=0.02)
    sync.add_image(_stamped(Image, 1.000))
    sync.add_info(_stamped(CameraInfo, 1.015))
    sync.add_info(_stamped(CameraInfo, 2.000))
    sync.add_image(_stamped(Image, 2.025))  # 25 ms apart: no pair
    sync.add_info(_stamped(CameraInfo, 3.000))  # info first, image second: still (image, info)
    sync.add_image(_stamped(Image, 2.995))
    assert pairs == [("1.000", "1.015"), ("2.995", "3.000")]
    # 2.000 info and 2.025 image are older than the 3.000 pair and can never pair now
    assert sync.dropped == 2


def test_fallback_takes_closest_and_drops_older():
    sync, pairs = _fallback(slop=0.05)
    for t in (1.00, 1.10, 1.20):
        sync.add_image(_stamped(Image, t))
    sync.add_info(_stamped(CameraInfo, 1.13))
    assert pairs == [("1.100", "1.130")] and sync.dropped == 1  # 1.00 dropped, 1.20 kept
    sync.add_info(_stamped(CameraInfo, 1.20))
    assert pairs[-1] == ("1.200", "1.200") and sync.dropped == 1


def test_fallback_queue_is_bounded():
    sync, pairs = _fallback(queue_size=3)
    for i in range(7):
        sync.add_image(_stamped(Image, float(i)))
    assert sync.dropped == 4 and pairs == []
    sync.add_info(_stamped(CameraInfo, 1.0))  # image 1.0 fell out of the queue
    assert pairs == []
    sync.add_info(_stamped(CameraInfo, 6.0))
    assert pairs == [("6.000", "6.000")]


def test_fallback_rejects_bad_settings():
    with pytest.raises(InputError, match="slop"):
        ApproximateSyncFallback(print, slop=-1)
    with pytest.raises(InputError, match="queue_size"):
        ApproximateSyncFallback(print, queue_size=0)


def test_ensure_loopback_dds(monkeypatch):
    monkeypatch.delenv("ROS_AUTOMATIC_DISCOVERY_RANGE", raising=False)
    monkeypatch.setenv("ROS_DOMAIN_ID", "7")
    assert ensure_loopback_dds() == ("LOCALHOST", "7")
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")
    assert ensure_loopback_dds(domain_id=42) == ("SUBNET", "42")
    assert os.environ["ROS_DOMAIN_ID"] == "42"
    with pytest.raises(InputError, match="0..101"):
        ensure_loopback_dds(domain_id=200)


_PUBLISHER = r"""
import sys, time
import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from sa4depth_ros.image_codec import rgb_to_msg
from sa4depth_ros.qos import reliable_qos

rclpy.init()
node = rclpy.create_node("sync_test_publisher")
try:
    image_pub = node.create_publisher(Image, "cam/image", reliable_qos())
    info_pub = node.create_publisher(CameraInfo, "cam/camera_info", reliable_qos())
    deadline = time.monotonic() + 15
    while image_pub.get_subscription_count() < 2 or info_pub.get_subscription_count() < 1:
        if time.monotonic() > deadline:
            sys.exit("no subscriber matched")
        time.sleep(0.02)
    print("matched", flush=True)
    for line in sys.stdin:  # frame i when the test asks for it, after it received frame i - 1
        i = int(line)
        image = rgb_to_msg(np.full((4, 6, 3), i, np.uint8), Header(frame_id="cam", stamp=Time(sec=100 + i)), "bgr8")
        # CameraInfo 5 ms after the image: pairs only by approximate time
        info = CameraInfo(header=Header(frame_id="cam", stamp=Time(sec=100 + i, nanosec=5_000_000)), width=6, height=4)
        image_pub.publish(image)
        info_pub.publish(info)
finally:
    node.destroy_node()
    rclpy.try_shutdown()
"""


def _spin_until(executor, done, timeout):
    """Spin until `done()` holds or `timeout` seconds passed; returns done()."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.02)
    return done()


def test_sync_end_to_end_with_publisher_process(ros_domain):
    n = 15
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=ros_domain)
    node = rclpy.create_node("sync_test_subscriber", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    pairs, images = [], []
    syncs = [make_image_info_sync(node, "cam/image", "cam/camera_info", lambda im, info: pairs.append((im, info)),
                                  sensor_qos(depth=5)),
             make_image_info_sync(node, "cam/image", None, lambda im, info: images.append((im, info)),
                                  sensor_qos(depth=5))]
    readers = [sub for sync in syncs for sub in sync.subscriptions]
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-c", _PUBLISHER], env=env, cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lost = []
    try:
        assert proc.stdout.readline().strip() == "matched", proc.communicate(timeout=15)[1]
        # matching is not symmetric: a best-effort reader drops what comes from a writer it has not matched yet
        assert _spin_until(executor, lambda: all(r.get_publisher_count() > 0 for r in readers), 15)
        for i in range(n):
            proc.stdin.write(f"{i}\n")
            proc.stdin.flush()
            if not _spin_until(executor, lambda: len(pairs) > i - len(lost) and len(images) > i - len(lost), 10):
                lost.append(i)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)

    # best effort over loopback: allow a lost frame, never a wrong pair
    assert len(lost) <= 1 and len(pairs) >= n - 1, f"{len(pairs)} pairs, frames {lost} lost"
    for image, info in pairs:
        i = image.header.stamp.sec - 100
        assert info.header.stamp.sec == image.header.stamp.sec and info.header.stamp.nanosec == 5_000_000
        assert bytes(image.data[:3]) == bytes([i, i, i]) and (info.width, info.height) == (6, 4)
    assert len({im.header.stamp.sec for im, _ in pairs}) == len(pairs)
    assert len(images) >= n - 1 and all(info is None for _, info in images)


def test_static_tf_reaches_late_subscriber(ros_domain):
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=ros_domain)
    talker = rclpy.create_node("tf_test_talker", context=ctx)
    tf = TransformPublisher(talker)
    if tf.backend is None:
        pytest.skip("neither tf2_ros nor tf2_msgs is importable")
    from tf2_msgs.msg import TFMessage

    listener = rclpy.create_node("tf_test_listener", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    try:
        stamp = Time(sec=5)
        tf.send_static(pose_to_transform_stamped(_translation(1.0), "base_link", "camera", stamp))
        tf.send_static([pose_to_transform_stamped(_translation(2.0), "base_link", "imu", stamp)])
        tf.send_static(pose_to_transform_stamped(_translation(3.0), "base_link", "camera", stamp))
        got = []
        listener.create_subscription(TFMessage, "/tf_static", got.append, TF_STATIC_QOS)  # joins late
        executor.add_node(talker)
        executor.add_node(listener)
        _spin_until(executor, lambda: got, 10)
    finally:
        executor.shutdown()
        listener.destroy_node()
        talker.destroy_node()
        rclpy.try_shutdown(context=ctx)
    assert len(got) == 1, "transient-local keeps only the last message"
    frames = [(t.child_frame_id, t.transform.translation.x) for t in got[0].transforms]
    assert sorted(frames) == [("camera", 3.0), ("imu", 2.0)]


def _translation(x):
    T = np.eye(4)
    T[0, 3] = x
    return T
