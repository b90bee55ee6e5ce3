"""Streaming inference: load a model from whatever the user has, check it, and turn RGB frames
into depth maps (once per frame). Odometry on those depth maps lives in odometry.py."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .checkpoint import features_trained, file_sha256, load_checkpoint
from .config import Config, config_from_dict
from .errors import CheckpointError, InputError
from .geometry import scale_intrinsics
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


_DEVICE_NAME = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def select_device(name: str) -> tuple[torch.device, str]:
    """Device for 'auto', 'cpu', 'cuda' or 'cuda:N'.

    Returns:
        (device, note): the note is empty, or says that CUDA was asked for but is missing and the
        CPU is used instead (a robot should keep running on the CPU rather than not start).
    """
    key = str(name).strip().lower()
    if not _DEVICE_NAME.match(key):
        raise InputError(f"device '{name}' is not one of auto, cpu, cuda, cuda:N")
    if key == "cpu":
        return torch.device("cpu"), ""
    if torch.cuda.is_available():
        device = torch.device("cuda" if key == "auto" else key)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"device '{name}': only {torch.cuda.device_count()} CUDA device(s) present")
        return device, ""
    if key == "auto":
        return torch.device("cpu"), ""
    return torch.device("cpu"), f"device '{name}' requested but CUDA is not available: running on the CPU"


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


def rgb_to_tensor(rgb: np.ndarray, height: int, width: int, device: torch.device) -> torch.Tensor:
    """(H,W,3) uint8 RGB -> (1,3,height,width) float in [0,1], resized with area averaging."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"expected an (H,W,3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    if rgb.shape[:2] != (height, width):
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(rgb).to(device).permute(2, 0, 1)[None].float().div_(255.0)


class DepthPredictor:
    """Runs the depth network on single frames at the network's input size.

    nets: the networks to run (backends.make_networks); None runs the model in torch fp32.
    """

    def __init__(self, loaded: LoadedModel, device: torch.device, height: int | None = None, width: int | None = None,
                 nets=None):
        from .backends.torch_nets import TorchNetworks

        self.loaded, self.device = loaded, device
        self.height, self.width = network_size(loaded, height or 0, width or 0)
        self.nets = nets if nets is not None else TorchNetworks(loaded, self.height, self.width, device)

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray, K: np.ndarray) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
        """Depth of one frame.

        Args:
            rgb: (H0,W0,3) uint8; K: (3,3) intrinsics of the frame.
        Returns:
            depth (1,1,h,w) float32 at network resolution in network units, on the device; K
            scaled to it (3,3); and the network input (1,3,h,w) for reuse by the pose path.
        """
        x, Ks = self.inputs(rgb, K)
        return self.depth(x), Ks, x

    def inputs(self, rgb: np.ndarray, K: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """The network input (1,3,h,w) of a frame (H0,W0,3) uint8 and its intrinsics (3,3) scaled to it."""
        if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise InputError(f"invalid intrinsics (fx={K[0, 0]}, fy={K[1, 1]}): is the camera calibrated?")
        x = rgb_to_tensor(rgb, self.height, self.width, self.device)
        return x, scale_intrinsics(K.astype(np.float64), self.width / rgb.shape[1], self.height / rgb.shape[0])

    @torch.inference_mode()
    def depth(self, x: torch.Tensor) -> torch.Tensor:
        """(1,3,h,w) network input -> (1,1,h,w) float32 depth in network units."""
        return self.nets.depth(x).float()
