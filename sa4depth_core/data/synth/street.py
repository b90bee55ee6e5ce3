"""Street layouts along a camera path: road, building blocks, parked cars and poles.

Buildings line the whole path, so pixels that see the sky (nothing within max_depth) are a small
share of a frame.
"""
from __future__ import annotations

import colorsys
from typing import NamedTuple

import numpy as np

from sa4depth_core.data.synth.scene import Scene, SceneBuilder
from sa4depth_core.errors import InputError


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

