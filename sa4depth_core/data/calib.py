"""KITTI calibration text files (`key: numbers` per line) for the raw and odometry readers."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sa4depth_core.errors import InputError


class CalibFile:
    """One `key: value` calibration file; values are parsed to numbers only when asked for.

    Entries such as `calib_time: 09-Jan-2012 13:57:47` are kept as text and only fail when a
    caller requests them as numbers, so unrelated non-numeric lines never block a reader.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: calibration file not found")
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{self.path}: cannot read calibration file ({exc})") from exc
        self.values: dict[str, str] = {}
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            key, sep, value = line.partition(":")
            key = key.strip()
            if not sep or not key:
                raise InputError(f"{self.path}: line {lineno} is not of the form 'key: values': {line.strip()!r}")
            if key in self.values:
                raise InputError(f"{self.path}: key {key} appears more than once")
            self.values[key] = value.strip()

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def array(self, key: str, count: int) -> np.ndarray:
        """The numbers stored under `key`.

        Returns:
            (count,) float64.
        """
        if key not in self.values:
            raise InputError(f"{self.path}: key {key} is missing")
        tokens = self.values[key].split()
        try:
            numbers = np.array([float(t) for t in tokens], dtype=np.float64)
        except ValueError:
            raise InputError(f"{self.path}: key {key} has a non-numeric value {self.values[key]!r}") from None
        if numbers.size != count:
            raise InputError(f"{self.path}: key {key} has {numbers.size} numbers, expected {count}")
        if not np.all(np.isfinite(numbers)):
            raise InputError(f"{self.path}: key {key} has non-finite numbers")
        return numbers

    def matrix(self, key: str, rows: int, cols: int) -> np.ndarray:
        """The numbers under `key` as a row-major matrix.

        Returns:
            (rows, cols) float64.
        """
        return self.array(key, rows * cols).reshape(rows, cols)


def rigid_4x4(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Homogeneous transform from a rotation (3,3) and translation (3,) -> (4,4) float64."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.reshape(t, 3)
    return T


@dataclass(frozen=True)
class RawCalib:
    """Calibration of one rectified camera of a KITTI raw date folder.

    Attributes:
        P_rect: (3,4) rectified projection of the camera (P_rect_0c).
        R_rect_00: (3,3) rectifying rotation of the reference camera.
        velo_to_cam: (4,4) Velodyne -> unrectified camera-0 frame.
        width, height: rectified image size from S_rect_0c.
    """

    P_rect: np.ndarray
    R_rect_00: np.ndarray
    velo_to_cam: np.ndarray
    width: int
    height: int

    @property
    def K(self) -> np.ndarray:
        """(3,3) float64 intrinsics of the rectified camera."""
        return self.P_rect[:, :3].copy()

    def velo_to_image(self) -> np.ndarray:
        """(3,4) projection of homogeneous Velodyne points to pixels: P_rect · R_rect_00 · velo_to_cam."""
        R_rect = np.eye(4)
        R_rect[:3, :3] = self.R_rect_00
        return self.P_rect @ R_rect @ self.velo_to_cam


def load_raw_calib(date_dir: str | Path, camera: int = 2) -> RawCalib:
    """Read `calib_cam_to_cam.txt` and `calib_velo_to_cam.txt` from a KITTI raw date folder.

    Args:
        date_dir: e.g. `<root>/2011_09_26`.
        camera: 0..3 (2 = left colour, 3 = right colour).
    """
    if camera not in (0, 1, 2, 3):
        raise InputError(f"KITTI camera must be 0, 1, 2 or 3, got {camera!r}")
    date_dir = Path(date_dir)
    cam = CalibFile(date_dir / "calib_cam_to_cam.txt")
    velo = CalibFile(date_dir / "calib_velo_to_cam.txt")
    size = cam.array(f"S_rect_0{camera}", 2)
    width, height = int(round(size[0])), int(round(size[1]))
    if width <= 0 or height <= 0 or not np.allclose(size, (width, height)):
        raise InputError(f"{cam.path}: key S_rect_0{camera} must hold a positive integer width and height, got {size}")
    return RawCalib(
        P_rect=cam.matrix(f"P_rect_0{camera}", 3, 4),
        R_rect_00=cam.matrix("R_rect_00", 3, 3),
        velo_to_cam=rigid_4x4(velo.matrix("R", 3, 3), velo.array("T", 3)),
        width=width,
        height=height,
    )


@dataclass(frozen=True)
class OdometryCalib:
    """Calibration of a KITTI odometry sequence (`calib.txt`).

    Attributes:
        path: the file read.
        P: four (3,4) rectified projections P0..P3, all in the camera-0 rectified frame; None for
            a camera the file does not describe (e.g. a converted grey-only stereo rig).
        Tr: (4,4) Velodyne -> camera 0, or None when the file has no `Tr` line.
    """

    path: Path
    P: tuple
    Tr: np.ndarray | None

    def projection(self, camera: int) -> np.ndarray:
        """(3,4) float64 rectified projection of camera 0..3."""
        if self.P[camera] is None:
            raise InputError(f"{self.path}: key P{camera} is missing")
        return self.P[camera].copy()

    def K(self, camera: int) -> np.ndarray:
        """(3,3) float64 intrinsics of camera 0..3."""
        return self.projection(camera)[:, :3]

    def cam0_to_cam(self, camera: int) -> np.ndarray:
        """(4,4) transform from camera-0 coordinates to camera `camera` (a pure translation).

        P_c = K_c · [I | t_c], so t_c = K_c^-1 · P_c[:, 3].
        """
        P = self.projection(camera)
        return rigid_4x4(np.eye(3), np.linalg.solve(P[:, :3], P[:, 3]))


def load_odometry_calib(path: str | Path, cameras=(0, 1, 2, 3)) -> OdometryCalib:
    """Read a KITTI odometry `calib.txt` (P0..P3 with 12 numbers each, optional Tr with 12).

    Args:
        cameras: the cameras whose P key must be present; the other P keys are read when present,
            so a grey-only rig (P0, P1) serves readers that ask for camera 0 or 1.
    """
    calib = CalibFile(path)
    P = tuple(calib.matrix(f"P{c}", 3, 4) if c in cameras or f"P{c}" in calib else None for c in range(4))
    Tr = None
    if "Tr" in calib:
        Tr = np.eye(4)
        Tr[:3] = calib.matrix("Tr", 3, 4)
    return OdometryCalib(path=calib.path, P=P, Tr=Tr)
