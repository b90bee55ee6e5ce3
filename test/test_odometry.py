"""Which odometry a model gets and what happens when a frame's odometry goes wrong: trained
features or PoseNet only, accepted or rejected refinements, contained failures, bounded scale,
and fitting the refiner on top of fixed depth and pose networks."""
import dataclasses

import numpy as np
import pytest
import torch

from sa4depth_core.checkpoint import load_checkpoint, save_checkpoint
from sa4depth_core.config import load_config
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.data.sequence import TripletDataset
from sa4depth_core.errors import CheckpointError, InputError
from sa4depth_core.eval.run_model import run_sequence
from sa4depth_core.loaded_model import load_model
from sa4depth_core.model import SA4DepthModel
from sa4depth_core.networks.monodepth2_io import save_monodepth2_folder
from sa4depth_core.odometry import LOST_VARIANCE, Tracking, median_depth, posenet_covariance
from sa4depth_core.pipeline import PerceptionPipeline
from sa4depth_core.pipeline_options import PipelineOptions
from sa4depth_core.refine import TrustRegion
from sa4depth_core.train.trainer import Trainer

CPU = torch.device("cpu")
SMALL = ["model.height=64", "model.width=128"]
LOOSE = TrustRegion(max_rotation_deg=180.0, max_translation=1e6)  # random features wander far


def test_untrained_features_give_posenet_only_odometry_and_say_so(untrained, frames, small_pipeline):
    images, K = frames
    pipe = small_pipeline(untrained)
    called = []
    original = untrained.model.refiner.forward
    untrained.model.refiner.forward = lambda *a, **k: called.append(1) or original(*a, **k)
    try:
        outs = [pipe.process(images[i], K, 0.1 * i).odometry for i in range(3)]
    finally:
        del untrained.model.refiner.forward
    assert not called
    assert [o.tracking for o in outs] == [Tracking.INIT, Tracking.POSENET, Tracking.POSENET]
    assert "never trained" in pipe.status()["odometry_mode"]
    assert any("PoseNet only" in w for w in pipe.warnings())
    assert pipe.status()["steps_posenet"] == 2 and pipe.status()["steps_refined"] == 0


def test_evaluation_scores_the_nodes_odometry(refining, synth_root):
    """sa4depth-eval and the benchmarks run each frame through the node's pipeline with its
    defaults: same depth, poses and tracking, and a rejected refinement holds the pose there as
    on the robot instead of taking PoseNet's motion."""
    seq = KittiOdometrySequence(synth_root, "00")
    # the plain LM: random features then leave the trust region, so the held poses are tested too
    # (PoseNet's prior, the default fusion, keeps such solves near PoseNet's pose)
    plain = PipelineOptions(fusion="lm")
    run = run_sequence(refining, seq, CPU, options=plain)
    node = {}
    for mode, refine in (("posenet", False), ("refined", True)):
        with PerceptionPipeline(refining, CPU, dataclasses.replace(plain, refine=refine)) as pipe:
            node[mode] = [pipe.process(seq.image(i), seq.intrinsics(), seq.timestamp(i)) for i in range(len(seq))]
        np.testing.assert_array_equal(run.poses[mode], [r.odometry.camera_pose for r in node[mode]])
    np.testing.assert_array_equal(np.stack(run.depths), [r.depth for r in node["refined"]])
    assert run.tracking == [r.odometry.tracking for r in node["refined"]]
    held = [i for i, t in enumerate(run.tracking) if t == Tracking.LOST]
    assert held, "random features inside the default trust region: some refinements must be rejected"
    for i in held:
        np.testing.assert_array_equal(run.poses["refined"][i], run.poses["refined"][i - 1])
    assert run.acceptance == pytest.approx(1 - len(held) / (len(seq) - 1))
    with pytest.raises(InputError, match="not built for"):  # shared networks must fit the pipeline's size
        PerceptionPipeline(refining, CPU, PipelineOptions(width=64), nets=pipe.nets)


