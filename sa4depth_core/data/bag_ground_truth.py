"""Ground truth in ROS 2 bags: a nav_msgs/Odometry topic with a `gt` (or `ground_truth`) name
component, or else `/tf` transforms to a `gt_*` child frame; the `/tf_static` tree that moves it to
a camera; poses interpolated at other stamps."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from transforms3d.axangles import axangle2mat, mat2axangle
from transforms3d.quaternions import quat2mat

from sa4depth_core.data.bag_reader import ODOMETRY_TYPE, TF_TYPE, bag_topics, deserialize
from sa4depth_core.errors import InputError
from sa4depth_core.stamps import stamp_ns

GT_NAME_PARTS = ("gt", "ground_truth")
GT_FRAME_PREFIX = "gt_"
# Ground truth is interpolated between its samples; a frame farther than this from any sample has none.
GT_MAX_EXTRAPOLATION_S = 0.05


def pose_matrix(translation, rotation) -> np.ndarray:
    """(4,4) float64 rigid transform from a Point/Vector3 and a Quaternion (any length > 0)."""
    q = np.array([rotation.w, rotation.x, rotation.y, rotation.z], dtype=np.float64)
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or norm < 1e-9:
        raise InputError(f"quaternion {q.tolist()} (w, x, y, z) is not a rotation")
    T = np.eye(4)
    T[:3, :3] = quat2mat(q / norm)
    T[:3, 3] = (translation.x, translation.y, translation.z)
    return T


class StaticTransforms:
    """The `/tf_static` tree of a bag: child frame -> (parent frame, (4,4) pose of child in parent)."""

    def __init__(self, edges: dict[str, tuple[str, np.ndarray]] | None = None):
        self.edges = dict(edges or {})

    @classmethod
    def from_reader(cls, reader, where: str) -> StaticTransforms:
        """Collect every transform of the reader's TFMessage topics named `/tf_static`."""
        conns = [c for c in reader.connections if c.topic == "/tf_static" and c.msgtype == TF_TYPE]
        edges = {}
        for _, _, raw in reader.messages(conns) if conns else ():
            for t in deserialize(raw, TF_TYPE, f"{where} /tf_static").transforms:
                edges[t.child_frame_id] = (t.header.frame_id, pose_matrix(t.transform.translation, t.transform.rotation))
        return cls(edges)

    def _to_root(self, frame: str) -> OrderedDict:
        """Ancestors of `frame` (itself first) -> (4,4) pose of `frame` in that ancestor."""
        chain = OrderedDict([(frame, np.eye(4))])
        T, f = np.eye(4), frame
        while f in self.edges:
            f, T_parent_f = self.edges[f][0], self.edges[f][1]
            if f in chain:  # a cycle (a broken tree): stop at the first repeated frame
                break
            T = T_parent_f @ T
            chain[f] = T
        return chain

    def lookup(self, parent: str, child: str) -> np.ndarray | None:
        """(4,4) pose of `child` in `parent`, or None when the frames are not connected."""
        up_child, up_parent = self._to_root(child), self._to_root(parent)
        common = next((f for f in up_child if f in up_parent), None)
        if common is None:
            return None
        return np.linalg.inv(up_parent[common]) @ up_child[common]


@dataclass
class Trajectory:
    """Poses of `child_frame_id` in `frame_id`: stamps_ns (N,) int64 increasing, poses (N,4,4) float64."""

    topic: str
    frame_id: str
    child_frame_id: str
    stamps_ns: np.ndarray
    poses: np.ndarray

    @property
    def timestamps(self) -> np.ndarray:
        """(N,) float64 seconds."""
        return self.stamps_ns / 1e9


def _sorted_trajectory(topic: str, frame_id: str, child: str, stamps: list, poses: list) -> Trajectory:
    stamps_arr = np.array(stamps, dtype=np.int64)
    order = np.argsort(stamps_arr, kind="stable")
    keep = np.concatenate([[True], np.diff(stamps_arr[order]) > 0]) if len(order) else np.zeros(0, bool)
    order = order[keep]
    return Trajectory(topic, frame_id, child, stamps_arr[order], np.array(poses).reshape(-1, 4, 4)[order])


def read_odometry(reader, topic: str, where: str) -> Trajectory:
    """All poses of a nav_msgs/Odometry topic, by header stamp (repeated stamps keep the first)."""
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns or any(c.msgtype != ODOMETRY_TYPE for c in conns):
        odom = sorted(t for t, typ in bag_topics(reader).items() if typ == ODOMETRY_TYPE)
        raise InputError(f"{where}: no {ODOMETRY_TYPE} topic {topic!r}; odometry topics: {odom or 'none'}")
    stamps, poses, frames = [], [], set()
    for _, _, raw in reader.messages(conns):
        msg = deserialize(raw, ODOMETRY_TYPE, f"{where} {topic}")
        stamps.append(stamp_ns(msg.header.stamp))
        poses.append(pose_matrix(msg.pose.pose.position, msg.pose.pose.orientation))
        frames.add((msg.header.frame_id, msg.child_frame_id))
    if not stamps:
        raise InputError(f"{where}: odometry topic {topic} has no messages")
    if len(frames) > 1:
        raise InputError(f"{where}: odometry topic {topic} mixes frames {sorted(frames)}")
    (frame_id, child), = frames
    return _sorted_trajectory(topic, frame_id, child, stamps, poses)


