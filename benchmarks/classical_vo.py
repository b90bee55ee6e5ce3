"""A classical two-view monocular odometry with OpenCV: the anchor the learned odometry is compared
with on real footage (issue 24).

Per consecutive pair: KLT tracks (Shi-Tomasi corners, pyramidal Lucas-Kanade forward and backward),
five-point essential matrix with RANSAC, recoverPose. Each step's translation has unit length:
two views give no scale, so the raw trajectory is scored by metrics that fit or ignore scale
(5-frame snippet ATE, rotation and direction errors); `depth_scaled` gives each step the scale of
a depth map (the depth network's) for a full trajectory.

It lives in benchmarks/, not in sa4depth_core: it is a yardstick for the benchmarks, not something
the node or the evaluator runs.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class KltParams:
    """Tracker and RANSAC settings (left at common OpenCV values, not tuned on any test frames).

    fb_max: largest forward-backward disagreement (px) a track may have; ransac_px: the
    essential matrix's inlier threshold; min_inliers: fewer makes the pair a failure.
    """

    max_corners: int = 1500
    quality: float = 0.005
    min_distance: int = 6
    window: int = 21
    levels: int = 3
    fb_max: float = 1.0
    ransac_px: float = 1.0
    ransac_prob: float = 0.999
    min_inliers: int = 15


@dataclass
class PairMotion:
    """One step. rel: (4,4) frame-t -> frame-(t+1) coordinates (the network convention), unit
    translation (zero when `ok` is False). points: (M,3) recoverPose's triangulated inliers in
    frame t at that unit scale; pixels: (M,2) where they were seen in frame t; inliers: count."""

    rel: np.ndarray
    points: np.ndarray
    pixels: np.ndarray
    inliers: int
    ok: bool


def track(prev: np.ndarray, cur: np.ndarray, params: KltParams = KltParams()) -> tuple[np.ndarray, np.ndarray]:
    """(N,2) float32 corners of `prev` and where they went in `cur`, kept only when tracking back
    from `cur` lands within fb_max px of the start (the check that drops most wrong tracks)."""
    corners = cv2.goodFeaturesToTrack(prev, params.max_corners, params.quality, params.min_distance)
    if corners is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    lk = dict(winSize=(params.window, params.window), maxLevel=params.levels,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    fwd, st1, _ = cv2.calcOpticalFlowPyrLK(prev, cur, corners, None, **lk)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(cur, prev, fwd, None, **lk)
    good = (st1.ravel() == 1) & (st2.ravel() == 1) & (np.linalg.norm((back - corners).reshape(-1, 2), axis=1)
                                                       < params.fb_max)
    return corners.reshape(-1, 2)[good], fwd.reshape(-1, 2)[good]


def two_view(prev: np.ndarray, cur: np.ndarray, K: np.ndarray, params: KltParams = KltParams()) -> PairMotion:
    """The motion between two grey uint8 frames with intrinsics K (3,3)."""
    failed = PairMotion(np.eye(4), np.zeros((0, 3)), np.zeros((0, 2)), 0, False)
    p0, p1 = track(prev, cur, params)
    if len(p0) < params.min_inliers:
        return failed
    E, mask = cv2.findEssentialMat(p0, p1, K, cv2.RANSAC, params.ransac_prob, params.ransac_px)
    if E is None or mask is None or E.shape[0] < 3:
        return failed
    # several solutions come stacked when the five-point problem is ambiguous; RANSAC ranked the first best
    n, R, t, mask, X = cv2.recoverPose(E[:3], p0, p1, K, distanceThresh=1e4, mask=mask.copy())
    keep = mask.ravel() > 0
    if n < params.min_inliers or keep.sum() < params.min_inliers:
        return failed
    rel = np.eye(4)
    rel[:3, :3], rel[:3, 3] = R, t.ravel() / np.linalg.norm(t)
    X = X[:, keep]
    points = (X[:3] / X[3]).T
    return PairMotion(rel, points, p0[keep].astype(np.float64), int(keep.sum()), True)


def run(frames, K: np.ndarray, params: KltParams = KltParams()) -> list[PairMotion]:
    """One PairMotion per consecutive pair of grey uint8 `frames` (an iterable of (H,W) arrays)."""
    out, prev = [], None
    for cur in frames:
        if prev is not None:
            out.append(two_view(prev, cur, K, params))
        prev = cur
    return out


def step_scale(motion: PairMotion, depth: np.ndarray, image_hw: tuple[int, int]) -> float:
    """Metres (or the depth's units) per unit step: median over the triangulated inliers of the
    depth map's value at their pixel over their unit-scale depth. NaN when no point has both.

    depth: (h,w) depth of the pair's first frame at any resolution (sampled at the nearest pixel
    of the image of size image_hw), NaN or <= 0 where unknown.
    """
    if not motion.ok or not len(motion.points):
        return float("nan")
    h, w = depth.shape
    H, W = image_hw
    u = np.clip(np.round((motion.pixels[:, 0] + 0.5) * w / W - 0.5).astype(int), 0, w - 1)
    v = np.clip(np.round((motion.pixels[:, 1] + 0.5) * h / H - 0.5).astype(int), 0, h - 1)
    d, z = depth[v, u], motion.points[:, 2]
    # points the two views hardly separate (far away, or near the epipole) have no usable unit depth
    good = np.isfinite(d) & (d > 0) & (z > 1e-3) & (z < 200.0)
    return float(np.median(d[good] / z[good])) if good.sum() >= 5 else float("nan")


def depth_scaled(motions: list[PairMotion], depths: list[np.ndarray], image_hw: tuple[int, int]) -> np.ndarray:
    """(N-1,4,4) relative poses with each step's translation in the units of `depths` (one per
    frame, the pair's first frame used). A step whose scale cannot be read keeps the previous
    step's scale (the first known one before any): a constant speed is the least surprising guess
    for a car."""
    scales = np.array([step_scale(m, d, image_hw) for m, d in zip(motions, depths)])
    known = np.flatnonzero(np.isfinite(scales))
    if not len(known):
        raise ValueError("no step of the classical odometry could be given a scale from the depth maps")
    filled = scales.copy()
    filled[:known[0]] = scales[known[0]]
    for i in range(known[0] + 1, len(filled)):
        if not np.isfinite(filled[i]):
            filled[i] = filled[i - 1]
    rel = np.stack([m.rel for m in motions]).copy()
    rel[:, :3, 3] *= filled[:, None]
    return rel
