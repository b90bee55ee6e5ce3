"""KITTI raw synced drives, Eigen-style split files and Velodyne ground-truth depth.

Layout: `<root>/<date>/<date>_drive_<NNNN>_sync/image_0c/data/%010d.png` with
`image_0c/timestamps.txt`, `velodyne_points/data/%010d.bin`, and the calibration files
`calib_cam_to_cam.txt` / `calib_velo_to_cam.txt` in `<root>/<date>/`.
"""
from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sa4depth_core.data.calib import RawCalib, load_raw_calib
from sa4depth_core.data.sequence import ImageFileSequence, list_images, read_rgb, require_dir
from sa4depth_core.data.text_file import read_text
from sa4depth_core.errors import InputError

_SIDE_TO_CAMERA = {"l": 2, "r": 3}
_TIMESTAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(\.\d+)?$")


@dataclass(frozen=True)
class SplitItem:
    """One line of an Eigen-style split file, e.g. `2011_09_26/2011_09_26_drive_0002_sync 0000000069 l`.

    Attributes:
        drive: drive folder relative to the dataset root.
        frame: frame number (the file name without extension).
        camera: 2 for `l` (image_02), 3 for `r` (image_03).
    """

    drive: str
    frame: int
    camera: int

    @property
    def date(self) -> str:
        return self.drive.split("/")[0]


def parse_split_line(line: str, where: str = "split line") -> SplitItem:
    """Parse `<date>/<drive> <frame> <l|r>`; `where` names the line in error messages."""
    tokens = line.split()
    if len(tokens) != 3:
        raise InputError(f"{where}: expected '<date>/<drive> <frame> <l|r>', got {line.strip()!r}")
    drive, frame, side = tokens
    if side not in _SIDE_TO_CAMERA:
        raise InputError(f"{where}: side must be 'l' or 'r', got {side!r}")
    if not frame.isdigit():
        raise InputError(f"{where}: frame must be a non-negative integer, got {frame!r}")
    if drive.count("/") != 1:
        raise InputError(f"{where}: drive must look like '<date>/<date>_drive_<NNNN>_sync', got {drive!r}")
    return SplitItem(drive=drive, frame=int(frame), camera=_SIDE_TO_CAMERA[side])


def load_split_file(path: str | Path) -> list[SplitItem]:
    """Read an Eigen-style split file (blank lines ignored)."""
    path = Path(path)
    return [parse_split_line(line, f"{path}: line {n}")
            for n, line in enumerate(read_text(path, "split").splitlines(), start=1) if line.strip()]


def kitti_timestamp_ns(text: str) -> int:
    """`2011-09-26 13:02:25.964389445` -> integer ns since the Unix epoch, read as UTC, without
    float rounding. Raises ValueError for any other form."""
    match = _TIMESTAMP.match(text.strip())
    if match is None or (match.group(7) and len(match.group(7)) > 10):
        raise ValueError(text)
    whole = calendar.timegm(tuple(int(g) for g in match.groups()[:6]))
    return whole * 1_000_000_000 + (int(match.group(7)[1:].ljust(9, "0")) if match.group(7) else 0)


def read_timestamps_ns(path: Path, numbers: list[int]) -> np.ndarray:
    """Stamps (len(numbers),) int64 ns of the given frame numbers from a KITTI raw `timestamps.txt`."""
    if not path.is_file():
        raise InputError(f"{path}: timestamps file not found")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if numbers and max(numbers) >= len(lines):
        raise InputError(f"{path} has {len(lines)} timestamps but frame {max(numbers):010d} exists")
    out = np.empty(len(numbers), np.int64)
    for i, n in enumerate(numbers):
        try:
            out[i] = kitti_timestamp_ns(lines[n])
        except ValueError:
            raise InputError(f"{path}: timestamp of frame {n} is not 'YYYY-MM-DD hh:mm:ss.fffffffff': "
                             f"{lines[n].strip()!r}") from None
    return out


