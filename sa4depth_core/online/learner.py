"""OnlineLearner: fine-tunes an SA4Depth model on frames as they arrive and hands out only
weights that scored better than the deployed ones.

Data: frames -> KeyframeSelector -> replay buffer (training) and validation buffer (held out).
Training: the project's objective (objective.compute_losses) on random replay batches, with
    colour/flip augmentation; a step with a non-finite loss, a non-finite or exploding gradient is
    skipped, and a run of them rolls the weights back to the deployed model.
Evaluation (the caller decides when): candidate and deployed model are scored on the same
    validation triplets (score.py); safety.gate decides: deploy (write, verify by loading the
    file back and running it, then record it as deployed), keep training, or roll back.
Persistence: checkpoints and their manifest (store.py) and the buffers with their manifest
    (buffer.py) live under `out_dir`; a new learner on the same `out_dir` resumes from the newest
    checkpoint, the recorded deployed model and the buffers.

Write failures (full disk, no permission) never raise out of the learner: they are counted,
logged and shown in `status()`, and the deployed model stays what it was.

Thread safety: `add_frame` may run concurrently with `train_step` / `evaluate` / `save`.
"""
from __future__ import annotations

import copy
import logging
import math
import random
import threading
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ..config import TRAINABLE, Config
from ..data.augment import Augmentation
from ..errors import CheckpointError, InputError
from ..infer import load_checked_model, load_model
from ..model import SA4DepthModel
from ..objective import compute_losses
from ..train.step import guarded_step
from .buffer import TripletBuffer, load_buffer_manifest, save_buffer_manifest
from .keyframes import VAL, KeyframeSelector, Triplet
from .safety import COLLAPSE, DEPLOY, DivergenceMonitor, gate
from .score import triplet_batch, validation_score
from .store import CheckpointEntry, CheckpointStore

log = logging.getLogger(__name__)

# EvalOutcome actions
DEPLOYED, KEPT, ROLLED_BACK, SKIPPED, FAILED = "deployed", "kept", "rolled_back", "skipped", "failed"