def test_which_weights_count_as_trained_features(untrained, tmp_path):
    cfg = untrained.cfg
    state = untrained.model.state_dict()
    assert not untrained.features_trained
    flagged = tmp_path / "flagged.pt"
    save_checkpoint(flagged, config=cfg.to_dict(), model=state, step=10, features_trained=True)
    assert load_model(flagged, CPU).features_trained
    unflagged = tmp_path / "unflagged.pt"
    save_checkpoint(unflagged, config=cfg.to_dict(), model=state, step=10)
    assert not load_model(unflagged, CPU).features_trained
    # files from before the flag: trained features when the trainer ran the refinement
    for name, enabled, step, expected in [("old_sa4depth", True, 10, True), ("old_baseline", False, 10, False),
                                          ("old_step0", True, 0, False)]:
        path = tmp_path / f"{name}.pt"
        config = cfg.to_dict()
        config["refine"]["enabled"] = enabled
        torch.save({"format": "sa4depth-checkpoint", "version": 1, "config": config, "model": state, "step": step},
                   path)
        assert load_model(path, CPU).features_trained is expected, name
    md2 = tmp_path / "md2"
    m = untrained.model
    save_monodepth2_folder(md2, m.depth_encoder, m.depth_decoder, height=64, width=128,
                           pose_encoder=m.pose_net.encoder, pose_decoder=m.pose_net.decoder)
    loaded = load_model(md2, CPU)
    assert loaded.trained and not loaded.features_trained


def test_a_rejected_refinement_falls_back_to_posenet_with_lost_variance(refining, frames, small_pipeline):
    images, K = frames
    tiny = TrustRegion(max_rotation_deg=1e-9, max_translation=1e-12)  # no solve can stay inside
    pipe = small_pipeline(refining, on_failure="posenet", trust=tiny)
    first = pipe.process(images[0], K, 0.0).odometry
    second = pipe.process(images[1], K, 0.1).odometry
    assert first.tracking == Tracking.INIT and second.tracking == Tracking.FALLBACK
    assert "from the start" in second.reason
    x0 = pipe.predictor(images[0], K)[2]
    x1 = pipe.predictor(images[1], K)[2]
    with torch.inference_mode():
        posenet = refining.model.relative_pose(x1, x0, -1)[0].double().numpy()
    np.testing.assert_allclose(second.camera_pose, posenet, atol=1e-5)
    assert np.diag(second.twist_covariance).min() > LOST_VARIANCE / 0.1**2 / 2
    assert pipe.status()["steps_fallback"] == 1 and "from the start" in pipe.status()["last_rejection"]
    # the reference advanced: with an acceptable trust region the next frame is refined again
    pipe.configure(dataclasses.replace(pipe.options, trust=LOOSE))
    assert pipe.process(images[2], K, 0.2).odometry.tracking == Tracking.REFINED


