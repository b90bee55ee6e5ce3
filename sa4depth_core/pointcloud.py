"""Depth map to an organised 3-D point grid (numpy only, so message packers need no torch)."""
from __future__ import annotations

import numpy as np

from .errors import InputError


def depth_to_points(depth: np.ndarray, K: np.ndarray, stride: int = 1) -> np.ndarray:
    """Back-project every `stride`-th pixel of a z-depth map into its camera frame.

    Pixel centres sit at integer (u, v), as in `sa4depth_core.geometry`. The camera frame is the
    optical one: x right, y down, z forward.

    Args:
        depth: (H, W) z-depth in metres; 0, negative or non-finite values are invalid.
        K: (3, 3) pinhole intrinsics of `depth` in pixels.
        stride: keep rows and columns 0, stride, 2*stride, ...
    Returns:
        (ceil(H/stride), ceil(W/stride), 3) float32 points; NaN in all three for invalid pixels.
    """
    depth = np.asarray(depth)
    K = np.asarray(K, dtype=np.float64)
    if depth.ndim != 2:
        raise InputError(f"depth must be a (H, W) array, got shape {depth.shape}")
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"K must be a finite (3, 3) intrinsics matrix with fx, fy > 0, got {K.tolist()}")
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise InputError(f"stride must be an integer >= 1, got {stride!r}")

    z = depth[::stride, ::stride].astype(np.float64)
    v = np.arange(0, depth.shape[0], stride, dtype=np.float64)[:, None]
    u = np.arange(0, depth.shape[1], stride, dtype=np.float64)[None, :]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    # The skew term K[0,1] is kept so a sheared calibration still inverts exactly.
    y = (v - cy) / fy * z
    x = ((u - cx) / fx - K[0, 1] * (v - cy) / (fx * fy)) * z
    points = np.stack(np.broadcast_arrays(x, y, z), axis=-1).astype(np.float32)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(z) & (z > 0)
    points[~valid] = np.nan
    return points
