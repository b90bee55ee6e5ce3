"""OnlineOptions: the settings of an OnlineLearner, checked as a whole."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ..config import TRAINABLE
from ..errors import InputError


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
    trainable: "all" networks; "pose": the depth network fixed; or "refiner": depth and pose networks
        fixed, only the feature network and the damping learn (SA4Depth odometry on top of existing
        depth/pose weights).
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
