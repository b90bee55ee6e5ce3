"""ResNet-18/34/50 feature encoder with torchvision's state-dict key names.

torchvision does not import beside the project's torch, so the ResNet is written here; its
parameter names match torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
``layer4.0.downsample.0``) so that ImageNet ResNet files and Monodepth2's ``encoder.pth`` /
``pose_encoder.pth`` load without renaming. The classifier (``fc``) is left out: the encoder
never uses it, and leaving it out keeps the parameter count equal to the published 11.18 M
for ResNet-18.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from sa4depth_core.errors import InputError

# Monodepth2's input normalisation: one mean and std for all three channels.
IMAGE_MEAN = 0.45
IMAGE_STD = 0.225

# Blocks per stage and block type for each supported depth.
_LAYOUTS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}
_EXPANSION = {"basic": 1, "bottleneck": 4}
_STAGE_WIDTHS = (64, 128, 256, 512)


def _bn_conv_init(module: nn.Module) -> None:
    # torchvision's initialisation, so that a network trained from scratch here starts where a
    # torchvision-based Monodepth2 run would.
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _downsample(in_ch: int, out_ch: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_ch),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    def __init__(self, in_ch: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _downsample(in_ch, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) -> (B,width,H/stride,W/stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 (x4 channels) with a residual connection (ResNet-50)."""

    def __init__(self, in_ch: int, width: int, stride: int = 1):
        super().__init__()
        out_ch = width * _EXPANSION["bottleneck"]
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        # The stride sits on the 3x3 convolution, as in torchvision's ResNet-50 weights.
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) -> (B,4*width,H/stride,W/stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetTrunk(nn.Module):
    """The convolutional part of a torchvision ResNet (no pooling head, no ``fc``).

    Its ``state_dict()`` keys are torchvision's, e.g. ``layer2.0.downsample.1.running_var``.
    """

    def __init__(self, num_layers: int = 18, in_channels: int = 3):
        super().__init__()
        if num_layers not in _LAYOUTS:
            raise InputError(
                f"num_layers={num_layers!r} is not supported; use one of {sorted(_LAYOUTS)}"
            )
        kind, blocks = _LAYOUTS[num_layers]
        block_cls = BasicBlock if kind == "basic" else Bottleneck
        expansion = _EXPANSION[kind]
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = 64
        for stage, (width, count) in enumerate(zip(_STAGE_WIDTHS, blocks)):
            first_stride = 1 if stage == 0 else 2
            layer = []
            for b in range(count):
                layer.append(block_cls(in_ch, width, first_stride if b == 0 else 1))
                in_ch = width * expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layer))
        _bn_conv_init(self)


class ResnetEncoder(nn.Module):
    """Monodepth2's ResNet encoder: five feature maps at strides 2, 4, 8, 16 and 32.

    The trunk lives under ``self.encoder`` so that the state-dict keys are those of
    Monodepth2's ``encoder.pth`` / ``pose_encoder.pth`` (``encoder.conv1.weight``, ...).

    Args:
        num_layers: 18, 34 or 50.
        num_input_images: images stacked along channels; conv1 takes ``3 * num_input_images``
            channels (2 for Monodepth2's separate pose encoder).
    """

    def __init__(self, num_layers: int = 18, num_input_images: int = 1):
        super().__init__()
        if not isinstance(num_input_images, int) or num_input_images < 1:
            raise InputError(f"num_input_images={num_input_images!r} must be an integer >= 1")
        self.num_layers = num_layers
        self.num_input_images = num_input_images
        self.encoder = ResNetTrunk(num_layers, in_channels=3 * num_input_images)
        expansion = _EXPANSION[_LAYOUTS[num_layers][0]]
        self.num_ch_enc = [64] + [w * expansion for w in _STAGE_WIDTHS]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Encode RGB images in [0,1].

        Args:
            images: (B,3*n,H,W) float, n = ``num_input_images`` frames stacked on channels.

        Returns:
            Five maps: (B,64,H/2,W/2) after conv1+bn1+relu, then layer1..layer4 at
            H/4, H/8, H/16, H/32 with ``num_ch_enc[1:]`` channels (sizes rounded up).
        """
        expected = 3 * self.num_input_images
        if images.dim() != 4 or images.shape[1] != expected:
            raise InputError(
                f"encoder input has shape {tuple(images.shape)}; expected (B,{expected},H,W)"
            )
        net = self.encoder
        x = (images - IMAGE_MEAN) / IMAGE_STD
        f0 = net.relu(net.bn1(net.conv1(x)))
        f1 = net.layer1(net.maxpool(f0))
        f2 = net.layer2(f1)
        f3 = net.layer3(f2)
        f4 = net.layer4(f3)
        return [f0, f1, f2, f3, f4]


def infer_resnet_depth(state: Mapping[str, object], prefix: str = "") -> int | None:
    """Guess 18, 34, 50, 101 or 152 from the block keys of a torchvision-style ResNet state dict.

    Args:
        state: mapping of key -> tensor, e.g. an ImageNet file or Monodepth2's ``encoder.pth``.
        prefix: prepended to every ResNet key, e.g. ``"encoder."`` for Monodepth2 files.

    Returns:
        The depth, or None when the keys are not those of a ResNet of known layout.
    """
    counts = []
    for stage in range(1, 5):
        stage_prefix = f"{prefix}layer{stage}."
        blocks = {
            key[len(stage_prefix):].split(".", 1)[0]
            for key in state
            if isinstance(key, str) and key.startswith(stage_prefix)
        }
        counts.append(len(blocks))
    bottleneck = f"{prefix}layer1.0.conv3.weight" in state
    by_layout = {
        ("basic", (2, 2, 2, 2)): 18,
        ("basic", (3, 4, 6, 3)): 34,
        ("bottleneck", (3, 4, 6, 3)): 50,
        ("bottleneck", (3, 4, 23, 3)): 101,
        ("bottleneck", (3, 8, 36, 3)): 152,
    }
    return by_layout.get(("bottleneck" if bottleneck else "basic", tuple(counts)))
