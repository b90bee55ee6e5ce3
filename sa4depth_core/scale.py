"""Metric scale for monocular depth: relative, a fixed factor, or from the known height of the
camera above a ground plane fitted in the lower part of the image."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

SCALE_MODES = ("relative", "fixed", "camera_height")
# A factor outside this range is a typo, not a camera: its products overflow float covariances.
SCALE_FACTOR_RANGE = (1e-6, 1e6)
CAMERA_HEIGHT_RANGE = (1e-3, 1e3)  # metres


def fit_ground_plane(points: np.ndarray, iterations: int = 64, inlier_frac_tol: float = 0.02,
                     rng: np.random.Generator | None = None) -> tuple[np.ndarray, float, float] | None:
    """RANSAC plane n·X + d = 0 through camera-frame points, refined by least squares.

    Args:
        points: (N,3) in the camera frame (x right, y down, z forward).
        inlier_frac_tol: inlier distance as a fraction of each point's depth, so near and far
            parts of the road count alike.
    Returns:
        (normal (3,), d, inlier fraction) with the normal pointing up (negative y), or None when
        no plane with at least 30 % inliers was found.
    """
    pts = points[np.isfinite(points).all(1) & (points[:, 2] > 0)]
    if len(pts) < 20:
        return None
    rng = rng or np.random.default_rng(0)
    tol = inlier_frac_tol * pts[:, 2]
    best, best_count = None, 0
    for _ in range(iterations):
        a, b, c = pts[rng.choice(len(pts), 3, replace=False)]
        n = np.cross(b - a, c - a)
        norm = np.linalg.norm(n)
        if norm < 1e-9:
            continue
        n = n / norm
        # The road is roughly horizontal in a forward-looking camera: reject walls early.
        if abs(n[1]) < 0.7:
            continue
        inliers = np.abs(pts @ n - n @ a) < tol
        if inliers.sum() > best_count:
            best, best_count = inliers, int(inliers.sum())
    if best is None or best_count < 0.3 * len(pts):
        return None
    inl = pts[best]
    centroid = inl.mean(0)
    _, _, vt = np.linalg.svd(inl - centroid, full_matrices=False)
    n = vt[-1]
    if n[1] > 0:
        n = -n
    return n, float(-n @ centroid), best_count / len(pts)


def camera_height_from_depth(depth: np.ndarray, K: np.ndarray, region_top: float = 0.6,
                             stride: int = 4) -> tuple[float, float] | None:
    """Height of the camera above the ground plane seen in the image's lower part.

    Args:
        depth: (H,W) depth (any consistent unit; NaN/<=0 invalid).
        K: (3,3) intrinsics of the depth map.
        region_top: the plane is searched below this fraction of the image height.
    Returns:
        (height in depth units, inlier fraction), or None without a credible plane.
    """
    H, W = depth.shape
    v0 = int(region_top * H)
    vs, us = np.mgrid[v0:H:stride, 0:W:stride]
    d = depth[vs, us]
    ok = np.isfinite(d) & (d > 0)
    if ok.sum() < 20:
        return None
    rays = np.linalg.inv(K) @ np.stack([us[ok], vs[ok], np.ones(ok.sum())]).astype(np.float64)
    plane = fit_ground_plane((rays * d[ok]).T)
    if plane is None:
        return None
    _, dist, inlier_frac = plane
    # With the normal pointing up, the camera origin lies at signed distance d above the plane.
    return (abs(dist), inlier_frac) if dist > 0 else None


@dataclass
class ScaleEstimator:
    """Turns network depth into output depth according to a scale mode.

    mode: relative (network units), fixed (multiply by `factor`), camera_height (metres from
    the known mounting height, smoothed over frames with a running median so that one bad
    plane fit does not make the scale jump).
    """

    mode: str = "relative"
    factor: float = 1.0
    camera_height: float = 1.65
    window: int = 15

    def __post_init__(self):
        if self.mode not in SCALE_MODES:
            raise InputError(f"scale mode '{self.mode}' is not one of {', '.join(SCALE_MODES)}")
        lo, hi = SCALE_FACTOR_RANGE
        if self.mode == "fixed" and not lo <= self.factor <= hi:
            raise InputError(f"fixed scale factor must be a positive number in [{lo:g}, {hi:g}], got {self.factor}")
        lo, hi = CAMERA_HEIGHT_RANGE
        if self.mode == "camera_height" and not lo <= self.camera_height <= hi:
            raise InputError(f"camera_height must be a positive number of metres in [{lo:g}, {hi:g}], "
                             f"got {self.camera_height}")
        self._history: list[float] = []
        self.last_fit_ok = False

    @property
    def scale(self) -> float:
        """The factor applied to network depth now (1 until a camera-height fit succeeded)."""
        if self.mode == "fixed":
            return self.factor
        if self.mode == "camera_height" and self._history:
            return float(np.median(self._history))
        return 1.0

    @property
    def ready(self) -> bool:
        """False while camera_height mode still waits for its first ground-plane fit (scale 1)."""
        return self.mode != "camera_height" or bool(self._history)

    def update(self, depth: np.ndarray, K: np.ndarray) -> float:
        """Feed one network depth map (H,W) with its intrinsics; returns the scale to apply."""
        if self.mode == "camera_height":
            fit = camera_height_from_depth(depth, K)
            self.last_fit_ok = fit is not None
            if fit is not None:
                self._history.append(self.camera_height / fit[0])
                self._history = self._history[-self.window:]
        return self.scale

    def describe(self) -> str:
        if self.mode == "fixed":
            return f"fixed x{self.factor:g}"
        if self.mode == "camera_height":
            state = "fitted" if self.ready else "waiting for a ground-plane fit"
            return f"camera_height {self.camera_height:g} m ({state}, scale {self.scale:.4g})"
        return "relative (network units, not metres)"

    def reset(self) -> None:
        self._history.clear()
