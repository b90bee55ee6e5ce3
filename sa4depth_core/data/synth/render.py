"""Ray-casting of synthetic scenes: exact z-depth and colour per pixel.

Each pixel is the exact intersection of its ray through the pixel centre (u, v integer, the
OpenCV/KITTI convention) with the nearest primitive. The intersection is evaluated in
homogeneous screen space: for a primitive with corner V0 and edges E1, E2 in camera
coordinates, M^-1 K^-1 [u, v, 1] = (1/z, a/z, b/z), where M = [V0 E1 E2] and (a, b) are the
hit's coordinates along the edges. All three are affine in (u, v), so the nearest hit is a
depth test on 1/z over the primitive's screen bounding box.

Sky: pixels whose ray meets nothing closer than the scene's `max_depth` show a sky colour that
depends on the ray's elevation only and have depth 0 (invalid), as KITTI's LiDAR depth does.
"""
from __future__ import annotations

import numpy as np

from sa4depth_core.data.synth.scene import Scene
from sa4depth_core.data.synth.texture import surface_colour
from sa4depth_core.errors import InputError

_EDGE_TOL = 1e-5  # shared edges overlap by this fraction so no pixel falls between primitives
_NEAR = 0.05
_MIN_COS = 0.02
_SHADE_BLOCK = 32768
# Monodepth2's KITTI intrinsics normalised by image width (row 0) and height (row 1).
NORMALISED_K = np.array([[0.58, 0.0, 0.5], [0.0, 1.92, 0.5], [0.0, 0.0, 1.0]])


def default_intrinsics(height: int, width: int) -> np.ndarray:
    """KITTI-like pinhole intrinsics for an image of the given size.

    Returns:
        (3,3) float64; 192x640 gives fx=371.2, fy=368.64, cx=320, cy=96.
    """
    return NORMALISED_K * np.array([[width], [height], [1.0]])


