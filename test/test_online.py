"""Online learning core without ROS: keyframe selection, buffers and their manifest, the
deployment gate, divergence and rollback, checkpoint retention, disk-full and permission errors,
resuming, and the background trainer."""
import errno
import os
import threading

import numpy as np
import pytest
import torch

import sa4depth_core.checkpoint as checkpoint_module
import sa4depth_core.online.learner as learner_module
from sa4depth_core.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from sa4depth_core.config import load_config
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.errors import InputError
from sa4depth_core.geometry import invert_transform, scale_intrinsics
from sa4depth_core.loaded_model import load_model
from sa4depth_core.model import SA4DepthModel
from sa4depth_core.online import (
    BackgroundTrainer,
    CheckpointStore,
    DivergenceMonitor,
    KeyframeSelector,
    OnlineLearner,
    OnlineOptions,
    Triplet,
    TripletBuffer,
    depth_inconsistency,
    feed_sequence,
    gate,
    load_buffer_manifest,
    save_buffer_manifest,
    validation_score,
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def seq(synth_root):
    return KittiOdometrySequence(synth_root, "00")


def _cfg():
    return load_config(None, ["model.height=64", "model.width=128", "refine.feature_channels=8"])


def _learner(tmp_path, frames=None, **overrides):
    options = {"out_dir": str(tmp_path / "online"), "batch_size": 2, "lr": 1e-4, "val_period": 3, "min_val": 1,
               "refine_iterations": 2, "refine_max_points": 256, "eval_every": 2, "margin": 0.01}
    options.update(overrides)
    learner = OnlineLearner(OnlineOptions(**options), cfg=_cfg())
    if frames is not None:
        images, K = frames
        for i, image in enumerate(images):
            learner.add_frame(image, K, 0.1 * i)
    return learner


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


# -- gate and divergence ----------------------------------------------------------------------
def test_gate_deploys_only_a_clear_improvement():
    assert gate(0.98, 1.0, 0.01, 1.5).action == "deploy"
    assert gate(0.995, 1.0, 0.01, 1.5).action == "keep"
    assert gate(0.99, 1.0, 0.01, 1.5).action == "keep"  # equal to the threshold is not better
    assert gate(0.999, 1.0, 0.0, 1.5).action == "deploy"
    assert gate(1.4, 1.0, 0.01, 1.5).action == "keep"
    for broken in (float("nan"), float("inf"), 1.6):
        decision = gate(broken, 1.0, 0.01, 1.5)
        assert decision.action == "collapse" and decision.reason
    assert gate(0.5, float("nan"), 0.01, 1.5).action == "deploy"  # a broken deployed model loses


def test_divergence_needs_bad_steps_in_a_row():
    m = DivergenceMonitor(max_grad_norm=10.0, max_bad_steps=3)
    assert "non-finite loss" in m.check_step(float("nan"), None)
    assert "non-finite gradient" in m.check_step(0.3, float("inf"))
    assert "exploding" in m.check_step(0.3, 50.0)
    assert m.check_step(0.3, 5.0) is None
    for problem in ("a", "b", None, "c", "d"):
        assert m.record(problem) is None
    reason = m.record("e")
    assert reason is not None and "3 bad training steps" in reason and "e" in reason
    assert m.bad_total == 5 and m.bad_in_a_row == 0


# -- keyframes ----------------------------------------------------------------------------------
def test_static_frames_are_skipped_and_moving_ones_kept(frames):
    images, K = frames
    selector = KeyframeSelector(64, 128, min_motion=0.01, val_period=100)
    rng = np.random.default_rng(0)
    for i in range(8):  # a camera standing still: the same view with sensor noise (sigma 2 grey levels)
        noisy = np.clip(images[0] + rng.normal(0, 2, images[0].shape), 0, 255).astype(np.uint8)
        assert selector.add(noisy if i else images[0], K, 0.1 * i)[0] == ("static" if i else "keyframe")
    assert selector.last_motion < 0.01
    for i in range(1, 6):  # driving: consecutive synthetic frames differ by ~0.06 in grey level
        assert selector.add(images[i], K, 1.0 + 0.1 * i)[0] == "keyframe"
        assert selector.last_motion > 0.03
    assert selector.counts["static"] == 7 and selector.counts["keyframe"] == 6


def test_blank_and_non_finite_frames_are_rejected(frames):
    images, K = frames
    selector = KeyframeSelector(64, 128, val_period=1)
    assert selector.add(np.full((64, 128, 3), 128, np.uint8), K, 0.0) == ("textureless", [])
    assert selector.add(np.full((64, 128, 3), 0.3, np.float32), K, 0.1) == ("textureless", [])
    poisoned = images[0].astype(np.float32) / 255
    poisoned[10, 10, 0] = np.nan
    assert selector.add(poisoned, K, 0.2) == ("invalid", [])
    assert selector.counts["textureless"] == 2 and selector.counts["invalid"] == 1
    assert selector.counts["keyframe"] == 0


def test_triplets_hold_target_first_and_validation_frames_are_never_trained_on(frames):
    images, K = frames
    selector = KeyframeSelector(32, 64, min_motion=0.0, val_period=2)
    out = []
    for i, image in enumerate(images):  # 14 frames at 10 Hz
        out += selector.add(image, K, 0.1 * i)[1]
    splits = [s for s, _ in out]
    # val 0-2 | train 3-5, 4-6 | val 7-9 | train 10-12, 11-13 (worked out by hand from val_period=2)
    assert splits == ["val", "train", "train", "val", "train", "train"]
    centres = [round(t.stamps[0] * 10) for _, t in out]
    assert centres == [1, 4, 5, 8, 11, 12]
    for _, t in out:
        np.testing.assert_allclose(t.stamps[1:] - t.stamps[0], [-0.1, 0.1], atol=1e-9)
        assert t.images.shape == (3, 32, 64, 3) and t.images.dtype == np.uint8
        np.testing.assert_allclose(t.K, scale_intrinsics(K, 0.5, 0.5))
    val_stamps = {s for split, t in out if split == "val" for s in t.stamps}
    train_stamps = {s for split, t in out if split == "train" for s in t.stamps}
    assert not val_stamps & train_stamps


def test_a_time_gap_starts_a_new_chain(frames):
    images, K = frames
    selector = KeyframeSelector(64, 128, min_motion=0.0, max_time_gap=0.5, val_period=100)
    stamps = [0.0, 0.1, 5.0, 5.1, 5.2, 4.0, 4.1]  # a gap, then time running backwards
    out = [t for i, s in enumerate(stamps) for _, t in selector.add(images[i], K, s)[1]]
    assert [sorted(t.stamps) for t in out] == [[5.0, 5.1, 5.2]]


# -- buffers ------------------------------------------------------------------------------------
def _triplet(rng, value=None):
    images = rng.integers(0, 255, (3, 8, 16, 3), dtype=np.uint8) if value is None else \
        np.full((3, 8, 16, 3), value, np.uint8)
    return Triplet(images, np.eye(3) * rng.uniform(1, 2), rng.uniform(0, 10, 3))


def test_buffer_is_bounded_and_its_manifest_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    replay, val = TripletBuffer(3, tmp_path / "replay"), TripletBuffer(2, tmp_path / "val")
    added = [_triplet(rng) for _ in range(5)]
    for t in added:
        assert replay.add(t) is None
    val.add(_triplet(rng))
    assert len(replay) == 3 and replay.files() == ["00000002.npz", "00000003.npz", "00000004.npz"]
    assert sorted(p.name for p in (tmp_path / "replay").iterdir()) == replay.files()  # evicted files are gone
    save_buffer_manifest(tmp_path / "manifest.json", {"replay": replay, "val": val}, {"note": 7})
    (tmp_path / "replay" / "00000099.npz").write_bytes(b"written after the manifest")
    (tmp_path / "val" / "00000000.npz").unlink()

    replay2, val2 = TripletBuffer(3, tmp_path / "replay"), TripletBuffer(2, tmp_path / "val")
    extra, notes = load_buffer_manifest(tmp_path / "manifest.json", {"replay": replay2, "val": val2})
    assert extra == {"note": 7}
    assert len(notes) == 1 and "00000000.npz" in notes[0]
    assert len(val2) == 0 and replay2.next_uid == 5
    for a, b in zip(replay2.triplets(), added[2:]):
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.K, b.K)
        np.testing.assert_array_equal(a.stamps, b.stamps)
    assert not (tmp_path / "replay" / "00000099.npz").exists()
    assert load_buffer_manifest(tmp_path / "none.json", {"replay": replay2}) == ({}, [])


