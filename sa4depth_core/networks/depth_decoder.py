"""Monodepth2's multi-scale disparity decoder and the sigmoid-to-depth mapping.

Parameter names follow Monodepth2's ``depth.pth``: one ``ModuleList`` called ``decoder`` holding,
in this order, the (upconv, i, 0) and (upconv, i, 1) blocks for i = 4..0 and then one disparity
convolution per output scale. Blocks are ``conv.conv.*`` (reflection-padded 3x3 conv + ELU),
disparity convolutions ``conv.*``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sa4depth_core.errors import InputError

DECODER_CHANNELS = (16, 32, 64, 128, 256)
# Two ConvBlocks per level for 5 levels precede the disparity convolutions in ``decoder``.
_NUM_UPCONVS = 10


class Conv3x3(nn.Module):
    """3x3 convolution after a one-pixel reflection pad, so the map keeps its size."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_ch, out_ch, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,in_ch,H,W) -> (B,out_ch,H,W)."""
        return self.conv(self.pad(x))


class ConvBlock(nn.Module):
    """Conv3x3 followed by ELU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = Conv3x3(in_ch, out_ch)
        self.nonlin = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,in_ch,H,W) -> (B,out_ch,H,W)."""
        return self.nonlin(self.conv(x))


class DepthDecoder(nn.Module):
    """U-Net style decoder: nearest x2 upsampling, encoder skips, sigmoid disparity per scale.

    Args:
        num_ch_enc: channels of the five encoder maps, e.g. ``ResnetEncoder.num_ch_enc``.
        scales: output scales; scale s has 1/2**s of the input resolution.
        num_output_channels: channels of each disparity map.
        use_skips: concatenate encoder maps 0..3 after each upsampling.
    """

    def __init__(
        self,
        num_ch_enc: Sequence[int],
        scales: Sequence[int] = (0, 1, 2, 3),
        num_output_channels: int = 1,
        use_skips: bool = True,
    ):
        super().__init__()
        if len(num_ch_enc) != 5:
            raise InputError(f"num_ch_enc={list(num_ch_enc)} must list 5 channel counts")
        bad = [s for s in scales if s not in range(4)]
        if bad or not scales:
            raise InputError(f"scales={list(scales)} must be a non-empty subset of 0..3")
        self.num_ch_enc = [int(c) for c in num_ch_enc]
        self.scales = tuple(int(s) for s in scales)
        self.use_skips = use_skips
        blocks: list[nn.Module] = []
        for i in range(4, -1, -1):
            in_ch = self.num_ch_enc[-1] if i == 4 else DECODER_CHANNELS[i + 1]
            blocks.append(ConvBlock(in_ch, DECODER_CHANNELS[i]))
            in_ch = DECODER_CHANNELS[i]
            if use_skips and i > 0:
                in_ch += self.num_ch_enc[i - 1]
            blocks.append(ConvBlock(in_ch, DECODER_CHANNELS[i]))
        for s in self.scales:
            blocks.append(Conv3x3(DECODER_CHANNELS[s], num_output_channels))
        # A single ModuleList in Monodepth2's order gives its ``decoder.{k}`` key names.
        self.decoder = nn.ModuleList(blocks)

    def forward(self, features: Sequence[torch.Tensor]) -> dict[tuple[str, int], torch.Tensor]:
        """Decode encoder maps into disparities.

        Args:
            features: the encoder's five maps, finest first, e.g. (B,64,H/2,W/2) ...
                (B,512,H/32,W/32); H and W multiples of 32 and at least 64.

        Returns:
            ``{("disp", s): (B,num_output_channels,H/2**s,W/2**s)}`` for each scale, values in (0,1).
        """
        outputs = {}
        x = features[-1]
        if min(x.shape[-2:]) < 2:
            # The reflection pad of the first block needs at least 2 pixels per side.
            raise InputError(
                f"deepest encoder map is {tuple(x.shape[-2:])}: the input must be at least "
                "64 pixels high and wide"
            )
        for step, i in enumerate(range(4, -1, -1)):
            x = self.decoder[2 * step](x)
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            if self.use_skips and i > 0:
                skip = features[i - 1]
                if skip.shape[-2:] != x.shape[-2:]:
                    raise InputError(
                        f"decoder cannot join a {tuple(x.shape[-2:])} upsampled map with a "
                        f"{tuple(skip.shape[-2:])} encoder map: the input height and width "
                        "must be multiples of 32"
                    )
                x = torch.cat([x, skip], 1)
            x = self.decoder[2 * step + 1](x)
            if i in self.scales:
                disp_conv = self.decoder[_NUM_UPCONVS + self.scales.index(i)]
                outputs[("disp", i)] = torch.sigmoid(disp_conv(x))
        return outputs


def disp_to_depth(
    disp: torch.Tensor, min_depth: float = 0.1, max_depth: float = 100.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Map sigmoid output to depth, linear in inverse depth (Monodepth2's formula).

    Args:
        disp: any shape, e.g. (B,1,H,W), values in [0,1].
        min_depth, max_depth: depths reached at disp = 1 and disp = 0.

    Returns:
        (scaled_disp, depth), both shaped like ``disp``: scaled_disp runs linearly from
        1/max_depth to 1/min_depth, and depth = 1/scaled_disp.
    """
    if not 0 < min_depth < max_depth:
        raise InputError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    return scaled_disp, 1.0 / scaled_disp
