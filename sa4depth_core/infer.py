"""Streaming inference: RGB frames into depth maps (once per frame) on the device chosen for them.
Loading and checking a model is loaded_model.py; odometry on the depth maps is odometry.py."""
from __future__ import annotations

import re

import cv2
import numpy as np
import torch

from .backends.torch_nets import TorchNetworks
from .errors import InputError
from .geometry import scale_intrinsics
from .loaded_model import LoadedModel, network_size


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
