"""Synthetic street sequences with exact depth and pose, written in the KITTI odometry layout.

Geometry is a set of planar parallelograms and triangles (road strip, building blocks, parked
cars, poles) placed along the camera path. Each pixel is the exact intersection of its ray
through the pixel centre (u, v integer, the OpenCV/KITTI convention) with the nearest
primitive. The intersection is evaluated in homogeneous screen space: for a primitive with
corner V0 and edges E1, E2 in camera coordinates, M^-1 K^-1 [u, v, 1] = (1/z, a/z, b/z), where
M = [V0 E1 E2] and (a, b) are the hit's coordinates along the edges. All three are affine in
(u, v), so the nearest hit is a depth test on 1/z over the primitive's screen bounding box.

Colour is a function of the world point only (material texture in metres on the surface times
a constant Lambertian shade per face), so brightness constancy between frames is exact up to
texture band-limiting: noise octaves finer than the pixel footprint fade out smoothly (the
footprint grows with distance and grazing angle), which keeps distant surfaces from aliasing.

Sky: pixels whose ray meets nothing closer than `max_depth` (80 m by default) show a sky colour
that depends on the ray's elevation only and have depth 0 (invalid), as KITTI's LiDAR depth
does; buildings line the whole path so such pixels are a small share of a frame.

On disk (root = the output directory, SS = the sequence name):
  sequences/SS/image_2/%06d.png   RGB frames (stored BGR by OpenCV)
  sequences/SS/depth_2/%06d.png   uint16 z-depth, metres = value / 256, 0 = invalid
  sequences/SS/calib.txt          P0..P3 (3x4) and Tr (3x4 identity); P2 = [K | 0]
  sequences/SS/times.txt          seconds at 10 Hz
  sequences/SS/synth.json         generator parameters
  poses/SS.txt                    camera-to-world 3x4 of camera 2, frame 0 = identity
"""
from __future__ import annotations

import argparse
import colorsys
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from sa4depth_core.data import trajectories
from sa4depth_core.data.pose_io import save_kitti_poses
from sa4depth_core.errors import InputError

GENERATOR_VERSION = 1
# Monodepth2's KITTI intrinsics normalised by image width (row 0) and height (row 1).
NORMALISED_K = np.array([[0.58, 0.0, 0.5], [0.0, 1.92, 0.5], [0.0, 0.0, 1.0]])
DEPTH_PNG_SCALE = 256.0
FRAME_RATE_HZ = 10.0
STEREO_BASELINE_M = 0.54  # KITTI's; only written into P1/P3, no right images are rendered
TRAJECTORY_KINDS = ("car", "handheld", "kitti")

_LATTICE = 256  # value-noise tables are periodic over this many cells
_DETAIL_BASE_FREQ = 0.6  # lattice cells per metre of the coarsest grain octave
_DETAIL_OCTAVES = 6  # finest cell ~5 cm
_DETAIL_AMPS = (0.8 ** np.arange(_DETAIL_OCTAVES)).astype(np.float32)
_NOISE_TABLES = 1 + _DETAIL_OCTAVES  # one for blotches, one per grain octave
_EDGE_TOL = 1e-5  # shared edges overlap by this fraction so no pixel falls between primitives
_NEAR = 0.05
_MIN_COS = 0.02
_SHADE_BLOCK = 32768


def default_intrinsics(height: int, width: int) -> np.ndarray:
    """KITTI-like pinhole intrinsics for an image of the given size.

    Returns:
        (3,3) float64; 192x640 gives fx=371.2, fy=368.64, cx=320, cy=96.
    """
    return NORMALISED_K * np.array([[width], [height], [1.0]])


@dataclass(frozen=True)
class Scene:
    """Static textured geometry, built by `SceneBuilder`; P primitives, M materials.

    Primitive i covers origin[i] + a*edge1[i] + b*edge2[i] with a, b >= 0 and a + b <= 1
    (triangle) or a, b <= 1 (parallelogram); it is visible only from the side its normal
    points to. Texture coordinates in metres are uv = uv_matrix[i] @ X + uv_offset[i].
    """

    is_triangle: np.ndarray  # (P,) bool
    origin: np.ndarray  # (P,3) float64 world
    edge1: np.ndarray  # (P,3)
    edge2: np.ndarray  # (P,3)
    normal: np.ndarray  # (P,3) unit, visible side
    centre: np.ndarray  # (P,3) bounding-sphere centre
    radius: np.ndarray  # (P,)
    uv_matrix: np.ndarray  # (P,2,3)
    uv_offset: np.ndarray  # (P,2)
    material: np.ndarray  # (P,) int
    shade: np.ndarray  # (P,) float32 Lambertian factor
    mat_base: np.ndarray  # (M,3) float32 RGB in [0,1]
    mat_blotch: np.ndarray  # (M,3) colour of the coarse blotches
    mat_blotch_freq: np.ndarray  # (M,) cells per metre
    mat_grain: np.ndarray  # (M,) amplitude of the fine grain
    mat_window: np.ndarray  # (M,3) window colour
    mat_window_cell: np.ndarray  # (M,2) window spacing (u, v) in metres, 0 = no windows
    mat_window_frac: np.ndarray  # (M,2) window size as a fraction of the spacing
    mat_shift: np.ndarray  # (M,2) per-material texture shift so materials do not share noise
    noise: np.ndarray  # (_NOISE_TABLES, _LATTICE**2, 4) float32 in [0,1], see _noise_quads
    sky_horizon: np.ndarray  # (3,)
    sky_zenith: np.ndarray  # (3,)
    max_depth: float


