"""Dataset readers: calibration parsing, KITTI raw / odometry / image folders, triplets, pose files."""
from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sa4depth_core.data.calib import CalibFile, load_odometry_calib, load_raw_calib
from sa4depth_core.data.image_folder import ImageFolderSequence, load_intrinsics
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence, read_depth_png
from sa4depth_core.data.kitti_raw import (KittiRawDrive, SplitItem, load_split_file, load_velodyne,
                                          parse_split_line, velodyne_depth)
from sa4depth_core.data.pose_io import load_kitti_poses, load_tum_poses, save_kitti_poses, save_tum_poses
from sa4depth_core.data.augment import color_jitter
from sa4depth_core.data.sequence import TripletDataset, train_val_split
from sa4depth_core.errors import InputError

SHARED_POSES = Path("/work/shared/data/kitti_odometry/gt_poses/09.txt")


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def frame_colour(i: int) -> tuple[int, int, int]:
    return (10 * i + 5, 100, 200 - i)


def const_frame(i: int, h: int, w: int) -> np.ndarray:
    return np.broadcast_to(np.array(frame_colour(i), np.uint8), (h, w, 3)).copy()


def fmt(values) -> str:
    return " ".join(f"{v:.12e}" for v in np.ravel(values))


# ----------------------------------------------------------------------------------------- calib

ODO_P2 = np.array([[20.0, 0, 7.5, 20.0 * 0.06], [0, 18.0, 5.5, 0], [0, 0, 1, 0]])


def write_odometry_calib(path: Path, P2=ODO_P2, skip=(), override=None) -> None:
    P0 = np.array([[20.0, 0, 7.5, 0], [0, 18.0, 5.5, 0], [0, 0, 1, 0]])
    P1 = P0.copy()
    P1[0, 3] = -20.0 * 0.54
    lines = {"P0": fmt(P0), "P1": fmt(P1), "P2": fmt(P2), "P3": fmt(P2), "Tr": fmt(np.eye(4)[:3])}
    lines.update(override or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}: {v}\n" for k, v in lines.items() if k not in skip))


def test_calib_file_reads_numbers_and_tolerates_text_entries(tmp_path):
    path = tmp_path / "calib_cam_to_cam.txt"
    path.write_text("calib_time: 09-Jan-2012 13:57:47\ncorner_dist: 9.950000e-02\n\n"
                    "S_rect_02: 1.242000e+03 3.750000e+02\n")
    calib = CalibFile(path)
    assert calib.array("S_rect_02", 2).tolist() == [1242.0, 375.0]
    assert calib.array("corner_dist", 1).tolist() == [0.0995]
    with pytest.raises(InputError, match="key calib_time has a non-numeric value"):
        calib.array("calib_time", 1)


@pytest.mark.parametrize("case, message", [
    ("missing_file", r"calib\.txt: calibration file not found"),
    ("missing_key", r"calib\.txt: key P2 is missing"),
    ("wrong_count", r"calib\.txt: key P2 has 9 numbers, expected 12"),
    ("non_numeric", r"calib\.txt: key P2 has a non-numeric value"),
    ("duplicate_key", r"calib\.txt: key P2 appears more than once"),
    ("no_colon", r"calib\.txt: line 6 is not of the form 'key: values'"),
])
def test_malformed_odometry_calib_names_file_and_key(tmp_path, case, message):
    path = tmp_path / "calib.txt"
    if case == "missing_key":
        write_odometry_calib(path, skip=("P2",))
    elif case == "wrong_count":
        write_odometry_calib(path, override={"P2": fmt(np.arange(9.0))})
    elif case == "non_numeric":
        write_odometry_calib(path, override={"P2": "1 2 3 4 5 6 seven 8 9 10 11 12"})
    elif case == "duplicate_key":
        write_odometry_calib(path)
        path.write_text(path.read_text() + f"P2: {fmt(ODO_P2)}\n")
    elif case == "no_colon":
        write_odometry_calib(path)
        path.write_text(path.read_text() + "garbage line\n")
    with pytest.raises(InputError, match=message):
        load_odometry_calib(path)


# -------------------------------------------------------------------------------------- KITTI raw

RAW_W, RAW_H = 64, 24
RAW_P_RECT = np.array([[100.0, 0, 30, 50], [0, 100, 10, 0], [0, 0, 1, 0]])
VELO_R = np.array([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]])  # velodyne x forward -> camera z forward
VELO_T = np.array([0.1, -0.2, 0.5])
DATE = "2011_09_26"
DRIVE = f"{DATE}_drive_0002_sync"


