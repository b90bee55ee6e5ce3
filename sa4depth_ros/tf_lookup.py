"""Read TF: where a frame is in another one, and who a frame's parent is.

tf2_ros's Buffer and TransformListener when installed; pip-only environments have no tf2_ros, so
`TransformListenerFallback` keeps the newest transform of each frame from /tf and /tf_static
(tf2_msgs, built locally) in the core's transform tree (the one bag readers use), which composes
the chain through the nearest common ancestor. It does not interpolate in time: the perception
node reads the camera's mounting, which is static or slow. Without tf2_msgs either, every lookup
answers None.
"""
from __future__ import annotations

import threading

import numpy as np
import yaml
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time

from sa4depth_core.data.bag_ground_truth import StaticTransforms, pose_matrix
from sa4depth_core.errors import InputError

from .tf_out import TF_QOS, TFMessage

try:
    from tf2_ros import Buffer, TransformException, TransformListener
except ImportError:
    Buffer = TransformException = TransformListener = None

# tf2_ros listens to /tf_static with this profile: a late joiner gets every static transform.
TF_STATIC_LISTENER_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST,
                                    reliability=ReliabilityPolicy.RELIABLE,
                                    durability=DurabilityPolicy.TRANSIENT_LOCAL)


class TransformListenerFallback:
    """The newest parent and transform of every child frame on /tf and /tf_static; a transform
    that would close a loop in the tree (a broken or hostile publisher) is ignored."""

    def __init__(self, node):
        self._lock = threading.Lock()
        self._tree = StaticTransforms()  # edges: child -> (parent, T_parent_child)
        self._subs = [node.create_subscription(TFMessage, "/tf", self._store, TF_QOS),
                      node.create_subscription(TFMessage, "/tf_static", self._store, TF_STATIC_LISTENER_QOS)]

    def _store(self, msg) -> None:
        for t in msg.transforms:
            try:
                T = pose_matrix(t.transform.translation, t.transform.rotation)
            except InputError:
                continue  # a broken transform is no transform
            if np.isfinite(T).all():
                with self._lock:
                    if not self._closes_a_loop(t.header.frame_id, t.child_frame_id):
                        self._tree.edges[t.child_frame_id] = (t.header.frame_id, T)

    def _closes_a_loop(self, parent: str, child: str) -> bool:
        """Whether `child` is `parent` or one of its ancestors (under the lock). The tree is kept
        free of loops, so this walk ends, and so does every walk of the tree's lookup."""
        edges = self._tree.edges
        while parent != child and parent in edges:
            parent = edges[parent][0]
        return parent == child

    def parent(self, frame: str) -> str | None:
        with self._lock:
            entry = self._tree.edges.get(frame)
        return entry[0] if entry else None

    def lookup(self, target: str, source: str) -> np.ndarray | None:
        """(4,4) pose of frame `source` in frame `target`, or None when TF does not connect them."""
        with self._lock:
            tree = StaticTransforms(self._tree.edges)
        return tree.lookup(target, source)


class _Tf2Lookup:
    """tf2_ros's Buffer behind the fallback's interface."""

    def __init__(self, node):
        self._buffer = Buffer()
        self._listener = TransformListener(self._buffer, node, spin_thread=False)

    def parent(self, frame: str) -> str | None:
        frames = yaml.safe_load(self._buffer.all_frames_as_yaml()) or {}
        return frames.get(frame, {}).get("parent")

    def lookup(self, target: str, source: str) -> np.ndarray | None:
        try:
            transform = self._buffer.lookup_transform(target, source, Time()).transform
        except TransformException:
            return None
        return pose_matrix(transform.translation, transform.rotation)


class TransformLookup:
    """`lookup(target, source)`: (4,4) newest pose of frame `source` in frame `target` from TF, or
    None; `parent(frame)`: the frame's parent in TF, or None. backend is 'tf2_ros', 'tf2_msgs'
    (TransformListenerFallback) or None (no TF input: every answer is None)."""

    def __init__(self, node):
        if Buffer is not None:
            self.backend, self._impl = "tf2_ros", _Tf2Lookup(node)
        elif TFMessage is not None:
            self.backend, self._impl = "tf2_msgs", TransformListenerFallback(node)
        else:
            self.backend, self._impl = None, None

    def lookup(self, target: str, source: str) -> np.ndarray | None:
        return self._impl.lookup(target, source) if self._impl else None

    def parent(self, frame: str) -> str | None:
        return self._impl.parent(frame) if self._impl else None
