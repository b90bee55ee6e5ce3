"""`sa4depth-kitti2bag`: KITTI raw drives and odometry sequences -> ROS 2 bags (rosbags, no ROS needed).

    sa4depth-kitti2bag KITTI/2011_09_26/2011_09_26_drive_0002_sync bags/drive_0002 --velodyne
    sa4depth-kitti2bag KITTI/odometry/dataset/sequences/09 bags/seq09 --storage mcap --cameras 0,1,2,3
    sa4depth-kitti2bag KITTI/odometry/dataset/sequences/09 bags/seq09_humble --ros-distro humble

Topics, frames and conventions are listed in docs/bags.md. The bag is written into a hidden
temporary directory next to the target and renamed into place only when complete, so an
interrupted run never leaves a bag that looks finished.
"""
from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import StoragePlugin, Writer
from tqdm import tqdm
from transforms3d.quaternions import mat2quat

from sa4depth_core.data.bag_reader import BAG_TYPESTORE
from sa4depth_core.data.kitti_recording import (
    BASE_FRAME,
    CAMERA_NAMES,
    ODOMETRY_EPOCH_S,
    VELO_FRAME,
    CameraModel,
    CameraStream,
    KittiRecording,
    load_kitti,
    load_velodyne_scan,
)
from sa4depth_core.errors import InputError
from sa4depth_core.stamps import sec_nanosec

GT_WORLD_FRAME = "gt_world"
GT_BASE_FRAME = "gt_base_link"
VELO_TOPIC = "/kitti/velo/pointcloud"
GT_ODOM_TOPIC = "/kitti/gt/odom"
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
STORAGES = ("sqlite3", "mcap")
# Humble's rosbag2 reads offered_qos_profiles as a YAML string (metadata v8 and older); Jazzy and
# later write v9, a YAML list that Humble rejects ("yaml-cpp: bad conversion").
METADATA_VERSION = {"humble": 8, "jazzy": 9, "kilted": 9}

_DEFAULTS = {"deadline": QosTime(0, 0), "lifespan": QosTime(0, 0), "liveliness": QosLiveliness.AUTOMATIC,
             "liveliness_lease_duration": QosTime(0, 0), "avoid_ros_namespace_conventions": False}
STREAM_QOS = Qos(history=QosHistory.KEEP_LAST, depth=10, reliability=QosReliability.RELIABLE,
                 durability=QosDurability.VOLATILE, **_DEFAULTS)
LATCHED_QOS = Qos(history=QosHistory.KEEP_LAST, depth=1, reliability=QosReliability.RELIABLE,
                  durability=QosDurability.TRANSIENT_LOCAL, **_DEFAULTS)


def image_topic(camera: int, compressed: bool = False) -> str:
    """Topic of KITTI camera 0..3, e.g. `/kitti/camera_color_left/image_raw` (+ `/compressed`)."""
    return f"/kitti/{CAMERA_NAMES[camera]}/image_raw" + ("/compressed" if compressed else "")


def camera_info_topic(camera: int) -> str:
    """CameraInfo topic of KITTI camera 0..3."""
    return f"/kitti/{CAMERA_NAMES[camera]}/camera_info"


@dataclass
class ConversionResult:
    """What `convert` wrote: bag directory, metadata version, messages per topic, wall seconds."""

    path: Path
    storage: str
    version: int
    counts: dict
    frames: int
    seconds: float
    notes: list


# ----------------------------------------------------------------------------------------------
# ROS messages (rosbags classes)

_T = BAG_TYPESTORE.types


def _header(stamp_ns: int, frame_id: str):
    sec, nanosec = sec_nanosec(stamp_ns)
    return _T["std_msgs/msg/Header"](stamp=_T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                     frame_id=frame_id)


def _vector(v):
    return _T["geometry_msgs/msg/Vector3"](x=float(v[0]), y=float(v[1]), z=float(v[2]))