@pytest.mark.parametrize("fusion", ["lm", "prior"])
def test_a_singular_frame_does_not_stop_odometry_for_the_next_ones(refining, frames, small_pipeline, fusion):
    """A fence: the refinement's H is singular (texture along one axis only) although the solve
    went through. Every later frame must still get depth and odometry. The plain LM publishes
    'unknown' (its bounded 1e6 variance); with PoseNet's prior the covariance is PoseNet's."""
    images, K = frames
    sigma = (0.02, 0.03, 0.04, 0.5, 0.6, 0.7)
    pipe = small_pipeline(refining, trust=LOOSE, fusion=fusion, posenet_sigma=sigma, min_variance=1e-12)
    refiner = refining.model.refiner
    original = refiner.forward
    calls = []

    def fence(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            singular = torch.zeros_like(result.hessian)
            singular[:, 0, 0] = 1.0
            result.hessian = singular
        return result

    refiner.forward = fence
    try:
        outs = [pipe.process(images[i], K, 0.1 * i) for i in range(8)]
    finally:
        del refiner.forward
    assert all(r.odometry is not None and r.odometry_error == "" for r in outs)
    assert all(np.isfinite(r.odometry.pose_covariance).all() for r in outs)
    fenced = outs[1].odometry
    variances = np.diag(fenced.twist_covariance) * 0.1 ** 2  # the twist's covariance is per second squared
    if fusion == "lm":
        assert variances[:3].min() > 1e3 * 0.1 ** 2  # unconstrained directions say so
    else:
        depth = pipe.predictor.depth(pipe.predictor.inputs(images[1], K)[0])
        expected = posenet_covariance(sigma, median_depth(depth)).diagonal().numpy()
        np.testing.assert_allclose(variances, expected, rtol=1e-3)
        assert (variances <= expected + 1e-11).all()  # information only adds (min_variance 1e-12 aside)
    assert [r.odometry.tracking for r in outs[2:]] == [Tracking.REFINED] * 6


def test_striped_frames_among_real_ones_all_get_depth_and_odometry(refining, frames, small_pipeline):
    images, K = frames
    stripes = np.zeros_like(images[0])
    stripes[:, ::8] = 255
    stripes[:, 1::8] = 255
    sequence = [images[0], stripes, stripes] + images[1:10]
    pipe = small_pipeline(refining, on_failure="posenet")
    results = [pipe.process(img, K, 0.1 * i) for i, img in enumerate(sequence)]
    for r in results:
        assert np.isfinite(r.depth).any() and r.odometry is not None and r.odometry_error == ""
        assert np.isfinite(r.odometry.pose).all() and np.isfinite(r.odometry.pose_covariance).all()
    # every step is accounted for once
    s = pipe.status()
    assert s["steps_refined"] + s["steps_fallback"] + s["steps_lost"] == len(sequence) - 1


def test_an_odometry_failure_keeps_the_frames_depth_and_restarts_from_the_pose(refining, frames, small_pipeline):
    images, K = frames
    pipe = small_pipeline(refining, trust=LOOSE)
    for i in range(3):
        last = pipe.process(images[i], K, 0.1 * i).odometry
    def broken(*args):
        raise RuntimeError("out of memory in the feature net")

    pipe.estimator.finish = broken
    failed = pipe.process(images[3], K, 0.3)
    del pipe.estimator.finish
    assert failed.odometry is None and "RuntimeError: out of memory" in failed.odometry_error
    assert np.isfinite(failed.depth).any()
    again = pipe.process(images[4], K, 0.4).odometry
    assert again.tracking == Tracking.INIT
    np.testing.assert_allclose(again.pose, last.pose)
    assert pipe.status()["odometry_stage_errors"] == 1


def test_the_first_covariance_is_not_zero_and_covariances_stay_finite(untrained, frames, small_pipeline):
    images, K = frames
    pipe = small_pipeline(untrained, scale_mode="fixed", scale_factor=1e6)
    first = pipe.process(images[0], K, 0.0).odometry
    assert np.diag(first.pose_covariance).min() > 0
    for i in range(1, 4):
        out = pipe.process(images[i], K, 0.1 * i).odometry
        assert np.isfinite(out.pose).all() and np.isfinite(out.pose_covariance).all()
    for bad in (1e308, float("inf"), float("nan"), 0.0):
        with pytest.raises(InputError, match="scale factor"):
            pipe.configure(dataclasses.replace(pipe.options, scale_factor=bad))


def test_checkpoints_declaring_huge_sizes_and_pipes_are_refused_before_loading(untrained, tmp_path):
    cfg = untrained.cfg.to_dict()
    cfg["model"]["height"], cfg["model"]["width"] = 65536, 65536
    huge = tmp_path / "huge.pt"
    save_checkpoint(huge, config=cfg, model=untrained.model.state_dict())
    with pytest.raises(CheckpointError, match="budget"):
        load_model(huge, CPU)
    fifo = tmp_path / "model.pt"
    import os

    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_model(fifo, CPU)


def test_fitting_the_refiner_leaves_depth_and_pose_bit_identical(synth_root, tmp_path, untrained):
    init = tmp_path / "plain.pt"
    cfg = load_config(None, SMALL + ["refine.enabled=false"])
    save_checkpoint(init, config=cfg.to_dict(), model=untrained.model.state_dict(), step=5)
    overrides = ["train.batch_size=2", "train.progress=false", "train.max_steps=3", "train.epochs=100",
                 "train.val_every=1000", "train.save_every=1000", "train.lr=1e-3", "refine.max_points=256",
                 f"train.out_dir={tmp_path / 'fit'}", f"train.init={init}", "train.trainable=refiner"]
    fit_cfg = load_config(None, ["model.height=32", "model.width=64"] + overrides)  # the init's size wins
    data = TripletDataset(KittiOdometrySequence(synth_root, "00"), 64, 128, augment=True)
    trainer = Trainer(fit_cfg, data, None, log=lambda *a: None)
    assert (fit_cfg.model.height, fit_cfg.model.width) == (64, 128)
    trainer.fit()
    state = load_checkpoint(tmp_path / "fit" / "best.pt")
    assert state["features_trained"] and state["step"] == 3
    before, after = untrained.model.state_dict(), state["model"]
    frozen = ("depth_encoder.", "depth_decoder.", "pose_net.")
    for key, value in before.items():
        if key.startswith(frozen):  # weights and batch-norm statistics alike
            assert torch.equal(value, after[key]), key
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("feature_net."))
    assert not torch.equal(before["refiner.damping_logits"], after["refiner.damping_logits"])
    assert load_model(tmp_path / "fit" / "best.pt", CPU).features_trained


