"""(4,4) rigid transforms -> geometry_msgs Pose and TransformStamped: the one conversion every pose
the nodes publish (odom, path, TF) goes through. The way back (a Pose or Transform read from TF or
~/set_pose) is sa4depth_core.data.bag_ground_truth.pose_matrix, which bags use."""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Pose, TransformStamped
from transforms3d.quaternions import mat2quat

from sa4depth_core.errors import InputError


def rigid_parts(T, what: str = "pose") -> tuple[tuple, tuple]:
    """((x, y, z), (qx, qy, qz, qw)) of a (4,4) rigid transform; InputError naming `what` when
    it is not finite or its rotation block is not a rotation."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise InputError(f"{what} must be a finite (4, 4) matrix, got shape {T.shape}")
    R = T[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-4) or np.linalg.det(R) <= 0:
        raise InputError(f"{what} has a rotation block that is not a rotation: {R.tolist()}")
    w, x, y, z = mat2quat(R)
    return tuple(float(v) for v in T[:3, 3]), (float(x), float(y), float(z), float(w))


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
