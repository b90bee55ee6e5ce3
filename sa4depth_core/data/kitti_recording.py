"""KITTI on disk -> a `KittiRecording`: the cameras (images, stamps, rectified models), the rig of
sensor frames in base_link, Velodyne scans and ground-truth poses of an odometry sequence or a raw
drive, still as files. `kitti2bag` writes a recording into a ROS 2 bag.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from transforms3d.euler import euler2mat

from sa4depth_core.data.calib import (
    CalibFile,
    load_odometry_calib,
    load_raw_calib,
    rigid_4x4,
)
from sa4depth_core.data.kitti_odometry import camera_images
from sa4depth_core.data.kitti_raw import load_velodyne, read_timestamps_ns
from sa4depth_core.data.pose_io import load_kitti_poses
from sa4depth_core.data.sequence import list_images, read_float_lines, require_dir
from sa4depth_core.errors import InputError

CAMERA_NAMES = {0: "camera_gray_left", 1: "camera_gray_right", 2: "camera_color_left", 3: "camera_color_right"}
BASE_FRAME = "base_link"
VELO_FRAME = "velo_link"
IMU_FRAME = "imu_link"
# Odometry sequences only give seconds since their start; stamps are offset by this epoch
# (2011-09-26 00:00 UTC, a KITTI recording day) so no stamp is 0, which TF reads as "latest".
ODOMETRY_EPOCH_S = 1316995200
# base_link has REP-103 body axes (x forward, y left, z up); KITTI cameras have optical axes
# (x right, y down, z forward). Columns: the camera axes expressed in base_link.
T_BASE_CAM0 = rigid_4x4(np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]), np.zeros(3))
_EARTH_RADIUS_M = 6378137.0
KITTI2BAG_CAMERA_CHOICE = "--cameras {c} (sa4depth-kitti2bag) or cameras=({c},)"


@dataclass(frozen=True)
class CameraModel:
    """What a CameraInfo of one camera holds: K (3,3), D (5,) plumb_bob, R (3,3), P (3,4), image size."""

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray
    R: np.ndarray
    P: np.ndarray


@dataclass
class CameraStream:
    """Image files of one camera with stamps (N,) int64 ns; `grey` selects mono8 over bgr8."""

    camera: int
    files: list
    stamps_ns: np.ndarray
    model: CameraModel
    grey: bool


@dataclass
class KittiRecording:
    """Everything one bag will hold, still on disk.

    rig: child frame -> (4,4) pose in base_link. gt_poses: (M,4,4) poses of base_link in the
    ground-truth world at gt_stamps_ns (M,). velo_files/velo_stamps_ns: Velodyne scans.
    """

    source: Path
    cameras: list
    rig: dict
    velo_files: list = field(default_factory=list)
    velo_stamps_ns: np.ndarray | None = None
    gt_stamps_ns: np.ndarray | None = None
    gt_poses: np.ndarray | None = None
    notes: list = field(default_factory=list)


def _frame_numbers(files: list[Path], folder: Path) -> list[int]:
    try:
        return [int(p.stem) for p in files]
    except ValueError:
        raise InputError(f"{folder}: file names must be frame numbers like 0000000000.png") from None


def _image_size(path: Path) -> tuple[int, int]:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"frame {path} cannot be decoded as an image")
    return img.shape[0], img.shape[1]


def _camera_offset(P: np.ndarray) -> np.ndarray:
    """(4,4) pose of a rectified camera in the rectified camera-0 frame: P = K [I | t] puts it at -t."""
    return rigid_4x4(np.eye(3), -np.linalg.solve(P[:, :3], P[:, 3]))


def _rectified_model(P: np.ndarray, width: int, height: int) -> CameraModel:
    return CameraModel(width, height, P[:, :3].copy(), np.zeros(5), np.eye(3), P.copy())


def _check_cameras(cameras) -> tuple[int, ...]:
    cams = tuple(sorted({int(c) for c in cameras}))
    if not cams or any(c not in CAMERA_NAMES for c in cams):
        raise InputError(f"cameras must be a non-empty subset of 0, 1, 2, 3, got {list(cameras)}")
    return cams


def load_odometry_sequence(seq_dir: str | Path, cameras=(2,), velodyne: bool = False, gt: bool = True,
                           poses_path: str | Path | None = None, epoch_s: float = ODOMETRY_EPOCH_S,
                           max_frames: int = 0) -> KittiRecording:
    """Collect a KITTI odometry sequence `<root>/sequences/SS` (calib.txt, times.txt, image_c/).

    Ground truth comes from `poses_path` or `<root>/poses/SS.txt` (camera-0 poses); Velodyne
    scans from `velodyne/%06d.bin` when asked for and present.
    """
    seq_dir = require_dir(Path(seq_dir), "KITTI odometry sequence")
    # Image folders first: a missing camera is the likelier mistake, and its error names the fix.
    files_of = {c: camera_images(seq_dir, c, choice=KITTI2BAG_CAMERA_CHOICE) for c in _check_cameras(cameras)}
    calib = load_odometry_calib(seq_dir / "calib.txt", cameras=tuple(files_of))
    times = read_float_lines(seq_dir / "times.txt", "timestamps")
    n = min(len(times), max_frames) if max_frames else len(times)
    stamps = round(epoch_s * 1e9) + np.round(times * 1e9).astype(np.int64)
    rec = KittiRecording(source=seq_dir, cameras=[], rig={})
    for c, files in files_of.items():
        if len(files) != len(times):
            raise InputError(f"{seq_dir / 'times.txt'} has {len(times)} timestamps but "
                             f"{seq_dir / f'image_{c}'} has {len(files)} frames")
        h, w = _image_size(files[0])
        P = calib.projection(c)
        rec.cameras.append(CameraStream(c, files[:n], stamps[:n], _rectified_model(P, w, h), grey=c < 2))
        rec.rig[CAMERA_NAMES[c]] = T_BASE_CAM0 @ _camera_offset(P)
    if calib.Tr is not None:
        rec.rig[VELO_FRAME] = T_BASE_CAM0 @ calib.Tr
    if velodyne:
        velo_dir = seq_dir / "velodyne"
        if velo_dir.is_dir():
            files = sorted(velo_dir.glob("*.bin"))
            numbers = _frame_numbers(files, velo_dir)
            if numbers and max(numbers) >= len(times):
                raise InputError(f"{velo_dir}: scan {max(numbers):06d} has no timestamp in {seq_dir / 'times.txt'}")
            keep = [i for i, k in enumerate(numbers) if k < n]
            rec.velo_files = [files[i] for i in keep]
            rec.velo_stamps_ns = stamps[[numbers[i] for i in keep]]
        else:
            rec.notes.append(f"no Velodyne scans: {velo_dir} does not exist")
    if gt:
        pose_file = Path(poses_path) if poses_path else seq_dir.parent.parent / "poses" / f"{seq_dir.name}.txt"
        if poses_path or pose_file.is_file():
            cam0 = load_kitti_poses(pose_file)
            if len(cam0) != len(times):
                raise InputError(f"{pose_file} has {len(cam0)} poses but the sequence has {len(times)} frames")
            rec.gt_stamps_ns = stamps[:n]
            rec.gt_poses = T_BASE_CAM0 @ cam0[:n] @ np.linalg.inv(T_BASE_CAM0)
        else:
            rec.notes.append(f"no ground truth: {pose_file} does not exist")
    return rec


def oxts_poses(packets: np.ndarray) -> np.ndarray:
    """IMU poses from OXTS packets (KITTI devkit: Mercator position scaled at the first latitude,
    R = Rz(yaw) Ry(pitch) Rx(roll)).

    Args:
        packets: (N,>=6) lat, lon (degrees), alt (m), roll, pitch, yaw (rad), ...
    Returns:
        (N,4,4) float64 IMU-to-world, world = east, north, up at the Mercator origin.
    """
    lat, lon, alt = packets[:, 0], packets[:, 1], packets[:, 2]
    scale = np.cos(np.radians(lat[0]))
    poses = np.tile(np.eye(4), (len(packets), 1, 1))
    poses[:, 0, 3] = scale * _EARTH_RADIUS_M * np.radians(lon)
    poses[:, 1, 3] = scale * _EARTH_RADIUS_M * np.log(np.tan(np.radians(90.0 + lat) / 2.0))
    poses[:, 2, 3] = alt
    for pose, (roll, pitch, yaw) in zip(poses, packets[:, 3:6]):
        pose[:3, :3] = euler2mat(roll, pitch, yaw, "sxyz")  # static axes: Rz(yaw) Ry(pitch) Rx(roll)
    return poses


def _read_oxts(oxts_dir: Path, max_frames: int) -> tuple[np.ndarray, np.ndarray]:
    data_dir = require_dir(oxts_dir / "data", "OXTS")
    files = sorted(data_dir.glob("*.txt"))
    if not files:
        raise InputError(f"{data_dir}: no OXTS packets (*.txt)")
    numbers = _frame_numbers(files, data_dir)
    if max_frames:
        files, numbers = files[:max_frames], numbers[:max_frames]
    packets = []
    for path in files:
        try:
            values = np.array(path.read_text().split(), dtype=np.float64)
        except ValueError:
            raise InputError(f"{path}: OXTS packet is not numeric") from None
        if values.size < 6 or not np.all(np.isfinite(values[:6])):
            raise InputError(f"{path}: OXTS packet needs lat lon alt roll pitch yaw, got {values.size} numbers")
        packets.append(values[:6])
    return read_timestamps_ns(oxts_dir / "timestamps.txt", numbers), np.array(packets)


def load_velodyne_scan(path: Path) -> np.ndarray:
    """(N,4) float32 x, y, z, reflectance from a `.bin` (synced) or `.txt` (unsynced) scan."""
    if path.suffix == ".bin":
        return load_velodyne(path)
    try:
        points = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except ValueError:
        raise InputError(f"{path}: Velodyne text scan is not numeric") from None
    if points.size and points.shape[1] != 4:
        raise InputError(f"{path}: Velodyne text scan needs 4 columns (x y z reflectance), got {points.shape[1]}")
    return points.reshape(-1, 4)


def load_raw_drive(drive_dir: str | Path, cameras=(2,), velodyne: bool = False, gt: bool = True,
                   max_frames: int = 0) -> KittiRecording:
    """Collect a KITTI raw drive: `<date>/<date>_drive_NNNN_sync` (rectified images) or
    `..._extract` (unrectified images, unsynced sensors, each with its own timestamps).

    Calibration comes from `<date>/calib_cam_to_cam.txt`, `calib_velo_to_cam.txt` and (for the
    IMU frame and OXTS ground truth) `calib_imu_to_velo.txt`.
    """
    drive_dir = require_dir(Path(drive_dir), "KITTI raw drive")
    date_dir = drive_dir.parent
    rectified = not drive_dir.name.endswith("_extract")
    cam_calib = CalibFile(date_dir / "calib_cam_to_cam.txt")
    rec = KittiRecording(source=drive_dir, cameras=[], rig={})
    for c in _check_cameras(cameras):
        raw = load_raw_calib(date_dir, c)
        cam_pose = _camera_offset(raw.P_rect)
        if rectified:
            model = _rectified_model(raw.P_rect, raw.width, raw.height)
        else:
            size = cam_calib.array(f"S_0{c}", 2)
            R_rect = cam_calib.matrix(f"R_rect_0{c}", 3, 3)
            model = CameraModel(round(size[0]), round(size[1]), cam_calib.matrix(f"K_0{c}", 3, 3),
                                cam_calib.array(f"D_0{c}", 5), R_rect, raw.P_rect.copy())
            cam_pose = cam_pose @ rigid_4x4(R_rect, np.zeros(3))  # rectified c <- unrectified c
        folder = drive_dir / f"image_0{c}"
        files = list_images(require_dir(folder / "data", "image"))
        if not files:
            raise InputError(f"{folder / 'data'}: no png/jpg images")
        h, w = _image_size(files[0])
        if (h, w) != (model.height, model.width):
            key = f"S_rect_0{c}" if rectified else f"S_0{c}"
            raise InputError(f"frame {files[0]} is {w}x{h} but {cam_calib.path} key {key} says "
                             f"{model.width}x{model.height}")
        files = files[:max_frames] if max_frames else files
        stamps = read_timestamps_ns(folder / "timestamps.txt", _frame_numbers(files, folder / "data"))
        rec.cameras.append(CameraStream(c, files, stamps, model, grey=c < 2))
        rec.rig[CAMERA_NAMES[c]] = T_BASE_CAM0 @ cam_pose
    rec.rig[VELO_FRAME] = T_BASE_CAM0 @ rigid_4x4(raw.R_rect_00, np.zeros(3)) @ raw.velo_to_cam

    imu_calib = date_dir / "calib_imu_to_velo.txt"
    if imu_calib.is_file():
        imu = CalibFile(imu_calib)
        rec.rig[IMU_FRAME] = rec.rig[VELO_FRAME] @ rigid_4x4(imu.matrix("R", 3, 3), imu.array("T", 3))
    if velodyne:
        velo_dir = drive_dir / "velodyne_points"
        if (velo_dir / "data").is_dir():
            files = sorted(p for p in (velo_dir / "data").iterdir() if p.suffix in (".bin", ".txt"))
            files = files[:max_frames] if max_frames else files
            rec.velo_files = files
            rec.velo_stamps_ns = read_timestamps_ns(velo_dir / "timestamps.txt", _frame_numbers(files, velo_dir / "data"))
        else:
            rec.notes.append(f"no Velodyne scans: {velo_dir / 'data'} does not exist")
    if gt:
        oxts_dir = drive_dir / "oxts"
        if not oxts_dir.is_dir():
            rec.notes.append(f"no ground truth: {oxts_dir} does not exist")
        elif IMU_FRAME not in rec.rig:
            rec.notes.append(f"no ground truth: OXTS poses need {imu_calib}")
        else:
            stamps, packets = _read_oxts(oxts_dir, max_frames)
            base_in_world = oxts_poses(packets) @ np.linalg.inv(rec.rig[IMU_FRAME])
            rec.gt_stamps_ns = stamps
            rec.gt_poses = np.linalg.inv(base_in_world[0]) @ base_in_world
    return rec


def load_kitti(source: str | Path, **options) -> KittiRecording:
    """Detect the layout of `source` (odometry sequence or raw drive) and collect it.

    Options are those of `load_odometry_sequence` / `load_raw_drive`; `poses_path` and `epoch_s`
    apply to odometry sequences only.
    """
    source = Path(source)
    if (source / "calib.txt").is_file() and (source / "times.txt").is_file():
        return load_odometry_sequence(source, **options)
    if source.is_dir() and (source.parent / "calib_cam_to_cam.txt").is_file():
        for key in ("poses_path", "epoch_s"):
            options.pop(key, None)
        return load_raw_drive(source, **options)
    raise InputError(f"{source}: neither a KITTI odometry sequence (sequences/SS with calib.txt and times.txt) "
                     f"nor a KITTI raw drive (<date>/<date>_drive_NNNN_sync with <date>/calib_cam_to_cam.txt)")