@dataclass
class OnlineOptions:
    """Settings of an OnlineLearner (the trainer node's parameters of the same names).

    out_dir: checkpoints/ and buffer/ go here; reusing it resumes.
    batch_size, lr: training batch (triplets, drawn with replacement) and Adam learning rate (the
        refiner's learned damping trains at the checkpoint's train.damping_lr_factor times it).
    replay_capacity, val_capacity: triplets kept (oldest dropped first).
    val_period: training triplets between two held-out validation triplets.
    min_val: validation triplets needed before a candidate is scored. With 3, a first evaluation on
        that few triplets deployed a model with AbsRel +0.040 worse; 8 deployed none that ground truth
        called worse (benchmarks/gate_audit.py).
    eval_every: training steps between evaluations (used by BackgroundTrainer).
    margin: relative score improvement a candidate needs to be deployed (0.01 = 1 %).
    collapse_factor: a candidate scoring worse than this times the deployed score is a collapse.
    scale_weight: weight of the depth-inconsistency term in the score.
    max_grad_norm: gradient norm (before clipping) above which a step counts as exploding.
    max_bad_steps: skipped steps in a row that count as divergence (rollback).
    max_rollbacks: rollbacks in a row after which training halts until restarted.
    keep_checkpoints: newest checkpoints kept besides the deployed one.
    min_motion, min_texture, max_time_gap: keyframe selection (keyframes.KeyframeSelector).
    refine_iterations, refine_max_points: lighter LM refinement for training and scoring on a
        small computer (0 = the checkpoint's); deployed checkpoints keep the checkpoint's config.
    freeze_bn: keep batch-norm statistics fixed (online batches are small and correlated).
    trainable: "all" networks, or "refiner": depth and pose networks fixed, only the feature network
        and the damping learn (SA4Depth odometry on top of existing depth/pose weights).
    augment: colour jitter and horizontal flips on training batches.
    persist_buffer: mirror the buffers to out_dir/buffer.
    seed: sampling and augmentation seed.
    """

    out_dir: str = "online"
    batch_size: int = 4
    lr: float = 5e-5
    replay_capacity: int = 200
    val_capacity: int = 20
    val_period: int = 10
    min_val: int = 8
    eval_every: int = 200
    margin: float = 0.01
    collapse_factor: float = 1.5
    scale_weight: float = 0.5
    max_grad_norm: float = 100.0
    max_bad_steps: int = 3
    max_rollbacks: int = 3
    keep_checkpoints: int = 3
    min_motion: float = 0.01
    min_texture: float = 0.02
    max_time_gap: float = 1.0
    refine_iterations: int = 0
    refine_max_points: int = 0
    freeze_bn: bool = True
    trainable: str = "all"
    augment: bool = True
    persist_buffer: bool = True
    seed: int = 0

    def check(self) -> None:
        """Raise InputError naming the first unusable setting."""
        at_least = {"batch_size": 1, "replay_capacity": 1, "val_capacity": 1, "val_period": 1, "min_val": 1,
                    "eval_every": 1, "max_bad_steps": 1, "max_rollbacks": 1, "keep_checkpoints": 1,
                    "refine_iterations": 0, "refine_max_points": 0, "seed": 0}
        for name, low in at_least.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"online option {name} must be an integer >= {low}, got {value!r}")
        positive = ("lr", "collapse_factor", "max_grad_norm", "max_time_gap")
        non_negative = ("margin", "scale_weight", "min_motion", "min_texture")
        for name in positive + non_negative:
            value = getattr(self, name)
            bad = not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            if bad or value < 0 or (name in positive and value == 0):
                raise InputError(f"online option {name} must be a finite number "
                                 f"{'> 0' if name in positive else '>= 0'}, got {value!r}")
        if self.margin >= 1:
            raise InputError(f"online option margin is a fraction below 1, got {self.margin}")
        if self.collapse_factor <= 1:
            raise InputError(f"online option collapse_factor must be > 1, got {self.collapse_factor}")
        if self.min_val > self.val_capacity:
            raise InputError(f"online option min_val ({self.min_val}) exceeds val_capacity ({self.val_capacity})")
        if not str(self.out_dir).strip():
            raise InputError("online option out_dir must not be empty")
        if self.trainable not in TRAINABLE:
            raise InputError(f"online option trainable must be one of {', '.join(TRAINABLE)}, got {self.trainable!r}")

    @classmethod
    def from_dict(cls, values: dict) -> OnlineOptions:
        """From {name: value}; unknown names raise InputError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise InputError(f"unknown online option(s) {unknown}; valid: {', '.join(sorted(names))}")
        options = cls(**values)
        options.check()
        return options


@dataclass
class EvalOutcome:
    """Result of OnlineLearner.evaluate.

    action: "deployed", "kept", "rolled_back", "skipped" (not enough validation data) or "failed"
    (the candidate passed the gate but could not be written or verified; nothing changed).
    candidate, reference: score dicts (score.validation_score) or None.
    entry, path: the new deployed checkpoint (action "deployed").
    """

    action: str
    message: str
    candidate: dict | None = None
    reference: dict | None = None
    entry: CheckpointEntry | None = None
    path: str = ""


class OnlineLearner:
    """See the module docstring.

    Args:
        options: OnlineOptions.
        init: weights to start from when out_dir holds no checkpoint: a project checkpoint, a
            Monodepth2 folder, or "" for random initialisation (then `cfg` gives the model).
        cfg: model configuration for random initialisation (ignored otherwise).
        device: torch device for training and scoring.
    Raises CheckpointError when `init` or the resumed checkpoint cannot be loaded.
    """

    def __init__(self, options: OnlineOptions, init: str = "", cfg: Config | None = None,
                 device: str | torch.device = "cpu"):
        options.check()
        self.options = options
        self.device = torch.device(device)
        self.out_dir = Path(options.out_dir).expanduser()
        self._lock = threading.RLock()  # model, optimizer, store, counters
        self._data_lock = threading.Lock()  # selector and buffers
        self._rng = random.Random(options.seed)
        self.errors = 0
        self.last_error = ""
        self.deployments = self.rollbacks = self.rollbacks_in_a_row = self.skipped_steps = 0
        self.last_rollback = ""
        self.halted = ""  # why training stopped itself; "" while it may run
        self.last_candidate: dict | None = None
        self.reference_score: dict | None = None
        self._reference_key: tuple | None = None
        self.last_loss = float("nan")
        self.triplets_added = 0

        self.store = CheckpointStore(self.out_dir / "checkpoints", options.keep_checkpoints)
        resumed = self.store.latest()
        if resumed is not None:
            self._resume(resumed, init)
        else:
            self._start(init, cfg)
        self.monitor = DivergenceMonitor(options.max_grad_norm, options.max_bad_steps)
        self.optimizer = self._make_optimizer()

        h, w = self.model_cfg.model.height, self.model_cfg.model.width
        self.selector = KeyframeSelector(h, w, options.min_motion, options.min_texture, options.max_time_gap,
                                         options.val_period)
        buffer_dir = self.out_dir / "buffer"
        mirror = options.persist_buffer
        self.replay = TripletBuffer(options.replay_capacity, buffer_dir / "replay" if mirror else None)
        self.val = TripletBuffer(options.val_capacity, buffer_dir / "val" if mirror else None)
        if mirror:
            extra, notes = load_buffer_manifest(self._buffer_manifest, self._buffers)
            for note in notes:
                self.report_error(f"buffer restore: {note}")
            if extra.get("frame_size") not in (None, [h, w]):
                self.report_error(f"buffer restore: stored triplets are {extra['frame_size']}, the model takes "
                                  f"{[h, w]}; starting with empty buffers")
                self.replay = TripletBuffer(options.replay_capacity, buffer_dir / "replay")
                self.val = TripletBuffer(options.val_capacity, buffer_dir / "val")
                for buffer in self._buffers.values():
                    buffer.restore([], 0)  # deletes the stored files
            if len(self.replay) or len(self.val):
                log.info("restored %d training and %d validation triplets from %s", len(self.replay), len(self.val),
                         buffer_dir)

    # -- set-up ---------------------------------------------------------------------------------
    @property
    def _buffer_manifest(self) -> Path:
        return self.out_dir / "buffer" / "manifest.json"

    @property
    def _buffers(self) -> dict[str, TripletBuffer]:
        return {"replay": self.replay, "val": self.val}

    def _build(self, loaded) -> None:
        """Training model and deployed-reference model from loaded weights."""
        self.model_cfg = loaded.cfg
        self.train_cfg = copy.deepcopy(loaded.cfg)
        if self.options.refine_iterations:
            self.train_cfg.refine.iterations = self.options.refine_iterations
        if self.options.refine_max_points:
            self.train_cfg.refine.max_points = self.options.refine_max_points
        state = loaded.model.state_dict()
        self.model = SA4DepthModel(self.train_cfg).to(self.device)
        self.model.load_state_dict(state)
        self.init_features_trained = loaded.features_trained
        if self.options.trainable == "refiner":
            if not self.train_cfg.refine.enabled:
                raise InputError("online option trainable=refiner needs a checkpoint with refine.enabled=true")
            self.model.freeze(SA4DepthModel.FROZEN_FOR_REFINER)
        self.reference = SA4DepthModel(self.train_cfg).to(self.device).eval().requires_grad_(False)
        self.reference.load_state_dict(state)

    def _start(self, init: str, cfg: Config | None) -> None:
        init = str(Path(init).expanduser()) if init else ""
        loaded = load_model(init or None, self.device, cfg)
        self._build(loaded)
        self.step = 0
        if init and Path(init).is_file():
            # The starting checkpoint is the deployed model; it lives outside the store.
            self._record_deployed(Path(init).absolute(), loaded.model_id)
            return
        # Random or Monodepth2 weights have no project file: write one, so that the deployed
        # reference is a file that can be reloaded after a restart.
        try:
            entry = self.store.write(config=self.model_cfg.to_dict(), model=self.model.state_dict(), step=0,
                                     kind="initial", parent=str(init or "random initialisation"),
                                     features_trained=self.features_trained)
        except OSError as exc:
            self.report_error(f"could not write the initial checkpoint (training goes on in memory): {exc}")
            self.store.deployed_id = loaded.model_id
            return
        self._record_deployed(self.store.path(entry), entry.model_id)

    def _resume(self, entry: CheckpointEntry, init: str) -> None:
        path = self.store.path(entry)
        loaded = load_model(path, self.device)
        self._build(loaded)
        self.step = entry.step
        note = f"; the init checkpoint {init} is not used" if init else ""
        log.info("resuming from %s (step %d), deployed model %s%s", path, entry.step, self.store.deployed_id, note)
        deployed = self.store.deployed
        if not deployed:  # the deployed weights were never written: the resumed ones take over
            self._record_deployed(path, entry.model_id)
        elif Path(deployed) != path:
            try:
                self.reference.load_state_dict(load_model(deployed, self.device).model.state_dict())
            except CheckpointError as exc:
                self.report_error(f"the deployed checkpoint cannot be read ({exc}); {path} is the reference now")
                self._record_deployed(path, entry.model_id)

    def _record_deployed(self, path: Path, model_id: str) -> None:
        try:
            self.store.set_deployed(path, model_id)
        except OSError as exc:
            self.report_error(f"could not record the deployed model {model_id}: {exc}")
            self.store.deployed, self.store.deployed_id = str(path), model_id

    @property
    def features_trained(self) -> bool:
        """The feature network and damping came trained, or have trained through the refinement here."""
        return self.init_features_trained or (self.train_cfg.refine.enabled and self.step > 0)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        """Adam as the offline Trainer sets it up (same damping learning-rate factor)."""
        groups = self.model.optimizer_groups(self.options.lr, self.train_cfg.train.damping_lr_factor)
        return torch.optim.Adam(groups)

    def set_lr(self, lr: float) -> None:
        """Change the learning rate of the running optimizer (and of later ones)."""
        with self._lock:
            self.options.lr = float(lr)
            for group in self.optimizer.param_groups:
                group["lr"] = float(lr) * group["lr_factor"]

    def report_error(self, text: str) -> None:
        """Count, log and keep (for `status`) a problem that did not stop the learner."""
        self.errors += 1
        self.last_error = text
        log.error(text)

    # -- data -----------------------------------------------------------------------------------
    def add_frame(self, image: np.ndarray, K: np.ndarray, stamp: float) -> str:
        """Offer one camera frame (see KeyframeSelector.add); returns its verdict."""
        with self._data_lock:
            verdict, triplets = self.selector.add(image, K, stamp)
            for split, triplet in triplets:
                problem = (self.val if split == VAL else self.replay).add(triplet)
                self.triplets_added += 1
                if problem:
                    self.report_error(f"triplet kept in memory only: {problem}")
            if triplets and self.options.persist_buffer:
                self._write_buffer_manifest()
        return verdict

    def _write_buffer_manifest(self) -> None:
        extra = {"frame_size": [self.model_cfg.model.height, self.model_cfg.model.width],
                 "selector_counts": dict(self.selector.counts)}
        try:
            save_buffer_manifest(self._buffer_manifest, self._buffers, extra)
        except OSError as exc:
            self.report_error(f"buffer manifest not written: {exc}")

    def ready(self) -> bool:
        """Whether the replay buffer holds a training triplet."""
        return len(self.replay) > 0

    def _training_batch(self, triplets: list[Triplet]) -> dict:
        """Network batch of replay triplets: `images` for the loss, `images_aug` for the networks."""
        images = np.stack([t.images for t in triplets]).astype(np.float32) / 255.0  # (B,3,H,W,3)
        K = np.stack([t.K for t in triplets])
        augmented = images
        if self.options.augment:
            groups = [Augmentation.draw_from_stream(self._rng).apply(frames, k) for frames, k in zip(images, K)]
            images, augmented, K = (np.stack(part) for part in zip(*groups))
        batch = triplet_batch(images, K, self.device)
        batch["images_aug"] = triplet_batch(augmented, K, self.device)["images"]
        return batch

    # -- training -------------------------------------------------------------------------------
    def _train_mode(self) -> None:
        self.model.train()
        if self.options.freeze_bn:
            for module in self.model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def train_step(self) -> dict | None:
        """One optimiser step on a replay batch.

        Returns:
            the objective's statistics plus grad_norm, or None when the step was skipped (no
            data, or a bad loss/gradient; a run of those triggers `rollback`).
        """
        with self._data_lock:
            if not self.ready():
                return None
            triplets = self.replay.sample(self.options.batch_size, self._rng)
        with self._lock:
            batch = self._training_batch(triplets)
            self._train_mode()
            loss, stats = compute_losses(self.model, batch, self.train_cfg)
            norm, problem = guarded_step(loss, self.optimizer, self.model.parameters(), self.model_cfg.train.grad_clip,
                                         self.monitor.check_step)
            divergence = self.monitor.record(problem)
            if problem is None:
                stats["grad_norm"] = norm
                self.step += 1
                self.last_loss = loss.item()
            else:
                self.skipped_steps += 1
                log.warning("step %d skipped: %s", self.step, problem)
            if divergence:
                self.rollback(divergence)
            return stats if problem is None else None

    def rollback(self, reason: str) -> str:
        """Restore the deployed weights and a fresh optimizer; returns the message logged.

        `max_rollbacks` rollbacks without a sound evaluation in between set `halted`.
        """
        with self._lock:
            self.model.load_state_dict(self.reference.state_dict())
            self.optimizer = self._make_optimizer()
            self.rollbacks += 1
            self.rollbacks_in_a_row += 1
            where = self.store.deployed or "memory"
            self.last_rollback = f"rolled back to the deployed model {self.store.deployed_id} ({where}): {reason}"
            log.warning(self.last_rollback)
            if self.rollbacks_in_a_row >= self.options.max_rollbacks:
                self.halt(f"training halted after {self.rollbacks_in_a_row} rollbacks in a row (last: {reason}); "
                          "check the learning rate and the input stream, then start again")
            return self.last_rollback

    def halt(self, reason: str) -> None:
        """Stop training until `clear_halt` (BackgroundTrainer checks `halted`)."""
        self.halted = reason
        self.report_error(reason)

    def clear_halt(self) -> None:
        """Allow training again after `halted` was set."""
        with self._lock:
            self.halted = ""
            self.rollbacks_in_a_row = 0

    # -- evaluation and deployment --------------------------------------------------------------
    def _score(self, model: SA4DepthModel, triplets: list[Triplet]) -> dict:
        o = self.options
        return validation_score(model, triplets, self.train_cfg, o.scale_weight, o.batch_size, self.device, o.seed)

    def evaluate(self) -> EvalOutcome:
        """Score the current weights against the deployed model and act on the gate."""
        with self._data_lock:
            triplets = self.val.triplets()
            version = self.val.version
        if len(triplets) < self.options.min_val:
            return EvalOutcome(SKIPPED, f"validation buffer holds {len(triplets)} of the {self.options.min_val} "
                                        "triplets needed")
        with self._lock:
            key = (version, self.store.deployed_id)
            if self._reference_key != key:
                self.reference_score = self._score(self.reference, triplets)
                self._reference_key = key
            candidate = self._score(self.model, triplets)
            self.last_candidate = candidate
            reference = self.reference_score
            decision = gate(candidate["score"], reference["score"], self.options.margin, self.options.collapse_factor)
            if decision.action == COLLAPSE:
                message = self.rollback(f"score collapse: {decision.reason}")
                return EvalOutcome(ROLLED_BACK, message, candidate, reference)
            self.rollbacks_in_a_row = 0
            if decision.action != DEPLOY:
                return EvalOutcome(KEPT, decision.reason, candidate, reference)
            return self._deploy(candidate, reference, decision.reason)

    def _deploy(self, candidate: dict, reference: dict, reason: str) -> EvalOutcome:
        parent = self.store.deployed
        try:
            entry = self.store.write(config=self.model_cfg.to_dict(), model=self.model.state_dict(), step=self.step,
                                     kind="candidate", parent=parent, score=candidate["score"],
                                     metrics={**candidate, "reference_score": reference["score"]},
                                     features_trained=self.features_trained)
        except OSError as exc:
            return self._failed(f"candidate passed the gate but was not written: {exc}", candidate, reference)
        path = self.store.path(entry)
        try:
            load_checked_model(path, self.device)
        except CheckpointError as exc:
            return self._failed(f"candidate written but not deployed, it does not load back: {exc}", candidate,
                                reference)
        try:
            self.store.set_deployed(path, entry.model_id)
        except OSError as exc:
            return self._failed(f"candidate {path} written but not recorded as deployed: {exc}", candidate, reference)
        self.reference.load_state_dict(self.model.state_dict())
        self.reference_score = candidate
        self._reference_key = (self._reference_key[0], entry.model_id)
        self.deployments += 1
        self.store.prune()
        if self.options.persist_buffer:
            with self._data_lock:
                self._write_buffer_manifest()
        message = f"deployed model {entry.model_id} (step {entry.step}, {path}): {reason}"
        log.info(message)
        return EvalOutcome(DEPLOYED, message, candidate, reference, entry, str(path))

    def _failed(self, text: str, candidate: dict, reference: dict) -> EvalOutcome:
        self.report_error(text)
        return EvalOutcome(FAILED, text, candidate, reference)

    def save(self) -> tuple[bool, str]:
        """Write the current weights (not deployed) and the buffer manifest; (success, message)."""
        with self._lock:
            try:
                entry = self.store.write(config=self.model_cfg.to_dict(), model=self.model.state_dict(),
                                         step=self.step, kind="save", parent=self.store.deployed,
                                         metrics={"loss": self.last_loss}, features_trained=self.features_trained)
            except OSError as exc:
                self.report_error(f"save failed: {exc}")
                return False, f"save failed: {exc}"
            self.store.prune()
        if self.options.persist_buffer:
            with self._data_lock:
                self._write_buffer_manifest()
        return True, f"saved step {entry.step} as {self.store.path(entry)} (model {entry.model_id})"

    # -- reporting ------------------------------------------------------------------------------
    @property
    def deployed_id(self) -> str:
        """Model id (sha256 prefix) of the deployed weights."""
        return self.store.deployed_id

    def status(self) -> dict:
        """Counters and latest results for diagnostics (plain numbers and strings)."""
        with self._data_lock:
            counts = dict(self.selector.counts)
            replay, val = len(self.replay), len(self.val)
        score = self.last_candidate["score"] if self.last_candidate else float("nan")
        reference = self.reference_score["score"] if self.reference_score else float("nan")
        return {
            "step": self.step,
            "replay_fill": f"{replay}/{self.options.replay_capacity}",
            "val_fill": f"{val}/{self.options.val_capacity}",
            "frames": counts.get("frames", 0),
            "keyframes": counts.get("keyframe", 0),
            "static_skipped": counts.get("static", 0),
            "rejected": counts.get("invalid", 0) + counts.get("textureless", 0),
            "last_loss": self.last_loss,
            "last_score": score,
            "deployed_score": reference,
            "deployed_model_id": self.store.deployed_id,
            "deployed_checkpoint": self.store.deployed or "memory",
            "deployments": self.deployments,
            "rollbacks": self.rollbacks,
            "skipped_steps": self.skipped_steps,
            "last_rollback": self.last_rollback or "none",
            "errors": self.errors,
            "last_error": self.last_error or "none",
        }
