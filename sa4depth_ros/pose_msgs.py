"""(4,4) rigid transforms -> geometry_msgs Pose and TransformStamped: the one conversion every pose
the nodes publish (odom, path, TF) goes through. The way back (a Pose or Transform read from TF or
~/set_pose) is sa4depth_core.data.bag_ground_truth.pose_matrix, which bags use; a
PoseWithCovariance coming in is read, and checked as a pose and a covariance, by
`pose_with_covariance`."""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Pose, TransformStamped
from transforms3d.quaternions import mat2quat

from sa4depth_core.data.bag_ground_truth import pose_matrix
from sa4depth_core.input_checks import check_covariance, check_rigid_transform


def rigid_parts(T, what: str = "pose") -> tuple[tuple, tuple]:
    """((x, y, z), (qx, qy, qz, qw)) of a (4,4) rigid transform; InputError naming `what` when
    it is not one (sa4depth_core.input_checks.check_rigid_transform)."""
    T = check_rigid_transform(T, what)
    w, x, y, z = mat2quat(T[:3, :3])
    return tuple(float(v) for v in T[:3, 3]), (float(x), float(y), float(z), float(w))


def pose_with_covariance(msg, what: str = "pose") -> tuple[np.ndarray, np.ndarray]:
    """The pose and covariance of a geometry_msgs/PoseWithCovariance, both checked: a finite pose
    (any non-zero quaternion, normalised) and a covariance that is one (the core's
    check_covariance: finite, bounded, symmetric, positive semi-definite); InputError naming `what`
    and the reason otherwise.

    Returns:
        (4, 4) float64 pose; (6, 6) float64 covariance of x, y, z, rotation about x, y, z.
    """
    pose = check_rigid_transform(pose_matrix(msg.pose.position, msg.pose.orientation), what)
    return pose, check_covariance(np.reshape(np.asarray(msg.covariance, dtype=np.float64), (6, 6)),
                                  f"{what} covariance")


def pose_msg(T: np.ndarray) -> Pose:
    """geometry_msgs/Pose of a (4,4) transform."""
    (px, py, pz), (qx, qy, qz, qw) = rigid_parts(T)
    msg = Pose()
    msg.position.x, msg.position.y, msg.position.z = px, py, pz
    msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w = qx, qy, qz, qw
    return msg


def pose_to_transform_stamped(T: np.ndarray, parent: str, child: str, stamp) -> TransformStamped:
    """TransformStamped for the pose of frame `child` in frame `parent`.

    Args:
        T: (4, 4) rigid transform mapping points in `child` coordinates to `parent` coordinates.
        stamp: builtin_interfaces/Time or rclpy.time.Time.
    """
    (px, py, pz), (qx, qy, qz, qw) = rigid_parts(T, f"pose {parent} -> {child}")
    msg = TransformStamped()
    msg.header.stamp = stamp.to_msg() if hasattr(stamp, "to_msg") else stamp
    msg.header.frame_id = parent
    msg.child_frame_id = child
    t, q = msg.transform.translation, msg.transform.rotation
    t.x, t.y, t.z = px, py, pz
    q.x, q.y, q.z, q.w = qx, qy, qz, qw
    return msg