def load_velodyne(path: str | Path) -> np.ndarray:
    """Read a KITTI Velodyne scan.

    Returns:
        (N,4) float32 rows x, y, z, reflectance in the Velodyne frame.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: Velodyne scan not found")
    data = np.fromfile(path, dtype=np.float32)
    if data.size % 4:
        raise InputError(f"{path}: size is not a multiple of 16 bytes (4 float32 per point)")
    return data.reshape(-1, 4)


def velodyne_depth(points: np.ndarray, calib: RawCalib, vel_depth: bool = True) -> np.ndarray:
    """Sparse ground-truth depth by the KITTI/Eigen protocol (Monodepth2's `generate_depth_map`).

    Points with x_velo < 0 are dropped; the rest are projected with P_rect · R_rect_00 · velo_to_cam,
    pixel = round(projection) - 1 (the MATLAB devkit's 1-based offset), kept inside the S_rect
    size; the value is the Velodyne forward x (vel_depth=True) or the projective depth; the
    nearest point wins a pixel and negative values become 0.

    Args:
        points: (N,3) or (N,4) Velodyne x, y, z[, reflectance].
    Returns:
        (H,W) float32 depth in metres, 0 = no measurement.
    """
    pts = np.asarray(points, dtype=np.float64)[:, :3]
    pts = pts[pts[:, 0] >= 0]
    proj = np.c_[pts, np.ones(len(pts))] @ calib.velo_to_image().T
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.round(proj[:, 0] / proj[:, 2]) - 1
        v = np.round(proj[:, 1] / proj[:, 2]) - 1
    depth = pts[:, 0] if vel_depth else proj[:, 2]
    keep = (u >= 0) & (v >= 0) & (u < calib.width) & (v < calib.height)
    out = np.full((calib.height, calib.width), np.inf)
    np.minimum.at(out, (v[keep].astype(np.int64), u[keep].astype(np.int64)), depth[keep])
    out[~np.isfinite(out) | (out < 0)] = 0.0
    return out.astype(np.float32)


class KittiRawDrive(ImageFileSequence):
    """One synced KITTI raw drive seen by camera 2 (left colour) or 3 (right colour).

    Frame i is the i-th image file in name order; `frame_number(i)` is its number in the file name,
    which also indexes `timestamps.txt` and the Velodyne scans. Ground-truth depth is the projected
    Velodyne scan (available when `velodyne_points/data` exists). No ground-truth poses.

    Args:
        drive_dir: `<root>/<date>/<date>_drive_<NNNN>_sync`.
        camera: 2 or 3.
    """

    def __init__(self, drive_dir: str | Path, camera: int = 2):
        if camera not in (2, 3):
            raise InputError(f"KITTI raw camera must be 2 or 3, got {camera!r}")
        drive_dir = require_dir(Path(drive_dir), "KITTI raw drive")
        self.name = f"kitti_raw/{drive_dir.parent.name}/{drive_dir.name}/image_0{camera}"
        self.calib = load_raw_calib(drive_dir.parent, camera)
        self._hw = (self.calib.height, self.calib.width)
        self._K = self.calib.K

        cam_dir = drive_dir / f"image_0{camera}"
        self._files = list_images(require_dir(cam_dir / "data", "image"))
        if not self._files:
            raise InputError(f"{cam_dir / 'data'}: no png/jpg images")
        try:
            self._numbers = [int(p.stem) for p in self._files]
        except ValueError:
            raise InputError(f"{cam_dir / 'data'}: image names must be frame numbers like 0000000000.png") from None
        first = read_rgb(self._files[0])
        if first.shape[:2] != self._hw:
            raise InputError(f"frame {self._files[0]} is {first.shape[1]}x{first.shape[0]} but "
                             f"{drive_dir.parent / 'calib_cam_to_cam.txt'} key S_rect_0{camera} says "
                             f"{self.calib.width}x{self.calib.height}")
        self._times = read_timestamps_ns(cam_dir / "timestamps.txt", self._numbers) * 1e-9
        self._velo_dir = drive_dir / "velodyne_points" / "data"
        self.has_depth = self._velo_dir.is_dir()

    def frame_number(self, i: int) -> int:
        """The number in frame i's file name."""
        self._check_index(i)
        return self._numbers[i]

    def index_of(self, frame_number: int) -> int:
        """Position of the frame with this file number (e.g. a split file's frame)."""
        try:
            return self._numbers.index(frame_number)
        except ValueError:
            raise InputError(f"{self.name}: no frame {frame_number:010d}") from None


    def gt_depth(self, i: int) -> np.ndarray | None:
        self._check_index(i)
        if not self.has_depth:
            return None
        return velodyne_depth(load_velodyne(self._velo_dir / f"{self._numbers[i]:010d}.bin"), self.calib)
