"""How far a backend's outputs are from torch fp32 on the same input, and the tolerances a
backend must meet at start-up (make_networks) and in the tests.

Tolerances are max absolute differences over every output value: disparity is a sigmoid in
(0,1), the pose a 4x4 transform (rotation entries and translation in the network's units), the
features unit vectors, the confidence in (0,1). Depth is derived from disparity in float32 by
every backend, so only disparity is bounded. Measured on this project's networks (untrained at
64x128, 96x320 and 192x640, and a briefly trained 64x192 model; docs/backends.md): fp32 runtimes
stay within 3e-7 of torch; bf16 within 2.2e-3 (disparity), 1e-4 (pose), 4e-3 (features) and
2.1e-3 (confidence). The bounds leave about 5x headroom on those and still reject a broken
graph (a batch-norm left in training mode moved disparity by 4e-2). fp16 (GPUs, not measured
here) gets the bf16 bounds: it keeps more mantissa bits than bf16.
"""
from __future__ import annotations

import torch

from ..networks.depth_decoder import disp_to_depth
from .networks import InferenceNetworks

TOLERANCES = {
    "fp32": {"disparity": 1e-4, "pose": 1e-4, "features": 1e-4, "confidence": 1e-4},
    "bf16": {"disparity": 1e-2, "pose": 1e-3, "features": 2e-2, "confidence": 1e-2},
}
TOLERANCES["fp16"] = TOLERANCES["bf16"]


def probe_images(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Two fixed pseudo-random frames (1,3,H,W) in [0,1]: the same on every call and machine."""
    g = torch.Generator().manual_seed(14)
    return tuple(torch.rand(1, 3, height, width, generator=g).to(device) for _ in range(2))


@torch.inference_mode()
def outputs(nets: InferenceNetworks, images: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Every output of `nets` on images (target, source) (default probe_images), float32 on the CPU:
    {"disparity": (1,1,H,W), "depth": (1,1,H,W), "pose": (1,4,4) T_t->s for offset -1,
    "features": [(1,C,h,w) per stride], "confidence": [(1,1,h,w) per stride]}."""
    target, source = images or probe_images(nets.height, nets.width, nets.device)
    disparity = nets.disparity(target)
    levels = nets.feature_net(target)
    return {
        "disparity": disparity.cpu(),
        "depth": disp_to_depth(disparity, nets.min_depth, nets.max_depth)[1].cpu(),
        "pose": nets.relative_pose(target, source, -1).cpu(),
        "features": [f.cpu() for f, _ in levels],
        "confidence": [c.cpu() for _, c in levels],
    }


def max_abs_diffs(reference: dict, candidate: dict) -> dict[str, float]:
    """{output name: max |reference - candidate|} of two `outputs` results."""
    diffs = {}
    for key, ref in reference.items():
        refs, cands = (ref, candidate[key]) if isinstance(ref, list) else ([ref], [candidate[key]])
        diffs[key] = max(float((a - b).abs().max()) for a, b in zip(refs, cands))
    return diffs


def compare(reference: InferenceNetworks, candidate: InferenceNetworks) -> dict[str, float]:
    """max_abs_diffs of two network sets on the probe images."""
    return max_abs_diffs(outputs(reference), outputs(candidate))


def beyond_tolerance(diffs: dict[str, float], precision: str) -> str:
    """"" when every bounded output is within TOLERANCES[precision], else what exceeds it."""
    bounds = TOLERANCES[precision]
    over = [f"{k} {diffs[k]:.1e} > {tol:.0e}" for k, tol in bounds.items() if not diffs[k] <= tol]
    return ", ".join(over)
