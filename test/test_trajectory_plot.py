"""Trajectory plots draw the estimate after the alignment the printed ATE uses, and say its scale:
plot_trajectories on its own, and through `sa4depth-eval odom --gt --est --plot`."""
import cv2
import numpy as np
import pytest

from sa4depth_core.data.pose_io import save_kitti_poses
from sa4depth_core.eval import cli as eval_cli
from sa4depth_core.eval.odometry_metrics import align_trajectories, odometry_errors
from sa4depth_core.eval.trajectory_plot import EST_COLOUR, GT_COLOUR, plot_trajectories


def _road(n=60):
    """(n,4,4) camera poses along a gentle left curve, 1 m apart (camera frame: x right, z ahead)."""
    yaw = np.linspace(0.0, 0.8, n)
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, 0, 0] = poses[:, 2, 2] = np.cos(yaw)
    poses[:, 0, 2], poses[:, 2, 0] = np.sin(yaw), -np.sin(yaw)
    poses[:, 0, 3] = np.cumsum(np.sin(yaw))
    poses[:, 2, 3] = np.cumsum(np.cos(yaw))
    return poses


def _network_units(gt, scale=1 / 50, seed=0):
    """The same motion as a monocular estimate reports it: another origin and heading, 1/50 of
    the size, a little noise."""
    rot = np.eye(4)
    rot[:3, :3] = cv2.Rodrigues(np.array([0.1, 0.7, -0.2]))[0]
    rot[:3, 3] = [3.0, -1.0, 2.0]
    est = rot @ gt
    est[:, :3, 3] *= scale
    est[:, :3, 3] += np.random.default_rng(seed).normal(0, 0.05 * scale, (len(gt), 3))
    return est


def overlay_fraction(png, header=75, reach=6) -> float:
    """How well the estimate's (red) track covers the ground truth's (green) one in a plot, below
    its legend: the smaller of the fraction of red pixels within `reach` px of green ones and of
    green pixels within `reach` px of red ones (a short squiggle at the start scores low)."""
    image = cv2.imread(str(png))[header:].astype(int)
    red = np.all(image == EST_COLOUR, axis=2)
    b, g, r = image[..., 0], image[..., 1], image[..., 2]
    green = (g > r + 40) & (g > b + 40)
    assert red.any() and green.any(), "a track is missing from the picture"

    def near(a, b):
        return float(np.mean(cv2.distanceTransform((~b).astype(np.uint8), cv2.DIST_L2, 3)[a] <= reach))
    return min(near(red, green), near(green, red))


def test_the_estimate_is_drawn_aligned_as_the_ate_is_computed(tmp_path):
    gt = _road()
    est = _network_units(gt)
    errors = odometry_errors(gt, est, "7dof")
    drawn = plot_trajectories(tmp_path / "t.png", gt, est, "7dof", title="test")
    gt_rel, est_aligned, scale = align_trajectories(gt, est, "7dof")
    np.testing.assert_allclose(drawn.est, est_aligned[:, :3, 3])
    np.testing.assert_allclose(drawn.gt, gt_rel[:, :3, 3])
    assert drawn.ate == pytest.approx(errors["ate"]) and drawn.scale == pytest.approx(errors["scale"])
    assert drawn.scale == pytest.approx(50, rel=0.01) and drawn.ate < 0.1
    assert overlay_fraction(drawn.path) > 0.95


def test_without_alignment_the_estimate_is_drawn_as_given(tmp_path):
    gt = _road()
    est = _network_units(gt)
    drawn = plot_trajectories(tmp_path / "t.png", gt, est, "none")
    np.testing.assert_allclose(drawn.est, (np.linalg.inv(est[0]) @ est)[:, :3, 3])
    assert drawn.scale == 1.0 and drawn.ate == pytest.approx(odometry_errors(gt, est, "none")["ate"])
    assert overlay_fraction(drawn.path) < 0.5  # a 1/50 squiggle at the start, not along the road


def test_ground_truth_alone(tmp_path):
    gt = _road()
    drawn = plot_trajectories(tmp_path / "gt.png", gt)
    np.testing.assert_allclose(drawn.gt, gt[:, :3, 3])
    assert drawn.est is None and drawn.ate is None
    image = cv2.imread(str(drawn.path))
    assert np.all(image == GT_COLOUR, axis=2).any() and not np.all(image == EST_COLOUR, axis=2)[75:].any()


def test_eval_odom_files_plot_after_the_same_alignment(tmp_path, capsys):
    gt = _road()
    save_kitti_poses(tmp_path / "gt.txt", gt)
    save_kitti_poses(tmp_path / "est.txt", _network_units(gt))
    assert eval_cli.main(["odom", "--gt", str(tmp_path / "gt.txt"), "--est", str(tmp_path / "est.txt"),
                          "--align", "7dof", "--plot", str(tmp_path / "p.png")]) == 0
    assert f"wrote {tmp_path / 'p.png'}" in capsys.readouterr().out
    assert overlay_fraction(tmp_path / "p.png") > 0.95
