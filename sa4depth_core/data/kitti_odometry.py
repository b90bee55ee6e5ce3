"""KITTI odometry sequences: `<root>/sequences/SS/{image_c, calib.txt, times.txt}`, `<root>/poses/SS.txt`.

Camera c is 0/1 (left/right grey), 2/3 (left/right colour; 2 is the default). Optional dense
ground truth in `sequences/SS/depth_c/%06d.png` (uint16, depth = value / 256, 0 = invalid) is
read when present; the synthetic generator writes exact depth there, `stereo_depth` writes
depth matched from a rectified stereo pair, both encoded by depth_to_png16.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sa4depth_core.data.calib import load_odometry_calib
from sa4depth_core.data.pose_io import load_kitti_poses
from sa4depth_core.data.sequence import ImageFileSequence, list_images, read_float_lines, read_rgb, require_dir
from sa4depth_core.errors import InputError

DEPTH_PNG_SCALE = 256.0
# How each tool chooses a camera, named in the error when the one asked for is absent.
CAMERA_CHOICE = "data.camera=image_{c} for sa4depth-train, --camera image_{c} for sa4depth-eval"


def camera_index(camera: int | str) -> int:
    """KITTI camera number 0..3 from `image_0`..`image_3`, `0`..`3` or an int."""
    text = str(camera).strip()
    if text.startswith("image_"):
        text = text[len("image_"):]
    if text not in ("0", "1", "2", "3"):
        raise InputError(f"KITTI camera must be image_0, image_1, image_2 or image_3 (0..3), got {camera!r}")
    return int(text)


def camera_images(seq_dir: Path, camera: int, choice: str = CAMERA_CHOICE) -> list[Path]:
    """The frames of `seq_dir/image_<camera>` in name order.

    A missing folder is named together with the cameras the sequence does have and how to pick
    one of them (`choice`, formatted with `c`), since grey-only copies of KITTI hold image_0/1 only.
    """
    folder = seq_dir / f"image_{camera}"
    if not folder.is_dir():
        present = [c for c in range(4) if (seq_dir / f"image_{c}").is_dir()]
        hint = ""
        if present:
            names = ", ".join(f"image_{c}" for c in present)
            hint = f"; the sequence has {names}: choose one with {choice.format(c=present[0])}"
        raise InputError(f"{folder}: image directory not found{hint}")
    files = list_images(folder)
    if not files:
        raise InputError(f"{folder}: no png/jpg images")
    return files


def depth_to_png16(depth: np.ndarray) -> np.ndarray:
    """Encode metres (H,W) as KITTI uint16 (value = round(256 * depth), 0 = invalid or beyond 255.99 m)."""
    depth = np.asarray(depth, np.float64)
    valid = np.isfinite(depth) & (depth > 0) & (depth * DEPTH_PNG_SCALE <= 65535)
    return np.where(valid, np.rint(np.where(valid, depth, 0) * DEPTH_PNG_SCALE), 0).astype(np.uint16)


def read_depth_png(path: Path, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read a KITTI-style uint16 depth PNG.

    Returns:
        (H,W) float32 metres, 0 where invalid.
    """
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        problem = "is missing" if not Path(path).is_file() else "cannot be decoded as an image"
        raise InputError(f"depth frame {path} {problem}")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise InputError(f"depth frame {path} must be a single-channel uint16 PNG, "
                         f"got {raw.dtype} with shape {raw.shape}")
    if expected_hw is not None and raw.shape != tuple(expected_hw):
        raise InputError(f"depth frame {path} is {raw.shape[1]}x{raw.shape[0]} "
                         f"but the sequence is {expected_hw[1]}x{expected_hw[0]}")
    return raw.astype(np.float32) / DEPTH_PNG_SCALE


class KittiOdometrySequence(ImageFileSequence):
    """One KITTI odometry sequence seen by one camera (default image_2, the left colour camera;
    grey frames of image_0/1 come out with the channel replicated, as every reader gives RGB).

    Ground-truth poses in `poses/SS.txt` belong to camera 0; they are moved to the chosen camera
    with the offset encoded in its projection matrix (P_c = K_c [I | t_c]), keeping camera 0 of
    frame 0 as the world frame.

    Args:
        root: dataset root holding `sequences/` (and optionally `poses/`).
        sequence: e.g. 9 or "09".
        camera: 0..3 or image_0..image_3.
        poses_path: a poses file to use instead of `<root>/poses/SS.txt`; it must exist.
    """

    def __init__(self, root: str | Path, sequence: int | str, camera: int | str = 2,
                 poses_path: str | Path | None = None):
        camera = camera_index(camera)
        root = Path(root)
        seq = f"{sequence:02d}" if isinstance(sequence, int) else str(sequence)
        seq_dir = require_dir(root / "sequences" / seq, "KITTI odometry sequence")
        self.name = f"kitti_odometry/{seq}/image_{camera}"
        self._files = camera_images(seq_dir, camera)
        self._hw = read_rgb(self._files[0]).shape[:2]

        calib_path = seq_dir / "calib.txt"
        calib = load_odometry_calib(calib_path, cameras=(camera,))
        self._K = calib.K(camera)
        if abs(np.linalg.det(self._K)) < 1e-12:
            raise InputError(f"{calib_path}: key P{camera} has a singular 3x3 intrinsic part")

        times_path = seq_dir / "times.txt"
        self._times = read_float_lines(times_path, "timestamps")
        if len(self._times) != len(self._files):
            raise InputError(f"{times_path} has {len(self._times)} timestamps but "
                             f"{seq_dir / f'image_{camera}'} has {len(self._files)} frames")

        self._poses = None
        pose_file = Path(poses_path) if poses_path is not None else root / "poses" / f"{seq}.txt"
        if poses_path is not None or pose_file.is_file():
            cam0_poses = load_kitti_poses(pose_file)
            if len(cam0_poses) != len(self._files):
                raise InputError(f"{pose_file} has {len(cam0_poses)} poses "
                                 f"but the sequence has {len(self._files)} frames")
            self._poses = cam0_poses @ np.linalg.inv(calib.cam0_to_cam(camera))
        self.has_poses = self._poses is not None

        self._depth_dir = seq_dir / f"depth_{camera}"
        self.has_depth = self._depth_dir.is_dir()


    def pose(self, i: int) -> np.ndarray | None:
        self._check_index(i)
        return None if self._poses is None else self._poses[i].copy()

    def gt_depth(self, i: int) -> np.ndarray | None:
        self._check_index(i)
        if not self.has_depth:
            return None
        return read_depth_png(self._depth_dir / f"{self._files[i].stem}.png", self._hw)