class SceneBuilder:
    """Collects materials and primitives and freezes them into a `Scene`.

    Args:
        seed: seeds the noise tables and per-material texture shifts.
        max_depth: hits farther than this (metres, z-depth) are sky.
        sun: direction towards the sun in world coordinates (y down), for the face shading.
        ambient: shade of faces turned away from the sun.
    """

    def __init__(self, seed: int = 0, max_depth: float = 80.0, sun=(0.35, -0.8, 0.45), ambient: float = 0.55,
                 sky_horizon=(0.78, 0.84, 0.90), sky_zenith=(0.45, 0.60, 0.85)):
        if not np.isfinite(max_depth) or not 1.0 <= max_depth <= 255.0:
            raise InputError(f"max depth must be within 1..255 m (the uint16/256 depth PNG range), got {max_depth!r}")
        self._rng = np.random.default_rng(seed)
        self._max_depth = float(max_depth)
        sun = np.asarray(sun, dtype=np.float64)
        self._sun = sun / np.linalg.norm(sun)
        self._ambient = float(ambient)
        self._sky = (np.asarray(sky_horizon, np.float32), np.asarray(sky_zenith, np.float32))
        self._materials: list[tuple] = []
        self._prims: list[tuple] = []

    def add_material(self, base, blotch=None, blotch_scale: float = 4.0, grain: float = 0.15,
                     windows: tuple | None = None) -> int:
        """Register a material and return its index.

        Args:
            base: RGB in [0,1]; blotch: RGB of coarse patches (default: base).
            blotch_scale: patch size in metres; grain: strength of the fine multi-scale grain.
            windows: None or (cell_u, cell_v, frac_u, frac_v, rgb): a window grid in metres.
        """
        base = np.clip(np.asarray(base, np.float32), 0, 1)
        blotch = base if blotch is None else np.clip(np.asarray(blotch, np.float32), 0, 1)
        if windows is None:
            cell, frac, wcol = (0.0, 0.0), (0.0, 0.0), base
        else:
            cell, frac, wcol = windows[:2], windows[2:4], np.clip(np.asarray(windows[4], np.float32), 0, 1)
        shift = self._rng.uniform(0, 1000, size=2)
        self._materials.append((base, blotch, 1.0 / blotch_scale, grain, wcol, cell, frac, shift))
        return len(self._materials) - 1

    def _add(self, triangle: bool, origin, e1, e2, material: int, normal=None, uv=None) -> None:
        origin, e1, e2 = (np.asarray(a, np.float64).reshape(3) for a in (origin, e1, e2))
        if not 0 <= material < len(self._materials):
            raise InputError(f"material {material} is not registered (have {len(self._materials)})")
        n = np.cross(e1, e2)
        length = np.linalg.norm(n)
        if length < 1e-12:
            raise InputError("primitive edges are parallel or zero: the primitive has no area")
        n = n / length
        if normal is not None:
            side = float(n @ np.asarray(normal, np.float64))
            if side == 0:
                raise InputError("the given normal lies in the primitive's plane: it picks no side")
            n = n if side > 0 else -n
        if uv is None:
            a1 = e1 / np.linalg.norm(e1)
            a2 = e2 - a1 * (a1 @ e2)
            axes = np.stack([a1, a2 / np.linalg.norm(a2)])
            uv = (axes, -axes @ origin)
        self._prims.append((triangle, origin, e1, e2, n, np.asarray(uv[0], np.float64), np.asarray(uv[1], np.float64), material))

    def add_parallelogram(self, origin, edge1, edge2, material: int, normal=None, uv=None) -> None:
        """Add origin + a*edge1 + b*edge2, 0 <= a, b <= 1 (all (3,) world).

        The primitive is visible from the side of cross(edge1, edge2), or from the side of `normal`
        if given; uv = (axes (2,3), offset (2,)) defaults to an orthonormal frame along edge1
        anchored at origin.
        """
        self._add(False, origin, edge1, edge2, material, normal, uv)

    def add_triangle(self, v0, v1, v2, material: int, normal=None, uv=None) -> None:
        """Add the triangle v0, v1, v2 (each (3,) world).

        It is visible from the side of cross(v1 - v0, v2 - v0), or from the side of `normal` if given.
        """
        v0 = np.asarray(v0, np.float64)
        self._add(True, v0, np.asarray(v1, np.float64) - v0, np.asarray(v2, np.float64) - v0, material, normal, uv)

    def add_box(self, base_centre, forward, size, material: int, top_material: int | None = None) -> None:
        """Add an upright box: four walls and a roof (no floor).

        Args:
            base_centre: (3,) centre of the bottom face; forward: (3,) direction of the length
            axis (projected to horizontal); size: (length, width, height) in metres.
        """
        f = np.asarray(forward, np.float64) * np.array([1.0, 0.0, 1.0])
        f /= np.linalg.norm(f)
        r = np.array([f[2], 0.0, -f[0]])
        up = np.array([0.0, -1.0, 0.0])
        length, width, height = size
        x, z, y = f * length, r * width, up * height
        o = np.asarray(base_centre, np.float64) - x / 2 - z / 2
        walls = ((o, x, -r), (o + z, x, r), (o, z, -f), (o + x, z, f))
        for origin, horizontal, outward in walls:
            axes = np.stack([horizontal / np.linalg.norm(horizontal), up])
            self._add(False, origin, horizontal, y, material, outward, (axes, -axes @ origin))
        self._add(False, o + y, x, z, material if top_material is None else top_material, up)

    def build(self) -> Scene:
        """Freeze into a `Scene` (the builder may be reused afterwards)."""
        if not self._materials:
            raise InputError("a scene needs at least one material")
        if not self._prims:
            raise InputError("a scene needs at least one primitive")
        tri, origin, e1, e2, normal, uvm, uvo, mat = (np.array(list(c)) for c in zip(*self._prims))
        far = np.where(tri[:, None], origin + e2, origin + e1 + e2)
        corners = np.stack([origin, origin + e1, far, origin + e2], axis=1)
        centre = corners.mean(axis=1)
        radius = np.linalg.norm(corners - centre[:, None], axis=2).max(axis=1)
        shade = (self._ambient + (1 - self._ambient) * np.clip(normal @ self._sun, 0, None)).astype(np.float32)
        base, blotch, bfreq, grain, wcol, cell, frac, shift = (np.array(list(c)) for c in zip(*self._materials))
        return Scene(
            is_triangle=tri.astype(bool), origin=origin, edge1=e1, edge2=e2, normal=normal, centre=centre,
            radius=radius, uv_matrix=uvm, uv_offset=uvo, material=mat.astype(np.int64), shade=shade,
            mat_base=base.astype(np.float32), mat_blotch=blotch.astype(np.float32),
            mat_blotch_freq=bfreq.astype(np.float32), mat_grain=grain.astype(np.float32),
            mat_window=wcol.astype(np.float32), mat_window_cell=cell.astype(np.float32),
            mat_window_frac=frac.astype(np.float32), mat_shift=shift,
            noise=np.stack([_noise_quads(self._rng.random((_LATTICE, _LATTICE), dtype=np.float32)) for _ in range(_NOISE_TABLES)]),
            sky_horizon=self._sky[0], sky_zenith=self._sky[1], max_depth=self._max_depth)


