"""Evaluation pictures drawn with OpenCV (no matplotlib): trajectory top views and depth strips."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sa4depth_core.checkpoint import atomic_write_bytes
from sa4depth_core.errors import InputError

from .odometry_metrics import align_trajectories, ate_rmse

GT_COLOUR = (60, 160, 40)  # BGR green
EST_COLOUR = (40, 60, 220)  # BGR red
_GRID = (225, 225, 225)
_TEXT = (40, 40, 40)
# For each "up" axis (the one with the least spread), the two axes drawn right and up so that the
# view looks down on the ground, not up at it: camera frames have y pointing down (x right, z
# forward), REP-103 body/world frames have z up (x forward, y left).
_VIEW_AXES = {0: (1, 2), 1: (0, 2), 2: (0, 1)}
_VIEW_NAMES = "xyz"


def _nice_step(span: float, target_lines: int = 6) -> float:
    """A 1/2/5 x 10^k grid spacing giving about `target_lines` lines over `span`."""
    raw = max(span, 1e-9) / target_lines
    base = 10.0 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw)


@dataclass
class TrajectoryPlot:
    """What `plot_trajectories` drew, in the ground truth's units: with an estimate, both in the
    ground truth's first frame (as the odometry metrics see them); without one, as given.

    gt: (N,3) ground-truth positions; est: (N,3) estimated positions after the alignment, or
    None; scale: the scale the alignment applied to the estimate; ate: RMSE (m) between the drawn
    positions (the odometry metrics' ATE for the same alignment), or None without an estimate.
    """

    path: Path
    gt: np.ndarray
    est: np.ndarray | None
    alignment: str
    scale: float
    ate: float | None


def plot_trajectories(path: str | Path, gt: np.ndarray, est: np.ndarray | None = None, alignment: str = "none",
                      title: str = "", size: int = 800) -> TrajectoryPlot:
    """Write a top-view PNG of a ground-truth trajectory and (optionally) an estimate aligned to it.

    The estimate is aligned here, and only here, with `odometry_metrics.align_trajectories` (both
    re-expressed in their first frame, then `alignment`): the same call behind the ATE that
    `odometry_errors` reports for that alignment, so pass the raw matched poses, not aligned
    ones. The legend gives the alignment, its scale factor and the ATE of what is drawn.

    The vertical axis is the coordinate of the GT positions with the least spread; the other two
    are drawn (x right, z up for camera frames; x right, y up for z-up frames), with a metric grid.

    Args:
        gt: (N,4,4) poses; est: (N,4,4) poses matched to gt one to one (any frame and scale).
        alignment: one of odometry_metrics.ALIGNMENTS; used only with an estimate.
    Returns:
        what was drawn (TrajectoryPlot).
    """
    gt = np.asarray(gt, np.float64)
    if gt.ndim != 3 or gt.shape[1:] != (4, 4) or len(gt) < 1 or not np.all(np.isfinite(gt)):
        raise InputError(f"trajectory plot needs finite (N,4,4) ground-truth poses, got shape {gt.shape}")
    scale, ate, est_xyz = 1.0, None, None
    if est is not None:
        est = np.asarray(est, np.float64)
        if est.ndim != 3 or est.shape[1:] != (4, 4) or not np.all(np.isfinite(est)):
            raise InputError(f"trajectory plot needs finite (M,4,4) estimated poses, got shape {est.shape}")
        gt, est, scale = align_trajectories(gt, est, alignment)
        est_xyz = est[:, :3, 3]
        ate = ate_rmse(gt, est)
    tracks = [(gt[:, :3, 3], GT_COLOUR, "ground truth")]
    if est_xyz is not None:
        tracks.append((est_xyz, EST_COLOUR, f"estimate, {alignment} aligned: scale x{scale:.4g}, ATE {ate:.3g} m"))
    up = int(np.argmin(np.ptp(gt[:, :3, 3], axis=0))) if len(gt) > 1 else 1
    a, b = _VIEW_AXES[up]
    points = [np.stack([p[:, a], p[:, b]], axis=1) for p, _, _ in tracks]
    everything = np.concatenate(points)
    lo, hi = everything.min(0), everything.max(0)
    span = max(float((hi - lo).max()), 1e-6)
    margin, header = 60, 75
    scale_px = (size - 2 * margin) / span
    centre = (lo + hi) / 2

    def to_px(p: np.ndarray) -> np.ndarray:
        u = size / 2 + (p[:, 0] - centre[0]) * scale_px
        v = header + (size - header) / 2 - (p[:, 1] - centre[1]) * scale_px
        return np.round(np.stack([u, v], axis=1) * 16).astype(np.int32)  # 4 fractional bits

    canvas = np.full((size + header, size, 3), 255, np.uint8)
    step = _nice_step(span)
    for axis in (0, 1):
        first = math.floor((centre[axis] - span) / step) * step
        for k in range(int(2 * span / step) + 3):
            value = first + k * step
            line = np.array([[value, centre[1] - span], [value, centre[1] + span]]) if axis == 0 else \
                np.array([[centre[0] - span, value], [centre[0] + span, value]])
            cv2.polylines(canvas, [to_px(line)], False, _GRID, 1, cv2.LINE_AA, shift=4)
    for p, (_, colour, _), thickness in zip(points, tracks, (4, 2)):
        px = to_px(p)
        cv2.polylines(canvas, [px], False, colour, thickness, cv2.LINE_AA, shift=4)
        cv2.circle(canvas, tuple(int(v) for v in px[0]), 6 * 16, colour, 2, cv2.LINE_AA, shift=4)
    canvas[:header] = 255
    cv2.putText(canvas, title[:90], (10, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, _TEXT, 1, cv2.LINE_AA)
    x = 10
    for _, colour, label in tracks:
        cv2.line(canvas, (x, 38), (x + 25, 38), colour, 3, cv2.LINE_AA)
        cv2.putText(canvas, label, (x + 32, 43), cv2.FONT_HERSHEY_SIMPLEX, 0.45, _TEXT, 1, cv2.LINE_AA)
        x += 45 + 8 * len(label)
    cv2.putText(canvas, f"grid {step:g} m   {_VIEW_NAMES[a]} right, {_VIEW_NAMES[b]} up   o = start",
                (10, 66), cv2.FONT_HERSHEY_SIMPLEX, 0.45, _TEXT, 1, cv2.LINE_AA)
    return TrajectoryPlot(_write_png(path, canvas), tracks[0][0], est_xyz, alignment, scale, ate)


def colorize_depth(depth: np.ndarray, min_depth: float | None = None, max_depth: float | None = None,
                   percentiles: tuple[float, float] = (2.0, 98.0), colormap: int = cv2.COLORMAP_MAGMA) -> np.ndarray:
    """False-colour depth for people: near is bright, invalid (NaN, inf, <= 0) is black.

    Colours follow inverse depth, which spreads the near range where detail matters. Bounds not
    given are taken from the given percentiles of the valid inverse depths of this image.

    Args:
        depth: (H, W) metres.
    Returns:
        (H, W, 3) uint8 BGR.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise InputError(f"depth must be an (H, W) array, got shape {depth.shape}")
    for name, value in (("min_depth", min_depth), ("max_depth", max_depth)):
        if value is not None and not value > 0:
            raise InputError(f"{name} must be > 0, got {value}")
    if min_depth is not None and max_depth is not None and min_depth >= max_depth:
        raise InputError(f"min_depth {min_depth} must be smaller than max_depth {max_depth}")
    lo_pct, hi_pct = percentiles
    if not 0 <= lo_pct < hi_pct <= 100:
        raise InputError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")

    out = np.zeros(depth.shape + (3,), np.uint8)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
    if not valid.any():
        return out
    inv = 1.0 / depth[valid]
    inv_lo = 1.0 / max_depth if max_depth is not None else np.percentile(inv, lo_pct)
    inv_hi = 1.0 / min_depth if min_depth is not None else np.percentile(inv, hi_pct)
    level = np.clip((inv - inv_lo) / max(inv_hi - inv_lo, 1e-12), 0.0, 1.0)
    grey = np.zeros(depth.shape, np.uint8)
    grey[valid] = np.round(level * 255).astype(np.uint8)
    out[:] = cv2.applyColorMap(grey, colormap)
    out[~valid] = 0
    return out


def depth_strip(path: str | Path, rgbs: list[np.ndarray], depths: list[np.ndarray], labels: list[str] | None = None,
                width: int = 640) -> Path:
    """Write a PNG with one row per frame: the RGB image beside its colour-mapped depth.

    Each depth map is coloured on its own inverse-depth percentiles; rows are resized to
    `width` pixels per half.

    Args:
        rgbs: (H,W,3) uint8 RGB frames; depths: (h,w) metres (any resolution).
        labels: optional text drawn on each row.
    Returns:
        the PNG path.
    """
    if not rgbs or len(rgbs) != len(depths):
        raise InputError(f"depth strip needs as many depth maps as frames (at least one), "
                         f"got {len(rgbs)} and {len(depths)}")
    rows = []
    for k, (rgb, depth) in enumerate(zip(rgbs, depths)):
        h = max(1, round(rgb.shape[0] * width / rgb.shape[1]))
        left = cv2.resize(cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2BGR), (width, h),
                          interpolation=cv2.INTER_AREA)
        right = cv2.resize(colorize_depth(depth), (width, h), interpolation=cv2.INTER_NEAREST)
        row = np.concatenate([left, right], axis=1)
        if labels:
            # white on a black box: OpenCV 5 draws thicker text wider, so an outline drawn with a
            # thicker stroke no longer lines up with the letters
            (w, h), base = cv2.getTextSize(labels[k], cv2.FONT_HERSHEY_SIMPLEX, 0.55, 1)
            cv2.rectangle(row, (4, 20 - h - 4), (12 + w, 20 + base + 2), (0, 0, 0), cv2.FILLED)
            cv2.putText(row, labels[k], (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(row)
    return _write_png(path, np.concatenate(rows, axis=0))


def _write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write `image` as a PNG whatever the name's suffix (cv2.imwrite raised on an unknown one),
    whole or not at all; OSError naming the path when it cannot be written (a directory, a full disk)."""
    path = Path(path)
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise InputError(f"{path}: cannot encode the picture as PNG")
    # a picture is shared like any other output, not private like a temporary file
    atomic_write_bytes(path, png.tobytes(), mode=0o644)
    return path
