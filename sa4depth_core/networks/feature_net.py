"""Feature + confidence network for the feature-metric pose refinement.

The network is a light U-Net. Its only training signal comes through the LM refiner, and it
is not needed to predict depth.
At each requested stride it outputs channel-L2-normalised features and a confidence in (0, 1).
By default a small conv encoder of its own feeds the decoder. The decoder can instead be fed
the feature list of another encoder, for example the depth network's ResNet at strides
2, 4, ..., 32.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sa4depth_core.errors import InputError

# Monodepth2's input normalisation, so an external ResNet encoder sees what it was trained on.
_MEAN, _STD = 0.45, 0.225


def _conv(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    # Replicate padding avoids the dark frame that zero padding paints on the feature maps.
    # That frame would pull the alignment toward the image border. Unlike reflection, it also
    # works on 1-pixel-wide maps.
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, padding_mode="replicate"), nn.ELU())


class FeatureNet(nn.Module):
    """U-Net giving (features, confidence) per stride, coarse to fine.

    Args:
        strides: output strides, powers of two in [2, deepest encoder stride], e.g. (8, 4, 2).
        channels: feature channels, one int for all levels or one per stride.
        widths: channels of the built-in encoder at strides 2, 4, 8, ...; its deepest stride is
            2 ** len(widths).
        decoder_widths: decoder channels at strides 2, 4, 8, ...; entries finer than the
            finest output stride, or at the deepest encoder stride and beyond, are unused.
        encoder_channels: if given, no built-in encoder is made, and forward() needs
            `encoder_features` with these channel counts at strides 2, 4, 8, ...
            (Monodepth2 ResNet-18: (64, 64, 128, 256, 512)).
    """

    def __init__(
        self,
        strides: Sequence[int] = (8, 4, 2),
        channels: int | Sequence[int] = 32,
        widths: Sequence[int] = (16, 32, 64, 96),
        decoder_widths: Sequence[int] = (16, 32, 64, 96, 128),
        encoder_channels: Sequence[int] | None = None,
    ):
        super().__init__()
        self.strides = [int(s) for s in strides]
        skip_channels = list(encoder_channels) if encoder_channels is not None else list(widths)
        depth = len(skip_channels)
        allowed = [2**k for k in range(1, depth + 1)]
        if not self.strides or any(s not in allowed for s in self.strides) or self.strides != sorted(set(self.strides), reverse=True):
            raise InputError(f"FeatureNet: strides must be distinct, decreasing and from {allowed}, got {list(strides)}")
        out_channels = [int(c) for c in channels] if isinstance(channels, Sequence) else [int(channels)] * len(self.strides)
        if len(out_channels) != len(self.strides) or min(out_channels) < 1:
            raise InputError(f"FeatureNet: channels must be positive, one per stride {self.strides}, got {channels}")
        finest = self.strides[-1].bit_length() - 1  # log2 of the finest output stride
        if len(decoder_widths) < depth - 1:
            raise InputError(f"FeatureNet: decoder_widths needs {depth - 1} entries, got {list(decoder_widths)}")

        self.external = encoder_channels is not None
        self.encoder_channels = skip_channels
        if not self.external:
            chans = [3, *widths]
            self.encoder = nn.ModuleList(
                nn.Sequential(_conv(chans[k], chans[k + 1], stride=2), _conv(chans[k + 1], chans[k + 1])) for k in range(depth)
            )
        # decoder[j] works at stride 2 ** (depth - 1 - j), from the coarsest block to the finest.
        self.decoder = nn.ModuleList()
        width = skip_channels[-1]
        for k in range(depth - 1, finest - 1, -1):
            self.decoder.append(_conv(width + skip_channels[k - 1], decoder_widths[k - 1]))
            width = decoder_widths[k - 1]
        head_in = {2**depth: skip_channels[-1]}
        head_in.update({2**k: decoder_widths[k - 1] for k in range(finest, depth)})
        self.feature_heads = nn.ModuleList(nn.Conv2d(head_in[s], c, 1) for s, c in zip(self.strides, out_channels))
        self.confidence_heads = nn.ModuleList(nn.Conv2d(head_in[s], 1, 1) for s in self.strides)

    def forward(self, image: torch.Tensor, encoder_features: Sequence[torch.Tensor] | None = None) -> list:
        """Feature pyramid.

        Args:
            image: (B,3,H,W) RGB in [0,1]. It is not read when encoder_features are given.
            encoder_features: with an external encoder, its maps (B,c_k,H/2^k,W/2^k) for k = 1, 2, ...
        Returns:
            list over strides, coarse to fine, of (features (B,C,h,w) with unit norm over C,
            confidence (B,1,h,w) in (0,1)), h = ceil(H/stride).
        """
        skips = self._encode(image, encoder_features)
        x = skips[-1]
        by_stride = {2 ** len(skips): x}
        for j, block in enumerate(self.decoder):
            skip = skips[-2 - j]
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], dim=1))
            by_stride[2 ** (len(skips) - 1 - j)] = x
        out = []
        for stride, feat_head, conf_head in zip(self.strides, self.feature_heads, self.confidence_heads):
            x = by_stride[stride]
            out.append((F.normalize(feat_head(x), dim=1), torch.sigmoid(conf_head(x))))
        return out

    def _encode(self, image, encoder_features):
        """Skip features at strides 2, 4, ..., 2 ** depth."""
        if self.external:
            if encoder_features is None:
                raise InputError("FeatureNet: built with encoder_channels, so forward() needs encoder_features")
            got = [f.shape[1] for f in encoder_features]
            if got != self.encoder_channels:
                raise InputError(f"FeatureNet: encoder_features have channels {got}, expected {self.encoder_channels}")
            return list(encoder_features)
        if image.dim() != 4 or image.shape[1] != 3:
            raise InputError(f"FeatureNet: image must be (B,3,H,W), got {tuple(image.shape)}")
        x = (image - _MEAN) / _STD
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        return skips
