"""Streaming inference core: device choice, checked model loading, scale from camera height, and the
per-frame perception pipeline (one depth pass, base-frame odometry, covariances, lost tracking)."""
import copy
import threading

import numpy as np
import pytest
import torch

from sa4depth_core.checkpoint import save_checkpoint
from sa4depth_core.config import Config
from sa4depth_core.data.pose_io import load_kitti_poses, load_tum_poses
from sa4depth_core.errors import CheckpointError, InputError
from sa4depth_core.geometry import se3_adjoint, se3_exp
from sa4depth_core.infer import DepthPredictor, select_device
from sa4depth_core.loaded_model import load_checked_model, smoke_test
from sa4depth_core.odometry import OdometryStep, Tracking
from sa4depth_core.pipeline import PerceptionPipeline
from sa4depth_core.pipeline_options import PipelineOptions, pose_from_xyz_rpy
from sa4depth_core.refine import TrustRegion
from sa4depth_core.scale import ScaleEstimator

CPU = torch.device("cpu")
OPTICAL = pose_from_xyz_rpy([0, 0, 0, -np.pi / 2, 0, -np.pi / 2])


def _road_depth(height_above_road, pitch_down, K, shape, wall=None):
    """z-depth of a flat road seen by a camera `height_above_road` above it, pitched down."""
    H, W = shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.linalg.inv(K) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])  # z = 1
    c, s = np.cos(pitch_down), np.sin(pitch_down)
    down = c * rays[1] + s * rays[2]  # y of the ray in a level frame (y down)
    with np.errstate(divide="ignore"):
        z = np.where(down > 1e-3, height_above_road / down, 80.0).reshape(H, W)
    if wall is not None:  # a fronto-parallel obstacle in the lower image: RANSAC must ignore it
        z[wall] = 3.0
    return z.astype(np.float32)


def test_select_device():
    assert select_device("cpu") == (CPU, "")
    device, note = select_device("AUTO")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu") and note == ""
    if not torch.cuda.is_available():
        device, note = select_device("cuda:0")
        assert device == CPU and "CUDA is not available" in note
    with pytest.raises(InputError, match="'gpu'"):
        select_device("gpu")


def test_camera_height_scale_from_flat_road():
    K = np.array([[120.0, 0, 64.0], [0, 120.0, 48.0], [0, 0, 1]])
    wall = np.zeros((96, 128), bool)
    wall[70:, 10:40] = True  # ~12 % of the searched region
    depth = _road_depth(0.5, np.deg2rad(4.0), K, (96, 128), wall)
    est = ScaleEstimator("camera_height", camera_height=1.65)
    assert est.update(depth, K) == pytest.approx(1.65 / 0.5, rel=0.01)
    assert "fitted" in est.describe() and est.ready
    # a frame without a ground plane (a wall everywhere) keeps the smoothed scale
    assert est.update(np.full((96, 128), 3.0, np.float32), K) == pytest.approx(3.3, rel=0.01)
    assert not est.last_fit_ok
    fresh = ScaleEstimator("camera_height", camera_height=1.65)
    assert fresh.update(np.full((96, 128), 3.0, np.float32), K) == 1.0
    assert "waiting" in fresh.describe() and not fresh.ready


def test_fixed_scale_multiplies_network_depth_once_per_frame(untrained, frames, small_pipeline):
    images, K = frames
    pipe = small_pipeline(untrained, scale_mode="fixed", scale_factor=2.5)
    calls = []
    original = untrained.model.disparities
    untrained.model.disparities = lambda x: calls.append(1) or original(x)
    try:
        results = [pipe.process(img, K, 0.1 * i) for i, img in enumerate(images[:3])]
    finally:
        del untrained.model.disparities
    assert len(calls) == 3
    reference, K_net, _ = DepthPredictor(untrained, CPU, 64, 128)(images[2], K)
    np.testing.assert_allclose(results[2].depth, 2.5 * reference[0, 0].numpy(), rtol=1e-5)
    np.testing.assert_allclose(results[2].K, K_net)
    assert results[2].scale == 2.5 and results[2].depth.dtype == np.float32


def test_a_frame_carries_the_pipelines_state_and_closing_ends_its_thread(untrained, frames):
    images, K = frames
    before = set(threading.enumerate())
    with PerceptionPipeline(untrained, CPU, PipelineOptions(height=64, width=128, parallel=True)) as pipe:
        first = pipe.process(images[0], K, 0.0)
        # what the node publishes beside the frame, read from the frame alone
        assert (first.scale_state, first.status, first.warnings) == (pipe.describe_scale(), pipe.status(),
                                                                     pipe.warnings())
        assert any("relative" in w for w in first.warnings) and any("PoseNet only" in w for w in first.warnings)
        second = pipe.process(images[1], K, 0.1)
        assert (first.status["steps_posenet"], second.status["steps_posenet"]) == (0, 1)
        depth_threads = [t for t in set(threading.enumerate()) - before if t.name.startswith("sa4depth-depth")]
        assert depth_threads and all(t.is_alive() for t in depth_threads)
        pipe.close()
        assert not any(t.is_alive() for t in depth_threads)
        third = pipe.process(images[2], K, 0.2)  # a closed pipeline still runs, in a new thread
        assert third.odometry.tracking == Tracking.POSENET
        depth_threads = [t for t in set(threading.enumerate()) - before if t.name.startswith("sa4depth-depth")]
        assert depth_threads
    assert not any(t.is_alive() for t in depth_threads)


