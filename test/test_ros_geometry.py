"""Geometry of the ROS layer without DDS: lens undistortion against OpenCV's own projection, the
pose <-> message conversions, the TF fallback's chains, the odom origin ~/set_pose gives, and
(issue 27) what the core's input checks refuse there: a ~/set_pose covariance that is no
covariance, intrinsics no camera has, a lens OpenCV cannot undo."""
import math

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseWithCovariance, TransformStamped
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from sa4depth_core.data.bag_ground_truth import pose_matrix
from sa4depth_core.errors import InputError
from sa4depth_ros.camera_info import K_to_camera_info, PinholeFrames, frame_intrinsics, undistortion_maps
from sa4depth_core.pipeline import OdomOrigin
from sa4depth_ros.pose_msgs import pose_msg, pose_to_transform_stamped, pose_with_covariance
from sa4depth_ros.tf_lookup import TransformListenerFallback
from sa4depth_ros.tf_out import TFMessage

from conftest import pose_at

K = np.array([[210.0, 0.0, 66.0], [0.0, 205.0, 30.5], [0.0, 0.0, 1.0]])
SIZE = (128, 64)  # (w, h)


@pytest.mark.parametrize("model, D", [
    ("plumb_bob", np.array([-0.3, 0.12, 0.002, -0.001, -0.02])),
    ("rational_polynomial", np.array([-0.3, 0.1, 0.001, 0.002, 0.01, 0.05, -0.02, 0.01])),
    ("equidistant", np.array([-0.05, 0.01, -0.002, 0.0005])),
])
def test_undistortion_samples_each_pinhole_pixel_where_the_lens_images_its_ray(model, D):
    map_x, map_y = undistortion_maps(K, model, D, SIZE)
    v, u = np.mgrid[0:SIZE[1]:7, 0:SIZE[0]:9]
    rays = np.linalg.solve(K, np.stack([u.ravel(), v.ravel(), np.ones(u.size)]).astype(np.float64)).T
    project = cv2.fisheye.projectPoints if model == "equidistant" else cv2.projectPoints
    if model == "equidistant":
        seen, _ = project(rays[:, None, :], np.zeros(3), np.zeros(3), K, D)
    else:
        seen, _ = project(rays, np.zeros(3), np.zeros(3), K, D)
    seen = seen.reshape(-1, 2)
    np.testing.assert_allclose(map_x[v, u].ravel(), seen[:, 0], atol=2e-3)
    np.testing.assert_allclose(map_y[v, u].ravel(), seen[:, 1], atol=2e-3)
    assert np.abs(map_x[v, u].ravel() - u.ravel()).max() > 1.0  # the lens does move pixels


def _raw_info(D, model="plumb_bob") -> CameraInfo:
    info = CameraInfo(width=SIZE[0], height=SIZE[1], distortion_model=model, d=list(D))
    info.k, info.r = K.reshape(9), np.eye(3).reshape(9)
    return info


def test_raw_frames_are_undistorted_with_tables_kept_per_camera_or_refused():
    rgb = np.random.default_rng(0).integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    D = [-0.3, 0.12, 0.002, -0.001, -0.02]
    frames = PinholeFrames(rectified=False, undistort=True)
    out, K_out = frames(rgb, _raw_info(D), None)
    np.testing.assert_array_equal(K_out, K)  # undistorted to the same K: the camera's own frame
    maps = cv2.initUndistortRectifyMap(K, np.array(D), None, K, SIZE, cv2.CV_32FC1)
    np.testing.assert_array_equal(out, cv2.remap(rgb, *maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT))
    tables = frames._maps
    frames(rgb, _raw_info(D), None)
    assert frames._maps is tables  # same camera: same tables
    frames(rgb, _raw_info([-0.2, 0.0, 0.0, 0.0, 0.0]), None)
    assert frames._maps is not tables
    same, _ = frames(rgb, _raw_info([0.0] * 5), None)
    assert same is rgb  # nothing to undo
    with pytest.raises(InputError, match="refused: set undistort true"):
        PinholeFrames(rectified=False, undistort=False)(rgb, _raw_info(D), None)