def write_raw_calib(date_dir: Path, R_rect=np.eye(3), cam_override=None, velo_override=None) -> None:
    date_dir.mkdir(parents=True, exist_ok=True)
    cam = {"calib_time": "09-Jan-2012 13:57:47", "corner_dist": "9.950000e-02",
           "S_02": "1.392000e+03 5.120000e+02", "R_rect_00": fmt(R_rect),
           "S_rect_02": f"{RAW_W}.0 {RAW_H}.0", "P_rect_02": fmt(RAW_P_RECT),
           "S_rect_03": f"{RAW_W}.0 {RAW_H}.0", "P_rect_03": fmt(RAW_P_RECT - [[0, 0, 0, 54], [0] * 4, [0] * 4])}
    cam.update(cam_override or {})
    velo = {"calib_time": "15-Mar-2012 11:37:16", "R": fmt(VELO_R), "T": fmt(VELO_T),
            "delta_f": "0.000000e+00 0.000000e+00"}
    velo.update(velo_override or {})
    (date_dir / "calib_cam_to_cam.txt").write_text("".join(f"{k}: {v}\n" for k, v in cam.items()))
    (date_dir / "calib_velo_to_cam.txt").write_text("".join(f"{k}: {v}\n" for k, v in velo.items()))


# Hand projection with R_rect = I: camera = (-y + 0.1, -z - 0.2, x + 0.5),
# u = (100 X + 30 Z + 50) / Z, v = (100 Y + 10 Z) / Z, pixel = round - 1.
HAND_POINTS = np.array([
    [19.5, -2.4, -0.4, 0.3],    # camera (2.5, 0.2, 20):  (45, 11)  -> (44, 10), depth 19.5
    [9.5, -0.9, -0.3, 0.7],     # camera (1.0, 0.1, 10):  (45, 11)  -> (44, 10), depth 9.5 (minimum)
    [29.5, -3.9, -0.5, 0.1],    # camera (4.0, 0.3, 30):  (45, 11)  -> (44, 10), depth 29.5
    [3.5, 0.388, -0.148, 0.2],  # camera (-0.288, -0.052, 4): (35.3, 8.7) -> (34, 8), depth 3.5
    [-5.0, 1.275, -0.155, 0.9], # x < 0: dropped, although it also projects to (45, 11) and would win the minimum
    [9.5, -2.92, -0.3, 0.5],    # (65.2, 11) -> u = 64 = W: dropped
    [9.5, 3.56, -0.3, 0.5],     # (0.4, 11)  -> u = -1: dropped
    [9.5, 3.54, -0.3, 0.5],     # (0.6, 11)  -> (0, 10), depth 9.5
    [9.5, -0.9, -1.72, 0.5],    # (45, 25.2) -> v = 24 = H: dropped
    [9.5, -1.9, -1.64, 0.5],    # (55, 24.4) -> (54, 23), depth 9.5
], dtype=np.float32)
HAND_DEPTH = {(10, 44): 9.5, (8, 34): 3.5, (10, 0): 9.5, (23, 54): 9.5}


def build_raw_drive(root: Path, n: int = 4, size=(RAW_H, RAW_W), with_velodyne=True) -> Path:
    write_raw_calib(root / DATE)
    drive_dir = root / DATE / DRIVE
    for i in range(n):
        write_rgb(drive_dir / "image_02" / "data" / f"{i:010d}.png", const_frame(i, *size))
    stamps = [f"2011-09-26 13:02:{25 + i}.{964389445 + i:09d}" for i in range(n)]
    (drive_dir / "image_02" / "timestamps.txt").write_text("\n".join(stamps) + "\n")
    if with_velodyne:
        (drive_dir / "velodyne_points" / "data").mkdir(parents=True)
        for i in range(n):
            HAND_POINTS.tofile(drive_dir / "velodyne_points" / "data" / f"{i:010d}.bin")
    return drive_dir


def test_velodyne_projection_matches_hand_computation(tmp_path):
    write_raw_calib(tmp_path)
    calib = load_raw_calib(tmp_path, camera=2)
    depth = velodyne_depth(HAND_POINTS, calib)
    assert depth.shape == (RAW_H, RAW_W) and depth.dtype == np.float32
    expected = np.zeros((RAW_H, RAW_W), np.float32)
    for (v, u), d in HAND_DEPTH.items():
        expected[v, u] = d
    np.testing.assert_array_equal(depth, expected)
    # Projective depth instead of Velodyne x: camera z of the nearest point at (44, 10) is 10.
    assert velodyne_depth(HAND_POINTS, calib, vel_depth=False)[10, 44] == pytest.approx(10.0)


