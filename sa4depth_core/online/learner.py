"""OnlineLearner: fine-tunes an SA4Depth model on frames as they arrive and hands out only
weights that scored better than the deployed ones.

Data: frames -> KeyframeSelector -> replay buffer (training) and validation buffer (held out).
Training: the project's objective (objective.compute_losses) on random replay batches, with
    colour/flip augmentation (data.augment); a step with a non-finite loss, a non-finite or
    exploding gradient is skipped (train.step), and a run of them rolls the weights back to the
    deployed model.
Evaluation (the caller decides when): candidate and deployed model are scored on the same
    validation triplets (score.py); safety.gate decides: deploy (deploy.py: write, verify by
    loading the file back and running it, then record it as deployed), keep training, or roll back.
Persistence: checkpoints and their manifest (store.py) and the buffers with their manifest
    (buffer.py) live under `out_dir`; a new learner on the same `out_dir` resumes (resume.py) from
    the newest checkpoint, the recorded deployed model and the buffers. Settings: options.py.

Write failures (full disk, no permission) never raise out of the learner: they are counted,
logged and shown in `status()`, and the deployed model stays what it was.

Thread safety: `add_frame` may run concurrently with `train_step` / `evaluate` / `save`.
"""
from __future__ import annotations

import copy
import logging
import random
import threading
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..data.augment import Augmentation
from ..errors import InputError
from ..model import SA4DepthModel
from ..objective import compute_losses
from ..train.step import guarded_step
from .buffer import TripletBuffer, save_buffer_manifest
from .deploy import DEPLOYED, FAILED, KEPT, ROLLED_BACK, SKIPPED, DeployFailed, EvalOutcome, deploy_candidate
from .keyframes import VAL, KeyframeSelector, Triplet
from .options import OnlineOptions
from .resume import buffer_manifest, load_start, open_buffers, settle_deployed
from .safety import COLLAPSE, DEPLOY, DivergenceMonitor, gate
from .score import triplet_batch, validation_score
from .store import CheckpointStore

log = logging.getLogger(__name__)


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
        start = load_start(self.store, init, cfg, self.device)
        self._build(start.loaded)
        self.step = start.step
        deployed = settle_deployed(self.store, start, self.device, self.report_error)
        if deployed is not None:
            self.reference.load_state_dict(deployed)
        self.monitor = DivergenceMonitor(options.max_grad_norm, options.max_bad_steps)
        self.optimizer = self._make_optimizer()

        h, w = self.model_cfg.model.height, self.model_cfg.model.width
        self.selector = KeyframeSelector(h, w, options.min_motion, options.min_texture, options.max_time_gap,
                                         options.val_period)
        self.replay, self.val = open_buffers(options, self.out_dir, [h, w], self.report_error)

    # -- set-up ---------------------------------------------------------------------------------
    @property
    def _buffer_manifest(self) -> Path:
        return buffer_manifest(self.out_dir)

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
        if self.options.trainable == "refiner" and not self.train_cfg.refine.enabled:
            raise InputError("online option trainable=refiner needs a checkpoint with refine.enabled=true")
        self.model.freeze(SA4DepthModel.FROZEN[self.options.trainable])
        self.reference = SA4DepthModel(self.train_cfg).to(self.device).eval().requires_grad_(False)
        self.reference.load_state_dict(state)

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
        try:
            entry, path = deploy_candidate(self.store, self.model, self.model_cfg.to_dict(), self.step, candidate,
                                           reference, self.features_trained, self.device)
        except DeployFailed as exc:
            self.report_error(str(exc))
            return EvalOutcome(FAILED, str(exc), candidate, reference)
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
