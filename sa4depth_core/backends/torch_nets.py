"""The networks in torch: the model itself at fp32, or a channels-last copy under bf16/fp16
autocast where the device computes that precision natively."""
from __future__ import annotations

import contextlib
import copy

import torch

from ..loaded_model import LoadedModel
from .hardware import native_bf16
from .networks import BackendUnavailable, InferenceNetworks

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def reduced_precision_unit(precision: str, device: torch.device) -> str:
    """What computes `precision` on `device` natively (e.g. "AMX", "cuda:0"); BackendUnavailable if nothing."""
    if device.type == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise BackendUnavailable(f"{device} has no bf16 support")
        return str(device)
    if precision == "fp16":
        raise BackendUnavailable("fp16 is offered on CUDA devices only (on the CPU use bf16 or fp32)")
    unit = native_bf16()
    if not unit:
        raise BackendUnavailable("this CPU has no native bf16 unit (avx512_bf16 / amx_bf16 flags): "
                                 "emulated bf16 would be slower than fp32")
    return unit


class TorchNetworks(InferenceNetworks):
    """torch fp32 runs the caller's model as it is (no copy, so no start-up cost). bf16/fp16 run
    a channels-last copy, so the caller's model (which online learning keeps training) keeps its
    memory layout; the outputs are float32 and contiguous either way."""

    backend = "torch"

    def __init__(self, loaded: LoadedModel, height: int, width: int, device: torch.device, precision: str = "fp32"):
        device = torch.device(device)
        self.precision = precision
        if precision == "fp32":
            self.model, self.dtype = loaded.model, None
            description = f"torch fp32 ({device})"
        else:
            unit = reduced_precision_unit(precision, device)
            self.model = copy.deepcopy(loaded.model).to(device).eval().to(memory_format=torch.channels_last)
            self.dtype = _AUTOCAST[precision]
            description = f"torch {precision} autocast + channels_last ({unit})"
        super().__init__(loaded, height, width, device, description)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        self.check_images(images)
        images = images.to(self.device, torch.float32)
        return images.contiguous(memory_format=torch.channels_last) if self.dtype else images

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()

    @torch.inference_mode()
    def disparity(self, images: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            disparity = self.model.disparities(self._prepare(images))[("disp", 0)]
        return disparity.float().contiguous()

    @torch.inference_mode()
    def motion(self, earlier: torch.Tensor, later: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The 4x4 matrix is built outside autocast: its products would otherwise run in bf16.
        with self._autocast():
            axisangle, translation = self.model.pose_net(self._prepare(earlier), self._prepare(later), 1)
        return axisangle.float(), translation.float()

    @torch.inference_mode()
    def feature_net(self, images: torch.Tensor) -> list:
        with self._autocast():
            levels = self.model.feature_net(self._prepare(images))
        return [(f.float().contiguous(), c.float().contiguous()) for f, c in levels]
