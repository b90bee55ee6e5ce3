"""Camera trajectories for synthetic sequences: car-like, handheld, or a real KITTI track.

Every generator returns camera-to-world poses (N,4,4) float64 in the KITTI camera convention
(x right, y down, z forward); the world is gravity-aligned with y pointing down, so a road lies
at world y = camera height below a level camera at y = 0. Frames are 10 Hz apart.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sa4depth_core.data.pose_io import load_kitti_poses
from sa4depth_core.errors import InputError


def rotation_from_euler(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Camera-to-world rotations R = Ry(yaw) Rx(pitch) Rz(roll) in radians.

    yaw > 0 turns right (towards +x), pitch > 0 looks up (towards -y), roll about the optical axis.

    Args:
        yaw, pitch, roll: (N,) angles.
    Returns:
        (N,3,3) float64.
    """
    yaw, pitch, roll = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (yaw, pitch, roll))
    n = len(yaw)
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    ry = np.zeros((n, 3, 3))
    ry[:, 0, 0], ry[:, 0, 2], ry[:, 1, 1], ry[:, 2, 0], ry[:, 2, 2] = cy, sy, 1.0, -sy, cy
    # Rx(+pitch) maps the optical axis (0,0,1) to (0,-sin,cos): upwards, since y points down.
    rx = np.zeros((n, 3, 3))
    rx[:, 0, 0], rx[:, 1, 1], rx[:, 1, 2], rx[:, 2, 1], rx[:, 2, 2] = 1.0, cp, -sp, sp, cp
    rz = np.zeros((n, 3, 3))
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1], rz[:, 2, 2] = cr, -sr, sr, cr, 1.0
    return ry @ rx @ rz


def smooth_noise(rng: np.random.Generator, n: int, sigma: float, std: float) -> np.ndarray:
    """Gaussian-filtered white noise whose expected standard deviation is `std`.

    Args:
        n: number of samples; sigma: filter width in samples.
    Returns:
        (n,) float64.
    """
    half = int(np.ceil(4 * sigma)) + 1
    taps = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    taps /= taps.sum()
    white = rng.standard_normal(n + 2 * half)
    return np.convolve(white, taps, mode="valid") * (std / np.sqrt(np.sum(taps ** 2)))