def test_fitting_the_refiner_needs_weights_and_refinement(tmp_path):
    data = []
    with pytest.raises(InputError, match="no batch"):  # (and a training set without a batch says so)
        Trainer(load_config(None, SMALL + [f"train.out_dir={tmp_path}"]), data, None).fit()
    with pytest.raises(InputError, match="--init"):
        Trainer(load_config(None, SMALL + ["train.trainable=refiner", f"train.out_dir={tmp_path}"]), data, None)
    with pytest.raises(InputError, match="refine.enabled"):
        Trainer(load_config(None, SMALL + ["train.trainable=refiner", "refine.enabled=false",
                                           f"train.out_dir={tmp_path}"]), data, None)


def test_the_online_learner_can_fit_only_the_refiner(synth_root, tmp_path, one_thread):
    from sa4depth_core.online import OnlineLearner, OnlineOptions

    seq = KittiOdometrySequence(synth_root, "00")
    init = tmp_path / "plain.pt"
    cfg = load_config(None, SMALL + ["refine.feature_channels=8"])
    model = SA4DepthModel(cfg)
    save_checkpoint(init, config=cfg.to_dict(), model=model.state_dict(), step=5)
    options = OnlineOptions(out_dir=str(tmp_path / "online"), batch_size=2, val_period=3, min_val=1,
                            refine_iterations=2, refine_max_points=256, persist_buffer=False, trainable="refiner",
                            lr=1e-3)
    learner = OnlineLearner(options, init=str(init))
    assert not learner.features_trained
    for i in range(len(seq)):
        learner.add_frame(seq.image(i), seq.intrinsics(), 0.1 * i)
    assert learner.train_step() is not None and learner.train_step() is not None
    assert learner.features_trained
    after = learner.model.state_dict()
    for key, value in model.state_dict().items():
        same = torch.equal(value, after[key])
        assert same if key.startswith(("depth_encoder.", "depth_decoder.", "pose_net.")) else True, key
    assert any(not torch.equal(v, after[k]) for k, v in model.state_dict().items() if k.startswith("feature_net."))
    ok, message = learner.save()
    assert ok
    saved = sorted((tmp_path / "online" / "checkpoints").glob("step_*.pt"))[-1]
    assert load_checkpoint(saved)["features_trained"]
    with pytest.raises(InputError, match="trainable"):
        OnlineOptions(trainable="depth").check()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_the_pipeline_runs_and_hot_swaps_on_a_backend(refining, frames, backend, small_pipeline):
    pytest.importorskip(backend)
    images, K = frames
    reference = small_pipeline(refining, trust=LOOSE)
    pipe = small_pipeline(refining, trust=LOOSE, backend=backend)
    assert pipe.status()["inference_backend"].startswith(f"{backend} fp32")
    for i in range(3):
        a, b = reference.process(images[i], K, 0.1 * i), pipe.process(images[i], K, 0.1 * i)
        np.testing.assert_allclose(b.depth, a.depth, rtol=1e-3)
        assert b.odometry.tracking == a.odometry.tracking
        np.testing.assert_allclose(b.odometry.pose, a.odometry.pose, atol=1e-3)
    other = dataclasses.replace(refining, model=SA4DepthModel(refining.cfg).eval(), model_id="other")
    pipe.set_model(other)
    assert pipe.status()["inference_backend"].startswith(f"{backend} fp32") and pipe.nets.model_id == "other"
    assert pipe.process(images[3], K, 0.3).odometry.tracking == Tracking.INIT