def _check_camera(K, cam_to_world, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    K = np.asarray(K, dtype=np.float64)
    T = np.asarray(cam_to_world, dtype=np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0 \
            or np.any(K[2] != (0, 0, 1)) or K[1, 0] != 0:
        raise InputError(f"intrinsics must be a finite (3,3) upper-triangular K with fx, fy > 0, got {K.tolist()}")
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise InputError(f"camera pose must be a finite (4,4) camera-to-world matrix, got shape {T.shape}")
    if np.abs(T[:3, :3].T @ T[:3, :3] - np.eye(3)).max() > 1e-6:
        raise InputError("camera pose rotation is not orthonormal")
    if int(height) != height or int(width) != width or height < 1 or width < 1:
        raise InputError(f"image size must be positive integers, got {height}x{width}")
    return K, T


def _screen_boxes(corners: np.ndarray, K: np.ndarray, height: int, width: int, far: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel bounding boxes of polygons clipped to z >= _NEAR.

    Args:
        corners: (N,4,3) camera-frame polygon corners in order.
    Returns:
        boxes (N,4) int rows [r0, r1) and columns [c0, c1); ok (N,) bool, False if off-screen.
    """
    z = corners[..., 2]
    nxt = np.roll(corners, -1, axis=1)
    zn = nxt[..., 2]
    crossing = (z - _NEAR) * (zn - _NEAR) < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(crossing, (_NEAR - z) / (zn - z), 0.0)
    cut = corners + s[..., None] * (nxt - corners)
    points = np.concatenate([corners, cut], axis=1)
    valid = np.concatenate([z >= _NEAR, crossing], axis=1)
    pz = np.where(valid, points[..., 2], 1.0)
    px = (K[0, 0] * points[..., 0] + K[0, 1] * points[..., 1]) / pz + K[0, 2]
    py = K[1, 1] * points[..., 1] / pz + K[1, 2]
    umin = np.where(valid, px, np.inf).min(1)
    umax = np.where(valid, px, -np.inf).max(1)
    vmin = np.where(valid, py, np.inf).min(1)
    vmax = np.where(valid, py, -np.inf).max(1)
    ok = valid.any(1) & (z.min(1) < far)
    # One pixel of slack: the exact coverage test decides, the box only bounds the work.
    c0 = np.clip(np.floor(np.where(ok, umin, 0)) - 1, 0, width)
    c1 = np.clip(np.ceil(np.where(ok, umax, 0)) + 2, 0, width)
    r0 = np.clip(np.floor(np.where(ok, vmin, 0)) - 1, 0, height)
    r1 = np.clip(np.ceil(np.where(ok, vmax, 0)) + 2, 0, height)
    ok &= (c1 > c0) & (r1 > r0)
    return np.stack([r0, r1, c0, c1], axis=1).astype(np.int64), ok

def _rasterise(scene: Scene, K: np.ndarray, R: np.ndarray, t: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest primitive per pixel.

    Returns:
        inverse z-depth (H,W) float32 (1/max_depth where nothing is hit) and primitive ids
        (H,W) int64 (-1 = sky).
    """
    inv_far = np.float32(1.0 / scene.max_depth)
    inv_depth = np.full((height, width), inv_far, np.float32)
    ids = np.full((height, width), -1, np.int64)
    in_range = np.linalg.norm(scene.centre - t, axis=1) - scene.radius < scene.max_depth
    facing = np.einsum("ij,ij->i", scene.normal, t - scene.origin) > 0
    cand = np.flatnonzero(in_range & facing)
    v0 = (scene.origin[cand] - t) @ R
    e1 = scene.edge1[cand] @ R
    e2 = scene.edge2[cand] @ R
    tri = scene.is_triangle[cand]
    far_corner = np.where(tri[:, None], v0 + e2, v0 + e1 + e2)
    corners = np.stack([v0, v0 + e1, far_corner, v0 + e2], axis=1)
    boxes, ok = _screen_boxes(corners, K, height, width, scene.max_depth)
    M = np.stack([v0, e1, e2], axis=2)
    size = np.linalg.norm(v0, axis=1) * np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1)
    # A plane through the camera centre projects to a line: it covers no pixel centre robustly.
    ok &= np.abs(np.linalg.det(M)) > 1e-9 * size
    sel = np.flatnonzero(ok)
    if sel.size == 0:
        return inv_depth, ids
    to_centred = np.array([[1.0, 0.0, K[0, 2]], [0.0, 1.0, K[1, 2]], [0.0, 0.0, 1.0]])
    coef = (np.linalg.inv(M[sel]) @ (np.linalg.inv(K) @ to_centred)).astype(np.float32)
    uc = (np.arange(width) - K[0, 2]).astype(np.float32)
    vc = (np.arange(height) - K[1, 2]).astype(np.float32)[:, None]
    tol = np.float32(_EDGE_TOL)
    # Near primitives first, so most hidden ones fail the cheap depth test below.
    for j in np.argsort(corners[sel, :, 2].min(axis=1), kind="stable"):
        r0, r1, c0, c1 = boxes[sel[j]]
        (a0, b0, d0), (a1, b1, d1), (a2, b2, d2) = coef[j]
        uu, vv = uc[c0:c1], vc[r0:r1]
        m0 = a0 * uu + (b0 * vv + d0)
        buf = inv_depth[r0:r1, c0:c1]
        hit = m0 > buf
        if not hit.any():
            continue
        m1 = a1 * uu + (b1 * vv + d1)
        m2 = a2 * uu + (b2 * vv + d2)
        slack = m0 * tol
        hit &= m1 >= -slack
        hit &= m2 >= -slack
        if tri[sel[j]]:
            hit &= m1 + m2 <= m0 + slack
        else:
            hit &= m1 <= m0 + slack
            hit &= m2 <= m0 + slack
        np.copyto(buf, m0, where=hit)
        ids[r0:r1, c0:c1][hit] = cand[sel[j]]
    return inv_depth, ids


def _shade(scene: Scene, K: np.ndarray, R: np.ndarray, t: np.ndarray, ids: np.ndarray, inv_depth: np.ndarray) -> np.ndarray:
    """Colour every pixel from its primitive (or the sky) and depth.

    Args:
        ids, inv_depth: (H,W) from `_rasterise`.
    Returns:
        (H,W,3) uint8 RGB.
    """
    height, width = ids.shape
    Kinv = np.linalg.inv(K)
    # Per primitive, for this camera: uv = z * (G @ ray) + h, and the normal in camera axes.
    G = scene.uv_matrix @ R
    h = scene.uv_matrix @ t + scene.uv_offset
    frame_table = np.concatenate([G[:, 0], h[:, :1], G[:, 1], h[:, 1:], scene.normal @ R], axis=1)
    flat_ids, flat_inv = ids.ravel(), inv_depth.ravel()
    cols, rows = np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64)[:, None]
    ray_x = (Kinv[0, 0] * cols + (Kinv[0, 1] * rows + Kinv[0, 2])).ravel()  # camera-frame ray (x, y, 1)
    ray_y = np.broadcast_to(Kinv[1, 1] * rows + Kinv[1, 2], (height, width)).ravel()
    rgb = np.empty((height * width, 3), np.uint8)
    # Blocks small enough for the CPU cache: the shading is many passes over short arrays.
    for start in range(0, height * width, _SHADE_BLOCK):
        block = np.arange(start, min(start + _SHADE_BLOCK, height * width))
        sky = flat_ids[block] < 0
        for pix in (block[sky], block[~sky]):
            if pix.size == 0:
                continue
            rx, ry = ray_x[pix], ray_y[pix]
            ray_len = np.sqrt(rx * rx + ry * ry + 1)
            prim = flat_ids[pix]
            if prim[0] < 0:
                elevation = -(R[1, 0] * rx + R[1, 1] * ry + R[1, 2]) / ray_len
                mix = np.clip(elevation / 0.4, 0, 1).astype(np.float32)[:, None]
                colour = 255 * (scene.sky_horizon + (scene.sky_zenith - scene.sky_horizon) * mix)
            else:
                z = 1.0 / flat_inv[pix].astype(np.float64)
                g = np.take(frame_table, prim, axis=0)
                u = z * (g[:, 0] * rx + g[:, 1] * ry + g[:, 2]) + g[:, 3]
                v = z * (g[:, 4] * rx + g[:, 5] * ry + g[:, 6]) + g[:, 7]
                cos = np.abs(g[:, 8] * rx + g[:, 9] * ry + g[:, 10]) / ray_len
                # Geometric mean of the along- and across-slope footprints: a compromise between
                # blurring grazing surfaces completely and letting them alias.
                footprint = (z * ray_len / np.sqrt(K[0, 0] * K[1, 1] * np.maximum(cos, _MIN_COS))).astype(np.float32)
                colour = surface_colour(scene, scene.material[prim], u, v, footprint) * (255 * scene.shade[prim])[:, None]
            rgb[pix] = np.clip(np.rint(colour), 0, 255).astype(np.uint8)
    return rgb.reshape(height, width, 3)


def render_frame(scene: Scene, K: np.ndarray, cam_to_world: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast one frame.

    Args:
        scene: the geometry; K: (3,3) pixel intrinsics; cam_to_world: (4,4).
        height, width: image size H, W in pixels.
    Returns:
        rgb (H,W,3) uint8 and z-depth (H,W) float32 metres (0 = sky, nothing within max_depth).
    """
    K, T = _check_camera(K, cam_to_world, height, width)
    R, t = T[:3, :3], T[:3, 3]
    inv_depth, ids = _rasterise(scene, K, R, t, height, width)
    depth = np.where(ids >= 0, 1.0 / inv_depth, 0.0).astype(np.float32)
    return _shade(scene, K, R, t, ids, inv_depth), depth

