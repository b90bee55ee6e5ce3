import pytest
import torch

from sa4depth_core.errors import InputError
from sa4depth_core.networks.feature_net import FeatureNet


def _conv_macs(net: FeatureNet, image: torch.Tensor) -> int:
    """Multiply-accumulates of all convolutions for one forward pass."""
    total = 0

    def count(module, _inputs, output):
        nonlocal total
        k = module.weight[0].numel()  # in_ch * kh * kw
        total += output.numel() * k

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net(image)
    for h in hooks:
        h.remove()
    return total


def test_output_shapes_norms_and_confidence_range():
    torch.manual_seed(0)
    net = FeatureNet(strides=(8, 4, 2), channels=(16, 32, 8))
    out = net(torch.rand(2, 3, 64, 96))
    assert [tuple(f.shape) for f, _ in out] == [(2, 16, 8, 12), (2, 32, 16, 24), (2, 8, 32, 48)]
    assert [tuple(c.shape) for _, c in out] == [(2, 1, 8, 12), (2, 1, 16, 24), (2, 1, 32, 48)]
    for f, c in out:
        torch.testing.assert_close(f.norm(dim=1), torch.ones_like(f[:, 0]))
        assert (c > 0).all() and (c < 1).all()


def test_sizes_not_divisible_by_the_stride_round_up():
    net = FeatureNet(strides=(16, 2), channels=4)
    out = net(torch.rand(1, 3, 50, 70))
    assert [tuple(f.shape[-2:]) for f, _ in out] == [(4, 5), (25, 35)]


def test_size_and_cost_are_small():
    net = FeatureNet()
    params = sum(p.numel() for p in net.parameters())
    macs = _conv_macs(net, torch.rand(1, 3, 192, 640))
    print(f"FeatureNet default: {params / 1e3:.0f} k parameters, {macs / 1e9:.2f} GMAC at 640x192")
    # Monodepth2's ResNet-18 depth net has ~14 M parameters and several GMAC at this size.
    assert params < 500_000
    assert macs < 1.5e9


def test_external_encoder_features():
    torch.manual_seed(0)
    channels = (64, 64, 128, 256, 512)
    net = FeatureNet(strides=(8, 4), channels=32, encoder_channels=channels)
    H, W = 64, 128
    feats = [torch.randn(2, c, H // 2 ** (k + 1), W // 2 ** (k + 1)) for k, c in enumerate(channels)]
    out = net(None, encoder_features=feats)
    assert [tuple(f.shape) for f, _ in out] == [(2, 32, 8, 16), (2, 32, 16, 32)]
    assert not hasattr(net, "encoder")
    with pytest.raises(InputError, match="encoder_features"):
        net(torch.rand(2, 3, H, W))
    with pytest.raises(InputError, match="channels"):
        net(None, encoder_features=feats[:4])


def test_every_parameter_gets_a_gradient():
    net = FeatureNet(strides=(8, 4, 2), channels=8)
    out = net(torch.rand(1, 3, 32, 64))
    sum((f * torch.randn_like(f)).sum() + c.sum() for f, c in out).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("strides", [(8, 3), (4, 8), (64,), ()])
def test_bad_strides_raise(strides):
    with pytest.raises(InputError, match="strides"):
        FeatureNet(strides=strides)


def test_bad_image_raises():
    with pytest.raises(InputError, match=r"\(B,3,H,W\)"):
        FeatureNet()(torch.rand(1, 1, 32, 32))
