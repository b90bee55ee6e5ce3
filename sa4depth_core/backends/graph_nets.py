"""Networks run by a static-shape graph runtime (OpenVINO, ONNX Runtime) from the ONNX graphs of
export.py: torch tensors in, numpy arrays through the runtime, float32 torch tensors out."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..loaded_model import LoadedModel
from .networks import InferenceNetworks
# One compiled graph: its inputs, (1,3,H,W) float32 arrays in graph order -> its outputs in graph
# order. _run copies them out, so a runtime may hand back buffers it reuses on the next call.
Runner = Callable[[list], list]


class GraphNetworks(InferenceNetworks):
    """Depth, pose and feature graphs compiled for batch 1; a batch runs sample by sample."""

    def __init__(self, loaded: LoadedModel, height: int, width: int, device: torch.device,
                 runners: dict[str, Runner], backend: str, precision: str, description: str):
        self.backend, self.precision = backend, precision
        self.runners = runners
        super().__init__(loaded, height, width, device, description)

    def _run(self, name: str, *images: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of graph `name` for images (B,3,H,W) each, as (B,...) float32 tensors on the device."""
        for x in images:
            self.check_images(x)
        arrays = [x.detach().to("cpu", torch.float32).contiguous().numpy() for x in images]
        batch = [self.runners[name]([a[b:b + 1] for a in arrays]) for b in range(images[0].shape[0])]
        outputs = [np.concatenate(per_output) for per_output in zip(*batch)]
        return [torch.from_numpy(np.asarray(o, dtype=np.float32)).to(self.device) for o in outputs]

    @torch.inference_mode()
    def disparity(self, images: torch.Tensor) -> torch.Tensor:
        return self._run("depth", images)[0]

    @torch.inference_mode()
    def motion(self, earlier: torch.Tensor, later: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        axisangle, translation = self._run("pose", earlier, later)
        return axisangle, translation

    @torch.inference_mode()
    def feature_net(self, images: torch.Tensor) -> list:
        outputs = self._run("features", images)
        return list(zip(outputs[0::2], outputs[1::2]))
