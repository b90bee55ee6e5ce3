"""benchmarks/classical_vo.py on a few real Karlsruhe frames (../shared/data, read in place): the
turn the INS records is recovered, the car is seen moving forward, and a stereo depth map gives a
step its metric length."""
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import classical_vo  # noqa: E402
from sa4depth_core.data.karlsruhe import camera_poses, read_ins_track, read_stereo_rig  # noqa: E402
from sa4depth_core.data.stereo_depth import stereo_depth  # noqa: E402
from sa4depth_core.eval.odometry_metrics import rotation_angle  # noqa: E402

DATA = (REPO / ".." / "shared" / "data" / "karlsruhe_2010_03_09_drive_0019").resolve()
pytestmark = pytest.mark.skipif(not (DATA / "poses.txt").is_file(),
                                reason=f"the Karlsruhe sequence is not at {DATA} (../shared/data relative to the repo)")


def left(i: int) -> np.ndarray:
    return cv2.imread(str(DATA / f"image_left/I1_{i:06d}.png"), cv2.IMREAD_GRAYSCALE)


@pytest.fixture(scope="module")
def ins():
    poses = camera_poses(read_ins_track(DATA / "poses.txt"))
    return poses, read_stereo_rig(DATA / "intrinsics.txt")


def ins_rel(poses: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.linalg.inv(poses[b]) @ poses[a]


@pytest.mark.parametrize("a, b", [(150, 152), (156, 158)])
def test_a_turn_the_ins_records_is_recovered_within_a_degree(ins, a, b):
    poses, rig = ins
    gt = ins_rel(poses, a, b)
    assert np.degrees(rotation_angle(gt)) > 7.0  # the car turns here: the test means something
    motion = classical_vo.two_view(left(a), left(b), rig.K)
    assert motion.ok and motion.inliers > 100
    # the angle is free of the unknown mounting; the rotation error includes its ~6 degree tilt
    assert abs(np.degrees(rotation_angle(motion.rel) - rotation_angle(gt))) < 1.0
    assert np.degrees(rotation_angle(np.linalg.inv(gt) @ motion.rel)) < 2.0
    assert np.isclose(np.linalg.norm(motion.rel[:3, 3]), 1.0)


def test_straight_driving_is_forward_motion_and_stereo_depth_gives_its_length(ins):
    poses, rig = ins
    a, b = 20, 21
    motion = classical_vo.two_view(left(a), left(b), rig.K)
    assert motion.ok
    # frame a's origin lies behind frame b's camera: -z in the network convention
    assert motion.rel[2, 3] < -0.95
    right = cv2.imread(str(DATA / f"image_right/I2_{a:06d}.png"), cv2.IMREAD_GRAYSCALE)
    depth = stereo_depth(left(a), right, rig.K[0, 0], rig.baseline).depth
    # the stereo depth at half resolution: step_scale samples any size
    half = cv2.resize(depth, (depth.shape[1] // 2, depth.shape[0] // 2), interpolation=cv2.INTER_NEAREST)
    half[half <= 0] = np.nan
    scaled = classical_vo.depth_scaled([motion], [half], depth.shape)
    step = np.linalg.norm(scaled[0, :3, 3])
    assert step == pytest.approx(np.linalg.norm(ins_rel(poses, a, b)[:3, 3]), rel=0.15)


def test_steps_without_a_scale_take_the_previous_one():
    ok = classical_vo.PairMotion(np.eye(4), np.array([[0.0, 0.0, 2.0]] * 6), np.array([[5.0, 5.0]] * 6), 6, True)
    ok.rel[2, 3] = -1.0
    failed = classical_vo.PairMotion(np.eye(4), np.zeros((0, 3)), np.zeros((0, 2)), 0, False)
    depth = np.full((10, 10), 8.0)
    rel = classical_vo.depth_scaled([failed, ok, failed], [depth] * 3, (10, 10))
    assert rel[:, 2, 3].tolist() == [0.0, -4.0, 0.0]  # a failed step has no direction to scale
    with pytest.raises(ValueError):
        classical_vo.depth_scaled([failed], [depth], (10, 10))