def _quaternion(R: np.ndarray):
    w, x, y, z = mat2quat(R)
    return _T["geometry_msgs/msg/Quaternion"](x=float(x), y=float(y), z=float(z), w=float(w))


def _transform_stamped(T: np.ndarray, parent: str, child: str, stamp_ns: int):
    transform = _T["geometry_msgs/msg/Transform"](translation=_vector(T[:3, 3]), rotation=_quaternion(T[:3, :3]))
    return _T["geometry_msgs/msg/TransformStamped"](header=_header(stamp_ns, parent), child_frame_id=child,
                                                    transform=transform)


def camera_info_msg(model: CameraModel, stamp_ns: int, frame_id: str):
    """sensor_msgs/CameraInfo (rosbags class) with the model's K, D (plumb_bob), R, P and size."""
    roi = _T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _T["sensor_msgs/msg/CameraInfo"](
        header=_header(stamp_ns, frame_id), height=model.height, width=model.width, distortion_model="plumb_bob",
        d=np.asarray(model.D, np.float64).ravel(), k=np.asarray(model.K, np.float64).ravel(),
        r=np.asarray(model.R, np.float64).ravel(), p=np.asarray(model.P, np.float64).ravel(),
        binning_x=0, binning_y=0, roi=roi)


def _image_msg(stream: CameraStream, i: int, compressed: bool):
    path = stream.files[i]
    header = _header(stream.stamps_ns[i], CAMERA_NAMES[stream.camera])
    if compressed:
        encoding = "mono8" if stream.grey else "bgr8"
        kind = "jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "png"
        return _T["sensor_msgs/msg/CompressedImage"](header=header, format=f"{encoding}; {kind} compressed {encoding}",
                                                     data=np.fromfile(path, np.uint8))
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if stream.grey else cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"frame {path} {'is missing' if not path.is_file() else 'cannot be decoded as an image'}")
    if img.shape[:2] != (stream.model.height, stream.model.width):
        raise InputError(f"frame {path} is {img.shape[1]}x{img.shape[0]} but the camera is "
                         f"{stream.model.width}x{stream.model.height}")
    channels = 1 if stream.grey else 3
    return _T["sensor_msgs/msg/Image"](header=header, height=img.shape[0], width=img.shape[1],
                                       encoding="mono8" if stream.grey else "bgr8", is_bigendian=0,
                                       step=img.shape[1] * channels, data=img.reshape(-1))


def _cloud_msg(path: Path, stamp_ns: int):
    points = np.ascontiguousarray(load_velodyne_scan(path), dtype="<f4")
    field_cls, f32 = _T["sensor_msgs/msg/PointField"], _T["sensor_msgs/msg/PointField"].FLOAT32
    fields = [field_cls(name=name, offset=4 * k, datatype=f32, count=1)
              for k, name in enumerate(("x", "y", "z", "intensity"))]
    return _T["sensor_msgs/msg/PointCloud2"](header=_header(stamp_ns, VELO_FRAME), height=1, width=len(points),
                                             fields=fields, is_bigendian=False, point_step=16,
                                             row_step=16 * len(points), data=points.view(np.uint8).reshape(-1),
                                             is_dense=True)