# -- checkpoint store ---------------------------------------------------------------------------
def _write(store, step, kind="candidate"):
    return store.write(config={"step": step}, model={"w": torch.full((4,), float(step))}, step=step, kind=kind,
                       parent="p", score=1.0 / (step + 1))


def test_retention_never_deletes_the_deployed_checkpoint(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    first = _write(store, 0, "initial")
    store.set_deployed(store.path(first), first.model_id)
    for step in range(1, 5):
        _write(store, step)
        store.prune()
    assert sorted(p.name for p in tmp_path.glob("step_*.pt")) == ["step_00000000.pt", "step_00000003.pt",
                                                                  "step_00000004.pt"]
    assert first.model_id == file_sha256(store.path(first))[:12]
    assert load_checkpoint(store.path(first))["metrics"]["score"] == 1.0
    deployed = _write(store, 4)  # same step again gets its own file
    assert deployed.file == "step_00000004_1.pt"
    store.set_deployed(store.path(deployed), deployed.model_id)
    store.prune()
    assert sorted(p.name for p in tmp_path.glob("step_*.pt")) == ["step_00000004.pt", "step_00000004_1.pt"]

    # manifest round trip, and leftovers of a killed write are cleaned on opening
    (tmp_path / ".step_00000009.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "step_00000042.pt").write_bytes(b"never listed")
    (tmp_path / "notes.txt").write_text("not ours")
    again = CheckpointStore(tmp_path, keep=2)
    assert [e.file for e in again.entries] == ["step_00000004.pt", "step_00000004_1.pt"]
    assert again.entries == store.entries
    assert (again.deployed, again.deployed_id) == (str(store.path(deployed)), deployed.model_id)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "notes.txt", "step_00000004.pt",
                                                          "step_00000004_1.pt"]


def _fsync_failing_from(call: int):
    calls = {"n": 0}
    real = os.fsync

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] >= call:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)
    return fsync