def test_velodyne_projection_with_rectification_matches_reference_loop(tmp_path):
    c, s = math.cos(0.05), math.sin(0.05)
    write_raw_calib(tmp_path, R_rect=np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]))
    calib = load_raw_calib(tmp_path)
    rng = np.random.default_rng(0)
    points = np.c_[rng.uniform(-2, 40, 3000), rng.uniform(-6, 6, 3000), rng.uniform(-2, 1, 3000),
                   rng.uniform(0, 1, 3000)].astype(np.float32)
    R_rect4 = np.eye(4)
    R_rect4[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    velo4 = np.eye(4)
    velo4[:3, :3], velo4[:3, 3] = VELO_R, VELO_T
    P = RAW_P_RECT @ R_rect4 @ velo4
    best: dict[tuple[int, int], float] = {}
    for x, y, z, _ in points.astype(np.float64):
        if x < 0:
            continue
        a, b, w = P @ [x, y, z, 1.0]
        u, v = int(np.round(a / w)) - 1, int(np.round(b / w)) - 1
        if 0 <= u < RAW_W and 0 <= v < RAW_H:
            best[(v, u)] = min(best.get((v, u), np.inf), x)
    expected = np.zeros((RAW_H, RAW_W))
    for (v, u), d in best.items():
        expected[v, u] = d
    assert len(best) > 50 and len(best) < (points[:, 0] >= 0).sum()  # there are duplicates
    np.testing.assert_allclose(velodyne_depth(points, calib), expected, rtol=1e-6)


def test_raw_calib_errors_name_file_and_key(tmp_path):
    write_raw_calib(tmp_path / "a", cam_override={"S_rect_02": "64.0"})
    with pytest.raises(InputError, match=r"calib_cam_to_cam\.txt: key S_rect_02 has 1 numbers, expected 2"):
        load_raw_calib(tmp_path / "a")
    write_raw_calib(tmp_path / "b", velo_override={"T": "0.1 x 0.3"})
    with pytest.raises(InputError, match=r"calib_velo_to_cam\.txt: key T has a non-numeric value"):
        load_raw_calib(tmp_path / "b")
    write_raw_calib(tmp_path / "c")
    (tmp_path / "c" / "calib_velo_to_cam.txt").unlink()
    with pytest.raises(InputError, match=r"calib_velo_to_cam\.txt: calibration file not found"):
        load_raw_calib(tmp_path / "c")


def test_raw_drive_reads_images_timestamps_and_depth(tmp_path):
    drive = KittiRawDrive(build_raw_drive(tmp_path, n=4))
    assert len(drive) == 4 and drive.image_size == (RAW_H, RAW_W) and drive.has_depth and not drive.has_poses
    np.testing.assert_array_equal(drive.intrinsics(), RAW_P_RECT[:, :3])
    assert drive.image(2)[0, 0].tolist() == list(frame_colour(2))
    t0 = datetime(2011, 9, 26, 13, 2, 25, tzinfo=timezone.utc).timestamp() + 0.964389445
    assert drive.timestamp(0) == pytest.approx(t0, abs=1e-6)
    assert drive.timestamp(3) - drive.timestamp(0) == pytest.approx(3.000000003, abs=1e-6)
    assert drive.gt_depth(1)[8, 34] == 3.5 and (drive.gt_depth(1) > 0).sum() == len(HAND_DEPTH)
    assert drive.pose(0) is None
    assert load_velodyne(tmp_path / DATE / DRIVE / "velodyne_points/data/0000000000.bin").shape == (10, 4)


def test_raw_drive_validation(tmp_path):
    with pytest.raises(InputError, match="KITTI raw drive directory not found"):
        KittiRawDrive(tmp_path / DATE / "nope")
    drive_dir = build_raw_drive(tmp_path / "small", size=(20, 60), with_velodyne=False)
    message = r"0000000000\.png is 60x20 but .*calib_cam_to_cam\.txt key S_rect_02 says 64x24"
    with pytest.raises(InputError, match=message):
        KittiRawDrive(drive_dir)
    drive_dir = build_raw_drive(tmp_path / "short")
    (drive_dir / "image_02" / "timestamps.txt").write_text("2011-09-26 13:02:25.1\n")
    with pytest.raises(InputError, match=r"timestamps\.txt has 1 timestamps but frame 0000000003 exists"):
        KittiRawDrive(drive_dir)


def test_split_file_parsing(tmp_path):
    item = parse_split_line("2011_09_26/2011_09_26_drive_0002_sync 0000000069 l")
    assert item == SplitItem(drive="2011_09_26/2011_09_26_drive_0002_sync", frame=69, camera=2)
    assert item.date == "2011_09_26"
    assert parse_split_line("2011_09_26/2011_09_26_drive_0002_sync 12 r").camera == 3
    path = tmp_path / "test_files.txt"
    path.write_text(f"{DATE}/{DRIVE} 0000000003 l\n\n{DATE}/{DRIVE} 1 r\n{DATE}/{DRIVE} 7 x\n")
    with pytest.raises(InputError, match=r"test_files\.txt: line 4: side must be 'l' or 'r'"):
        load_split_file(path)
    path.write_text(f"{DATE}/{DRIVE} 0000000003 l\n\n{DATE}/{DRIVE} 1 r\n")
    items = load_split_file(path)
    assert [(i.frame, i.camera) for i in items] == [(3, 2), (1, 3)]
    for bad in ("2011_09_26/x 12", "2011_09_26/x -3 l", "nodate 3 l"):
        with pytest.raises(InputError):
            parse_split_line(bad)
    build_raw_drive(tmp_path / "root")
    drive = KittiRawDrive(tmp_path / "root" / items[0].drive, camera=items[0].camera)
    assert drive.frame_number(drive.index_of(items[0].frame)) == 3


# ---------------------------------------------------------------------------------- KITTI odometry

ODO_H, ODO_W = 12, 16


def rot_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def odometry_poses(n: int) -> np.ndarray:
    poses = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        poses[i, :3, :3] = rot_y(0.1 * i)
        poses[i, :3, 3] = [0.3 * i, -0.01 * i, 1.0 * i]
    return poses


def build_odometry(root: Path, n: int = 6, seq: str = "00", poses=True, depth=True) -> Path:
    seq_dir = root / "sequences" / seq
    for i in range(n):
        write_rgb(seq_dir / "image_2" / f"{i:06d}.png", const_frame(i, ODO_H, ODO_W))
        if depth:
            d = np.zeros((ODO_H, ODO_W), np.uint16)
            d[3, 4] = 640 + i  # 2.5 m + i/256
            (seq_dir / "depth_2").mkdir(exist_ok=True)
            assert cv2.imwrite(str(seq_dir / "depth_2" / f"{i:06d}.png"), d)
    write_odometry_calib(seq_dir / "calib.txt")
    (seq_dir / "times.txt").write_text("".join(f"{0.1 * i:.6e}\n" for i in range(n)))
    if poses:
        (root / "poses").mkdir()
        save_kitti_poses(root / "poses" / f"{seq}.txt", odometry_poses(n))
    return seq_dir


def test_odometry_sequence_reads_everything(tmp_path):
    build_odometry(tmp_path)
    seq = KittiOdometrySequence(tmp_path, 0)
    assert len(seq) == 6 and seq.image_size == (ODO_H, ODO_W) and seq.has_poses and seq.has_depth
    np.testing.assert_array_equal(seq.intrinsics(), ODO_P2[:, :3])
    assert seq.image(4)[5, 5].tolist() == list(frame_colour(4))
    assert seq.timestamp(3) == pytest.approx(0.3)
    depth = seq.gt_depth(2)
    assert depth.dtype == np.float32 and depth[3, 4] == pytest.approx(2.5 + 2 / 256) and (depth > 0).sum() == 1
    # P2[0,3] = +fx * 0.06 puts camera 2 0.06 m along camera 0's -x (left, as in KITTI):
    # same rotation, centre moved along the rotated x axis.
    cam0 = odometry_poses(6)[5]
    pose = seq.pose(5)
    np.testing.assert_allclose(pose[:3, :3], cam0[:3, :3], atol=1e-12)
    np.testing.assert_allclose(pose[:3, 3], cam0[:3, 3] - 0.06 * cam0[:3, 0], atol=1e-9)


def test_odometry_without_optional_parts(tmp_path):
    build_odometry(tmp_path, seq="07", poses=False, depth=False)
    seq = KittiOdometrySequence(tmp_path, "07")
    assert not seq.has_poses and not seq.has_depth
    assert seq.pose(0) is None and seq.gt_depth(0) is None
    with pytest.raises(InputError, match=r"poses.*07\.txt: KITTI poses file not found"):
        KittiOdometrySequence(tmp_path, 7, poses_path=tmp_path / "poses" / "07.txt")


def test_odometry_validation(tmp_path):
    with pytest.raises(InputError, match=r"sequences/03: KITTI odometry sequence directory not found"):
        KittiOdometrySequence(tmp_path, 3)
    seq_dir = build_odometry(tmp_path / "a")
    (seq_dir / "times.txt").write_text("0.0\n0.1\n")
    with pytest.raises(InputError, match=r"times\.txt has 2 timestamps but .*image_2 has 6 frames"):
        KittiOdometrySequence(tmp_path / "a", 0)
    build_odometry(tmp_path / "b")
    save_kitti_poses(tmp_path / "b" / "poses" / "00.txt", odometry_poses(5))
    with pytest.raises(InputError, match=r"00\.txt has 5 poses but the sequence has 6 frames"):
        KittiOdometrySequence(tmp_path / "b", 0)
    seq_dir = build_odometry(tmp_path / "c")
    write_rgb(seq_dir / "image_2" / "000004.png", const_frame(4, 6, 8))
    (seq_dir / "image_2" / "000002.png").write_bytes(b"not a png")
    seq = KittiOdometrySequence(tmp_path / "c", 0)
    with pytest.raises(InputError, match=r"frame .*000004\.png is 8x6 but the sequence is 16x12"):
        seq.image(4)
    with pytest.raises(InputError, match=r"frame .*000002\.png cannot be decoded"):
        seq.image(2)
    (seq_dir / "depth_2" / "000001.png").unlink()
    with pytest.raises(InputError, match=r"depth frame .*000001\.png is missing"):
        seq.gt_depth(1)
    assert cv2.imwrite(str(seq_dir / "depth_2" / "000001.png"), np.zeros((ODO_H, ODO_W), np.uint8))
    with pytest.raises(InputError, match="must be a single-channel uint16 PNG"):
        read_depth_png(seq_dir / "depth_2" / "000001.png")


def build_grey_odometry(root: Path, n: int = 4) -> Path:
    """A grey-only copy of a sequence: image_0 (single-channel PNGs), calib.txt with P0 and P1 only."""
    seq_dir = root / "sequences" / "00"
    (seq_dir / "image_0").mkdir(parents=True)
    for i in range(n):
        grey = np.full((ODO_H, ODO_W), 10 * i + 5, np.uint8)
        grey[2, 3] = 250  # one bright pixel: a grey frame must not come out uniform per channel
        assert cv2.imwrite(str(seq_dir / "image_0" / f"{i:06d}.png"), grey)
    write_odometry_calib(seq_dir / "calib.txt", skip=("P2", "P3"))
    (seq_dir / "times.txt").write_text("".join(f"{0.1 * i:.6e}\n" for i in range(n)))
    (root / "poses").mkdir()
    save_kitti_poses(root / "poses" / "00.txt", odometry_poses(n))
    return seq_dir


def test_grey_odometry_camera_replicates_channel_and_uses_P0(tmp_path):
    build_grey_odometry(tmp_path)
    for camera in (0, "image_0", "0"):
        seq = KittiOdometrySequence(tmp_path, "00", camera=camera)
        assert seq.name.endswith("/image_0") and len(seq) == 4
        np.testing.assert_array_equal(seq.intrinsics(), [[20.0, 0, 7.5], [0, 18.0, 5.5], [0, 0, 1]])
        np.testing.assert_allclose(seq.pose(3), odometry_poses(4)[3], atol=1e-12)  # camera 0 is the pose frame
    image = seq.image(2)
    assert image.shape == (ODO_H, ODO_W, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [25, 25, 25] and image[2, 3].tolist() == [250, 250, 250]
    item = TripletDataset(seq, ODO_H, ODO_W)[0]
    assert item["images"].shape == (3, 3, ODO_H, ODO_W)
    torch.testing.assert_close(item["images"][:, 0], item["images"][:, 2])


def test_grey_odometry_through_the_data_config(tmp_path):
    from sa4depth_core.config import load_config
    from sa4depth_core.data.sources import open_sequences

    build_grey_odometry(tmp_path)
    cfg = load_config(None, [f"data.root={tmp_path}", "data.camera=image_0"])
    (seq,) = open_sequences(cfg, ["00"])
    assert seq.name == "kitti_odometry/00/image_0"
    cfg.data.camera = "image_5"
    with pytest.raises(InputError, match=r"image_0, image_1, image_2 or image_3 .*'image_5'"):
        open_sequences(cfg, ["00"])


def test_missing_colour_camera_names_the_grey_one_and_the_fix(tmp_path):
    from sa4depth_core.data.kitti_recording import load_odometry_sequence

    seq_dir = build_grey_odometry(tmp_path)
    with pytest.raises(InputError, match=r"image_2: image directory not found; the sequence has image_0: "
                                         r"choose one with data\.camera=image_0 .*--camera image_0"):
        KittiOdometrySequence(tmp_path, "00")
    with pytest.raises(InputError, match=r"image_2: image directory not found; .*--cameras 0"):
        load_odometry_sequence(seq_dir)
    # The P keys of the cameras asked for must be there; a grey rig's calib.txt lacks P2.
    (seq_dir / "image_2").mkdir()
    assert cv2.imwrite(str(seq_dir / "image_2" / "000000.png"), np.zeros((ODO_H, ODO_W, 3), np.uint8))
    with pytest.raises(InputError, match=r"calib\.txt: key P2 is missing"):
        load_odometry_sequence(seq_dir)
    rec = load_odometry_sequence(seq_dir, cameras=(0,))
    (stream,) = rec.cameras
    assert stream.grey and stream.model.P[0, 0] == 20.0 and stream.model.P[0, 3] == 0.0


# ------------------------------------------------------------------------------------ image folder


def build_folder(folder: Path, n: int = 5, names=None, h: int = ODO_H, w: int = ODO_W) -> Path:
    for i, name in enumerate(names or [f"{i:06d}.png" for i in range(n)]):
        write_rgb(folder / name, const_frame(i, h, w))
    return folder


@pytest.mark.parametrize("name, text", [
    ("intrinsics.txt", "# fx fy cx cy\n20 18 7.5 5.5\n"),
    ("intrinsics.txt", "20 0 7.5\n0 18 5.5\n0 0 1\n"),
    ("camera_info.yaml", "width: 16\nheight: 12\nk: [20, 0, 7.5, 0, 18, 5.5, 0, 0, 1]\n"),
    ("camera_info.yml", "K: [20, 0, 7.5, 0, 18, 5.5, 0, 0, 1]\n"),
    ("intrinsics.yaml", "image_width: 16\nimage_height: 12\ncamera_matrix:\n  rows: 3\n  cols: 3\n"
                        "  data: [20, 0, 7.5, 0, 18, 5.5, 0, 0, 1]\n"),
])
def test_image_folder_intrinsics_formats(tmp_path, name, text):
    build_folder(tmp_path)
    (tmp_path / name).write_text(text)
    seq = ImageFolderSequence(tmp_path)
    np.testing.assert_array_equal(seq.intrinsics(), [[20, 0, 7.5], [0, 18, 5.5], [0, 0, 1]])


def test_image_folder_order_times_and_errors(tmp_path):
    folder = build_folder(tmp_path / "f", names=["f1.png", "f2.jpg", "f10.png"])
    (folder / "notes.md").write_text("not an image")
    with pytest.raises(InputError, match=r"f: no intrinsics file \(looked for intrinsics\.txt"):
        ImageFolderSequence(folder)
    (folder / "intrinsics.txt").write_text("20 18 7.5 5.5 1\n")
    with pytest.raises(InputError, match=r"intrinsics\.txt: intrinsics need 9 numbers .* got 5"):
        ImageFolderSequence(folder)
    (folder / "intrinsics.txt").write_text("20 18 7.5 5.5\n")
    seq = ImageFolderSequence(folder, fps=4.0)
    assert len(seq) == 3 and seq.timestamp(2) == 0.5
    assert seq.image(2)[0, 0].tolist() == list(frame_colour(2))  # f10 is last
    (folder / "times.txt").write_text("5.0\n5.25\n5.5\n")
    assert ImageFolderSequence(folder).timestamp(1) == 5.25
    (folder / "times.txt").write_text("5.0\n5.25\n")
    with pytest.raises(InputError, match=r"times\.txt has 2 timestamps for 3 images"):
        ImageFolderSequence(folder)
    (folder / "times.txt").unlink()
    write_rgb(folder / "f10.png", const_frame(0, 480, 640))
    with pytest.raises(InputError, match=r"frame .*f10\.png is 640x480 but the sequence is 16x12"):
        ImageFolderSequence(folder).image(2)
    (folder / "cam.yaml").write_text("width: 32\nheight: 12\nk: [20, 0, 7.5, 0, 18, 5.5, 0, 0, 1]\n")
    with pytest.raises(InputError, match=r"cam\.yaml is for 32x12 images but .*f1\.png is 16x12"):
        ImageFolderSequence(folder, intrinsics=folder / "cam.yaml")
    with pytest.raises(InputError, match="image directory not found"):
        ImageFolderSequence(tmp_path / "missing")
    assert load_intrinsics(folder / "intrinsics.txt")[1] is None


# ---------------------------------------------------------------------------------------- triplets


def folder_sequence(folder: Path, n: int, times=None, h=ODO_H, w=ODO_W, frames=None) -> ImageFolderSequence:
    folder.mkdir(parents=True)
    for i in range(n):
        write_rgb(folder / f"{i:06d}.png", const_frame(i, h, w) if frames is None else frames[i])
    (folder / "intrinsics.txt").write_text("20 18 7.5 5.5\n")
    if times is not None:
        (folder / "times.txt").write_text("".join(f"{t}\n" for t in times))
    return ImageFolderSequence(folder)


def centre_frames(ds: TripletDataset) -> list[int]:
    return [int(ds[k]["frame"]) for k in range(len(ds))]


def test_triplets_frame_order_ends_and_scaled_intrinsics(tmp_path):
    seqs = [folder_sequence(tmp_path / "a", 6), folder_sequence(tmp_path / "b", 3)]
    ds = TripletDataset(seqs, height=6, width=8)
    assert len(ds) == 4 + 1 and centre_frames(ds) == [1, 2, 3, 4, 1]
    item = ds[0]
    assert item["images"].shape == (3, 3, 6, 8) and item["images"].dtype == torch.float32
    for k, frame in enumerate([1, 0, 2]):  # offsets (0, -1, 1)
        expected = torch.tensor(frame_colour(frame), dtype=torch.float32) / 255
        torch.testing.assert_close(item["images"][k, :, 2, 3], expected)
    # 16x12 -> 8x6 with integer pixel centres: fx' = fx/2, cx' = (cx + 0.5)/2 - 0.5.
    torch.testing.assert_close(item["K"], torch.tensor([[10.0, 0, 3.5], [0, 9.0, 2.5], [0, 0, 1]]))
    torch.testing.assert_close(item["K"] @ item["K_inv"], torch.eye(3))
    assert int(ds[4]["sequence"]) == 1 and int(ds[4]["index"]) == 4 and "pose_gt" not in item
    assert centre_frames(TripletDataset(seqs[0], 6, 8, frame_offsets=(0, 1))) == [0, 1, 2, 3, 4]
    assert centre_frames(TripletDataset(seqs[0], 6, 8, frame_offsets=(0, -2, -1))) == [2, 3, 4, 5]
    with pytest.raises(InputError, match="frame_offsets must be distinct and contain 0"):
        TripletDataset(seqs, 6, 8, frame_offsets=(-1, 1))
    with pytest.raises(InputError, match="has all neighbours"):
        TripletDataset(seqs[1], 6, 8, frame_offsets=(0, -2, 2))


def test_scaled_intrinsics_match_area_resize(tmp_path):
    frame = np.zeros((24, 32, 3), np.uint8)
    frame[6:8, 10:12] = 255  # a 2x2 block centred on native pixel (10.5, 6.5)
    seq = folder_sequence(tmp_path / "a", 3, h=24, w=32, frames=[frame] * 3)
    item = TripletDataset(seq, height=12, width=16)[0]
    v, u = np.unravel_index(int(item["images"][0, 0].argmax()), (12, 16))
    assert float(item["images"][0, 0, v, u]) == 1.0 and (item["images"][0, 0] > 0).sum() == 1
    point = np.linalg.inv(seq.intrinsics()) @ [10.5, 6.5, 1.0] * 7.0
    projected = item["K"].double().numpy() @ point
    np.testing.assert_allclose(projected[:2] / projected[2], [u, v], atol=1e-5)


def test_triplets_skip_time_gaps(tmp_path):
    times = [0.0, 0.1, 0.2, 0.5, 0.6, 0.7, 0.8, 0.75]
    seq = folder_sequence(tmp_path / "a", 8, times=times)
    ds = TripletDataset(seq, 6, 8, max_time_gap=0.15)
    # Bad gaps: 2->3 (0.3 s) and 6->7 (backwards); windows [i-1, i+1] must avoid both.
    assert centre_frames(ds) == [1, 4, 5]
    torch.testing.assert_close(ds[1]["timestamps"], torch.tensor([0.6, 0.5, 0.7], dtype=torch.float64))
    assert len(TripletDataset(seq, 6, 8)) == 6


def find_item(ds: TripletDataset, predicate, epochs: int = 20) -> dict:
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        for k in range(len(ds)):
            item = ds[k]
            if predicate(item):
                return item
    raise AssertionError("no item satisfies the predicate")


def test_flip_mirrors_image_and_principal_point(tmp_path):
    frames = [np.full((ODO_H, ODO_W, 3), 40, np.uint8) for _ in range(3)]
    frames[0][2, 3] = 250
    seq = folder_sequence(tmp_path / "a", 3, frames=frames)
    plain = TripletDataset(seq, ODO_H, ODO_W)[0]
    ds = TripletDataset(seq, ODO_H, ODO_W, augment=True)
    item = find_item(ds, lambda it: bool(it["flipped"]))
    torch.testing.assert_close(item["images"], plain["images"].flip(-1))
    K = item["K"].double().numpy()
    assert K[0, 2] == pytest.approx(ODO_W - 1 - 7.5) and K[1, 2] == pytest.approx(5.5)
    assert float(item["images"][1, 0, 2, ODO_W - 1 - 3]) == pytest.approx(250 / 255)  # frame 0 is offset -1
    X = np.linalg.inv(seq.intrinsics()) @ [3.0, 2.0, 1.0] * 4.0
    mirrored = K @ (X * [-1, 1, 1])
    np.testing.assert_allclose(mirrored[:2] / mirrored[2], [ODO_W - 1 - 3, 2], atol=1e-9)


def test_augmentation_is_per_item_deterministic_and_shared_by_frames(tmp_path):
    texture = np.random.default_rng(1).integers(0, 256, (ODO_H, ODO_W, 3), dtype=np.uint8)
    seq = folder_sequence(tmp_path / "a", 6, frames=[texture] * 6)
    ds = TripletDataset(seq, ODO_H, ODO_W, augment=True, seed=3)
    item = find_item(ds, lambda it: not torch.equal(it["images"], it["images_aug"]))
    aug = item["images_aug"]
    assert torch.equal(aug[0], aug[1]) and torch.equal(aug[0], aug[2])
    expected = torch.from_numpy(texture.transpose(2, 0, 1) / 255.0).float()
    torch.testing.assert_close(item["images"][0], expected.flip(-1) if item["flipped"] else expected)
    idx = int(item["index"])
    torch.testing.assert_close(ds[idx]["images_aug"], aug)
    draws = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        draws.append(ds[idx]["images_aug"])
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["images_aug"].shape == (2, 3, 3, ODO_H, ODO_W)


def test_color_jitter_operations():
    rgb = np.array([[[[0.2, 0.5, 0.9], [1.0, 0.0, 0.0]]]], np.float32)  # (1,1,2,3)
    np.testing.assert_allclose(color_jitter(rgb, 1.2, 1, 1, 0, order=(0,)), np.minimum(rgb * 1.2, 1))
    grey = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(color_jitter(rgb, 1, 1, 0, 0, order=(2,)), np.repeat(grey[..., None], 3, -1), atol=1e-6)
    np.testing.assert_allclose(color_jitter(rgb, 1, 0, 1, 0, order=(1,)), np.full_like(rgb, grey.mean()), atol=1e-6)
    np.testing.assert_allclose(color_jitter(rgb, 1, 1, 1, 0.5, order=(3,))[0, 0, 1], [0, 1, 1], atol=1e-5)
    np.testing.assert_allclose(color_jitter(rgb, 1, 1, 1, 1 / 3, order=(3,))[0, 0, 1], [0, 1, 0], atol=1e-5)


def test_triplets_with_depth_and_poses_from_odometry(tmp_path):
    build_odometry(tmp_path)
    seq = KittiOdometrySequence(tmp_path, 0)
    ds = TripletDataset(seq, 6, 8, with_depth=True)
    item = ds[0]
    assert item["depth_gt"].shape == (1, ODO_H, ODO_W)
    assert float(item["depth_gt"][0, 3, 4]) == pytest.approx(2.5 + 1 / 256)
    expected_poses = np.stack([seq.pose(1), seq.pose(0), seq.pose(2)])
    torch.testing.assert_close(item["pose_gt"], torch.from_numpy(expected_poses).float())
    flipped = find_item(TripletDataset(seq, 6, 8, with_depth=True, augment=True), lambda it: bool(it["flipped"]))
    assert float(flipped["depth_gt"][0, 3, ODO_W - 1 - 4]) > 2.5
    # Mirrored poses carry a mirrored point between frames: S (A^-1 B X) = A'^-1 B' (S X).
    A, B = (p.double().numpy() for p in flipped["pose_gt"][1:])
    i = int(flipped["frame"])
    A0, B0 = seq.pose(i - 1), seq.pose(i + 1)
    X = np.array([0.7, -0.2, 5.0, 1.0])
    S = np.diag([-1.0, 1, 1, 1])
    np.testing.assert_allclose(np.linalg.inv(A) @ B @ (S @ X), S @ (np.linalg.inv(A0) @ B0 @ X), atol=1e-4)
    assert np.linalg.det(A[:3, :3]) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(InputError, match="no ground-truth depth"):
        TripletDataset(folder_sequence(tmp_path / "f", 3), 6, 8, with_depth=True)


def test_train_val_split():
    train, val = train_val_split(100, 0.2, seed=5, block=10)
    assert len(val) == 20 and len(train) == 80
    assert np.array_equal(np.sort(np.r_[train, val]), np.arange(100))
    assert all(np.ptp(val[k:k + 10]) == 9 for k in range(0, 20, 10))  # whole blocks
    assert np.array_equal(train_val_split(100, 0.2, seed=5, block=10)[1], val)
    assert not np.array_equal(train_val_split(100, 0.2, seed=6, block=10)[1], val)
    assert len(train_val_split(7, 0.01)[1]) == 1 and len(train_val_split(7, 0.0)[1]) == 0
    with pytest.raises(InputError):
        train_val_split(10, 1.0)


# -------------------------------------------------------------------------------------- pose files


def random_poses(n: int, seed: int = 0) -> np.ndarray:
    from transforms3d.euler import euler2mat

    rng = np.random.default_rng(seed)
    poses = np.tile(np.eye(4), (n, 1, 1))
    for p in poses:
        p[:3, :3] = euler2mat(*rng.uniform(-math.pi, math.pi, 3))
        p[:3, 3] = rng.uniform(-100, 100, 3)
    return poses


def test_kitti_pose_round_trip_and_errors(tmp_path):
    poses = random_poses(7)
    save_kitti_poses(tmp_path / "p.txt", poses)
    assert len((tmp_path / "p.txt").read_text().split("\n")[0].split()) == 12
    np.testing.assert_allclose(load_kitti_poses(tmp_path / "p.txt"), poses, atol=1e-9)
    (tmp_path / "bad.txt").write_text("1 0 0 0 0 1 0 0 0 0 1 0\n1 0 0 0 0 1 0 0 0 0 1\n")
    with pytest.raises(InputError, match=r"bad\.txt: line 2 has 11 numbers, expected 12"):
        load_kitti_poses(tmp_path / "bad.txt")
    with pytest.raises(InputError, match="shape"):
        save_kitti_poses(tmp_path / "x.txt", np.eye(4))


@pytest.mark.skipif(not SHARED_POSES.is_file(), reason="shared KITTI poses not present")
def test_real_kitti_poses_file():
    poses = load_kitti_poses(SHARED_POSES)
    assert poses.shape == (1591, 4, 4)  # sequence 09 has 1591 frames
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-6)
    R = poses[:, :3, :3]
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-4)