def test_pose_messages_round_trip_through_the_core_reader():
    T = pose_at([1.0, -2.0, 0.5], [0.1, -0.4, 2.9])
    pose = pose_msg(T)
    np.testing.assert_allclose(pose_matrix(pose.position, pose.orientation), T, atol=1e-12)
    transform = pose_to_transform_stamped(T, "odom", "base_link", Time(sec=1)).transform
    np.testing.assert_allclose(pose_matrix(transform.translation, transform.rotation), T, atol=1e-12)
    T[:3, :3] *= 2.0
    with pytest.raises(InputError, match="rotation block that is not a rotation"):
        pose_msg(T)


class _Node:
    def create_subscription(self, *args):
        return None


def _tf(parent: str, child: str, T: np.ndarray) -> TransformStamped:
    return pose_to_transform_stamped(T, parent, child, Time())


@pytest.mark.skipif(TFMessage is None, reason="tf2_msgs is not built (scripts/build_tf2_msgs.sh)")
def test_tf_fallback_composes_chains_through_the_nearest_common_ancestor():
    tf = TransformListenerFallback(_Node())
    base_mount = pose_at([0.5, 0.0, 1.2], [0.0, 0.0, 0.1])
    mount_cam = pose_at([0.0, 0.1, 0.0], [-math.pi / 2, 0.2, -math.pi / 2])
    base_imu = pose_at([-0.3, 0.0, 0.2], [0.0, 0.05, 0.0])
    odom_base = pose_at([4.0, 1.0, 0.0], [0.0, 0.0, 0.7])
    tf._store(TFMessage(transforms=[_tf("base_link", "mount", base_mount), _tf("mount", "cam", mount_cam),
                                    _tf("base_link", "imu", base_imu)]))
    tf._store(TFMessage(transforms=[_tf("odom", "base_link", odom_base)]))
    np.testing.assert_allclose(tf.lookup("base_link", "cam"), base_mount @ mount_cam, atol=1e-12)
    np.testing.assert_allclose(tf.lookup("cam", "base_link"), np.linalg.inv(base_mount @ mount_cam), atol=1e-12)
    np.testing.assert_allclose(tf.lookup("imu", "cam"), np.linalg.inv(base_imu) @ base_mount @ mount_cam, atol=1e-12)
    np.testing.assert_allclose(tf.lookup("odom", "cam"), odom_base @ base_mount @ mount_cam, atol=1e-12)
    np.testing.assert_allclose(tf.lookup("cam", "cam"), np.eye(4))
    assert tf.lookup("base_link", "elsewhere") is None and tf.lookup("map", "cam") is None
    assert (tf.parent("cam"), tf.parent("base_link"), tf.parent("odom")) == ("mount", "odom", None)
    # the newest transform of a child wins
    tf._store(TFMessage(transforms=[_tf("base_link", "mount", np.eye(4))]))
    np.testing.assert_allclose(tf.lookup("base_link", "cam"), mount_cam, atol=1e-12)
    # a transform that would close a loop (cam -> odom -> base_link -> mount -> cam) is ignored
    tf._store(TFMessage(transforms=[_tf("cam", "odom", np.eye(4)), _tf("imu", "imu", np.eye(4))]))
    assert (tf.parent("odom"), tf.parent("imu")) == (None, "base_link")
    np.testing.assert_allclose(tf.lookup("odom", "cam"), odom_base @ mount_cam, atol=1e-12)


