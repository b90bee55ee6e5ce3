"""The Karlsruhe stereo sequence 2010_03_09_drive_0019 (KIT / cvlibs, the libviso2 demo data) ->
the KITTI odometry layout every tool here reads.

Source folder: `image_left/I1_%06d.png`, `image_right/I2_%06d.png` (672x186 grey, rectified),
`intrinsics.txt` (K of both images, `baseline_m`), `poses.txt` (frame_index timestamp_ns x y z
roll pitch yaw, the GPS/INS track with its angle glitches removed).

Written: `<out>/sequences/SS/image_0, image_1` (left, right), `calib.txt` (P0 = K [I | 0],
P1 = K [I | (-baseline, 0, 0)], no P2/P3: there are no colour cameras), `times.txt` (seconds since
the first frame), `depth_0/` (stereo depth, `stereo_depth.write_stereo_depth`),
`conversion.json` (conventions, first stamp, camera height), and `<out>/poses/SS.txt`.

Conventions, as read from the data:
- INS world: x east, y north, z up (altitude), metres. Checked: x, y grow with longitude and
  latitude as the first frames' lat/lon in `insdata.txt` do.
- INS body: x forward, y left, z up, R = Rz(yaw) Ry(pitch) Rx(roll) (static axes; the OXTS
  convention of KITTI's devkit, same group and car family). Checked: yaw is the heading of the
  travelled x, y path measured counter-clockwise from east (median offset 0.016 rad), so body x
  is forward and z up, and y left follows for a right-handed frame; the camera rotation about its
  y axis between frames 8 apart, measured by PnP on stereo depth, correlates 0.999 with the
  converted poses'. Roll and pitch stay within 2 degrees here and are not confirmed: the same
  visual rotations follow the pitch convention weakly (slope 0.36) and the roll convention with
  the opposite sign (slope -0.74), mixed with each other; judge them with care.
- Camera: KITTI's (x right, y down, z forward). The camera-to-INS mounting is not published, so
  the nominal one is used: camera z = vehicle forward, x = vehicle right, y = down, no lever arm
  (`kitti_recording.T_BASE_CAM0`). It is not exact: the visual motion points about 5 degrees
  above the camera's z axis (the camera looks slightly down). A fixed mounting error rotates
  every relative motion the same way; a hand-eye fit can estimate it.
- poses/SS.txt: the left camera's camera-to-world, relative to the first frame (first pose is the
  identity), so motion is mostly along +z.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from transforms3d.euler import euler2mat

from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.data.kitti_recording import T_BASE_CAM0
from sa4depth_core.data.pose_io import save_kitti_poses
from sa4depth_core.data.stereo_depth import HeightEstimate, ground_camera_height, write_stereo_depth
from sa4depth_core.errors import InputError

LEFT_PATTERN = "image_left/I1_{:06d}.png"
RIGHT_PATTERN = "image_right/I2_{:06d}.png"


@dataclass(frozen=True)
class InsTrack:
    """GPS/INS track: frame (N,) int64 image numbers, stamps_ns (N,) int64, xyz (N,3) metres
    (east, north, up), rpy (N,3) roll, pitch, yaw in radians."""

    frame: np.ndarray
    stamps_ns: np.ndarray
    xyz: np.ndarray
    rpy: np.ndarray


@dataclass(frozen=True)
class StereoRig:
    """K (3,3) of both rectified images, baseline in metres (right camera at +x), size (H, W)."""

    K: np.ndarray
    baseline: float
    size: tuple[int, int]


def read_ins_track(path: str | Path) -> InsTrack:
    """Read `poses.txt`: `frame_index timestamp_ns x y z roll pitch yaw` per line, `#` comments."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: INS poses file not found")
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 8:
            raise InputError(f"{path}: line {lineno} needs 8 columns (frame stamp_ns x y z roll pitch yaw), "
                             f"got {len(parts)}")
        try:
            rows.append((int(parts[0]), int(parts[1]), *(float(v) for v in parts[2:])))
        except ValueError:
            raise InputError(f"{path}: line {lineno} is not numeric: {line.strip()!r}") from None
    if len(rows) < 2:
        raise InputError(f"{path}: needs at least two poses, got {len(rows)}")
    frame = np.array([r[0] for r in rows], np.int64)
    stamps = np.array([r[1] for r in rows], np.int64)
    values = np.array([r[2:] for r in rows], np.float64)
    if not np.all(np.isfinite(values)):
        raise InputError(f"{path}: contains non-finite values")
    if not np.array_equal(frame, np.arange(len(frame))):
        raise InputError(f"{path}: frame indices must run 0, 1, 2, ... without gaps")
    if not np.all(np.diff(stamps) > 0):
        raise InputError(f"{path}: timestamps must increase")
    return InsTrack(frame, stamps, values[:, :3], values[:, 3:])