# ----------------------------------------------------------------------------------------------
# Rendering


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


def _value_noise(x: np.ndarray, y: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """Smoothly interpolated lattice noise.

    Args:
        x, y: (n,) float32 positions in lattice cells.
        quads: (_LATTICE**2, 4) float32 lattice values of each cell's corners (00, 10, 01, 11).
    Returns:
        (n,) float32 in [0,1].
    """
    xf, yf = np.floor(x), np.floor(y)
    tx, ty = x - xf, y - yf
    cell = (yf.astype(np.int32) & (_LATTICE - 1)) * _LATTICE + (xf.astype(np.int32) & (_LATTICE - 1))
    corner = np.take(quads, cell, axis=0)  # much faster than fancy indexing for row gathers
    sx = tx * tx * (3 - 2 * tx)
    top = corner[:, 0] + (corner[:, 1] - corner[:, 0]) * sx
    bottom = corner[:, 2] + (corner[:, 3] - corner[:, 2]) * sx
    return top + (bottom - top) * (ty * ty * (3 - 2 * ty))


def _noise_quads(values: np.ndarray) -> np.ndarray:
    """(_LATTICE, _LATTICE) periodic lattice values -> (_LATTICE**2, 4) corners per cell."""
    right = np.roll(values, -1, axis=1)
    return np.stack([values, right, np.roll(values, -1, axis=0), np.roll(right, -1, axis=0)], axis=-1).reshape(-1, 4)


def _fade(cells_per_pixel: np.ndarray) -> np.ndarray:
    """Octave weight: 1 while a noise cell spans >= 4 pixels, 0 below 2 pixels."""
    return np.clip(2 - 4 * cells_per_pixel, 0, 1)


def _texture(scene: Scene, mat: np.ndarray, u: np.ndarray, v: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Colour of surface points from their material and uv (metres), band-limited to the pixel footprint.

    Args:
        mat: (n,) material ids; u, v: (n,) float64 metres; footprint: (n,) float32 metres per pixel.
    Returns:
        (n,3) float32 RGB in [0,1] before shading.
    """
    # float32 resolves these (< ~4 km) to a fraction of a millimetre, far below the finest cell.
    su = (u + scene.mat_shift[mat, 0]).astype(np.float32)
    sv = (v + scene.mat_shift[mat, 1]).astype(np.float32)
    freq = scene.mat_blotch_freq[mat]
    blotch = 0.5 + _fade(freq * footprint) * (_value_noise(su * freq, sv * freq, scene.noise[0]) - 0.5)
    base = np.take(scene.mat_base, mat, axis=0)
    colour = base + (np.take(scene.mat_blotch, mat, axis=0) - base) * blotch[:, None]

    grain = np.zeros(len(mat), np.float32)
    idx = np.arange(len(mat))
    for k in range(_DETAIL_OCTAVES):
        f = np.float32(_DETAIL_BASE_FREQ * 2.0 ** k)
        weight = _fade(f * footprint[idx])
        live = weight > 0
        idx, weight = idx[live], weight[live]
        if idx.size == 0:
            break  # finer octaves have even smaller cells, so none of them survives either
        c, s = np.float32(f * np.cos(0.7 * k)), np.float32(f * np.sin(0.7 * k))  # rotated lattices
        uk, vk = su[idx], sv[idx]
        grain[idx] += (_DETAIL_AMPS[k] * weight) * (_value_noise(c * uk - s * vk, s * uk + c * vk, scene.noise[1 + k]) - 0.5)
    colour += (scene.mat_grain[mat] * grain)[:, None]

    win = np.flatnonzero(scene.mat_window_cell[mat, 0] > 0)
    if win.size:
        m, w = mat[win], footprint[win]
        cell, frac = np.take(scene.mat_window_cell, m, axis=0), np.take(scene.mat_window_frac, m, axis=0)
        cover = np.ones(win.size, np.float32)
        # Window grids are anchored at each face's corner, so face-local u, v are small numbers.
        for axis, coord in ((0, u[win].astype(np.float32)), (1, v[win].astype(np.float32))):
            size = cell[:, axis]
            phase = coord / size
            off_centre = np.abs(phase - np.floor(phase) - 0.5) * size
            cover *= np.clip((0.5 * frac[:, axis] * size - off_centre) / w + 0.5, 0, 1)
        # Where a window cell spans under ~6 pixels the grid would alias: blend to its mean cover.
        resolved = np.clip(np.minimum(cell[:, 0], cell[:, 1]) / w / 3 - 1, 0, 1)
        cover = resolved * cover + (1 - resolved) * (frac[:, 0] * frac[:, 1])
        colour[win] += (np.take(scene.mat_window, m, axis=0) - colour[win]) * cover[:, None]
    return colour


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
                colour = _texture(scene, scene.material[prim], u, v, footprint) * (255 * scene.shade[prim])[:, None]
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


# ----------------------------------------------------------------------------------------------
# Street scenes along a trajectory


class _Corridor:
    """The camera path as a polyline at ~`spacing` metres, extended straight at both ends."""

    def __init__(self, poses: np.ndarray, spacing: float, extension: float):
        pos = poses[:, :3, 3]
        steps = np.linalg.norm(np.diff(pos, axis=0), axis=1)
        moving = steps > 1e-6
        pts = np.concatenate([pos[:1], pos[1:][moving]])
        arc = np.concatenate([[0.0], np.cumsum(steps[moving])])
        if arc[-1] >= spacing:
            s = np.linspace(0.0, arc[-1], int(np.ceil(arc[-1] / spacing)) + 1)
            body = np.stack([np.interp(s, arc, pts[:, k]) for k in range(3)], axis=1)
            start_dir, end_dir = self._level(body[1] - body[0]), self._level(body[-1] - body[-2])
        else:
            body = pts[:1]
            start_dir = end_dir = self._level(poses[0, :3, 2])
        steps_out = np.arange(1, int(np.ceil(extension / spacing)) + 1)[:, None] * spacing
        self.points = np.concatenate([body[0] - steps_out[::-1] * start_dir, body, body[-1] + steps_out * end_dir])
        tangent = np.gradient(self.points, axis=0) * np.array([1.0, 0.0, 1.0])
        norm = np.linalg.norm(tangent, axis=1, keepdims=True)
        self.tangents = np.where(norm > 1e-9, tangent / np.maximum(norm, 1e-9), start_dir)
        self.arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(self.points, axis=0), axis=1))])

    @staticmethod
    def _level(direction: np.ndarray) -> np.ndarray:
        flat = np.asarray(direction, np.float64) * np.array([1.0, 0.0, 1.0])
        n = np.linalg.norm(flat)
        return flat / n if n > 1e-9 else np.array([0.0, 0.0, 1.0])

    def at(self, a: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point (3,), unit level tangent (3,) and unit right vector (3,) at arc length a."""
        p = np.array([np.interp(a, self.arc, self.points[:, k]) for k in range(3)])
        f = self._level(np.array([np.interp(a, self.arc, self.tangents[:, k]) for k in range(3)]))
        return p, f, np.array([f[2], 0.0, -f[0]])

    def dense_xz(self, step: float) -> np.ndarray:
        """(N,2) x, z samples along the corridor every `step` metres."""
        s = np.arange(0.0, self.arc[-1] + step, step)
        return np.stack([np.interp(s, self.arc, self.points[:, 0]), np.interp(s, self.arc, self.points[:, 2])], axis=1)


def _rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(h % 1.0, s, v)


class _Prop(NamedTuple):
    """A building, car or pole: its footprint for the clearance test and the boxes it is made of."""

    centre: np.ndarray  # (3,) footprint centre
    forward: np.ndarray  # (3,) level direction of the footprint's length
    size: tuple  # (length, width, ...) of the footprint
    clearance: float  # minimum horizontal distance to the camera path
    parts: list  # add_box arguments (base_centre, forward, size, material, top_material)


def _clear_of_path(props: list[_Prop], path_xz: np.ndarray) -> np.ndarray:
    """Which props keep at least their clearance (metres, horizontally) from every path point.

    Args:
        path_xz: (N,2) world x, z of the camera path.
    Returns:
        (B,) bool for B props.
    """
    if not props:
        return np.zeros(0, bool)
    centre = np.array([b.centre[[0, 2]] for b in props])
    fwd = np.array([b.forward[[0, 2]] for b in props])
    fwd /= np.linalg.norm(fwd, axis=1, keepdims=True)
    right = np.stack([fwd[:, 1], -fwd[:, 0]], axis=1)
    half = np.array([b.size[:2] for b in props]) / 2
    clearance = np.array([b.clearance for b in props])
    keep = np.empty(len(props), bool)
    for lo in range(0, len(props), 64):
        hi = min(lo + 64, len(props))
        d = path_xz[None] - centre[lo:hi, None]
        along = np.abs(np.einsum("bnk,bk->bn", d, fwd[lo:hi])) - half[lo:hi, None, 0]
        across = np.abs(np.einsum("bnk,bk->bn", d, right[lo:hi])) - half[lo:hi, None, 1]
        dist = np.hypot(np.maximum(along, 0), np.maximum(across, 0))
        keep[lo:hi] = dist.min(axis=1) >= clearance[lo:hi]
    return keep


def _ground_below_path(tris: np.ndarray, cameras: np.ndarray, camera_height: float, margin: float = 0.25) -> np.ndarray:
    """Which road triangles stay below every camera that passes over them.

    Where a path revisits a place at another height (real trajectories drift or climb), the
    road strip of one pass would cut through the other pass's view; such triangles are dropped.

    Args:
        tris: (G,3,3) world triangles; cameras: (N,3) camera centres.
    Returns:
        (G,) bool, True where no camera sees the triangle higher than its own road + margin.
    """
    keep = np.ones(len(tris), bool)
    cam_xz = cameras[:, [0, 2]]
    lo, hi = tris[:, :, [0, 2]].min(axis=1), tris[:, :, [0, 2]].max(axis=1)
    for start in range(0, len(tris), 256):
        stop = min(start + 256, len(tris))
        near = np.all((cam_xz[None] >= lo[start:stop, None]) & (cam_xz[None] <= hi[start:stop, None]), axis=2)
        gi, ci = np.nonzero(near)
        if gi.size == 0:
            continue
        a, b, c = (tris[start + gi, k] for k in range(3))
        e1, e2, p = b - a, c - a, cameras[ci] - a
        den = e1[:, 0] * e2[:, 2] - e2[:, 0] * e1[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            l1 = (p[:, 0] * e2[:, 2] - e2[:, 0] * p[:, 2]) / den
            l2 = (e1[:, 0] * p[:, 2] - p[:, 0] * e1[:, 2]) / den
        inside = (np.abs(den) > 1e-9) & (l1 >= 0) & (l2 >= 0) & (l1 + l2 <= 1)
        road_y = a[:, 1] + l1 * e1[:, 1] + l2 * e2[:, 1]
        keep[start + gi[inside & (road_y < cameras[ci, 1] + camera_height - margin)]] = False
    return keep


def build_street_scene(poses: np.ndarray, rng: np.random.Generator, camera_height: float = 1.65,
                       max_depth: float = 80.0) -> Scene:
    """A street along the camera path: road, building blocks on both sides, parked cars, poles.

    The road surface lies `camera_height` below the path (world y down) and follows its slope;
    the path is extended straight beyond both ends so the first and last frames see structure.

    Args:
        poses: (N,4,4) camera-to-world; rng: the layout/texture/colour random generator.
    Returns:
        the Scene.
    """
    poses = np.asarray(poses, np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or not np.all(np.isfinite(poses)):
        raise InputError(f"poses must be a finite (N,4,4) array, got shape {poses.shape}")
    if not np.isfinite(camera_height) or not 0.1 <= camera_height <= 50:
        raise InputError(f"camera height must be within 0.1..50 m, got {camera_height!r}")
    sun_azimuth, sun_elevation = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(30), np.radians(65))
    sun = (np.cos(sun_elevation) * np.sin(sun_azimuth), -np.sin(sun_elevation), np.cos(sun_elevation) * np.cos(sun_azimuth))
    builder = SceneBuilder(seed=int(rng.integers(2 ** 63)), max_depth=max_depth, sun=sun,
                           sky_horizon=_rgb(rng.uniform(0.55, 0.62), 0.12, 0.93),
                           sky_zenith=_rgb(rng.uniform(0.57, 0.63), rng.uniform(0.35, 0.55), 0.85))
    grey = rng.uniform(0.3, 0.45)
    ground = builder.add_material(_rgb(rng.uniform(0, 1), 0.08, grey), _rgb(rng.uniform(0.05, 0.15), 0.25, grey * 0.7),
                                  blotch_scale=rng.uniform(3, 8), grain=0.35)
    facades = [builder.add_material(
        _rgb(rng.uniform(0, 1), rng.uniform(0.1, 0.45), rng.uniform(0.45, 0.85)),
        _rgb(rng.uniform(0, 1), rng.uniform(0.1, 0.45), rng.uniform(0.35, 0.75)),
        blotch_scale=rng.uniform(2, 6), grain=rng.uniform(0.2, 0.4),
        windows=None if rng.random() < 0.2 else (rng.uniform(2.2, 4.0), rng.uniform(2.8, 3.6), rng.uniform(0.35, 0.65),
                                                 rng.uniform(0.35, 0.6), _rgb(rng.uniform(0.5, 0.7), 0.3, rng.uniform(0.1, 0.3))))
        for _ in range(6)]
    cars = [builder.add_material(_rgb(rng.uniform(0, 1), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.9)),
                                 blotch_scale=1.5, grain=0.12) for _ in range(5)]
    glass = builder.add_material((0.12, 0.15, 0.2), (0.3, 0.35, 0.42), blotch_scale=0.8, grain=0.1)
    pole = builder.add_material(_rgb(rng.uniform(0, 1), 0.1, 0.55), blotch_scale=1.0, grain=0.2)

    spacing = 2.0
    corridor = _Corridor(poses, spacing, extension=max_depth + 40.0)
    down = np.array([0.0, camera_height, 0.0])
    road_half = 30.0  # wide enough to reach behind the buildings seen through gaps
    centre = corridor.points + down
    rights = np.stack([corridor.tangents[:, 2], np.zeros(len(centre)), -corridor.tangents[:, 0]], axis=1)
    left, right = centre - road_half * rights, centre + road_half * rights
    tris = np.concatenate([np.stack([left[:-1], right[:-1], right[1:]], axis=1),
                           np.stack([left[:-1], right[1:], left[1:]], axis=1)])
    area = np.linalg.norm(np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]), axis=1)
    # World x, z as texture coordinates: overlapping strips on tight turns then look the same.
    xz = (np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), np.zeros(2))
    up = np.array([0.0, -1.0, 0.0])
    for tri in tris[(area > 1e-6) & _ground_below_path(tris, poses[:, :3, 3], camera_height)]:
        builder.add_triangle(tri[0], tri[1], tri[2], ground, normal=up, uv=xz)

    props: list[_Prop] = []
    end = corridor.arc[-1]
    for side in (-1.0, 1.0):
        a = rng.uniform(0, 10)
        while a < end:
            length = rng.uniform(6, 22)
            p, f, r = corridor.at(a + length / 2)
            setback, depth, height = rng.uniform(5.5, 11), rng.uniform(6, 14), rng.uniform(4, 22)
            base = p + down + side * (setback + depth / 2) * r + np.array([0.0, 0.5, 0.0])  # sink into sloped ground
            size = (length, depth, height + 0.5)
            props.append(_Prop(base, f, size, 3.0, [(base, f, size, facades[int(rng.integers(len(facades)))], None)]))
            a += length + (rng.uniform(4, 10) if rng.random() < 0.2 else rng.uniform(0.3, 2))
        a = rng.uniform(0, 15)
        while a < end:
            p, f, r = corridor.at(a)
            if rng.random() < 0.7:
                yaw = rng.normal(0, np.radians(4))
                f = np.cos(yaw) * f + np.sin(yaw) * r
                length, width = rng.uniform(3.8, 4.8), rng.uniform(1.65, 1.9)
                body, cabin = rng.uniform(0.75, 0.95), rng.uniform(0.45, 0.6)
                base = p + down + side * rng.uniform(2.6, 3.6) * r
                paint = cars[int(rng.integers(len(cars)))]
                cabin_base = base + np.array([0.0, -body, 0.0]) - 0.1 * length * f
                props.append(_Prop(base, f, (length, width, body), 1.5, [
                    (base, f, (length, width, body), paint, None),
                    (cabin_base, f, (0.55 * length, width - 0.1, cabin), glass, paint)]))
            a += rng.uniform(6, 22)
        a = rng.uniform(0, 20)
        while a < end:
            p, f, r = corridor.at(a)
            base, size = p + down + side * rng.uniform(4.3, 5.2) * r, (0.2, 0.2, rng.uniform(4, 8))
            props.append(_Prop(base, f, size, 1.5, [(base, f, size, pole, None)]))
            a += rng.uniform(12, 30)
    path_xz = np.concatenate([corridor.dense_xz(0.5), poses[:, [0, 2], 3]])
    for prop, keep in zip(props, _clear_of_path(props, path_xz)):
        if keep:
            for part in prop.parts:
                builder.add_box(*part)
    return builder.build()


