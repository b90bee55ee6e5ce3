"""Publish TF: tf2_ros broadcasters when installed, else TFMessage on /tf and /tf_static directly.

pip-only environments have no tf2_ros; tf2_msgs can be built locally (scripts/build_tf2_msgs.sh).
Without either, TF output is switched off with one warning instead of failing the node.
Transforms are built by pose_msgs.pose_to_transform_stamped.
"""
from __future__ import annotations

from geometry_msgs.msg import TransformStamped
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

try:
    from tf2_ros import StaticTransformBroadcaster, TransformBroadcaster
except ImportError:
    StaticTransformBroadcaster = TransformBroadcaster = None
try:
    from tf2_msgs.msg import TFMessage
except ImportError:
    TFMessage = None

# Same profiles as tf2_ros' broadcasters, so listeners from a real ROS install connect.
TF_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _as_list(transforms) -> list:
    return [transforms] if isinstance(transforms, TransformStamped) else list(transforms)


class _TopicSender:
    """Fallback for a tf2_ros broadcaster: publishes a TFMessage on one topic."""

    def __init__(self, node, topic: str, qos: QoSProfile):
        self._pub = node.create_publisher(TFMessage, topic, qos)

    def sendTransform(self, transforms: list) -> None:
        self._pub.publish(TFMessage(transforms=transforms))


class TransformPublisher:
    """Sends dynamic and static transforms of one node.

    backend is 'tf2_ros', 'tf2_msgs' (fallback publishing TFMessage itself) or None (TF off).
    Static transforms accumulate by child frame and are re-sent together, because /tf_static keeps
    only the last message for late subscribers.
    """

    def __init__(self, node):
        self._node = node
        self._static: dict[str, TransformStamped] = {}
        self._static_sender = None
        self._warned = False
        if TransformBroadcaster is not None:
            self.backend = "tf2_ros"
            self._sender = TransformBroadcaster(node)
        elif TFMessage is not None:
            self.backend = "tf2_msgs"
            self._sender = _TopicSender(node, "/tf", TF_QOS)
        else:
            self.backend = None
            self._sender = None

    def _available(self) -> bool:
        if self.backend is None and not self._warned:
            self._node.get_logger().warning(
                "TF output is unavailable: neither tf2_ros nor tf2_msgs can be imported "
                "(install ROS 2 tf2_ros, or build tf2_msgs with scripts/build_tf2_msgs.sh); no transforms are sent"
            )
            self._warned = True
        return self.backend is not None

    def send(self, transforms) -> None:
        """Publish one TransformStamped or a list of them on /tf."""
        if self._available():
            self._sender.sendTransform(_as_list(transforms))

    def send_static(self, transforms) -> None:
        """Publish one or more static transforms on /tf_static (with all earlier static ones)."""
        if not self._available():
            return
        for t in _as_list(transforms):
            self._static[t.child_frame_id] = t
        if self._static_sender is None:
            self._static_sender = (StaticTransformBroadcaster(self._node) if self.backend == "tf2_ros"
                                   else _TopicSender(self._node, "/tf_static", TF_STATIC_QOS))
        self._static_sender.sendTransform(list(self._static.values()))
