"""The interface every backend implements: depth, pose and feature networks at one input size,
taking and returning float32 torch tensors on the model's device, so the LM refinement (torch)
consumes them unchanged whichever runtime computed them."""
from __future__ import annotations

import torch

from ..errors import InputError
from ..geometry import pose_from_axisangle
from ..loaded_model import LoadedModel
from ..networks.depth_decoder import disp_to_depth


class BackendUnavailable(RuntimeError):
    """A backend or precision cannot run here (missing package, device or CPU feature, failed
    compilation or parity check); the message says which and why."""


class InferenceNetworks:
    """Base of the backends' network sets; subclasses provide disparity, motion and feature_net.

    Method names follow SA4DepthModel (depth, relative_pose, feature_net), so a caller can hold
    either. Inputs must be (B,3,height,width): a backend compiled for one size runs only that size.

    Attributes:
        backend, precision: as resolved by make_networks ("openvino", "bf16", ...).
        description: what runs, e.g. "openvino bf16 (AMX)", plus any fallback that led here.
        height, width, device: input size and where inputs are read and outputs returned.
    """

    backend = ""
    precision = ""

    def __init__(self, loaded: LoadedModel, height: int, width: int, device: torch.device, description: str):
        self.height, self.width, self.device = height, width, torch.device(device)
        self.min_depth, self.max_depth = loaded.cfg.model.min_depth, loaded.cfg.model.max_depth
        self.model_id = loaded.model_id
        self.description = description

    def check_images(self, images: torch.Tensor) -> None:
        """InputError unless images is (B,3,height,width)."""
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, self.height, self.width):
            raise InputError(f"{self.backend} networks were built for (B,3,{self.height},{self.width}) input, got "
                             f"{tuple(images.shape)}: build networks for the new size")

    def disparity(self, images: torch.Tensor) -> torch.Tensor:
        """Sigmoid disparity (B,3,H,W) -> (B,1,H,W) in (0,1)."""
        raise NotImplementedError

    def motion(self, earlier: torch.Tensor, later: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """PoseNet on a time-ordered pair (B,3,H,W) each -> axisangle (B,1,3), translation (B,1,3)
        of T with X_later = T X_earlier."""
        raise NotImplementedError

    def feature_net(self, images: torch.Tensor) -> list:
        """(B,3,H,W) -> [(features (B,C,h,w), confidence (B,1,h,w)), ...] per stride, coarse first."""
        raise NotImplementedError

    @torch.inference_mode()
    def depth(self, images: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) -> depth (B,1,H,W), converted from disparity in float32 whatever the backend's
        precision (far depths are sensitive to the last bits of a small disparity)."""
        return disp_to_depth(self.disparity(images), self.min_depth, self.max_depth)[1]

    @torch.inference_mode()
    def relative_pose(self, target: torch.Tensor, source: torch.Tensor, offset: int) -> torch.Tensor:
        """PoseNet's T_t->s (B,4,4) as SA4DepthModel.relative_pose: target, source (B,3,H,W);
        offset is the source index minus the target index (only its sign matters)."""
        if offset == 0:
            raise InputError("offset must be non-zero: a frame has no motion relative to itself")
        earlier, later = (source, target) if offset < 0 else (target, source)
        axisangle, translation = self.motion(earlier, later)
        return pose_from_axisangle(axisangle, translation, invert=offset < 0)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description} {self.width}x{self.height} model {self.model_id}>"