@pytest.mark.parametrize("failing_call", [1, 3])  # 1: the checkpoint itself, 3: the manifest after it
def test_disk_full_while_writing_changes_nothing(tmp_path, monkeypatch, failing_call):
    store = CheckpointStore(tmp_path, keep=3)
    first = _write(store, 0)
    store.set_deployed(store.path(first), first.model_id)
    before = sorted(p.name for p in tmp_path.iterdir())
    manifest = (tmp_path / "manifest.json").read_bytes()
    monkeypatch.setattr(checkpoint_module.os, "fsync", _fsync_failing_from(failing_call))
    with pytest.raises(OSError) as info:
        _write(store, 1)
    assert info.value.errno == errno.ENOSPC and "No space left" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "manifest.json").read_bytes() == manifest
    assert [e.file for e in store.entries] == ["step_00000000.pt"]


# -- scale-consistency proxy ----------------------------------------------------------------------
def test_depth_inconsistency_is_zero_for_true_geometry_and_grows_with_scale_drift(seq):
    t, s = 5, 4
    T = (invert_transform(torch.from_numpy(seq.pose(s))) @ torch.from_numpy(seq.pose(t)))[None].float()
    d_t = torch.from_numpy(seq.gt_depth(t))[None, None]
    d_s = torch.from_numpy(seq.gt_depth(s))[None, None]
    K = torch.from_numpy(seq.intrinsics()).float()[None]

    def measure(source_depth):
        ok_t, ok_s = d_t > 0, source_depth > 0  # the sky has no depth: keep it out of both maps
        total, count = depth_inconsistency(torch.where(ok_t, d_t, torch.full_like(d_t, 1e4)),
                                           torch.where(ok_s, source_depth, torch.full_like(d_s, 1e4)), T, K,
                                           torch.inverse(K))
        return (total / count).item()
    exact = measure(d_s)
    assert exact < 0.03
    # a source depth 20 % too far: |z - 1.2 z| / (z + 1.2 z) = 0.2 / 2.2 where both see the same surface
    drift = measure(1.2 * d_s)
    assert abs(drift - 0.2 / 2.2) < exact + 0.01