def _scripted(pipe, steps):
    """Replace the estimator's output by given (relative (4,4), covariance (6,6), tracking)."""
    script = iter(steps)

    def finish(frame, depth, K):
        rel, cov, tracking = next(script)
        return OdometryStep(torch.from_numpy(rel), torch.from_numpy(cov), Tracking(tracking), 0.0, 1.0)

    pipe.estimator.finish = finish


def test_base_odometry_with_optical_extrinsic(untrained, frames, small_pipeline):
    images, K = frames
    pipe = small_pipeline(untrained, base_from_camera=OPTICAL, min_variance=1e-12)
    forward = np.eye(4)
    forward[2, 3] = 0.5  # the camera moves 0.5 along its optical axis per frame
    cov = np.diag([1e-4, 2e-4, 3e-4, 0, 0, 0])
    _scripted(pipe, [(np.eye(4), np.zeros((6, 6)), "init")] + [(forward, cov, "ok")] * 3)
    outs = [pipe.process(images[i], K, 0.1 * i).odometry for i in range(4)]
    # base x is forward, y left, z up: camera z -> base x, camera x -> -base y, camera y -> -base z
    np.testing.assert_allclose(outs[-1].pose[:3, 3], [1.5, 0, 0], atol=1e-12)
    np.testing.assert_allclose(outs[-1].twist, [5.0, 0, 0, 0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(np.diag(outs[-1].pose_covariance)[:3], 3 * np.array([3e-4, 1e-4, 2e-4]), rtol=1e-6)
    np.testing.assert_allclose(np.diag(outs[-1].twist_covariance)[:3], np.array([3e-4, 1e-4, 2e-4]) / 0.01, rtol=1e-6)
    assert outs[0].tracking == "init" and np.allclose(outs[0].pose, np.eye(4))

    # turning right about the camera's y axis (down) is a negative yaw of the base
    pipe.reset()
    theta = 0.1
    turn = np.eye(4)
    turn[:3, :3] = [[np.cos(theta), 0, np.sin(theta)], [0, 1, 0], [-np.sin(theta), 0, np.cos(theta)]]
    _scripted(pipe, [(np.eye(4), np.zeros((6, 6)), "init"), (turn, np.zeros((6, 6)), "ok")])
    pipe.process(images[0], K, 0.0)
    out = pipe.process(images[1], K, 0.2).odometry
    expected = np.array([[np.cos(-theta), -np.sin(-theta), 0], [np.sin(-theta), np.cos(-theta), 0], [0, 0, 1]])
    np.testing.assert_allclose(out.pose[:3, :3], expected, atol=1e-12)
    np.testing.assert_allclose(out.twist[3:], [0, 0, -theta / 0.2], atol=1e-9)


def test_adjoint_moves_twists_between_frames():
    rng = np.random.default_rng(3)
    T = se3_exp(torch.from_numpy(rng.normal(size=6)))
    xi = 0.1 * torch.from_numpy(rng.normal(size=6))
    lhs = T @ se3_exp(xi) @ torch.linalg.inv(T)
    torch.testing.assert_close(lhs, se3_exp(se3_adjoint(T) @ xi), atol=1e-10, rtol=0)
    np.testing.assert_allclose(OPTICAL[:3, :3], [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], atol=1e-12)


@pytest.mark.parametrize("on_failure", ["hold", "posenet"])
def test_failed_refinement_inflates_covariance_and_recovers(refining, frames, on_failure, small_pipeline):
    untrained = refining
    images, K = frames
    # random features wander far from PoseNet's pose: only an unbounded trust region accepts them
    pipe = small_pipeline(untrained, on_failure=on_failure, trust=TrustRegion(180.0, 1e6))
    first = pipe.process(images[0], K, 0.0).odometry
    ok = pipe.process(images[1], K, 0.1).odometry
    assert first.tracking == "init" and ok.tracking == "ok"
    pipe.estimator.min_valid_fraction = 1.01  # no refinement can use that many points: it fails
    _, _, x_prev = DepthPredictor(untrained, CPU, 64, 128)(images[1], K)
    _, _, x_now = DepthPredictor(untrained, CPU, 64, 128)(images[2], K)
    lost = pipe.process(images[2], K, 0.2).odometry
    assert lost.lost_count == 1 and lost.lost_streak == 1
    assert np.diag(lost.pose_covariance).min() > 500 > np.diag(ok.pose_covariance).max()
    if on_failure == "hold":
        assert lost.tracking == "lost"
        np.testing.assert_allclose(lost.pose, ok.pose)
        np.testing.assert_allclose(lost.twist, 0)
    else:
        assert lost.tracking == "posenet_fallback"
        with torch.no_grad():
            rel_cam = untrained.model.relative_pose(x_now, x_prev, -1)[0].double().numpy()
        np.testing.assert_allclose(lost.camera_pose, ok.camera_pose @ rel_cam, atol=1e-6)
    pipe.estimator.min_valid_fraction = 0.2
    back = pipe.process(images[3], K, 0.3).odometry
    assert back.tracking == "ok" and back.lost_streak == 0 and back.lost_count == 1
    assert np.diag(back.twist_covariance).max() < 1.0 < np.diag(lost.twist_covariance).min()


def test_reset_resize_and_trajectory_files(untrained, frames, tmp_path, small_pipeline):
    images, K = frames
    pipe = small_pipeline(untrained)
    with pytest.raises(InputError, match="no trajectory"):
        pipe.save_trajectory(tmp_path)
    for i in range(3):
        last = pipe.process(images[i], K, 10.0 + 0.1 * i).odometry
    # a smaller camera image: the pose continues, matched afresh
    small = images[3][::2, ::2].copy()
    resized = pipe.process(small, K * [[0.5], [0.5], [1]], 10.3).odometry
    assert resized.tracking == "init"
    np.testing.assert_allclose(resized.pose, last.pose)
    kitti, tum = pipe.save_trajectory(tmp_path / "out", "run")
    stamps, poses = pipe.trajectory()
    np.testing.assert_allclose(load_kitti_poses(kitti), poses, atol=1e-9)
    t, p = load_tum_poses(tum)
    np.testing.assert_allclose(t, [10.0, 10.1, 10.2, 10.3])
    np.testing.assert_allclose(p, poses, atol=1e-7)

    pipe.configure(PipelineOptions(height=64, width=64))
    assert pipe.network_size == (64, 64)
    before_swap = pipe.process(images[4], K, 10.4)
    assert before_swap.depth.shape == (64, 64)
    pipe.set_model(untrained)  # a swapped-in model continues the trajectory, matched afresh
    swapped = pipe.process(images[5], K, 10.45).odometry
    assert swapped.tracking == "init"
    np.testing.assert_allclose(swapped.pose, before_swap.odometry.pose)
    pipe.reset()
    assert pipe.trajectory()[0].size == 0
    again = pipe.process(images[5], K, 10.5).odometry
    assert again.tracking == "init" and np.allclose(again.pose, np.eye(4)) and again.lost_count == 0


def test_options_are_checked(untrained):
    for bad, match in [(dict(height=100), "multiples of 32"), (dict(width=32), "at least 64"),
                       (dict(scale_mode="metric"), "scale mode"),
                       (dict(scale_mode="fixed", scale_factor=0.0), "positive"),
                       (dict(on_failure="stop"), "on_failure"),
                       (dict(base_from_camera=np.ones((4, 4))), "rigid")]:
        with pytest.raises(InputError, match=match):
            PerceptionPipeline(untrained, CPU, PipelineOptions(**bad))
    with pytest.raises(InputError, match="budget"):
        PerceptionPipeline(untrained, CPU, PipelineOptions(height=4096, width=4096))
    with pytest.raises(InputError, match="scale factor"):
        PerceptionPipeline(untrained, CPU, PipelineOptions(scale_mode="fixed", scale_factor=1e308))
    with pytest.raises(InputError, match="6 finite numbers"):
        pose_from_xyz_rpy([0, 0, 0])


def test_checked_loading_refuses_corrupt_nan_and_foreign_weights(untrained, tmp_path):
    cfg = Config()
    cfg.model.height, cfg.model.width = 64, 128
    good = tmp_path / "good.pt"
    state = untrained.model.state_dict()
    sha = save_checkpoint(good, config=cfg.to_dict(), model=state)
    loaded = load_checked_model(good, CPU)
    assert loaded.trained and loaded.model_id == sha[:12]
    assert not loaded.features_trained  # nobody said the features were trained

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        load_checked_model(corrupt, CPU)

    broken = copy.deepcopy(untrained)  # a diverged run: loads fine, computes NaN
    weight = next(p for n, p in broken.model.named_parameters() if n.startswith("depth_encoder"))
    with torch.no_grad():
        weight.fill_(float("nan"))
    with pytest.raises(CheckpointError, match="non-finite"):
        smoke_test(broken, CPU, 64, 128)
    smoke_test(untrained, CPU, 64, 128)

    foreign = tmp_path / "foreign.pt"
    save_checkpoint(foreign, config=cfg.to_dict(), model={k: v for k, v in state.items() if "depth_decoder" in k})
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checked_model(foreign, CPU)