def read_tf_trajectory(reader, child_frame: str, where: str, topic: str = "/tf") -> Trajectory:
    """Poses of `child_frame` in its parent from the TFMessage topic `topic`."""
    conns = [c for c in reader.connections if c.topic == topic and c.msgtype == TF_TYPE]
    stamps, poses, parents = [], [], set()
    for _, _, raw in reader.messages(conns) if conns else ():
        for t in deserialize(raw, TF_TYPE, f"{where} {topic}").transforms:
            if t.child_frame_id == child_frame:
                stamps.append(stamp_ns(t.header.stamp))
                poses.append(pose_matrix(t.transform.translation, t.transform.rotation))
                parents.add(t.header.frame_id)
    if not stamps:
        raise InputError(f"{where}: {topic} has no transform to frame {child_frame!r}")
    if len(parents) > 1:
        raise InputError(f"{where}: frame {child_frame} has several parents on {topic}: {sorted(parents)}")
    return _sorted_trajectory(topic, parents.pop(), child_frame, stamps, poses)


def is_ground_truth_topic(topic: str) -> bool:
    """True for names with a `gt` / `ground_truth` component, e.g. `/kitti/gt/odom`."""
    return any(part in GT_NAME_PARTS for part in topic.strip("/").split("/"))


def find_ground_truth(reader, where: str, topic: str | None = None) -> Trajectory | None:
    """The bag's ground-truth trajectory, or None.

    `topic` names an Odometry topic to use. Otherwise: the only Odometry topic with a `gt` /
    `ground_truth` name component, else the only `gt_*` child frame on `/tf`.
    """
    if topic:
        return read_odometry(reader, topic, where)
    odom = [t for t, typ in bag_topics(reader).items() if typ == ODOMETRY_TYPE and is_ground_truth_topic(t)]
    if len(odom) == 1:
        return read_odometry(reader, odom[0], where)
    if len(odom) > 1:
        raise InputError(f"{where}: several ground-truth odometry topics {sorted(odom)}; name one")
    conns = [c for c in reader.connections if c.topic == "/tf" and c.msgtype == TF_TYPE]
    children = set()
    for _, _, raw in reader.messages(conns) if conns else ():
        children.update(t.child_frame_id for t in deserialize(raw, TF_TYPE, f"{where} /tf").transforms
                        if t.child_frame_id.startswith(GT_FRAME_PREFIX))
    if len(children) == 1:
        return read_tf_trajectory(reader, children.pop(), where)
    return None


def interpolate_poses(stamps_ns: np.ndarray, poses: np.ndarray, query_ns: np.ndarray,
                      max_extrapolation_ns: int) -> np.ndarray | None:
    """Poses at query stamps: linear in translation, spherical-linear in rotation.

    Args:
        stamps_ns: (N,) increasing; poses: (N,4,4); query_ns: (M,).
        max_extrapolation_ns: queries up to this far outside [stamps[0], stamps[-1]] take the end pose.
    Returns:
        (M,4,4) float64, or None if a query lies farther outside.
    """
    query_ns = np.asarray(query_ns, np.int64)
    if len(stamps_ns) == 0 or query_ns.min() < stamps_ns[0] - max_extrapolation_ns or \
            query_ns.max() > stamps_ns[-1] + max_extrapolation_ns:
        return None
    out = np.empty((len(query_ns), 4, 4))
    hi = np.clip(np.searchsorted(stamps_ns, query_ns), 1, max(len(stamps_ns) - 1, 1))
    for k, (q, j) in enumerate(zip(query_ns, hi)):
        if len(stamps_ns) == 1 or q <= stamps_ns[0] or q >= stamps_ns[-1]:
            out[k] = poses[0] if q <= stamps_ns[0] else poses[-1]
            continue
        a = (q - stamps_ns[j - 1]) / (stamps_ns[j] - stamps_ns[j - 1])
        out[k] = _blend(poses[j - 1], poses[j], float(a))
    return out


def _blend(A: np.ndarray, B: np.ndarray, a: float) -> np.ndarray:
    """Pose a of the way from A to B (a in [0, 1]): rotation about the fixed axis of A^T B."""
    axis, angle = mat2axangle(A[:3, :3].T @ B[:3, :3], unit_thresh=1e-4)
    T = np.eye(4)
    T[:3, :3] = A[:3, :3] @ axangle2mat(axis, a * angle)
    T[:3, 3] = (1 - a) * A[:3, 3] + a * B[:3, 3]
    return T
