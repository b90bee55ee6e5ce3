"""The ROS 2 interface a robot expects (issue 15), over real loopback DDS against perception_node
processes: depth/image paired with depth/camera_info the way a camera subscriber pairs them,
intrinsics from P for rectified images and K + D (undistorted, or refused) for raw ones, binned
and cropped CameraInfo, points consistent with depth/camera_info, units and the relative-scale
warning, and ~/set_pose, the camera's mounting from TF without a second parent
(test_ros_inputs.py: compressed input and the inference backend).

`node` runs on backend torch with raw input. Each test sends frames and waits for the outputs with
their stamps, or for the node's diagnostics to show a state.
"""
import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from geometry_msgs.msg import PoseWithCovarianceStamped
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from transforms3d.euler import euler2quat

from sa4depth_core.checkpoint import save_checkpoint
from sa4depth_core.config import Config
from sa4depth_core.data.bag_ground_truth import pose_matrix
from sa4depth_core.data.pose_io import load_kitti_poses
from sa4depth_core.loaded_model import load_model
from sa4depth_core.pipeline_options import pose_from_xyz_rpy
from sa4depth_ros.camera_info import K_to_camera_info
from sa4depth_ros.image_codec import msg_to_depth, rgb_to_msg
from sa4depth_ros.params import BY_NAME
from sa4depth_ros.pose_msgs import pose_to_transform_stamped
from sa4depth_ros.qos import reliable_qos
from sa4depth_ros.stamps import stamp_msg
from sa4depth_ros.sync import ApproximateSyncFallback
from sa4depth_ros.tf_lookup import TF_STATIC_LISTENER_QOS
from sa4depth_ros.tf_out import TF_STATIC_QOS, TFMessage
from conftest import pose_at
from test_perception_node import REPO, TIMEOUT, running_node

NODE_PARAMS = ["input_width:=128", "input_height:=64", "publish_points:=true", "points_stride:=2"]


@pytest.fixture(scope="module")
def node(ros_domain_module, synth_root, tmp_path_factory):
    with running_node(ros_domain_module, synth_root, tmp_path_factory.mktemp("interface"), NODE_PARAMS) as node:
        yield node


def _send(node, rgb, info, frame_id="camera_optical"):
    """Send an image with a hand-made CameraInfo under the next stamp; returns the stamp."""
    node.t += 0.1
    header = Header(stamp=stamp_msg(node.t), frame_id=frame_id)
    info.header = header
    node.client.send_messages(rgb_to_msg(rgb, header), info)
    return header.stamp


def _depth_of(node, rgb, info, frame_id="camera_optical"):
    stamp = _send(node, rgb, info, frame_id)
    depth = node.client.with_stamp("depth/image", stamp, TIMEOUT)
    assert depth is not None, f"no depth for the frame:\n{node.output()}"
    return stamp, depth


def camera_info_topic(image_topic: str) -> str:
    """The CameraInfo topic image_transport's camera subscribers pair with an image topic: the
    sibling named camera_info."""
    return image_topic.rsplit("/", 1)[0] + "/camera_info"


def test_depth_image_pairs_with_its_camera_info_like_a_camera_subscriber(node):
    c = node.client
    image_topic = c.topic("depth/image")
    pairs = []
    sync = ApproximateSyncFallback(lambda image, info: pairs.append((image, info)), slop=0.0, queue_size=10)
    subs = [c.node.create_subscription(Image, image_topic, sync.add_image, reliable_qos(10)),
            c.node.create_subscription(CameraInfo, camera_info_topic(image_topic), sync.add_info, reliable_qos(10))]
    try:
        assert c.wait_for(lambda: all(s.get_publisher_count() for s in subs), TIMEOUT), "no depth/image publisher"
        stamps = [node.frame()[0] for _ in range(3)]
        assert c.wait_for(lambda: {p[0].header.stamp.sec * 10**9 + p[0].header.stamp.nanosec for p in pairs}
                          >= {s.sec * 10**9 + s.nanosec for s in stamps}, TIMEOUT), "depth images went unpaired"
        for image, info in pairs:
            assert (info.width, info.height, info.header) == (image.width, image.height, image.header)
            np.testing.assert_array_equal(np.reshape(info.p, (3, 4))[:, :3], np.reshape(info.k, (3, 3)))
    finally:
        for sub in subs:
            c.node.destroy_subscription(sub)