def read_stereo_rig(path: str | Path) -> StereoRig:
    """Read `intrinsics.txt` (`key values` lines: width, height, K, baseline_m; `#` comments)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: intrinsics file not found")
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, rest = line.strip().partition(" ")
            values[key] = rest.split()

    def numbers(key: str, count: int) -> np.ndarray:
        if key not in values:
            raise InputError(f"{path}: key {key} is missing")
        try:
            out = np.array(values[key], np.float64)
        except ValueError:
            raise InputError(f"{path}: key {key} is not numeric: {' '.join(values[key])!r}") from None
        if out.size != count or not np.all(np.isfinite(out)):
            raise InputError(f"{path}: key {key} needs {count} finite numbers, got {' '.join(values[key])!r}")
        return out

    K = numbers("K", 9).reshape(3, 3)
    baseline = float(numbers("baseline_m", 1)[0])
    width, height = (int(numbers(k, 1)[0]) for k in ("width", "height"))
    if baseline <= 0 or width <= 0 or height <= 0 or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"{path}: baseline, size and focal lengths must be positive")
    return StereoRig(K, baseline, (height, width))


def vehicle_poses(track: InsTrack) -> np.ndarray:
    """(N,4,4) INS body (x forward, y left, z up) to world (east, north, up)."""
    poses = np.tile(np.eye(4), (len(track.xyz), 1, 1))
    for pose, (roll, pitch, yaw) in zip(poses, track.rpy):
        pose[:3, :3] = euler2mat(roll, pitch, yaw, "sxyz")  # static axes: Rz(yaw) Ry(pitch) Rx(roll)
    poses[:, :3, 3] = track.xyz
    return poses


def camera_poses(track: InsTrack, vehicle_to_camera: np.ndarray = T_BASE_CAM0) -> np.ndarray:
    """(N,4,4) left camera-to-world in KITTI's camera axes, relative to the first frame.

    Args:
        vehicle_to_camera: (4,4) pose of the camera in the INS body frame; the nominal mounting
            (camera looking along the vehicle's x, no lever arm) by default.
    """
    # Relative to the first position first: the local frame's 5 km offsets would leave 1e-13 m
    # of rounding in what must be an exact identity.
    local = InsTrack(track.frame, track.stamps_ns, track.xyz - track.xyz[0], track.rpy)
    cams = vehicle_poses(local) @ vehicle_to_camera
    return np.linalg.inv(cams[0]) @ cams


def _projections(rig: StereoRig) -> dict[str, np.ndarray]:
    P0 = np.hstack([rig.K, np.zeros((3, 1))])
    P1 = P0.copy()
    P1[0, 3] = -rig.K[0, 0] * rig.baseline  # KITTI: P_c = K [I | t_c], the right camera at +x
    return {"P0": P0, "P1": P1}


def _copy_frame(src: Path, dst: Path, size: tuple[int, int]) -> None:
    img = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"frame {src} {'is missing' if not src.is_file() else 'cannot be decoded as an image'}")
    if img.dtype != np.uint8 or img.shape != size:
        raise InputError(f"frame {src} must be 8-bit grey {size[1]}x{size[0]}, got {img.dtype} {img.shape}")
    shutil.copyfile(src, dst)  # the PNG bytes as published: no re-encoding


@dataclass
class KarlsruheResult:
    """What `convert` wrote: sequence dir, frames, path length (m), stereo summary, camera height."""

    seq_dir: Path
    frames: int
    path_length_m: float
    stereo: dict | None
    camera_height: HeightEstimate | None


def convert(source: str | Path, out_root: str | Path, sequence: str = "00", max_frames: int = 0,
            depth: bool = True, overwrite: bool = False, progress=None) -> KarlsruheResult:
    """Write the Karlsruhe sequence at `source` as `<out_root>/sequences/<sequence>` (see module doc).

    Args:
        max_frames: convert only the first frames (0 = all).
        depth: also match stereo depth into depth_0 and measure the camera height from it.
    """
    source, out_root = Path(source), Path(out_root)
    if int(max_frames) != max_frames or max_frames < 0:
        raise InputError(f"max_frames must be a non-negative integer, got {max_frames!r}")
    if not sequence or any(c in sequence for c in "/\\") or sequence in (".", ".."):
        raise InputError(f"sequence must be a plain folder name like 00, got {sequence!r}")
    track = read_ins_track(source / "poses.txt")
    rig = read_stereo_rig(source / "intrinsics.txt")
    n = min(len(track.frame), max_frames) if max_frames else len(track.frame)
    for pattern in (LEFT_PATTERN, RIGHT_PATTERN):
        if not (source / pattern.format(n - 1)).is_file():
            raise InputError(f"{source / pattern.format(n - 1)}: frame missing (poses.txt has {len(track.frame)} frames)")

    seq_dir = out_root / "sequences" / sequence
    pose_file = out_root / "poses" / f"{sequence}.txt"
    if seq_dir.exists() or pose_file.exists():
        if not overwrite:
            raise InputError(f"{seq_dir} or {pose_file} exists: choose another --sequence or pass --overwrite")
        shutil.rmtree(seq_dir, ignore_errors=True)
        pose_file.unlink(missing_ok=True)
    for sub in ("image_0", "image_1"):
        (seq_dir / sub).mkdir(parents=True)
    pose_file.parent.mkdir(parents=True, exist_ok=True)

    for i in range(n):
        _copy_frame(source / LEFT_PATTERN.format(i), seq_dir / "image_0" / f"{i:06d}.png", rig.size)
        _copy_frame(source / RIGHT_PATTERN.format(i), seq_dir / "image_1" / f"{i:06d}.png", rig.size)
    (seq_dir / "calib.txt").write_text("".join(f"{k}: {' '.join(f'{v:.12e}' for v in P.ravel())}\n"
                                               for k, P in _projections(rig).items()))
    seconds = (track.stamps_ns[:n] - track.stamps_ns[0]) / 1e9
    (seq_dir / "times.txt").write_text("".join(f"{t:.9f}\n" for t in seconds))
    poses = camera_poses(track)[:n]
    save_kitti_poses(pose_file, poses)
    path_length = float(np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1).sum())

    stereo = height = None
    if depth:
        stereo = write_stereo_depth(seq_dir, 0, 1, max_frames=n, progress=progress)
        height = ground_camera_height(KittiOdometrySequence(out_root, sequence, camera=0), range(n))
    info = {
        "source": str(source.resolve()),
        "frames": n,
        "first_stamp_ns": int(track.stamps_ns[0]),
        "conventions": {
            "ins_world": "x east, y north, z up (metres)",
            "ins_body": "x forward, y left, z up; R = Rz(yaw) Ry(pitch) Rx(roll)",
            "camera": "KITTI: x right, y down, z forward",
            "camera_mounting": "nominal: camera z = vehicle x, camera x = -vehicle y, camera y = -vehicle z, "
                               "no lever arm (the real mounting is not published)",
            "poses": "left camera-to-world relative to the first frame",
        },
        "path_length_m": path_length,
        "stereo_depth": stereo,
        "camera_height_m": None if height is None else {"median": height.height, "p25": height.p25,
                                                        "p75": height.p75, "frames": height.frames},
    }
    (seq_dir / "conversion.json").write_text(json.dumps(info, indent=1) + "\n")
    return KarlsruheResult(seq_dir, n, path_length, stereo, height)


def main(argv: list[str] | None = None) -> int:
    """Command line `sa4depth-karlsruhe`; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="sa4depth-karlsruhe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="the sequence folder (image_left/, image_right/, intrinsics.txt, poses.txt)")
    parser.add_argument("out", help="KITTI odometry root to write (sequences/SS, poses/SS.txt)")
    parser.add_argument("--sequence", default="00", help="sequence folder name (default 00)")
    parser.add_argument("--max-frames", type=int, default=0, help="convert only the first N frames (0 = all)")
    parser.add_argument("--no-depth", action="store_true", help="skip stereo depth and the camera height")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing sequence of that name")
    args = parser.parse_args(argv)

    def progress(done: int, total: int) -> None:
        if done % 50 == 0 or done == total:
            print(f"  stereo depth {done}/{total}", flush=True)

    try:
        result = convert(args.source, args.out, args.sequence, args.max_frames, not args.no_depth, args.overwrite,
                         progress=progress)
    except (InputError, OSError) as exc:  # OSError: an output that is a file, a full disk, no permission
        print(f"sa4depth-karlsruhe: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {result.seq_dir}: {result.frames} frames, left-camera path {result.path_length_m:.1f} m")
    if result.stereo and result.stereo["valid_fraction"] is not None:
        s = result.stereo
        print(f"stereo depth: {s['valid_fraction']:.1%} of pixels valid, {s['lr_rejected']:.1%} removed by the "
              f"left-right check (mean over {s['matched']} frames matched now)")
    if result.camera_height is not None:
        h = result.camera_height
        print(f"camera height above the road: {h.height:.3f} m (median of {h.frames}/{h.tried} frames, "
              f"quartiles {h.p25:.3f}-{h.p75:.3f} m)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