# ----------------------------------------------------------------------------------------------
# Sequences on disk


def depth_to_png16(depth: np.ndarray) -> np.ndarray:
    """Encode metres (H,W) as KITTI uint16 (value = round(256 * depth), 0 = invalid or beyond 255.99 m)."""
    depth = np.asarray(depth, np.float64)
    valid = np.isfinite(depth) & (depth > 0) & (depth * DEPTH_PNG_SCALE <= 65535)
    return np.where(valid, np.rint(np.where(valid, depth, 0) * DEPTH_PNG_SCALE), 0).astype(np.uint16)


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise InputError(f"{path}: cannot write PNG")


def _calib_text(K: np.ndarray) -> str:
    def line(key: str, values: np.ndarray) -> str:
        return f"{key}: " + " ".join(f"{x:.12e}" for x in np.asarray(values).ravel()) + "\n"
    left = np.hstack([K, np.zeros((3, 1))])
    right = left.copy()
    right[0, 3] = -K[0, 0] * STEREO_BASELINE_M
    return "".join([line("P0", left), line("P1", right), line("P2", left), line("P3", right),
                    line("Tr", np.eye(4)[:3])])


def _make_trajectory(kind: str, num_frames: int, rng: np.random.Generator, kitti_poses, kitti_start: int,
                     kitti_scale: float) -> np.ndarray:
    if kind == "car":
        return trajectories.car_trajectory(num_frames, rng)
    if kind == "handheld":
        return trajectories.handheld_trajectory(num_frames, rng)
    if kind == "kitti":
        if kitti_poses is None:
            raise InputError("trajectory 'kitti' needs a KITTI poses file (--kitti-poses PATH)")
        return trajectories.kitti_trajectory(kitti_poses, kitti_start, num_frames, kitti_scale)
    raise InputError(f"unknown trajectory {kind!r}; choose one of {', '.join(TRAJECTORY_KINDS)}")


