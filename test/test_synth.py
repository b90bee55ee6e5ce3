"""Synthetic sequence generator: exact depth, determinism, KITTI layout and photo-consistency."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from sa4depth_core.data import synth, trajectories
from sa4depth_core.errors import InputError

KITTI_POSES_00 = Path(__file__).resolve().parents[2] / "shared" / "data" / "kitti_odometry" / "gt_poses" / "00.txt"


def _read_rows(path: Path, count: int) -> np.ndarray:
    rows = np.loadtxt(path, ndmin=2)
    assert rows.shape[1] == count
    return rows


def _poses(root: Path, seq: str) -> np.ndarray:
    rows = _read_rows(root / "poses" / f"{seq}.txt", 12)
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    poses[:, :3] = rows.reshape(-1, 3, 4)
    return poses


def _frame(seq_dir: Path, i: int) -> tuple[np.ndarray, np.ndarray]:
    bgr = cv2.imread(str(seq_dir / "image_2" / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
    raw = cv2.imread(str(seq_dir / "depth_2" / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
    assert bgr.dtype == np.uint8 and raw.dtype == np.uint16
    return bgr[..., ::-1].astype(np.float64) / 255.0, raw.astype(np.float64) / 256.0


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x0 = np.clip(np.floor(x).astype(int), 0, img.shape[1] - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, img.shape[0] - 2)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    return (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x0 + 1] * fx * (1 - fy)
            + img[y0 + 1, x0] * (1 - fx) * fy + img[y0 + 1, x0 + 1] * fx * fy)


def _photometric_error(seq_dir: Path, K: np.ndarray, T_t: np.ndarray, T_s: np.ndarray, t: int, s: int) -> tuple[float, float]:
    """Median |I_s(warp(p)) - I_t(p)| over valid, visible pixels of frame t, and the share of such pixels."""
    img_t, depth_t = _frame(seq_dir, t)
    img_s, depth_s = _frame(seq_dir, s)
    h, w = depth_t.shape
    v, u = np.nonzero(depth_t > 0)
    z = depth_t[v, u]
    points_t = np.linalg.inv(K) @ np.stack([u, v, np.ones_like(u)]) * z
    points_s = (np.linalg.inv(T_s) @ T_t @ np.vstack([points_t, np.ones_like(z)]))[:3]
    proj = K @ points_s
    x, y = proj[0] / proj[2], proj[1] / proj[2]
    inside = (points_s[2] > 0.1) & (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    seen = depth_s[np.rint(y[inside]).astype(int), np.rint(x[inside]).astype(int)]
    visible = np.abs(seen - points_s[2][inside]) < 0.02 * points_s[2][inside] + 0.05
    xs, ys = x[inside][visible], y[inside][visible]
    diff = np.abs(_bilinear(img_s, xs, ys) - img_t[v[inside][visible], u[inside][visible]]).mean(axis=1)
    return float(np.median(diff)), visible.sum() / (h * w)


def test_default_intrinsics_are_monodepth2_kitti():
    K = synth.default_intrinsics(192, 640)
    np.testing.assert_allclose(K, [[371.2, 0, 320], [0, 368.64, 96], [0, 0, 1]])


def test_depth_of_road_and_wall_matches_closed_form():
    h, wall_x, H, W = 1.65, 3.0, 96, 320
    builder = synth.SceneBuilder(seed=1, max_depth=80.0)
    mat = builder.add_material((0.5, 0.5, 0.5))
    builder.add_parallelogram((-1000, h, -1000), (2000, 0, 0), (0, 0, 2000), mat)  # cross = -y: seen from above
    builder.add_parallelogram((wall_x, -20, 0.5), (0, 0, 100), (0, 20 + h, 0), mat)  # cross = -x: faces the camera
    rgb, depth = synth.render_frame(builder.build(), synth.default_intrinsics(H, W), np.eye(4), H, W)
    fx, fy, cx, cy = W * 0.58, H * 1.92, W * 0.5, H * 0.5
    u, v = np.meshgrid(np.arange(W, dtype=float), np.arange(H, dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        road = np.where(v > cy, fy * h / (v - cy), np.inf)
        wall = np.where(u > cx, fx * wall_x / (u - cx), np.inf)
        wall_y = wall * (v - cy) / fy
    wall = np.where((wall >= 0.5) & (wall <= 100.5) & (wall_y >= -20) & (wall_y <= h), wall, np.inf)
    expected = np.minimum(road, wall)
    expected = np.where(expected <= 80.0, expected, 0.0)
    assert depth.dtype == np.float32 and rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert (expected > 0).mean() > 0.4 and (expected == wall).any()
    np.testing.assert_allclose(depth, expected, rtol=2e-5, atol=0)
    # Sky above the horizon: no geometry there, so depth 0 and a bluish colour.
    assert np.all(depth[: int(cy) - 1, : int(cx)] == 0)
    assert rgb[0, 0, 2] > rgb[0, 0, 0]


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    args = {"num_frames": 3, "height": 32, "width": 96, "trajectory": "car"}
    dirs = [synth.generate_sequence(tmp_path / name, seed=seed, **args) for name, seed in (("a", 7), ("b", 7), ("c", 8))]
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 3 + 3 + 3 + 1  # images, depths, calib/times/synth.json, poses
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert dirs[0] == tmp_path / "a" / "sequences" / "00"
    image = Path("sequences/00/image_2/000002.png")
    assert (tmp_path / "a" / image).read_bytes() != (tmp_path / "c" / image).read_bytes()
    assert not np.allclose(_poses(tmp_path / "a", "00"), _poses(tmp_path / "c", "00"))


def test_files_parse_back_in_kitti_layout(tmp_path):
    H, W, n = 48, 160, 4
    seq_dir = synth.generate_sequence(tmp_path, seq="03", num_frames=n, height=H, width=W, seed=2, trajectory="handheld",
                                      camera_height=1.4)
    K = synth.default_intrinsics(H, W)
    calib = {}
    for line in (seq_dir / "calib.txt").read_text().splitlines():
        key, values = line.split(":")
        calib[key] = np.array(values.split(), float)
    assert sorted(calib) == ["P0", "P1", "P2", "P3", "Tr"] and all(len(v) == 12 for v in calib.values())
    np.testing.assert_allclose(calib["P2"].reshape(3, 4), np.hstack([K, np.zeros((3, 1))]))
    np.testing.assert_allclose(calib["Tr"].reshape(3, 4), np.eye(4)[:3])
    np.testing.assert_allclose(np.loadtxt(seq_dir / "times.txt"), np.arange(n) * 0.1)
    poses = _poses(tmp_path, "03")
    assert poses.shape == (n, 4, 4)
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-12)
    np.testing.assert_allclose(poses[:, :3, :3].transpose(0, 2, 1) @ poses[:, :3, :3], np.broadcast_to(np.eye(3), (n, 3, 3)), atol=1e-9)
    step = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert np.all((step > 0.005) & (step < 0.4))  # walking pace at 10 Hz
    for i in range(n):
        img, depth = _frame(seq_dir, i)
        assert img.shape == (H, W, 3) and depth.shape == (H, W)
        assert (depth > 0).mean() > 0.6 and depth.max() <= 80.0
    meta = json.loads((seq_dir / "synth.json").read_text())
    assert (meta["seed"], meta["height"], meta["width"], meta["trajectory"], meta["camera_height"]) == (2, H, W, "handheld", 1.4)
    assert meta["version"] == synth.GENERATOR_VERSION


def test_kitti_reader_loads_the_generated_sequence(tmp_path):
    from sa4depth_core.data.kitti_odometry import KittiOdometrySequence

    seq_dir = synth.generate_sequence(tmp_path, num_frames=2, height=32, width=96, seed=0)
    seq = KittiOdometrySequence(tmp_path, "00")
    np.testing.assert_allclose(seq.intrinsics(), synth.default_intrinsics(32, 96))
    np.testing.assert_allclose(seq.pose(1), _poses(tmp_path, "00")[1], atol=1e-12)
    np.testing.assert_array_equal(seq.gt_depth(1), _frame(seq_dir, 1)[1].astype(np.float32))


@pytest.mark.parametrize("kind", ["car", "handheld"])
def test_consecutive_frames_are_photo_consistent(tmp_path, kind):
    H, W = 64, 208
    seq_dir = synth.generate_sequence(tmp_path, num_frames=3, height=H, width=W, seed=11, trajectory=kind)
    K, poses = synth.default_intrinsics(H, W), _poses(tmp_path, "00")
    for t, s in ((0, 1), (2, 1)):
        error, used = _photometric_error(seq_dir, K, poses[t], poses[s], t, s)
        assert error < 3 / 255 and used > 0.5, (t, s, error * 255, used)
    # The check can fail: the same frames under a pose off by 0.3 m along the optical axis.
    wrong = poses[1] @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0.3], [0, 0, 0, 1.0]])
    assert _photometric_error(seq_dir, K, poses[0], wrong, 0, 1)[0] > max(3 / 255, 4 * error)


@pytest.mark.skipif(not KITTI_POSES_00.is_file(), reason="shared KITTI poses not available")
def test_kitti_trajectory_is_followed_and_photo_consistent(tmp_path):
    H, W, start, n = 64, 208, 120, 3
    seq_dir = synth.generate_sequence(tmp_path, num_frames=n, height=H, width=W, seed=1, trajectory="kitti",
                                      kitti_poses=KITTI_POSES_00, kitti_start=start)
    gt = _read_rows(KITTI_POSES_00, 12)[start:start + n].reshape(n, 3, 4)
    gt = np.concatenate([gt, np.tile([[[0, 0, 0, 1.0]]], (n, 1, 1))], axis=1)
    np.testing.assert_allclose(_poses(tmp_path, "00"), np.linalg.inv(gt[0]) @ gt, atol=1e-9)
    error, used = _photometric_error(seq_dir, synth.default_intrinsics(H, W), gt[1], gt[2], 1, 2)
    assert error < 3 / 255 and used > 0.5


def test_trajectories_have_the_stated_motion():
    car = trajectories.car_trajectory(200, np.random.default_rng(0))
    speed = np.linalg.norm(np.diff(car[:, :3, 3], axis=0), axis=1)
    assert np.all((speed >= 0.5 - 1e-9) & (speed <= 1.5 + 1e-9))
    assert np.all(car[:, 1, 3] == 0)  # level road: constant height
    forward = car[:, :3, 2]
    assert np.degrees(np.arcsin(np.abs(forward[:, 1]))).max() < 3  # small pitch only
    np.testing.assert_allclose(car[0], np.eye(4), atol=1e-12)
    hand = trajectories.handheld_trajectory(200, np.random.default_rng(0))
    hand_speed = np.linalg.norm(np.diff(hand[:, :3, 3], axis=0), axis=1)
    assert hand_speed.mean() < 0.3 and np.ptp(hand[:, 1, 3]) > 0.01  # slow, with vertical wobble
    R = trajectories.rotation_from_euler([np.pi / 2], [0.0], [0.0])[0]
    np.testing.assert_allclose(R @ [0, 0, 1], [1, 0, 0], atol=1e-12)  # positive yaw turns right


def test_bad_input_raises_clear_errors(tmp_path):
    with pytest.raises(InputError, match="two digits"):
        synth.generate_sequence(tmp_path, seq="7")
    with pytest.raises(InputError, match="needs a KITTI poses file"):
        synth.generate_sequence(tmp_path, trajectory="kitti", num_frames=2, height=32, width=96)
    with pytest.raises(InputError, match="cannot take 5 frames"):
        trajectories.kitti_trajectory(KITTI_POSES_00 if KITTI_POSES_00.is_file() else _tiny_poses(tmp_path), 10 ** 6, 5)
    synth.generate_sequence(tmp_path, num_frames=1, height=32, width=96)
    with pytest.raises(InputError, match="already exists"):
        synth.generate_sequence(tmp_path, num_frames=1, height=32, width=96)


def _tiny_poses(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text("1 0 0 0 0 1 0 0 0 0 1 0\n")
    return path


def test_cli_writes_a_sequence_and_reports_errors(tmp_path, capsys):
    assert synth.main(["--out", str(tmp_path), "--frames", "2", "--size", "32x96", "--seed", "4", "--quiet"]) == 0
    assert "wrote 2 frames (96x32)" in capsys.readouterr().out
    assert cv2.imread(str(tmp_path / "sequences/00/image_2/000001.png")).shape == (32, 96, 3)
    assert synth.main(["--out", str(tmp_path), "--frames", "2", "--size", "32x96", "--quiet", "--overwrite"]) == 0
    assert synth.main(["--out", str(tmp_path), "--size", "640by192"]) == 2
    assert "--size must look like HEIGHTxWIDTH" in capsys.readouterr().err
    assert synth.main(["--out", str(tmp_path / "k"), "--trajectory", "kitti", "--kitti-poses", str(tmp_path / "none.txt"),
                       "--frames", "2", "--quiet"]) == 2
    assert "none.txt" in capsys.readouterr().err
