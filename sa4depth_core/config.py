"""Typed configuration: nested dataclasses, loaded from YAML and overridden by `a.b=value` strings."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError
from .network_input import network_size_problem


@dataclass
class ModelConfig:
    num_layers: int = 18  # ResNet depth of the depth and pose encoders (18, 34 or 50)
    height: int = 192
    width: int = 640
    min_depth: float = 0.1
    max_depth: float = 100.0
    scales: list = field(default_factory=lambda: [0, 1, 2, 3])
    frame_offsets: list = field(default_factory=lambda: [0, -1, 1])
    imagenet_weights: str = ""  # optional torchvision ResNet state-dict file for both encoders


@dataclass
class RefineConfig:
    enabled: bool = True
    feature_channels: int = 32
    strides: list = field(default_factory=lambda: [8, 4, 2])
    iterations: int = 3
    damping: str = "learned"  # learned | fixed
    init_damping: float = 1e-3  # converged in 3 LM steps per level in the recovery tests; 1e-2 needed 5
    # False: depth gradients flow through the solver too. Measured by benchmarks/ablation.py (3 seeds):
    # better AbsRel, scale consistency and ATE than a constant depth, at the same step time.
    detach_depth: bool = False
    detach_between_levels: bool = True  # PixLoc style, with a photometric loss on every level
    max_points: int = 4096  # pixels sampled per level for the normal equations (0 = all)
    # How PoseNet keeps learning once the refined pose drives view synthesis:
    #   photometric: PoseNet's own pose also gets the photometric loss
    #   distill: PoseNet is pulled toward the (detached) refined pose
    #   both: both terms
    pose_supervision: str = "photometric"
    distill_weight: float = 0.1
    level_loss_weight: float = 0.5  # weight of the coarser levels' photometric losses
    # PoseNet's own photometric term and the level terms use the full-resolution depth; False
    # detaches it there, so only the main (refined-pose) loss trains depth (a study arm)
    aux_trains_depth: bool = True


@dataclass
class LossConfig:
    ssim_alpha: float = 0.85
    smoothness: float = 1e-3
    automask: bool = True
    # refinement off only: add SA4Depth's auxiliary photometric weight (1 + refine.level_loss_weight)
    # with PoseNet's pose, so depth gets the same total supervision as with SA4Depth (a study control)
    baseline_aux: bool = False


@dataclass
class DataConfig:
    kind: str = "kitti_odometry"  # kitti_odometry | kitti_raw | folder | bag
    root: str = ""
    camera: str = "image_2"  # KITTI camera: image_0 / image_1 (grey, odometry only), image_2 / image_3 (colour)
    sequences: list = field(default_factory=list)
    val_sequences: list = field(default_factory=list)
    val_fraction: float = 0.1
    split_file: str = ""  # kitti_raw: Eigen-style split file
    bag: str = ""
    image_topic: str = ""
    camera_info_topic: str = ""
    intrinsics: str = ""
    max_time_gap: float = 0.0  # seconds; 0 = no limit
    augment: bool = True
    workers: int = 0


TRAINABLE = ("all", "refiner", "pose")  # what train.trainable / the online learner's trainable may say


@dataclass
class TrainConfig:
    out_dir: str = "runs/sa4depth"
    epochs: int = 20
    max_steps: int = 0  # stop after this many optimiser steps (0 = by epochs)
    max_minutes: float = 0.0  # wall-clock budget (0 = none)
    batch_size: int = 12
    lr: float = 1e-4
    lr_step_epoch: int = 15
    damping_lr_factor: float = 100.0
    grad_clip: float = 1.0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = False  # CUDA only; the LM solve always runs in float32
    threads: int = 0  # torch CPU threads (0 = torch default)
    seed: int = 0
    log_every: int = 10
    val_every: int = 200  # steps
    save_every: int = 200  # steps
    keep_checkpoints: int = 3
    resume: str = ""  # path, or "auto" for the newest checkpoint in out_dir
    init: str = ""  # initial weights (a project checkpoint or Monodepth2 folder) without optimiser state
    # all: every network trains; refiner: depth and pose networks frozen (weights and batch-norm
    # statistics), only the feature network and the damping learn: SA4Depth odometry on top of
    # existing depth/pose weights (the model section then comes from `init`); pose: the depth
    # network frozen, PoseNet (and the refiner, if on) learn its scale, e.g. after a supervised depth
    trainable: str = "all"
    logger: str = "csv"  # csv | tensorboard
    progress: bool = True


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _apply(obj: Any, values: dict, where: str) -> None:
    for key, value in values.items():
        if not dataclasses.is_dataclass(obj) or key not in {f.name for f in dataclasses.fields(obj)}:
            valid = ", ".join(f.name for f in dataclasses.fields(obj))
            raise InputError(f"{where}: unknown key '{key}' (valid: {valid})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise InputError(f"{where}: '{key}' must be a mapping")
            _apply(current, value, f"{where}.{key}")
        else:
            setattr(obj, key, _coerce(value, current, f"{where}.{key}"))


def _coerce(value: Any, current: Any, where: str) -> Any:
    if isinstance(current, bool):
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise InputError(f"{where}: expected true/false, got {value!r}")
    if isinstance(current, (int, float)) and not isinstance(current, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(current, int):
            if not math.isfinite(number) or number != int(number):
                raise InputError(f"{where}: expected an integer, got {value!r}")
            return int(number)
        return number
    if isinstance(current, list):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else [v.strip() for v in value.split(",") if v.strip()]
        elif not isinstance(value, list):
            value = [value]
        # Elements take the type of the default's elements; names (e.g. sequence "01") stay text.
        template = current[0] if current else ""
        return [_coerce(v, template, f"{where}[{i}]") for i, v in enumerate(value)]
    return value if value is None else str(value)


def load_config(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> Config:
    """Defaults, then a YAML file, then `section.key=value` overrides (or a nested dict)."""
    cfg = Config()
    if path:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: config file not found")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise InputError(f"{p}: not valid YAML ({e})") from None
        if not isinstance(data, dict):
            raise InputError(f"{p}: top level must be a mapping")
        _apply(cfg, data, str(p))
    if isinstance(overrides, dict):
        _apply(cfg, overrides, "overrides")
    else:
        for item in overrides or []:
            if "=" not in item:
                raise InputError(f"override '{item}': expected section.key=value")
            dotted, value = item.split("=", 1)
            nested: dict = {}
            cursor = nested
            parts = dotted.split(".")
            for part in parts[:-1]:
                cursor = cursor.setdefault(part, {})
            cursor[parts[-1]] = value
            _apply(cfg, nested, f"override '{item}'")
    return cfg


def config_from_dict(data: dict) -> Config:
    """Rebuild a Config saved with Config.to_dict (e.g. inside a checkpoint)."""
    cfg = Config()
    _apply(cfg, data, "checkpoint config")
    return cfg


# Most torch threads or loader worker processes: beyond any machine's cores more only cost memory,
# and 2**31 overflowed torch's int.
MAX_THREADS = 1024


def _finite_at_least(low: float, strict: bool = False):
    """Rule (test, what is allowed): a finite number above `low` (strict) or at least `low`."""
    def test(v) -> bool:
        return math.isfinite(v) and (v > low if strict else v >= low)
    return test, f"a finite number {'>' if strict else '>='} {low:g}"


def _integer_in(low: int, high: float = math.inf):
    """Rule (test, what is allowed): an integer from `low` to `high`."""
    def test(v) -> bool:
        return low <= v <= high
    return test, f"an integer >= {low}" if high == math.inf else f"an integer from {low} to {high}"


def _one_of(*choices: str):
    """Rule (test, what is allowed): one of the `choices`."""
    def test(v) -> bool:
        return v in choices
    return test, "one of " + ", ".join(choices)


# (section.key, (test, what is allowed)) of the settings whose wrong values would otherwise fail
# only once data is read or steps are taken (or, like a negative rate, never fail at all).
TRAINING_RULES = (
    ("model.min_depth", _finite_at_least(0, strict=True)),
    ("model.max_depth", _finite_at_least(0, strict=True)),
    ("refine.iterations", _integer_in(1)),
    ("refine.max_points", _integer_in(0)),
    ("refine.init_damping", _finite_at_least(0, strict=True)),
    ("refine.damping", _one_of("learned", "fixed")),
    ("refine.pose_supervision", _one_of("photometric", "distill", "both")),
    ("refine.distill_weight", _finite_at_least(0)),
    ("refine.level_loss_weight", _finite_at_least(0)),
    ("loss.ssim_alpha", (lambda v: 0 <= v <= 1, "a number from 0 to 1")),
    ("loss.smoothness", _finite_at_least(0)),
    ("data.val_fraction", (lambda v: 0 <= v < 1, "a number from 0 up to (not including) 1")),
    ("data.max_time_gap", _finite_at_least(0)),
    ("data.workers", _integer_in(0, MAX_THREADS)),
    ("train.epochs", _integer_in(1)),
    ("train.max_steps", _integer_in(0)),
    ("train.max_minutes", _finite_at_least(0)),
    ("train.batch_size", _integer_in(1)),
    ("train.lr", _finite_at_least(0, strict=True)),
    ("train.lr_step_epoch", _integer_in(0)),
    ("train.damping_lr_factor", _finite_at_least(0, strict=True)),
    ("train.grad_clip", _finite_at_least(0)),
    ("train.threads", _integer_in(0, MAX_THREADS)),
    ("train.log_every", _integer_in(1)),
    ("train.val_every", _integer_in(1)),
    ("train.save_every", _integer_in(1)),
    ("train.keep_checkpoints", _integer_in(1)),
    ("train.trainable", _one_of(*TRAINABLE)),
    ("train.logger", _one_of("csv", "tensorboard")),
)


def check_training(cfg: Config) -> None:
    """InputError naming the first training setting that cannot work, its value and what is
    allowed; cheap, so that it runs before any data is read or any network is built."""
    for dotted, (test, allowed) in TRAINING_RULES:
        section, key = dotted.split(".")
        value = getattr(getattr(cfg, section), key)
        if not test(value):
            raise InputError(f"{dotted}={value!r} is not allowed: it must be {allowed}")
    m = cfg.model
    if m.max_depth <= m.min_depth:
        raise InputError(f"model.max_depth={m.max_depth!r} must be above model.min_depth={m.min_depth!r}")
    problem = network_size_problem(m.height, m.width)
    if problem:
        raise InputError(f"model.height={m.height}, model.width={m.width}: {problem}")
