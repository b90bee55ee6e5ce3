"""Streaming inference: load a model from whatever the user has, and turn RGB frames into
depth maps (once per frame) and, for odometry, refined relative poses."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .checkpoint import file_sha256, load_checkpoint
from .config import Config, config_from_dict
from .errors import CheckpointError, InputError
from .geometry import scale_intrinsics
from .model import SA4DepthModel
from .networks.monodepth2_io import load_monodepth2_folder

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: SA4DepthModel
    cfg: Config
    model_id: str  # content hash prefix, "monodepth2:<hash>" or "untrained"
    source: str  # path, or a note that no weights were given
    trained: bool


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
        return LoadedModel(model, cfg, "untrained", "none (random initialisation)", False)
    p = Path(path)
    if p.is_dir():
        parts = load_monodepth2_folder(p, device)
        cfg = cfg or Config()
        meta = parts["meta"]
        if meta.get("height") and meta.get("width"):
            cfg.model.height, cfg.model.width = int(meta["height"]), int(meta["width"])
        cfg.model.num_layers = parts["encoder"].num_layers
        model = SA4DepthModel(cfg).to(device)
        model.depth_encoder.load_state_dict(parts["encoder"].state_dict())
        model.depth_decoder.load_state_dict(parts["depth_decoder"].state_dict())
        if parts["pose_encoder"] is not None:
            model.pose_net.encoder.load_state_dict(parts["pose_encoder"].state_dict())
            model.pose_net.decoder.load_state_dict(parts["pose_decoder"].state_dict())
        digest = file_sha256(p / "encoder.pth")[:12]
        return LoadedModel(model.eval(), cfg, f"monodepth2:{digest}", str(p), True)
    state = load_checkpoint(p, map_location=device)
    try:
        cfg = config_from_dict(state["config"])
        model = SA4DepthModel(cfg).to(device)
        model.load_state_dict(state["model"])
    except (InputError, RuntimeError) as exc:
        # load_state_dict lists every missing key; the first line says enough to act on.
        raise CheckpointError(f"{p}: weights do not fit the network its config describes "
                              f"({str(exc).strip().splitlines()[0]})") from exc
    return LoadedModel(model.eval(), cfg, file_sha256(p)[:12], str(p), True)


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
    """Runs the depth network on single frames at the model's input size."""

    def __init__(self, loaded: LoadedModel, device: torch.device, height: int | None = None, width: int | None = None):
        self.loaded, self.device = loaded, device
        self.height = int(height or loaded.cfg.model.height)
        self.width = int(width or loaded.cfg.model.width)
        if self.height % 32 or self.width % 32:
            raise InputError(f"network input size {self.width}x{self.height} must be a multiple of 32 "
                             "in both directions")

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """Depth of one frame.

        Args:
            rgb: (H0,W0,3) uint8; K: (3,3) intrinsics of the frame.
        Returns:
            depth (h,w) float32 at network resolution, K scaled to it (3,3), and the network
            input tensor (1,3,h,w) for reuse by the pose path.
        """
        if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise InputError(f"invalid intrinsics (fx={K[0, 0]}, fy={K[1, 1]}): is the camera calibrated?")
        x = rgb_to_tensor(rgb, self.height, self.width, self.device)
        depth = self.loaded.model.depth(x)[0, 0].float().cpu().numpy()
        Ks = scale_intrinsics(K.astype(np.float64), self.width / rgb.shape[1], self.height / rgb.shape[0])
        return depth, Ks, x


@dataclass
class OdometryStep:
    """Result of one odometry update.

    pose: (4,4) camera-to-odom of the current frame (translation in output units).
    relative: (4,4) T_current->previous used for this step (output units).
    covariance: (6,6) twist covariance (translation first, output units); LOST_VARIANCE * I
        when the step's motion is not trusted.
    tracking: "init" (first frame after a reset), "ok" (refined), "posenet" (refinement off),
        "posenet_fallback" (refinement failed, PoseNet motion used), or "lost" (no usable motion:
        the pose is held).
    cost, valid_fraction: last refinement level's statistics (NaN without refinement).
    """

    pose: np.ndarray
    relative: np.ndarray
    covariance: np.ndarray
    tracking: str
    cost: float
    valid_fraction: float


ON_FAILURE = ("posenet", "hold")