def _cloud_xyz(cloud) -> np.ndarray:
    return np.frombuffer(bytes(cloud.data), np.float32).reshape(cloud.height, cloud.width, 4)[..., :3]


def test_rectified_input_is_read_with_P_and_points_back_project_with_depth_camera_info(node):
    K_raw = np.array([[260.0, 0.0, 70.0], [0.0, 250.0, 28.0], [0.0, 0.0, 1.0]])
    P = np.array([[180.0, 0.0, 61.5, -18.0], [0.0, 185.0, 33.5, 0.0], [0.0, 0.0, 1.0, 0.0]])
    info = K_to_camera_info(K_raw, 128, 64, Header())
    info.p, info.d = P.reshape(12), [-0.2, 0.05, 0.0, 0.0, 0.0]  # image_proc keeps the raw D next to image_rect
    stamp, depth = _depth_of(node, node.images[4], info)
    out = node.client.with_stamp("depth/camera_info", stamp, TIMEOUT)
    cloud = node.client.with_stamp("points", stamp, TIMEOUT)
    assert out is not None and cloud is not None
    K_out, P_out = np.reshape(out.k, (3, 3)), np.reshape(out.p, (3, 4))
    np.testing.assert_allclose(K_out, P[:, :3])  # same size in and out: the rectified camera matrix itself
    np.testing.assert_allclose(P_out, np.hstack([P[:, :3], np.zeros((3, 1))]))
    assert not np.any(out.d) and np.allclose(np.reshape(out.r, (3, 3)), np.eye(3))
    # points (every 2nd row and column) are depth back-projected with what depth/camera_info says
    z = msg_to_depth(depth)[::2, ::2]
    v, u = np.mgrid[0:64:2, 0:128:2]
    xyz = _cloud_xyz(cloud)
    for matrix in (K_out, P_out[:, :3]):
        np.testing.assert_allclose(xyz[..., 0], (u - matrix[0, 2]) * z / matrix[0, 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(xyz[..., 1], (v - matrix[1, 2]) * z / matrix[1, 1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xyz[..., 2], z, rtol=1e-6)


def _distorted(rgb: np.ndarray, K: np.ndarray, D: np.ndarray) -> np.ndarray:
    """What a lens with distortion D shows of the pinhole image `rgb`: each raw pixel samples the
    pinhole image where its ray goes."""
    h, w = rgb.shape[:2]
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    pinhole = cv2.undistortPoints(np.stack([u.ravel(), v.ravel()], 1)[:, None, :], K, D, P=K).reshape(h, w, 2)
    return cv2.remap(rgb, pinhole[..., 0], pinhole[..., 1], cv2.INTER_LINEAR)


def test_raw_distorted_input_is_undistorted_or_refused(node):
    c = node.client
    D = np.array([-0.25, 0.08, 0.001, -0.002, 0.0])
    raw = _distorted(node.images[5], node.K, D)
    with_d = K_to_camera_info(node.K, 128, 64, Header())
    with_d.d = D.tolist()
    maps = cv2.initUndistortRectifyMap(node.K, D, None, node.K, (128, 64), cv2.CV_32FC1)
    undistorted = cv2.remap(raw, *maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    assert c.set_parameters(rectified_images=False) == [(True, "")]
    try:
        stamp, depth = _depth_of(node, raw, with_d)
        assert np.allclose(np.reshape(c.with_stamp("depth/camera_info", stamp, TIMEOUT).k, (3, 3)), node.K)
        # the network saw exactly the undistorted image: as if it had been sent without distortion
        _, expected = _depth_of(node, undistorted, K_to_camera_info(node.K, 128, 64, Header()))
        np.testing.assert_array_equal(msg_to_depth(depth), msg_to_depth(expected))
        # and not the raw image as it came (what reading it as pinhole would give)
        _, as_pinhole = _depth_of(node, raw, K_to_camera_info(node.K, 128, 64, Header()))
        assert not np.allclose(msg_to_depth(depth), msg_to_depth(as_pinhole), rtol=1e-3)

        assert c.set_parameters(undistort=False) == [(True, "")]
        node.t += 0.1
        refused = _send(node, raw, with_d)
        d = node.diagnostics(lambda d: "refused: set undistort true" in d["last_problem"])
        assert d is not None and d["level"] >= 1, node.output()
        assert c.with_stamp("depth/image", refused, 0) is None
    finally:
        assert all(ok for ok, _ in c.set_parameters(rectified_images=True, undistort=True))
    node.frame()


@pytest.mark.parametrize("sensor, binning, roi, expected", [
    ((256, 128), (2, 2), (0, 0, 0, 0), [[150, 0, 65.25], [0, 155, 34.75], [0, 0, 1]]),
    ((256, 128), (0, 0), (64, 32, 128, 64), [[300, 0, 67], [0, 310, 38], [0, 0, 1]]),
    ((512, 256), (2, 2), (100, 20, 256, 128), [[150, 0, 15.25], [0, 155, 24.75], [0, 0, 1]]),
], ids=["binned", "roi", "roi-binned"])
def test_binned_and_cropped_frames_get_the_intrinsics_of_their_pixels(node, sensor, binning, roi, expected):
    info = K_to_camera_info(np.array([[300.0, 0, 131.0], [0, 310.0, 70.0], [0, 0, 1]]), *sensor, Header())
    info.binning_x, info.binning_y = binning
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = roi
    info.p = np.zeros(12)  # as most drivers publish a raw binned stream: K only
    stamp, depth = _depth_of(node, node.images[6], info)
    out = node.client.with_stamp("depth/camera_info", stamp, TIMEOUT)
    assert (depth.width, depth.height, out.width, out.height) == (128, 64, 128, 64)
    np.testing.assert_allclose(np.reshape(out.k, (3, 3)), expected, atol=1e-9)


def test_set_pose_restarts_the_trajectory_at_the_given_pose(node):
    c = node.client
    pub = c.node.create_publisher(PoseWithCovarianceStamped, "/perception_node/set_pose", reliable_qos(5))
    try:
        assert c.wait_for(lambda: pub.get_subscription_count() > 0, TIMEOUT), "nothing subscribes to ~/set_pose"
        request = PoseWithCovarianceStamped()
        request.header.frame_id = "odom"
        p, q = request.pose.pose.position, request.pose.pose.orientation
        p.x, p.y, p.z = 2.0, -1.0, 0.5
        q.w, q.x, q.y, q.z = euler2quat(0.0, 0.0, math.radians(30))
        covariance = np.diag([0.04, 0.04, 0.01, 0.001, 0.001, 0.0025])
        request.pose.covariance = covariance.reshape(36).tolist()
        pub.publish(request)
        assert node.diagnostics(lambda d: d["odom_origin"].startswith("set_pose at (2.000, -1.000, 0.500)"))
        stamps = [node.frame()[0] for _ in range(3)]
        odoms = [c.with_stamp("odom", s, TIMEOUT) for s in stamps]
        given = pose_matrix(request.pose.pose.position, request.pose.pose.orientation)
        first_pose = odoms[0].pose.pose
        np.testing.assert_allclose(pose_matrix(first_pose.position, first_pose.orientation), given, atol=1e-9)
        first = np.reshape(odoms[0].pose.covariance, (6, 6))
        np.testing.assert_allclose(first, covariance, atol=1e-5)  # plus the odometry's own floor (1e-6)
        for odom in odoms[1:]:  # an odometry never gets more certain than where it started
            assert np.all(np.diag(np.reshape(odom.pose.covariance, (6, 6))) >= np.diag(covariance))

        request.header.frame_id = "map"
        pub.publish(request)
        d = node.diagnostics(lambda d: "set_pose ignored" in d["last_problem"])
        assert d is not None and "'map'" in d["last_problem"] and d["odom_origin"].startswith("set_pose at")
    finally:
        c.node.destroy_publisher(pub)
        assert c.trigger("reset")[0]
    assert node.diagnostics(lambda d: d["odom_origin"] == "~/reset")


@pytest.mark.skipif(TFMessage is None, reason="tf2_msgs is not built (scripts/build_tf2_msgs.sh)")
def test_the_camera_mounting_comes_from_tf_and_never_gets_a_second_parent(node):
    c = node.client
    base_mount = pose_at([0.5, 0.0, 1.2], [0.0, 0.3, 0.1])
    mount_cam = pose_at([0.0, 0.1, 0.0], [-math.pi / 2, 0.0, -math.pi / 2])
    stamp = stamp_msg(1.0)
    statics, seen = c.node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS), []
    listener = c.node.create_subscription(TFMessage, "/tf_static", lambda m: seen.extend(m.transforms),
                                          TF_STATIC_LISTENER_QOS)
    try:
        statics.publish(TFMessage(transforms=[pose_to_transform_stamped(base_mount, "base_link", "tf_mount", stamp),
                                              pose_to_transform_stamped(mount_cam, "tf_mount", "tf_cam", stamp)]))
        for _ in range(20):  # frames until the node has the transforms (it reads TF at each frame)
            node.frame(frame_id="tf_cam")
            if node.diagnostics(lambda d: d["extrinsic"] == "tf (base_link -> tf_cam)", timeout=2.0):
                break
        else:
            raise AssertionError(f"the node never used TF's base_link -> tf_cam:\n{node.output()}")
        assert c.trigger("reset")[0]
        stamps = [node.frame(frame_id="tf_cam")[0] for _ in range(4)]
        ok, message = c.trigger("save_trajectory")
        assert ok, message
        kitti = sorted((node.tmp / "trajectories").glob("*_kitti.txt"))[-1]
        camera = load_kitti_poses(kitti)  # T_cam0_cam of the four frames
        poses = [c.with_stamp("odom", s, TIMEOUT).pose.pose for s in stamps]
        base = np.stack([pose_matrix(p.position, p.orientation) for p in poses])
        # odom -> base_link is the camera's motion seen from where TF mounts it, not from base_to_camera
        T_bc = base_mount @ mount_cam
        from_tf = T_bc @ camera @ np.linalg.inv(T_bc)
        np.testing.assert_allclose(base, from_tf, atol=1e-6)
        T_param = pose_from_xyz_rpy(BY_NAME["base_to_camera"].default)
        assert np.abs(T_param @ camera @ np.linalg.inv(T_param) - from_tf).max() > 1e-4, "the test cannot tell"

        # publish_camera_tf: a frame TF already places keeps its one parent
        assert c.set_parameters(publish_camera_tf=True) == [(True, "")]
        node.frame(frame_id="tf_cam")
        d = node.diagnostics(lambda d: d["camera_tf"].startswith("not published: 'tf_cam' already has parent"))
        assert d is not None and d["level"] >= 1 and "publish_camera_tf" in d["message"], node.output()
        # a frame TF does not know gets base_to_camera
        node.frame(frame_id="tf_free")
        assert c.wait_for(lambda: any(t.child_frame_id == "tf_free" for t in seen), TIMEOUT), node.output()
        parents = {(t.header.frame_id, t.child_frame_id) for t in seen}
        assert ("base_link", "tf_free") in parents and ("base_link", "tf_cam") not in parents, parents
    finally:
        assert c.set_parameters(publish_camera_tf=False) == [(True, "")]
        c.node.destroy_subscription(listener)
        c.node.destroy_publisher(statics)


def test_relative_scale_is_a_warning_with_its_units_and_metres_are_not(node, tmp_path):
    """Last of `node`'s tests: it leaves a trained model running."""
    c = node.client
    assert "scale_mode relative" in node.output() and "NOT metres" in node.output()  # said at start-up
    cfg = Config()
    cfg.model.height, cfg.model.width = 64, 128
    trained = tmp_path / "trained.pt"
    save_checkpoint(trained, config=cfg.to_dict(), model=load_model(None).model.state_dict())
    assert c.set_parameters(checkpoint=str(trained))[0][0] and c.trigger("reload_model")[0]
    # refinement off: the untrained features would add their own warning
    assert c.set_parameters(**{"odometry__refine": False}) == [(True, "")]
    try:
        node.frame()
        d = node.diagnostics(lambda d: d["trained"] == "True" and d["units"].startswith("network units"))
        assert d is not None and d["level"] == 1 and "not metres" in d["message"], d
        assert c.set_parameters(scale_mode="fixed", scale_factor=2.0) == [(True, ""), (True, "")]
        node.frame()
        d = node.diagnostics(lambda d: d["units"] == "m")
        assert d is not None and d["level"] == 0, d
    finally:
        assert all(ok for ok, _ in c.set_parameters(scale_mode="relative", odometry__refine=True))


def test_camera_height_mode_without_a_height_does_not_start(ros_domain):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "sa4depth_ros.perception_node", "--ros-args", "-p", "threads:=1",
                           "-p", "backend:=torch", "-p", "scale_mode:=camera_height"],
                          env=env, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "needs the camera_height parameter" in output and "Traceback" not in output