def test_validation_score_is_repeatable_and_maxes_out_without_overlap(frames):
    images, K = frames
    selector = KeyframeSelector(64, 128, min_motion=0.0, val_period=100)
    triplets = [t for i in range(6) for _, t in selector.add(images[i], K, 0.1 * i)[1]]
    cfg = load_config(None, ["model.height=64", "model.width=128", "refine.feature_channels=8",
                             "refine.iterations=1", "refine.max_points=128"])
    torch.manual_seed(0)
    model = SA4DepthModel(cfg)
    first = validation_score(model, triplets, cfg, 0.5, 2, torch.device("cpu"))
    assert first == validation_score(model, triplets, cfg, 0.5, 2, torch.device("cpu"))  # fixed draws
    assert first["triplets"] == 2 and 0 < first["depth_inconsistency"] < 1
    assert first["score"] == pytest.approx(first["photometric"] + 0.5 * first["depth_inconsistency"])

    def far(target, source, offset):  # a PoseNet that diverged: 1 km sideways per frame
        T = torch.eye(4).repeat(len(target), 1, 1)
        T[:, 0, 3] = 1000.0
        return T
    model.relative_pose = far
    cfg.refine.enabled = False  # scored with PoseNet's motion as it is
    lost = validation_score(model, triplets, cfg, 0.5, 2, torch.device("cpu"))
    assert lost["depth_inconsistency"] == 1.0 and np.isfinite(lost["photometric"]), lost
    assert lost["score"] > first["score"]


# -- the learner --------------------------------------------------------------------------------
class FakeScores:
    """Replaces validation_score: the deployed reference model scores `reference`, the candidate
    the next value of `candidates`."""

    def __init__(self, learner, reference, candidates):
        self.learner, self.reference, self.candidates = learner, reference, list(candidates)

    def __call__(self, model, *args, **kwargs):
        score = self.reference if model is self.learner.reference else self.candidates.pop(0)
        return {"score": score, "photometric": score, "depth_inconsistency": 0.0, "refine_success": 1.0,
                "triplets": 1.0}


def test_only_a_candidate_past_the_gate_is_written_and_becomes_deployed(tmp_path, frames, monkeypatch):
    learner = _learner(tmp_path, frames)
    initial_path, initial_id = learner.store.deployed, learner.deployed_id
    assert initial_id == file_sha256(initial_path)[:12]
    monkeypatch.setattr(learner_module, "validation_score", FakeScores(learner, 1.0, [0.995, 0.9, 0.95]))
    assert learner.train_step() is not None

    kept = learner.evaluate()
    assert kept.action == "kept" and learner.deployed_id == initial_id
    assert sorted(p.name for p in learner.store.directory.glob("*.pt")) == ["step_00000000.pt"]

    deployed = learner.evaluate()
    assert deployed.action == "deployed", deployed.message
    path = learner.store.deployed
    assert path == deployed.path and learner.deployed_id == file_sha256(path)[:12] == deployed.entry.model_id
    state = load_checkpoint(path)
    assert state["step"] == 1 and state["parent"] == initial_path and state["metrics"]["score"] == 0.9
    assert state["metrics"]["reference_score"] == 1.0 and state["extra"]["kind"] == "candidate"
    assert load_model(path).model_id == learner.deployed_id
    assert _same(_weights(learner.reference), _weights(learner.model))
    again = CheckpointStore(learner.store.directory)
    assert again.deployed == path and again.entries[-1].score == 0.9

    # the new deployed model is the bar now: 0.95 is better than 1.0 but worse than 0.9
    assert learner.evaluate().action == "kept" and learner.deployments == 1


