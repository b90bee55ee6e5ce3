"""perception_node in its own process with real rclpy on loopback DDS: outputs, odometry, TF,
diagnostics, bad input, live parameters, services, and (in the fixture's teardown) a clean exit
on SIGINT.

One node process serves the whole module (64x128 synthetic frames, untrained 128x64 network).
Tests send a frame and wait for the output with its stamp, so the node's drop-oldest queue never
drops test frames.
"""
import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from sa4depth_core.checkpoint import save_checkpoint
from sa4depth_core.config import Config
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.data.pose_io import load_kitti_poses, load_tum_poses
from sa4depth_core.loaded_model import load_model
from sa4depth_ros.frame_client import FrameClient
from sa4depth_ros.stamps import stamp_msg
from sa4depth_ros.image_codec import msg_to_depth

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 30.0  # per output; generous for a loaded 2-core machine


class Node:
    """The node process, its client and a frame clock shared by the module's tests."""

    def __init__(self, proc, client, seq, tmp, log):
        self.proc, self.client, self.tmp, self.log = proc, client, tmp, log
        self.images = [seq.image(i) for i in range(len(seq))]
        self.K = seq.intrinsics()
        self.t = 100.0
        self.i = 0

    def frame(self, rgb=None, K=None, frame_id="camera_optical"):
        """Send the next synthetic frame (or `rgb`) and return (stamp, depth message)."""
        rgb = self.images[self.i % len(self.images)] if rgb is None else rgb
        self.i += 1
        self.t += 0.1
        stamp = self.client.send(rgb, self.K if K is None else K, self.t, frame_id)
        depth = self.client.with_stamp("depth/image", stamp, TIMEOUT)
        assert depth is not None, f"no depth for the frame at {self.t:.1f} s; node log:\n{self.output()}"
        return stamp, depth

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def diagnostics(self, predicate, timeout=TIMEOUT):
        return self.client.diagnostics(timeout=timeout, after=time.monotonic(), predicate=predicate)