class OdometryEstimator:
    """Frame-to-frame visual odometry: PoseNet, then (optionally) the feature-metric LM
    refinement against the previous frame using the current frame's depth.

    Depth is not computed here: the caller passes the depth it already computed for the frame,
    so depth, point cloud and odometry share one depth pass.

    on_failure: what a failed refinement (solver failure, or fewer valid points than
    min_valid_fraction) does: "posenet" keeps PoseNet's motion, "hold" keeps the previous pose
    (tracking "lost"). Either way the step's covariance is LOST_VARIANCE * I and lost_count grows;
    the next frame is matched against this one again, so tracking recovers by itself.
    """

    LOST_VARIANCE = 1e3

    def __init__(self, loaded: LoadedModel, device: torch.device, refine: bool = True,
                 min_valid_fraction: float = 0.2, on_failure: str = "posenet"):
        if on_failure not in ON_FAILURE:
            raise InputError(f"on_failure '{on_failure}' is not one of {', '.join(ON_FAILURE)}")
        self.model, self.device = loaded.model, device
        self.refine = refine
        self.min_valid_fraction = min_valid_fraction
        self.on_failure = on_failure
        self.reset()

    def reset(self, pose: np.ndarray | None = None) -> None:
        """Forget the previous frame; the next frame starts at `pose` (identity by default)."""
        self._prev = None
        self.pose = np.eye(4) if pose is None else np.asarray(pose, dtype=np.float64).copy()
        self.lost_count = 0
        self.steps = 0

    def restart_reference(self) -> None:
        """Forget the previous frame but keep pose and counters: the next frame is an "init"
        that continues from the current pose (e.g. after the camera's image size changed)."""
        self._prev = None

    @torch.inference_mode()
    def step(self, x: torch.Tensor, depth: np.ndarray, K: np.ndarray, scale: float = 1.0) -> OdometryStep:
        """Add a frame.

        Args:
            x: (1,3,h,w) network input of the frame (from DepthPredictor).
            depth: (h,w) network depth of the frame (network units).
            K: (3,3) intrinsics at (h,w).
            scale: factor from network units to output units (see scale.ScaleEstimator).
        Returns:
            OdometryStep
        """
        feats = self.model.feature_net(x) if self.refine else None
        if self._prev is None:
            self._prev = (x, feats)
            self.steps += 1
            return OdometryStep(self.pose.copy(), np.eye(4), np.eye(6) * 1e-9, "init", float("nan"), float("nan"))
        prev_x, prev_feats = self._prev
        T0 = self.model.relative_pose(x, prev_x, -1)
        T, tracking = T0, "ok"
        cost = valid = float("nan")
        cov = np.eye(6) * self.LOST_VARIANCE
        if self.refine:
            if prev_feats is None:  # refinement was switched on since the previous frame
                prev_feats = self.model.feature_net(prev_x)
            d = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32)).to(self.device)[None, None]
            Kt = torch.from_numpy(K.astype(np.float32)).to(self.device)[None]
            result = self.model.refine(d, Kt, T0, feats, prev_feats)
            stats = result.level_stats[-1]
            cost, valid = float(stats.cost[0]), float(stats.valid_fraction[0])
            if bool(result.success[0]) and valid >= self.min_valid_fraction:
                T = result.pose.to(T0.dtype)
                cov = result.covariance()[0].double().cpu().numpy() * max(cost, 1e-12)
            else:
                tracking = "posenet_fallback" if self.on_failure == "posenet" else "lost"
        else:
            tracking = "posenet"
            cov = np.eye(6) * 1e-2
        rel = T[0].double().cpu().numpy()
        if tracking == "lost" or not np.isfinite(rel).all():
            rel, tracking = np.eye(4), "lost"
            cov = np.eye(6) * self.LOST_VARIANCE
        if tracking in ("lost", "posenet_fallback"):
            self.lost_count += 1
        # Networks and solver run in float32: project the rotation back onto SO(3) so that
        # thousands of composed steps stay a rigid transform.
        u, _, vt = np.linalg.svd(rel[:3, :3])
        rel[:3, :3] = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
        rel[:3, 3] *= scale
        S = np.diag([scale] * 3 + [1.0] * 3)
        cov = S @ cov @ S
        self.pose = self.pose @ rel
        self._prev = (x, feats)
        self.steps += 1
        return OdometryStep(self.pose.copy(), rel, cov, tracking, cost, valid)