def test_nan_weights_roll_back_to_the_deployed_model_and_never_deploy(tmp_path, frames):
    learner = _learner(tmp_path, frames, max_rollbacks=2)
    deployed_path, deployed_id = learner.store.deployed, learner.deployed_id
    good = _weights(learner.reference)
    assert learner.train_step() is not None
    with torch.no_grad():
        next(learner.model.depth_decoder.parameters()).fill_(float("nan"))
    outcome = learner.evaluate()  # the score of NaN weights is NaN: a collapse
    assert outcome.action == "rolled_back" and "score collapse" in outcome.message
    assert _same(_weights(learner.model), good)

    with torch.no_grad():
        next(learner.model.depth_encoder.parameters()).fill_(float("nan"))
    assert [learner.train_step() for _ in range(3)] == [None, None, None]
    assert learner.rollbacks == 2 and "non-finite loss" in learner.last_rollback
    assert deployed_id in learner.last_rollback
    assert _same(_weights(learner.model), good)
    assert learner.halted and "2 rollbacks in a row" in learner.halted
    assert learner.deployments == 0 and learner.deployed_id == deployed_id
    assert file_sha256(deployed_path)[:12] == deployed_id
    assert learner.train_step() is not None  # the restored weights train again


def test_a_diverging_learning_rate_never_deploys(tmp_path, frames):
    learner = _learner(tmp_path, frames, lr=1e30, margin=0.0, max_rollbacks=100)
    deployed_id = learner.deployed_id
    actions = []
    for _ in range(3):
        for _ in range(3):
            learner.train_step()
        actions.append(learner.evaluate().action)
    assert "deployed" not in actions and learner.rollbacks >= 1
    assert learner.deployed_id == deployed_id and learner.deployments == 0
    assert all(torch.isfinite(p).all() for p in learner.reference.parameters())


def test_disk_full_at_deployment_is_reported_and_training_goes_on(tmp_path, frames, monkeypatch):
    learner = _learner(tmp_path, frames, persist_buffer=False)
    deployed_id = learner.deployed_id
    monkeypatch.setattr(learner_module, "validation_score", FakeScores(learner, 1.0, [0.5, 0.5]))
    learner.train_step()
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint_module.os, "fsync", _fsync_failing_from(1))
        outcome = learner.evaluate()
    assert outcome.action == "failed" and "No space left" in outcome.message
    assert learner.deployed_id == deployed_id and learner.errors == 1 and "No space" in learner.status()["last_error"]
    assert sorted(p.name for p in learner.store.directory.iterdir()) == ["manifest.json", "step_00000000.pt"]
    assert learner.train_step() is not None
    assert learner.evaluate().action == "deployed"  # the disk has room again