def _check_target(seq_dir: Path, overwrite: bool) -> None:
    if seq_dir.is_dir() and any(seq_dir.iterdir()) and not overwrite:
        raise InputError(f"{seq_dir} already exists and is not empty; choose another output or allow overwriting")


def _prepare_dirs(root: Path, seq: str) -> Path:
    """Create the output folders, removing frames an earlier, longer run left behind."""
    seq_dir = root / "sequences" / seq
    if seq_dir.is_dir():
        for sub in ("image_2", "depth_2"):
            for old in (seq_dir / sub).glob("[0-9][0-9][0-9][0-9][0-9][0-9].png"):
                old.unlink()
    try:
        for sub in ("image_2", "depth_2"):
            (seq_dir / sub).mkdir(parents=True, exist_ok=True)
        (root / "poses").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output directories under {root}: {exc.strerror}") from exc
    return seq_dir


def generate_sequence(out_dir: str | Path, seq: str = "00", num_frames: int = 100, height: int = 192,
                      width: int = 640, seed: int = 0, trajectory: str = "car", kitti_poses: str | Path | None = None,
                      kitti_start: int = 0, kitti_scale: float = 1.0, camera_height: float = 1.65,
                      max_depth: float = 80.0, overwrite: bool = False, progress: bool = False) -> Path:
    """Render a synthetic sequence with exact depth and poses in the KITTI odometry layout.

    The same arguments give bit-identical files; another seed gives another trajectory (for
    car/handheld), layout, textures and colours.

    Args:
        out_dir: dataset root (gets `sequences/<seq>/...` and `poses/<seq>.txt`).
        seq: two-digit sequence name.
        trajectory: 'car', 'handheld' or 'kitti' (then `kitti_poses` file, `kitti_start` frame
            and `kitti_scale` on its translations).
        camera_height: metres between the camera and the road.
        max_depth: metres; farther surfaces are replaced by sky (depth 0).
        overwrite: replace an existing non-empty sequence directory's frames.
        progress: show a tqdm progress bar on stderr.
    Returns:
        the sequence directory `out_dir/sequences/<seq>`.
    """
    if not isinstance(seq, str) or not re.fullmatch(r"\d{2}", seq):
        raise InputError(f"sequence name must be two digits like '00', got {seq!r}")
    if int(height) != height or int(width) != width or not (8 <= height <= 4096 and 8 <= width <= 4096):
        raise InputError(f"image size must be within 8..4096 pixels per side, got {height}x{width}")
    if int(seed) != seed or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if trajectory not in TRAJECTORY_KINDS:
        raise InputError(f"unknown trajectory {trajectory!r}; choose one of {', '.join(TRAJECTORY_KINDS)}")
    root = Path(out_dir)
    _check_target(root / "sequences" / seq, overwrite)
    traj_seed, scene_seed = np.random.SeedSequence(int(seed)).spawn(2)
    poses = _make_trajectory(trajectory, num_frames, np.random.default_rng(traj_seed), kitti_poses,
                             kitti_start, kitti_scale)
    scene = build_street_scene(poses, np.random.default_rng(scene_seed), camera_height, max_depth)
    K = default_intrinsics(height, width)

    seq_dir = _prepare_dirs(root, seq)
    for i in tqdm(range(len(poses)), desc=f"sa4depth-synth {seq}", unit="frame", disable=not progress):
        rgb, depth = render_frame(scene, K, poses[i], height, width)
        _write_png(seq_dir / "image_2" / f"{i:06d}.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        _write_png(seq_dir / "depth_2" / f"{i:06d}.png", depth_to_png16(depth))
    (seq_dir / "calib.txt").write_text(_calib_text(K))
    (seq_dir / "times.txt").write_text("".join(f"{i / FRAME_RATE_HZ:.6e}\n" for i in range(len(poses))))
    save_kitti_poses(root / "poses" / f"{seq}.txt", np.linalg.inv(poses[0]) @ poses)
    meta = {"generator": "sa4depth-synth", "version": GENERATOR_VERSION, "seed": int(seed), "height": int(height),
            "width": int(width), "num_frames": len(poses), "trajectory": trajectory, "camera_height": float(camera_height),
            "max_depth": float(max_depth), "frame_rate_hz": FRAME_RATE_HZ, "depth_png_scale": DEPTH_PNG_SCALE,
            "K": K.tolist()}
    if trajectory == "kitti":
        meta.update(kitti_poses=str(kitti_poses), kitti_start=int(kitti_start), kitti_scale=float(kitti_scale))
    (seq_dir / "synth.json").write_text(json.dumps(meta, indent=2) + "\n")
    return seq_dir


def _parse_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise InputError(f"--size must look like HEIGHTxWIDTH, e.g. 192x640, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def main(argv: list[str] | None = None) -> int:
    """Command line `sa4depth-synth`; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="sa4depth-synth", description=(
        "Render a synthetic street sequence with exact depth and pose in the KITTI odometry layout."))
    parser.add_argument("--out", required=True, help="dataset root; gets sequences/SS/ and poses/SS.txt")
    parser.add_argument("--seq", default="00", help="two-digit sequence name (default 00)")
    parser.add_argument("--frames", type=int, default=100, help="number of frames (default 100)")
    parser.add_argument("--size", default="192x640", help="HEIGHTxWIDTH in pixels (default 192x640)")
    parser.add_argument("--seed", type=int, default=0, help="scene/trajectory seed (default 0)")
    parser.add_argument("--trajectory", choices=TRAJECTORY_KINDS, default="car")
    parser.add_argument("--kitti-poses", help="KITTI poses file to follow (with --trajectory kitti)")
    parser.add_argument("--start", type=int, default=0, help="first frame of the KITTI poses file to use")
    parser.add_argument("--kitti-scale", type=float, default=1.0, help="factor on the KITTI translations")
    parser.add_argument("--camera-height", type=float, default=1.65, help="metres above the road (default 1.65)")
    parser.add_argument("--max-depth", type=float, default=80.0, help="farther surfaces become sky, depth 0 (default 80)")
    parser.add_argument("--overwrite", action="store_true", help="replace the frames of an existing sequence")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        height, width = _parse_size(args.size)
        started = time.perf_counter()
        seq_dir = generate_sequence(args.out, args.seq, args.frames, height, width, args.seed, args.trajectory,
                                    args.kitti_poses, args.start, args.kitti_scale, args.camera_height,
                                    args.max_depth, args.overwrite, progress=not args.quiet)
    except InputError as exc:
        print(f"sa4depth-synth: error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    print(f"wrote {args.frames} frames ({width}x{height}) to {seq_dir} "
          f"in {elapsed:.1f} s ({1000 * elapsed / args.frames:.1f} ms/frame)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