@contextlib.contextmanager
def running_node(domain, synth_root, tmp, params=(), program=("-m", "sa4depth_ros.perception_node"),
                 backend="torch", compressed=""):
    """A perception node process (64x128 synthetic frames, `params` as "name:=value" on top of
    the YAML, networks on `backend`), connected and warmed up; on leaving, SIGINT must end it
    cleanly within 30 s. `program` is what the interpreter runs (a module, or "-c" and code that
    wraps the node); `compressed` ("png", "jpeg") makes the client send CompressedImage."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, *program, "--ros-args", "--params-file", str(REPO / "config" / "sa4depth.yaml"),
           "-p", "threads:=1", "-p", "diagnostics_period:=0.5", "-p", f"trajectory_dir:={tmp / 'trajectories'}",
           "-p", f"backend:={backend}"] + (["-p", "precision:=fp32"] if backend == "torch" else [])
    for value in params:
        cmd += ["-p", value]
    log = tmp / "node.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    client = FrameClient(domain, compressed=compressed)
    node = Node(proc, client, KittiOdometrySequence(synth_root, "00"), tmp, log)
    try:
        outputs = ("depth/image", "depth/camera_info", "depth/color", "points", "odom", "path", "/tf", "/diagnostics")
        assert client.wait_connected(timeout=40.0, outputs=outputs), f"node not connected:\n{node.output()}"
        assert client.warm_up(node.images[0], node.K, start=1.0), f"no depth from the node:\n{node.output()}"
        yield node
    finally:
        try:
            client.close()
        finally:
            # SIGINT ends the node cleanly; checked here so that no test has to run last (pytest-xdist)
            proc.send_signal(signal.SIGINT)
            try:
                status = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                status = "no exit 30 s after SIGINT"
    assert status == 0 and "Traceback" not in node.output(), f"unclean exit ({status}):\n{node.output()}"


@pytest.fixture(scope="module")
def node(ros_domain_module, synth_root, tmp_path_factory):
    with running_node(ros_domain_module, synth_root, tmp_path_factory.mktemp("node"),
                      ["input_width:=128", "input_height:=64", "publish_points:=true", "points_stride:=2"]) as node:
        yield node


def test_depth_camera_info_colour_and_points(node):
    stamp, depth = node.frame(frame_id="cam_left_optical")
    assert (depth.encoding, depth.height, depth.width, depth.header.frame_id) == ("32FC1", 64, 128, "cam_left_optical")
    values = msg_to_depth(depth)
    assert np.isfinite(values).mean() > 0.99 and np.nanmin(values) > 0
    c = node.client
    info = c.with_stamp("depth/camera_info", stamp, TIMEOUT)
    assert info.header.frame_id == "cam_left_optical" and (info.width, info.height) == (128, 64)
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)), node.K)  # same size in and out: K unchanged
    colour = c.with_stamp("depth/color", stamp, TIMEOUT)
    assert (colour.encoding, colour.height, colour.width) == ("bgr8", 64, 128)
    cloud = c.with_stamp("points", stamp, TIMEOUT)
    assert (cloud.height, cloud.width, cloud.header.frame_id) == (32, 64, "cam_left_optical")
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"]
    z = np.frombuffer(bytes(cloud.data), np.float32).reshape(32, 64, 4)[..., 2]
    np.testing.assert_allclose(z, values[::2, ::2], rtol=1e-6)


def test_odometry_path_and_tf(node):
    c = node.client
    assert c.set_parameters(path_period=0.25) == [(True, "")]
    assert node.client.trigger("reset")[0]
    try:
        stamps = [node.frame()[0] for _ in range(4)]  # 0.1 s apart
    finally:
        assert c.set_parameters(path_period=0.5) == [(True, "")]
    odoms = [c.with_stamp("odom", s, TIMEOUT) for s in stamps]
    assert all(o.header.frame_id == "odom" and o.child_frame_id == "base_link" for o in odoms)
    first = odoms[0].pose.pose
    assert (first.position.x, first.position.y, first.position.z, first.orientation.w) == (0, 0, 0, 1)
    cov = np.reshape(odoms[-1].pose.covariance, (6, 6))
    assert np.all(np.isfinite(cov)) and np.all(np.diag(cov) > 0) and np.allclose(cov, cov.T)
    # path: the first frame after the reset, then the first 0.25 s of image time later
    path = c.with_stamp("path", stamps[-1], TIMEOUT)
    assert len(path.poses) == 4 and path.header.frame_id == "odom"
    assert path.poses[-1].pose == odoms[-1].pose.pose
    sent = [m.header.stamp for m in c.messages("path")]
    assert stamps[0] in sent and stamps[1] not in sent and stamps[2] not in sent

    def tf_at(stamp):
        for msg in c.messages("/tf"):
            for t in msg.transforms:
                if t.header.stamp == stamp and (t.header.frame_id, t.child_frame_id) == ("odom", "base_link"):
                    return t
        return None
    tf = c.wait_for(lambda: tf_at(stamps[-1]), TIMEOUT)
    assert tf is not None, "no odom -> base_link transform on /tf"
    p = odoms[-1].pose.pose.position
    assert (tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z) == (p.x, p.y, p.z)


def test_diagnostics_report_model_scale_and_rates(node):
    node.frame()
    d = node.diagnostics(lambda d: int(d["frames_published"]) > 0)
    assert d["model_id"] == "untrained" and d["trained"] == "False"
    assert d["level"] == 1 and "untrained" in d["message"]
    assert d["scale_mode"] == "relative" and "network units" in d["scale"]
    assert d["device"] == "cpu" and d["sync"] == "fallback" and d["tf"] == "tf2_msgs"
    assert d["network_size"] == "128x64" and d["odometry"] == "on"
    for key in ("input_rate_hz", "output_rate_hz", "latency_ms_p50", "latency_ms_p95"):
        assert math.isfinite(float(d[key])), key
    counts = {key: int(d[key]) for key in ("frames_received", "frames_processed", "frames_published",
                                           "frames_dropped_stale", "frames_rejected", "frames_failed",
                                           "frames_unpaired")}
    # every frame handed to the node has one fate (none is in flight: the last one was answered)
    assert counts["frames_received"] == (counts["frames_processed"] + counts["frames_dropped_stale"]
                                         + counts["frames_rejected"] + counts["frames_failed"])
    assert counts["frames_published"] == counts["frames_processed"]


def _image(encoding, data: bytes, width=128, height=64, step=None, stamp=None):
    header = Header(stamp=stamp, frame_id="camera_optical")
    return Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
                 step=step if step is not None else len(data) // height, data=data)


def test_bad_input_is_rejected_with_a_reason_and_the_node_keeps_running(node):
    c = node.client
    cases = [
        ("yuv422", _image("yuv422", bytes(128 * 64 * 2)), None, "yuv422"),
        ("NaN 32FC1", _image("32FC1", np.full((64, 128), np.nan, np.float32).tobytes()), None, "32FC1"),
        ("short data", _image("rgb8", bytes(100), step=384), None, "100 bytes"),
        ("NaN intrinsics", None, np.full((3, 3), np.nan), "pinhole"),
    ]
    for label, image, K, reason in cases:
        node.t += 0.1
        stamp = stamp_msg(node.t)
        rgb = node.images[0]
        info_K = node.K if K is None else K
        info = CameraInfo(header=Header(stamp=stamp, frame_id="camera_optical"), width=128, height=64,
                          k=info_K.reshape(9).tolist())
        if image is None:
            image = _image("rgb8", rgb.tobytes())
        image.header.stamp = stamp
        c.send_messages(image, info)
        d = node.diagnostics(lambda d, r=reason: r in d["last_problem"])
        assert d is not None, f"{label}: no diagnostics naming '{reason}'"
        assert d["level"] >= 1 and reason in d["message"]
    assert int(d["frames_rejected"]) >= len(cases)
    # CameraInfo for another size than the image
    node.t += 0.1
    stamp = stamp_msg(node.t)
    c.send_messages(_image("rgb8", node.images[0].tobytes(), stamp=stamp),
                    CameraInfo(header=Header(stamp=stamp), width=256, height=128, k=node.K.reshape(9).tolist()))
    assert node.diagnostics(lambda d: "CameraInfo is for 256x128" in d["last_problem"]) is not None
    assert node.proc.poll() is None
    node.frame()  # still working


def test_size_change_mid_stream_rescales_camera_info(node):
    big = np.repeat(np.repeat(node.images[1], 2, axis=0), 2, axis=1)  # 128x256
    K2 = node.K.copy()
    K2[:2] *= 2
    K2[:2, 2] += 0.5  # pixel centres at integers: doubling maps c to 2c + 0.5
    stamp, depth = node.frame(big, K2)
    assert (depth.height, depth.width) == (64, 128)
    info = node.client.with_stamp("depth/camera_info", stamp, TIMEOUT)
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)), node.K, atol=1e-9)
    assert node.diagnostics(lambda d: d["input_size"] == "256x128") is not None
    stamp, depth = node.frame()  # and back
    assert (depth.height, depth.width) == (64, 128)


def test_missing_camera_info_is_reported(node):
    c = node.client
    c.node.destroy_publisher(c.info_pub)
    try:
        # the node sees an image publisher and no CameraInfo publisher in the graph: no frame needed
        found = node.diagnostics(lambda d: "nothing publishes" in d["message"])
        assert found is not None and "intrinsics" in found["message"]
    finally:
        c.info_pub = c.node.create_publisher(CameraInfo, c.topic("camera_info"), 5)
    assert c.wait_connected(timeout=20)
    node.t = c.warm_up(node.images[0], node.K, start=node.t + 0.1)
    assert node.t is not None, node.output()


def test_live_parameters_are_validated_and_applied(node):
    c = node.client
    rejected = c.set_parameters(input_width=100)[0]
    assert not rejected[0] and "multiples of 32" in rejected[1]
    assert not c.set_parameters(scale_mode="metric")[0][0]
    assert not c.set_parameters(device="cpu")[0][0]  # read-only
    assert not c.set_parameters(odom_frame="/odom")[0][0]
    rgb = node.images[2]
    _, before = node.frame(rgb)
    assert c.set_parameters(scale_mode="fixed", scale_factor=2.5) == [(True, ""), (True, "")]
    _, after = node.frame(rgb)
    np.testing.assert_allclose(msg_to_depth(after), 2.5 * msg_to_depth(before), rtol=1e-5)
    assert node.diagnostics(lambda d: d["scale_mode"] == "fixed") is not None
    # camera_height mode needs the height: there is no default
    ok, reason = c.set_parameters(scale_mode="camera_height")[0]
    assert not ok and "needs the camera_height parameter" in reason
    # an untrained network sees no ground plane: camera_height mode says it is still waiting
    assert all(ok for ok, _ in c.set_parameters(camera_height=1.5, scale_mode="camera_height"))
    node.frame(rgb)
    assert node.diagnostics(lambda d: d["scale_mode"] == "camera_height" and "no ground plane" in d["message"])
    assert c.set_parameters(input_width=64)[0][0]
    stamp, small = node.frame(rgb)
    assert (small.height, small.width) == (64, 64)
    assert c.with_stamp("depth/camera_info", stamp, TIMEOUT).width == 64
    assert all(ok for ok, _ in c.set_parameters(input_width=128, scale_mode="relative", camera_height=0.0))
    # the LM budget at inference: 0 = the model's, up to 100 iterations a level
    assert c.set_parameters(refine_iterations=1000)[0][0] is False
    assert all(ok for ok, _ in c.set_parameters(refine_iterations=2, refine_max_points=128))
    node.frame(rgb)
    assert all(ok for ok, _ in c.set_parameters(refine_iterations=0, refine_max_points=0))


def test_services_reset_save_and_reload(node, tmp_path):
    c = node.client
    ok, message = c.trigger("reset")
    assert ok
    stamps = [node.frame()[0] for _ in range(3)]
    ok, message = c.trigger("save_trajectory")
    assert ok, message
    kitti = sorted((node.tmp / "trajectories").glob("*_kitti.txt"))[-1]
    tum = Path(str(kitti).replace("_kitti.txt", "_tum.txt"))
    assert len(load_kitti_poses(kitti)) == 3
    t, _ = load_tum_poses(tum)
    np.testing.assert_allclose(t, [s.sec + s.nanosec * 1e-9 for s in stamps], atol=1e-6)

    cfg = Config()
    cfg.model.height, cfg.model.width = 64, 128
    good = tmp_path / "good.pt"
    model_id = save_checkpoint(good, config=cfg.to_dict(), model=load_model(None).model.state_dict())[:12]
    assert c.set_parameters(checkpoint=str(good))[0][0]
    ok, message = c.trigger("reload_model")
    assert ok and model_id in message
    d = node.diagnostics(lambda d: d["model_id"] == model_id)
    assert d is not None and d["trained"] == "True" and "untrained" not in d["message"]

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[: 1 << 16])
    assert c.set_parameters(checkpoint=str(corrupt))[0][0]
    ok, message = c.trigger("reload_model")
    assert not ok and "corrupt.pt" in message and model_id in message
    assert not c.set_parameters(checkpoint=str(tmp_path / "missing.pt"))[0][0]
    node.frame()
    assert node.diagnostics(lambda d: d["model_id"] == model_id) is not None

