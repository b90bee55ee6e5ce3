"""Monodepth2's pose decoder and a two-frame pose network built on it.

Parameter names follow Monodepth2's ``pose.pth``: a ``ModuleList`` called ``net`` holding
squeeze (``net.0``), pose_0 (``net.1``), pose_1 (``net.2``) and pose_2 (``net.3``), each a
plain convolution with ``weight`` and ``bias``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sa4depth_core.errors import InputError
from sa4depth_core.networks.resnet_encoder import ResnetEncoder

# Monodepth2 scales the raw outputs so that an untrained network predicts near-identity motion.
POSE_OUTPUT_SCALE = 0.01


class PoseDecoder(nn.Module):
    """Regress axis-angle rotations and translations from the deepest encoder maps.

    Args:
        num_ch_enc: channels of the encoder maps; only the last one is used.
        num_input_features: how many encoder outputs are concatenated (1 for the separate
            pose encoder, which already saw both frames).
        num_frames_to_predict_for: transforms predicted per sample. Monodepth2's separate pose
            network is built with 2 and only the first is used, so its ``pose.pth`` needs 2.
        stride: stride of the two 3x3 convolutions.
    """

    def __init__(
        self,
        num_ch_enc: Sequence[int],
        num_input_features: int = 1,
        num_frames_to_predict_for: int = 2,
        stride: int = 1,
    ):
        super().__init__()
        if num_input_features < 1 or num_frames_to_predict_for < 1:
            raise InputError(
                f"num_input_features={num_input_features} and num_frames_to_predict_for="
                f"{num_frames_to_predict_for} must both be >= 1"
            )
        self.num_input_features = num_input_features
        self.num_frames_to_predict_for = num_frames_to_predict_for
        self.net = nn.ModuleList(
            [
                nn.Conv2d(int(num_ch_enc[-1]), 256, 1),
                nn.Conv2d(num_input_features * 256, 256, 3, stride, 1),
                nn.Conv2d(256, 256, 3, stride, 1),
                nn.Conv2d(256, 6 * num_frames_to_predict_for, 1),
            ]
        )
        self.relu = nn.ReLU()

    def forward(
        self, input_features: Sequence[Sequence[torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict motion parameters.

        Args:
            input_features: ``num_input_features`` encoder outputs; of each, only the last map
                (B,C,h,w) is used.

        Returns:
            (axisangle, translation), each (B,num_frames_to_predict_for,1,3), already multiplied
            by 0.01.
        """
        if len(input_features) != self.num_input_features:
            raise InputError(
                f"pose decoder got {len(input_features)} encoder outputs; "
                f"it was built for {self.num_input_features}"
            )
        squeeze, pose0, pose1, pose2 = self.net
        out = torch.cat([self.relu(squeeze(f[-1])) for f in input_features], 1)
        out = self.relu(pose0(out))
        out = self.relu(pose1(out))
        out = pose2(out).mean(dim=(2, 3))
        out = POSE_OUTPUT_SCALE * out.view(-1, self.num_frames_to_predict_for, 1, 6)
        return out[..., :3], out[..., 3:]


class PoseNet(nn.Module):
    """Monodepth2's separate pose network: a 2-image ResNet encoder and a pose decoder.

    Frame order (kept from Monodepth2 so that its ``pose_encoder.pth`` / ``pose.pth`` work):
    the two images are always stacked in time order, earlier frame first, and the network
    predicts the transform T with X_later = T · X_earlier (3-D points in the earlier camera
    mapped into the later camera). For a source frame at offset +k from the target that is
    T_t->s directly; for offset -k Monodepth2 feeds [source, target] and inverts the result
    (``invert=True`` when building the 4x4 matrix) to get T_t->s.

    Build one with :meth:`build` or from loaded parts with ``PoseNet(encoder, decoder)``.
    """

    def __init__(self, encoder: ResnetEncoder, decoder: PoseDecoder):
        super().__init__()
        if encoder.num_input_images != 2 or decoder.num_input_features != 1:
            raise InputError(
                "PoseNet needs an encoder with num_input_images=2 and a decoder with "
                f"num_input_features=1, got {encoder.num_input_images} and "
                f"{decoder.num_input_features}"
            )
        self.encoder = encoder
        self.decoder = decoder

    @classmethod
    def build(cls, num_layers: int = 18) -> "PoseNet":
        """A freshly initialised pose network with a ResNet-``num_layers`` encoder."""
        encoder = ResnetEncoder(num_layers, num_input_images=2)
        return cls(encoder, PoseDecoder(encoder.num_ch_enc, 1, 2))

    def forward(
        self, target: torch.Tensor, source: torch.Tensor, offset: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict the motion between a target and a source frame.

        Args:
            target: (B,3,H,W) RGB in [0,1].
            source: (B,3,H,W) RGB in [0,1].
            offset: source frame index minus target frame index (e.g. -1 or +1); only its
                sign matters.

        Returns:
            (axisangle, translation), each (B,1,3), of the earlier-to-later transform. For
            offset > 0 they describe T_t->s; for offset < 0 they describe T_s->t, so build
            T_t->s from them with inversion (Monodepth2: ``invert = offset < 0``).
        """
        if offset == 0:
            raise InputError("offset must be non-zero: a frame has no motion relative to itself")
        pair = [source, target] if offset < 0 else [target, source]
        axisangle, translation = self.decoder([self.encoder(torch.cat(pair, 1))])
        return axisangle[:, 0], translation[:, 0]
