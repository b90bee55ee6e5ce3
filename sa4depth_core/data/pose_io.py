"""Trajectory files: KITTI (12 numbers, 3x4 row-major per line) and TUM (`t tx ty tz qx qy qz qw`).

Both hold camera-to-world poses; in memory they are (N,4,4) float64 arrays. Files are written
whole or not at all (a full disk leaves no partial file, and an older file of the name intact).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from transforms3d.quaternions import mat2quat, quat2mat

from sa4depth_core.checkpoint import atomic_write_bytes
from sa4depth_core.data.text_file import read_text
from sa4depth_core.errors import InputError
from sa4depth_core.input_checks import check_rigid_transform

# How far R^T R of a KITTI pose may be from the identity: a rotation printed with three decimals
# is orthonormal to about 1e-3, while zero, scaled or garbage blocks are off by far more (and
# made the metrics' matrix inverses fail).
ROTATION_ATOL = 1e-2


def _number_rows(path: Path, count: int, what: str) -> tuple[np.ndarray, list[int]]:
    """Rows of `count` numbers from a text file and the line number of each; blank lines and `#`
    comments are skipped."""
    path = Path(path)
    rows, linenos = [], []
    for lineno, line in enumerate(read_text(path, what).splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        tokens = text.replace(",", " ").split()
        if len(tokens) != count:
            raise InputError(f"{path}: line {lineno} has {len(tokens)} numbers, expected {count} ({what})")
        try:
            row = [float(t) for t in tokens]
        except ValueError:
            raise InputError(f"{path}: line {lineno} is not numeric: {text!r}") from None
        if not np.all(np.isfinite(row)):
            raise InputError(f"{path}: line {lineno} has non-finite numbers")
        rows.append(row)
        linenos.append(lineno)
    if not rows:
        raise InputError(f"{path}: {what} file holds no poses")
    return np.array(rows, dtype=np.float64), linenos


def _save_rows(path: str | Path, rows: np.ndarray, **savetxt_options) -> None:
    """np.savetxt of (N, M) rows to `path`, atomically (OSError on failure, no file left behind)."""
    text = io.StringIO()
    np.savetxt(text, rows, **savetxt_options)
    # a trajectory is shared like any text file, not private like a temporary one
    atomic_write_bytes(path, text.getvalue().encode(), mode=0o644)


def _check_poses(poses: np.ndarray) -> np.ndarray:
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] not in ((4, 4), (3, 4)):
        raise InputError(f"poses must have shape (N,4,4) or (N,3,4), got {poses.shape}")
    if not np.all(np.isfinite(poses)):
        raise InputError("poses contain non-finite values")
    return poses


def load_kitti_poses(path: str | Path) -> np.ndarray:
    """Read a KITTI poses file.

    Returns:
        (N,4,4) float64 camera-to-world.
    """
    rows, linenos = _number_rows(Path(path), 12, "KITTI poses")
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    poses[:, :3, :] = rows.reshape(-1, 3, 4)
    for pose, lineno in zip(poses, linenos):
        check_rigid_transform(pose, f"{path}: line {lineno}", atol=ROTATION_ATOL)
    return poses


def save_kitti_poses(path: str | Path, poses: np.ndarray) -> None:
    """Write (N,4,4) or (N,3,4) camera-to-world poses as a KITTI poses file."""
    poses = _check_poses(poses)
    _save_rows(path, poses[:, :3, :].reshape(-1, 12), fmt="%.12e")


def load_tum_poses(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a TUM trajectory; quaternions need not be unit length or have a particular sign.

    Returns:
        timestamps (N,) float64 seconds and poses (N,4,4) float64 camera-to-world.
    """
    path = Path(path)
    rows, _ = _number_rows(path, 8, "TUM trajectory")
    quat_xyzw = rows[:, 4:8]
    norms = np.linalg.norm(quat_xyzw, axis=1)
    if np.any(norms < 1e-9):
        raise InputError(f"{path}: pose {int(np.argmin(norms))} has a zero quaternion")
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    for pose, (x, y, z, w) in zip(poses, quat_xyzw / norms[:, None]):
        pose[:3, :3] = quat2mat([w, x, y, z])
    poses[:, :3, 3] = rows[:, 1:4]
    return rows[:, 0].copy(), poses


def save_tum_poses(path: str | Path, timestamps: np.ndarray, poses: np.ndarray) -> None:
    """Write a TUM trajectory from timestamps (N,) and camera-to-world poses (N,4,4) or (N,3,4).

    Quaternions are written with qw >= 0 (transforms3d's choice), so equal rotations give equal text.
    """
    poses = _check_poses(poses)
    timestamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if len(timestamps) != len(poses):
        raise InputError(f"{len(timestamps)} timestamps for {len(poses)} poses")
    rows = []
    for t, pose in zip(timestamps, poses):
        w, x, y, z = mat2quat(pose[:3, :3])
        rows.append([t, *pose[:3, 3], x, y, z, w])
    _save_rows(path, np.array(rows), fmt=["%.9f"] + ["%.12e"] * 7, header="timestamp tx ty tz qx qy qz qw")