def _odometry_msg(T: np.ndarray, stamp_ns: int):
    pose = _T["geometry_msgs/msg/Pose"](position=_T["geometry_msgs/msg/Point"](x=float(T[0, 3]), y=float(T[1, 3]),
                                                                              z=float(T[2, 3])),
                                        orientation=_quaternion(T[:3, :3]))
    twist = _T["geometry_msgs/msg/Twist"](linear=_vector(np.zeros(3)), angular=_vector(np.zeros(3)))
    return _T["nav_msgs/msg/Odometry"](
        header=_header(stamp_ns, GT_WORLD_FRAME), child_frame_id=GT_BASE_FRAME,
        pose=_T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
        twist=_T["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=np.zeros(36)))


def _tf_msg(transforms: list):
    return _T["tf2_msgs/msg/TFMessage"](transforms=transforms)


# ----------------------------------------------------------------------------------------------
# Writing


def _refuse_overlap(out: Path, inputs) -> None:
    """InputError if the bag directory `out` is, contains or lies inside one of the `inputs`
    (directories read from): replacing it would delete the data being converted."""
    target = out.resolve()
    for source in dict.fromkeys(Path(p).resolve() for p in inputs):
        if target == source or target in source.parents or source in target.parents:
            relation = "is" if target == source else "contains" if target in source.parents else "is inside"
            raise InputError(f"the bag {out} {relation} the source {source}; write the bag elsewhere "
                             "(nothing was changed)")


@contextlib.contextmanager
def _atomic_directory(out: Path, overwrite: bool):
    """Yield a path inside a hidden sibling directory; move it to `out` only if the block succeeds.

    OSError naming `out` when the bag cannot be written (a full disk: OSError ENOSPC, or sqlite3's
    "database or disk is full") or put in place (`out` busy); either way no partial bag is left
    and an `out` being replaced is kept as it was.
    """
    out = out.absolute()
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; choose another output or pass --overwrite")
    if os.path.ismount(out):
        # rename(2) cannot move a mount point (EBUSY): refuse before converting anything
        raise InputError(f"{out} is a mount point, which a bag cannot replace; write the bag inside it, "
                         f"e.g. {out / 'bag'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as exc:
        raise InputError(f"cannot create a temporary directory next to {out}: {exc.strerror}") from exc
    aside = staging / "replaced"
    try:
        yield staging / out.name
        _swap_in(staging / out.name, out, aside)
    except (OSError, sqlite3.Error) as exc:
        raise OSError(f"cannot write the bag {out}: {_reason(exc)}; no partial bag was left") from exc
    finally:
        # an old bag stranded aside (it could not be put back) must outlive the staging directory
        if not os.path.lexists(aside) or os.path.lexists(out):
            shutil.rmtree(staging, ignore_errors=True)


def _swap_in(new: Path, out: Path, aside: Path) -> None:
    """Rename `new` to `out`. An existing `out` is first moved to `aside`, and moved back if `new`
    cannot take its place, so that a failure leaves the old bag where it was."""
    if not os.path.lexists(out):
        os.rename(new, out)
        return
    os.rename(out, aside)
    try:
        os.rename(new, out)
    except OSError as exc:
        try:
            os.rename(aside, out)
        except OSError:
            raise OSError(exc.errno, f"{exc.strerror}, and the bag it replaces is now {aside}") from exc
        raise


def _reason(exc: OSError | sqlite3.Error) -> str:
    """Why writing failed, in a few words, with the file the system named if any."""
    if not isinstance(exc, OSError) or not exc.strerror:
        return str(exc) or type(exc).__name__
    return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror


def _events(rec: KittiRecording):
    """(stamp_ns, order, kind, stream, index) of every timed message, in time order."""
    streams = [[(int(t), k, "image", cam, i) for i, t in enumerate(cam.stamps_ns)] for k, cam in enumerate(rec.cameras)]
    if rec.velo_files:
        streams.append([(int(t), len(rec.cameras), "cloud", None, i) for i, t in enumerate(rec.velo_stamps_ns)])
    if rec.gt_poses is not None:
        streams.append([(int(t), len(rec.cameras) + 1, "gt", None, i) for i, t in enumerate(rec.gt_stamps_ns)])
    return heapq.merge(*streams, key=lambda e: (e[0], e[1], e[4]))


def write_bag(rec: KittiRecording, out: str | Path, storage: str = "sqlite3", ros_distro: str = "jazzy",
              compressed: bool = False, overwrite: bool = False, progress: bool = False) -> ConversionResult:
    """Write a collected recording as a ROS 2 bag directory `out` (atomically).

    Args:
        storage: 'sqlite3' (.db3, readable by every distro's default plugin) or 'mcap'.
        ros_distro: 'humble' writes metadata version 8 (Humble's QoS string format), 'jazzy' and
            'kilted' version 9.
        compressed: images as sensor_msgs/CompressedImage holding the source PNG/JPEG bytes.
    """
    if storage not in STORAGES:
        raise InputError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    if ros_distro not in METADATA_VERSION:
        raise InputError(f"ros_distro must be one of {', '.join(METADATA_VERSION)}, got {ros_distro!r}")
    out = Path(out)
    if out.suffix in (".mcap", ".db3"):
        raise InputError(f"{out}: a ROS 2 bag is a directory; give its name without the {out.suffix} suffix")
    version = METADATA_VERSION[ros_distro]
    stamps = [s.stamps_ns for s in rec.cameras if len(s.stamps_ns)]
    if not stamps:
        raise InputError(f"{rec.source}: no frames to convert")
    for s in rec.cameras:
        if np.any(np.diff(s.stamps_ns) <= 0):
            k = int(np.flatnonzero(np.diff(s.stamps_ns) <= 0)[0]) + 1
            raise InputError(f"{rec.source}: camera {s.camera} frame {s.files[k].name} is not later than the frame "
                             f"before it")
    _refuse_overlap(out, [rec.source] + [f.parent for s in rec.cameras for f in s.files[:1]] +
                    [f.parent for f in rec.velo_files[:1]])
    start_ns = int(min(s[0] for s in stamps))
    total = 1 + sum(2 * len(s.files) for s in rec.cameras) + len(rec.velo_files) + \
        (2 * len(rec.gt_poses) if rec.gt_poses is not None else 0)
    serialize = BAG_TYPESTORE.serialize_cdr
    started = time.perf_counter()
    counts: dict[str, int] = {}
    with _atomic_directory(out, overwrite) as tmp:
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        with Writer(tmp, version=version, storage_plugin=plugin) as writer:
            writer.set_custom_data("sa4depth.kitti2bag", json.dumps(
                {"source": str(rec.source), "base_link": "rectified camera 0, x forward, y left, z up"}))

            def connection(topic: str, msgtype: str, qos: Qos = STREAM_QOS):
                conn = writer.add_connection(topic, msgtype, typestore=BAG_TYPESTORE, offered_qos_profiles=[qos])
                counts[topic] = 0
                return conn

            def put(conn, stamp_ns: int, msg) -> None:
                writer.write(conn, int(stamp_ns), serialize(msg, msg.__msgtype__))
                counts[conn.topic] += 1
                bar.update()

            with tqdm(total=total, unit="msg", desc="sa4depth-kitti2bag", disable=not progress) as bar:
                static = [_transform_stamped(T, BASE_FRAME, child, start_ns) for child, T in rec.rig.items()]
                put(connection(TF_STATIC_TOPIC, "tf2_msgs/msg/TFMessage", LATCHED_QOS), start_ns, _tf_msg(static))
                image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
                conns = {id(s): (connection(image_topic(s.camera, compressed), image_type),
                                 connection(camera_info_topic(s.camera), "sensor_msgs/msg/CameraInfo"))
                         for s in rec.cameras}
                if rec.velo_files:
                    velo_conn = connection(VELO_TOPIC, "sensor_msgs/msg/PointCloud2")
                if rec.gt_poses is not None:
                    odom_conn = connection(GT_ODOM_TOPIC, "nav_msgs/msg/Odometry")
                    tf_conn = connection(TF_TOPIC, "tf2_msgs/msg/TFMessage")
                for stamp, _, kind, stream, i in _events(rec):
                    if kind == "image":
                        image_conn, info_conn = conns[id(stream)]
                        put(image_conn, stamp, _image_msg(stream, i, compressed))
                        put(info_conn, stamp, camera_info_msg(stream.model, stamp, CAMERA_NAMES[stream.camera]))
                    elif kind == "cloud":
                        put(velo_conn, stamp, _cloud_msg(rec.velo_files[i], stamp))
                    else:
                        T = rec.gt_poses[i]
                        put(odom_conn, stamp, _odometry_msg(T, stamp))
                        put(tf_conn, stamp, _tf_msg([_transform_stamped(T, GT_WORLD_FRAME, GT_BASE_FRAME, stamp)]))
    frames = max(len(s.files) for s in rec.cameras)
    return ConversionResult(out.absolute(), storage, version, counts, frames, time.perf_counter() - started, rec.notes)


def convert(source: str | Path, out: str | Path, storage: str = "sqlite3", ros_distro: str = "jazzy",
            cameras=(2,), velodyne: bool = False, gt: bool = True, compressed: bool = False,
            poses_path: str | Path | None = None, epoch_s: float = ODOMETRY_EPOCH_S, max_frames: int = 0,
            overwrite: bool = False, progress: bool = False) -> ConversionResult:
    """Convert a KITTI odometry sequence or raw drive directory to a ROS 2 bag (see `write_bag`).

    Args:
        cameras: KITTI camera numbers 0..3 (0/1 grey, 2/3 colour; 2 = left colour).
        velodyne: add the Velodyne scans as PointCloud2 when the drive has them.
        gt: add ground truth (odometry: poses file; raw: OXTS) when available.
        max_frames: convert only the first frames of each stream (0 = all).
    """
    if int(max_frames) != max_frames or max_frames < 0:
        raise InputError(f"max_frames must be a non-negative integer, got {max_frames!r}")
    rec = load_kitti(source, cameras=cameras, velodyne=velodyne, gt=gt, poses_path=poses_path, epoch_s=epoch_s,
                     max_frames=int(max_frames))
    return write_bag(rec, out, storage, ros_distro, compressed, overwrite, progress)


def main(argv: list[str] | None = None) -> int:
    """Command line `sa4depth-kitti2bag`; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="sa4depth-kitti2bag", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="KITTI odometry sequence directory (sequences/SS) or raw drive directory")
    parser.add_argument("out", help="bag directory to create")
    parser.add_argument("--storage", choices=STORAGES, default="sqlite3", help="storage plugin (default sqlite3)")
    parser.add_argument("--ros-distro", choices=tuple(METADATA_VERSION), default="jazzy",
                        help="oldest distro that must play the bag: humble writes metadata v8, else v9 (default jazzy)")
    parser.add_argument("--cameras", default="2", help="comma-separated KITTI cameras 0..3 (default 2 = left colour)")
    parser.add_argument("--velodyne", action="store_true", help="add Velodyne scans as PointCloud2")
    parser.add_argument("--no-gt", action="store_true", help="leave out ground-truth odometry and TF")
    parser.add_argument("--poses", help="odometry ground-truth poses file (default <root>/poses/SS.txt)")
    parser.add_argument("--compressed", action="store_true", help="images as CompressedImage (the PNG bytes)")
    parser.add_argument("--epoch", type=float, default=ODOMETRY_EPOCH_S,
                        help=f"odometry sequences: Unix time of times.txt's zero (default {ODOMETRY_EPOCH_S})")
    parser.add_argument("--max-frames", type=int, default=0, help="convert only the first N frames (0 = all)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bag")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        try:
            cameras = [int(c) for c in args.cameras.split(",") if c.strip()]
        except ValueError:
            raise InputError(f"--cameras must be comma-separated numbers 0..3, got {args.cameras!r}") from None
        result = convert(args.source, args.out, args.storage, args.ros_distro, cameras, args.velodyne, not args.no_gt,
                         args.compressed, args.poses, args.epoch, args.max_frames, args.overwrite,
                         progress=not args.quiet)
    except (InputError, OSError) as exc:
        print(f"sa4depth-kitti2bag: error: {exc}", file=sys.stderr)
        return 2
    for note in result.notes:
        print(f"note: {note}")
    for topic, count in result.counts.items():
        print(f"  {topic}: {count}")
    print(f"wrote {result.path} ({result.storage}, metadata v{result.version}): {result.frames} frames in "
          f"{result.seconds:.1f} s ({result.frames / max(result.seconds, 1e-9):.1f} frames/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
