"""A model loaded from whatever the user has (a project checkpoint, a Monodepth2 weights folder,
or nothing: random weights, said loudly), and the checks a model passes before it may serve frames."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import features_trained, file_sha256, load_checkpoint
from .config import Config, config_from_dict
from .errors import CheckpointError, InputError
from .model import SA4DepthModel
from .network_input import network_size_problem
from .networks.monodepth2_io import load_monodepth2_folder, model_settings

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """model: the networks in eval mode; model_id: content hash prefix, "monodepth2:<hash>" or
    "untrained"; source: path, or a note that no weights were given; trained: depth and pose
    weights came from a file; features_trained: the feature network and damping were trained
    through the refinement, so odometry may refine with them."""

    model: SA4DepthModel
    cfg: Config
    model_id: str
    source: str
    trained: bool
    features_trained: bool


def network_size(loaded: LoadedModel, height: int = 0, width: int = 0) -> tuple[int, int]:
    """(height, width) of the network input: the model's own size where 0; InputError unless
    network_size_problem accepts it."""
    h, w = int(height or loaded.cfg.model.height), int(width or loaded.cfg.model.width)
    problem = network_size_problem(h, w)
    if problem:
        raise InputError(problem)
    return h, w


def _check_size(cfg: Config, source) -> None:
    problem = network_size_problem(int(cfg.model.height), int(cfg.model.width))
    if problem:
        raise CheckpointError(f"{source}: {problem}")


def load_model(path: str | Path | None, device: str | torch.device = "cpu", cfg: Config | None = None) -> LoadedModel:
    """Load a project checkpoint file, a Monodepth2 weights folder, or (path None/empty)
    build an untrained model and say so loudly: its depth is meaningless."""
    device = torch.device(device)
    if not path:
        cfg = cfg or Config()
        model = SA4DepthModel(cfg).to(device).eval()
        log.warning("no checkpoint given: the networks are randomly initialised and their depth is meaningless")
        return LoadedModel(model, cfg, "untrained", "none (random initialisation)", False, False)
    p = Path(path)
    if p.is_dir():
        parts = load_monodepth2_folder(p, device)
        cfg = cfg or Config()
        for key, value in model_settings(parts).items():
            setattr(cfg.model, key, value)
        _check_size(cfg, p)
        model = SA4DepthModel(cfg).to(device)
        model.load_monodepth2(parts)
        digest = file_sha256(p / "encoder.pth")[:12]
        return LoadedModel(model.eval(), cfg, f"monodepth2:{digest}", str(p), True, False)
    state = load_checkpoint(p, map_location=device)
    try:
        cfg = config_from_dict(state["config"])
    except InputError as exc:
        raise CheckpointError(f"{p}: its config is not one this package reads ({exc})") from exc
    _check_size(cfg, p)
    model = SA4DepthModel(cfg).to(device)
    model.load_weights(state["model"], p)
    return LoadedModel(model.eval(), cfg, file_sha256(p)[:12], str(p), True, features_trained(state))


@torch.inference_mode()
def smoke_test(loaded: LoadedModel, device: torch.device, height: int = 0, width: int = 0) -> None:
    """Run depth, pose and feature networks once on a grey frame of (height, width) (0 = the
    model's own size); raise CheckpointError naming the source if any output is not finite.

    A file can load cleanly and still hold NaN weights (a diverged training run); this is the
    last gate before such a model would replace a working one.
    """
    h = int(height or loaded.cfg.model.height)
    w = int(width or loaded.cfg.model.width)
    x = torch.full((1, 3, h, w), 0.5, device=device)
    depth = loaded.model.depth(x)
    if not torch.isfinite(depth).all() or not (depth > 0).all():
        raise CheckpointError(f"{loaded.source}: the depth network gives non-finite or non-positive depth")
    if not torch.isfinite(loaded.model.relative_pose(x, x, -1)).all():
        raise CheckpointError(f"{loaded.source}: the pose network gives a non-finite pose")
    for features, confidence in loaded.model.feature_net(x):
        if not (torch.isfinite(features).all() and torch.isfinite(confidence).all()):
            raise CheckpointError(f"{loaded.source}: the feature network gives non-finite features")


def load_checked_model(path: str | Path | None, device: torch.device, height: int = 0,
                       width: int = 0) -> LoadedModel:
    """load_model followed by smoke_test: what a running node may swap in."""
    loaded = load_model(path, device)
    smoke_test(loaded, device, height, width)
    return loaded
