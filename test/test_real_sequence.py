"""The real Karlsruhe stereo sequence (../shared/data, read in place, never copied into the project):
its conversion to the KITTI odometry layout, stereo depth ground truth, the camera height, and
grey KITTI cameras through the readers and sa4depth-kitti2bag."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from transforms3d.axangles import mat2axangle

from sa4depth_core.config import load_config
from sa4depth_core.data.bag_reader import BAG_TYPESTORE, open_bag
from sa4depth_core.data.karlsruhe import camera_poses, convert, read_ins_track, read_stereo_rig
from sa4depth_core.data.kitti2bag import convert as kitti2bag
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.data.sequence import TripletDataset
from sa4depth_core.data.sources import open_sequences
from sa4depth_core.data.stereo_depth import (StereoParams, ground_camera_height, stereo_depth,
                                             write_stereo_depth)
from sa4depth_core.errors import InputError

DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "karlsruhe_2010_03_09_drive_0019").resolve()
pytestmark = pytest.mark.skipif(not (DATA / "poses.txt").is_file(),
                                reason=f"the Karlsruhe sequence is not at {DATA} (../shared/data relative to the repo)")
FRAMES = 6  # converted for the layout, depth and tool checks: enough for a triplet, quick to match


def grey(kind: str, i: int) -> np.ndarray:
    name = f"image_left/I1_{i:06d}.png" if kind == "left" else f"image_right/I2_{i:06d}.png"
    return cv2.imread(str(DATA / name), cv2.IMREAD_UNCHANGED)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("karlsruhe")
    return root, convert(DATA, root, "00", max_frames=FRAMES)


def test_whole_track_becomes_a_forward_moving_camera():
    track = read_ins_track(DATA / "poses.txt")
    poses = camera_poses(track)
    assert len(poses) == 373
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-12)
    centres = poses[:, :3, 3]
    length = np.linalg.norm(np.diff(centres, axis=0), axis=1).sum()
    assert 220 < length < 232  # the README's 226 m
    # Each step seen from the previous camera: the nominal mounting makes it forward (+z).
    steps = np.einsum("nji,nj->ni", poses[:-1, :3, :3], centres[1:] - centres[:-1])
    moving = np.linalg.norm(steps, axis=1) > 0.1
    forward = steps[moving, 2] / np.linalg.norm(steps[moving], axis=1)
    assert moving.sum() > 300 and np.median(forward) > 0.99 and forward.min() > 0.9
    # The car turns left overall (yaw grows): a left turn is a rotation about the camera's -y (up).
    turn = track.rpy[-1, 2] - track.rpy[0, 2]
    axis, angle = mat2axangle(poses[-1][:3, :3])
    assert turn > 0.5 and (axis * angle)[1] == pytest.approx(-turn, abs=0.05)
    assert track.stamps_ns[-1] - track.stamps_ns[0] == pytest.approx(39.35e9, abs=0.05e9)


def test_yaw_moves_the_image_the_way_the_poses_say():
    """Where the car yaws most within 3 frames, far scenery shifts sideways by about fx * angle,
    in the direction the converted camera rotation predicts (left turn: scene moves right)."""
    track = read_ins_track(DATA / "poses.txt")
    poses = camera_poses(track)
    K = read_stereo_rig(DATA / "intrinsics.txt").K
    i = int(np.argmax(np.abs(track.rpy[3:, 2] - track.rpy[:-3, 2])))
    R = poses[i][:3, :3].T @ poses[i + 3][:3, :3]
    # A far point straight ahead in frame i+3 was at R @ (0, 0, 1) in frame i.
    ahead = R @ np.array([0.0, 0, 1])
    predicted = -K[0, 0] * ahead[0] / ahead[2]  # its image x moves the other way
    upper = [grey("left", j)[:80].astype(np.float32) for j in (i, i + 3)]
    (shift, _), _ = cv2.phaseCorrelate(upper[0], upper[1])
    assert abs(predicted) > 10
    assert np.sign(shift) == np.sign(predicted) and 0.5 < shift / predicted < 1.5


def test_converter_writes_the_kitti_odometry_layout(converted):
    root, result = converted
    seq_dir = root / "sequences" / "00"
    assert result.frames == FRAMES and result.seq_dir == seq_dir
    left = KittiOdometrySequence(root, "00", camera="image_0")
    right = KittiOdometrySequence(root, "00", camera=1)
    assert len(left) == FRAMES and left.image_size == (186, 672) and left.has_poses and left.has_depth
    raw = cv2.imread(str(seq_dir / "image_0" / "000003.png"), cv2.IMREAD_UNCHANGED)
    assert raw.ndim == 2 and raw.dtype == np.uint8
    np.testing.assert_array_equal(raw, grey("left", 3))
    np.testing.assert_array_equal(cv2.imread(str(seq_dir / "image_1" / "000003.png"), cv2.IMREAD_UNCHANGED),
                                  grey("right", 3))
    rgb = left.image(3)
    assert rgb.shape == (186, 672, 3) and (rgb == raw[..., None]).all()
    rig = read_stereo_rig(DATA / "intrinsics.txt")
    np.testing.assert_allclose(left.intrinsics(), rig.K, rtol=1e-12)
    track = read_ins_track(DATA / "poses.txt")
    np.testing.assert_allclose(left.pose(0), np.eye(4), atol=1e-12)
    np.testing.assert_allclose(left.pose(5), camera_poses(track)[5], atol=1e-9)
    # P1 puts the right camera 0.5707 m along the left camera's x.
    np.testing.assert_allclose(right.pose(0)[:3, 3], [rig.baseline, 0, 0], atol=1e-9)
    assert left.timestamp(0) == 0 and left.timestamp(5) == pytest.approx((track.stamps_ns[5] - track.stamps_ns[0]) / 1e9)
    info = json.loads((seq_dir / "conversion.json").read_text())
    assert info["first_stamp_ns"] == int(track.stamps_ns[0]) and info["frames"] == FRAMES
    with pytest.raises(InputError, match="exists: choose another --sequence or pass --overwrite"):
        convert(DATA, root, "00", max_frames=2, depth=False)


def test_stereo_depth_on_real_frames():
    rig = read_stereo_rig(DATA / "intrinsics.txt")
    fx, b = rig.K[0, 0], rig.baseline
    for i in (0, 150, 300):
        result = stereo_depth(grey("left", i), grey("right", i), fx, b)
        depth = result.depth
        valid = depth > 0
        assert 0.4 < result.valid_fraction < 0.85
        assert np.isfinite(depth).all() and depth[valid].min() >= fx * b / 96 - 1e-4
        assert np.isnan(result.disparity[~valid]).all()
        assert result.lr_rejected > 0.02  # occlusions beside parked cars, mismatches
        # A kept pixel's match lies inside the right image.
        assert (np.arange(672)[None, :] - np.nan_to_num(result.disparity) >= -0.5)[valid].all()
        # The road just below the image centre, ahead of the car.
        road = depth[140:175, 250:420]
        assert road[road > 0].size > 1000 and 5 < np.median(road[road > 0]) < 30


def test_stereo_depth_recovers_a_known_shift_and_the_lr_check_removes_an_occlusion():
    rng = np.random.default_rng(0)
    H, W, d = 120, 320, 20
    scene = cv2.GaussianBlur(rng.integers(0, 256, (H, W + d)).astype(np.uint8), (3, 3), 0)
    left = np.ascontiguousarray(scene[:, :W])
    right = np.ascontiguousarray(scene[:, d:])  # right camera at +x: a point sits d px further left
    result = stereo_depth(left, right, fx=200.0, baseline=0.5)
    valid = result.depth > 0
    assert valid.mean() > 0.85
    assert np.median(result.depth[valid]) == pytest.approx(200.0 * 0.5 / d, rel=1e-3)
    np.testing.assert_allclose(result.depth[valid], 200.0 * 0.5 / d, rtol=0.02)  # a quarter pixel
    # A patch pasted into the left image only: nothing in the right matches it consistently.
    occluded = left.copy()
    occluded[40:80, 150:200] = rng.integers(0, 256, (40, 50)).astype(np.uint8)
    hit = stereo_depth(occluded, right, fx=200.0, baseline=0.5)
    assert (hit.depth[45:75, 155:195] > 0).mean() < 0.2 and hit.lr_rejected > result.lr_rejected
    # A flat image has no texture to match.
    flat = stereo_depth(np.full((H, W), 90, np.uint8), np.full((H, W), 90, np.uint8), 200.0, 0.5)
    assert flat.valid_fraction == 0


def test_stereo_depth_is_stored_once_as_ground_truth(converted):
    root, result = converted
    seq_dir = root / "sequences" / "00"
    assert result.stereo["matched"] == FRAMES and 0.4 < result.stereo["valid_fraction"] < 0.85
    rig = read_stereo_rig(DATA / "intrinsics.txt")
    fresh = stereo_depth(grey("left", 2), grey("right", 2), rig.K[0, 0], rig.baseline).depth
    stored = KittiOdometrySequence(root, "00", camera=0).gt_depth(2)  # how sa4depth-eval depth reads it
    assert ((stored > 0) == (fresh > 0)).all()
    np.testing.assert_allclose(stored, fresh, atol=0.5 / 256 + 1e-6)
    again = write_stereo_depth(seq_dir)
    assert again["matched"] == 0 and again["frames"] == FRAMES
    redone = write_stereo_depth(seq_dir, params=StereoParams(max_lr_diff=0.5), max_frames=2)
    assert redone["matched"] == 2 and not (seq_dir / "depth_0" / "000004.png").exists()
    (seq_dir / "depth_0" / "stereo.json").unlink()
    with pytest.raises(InputError, match="holds depth not written by stereo matching"):
        write_stereo_depth(seq_dir)


def test_camera_height_above_the_road(converted):
    _, result = converted
    height = result.camera_height
    assert height.frames == FRAMES and 1.2 < height.height < 2.0 and height.p75 - height.p25 < 0.2
    # Frames from the rest of the drive, matched here rather than converted.
    rig = read_stereo_rig(DATA / "intrinsics.txt")

    class Frames:
        name, has_depth = "karlsruhe", True
        intrinsics = staticmethod(lambda: rig.K)
        gt_depth = staticmethod(lambda i: stereo_depth(grey("left", i), grey("right", i), rig.K[0, 0], rig.baseline).depth)

    later = ground_camera_height(Frames(), (120, 240, 360))
    assert later.frames >= 2 and abs(later.height - height.height) < 0.15


def test_grey_kitti_camera_through_config_dataset_and_kitti2bag(converted, tmp_path):
    root, _ = converted
    cfg = load_config(None, [f"data.root={root}", "data.sequences=00"])
    with pytest.raises(InputError, match=r"image_2: image directory not found; the sequence has image_0, image_1: "
                                         r"choose one with data\.camera=image_0"):
        open_sequences(cfg, ["00"])
    cfg.data.camera = "image_0"
    (seq,) = open_sequences(cfg, ["00"])
    item = TripletDataset(seq, 64, 224)[0]
    assert item["images"].shape == (3, 3, 64, 224)
    assert (item["images"][:, 0] == item["images"][:, 1]).all()

    with pytest.raises(InputError, match=r"--cameras 0"):
        kitti2bag(root / "sequences" / "00", tmp_path / "bag_default", max_frames=2)
    kitti2bag(root / "sequences" / "00", tmp_path / "bag", cameras=(0, 1), max_frames=2)
    images, infos = {}, {}
    with open_bag(tmp_path / "bag") as reader:
        for conn, _, raw in reader.messages():
            msg = BAG_TYPESTORE.deserialize_cdr(raw, conn.msgtype)
            if conn.msgtype == "sensor_msgs/msg/Image":
                images.setdefault(msg.header.frame_id, []).append(msg)
            elif conn.msgtype == "sensor_msgs/msg/CameraInfo":
                infos.setdefault(msg.header.frame_id, []).append(msg)
    assert sorted(images) == ["camera_gray_left", "camera_gray_right"]
    first = images["camera_gray_left"][0]
    assert first.encoding == "mono8" and (first.height, first.width, first.step) == (186, 672, 672)
    np.testing.assert_array_equal(np.asarray(first.data).reshape(186, 672), grey("left", 0))
    rig = read_stereo_rig(DATA / "intrinsics.txt")
    P_right = infos["camera_gray_right"][0].p.reshape(3, 4)
    np.testing.assert_allclose(P_right[:, :3], rig.K, rtol=1e-9)
    assert P_right[0, 3] == pytest.approx(-rig.K[0, 0] * rig.baseline)
    assert infos["camera_gray_left"][0].p.reshape(3, 4)[0, 3] == 0
