"""Static scenes for the synthetic sequences: textured planar primitives and their materials.

Geometry is a set of planar parallelograms and triangles; colour is a function of the world point
only (a material's texture in metres on the surface times a constant Lambertian shade per face),
so brightness constancy between frames is exact up to the texture's band-limiting (texture.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sa4depth_core.errors import InputError

LATTICE = 256  # value-noise tables are periodic over this many cells
DETAIL_OCTAVES = 6  # grain octaves; the finest cell is ~5 cm
NOISE_TABLES = 1 + DETAIL_OCTAVES  # one for blotches, one per grain octave


def noise_quads(values: np.ndarray) -> np.ndarray:
    """(LATTICE, LATTICE) periodic lattice values -> (LATTICE**2, 4) corners per cell (00, 10, 01, 11)."""
    right = np.roll(values, -1, axis=1)
    return np.stack([values, right, np.roll(values, -1, axis=0), np.roll(right, -1, axis=0)], axis=-1).reshape(-1, 4)


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
    noise: np.ndarray  # (NOISE_TABLES, LATTICE**2, 4) float32 in [0,1], see noise_quads
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
            noise=np.stack([noise_quads(self._rng.random((LATTICE, LATTICE), dtype=np.float32)) for _ in range(NOISE_TABLES)]),
            sky_horizon=self._sky[0], sky_zenith=self._sky[1], max_depth=self._max_depth)

