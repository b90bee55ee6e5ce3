"""PerceptionOutputs: everything perception_node publishes for a frame, each part a stage of its
own in FrameHealth: depth/image with depth/camera_info, depth/color and points while someone
subscribes, the camera's mounting on /tf_static when asked ('outputs'); odom, path and the odom ->
base TF ('odometry'), never with a non-finite number."""
from __future__ import annotations

from collections import deque

import cv2
import numpy as np
from nav_msgs.msg import Odometry, Path
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from sa4depth_core.pipeline_options import pose_from_xyz_rpy
from sa4depth_core.stamps import stamp_seconds

from .camera_info import K_to_camera_info
from .cloud import depth_to_cloud_msg
from .frame_health import FrameHealth
from .image_codec import array_to_msg, colorize_depth, depth_to_msg
from .pose_msgs import pose_msg, pose_to_transform_stamped
from .qos import qos_from_string
from .tf_out import TransformPublisher

# Output topics (relative: they follow the node's namespace and remappings). depth/image and
# depth/camera_info are siblings, as image_transport's camera publishers and subscribers pair them.
TOPICS = {"depth/image": Image, "depth/camera_info": CameraInfo, "depth/color": Image, "points": PointCloud2,
          "odom": Odometry, "path": Path}


def units(metric: bool, scale_mode: str) -> str:
    """What a unit of depth and odometry is (diagnostics key `units`)."""
    if metric:
        return "m"
    if scale_mode == "relative":
        return "network units (scale_mode relative, not metres)"
    return "network units (no ground plane fitted yet, not metres)"


class PerceptionOutputs:
    """Publishers of `node` for settings `s` (qos_output, publish_points, path_max_size; the rest
    is read per frame). `tf_in` (tf_lookup.TransformLookup) tells whether TF already places the
    camera frame; `camera_tf` says what became of the camera's mounting ('off' until asked)."""

    def __init__(self, node, s, tf_in, health: FrameHealth):
        self._node, self._tf_in, self._health = node, tf_in, health
        image_qos, qos = qos_from_string(s.qos_output, depth=2), qos_from_string(s.qos_output, depth=10)
        self._pubs = {name: node.create_publisher(kind, name, image_qos if kind in (Image, PointCloud2) else qos)
                      for name, kind in TOPICS.items() if name != "points" or s.publish_points}
        self.tf = TransformPublisher(node)
        self._path: deque = deque(maxlen=s.path_max_size)
        self._path_stamp: float | None = None  # image time of the last path message
        self._camera_parents: dict[str, str] = {}  # camera frame -> the parent this node published for it
        self.camera_tf = "off"
        self.camera_tf_blocked = False  # TF has another parent for the camera frame

    def restart_path(self, size: int | None = None) -> None:
        """Forget the path (a reset), or keep it with room for `size` poses."""
        if size is None:
            self._path.clear()
            self._path_stamp = None
        elif size != self._path.maxlen:
            self._path = deque(self._path, maxlen=size)

    def depth(self, result, rgb: np.ndarray, header: Header, s) -> bool:
        """Stage 'outputs' of a processed frame (rgb (H,W,3) uint8, the input); True once its depth
        image went out, whatever failed after it."""
        published = False
        try:
            h, w = result.depth.shape
            self._pubs["depth/image"].publish(depth_to_msg(result.depth, header))
            published = True
            self._health.count("frames_published")
            self._pubs["depth/camera_info"].publish(K_to_camera_info(result.K, w, h, header))
            if self._pubs["depth/color"].get_subscription_count():
                self._pubs["depth/color"].publish(array_to_msg(colorize_depth(result.depth), header, "bgr8"))
            points = self._pubs.get("points")
            if points is not None and points.get_subscription_count():
                small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
                points.publish(depth_to_cloud_msg(result.depth, result.K, header, s.points_stride, rgb=small))
            if s.publish_camera_tf:
                self._camera_mounting(s, header)
        except Exception as exc:  # noqa: BLE001 - one frame's outputs must not end the node
            self._health.failed("outputs", exc)
        else:
            self._health.ok("outputs")
        return published

    def _camera_mounting(self, s, header: Header) -> None:
        """base_frame -> camera frame (base_to_camera) on /tf_static, once per frame pair, unless
        TF already has another parent for the camera frame: a frame with two parents breaks TF."""
        camera = header.frame_id
        parent, ours = self._tf_in.parent(camera), self._camera_parents.get(camera)
        self.camera_tf_blocked = parent is not None and parent != ours
        if self.camera_tf_blocked:
            note = f"not published: '{camera}' already has parent '{parent}' in TF"
            if note != self.camera_tf:
                self._node.get_logger().warning(f"publish_camera_tf: {note}; leaving the camera's mounting to it")
            self.camera_tf = note
            return
        if ours != s.base_frame:
            self.tf.send_static(pose_to_transform_stamped(
                pose_from_xyz_rpy(s.base_to_camera), s.base_frame, camera, header.stamp))
            self._camera_parents[camera] = s.base_frame
            self.camera_tf = f"published {s.base_frame} -> {camera}"

    def odometry(self, result, header: Header, s) -> None:
        """Stage 'odometry': odom, path and TF of a processed frame."""
        odo = result.odometry
        if result.odometry_error:
            self._health.failed("odometry", result.odometry_error)  # the pipeline counted it
            return
        if odo is None:
            self._health.ok("odometry")
            return
        if not all(np.isfinite(a).all() for a in (odo.pose, odo.pose_covariance, odo.twist, odo.twist_covariance)):
            self._health.failed("odometry", "non-finite pose, twist or covariance (not published)",
                                "odometry_unpublished")
            return
        try:
            self._publish_odometry(odo, header, s)
        except Exception as exc:  # noqa: BLE001
            self._health.failed("odometry", exc, "odometry_unpublished")
        else:
            self._health.ok("odometry")

    def _publish_odometry(self, odo, header: Header, s) -> None:
        msg = Odometry()
        msg.header = Header(stamp=header.stamp, frame_id=s.odom_frame)
        msg.child_frame_id = s.base_frame
        msg.pose.pose = pose_msg(odo.pose)
        msg.pose.covariance = odo.pose_covariance.reshape(36).tolist()
        msg.twist.twist.linear.x, msg.twist.twist.linear.y, msg.twist.twist.linear.z = (float(v) for v in odo.twist[:3])
        msg.twist.twist.angular.x, msg.twist.twist.angular.y, msg.twist.twist.angular.z = (
            float(v) for v in odo.twist[3:])
        msg.twist.covariance = odo.twist_covariance.reshape(36).tolist()
        self._pubs["odom"].publish(msg)

        self._path.append(PoseStamped(header=msg.header, pose=msg.pose.pose))
        stamp = stamp_seconds(header.stamp)
        # a stamp that went backwards (bag loop, reset) publishes at once
        due = self._path_stamp is None or not 0.0 <= stamp - self._path_stamp < s.path_period
        if due and self._pubs["path"].get_subscription_count():
            self._pubs["path"].publish(Path(header=msg.header, poses=list(self._path)))
            self._path_stamp = stamp
        if s.publish_tf:
            self.tf.send(pose_to_transform_stamped(odo.pose, s.odom_frame, s.base_frame, header.stamp))