def test_a_lighter_solve_at_inference_shares_the_trained_damping(refining, frames, small_pipeline):
    images, K = frames
    refiner = refining.model.refiner
    light = refiner.with_budget(iterations=1, max_points=64)
    assert light.iterations == [1, 1, 1] and light.max_points == [64, 64, 64]
    assert light.damping_logits is refiner.damping_logits and refiner.iterations == [3, 3, 3]
    assert refiner.with_budget() is refiner
    with pytest.raises(InputError, match="3 levels"):
        refiner.with_budget(iterations=[1, 2])
    pipe = small_pipeline(refining, trust=LOOSE, refine_iterations=1, refine_max_points=64)
    calls = []
    original = light.__class__._refine_level

    def counting(self, level, T, problem, *rest):
        calls.append((level, problem.points.shape[-1]))
        return original(self, level, T, problem, *rest)

    light.__class__._refine_level = counting
    try:
        pipe.process(images[0], K, 0.0)
        assert pipe.process(images[1], K, 0.1).odometry.tracking == Tracking.REFINED
    finally:
        light.__class__._refine_level = original
    assert [n for _, n in calls] == [64, 64, 64]
    with pytest.raises(InputError, match="refine_iterations"):
        small_pipeline(refining, refine_iterations=-1)


def test_depth_beside_pose_and_features_gives_the_same_frames(refining, frames, small_pipeline):
    images, K = frames
    serial, parallel = small_pipeline(refining, trust=LOOSE), small_pipeline(refining, trust=LOOSE, parallel=True)
    for i in range(4):
        a, b = serial.process(images[i], K, 0.1 * i), parallel.process(images[i], K, 0.1 * i)
        np.testing.assert_array_equal(a.depth, b.depth)
        assert a.odometry.tracking == b.odometry.tracking
        np.testing.assert_allclose(a.odometry.pose, b.odometry.pose, atol=1e-6)
    assert parallel._pool is not None and serial._pool is None

    def broken(*args):
        raise RuntimeError("feature net failed")

    parallel.estimator.prepare = broken  # a failure beside the depth network costs only odometry
    failed = parallel.process(images[4], K, 0.4)
    assert failed.odometry is None and "feature net failed" in failed.odometry_error and np.isfinite(failed.depth).any()


def test_training_the_pose_network_alone_keeps_the_depth_network(synth_root, tmp_path, untrained):
    init = tmp_path / "depth.pt"
    cfg = load_config(None, SMALL + ["refine.enabled=false"])
    save_checkpoint(init, config=cfg.to_dict(), model=untrained.model.state_dict(), step=5)
    fit_cfg = load_config(None, SMALL + ["refine.enabled=false", "train.batch_size=2", "train.progress=false",
                                         "train.max_steps=2", "train.epochs=100", "train.val_every=1000",
                                         "train.save_every=1000", "train.lr=1e-3", f"train.out_dir={tmp_path / 'pose'}",
                                         f"train.init={init}", "train.trainable=pose"])
    Trainer(fit_cfg, TripletDataset(KittiOdometrySequence(synth_root, "00"), 64, 128), None, log=lambda *a: None).fit()
    after = load_checkpoint(tmp_path / "pose" / "best.pt")["model"]
    before = untrained.model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items() if k.startswith(("depth_encoder.", "depth_decoder.")))
    assert any(not torch.equal(v, after[k]) for k, v in before.items() if k.startswith("pose_net."))


def test_a_cyclic_transform_tree_is_looked_up_without_hanging():
    from sa4depth_core.data.bag_ground_truth import StaticTransforms

    shift = np.eye(4)
    shift[0, 3] = 1.0
    tree = StaticTransforms({"a": ("b", shift), "b": ("a", shift), "cam": ("a", np.eye(4))})
    found = tree.lookup("b", "cam")  # a broken tree has no one answer; it must give one, at once
    assert found is not None and np.isfinite(found).all()
    assert tree.lookup("elsewhere", "cam") is None


def test_a_reset_to_a_pose_carries_the_odometry_from_there(untrained, frames, small_pipeline):
    images, K = frames
    pipe = small_pipeline(untrained)
    origin = np.eye(4)
    origin[:3, 3] = [2.0, -1.0, 0.5]
    pipe.reset(origin, np.diag([1e-2] * 6))
    first = pipe.process(images[0], K, 0.0).odometry
    np.testing.assert_allclose(first.pose, origin)
    assert np.diag(first.pose_covariance).min() >= 1e-2
    second = pipe.process(images[1], K, 0.1).odometry
    np.testing.assert_allclose(second.pose, origin @ second.camera_pose, atol=1e-9)  # base = camera here
    with pytest.raises(InputError, match="rigid"):
        pipe.reset(np.ones((4, 4)))
    pipe.reset()
    np.testing.assert_allclose(pipe.process(images[2], K, 0.2).odometry.pose, np.eye(4))