def _assemble(positions: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    poses = np.tile(np.eye(4), (len(positions), 1, 1))
    poses[:, :3, :3] = rotations
    poses[:, :3, 3] = positions
    return poses


def _check_count(num_frames: int) -> int:
    if int(num_frames) != num_frames or num_frames < 1:
        raise InputError(f"number of frames must be a positive integer, got {num_frames!r}")
    return int(num_frames)


def car_trajectory(num_frames: int, rng: np.random.Generator, speed_range: tuple[float, float] = (0.5, 1.5)) -> np.ndarray:
    """A car driving on level ground: smooth speed and yaw, small pitch/roll jitter, height 0.

    Args:
        num_frames: N.
        rng: the random generator (the same state gives the same trajectory).
        speed_range: forward speed bounds in metres per frame.
    Returns:
        (N,4,4) float64 camera-to-world; frame 0 at the origin looking along +z.
    """
    n = _check_count(num_frames)
    lo, hi = speed_range
    if not 0 < lo <= hi:
        raise InputError(f"speed range must satisfy 0 < min <= max, got {speed_range!r}")
    speed = np.clip(rng.uniform(lo + 0.2 * (hi - lo), hi - 0.2 * (hi - lo)) + smooth_noise(rng, n, 20.0, 0.1 * (hi - lo)), lo, hi)
    # Turn rates of a car in town: a 2 deg/frame bend at 1 m/frame is a ~30 m radius.
    yaw_rate = np.clip(smooth_noise(rng, n, 12.0, np.radians(1.0)), -np.radians(3.0), np.radians(3.0))
    yaw = np.concatenate([[0.0], np.cumsum(yaw_rate[:-1])])
    pitch = smooth_noise(rng, n, 4.0, np.radians(0.4))
    roll = smooth_noise(rng, n, 4.0, np.radians(0.3))
    pitch -= pitch[0]
    roll -= roll[0]
    step = speed[:, None] * np.stack([np.sin(yaw), np.zeros(n), np.cos(yaw)], axis=1)
    positions = np.concatenate([np.zeros((1, 3)), np.cumsum(step[:-1], axis=0)])
    return _assemble(positions, rotation_from_euler(yaw, pitch, roll))


def handheld_trajectory(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """A walking person holding the camera: slow forward motion with 6-DoF wobble and step bob.

    The height oscillates by a few centimetres around 0 (the nominal holding height).

    Args:
        num_frames: N.
        rng: the random generator.
    Returns:
        (N,4,4) float64 camera-to-world.
    """
    n = _check_count(num_frames)
    k = np.arange(n, dtype=np.float64)
    speed = np.clip(rng.uniform(0.08, 0.2) + smooth_noise(rng, n, 15.0, 0.03), 0.02, 0.3)
    heading = np.concatenate([[0.0], np.cumsum(smooth_noise(rng, n, 25.0, np.radians(0.6))[:-1])])
    step_period = rng.uniform(4.5, 6.5)  # frames per step at 10 Hz
    phase = rng.uniform(0, 2 * np.pi)
    bob = 0.02 * np.sin(2 * np.pi * k / step_period + phase) + smooth_noise(rng, n, 6.0, 0.02)
    sway = 0.015 * np.sin(np.pi * k / step_period + phase) + smooth_noise(rng, n, 8.0, 0.03)
    yaw = heading + smooth_noise(rng, n, 6.0, np.radians(3.0))
    pitch = smooth_noise(rng, n, 5.0, np.radians(2.0))
    roll = smooth_noise(rng, n, 5.0, np.radians(1.5))
    yaw, pitch, roll, bob, sway = (a - a[0] for a in (yaw, pitch, roll, bob, sway))
    forward = np.stack([np.sin(heading), np.zeros(n), np.cos(heading)], axis=1)
    right = np.stack([np.cos(heading), np.zeros(n), -np.sin(heading)], axis=1)
    track = np.concatenate([np.zeros((1, 3)), np.cumsum(forward[:-1] * speed[:-1, None], axis=0)])
    positions = track + sway[:, None] * right + bob[:, None] * np.array([0.0, 1.0, 0.0])
    return _assemble(positions, rotation_from_euler(yaw, pitch, roll))


def kitti_trajectory(path: str | Path, start: int, num_frames: int, scale: float = 1.0) -> np.ndarray:
    """A slice of a KITTI ground-truth trajectory, translations multiplied by `scale`.

    Args:
        path: KITTI poses file (3x4 camera-to-world per line).
        start: first frame index; num_frames: N.
    Returns:
        (N,4,4) float64 camera-to-world in the file's world frame (KITTI's world is the first
        camera of the full sequence, y roughly down).
    """
    n = _check_count(num_frames)
    if int(start) != start or start < 0:
        raise InputError(f"start frame must be a non-negative integer, got {start!r}")
    if not np.isfinite(scale) or scale <= 0:
        raise InputError(f"trajectory scale must be a positive number, got {scale!r}")
    poses = load_kitti_poses(path)
    if start + n > len(poses):
        raise InputError(f"{path}: has {len(poses)} poses, cannot take {n} frames from frame {start}")
    poses = poses[int(start):int(start) + n].copy()
    rot = poses[:, :3, :3]
    if np.abs(rot.transpose(0, 2, 1) @ rot - np.eye(3)).max() > 1e-3:
        raise InputError(f"{path}: frames {start}..{start + n - 1} contain a rotation that is not orthonormal")
    poses[:, :3, 3] *= scale
    return poses