def test_tum_round_trip_and_quaternion_convention(tmp_path):
    poses = random_poses(5, seed=2)
    times = 1317042145.1 + 0.1 * np.arange(5)
    save_tum_poses(tmp_path / "t.txt", times, poses)
    t, loaded = load_tum_poses(tmp_path / "t.txt")
    np.testing.assert_allclose(t, times, atol=1e-6)
    np.testing.assert_allclose(loaded, poses, atol=1e-9)

    # 270 deg about z: the unit quaternion (0, 0, sin 135, cos 135) has w < 0; written as its negation.
    rz = np.eye(4)
    rz[:3, :3] = [[0, 1, 0], [-1, 0, 0], [0, 0, 1]]
    rz[:3, 3] = [1, 2, 3]
    save_tum_poses(tmp_path / "z.txt", [0.5], rz[None])
    row = [float(v) for v in (tmp_path / "z.txt").read_text().splitlines()[-1].split()]
    h = math.sqrt(0.5)
    np.testing.assert_allclose(row, [0.5, 1, 2, 3, 0, 0, -h, h], atol=1e-9)
    # Either sign and any positive scale describe the same rotation.
    (tmp_path / "z2.txt").write_text(f"0.5 1 2 3 0 0 {2 * h} {-2 * h}\n")
    np.testing.assert_allclose(load_tum_poses(tmp_path / "z2.txt")[1][0], rz, atol=1e-12)
    (tmp_path / "z3.txt").write_text("0.5 1 2 3 0 0 0 0\n")
    with pytest.raises(InputError, match=r"z3\.txt: pose 0 has a zero quaternion"):
        load_tum_poses(tmp_path / "z3.txt")
    with pytest.raises(InputError, match="2 timestamps for 1 poses"):
        save_tum_poses(tmp_path / "y.txt", [0.0, 1.0], rz[None])
