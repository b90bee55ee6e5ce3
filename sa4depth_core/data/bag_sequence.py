"""ROS 2 bags (sqlite3 or mcap, read with rosbags, no ROS install) as frame sequences.

`BagImageSequence` indexes one image topic (sensor_msgs/Image or CompressedImage) in a single
pass, keeping only each frame's header stamp and bag time; `image(i)` then fetches that one
message through the storage's time index (sqlite3: the timestamp index; mcap: the chunk index)
and decodes it, with a small cache of decoded frames, so training samples triplets straight
from the bag. Frames are ordered by header stamp, which is also what `timestamp(i)` returns.

Ground truth, when the bag has it (bag_ground_truth.find_ground_truth), is moved to the camera
with the extrinsics in `/tf_static` (a `gt_X` body frame is looked up as `X`).
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from sa4depth_core.data.bag_ground_truth import (
    GT_FRAME_PREFIX,
    GT_MAX_EXTRAPOLATION_S,
    StaticTransforms,
    find_ground_truth,
    interpolate_poses,
)
from sa4depth_core.data.bag_reader import (
    CAMERA_INFO_TYPE,
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    CheckedReader,
    bag_topics,
    deserialize,
    open_bag,
)
from sa4depth_core.data.image_folder import load_intrinsics
from sa4depth_core.data.image_msg import (
    UnsupportedImage,
    compressed_to_rgb,
    image_to_rgb,
)
from sa4depth_core.data.sequence import FixedCameraSequence, FrameSequence
from sa4depth_core.errors import InputError
from sa4depth_core.stamps import stamp_ns

log = logging.getLogger(__name__)


def _pinhole_K(values, where: str) -> np.ndarray:
    """(3,3) K from 9 numbers, checked: not all zero, fx, fy > 0, last row 0 0 1."""
    k = np.asarray(values, dtype=np.float64).ravel()
    if k.size != 9 or not np.any(k):
        raise InputError(f"{where}: K must be 9 numbers, not all zero (is the camera calibrated?); pass --intrinsics")
    K = k.reshape(3, 3)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], (0, 0, 1)):
        raise InputError(f"{where}: K {K.tolist()} is not a pinhole matrix (fx, fy > 0, last row 0 0 1)")
    return K


class BagImageSequence(FixedCameraSequence):
    """One image topic of a ROS 2 bag as a FrameSequence.

    Args:
        bag: bag directory or single .db3/.mcap file.
        image_topic: Image or CompressedImage topic; None picks the only one (an error lists them
            when there are several).
        camera_info_topic: CameraInfo topic; None takes `<image topic's parent>/camera_info`, or
            the bag's only CameraInfo topic.
        intrinsics: an intrinsics file (see image_folder) or (3,3) K used instead of CameraInfo.
        gt_topic: ground-truth Odometry topic; None searches as `find_ground_truth` does.
        cache_frames: decoded frames kept in memory (neighbouring triplets share frames).

    Frames with a repeated stamp are dropped; if any header stamp is 0 (an unstamped driver) the
    bag's receive times order and stamp the frames instead. `pose(i)` is camera-to-world of
    the image's frame_id when the bag has ground truth reachable from that frame
    (`has_poses`; `gt_note` says why not).
    """

    def __init__(self, bag: str | Path, image_topic: str | None = None, camera_info_topic: str | None = None,
                 intrinsics: str | Path | np.ndarray | None = None, gt_topic: str | None = None,
                 cache_frames: int = 8):
        self.bag = Path(bag)
        self._cache: OrderedDict = OrderedDict()
        self._cache_frames = max(int(cache_frames), 0)
        self._reader_pid, self._reader_obj = None, None
        self._stale_readers: list = []
        with open_bag(self.bag) as reader:
            topics = bag_topics(reader)
            self.topic, self.msgtype = self._pick_image_topic(topics, image_topic)
            self.name = f"bag/{self.bag.name}{self.topic}"
            self._index(reader)
            self._hw = self._decode(self._fetch(reader, 0), 0).shape[:2]
            self._K = self._load_intrinsics(reader, topics, camera_info_topic, intrinsics)
            self._poses, self.gt_note = self._load_ground_truth(reader, gt_topic)
        self.has_poses = self._poses is not None

    # ------------------------------------------------------------------ setup
    def _pick_image_topic(self, topics: dict, wanted: str | None) -> tuple[str, str]:
        images = {t: typ for t, typ in topics.items() if typ in (IMAGE_TYPE, COMPRESSED_TYPE)}
        if wanted:
            if wanted not in images:
                raise InputError(f"{self.bag}: no image topic {wanted!r}; image topics: {sorted(images) or 'none'}")
            return wanted, images[wanted]
        if len(images) == 1:
            return next(iter(images.items()))
        if not images:
            raise InputError(f"{self.bag}: no {IMAGE_TYPE} or {COMPRESSED_TYPE} topic; topics: {sorted(topics)}")
        raise InputError(f"{self.bag}: several image topics {sorted(images)}; choose one with --image-topic")

    def _index(self, reader) -> None:
        bag_ns, stamps = [], []
        self.frame_id = ""
        for _, t, raw in reader.messages(self._connections(reader)):
            msg = deserialize(raw, self.msgtype, f"{self.bag} {self.topic}")
            bag_ns.append(t)
            stamps.append(stamp_ns(msg.header.stamp))
            self.frame_id = self.frame_id or msg.header.frame_id
        if not stamps:
            raise InputError(f"{self.bag}: image topic {self.topic} has no messages")
        bag_ns, stamps = np.array(bag_ns, np.int64), np.array(stamps, np.int64)
        self.stamp_source = "header"
        if np.any(stamps == 0):
            log.warning("%s: some %s header stamps are 0; using the bag's receive times", self.bag, self.topic)
            stamps, self.stamp_source = bag_ns.copy(), "bag"
        order = np.argsort(stamps, kind="stable")
        keep = np.concatenate([[True], np.diff(stamps[order]) > 0])
        self.dropped_duplicates = int(np.count_nonzero(~keep))
        self._bag_ns, self.stamps_ns = bag_ns[order[keep]], stamps[order[keep]]
        self._times = self.stamps_ns / 1e9

    def _load_intrinsics(self, reader, topics: dict, info_topic: str | None, intrinsics) -> np.ndarray:
        h, w = self._hw
        if isinstance(intrinsics, np.ndarray):
            self.camera_info_topic = None
            return _pinhole_K(intrinsics, "intrinsics array")
        if intrinsics:
            K, declared = load_intrinsics(intrinsics)
            if declared is not None and declared != (h, w):
                raise InputError(f"{intrinsics} is for {declared[1]}x{declared[0]} images but {self.topic} in "
                                 f"{self.bag} is {w}x{h}")
            self.camera_info_topic = None
            return K
        infos = sorted(t for t, typ in topics.items() if typ == CAMERA_INFO_TYPE)
        sibling = self.topic.removesuffix("/compressed").rsplit("/", 1)[0] + "/camera_info"
        if info_topic:
            if info_topic not in infos:
                raise InputError(f"{self.bag}: no CameraInfo topic {info_topic!r}; CameraInfo topics: {infos or 'none'}")
        elif sibling in infos:
            info_topic = sibling
        elif len(infos) == 1:
            info_topic = infos[0]
        else:
            raise InputError(f"{self.bag}: cannot tell which CameraInfo belongs to {self.topic} (CameraInfo topics: "
                             f"{infos or 'none'}); pass --camera-info-topic or --intrinsics")
        where = f"{self.bag} {info_topic}"
        conns = [c for c in reader.connections if c.topic == info_topic]
        first = next(iter(reader.messages(conns)), None)
        if first is None:
            raise InputError(f"{where}: CameraInfo topic has no messages; pass --intrinsics")
        msg = deserialize(first[2], CAMERA_INFO_TYPE, where)
        K = _pinhole_K(msg.k, f"{where} CameraInfo")
        if (msg.width, msg.height) != (0, 0) and (msg.height, msg.width) != (h, w):
            raise InputError(f"{where}: CameraInfo is for {msg.width}x{msg.height} images but {self.topic} is {w}x{h}")
        if np.any(np.abs(np.asarray(msg.d, np.float64)) > 1e-9):
            log.warning("%s: the camera has lens distortion %s; frames are used as if undistorted", where,
                        np.asarray(msg.d).tolist())
        self.camera_info_topic = info_topic
        return K

    def _load_ground_truth(self, reader, gt_topic: str | None) -> tuple[np.ndarray | None, str]:
        where = str(self.bag)
        traj = find_ground_truth(reader, where, gt_topic)
        if traj is None:
            return None, "no ground-truth odometry topic or gt_* frame on /tf"
        body = traj.child_frame_id
        static = StaticTransforms.from_reader(reader, where)
        T_body_cam = np.eye(4) if body == self.frame_id else static.lookup(body, self.frame_id)
        if T_body_cam is None and body.startswith(GT_FRAME_PREFIX):
            T_body_cam = static.lookup(body[len(GT_FRAME_PREFIX):], self.frame_id)
        if T_body_cam is None:
            return None, f"/tf_static does not connect the ground-truth frame {body} to the camera frame {self.frame_id}"
        poses = interpolate_poses(traj.stamps_ns, traj.poses, self.stamps_ns, int(GT_MAX_EXTRAPOLATION_S * 1e9))
        if poses is None:
            return None, f"ground truth on {traj.topic} does not cover every frame of {self.topic}"
        return poses @ T_body_cam, f"from {traj.topic} ({body} -> {self.frame_id})"

    # ------------------------------------------------------------------ access
    def _connections(self, reader) -> list:
        return [c for c in reader.connections if c.topic == self.topic]

    def _reader(self):
        """An open reader owned by this process (a forked DataLoader worker opens its own)."""
        if self._reader_pid != os.getpid():
            if self._reader_obj is not None:
                # the parent's reader shares file handles with it; closing here could disturb the parent
                self._stale_readers.append(self._reader_obj)
            self._reader_obj = CheckedReader(self.bag)
            self._reader_pid = os.getpid()
        return self._reader_obj

    def _fetch(self, reader, i: int) -> bytes:
        t = int(self._bag_ns[i])
        for _, _, raw in reader.messages(self._connections(reader), start=t, stop=t + 1):
            msg_stamp = t if self.stamp_source == "bag" else \
                stamp_ns(deserialize(raw, self.msgtype, f"{self.bag} {self.topic}").header.stamp)
            if msg_stamp == self.stamps_ns[i]:
                return raw
        raise InputError(f"{self.bag}: frame {i} of {self.topic} (bag time {t} ns) is gone; was the bag changed?")

    def _decode(self, raw: bytes, i: int) -> np.ndarray:
        msg = deserialize(raw, self.msgtype, f"{self.bag} {self.topic}")
        try:
            return compressed_to_rgb(msg) if self.msgtype == COMPRESSED_TYPE else image_to_rgb(msg)
        except UnsupportedImage as exc:
            raise UnsupportedImage(f"{self.bag} {self.topic} frame {i}: {exc}") from None

    def image(self, i: int) -> np.ndarray:
        self._check_index(i)
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i].copy()
        rgb = self._decode(self._fetch(self._reader(), i), i)
        if rgb.shape[:2] != self._hw:
            raise InputError(f"{self.bag} {self.topic} frame {i} is {rgb.shape[1]}x{rgb.shape[0]} but the first "
                             f"frame is {self._hw[1]}x{self._hw[0]}")
        if self._cache_frames:
            self._cache[i] = rgb
            if len(self._cache) > self._cache_frames:
                self._cache.popitem(last=False)
        return rgb.copy() if self._cache_frames else rgb

    def pose(self, i: int) -> np.ndarray | None:
        self._check_index(i)
        return None if self._poses is None else self._poses[i].copy()

    def close(self) -> None:
        """Close this process's reader (it reopens on the next `image` call)."""
        if self._reader_obj is not None and self._reader_pid == os.getpid():
            self._reader_obj.close()
        self._reader_obj, self._reader_pid = None, None
        self._cache.clear()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_reader_obj=None, _reader_pid=None, _stale_readers=[], _cache=OrderedDict())
        return state


def open_bag_sequences(bag: str | Path, image_topic: str | None = None, camera_info_topic: str | None = None,
                       intrinsics: str | Path | None = None) -> list[FrameSequence]:
    """Frame sequences for training/evaluation from bags.

    Args:
        bag: one bag, or several separated by commas (each gives one sequence).
        image_topic, camera_info_topic, intrinsics: as for BagImageSequence (empty = automatic).
    """
    paths = [p.strip() for p in str(bag).split(",") if p.strip()]
    if not paths:
        raise InputError("data.kind=bag needs data.bag (a bag directory or .mcap/.db3 file)")
    return [BagImageSequence(p, image_topic or None, camera_info_topic or None, intrinsics or None) for p in paths]
