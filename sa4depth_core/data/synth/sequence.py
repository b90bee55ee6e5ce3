"""Synthetic sequences on disk, in the KITTI odometry layout, with exact depth and pose.

On disk (root = the output directory, SS = the sequence name):
  sequences/SS/image_2/%06d.png   RGB frames (stored BGR by OpenCV)
  sequences/SS/depth_2/%06d.png   uint16 z-depth, metres = value / 256, 0 = invalid
  sequences/SS/calib.txt          P0..P3 (3x4) and Tr (3x4 identity); P2 = [K | 0]
  sequences/SS/times.txt          seconds at 10 Hz
  sequences/SS/synth.json         generator parameters
  poses/SS.txt                    camera-to-world 3x4 of camera 2, frame 0 = identity
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sa4depth_core.data import trajectories
from sa4depth_core.data.kitti_odometry import DEPTH_PNG_SCALE, depth_to_png16
from sa4depth_core.data.pose_io import save_kitti_poses
from sa4depth_core.data.synth.render import default_intrinsics, render_frame
from sa4depth_core.data.synth.street import build_street_scene
from sa4depth_core.errors import InputError

GENERATOR_VERSION = 1
FRAME_RATE_HZ = 10.0
STEREO_BASELINE_M = 0.54  # KITTI's; only written into P1/P3, no right images are rendered
TRAJECTORY_KINDS = ("car", "handheld", "kitti")


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

