"""Trajectory files for evaluation and the rules that pair an estimate's poses with ground truth.

Files are KITTI (12 numbers per line: row-major 3x4 camera-to-world, no stamps) or TUM
(`timestamp tx ty tz qx qy qz qw`), read through data.pose_io; TUM stamps must strictly increase.
Unstamped trajectories are paired line by line. Stamped ones are paired by one of two rules:
- nearest stamp (`load_trajectory_pair`, `sa4depth-eval odom --gt --est`): both files come from
  the same clock and frames, so an estimate pairs with the GT pose within max_dt or is dropped;
- interpolation (`match_trajectories`, `--trajectory` / `--bag`): a bag's ground truth is sampled
  at its own rate, so it is interpolated at the estimate's stamps.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.bag_ground_truth import interpolate_poses
from ..data.pose_io import load_kitti_poses, load_tum_poses
from ..data.text_file import read_text
from ..errors import InputError

FORMATS = ("kitti", "tum")
# Estimates stamped within this of the ground truth's time span are matched by interpolation.
MAX_GAP_S = 0.05


def _check_increasing(path: Path, stamps: np.ndarray) -> None:
    """stamps (N,): both matching rules search them, which needs them sorted and unique."""
    bad = np.flatnonzero(np.diff(stamps) <= 0)
    if bad.size:
        k = int(bad[0]) + 1
        raise InputError(f"{path}: timestamps must increase, but pose {k} (t={stamps[k]!r}) "
                         f"does not follow pose {k - 1} (t={stamps[k - 1]!r})")


def _file_format(path: Path) -> str:
    """'kitti' or 'tum' from the number count of the first pose line."""
    text = read_text(path, "trajectory")
    first = next((line for line in text.splitlines() if line.strip() and not line.startswith("#")), "")
    columns = len(first.replace(",", " ").split())
    if columns == 12:
        return "kitti"
    if columns == 8:
        return "tum"
    raise InputError(f"{path}: first pose line has {columns} numbers; expected 12 (KITTI) or 8 (TUM)")


def load_trajectory(path: str | Path, fmt: str | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """A KITTI or TUM trajectory file; `fmt` None tells them apart by the first line's number count.

    Returns:
        stamps (N,) float64 s, strictly increasing, or None for KITTI; poses (N,4,4) camera-to-world.
    """
    path = Path(path)
    if fmt is None:
        fmt = _file_format(path)
    if fmt == "kitti":
        return None, load_kitti_poses(path)
    if fmt == "tum":
        stamps, poses = load_tum_poses(path)
        _check_increasing(path, stamps)
        return stamps, poses
    raise InputError(f"unknown trajectory format {fmt!r}; use 'kitti' or 'tum'")


def associate_timestamps(t_gt: np.ndarray, t_est: np.ndarray,
                         max_dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Match each estimated stamp to the nearest GT stamp within max_dt (s), one-to-one.

    t_gt (G,), t_est (E,): strictly increasing. When several estimates pick the same GT stamp
    the closest one keeps it. Returns index arrays (idx_gt, idx_est) of equal length, sorted.
    """
    above = np.searchsorted(t_gt, t_est)
    left = np.clip(above - 1, 0, len(t_gt) - 1)
    right = np.clip(above, 0, len(t_gt) - 1)
    take_left = np.abs(t_est - t_gt[left]) <= np.abs(t_est - t_gt[right])
    nearest = np.where(take_left, left, right)
    dt = np.abs(t_est - t_gt[nearest])
    idx_est = np.flatnonzero(dt <= max_dt)
    # Closest first, then keep the first estimate for each GT index.
    order = idx_est[np.argsort(dt[idx_est], kind="stable")]
    _, first = np.unique(nearest[order], return_index=True)
    idx_est = np.sort(order[first])
    return nearest[idx_est], idx_est


def load_trajectory_pair(gt_path: str | Path, est_path: str | Path, fmt: str,
                         max_dt: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Read GT and estimate in `fmt` ('kitti' or 'tum') as matched (N,4,4) stacks.

    KITTI: line by line, equal lengths required. TUM: by nearest stamp within max_dt (s).
    """
    (t_gt, gt), (t_est, est) = load_trajectory(gt_path, fmt), load_trajectory(est_path, fmt)
    if t_gt is None:
        if len(gt) != len(est):
            raise InputError(f"{gt_path} has {len(gt)} poses but {est_path} has {len(est)}; "
                             f"KITTI files are matched line by line and must be equally long")
        return gt, est
    idx_gt, idx_est = associate_timestamps(t_gt, t_est, max_dt)
    if len(idx_gt) < 2:
        raise InputError(f"only {len(idx_gt)} of the {len(t_est)} poses in {est_path} have a "
                         f"ground-truth stamp in {gt_path} within {max_dt} s; need at least 2")
    return gt[idx_gt], est[idx_est]


def match_trajectories(gt_stamps: np.ndarray | None, gt: np.ndarray, est_stamps: np.ndarray | None,
                       est: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Pairs of poses for evaluation; stamps (N,) int64 ns or None, poses (N,4,4).

    Both stamped: GT interpolated at every estimate stamp inside its time span (+- MAX_GAP_S).
    Otherwise: line by line, equal lengths required.
    Returns:
        gt (M,4,4), est (M,4,4), stamps (M,) ns or None.
    """
    if gt_stamps is None or est_stamps is None:
        if len(gt) != len(est):
            raise InputError(f"{where}: {len(gt)} ground-truth poses but {len(est)} estimated ones; without stamps "
                             f"on both sides they are matched line by line and must be equally many")
        return gt, est, None
    gap = int(MAX_GAP_S * 1e9)
    inside = (est_stamps >= gt_stamps[0] - gap) & (est_stamps <= gt_stamps[-1] + gap)
    if np.count_nonzero(inside) < 2:
        raise InputError(f"{where}: only {np.count_nonzero(inside)} estimated poses fall within the ground truth's "
                         f"time span; need at least 2")
    matched = interpolate_poses(gt_stamps, gt, est_stamps[inside], gap)
    return matched, est[inside], est_stamps[inside]