def test_an_unwritable_directory_is_reported_not_fatal(tmp_path, frames, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    monkeypatch.setattr(checkpoint_module.tempfile, "mkstemp", refuse)
    learner = _learner(tmp_path, frames)
    assert learner.errors > 0 and "Permission denied" in learner.last_error
    assert learner.store.deployed == "" and len(learner.replay) > 0  # buffers work in memory
    assert learner.train_step() is not None
    ok, message = learner.save()
    assert not ok and "Permission denied" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_reported_not_fatal(tmp_path, frames):
    out = tmp_path / "online"
    out.mkdir()
    out.chmod(0o500)
    try:
        learner = _learner(tmp_path, frames)
        assert learner.errors > 0 and "Permission denied" in learner.last_error
        ok, message = learner.save()
        assert not ok and "Permission denied" in message
    finally:
        out.chmod(0o700)


def test_a_new_learner_resumes_weights_deployed_model_and_buffers(tmp_path, frames):
    first = _learner(tmp_path, frames)
    first.train_step()
    first.train_step()
    ok, message = first.save()
    assert ok and "step 2" in message
    resumed = OnlineLearner(first.options, init="ignored.pt", cfg=_cfg())
    assert resumed.step == 2 and resumed.deployed_id == first.deployed_id
    assert _same(_weights(resumed.model), _weights(first.model))
    assert _same(_weights(resumed.reference), _weights(first.reference))
    for a, b in ((first.replay, resumed.replay), (first.val, resumed.val)):
        assert len(a) == len(b) > 0
        for x, y in zip(a.triplets(), b.triplets()):
            np.testing.assert_array_equal(x.images, y.images)
    assert resumed.selector.counts["frames"] == 0  # a new stream: no chain carries over


def test_background_trainer_trains_evaluates_and_pauses(tmp_path, seq):
    learner = _learner(tmp_path, persist_buffer=False, eval_every=2)
    outcomes = []
    two_evaluations = threading.Event()

    def record(outcome):
        outcomes.append(outcome)
        if len(outcomes) >= 2:
            two_evaluations.set()

    trainer = BackgroundTrainer(learner, duty_cycle=1.0, threads=1, on_outcome=record)
    stop = threading.Event()
    try:
        assert trainer.state == "paused"
        trainer.start()
        assert trainer.state == "waiting for data"
        fed = feed_sequence(learner, seq, stop, steps_per_triplet=1)
        assert fed == len(seq)
        assert two_evaluations.wait(300), f"{len(outcomes)} evaluation(s) after {learner.step} steps"
        assert learner.step >= 4 and outcomes[0].action in ("deployed", "kept")
        message = trainer.pause()
        paused_at = learner.step
        assert message == f"training paused at step {paused_at}" and trainer.state == "paused"
        assert trainer.steps_per_second(window=1e9) > 0
    finally:
        trainer.stop()
    assert learner.step == paused_at, "a step ran after pause() returned"
    assert trainer.state == "stopped"


class _GatedLearner:
    """Stands in for OnlineLearner in BackgroundTrainer tests: the first training step (or, with
    hold="evaluate", the first evaluation) waits for `release`; `held` is set once it waits. It
    counts steps begun and notes any begun after `closed` was set, which the tests set when the
    trainer has promised that no step will start."""

    def __init__(self, hold: str = "train_step", eval_every: int = 1):
        self.options = OnlineOptions(eval_every=eval_every)
        self.hold = hold
        self.step = self.started = 0
        self.halted = ""
        self.busy = False  # inside train_step or evaluate
        self.held, self.release, self.closed = threading.Event(), threading.Event(), threading.Event()
        self.late_starts = 0

    def ready(self) -> bool:
        return True

    def clear_halt(self) -> None:
        self.halted = ""

    def halt(self, reason: str) -> None:
        self.halted = reason

    def _maybe_hold(self, where: str) -> None:
        if where == self.hold and not self.held.is_set():
            self.held.set()
            assert self.release.wait(60), "the test never released the held step"

    def train_step(self) -> dict:
        self.busy = True
        self.started += 1
        self.late_starts += self.closed.is_set()
        self._maybe_hold("train_step")
        self.step += 1
        self.busy = False
        return {"loss": 0.0}

    def evaluate(self):
        self.busy = True
        self._maybe_hold("evaluate")
        self.busy = False
        return learner_module.EvalOutcome("kept", f"evaluated at step {self.step}")


def _until(predicate, timeout: float = 60.0) -> bool:
    """Wait for a state another thread sets, with a generous timeout; True once it holds."""
    poll = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return True
        poll.wait(0.01)
    return predicate()


@pytest.mark.parametrize("hold", ["train_step", "evaluate"])
@pytest.mark.parametrize("control", ["pause", "stop"])
def test_pause_and_stop_return_after_the_work_in_flight_and_no_step_starts_after_them(hold, control):
    learner = _GatedLearner(hold)
    trainer = BackgroundTrainer(learner)
    seen = {}

    def call():
        getattr(trainer, control)()
        seen.update(busy=learner.busy, step=learner.step, started=learner.started)
        learner.closed.set()

    caller = threading.Thread(target=call)
    try:
        trainer.start()
        assert learner.held.wait(60), "the first step never started"
        caller.start()
        # pause()/stop() says so in the state before it waits for the work in flight
        assert _until(lambda: trainer.state in ("paused", "stopped"))
        learner.release.set()
        caller.join(60)
        assert not caller.is_alive(), f"{control}() did not return after the held work finished"
        assert seen == {"busy": False, "step": 1, "started": 1}, f"{control}() returned while work was in flight"
    finally:
        learner.release.set()
        trainer.stop()
    assert learner.started == 1 and learner.late_starts == 0
    assert trainer.state == "stopped" and trainer.start() == "training stopped"


def test_training_resumes_after_a_pause_and_a_pause_from_the_outcome_callback_does_not_wait_for_itself():
    learner = _GatedLearner(hold="none", eval_every=2)
    learner.release.set()
    evaluated = threading.Event()

    def on_outcome(outcome):
        trainer.pause()  # in the training thread, inside the evaluation's own step
        evaluated.set()

    trainer = BackgroundTrainer(learner, on_outcome=on_outcome)
    try:
        for round_ in (1, 2):
            evaluated.clear()
            assert trainer.start() == "training running"
            assert evaluated.wait(60), f"no evaluation in round {round_}"
            assert trainer.pause() == f"training paused at step {2 * round_}"
            assert learner.step == learner.started == 2 * round_
    finally:
        trainer.stop()
    assert learner.step == 4


def test_options_are_checked():
    with pytest.raises(ValueError, match="batch_size"):
        OnlineOptions(batch_size=0).check()
    with pytest.raises(ValueError, match="margin"):
        OnlineOptions(margin=1.5).check()
    with pytest.raises(ValueError, match="unknown online option"):
        OnlineOptions.from_dict({"learning_rate": 1.0})
    with pytest.raises(ValueError, match="min_val"):
        OnlineOptions(min_val=5, val_capacity=2).check()


def test_a_checkpoint_init_is_the_first_deployed_model(tmp_path):
    cfg = _cfg()
    init = tmp_path / "init.pt"
    sha = save_checkpoint(init, config=cfg.to_dict(), model=load_model(None, cfg=cfg).model.state_dict())
    learner = OnlineLearner(OnlineOptions(out_dir=str(tmp_path / "online"), persist_buffer=False), init=str(init))
    assert learner.store.deployed == str(init) and learner.deployed_id == sha[:12]
    assert learner.store.entries == []  # nothing written: the init file is the reference


def test_the_learned_damping_keeps_the_trainers_lr_factor_through_set_lr_and_rollback(tmp_path):
    learner = _learner(tmp_path, persist_buffer=False)
    factor = learner.train_cfg.train.damping_lr_factor
    damping = {id(p) for p in learner.model.refiner.parameters()}
    assert damping and factor != 1

    def check(lr):
        seen = 0
        for group in learner.optimizer.param_groups:
            in_refiner = {id(p) in damping for p in group["params"]}
            assert len(in_refiner) == 1, "a group mixes the refiner with the networks"
            assert group["lr"] == pytest.approx(lr * factor if in_refiner == {True} else lr)
            seen += len(group["params"])
        assert seen == sum(1 for p in learner.model.parameters() if p.requires_grad)

    check(1e-4)
    learner.set_lr(3e-5)
    check(3e-5)
    learner.rollback("test")  # a fresh optimizer at the rate set live
    check(3e-5)


def test_unusable_settings_are_input_errors(tmp_path):
    """Every bad setting of the online parts raises the project's InputError (the nodes report it
    as a user error), not a bare ValueError."""
    with pytest.raises(InputError, match="capacity"):
        TripletBuffer(0)
    with pytest.raises(InputError, match="keep"):
        CheckpointStore(tmp_path / "checkpoints", keep=0)
    with pytest.raises(InputError, match="at least one triplet"):
        validation_score(SA4DepthModel(_cfg()), [], _cfg(), 0.5, 2, torch.device("cpu"))