def test_a_set_pose_origin_carries_the_odometry_and_both_uncertainties():
    step = pose_at([1.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    step_cov = np.diag([1e-4, 2e-4, 3e-4, 1e-6, 2e-6, 3e-6])
    # the identity with no uncertainty changes nothing
    pose, cov = OdomOrigin(np.eye(4), np.zeros((6, 6))).compose(step, step_cov)
    np.testing.assert_allclose(pose, step)
    np.testing.assert_allclose(cov, step_cov)
    # a quarter turn about z: the step goes along y and its x/y variances swap
    origin = pose_at([2.0, -1.0, 0.5], [0.0, 0.0, math.pi / 2])
    pose, cov = OdomOrigin(origin, np.zeros((6, 6))).compose(step, step_cov)
    np.testing.assert_allclose(pose[:3, 3], [2.0, 0.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(np.diag(cov), [2e-4, 1e-4, 3e-4, 2e-6, 1e-6, 3e-6], atol=1e-15)
    # the origin's yaw uncertainty moves a base 1 m ahead of it sideways by the same angle
    yaw = np.zeros((6, 6))
    yaw[5, 5] = 0.01
    _, cov = OdomOrigin(origin, yaw).compose(step, np.zeros((6, 6)))
    np.testing.assert_allclose(np.diag(cov), [0.01, 0.0, 0.0, 0.0, 0.0, 0.01], atol=1e-15)
    np.testing.assert_allclose(cov[0, 5], -0.01, atol=1e-15)  # rotating +yaw moves (0, 1) towards -x
    # first order, checked by sampling small origin errors
    rng = np.random.default_rng(0)
    origin_cov = np.diag([1e-4, 4e-4, 1e-4, 1e-5, 4e-5, 9e-5])
    _, cov = OdomOrigin(origin, origin_cov).compose(step, np.zeros((6, 6)))
    samples = []
    for e in rng.multivariate_normal(np.zeros(6), origin_cov, 20000):
        shifted = origin.copy()  # the origin's rotation and position errors, about the odom axes at the origin
        shifted[:3, :3] = cv2.Rodrigues(e[3:])[0] @ origin[:3, :3]
        shifted[:3, 3] += e[:3]
        samples.append((shifted @ step)[:3, 3])
    np.testing.assert_allclose(np.cov(np.array(samples).T), cov[:3, :3], atol=2e-5)


def _pose_with_covariance(covariance, xyz=(1.0, 2.0, 0.0)) -> PoseWithCovariance:
    msg = PoseWithCovariance()
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = xyz
    msg.pose.orientation.z = msg.pose.orientation.w = 2.0  # any non-zero quaternion: normalised
    msg.covariance = np.asarray(covariance, dtype=np.float64).reshape(36).tolist()
    return msg


def test_a_pose_with_covariance_is_read_checked_as_a_pose_and_a_covariance():
    covariance = np.diag([0.04, 0.04, 0.01, 0.001, 0.001, 0.0025])
    pose, cov = pose_with_covariance(_pose_with_covariance(covariance))
    np.testing.assert_allclose(pose, pose_at([1.0, 2.0, 0.0], [0.0, 0.0, math.pi / 2]), atol=1e-12)
    np.testing.assert_array_equal(cov, covariance)
    off_diagonal = np.zeros((6, 6))
    off_diagonal[0, 1] = off_diagonal[1, 0] = 1e308
    for bad, reason in [(1e308 * np.eye(6), "variance 1e\\+308 of x"), (off_diagonal, "correlation beyond"),
                        (-np.eye(6), "variance -1 of x")]:
        with pytest.raises(InputError, match=f"set_pose covariance.*{reason}"):
            pose_with_covariance(_pose_with_covariance(bad), "set_pose")
    with pytest.raises(InputError, match="set_pose is not finite"):
        pose_with_covariance(_pose_with_covariance(np.eye(6), (math.inf, 0.0, 0.0)), "set_pose")


def test_intrinsics_no_camera_has_are_rejected_where_frames_get_theirs():
    tiny = K.copy()
    tiny[0, 0] = tiny[1, 1] = 1e-300
    info = K_to_camera_info(tiny, *SIZE, Header(frame_id="cam"))
    with pytest.raises(InputError, match="CameraInfo P .*frame_id 'cam'.*focal length fx 1e-300"):
        frame_intrinsics(info, SIZE[::-1], None, rectified=True)
    info.d = [0.1, 0.01, 0.0, 0.0, 0.0]
    with pytest.raises(InputError, match="CameraInfo K .*focal length fx 1e-300"):
        PinholeFrames(rectified=False, undistort=True)(np.zeros((SIZE[1], SIZE[0], 3), np.uint8), info, None)
    # the intrinsics parameter is checked against each image's size, as CameraInfo is
    with pytest.raises(InputError, match="intrinsics parameter.*fx 1e-300"):
        frame_intrinsics(None, SIZE[::-1], tiny)
    np.testing.assert_array_equal(frame_intrinsics(None, SIZE[::-1], K), K)


def test_a_lens_opencv_refuses_is_bad_input_not_a_failure():
    tiny = K.copy()
    tiny[0, 0] = tiny[1, 1] = 1e-300
    with pytest.raises(InputError, match="OpenCV cannot undo plumb_bob distortion.*singular"):
        undistortion_maps(tiny, "plumb_bob", np.array([0.1, 0.01, 0.0, 0.0, 0.0]), SIZE)
