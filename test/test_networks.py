"""Networks: shapes, Monodepth2 key names, independent functional references, weight files."""

import copy
import pickle
import random

import pytest
import torch
import torch.nn.functional as F

from sa4depth_core.errors import CheckpointError, InputError
from sa4depth_core.networks import (
    DepthDecoder,
    PoseDecoder,
    PoseNet,
    ResnetEncoder,
    disp_to_depth,
    infer_resnet_depth,
    load_imagenet_resnet,
    load_monodepth2_folder,
    load_state_dict_strict,
    save_monodepth2_folder,
)

# ---------------------------------------------------------------- expected key names (facts)
# torchvision ResNet-18: stem conv1/bn1; four stages of two BasicBlocks (conv1,bn1,conv2,bn2);
# the first block of stages 2-4 has downsample.0 (1x1 conv) and downsample.1 (BN).
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def resnet18_trunk_keys():
    keys = ["conv1.weight"] + [f"bn1.{k}" for k in BN_KEYS]
    for stage in (1, 2, 3, 4):
        for block in (0, 1):
            p = f"layer{stage}.{block}."
            keys += [p + "conv1.weight"] + [p + f"bn1.{k}" for k in BN_KEYS]
            keys += [p + "conv2.weight"] + [p + f"bn2.{k}" for k in BN_KEYS]
            if stage > 1 and block == 0:
                keys += [p + "downsample.0.weight"] + [p + f"downsample.1.{k}" for k in BN_KEYS]
    return keys


# Monodepth2 depth.pth: decoder.0..9 are ConvBlocks (upconv 4,0 / 4,1 / 3,0 ... / 0,1),
# decoder.10..13 the dispconvs of scales 0..3.
DEPTH_DECODER_KEYS = [f"decoder.{i}.conv.conv.{p}" for i in range(10) for p in ("weight", "bias")] + [
    f"decoder.{i}.conv.{p}" for i in range(10, 14) for p in ("weight", "bias")
]
POSE_DECODER_KEYS = [f"net.{i}.{p}" for i in range(4) for p in ("weight", "bias")]


def randomise_bn(module, seed=0):
    """Give every BatchNorm non-trivial statistics so that loading them is observable."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return module


@pytest.fixture(scope="module")
def depth_net():
    torch.manual_seed(0)
    enc = randomise_bn(ResnetEncoder(18)).eval()
    dec = DepthDecoder(enc.num_ch_enc).eval()
    return enc, dec


@pytest.fixture(scope="module")
def pose_parts():
    torch.manual_seed(1)
    net = PoseNet.build(18)
    randomise_bn(net.encoder, seed=1)
    return net.eval()


# ---------------------------------------------------------------- shapes and ranges
@pytest.mark.parametrize("hw", [(64, 64), (64, 128)])
def test_encoder_and_decoder_shapes(depth_net, hw):
    enc, dec = depth_net
    h, w = hw
    with torch.no_grad():
        feats = enc(torch.rand(2, 3, h, w))
        out = dec(feats)
    assert [tuple(f.shape) for f in feats] == [
        (2, 64, h // 2, w // 2),
        (2, 64, h // 4, w // 4),
        (2, 128, h // 8, w // 8),
        (2, 256, h // 16, w // 16),
        (2, 512, h // 32, w // 32),
    ]
    assert sorted(out) == [("disp", 0), ("disp", 1), ("disp", 2), ("disp", 3)]
    for s in range(4):
        d = out[("disp", s)]
        assert d.shape == (2, 1, h >> s, w >> s)
        assert d.min() > 0 and d.max() < 1


def test_resnet50_channels():
    enc = ResnetEncoder(50).eval()
    assert enc.num_ch_enc == [64, 256, 512, 1024, 2048]
    with torch.no_grad():
        feats = enc(torch.rand(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [64, 256, 512, 1024, 2048]
    assert ResnetEncoder(34).num_ch_enc == [64, 64, 128, 256, 512]


def test_bad_inputs_raise_input_error(depth_net):
    enc, dec = depth_net
    with pytest.raises(InputError, match="expected"):
        enc(torch.rand(1, 4, 64, 64))
    with pytest.raises(InputError, match="multiples of 32"):
        dec(enc(torch.rand(1, 3, 96, 80)))
    with pytest.raises(InputError, match="at least 64"):
        dec(enc(torch.rand(1, 3, 32, 96)))
    with pytest.raises(InputError, match="num_layers"):
        ResnetEncoder(20)


# ---------------------------------------------------------------- key names and sizes
def test_key_names_match_monodepth2():
    enc = ResnetEncoder(18)
    assert list(enc.state_dict()) == ["encoder." + k for k in resnet18_trunk_keys()]
    assert list(DepthDecoder(enc.num_ch_enc).state_dict()) == DEPTH_DECODER_KEYS
    assert list(PoseDecoder(enc.num_ch_enc, 1, 2).state_dict()) == POSE_DECODER_KEYS
    r50 = ResnetEncoder(50).state_dict()
    assert "encoder.layer1.0.conv3.weight" in r50 and "encoder.layer1.0.downsample.1.running_var" in r50
    assert "encoder.layer3.5.bn3.weight" in r50 and "encoder.layer3.6.bn3.weight" not in r50


def test_parameter_counts():
    def millions(m):
        return round(sum(p.numel() for p in m.parameters()) / 1e6, 2)

    enc = ResnetEncoder(18)
    dec = DepthDecoder(enc.num_ch_enc)
    assert millions(enc) == 11.18
    assert millions(dec) == 3.15
    total = sum(p.numel() for p in enc.parameters()) + sum(p.numel() for p in dec.parameters())
    assert round(total / 1e6, 2) == 14.33
    assert millions(PoseNet.build(18)) == 12.50
    # torchvision ResNet-50 is 25.56 M with its 2.05 M classifier.
    assert millions(ResnetEncoder(50)) == 23.51


# ---------------------------------------------------------------- independent references
def ref_bn(x, s, p):
    mean, var = s[p + "running_mean"], s[p + "running_var"]
    return (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + 1e-5) * s[p + "weight"][
        :, None, None
    ] + s[p + "bias"][:, None, None]


def ref_resnet18(x, s):
    """ResNet-18 trunk in eval mode written with functional calls on the raw state dict."""
    x = (x - 0.45) / 0.225
    f0 = F.relu(ref_bn(F.conv2d(x, s["conv1.weight"], stride=2, padding=3), s, "bn1."))
    feats = [f0]
    x = F.max_pool2d(f0, 3, 2, 1)
    for stage in (1, 2, 3, 4):
        for block in (0, 1):
            p = f"layer{stage}.{block}."
            stride = 2 if stage > 1 and block == 0 else 1
            out = F.conv2d(x, s[p + "conv1.weight"], stride=stride, padding=1)
            out = F.relu(ref_bn(out, s, p + "bn1."))
            out = ref_bn(F.conv2d(out, s[p + "conv2.weight"], padding=1), s, p + "bn2.")
            idn = x
            if p + "downsample.0.weight" in s:
                idn = F.conv2d(x, s[p + "downsample.0.weight"], stride=stride)
                idn = ref_bn(idn, s, p + "downsample.1.")
            x = F.relu(out + idn)
        feats.append(x)
    return feats


def ref_depth_decoder(feats, s):
    """Monodepth2 decoder forward from its depth.pth keys: refl-pad 3x3 conv, ELU, nearest x2."""

    def conv(x, k):
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), s[f"{k}.weight"], s[f"{k}.bias"])

    out = {}
    x = feats[4]
    for n, i in enumerate(range(4, -1, -1)):
        x = F.elu(conv(x, f"decoder.{2 * n}.conv.conv"))
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if i > 0:
            x = torch.cat([x, feats[i - 1]], 1)
        x = F.elu(conv(x, f"decoder.{2 * n + 1}.conv.conv"))
        if i < 4:
            out[("disp", i)] = torch.sigmoid(conv(x, f"decoder.{10 + i}.conv"))
    return out


def ref_pose_decoder(last_feat, s):
    x = F.relu(F.conv2d(last_feat, s["net.0.weight"], s["net.0.bias"]))
    x = F.relu(F.conv2d(x, s["net.1.weight"], s["net.1.bias"], padding=1))
    x = F.relu(F.conv2d(x, s["net.2.weight"], s["net.2.bias"], padding=1))
    x = F.conv2d(x, s["net.3.weight"], s["net.3.bias"]).mean(dim=(2, 3)) * 0.01
    x = x.view(x.shape[0], -1, 1, 6)
    return x[..., :3], x[..., 3:]


# The comparisons run in float64: float32 rounding through 18 layers (~2e-5 on activations of
# ~10, varying with the thread count) would otherwise blur a 1e-5 tolerance.
def test_encoder_matches_functional_reference(depth_net):
    enc = copy.deepcopy(depth_net[0]).double()
    trunk_state = {k[len("encoder."):]: v for k, v in enc.state_dict().items()}
    x = torch.rand(2, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        got = enc(x)
        want = ref_resnet18(x, trunk_state)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-5), (g - w).abs().max()


def test_depth_decoder_matches_functional_reference(depth_net):
    enc, dec = depth_net[0], copy.deepcopy(depth_net[1]).double()
    torch.manual_seed(3)
    feats = [
        torch.randn(2, c, 32 >> i, 64 >> i, dtype=torch.float64) for i, c in enumerate(enc.num_ch_enc)
    ]
    with torch.no_grad():
        got = dec(feats)
        want = ref_depth_decoder(feats, dec.state_dict())
    for s in range(4):
        assert torch.allclose(got[("disp", s)], want[("disp", s)], atol=1e-5)
    # Sanity of the comparison itself: the outputs depend on the weights and differ by scale.
    assert not torch.allclose(got[("disp", 0)].mean(), got[("disp", 3)].mean())


def test_pose_net_frame_order_and_reference(pose_parts):
    net = pose_parts
    torch.manual_seed(4)
    target, source = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    s_dec = net.decoder.state_dict()
    with torch.no_grad():
        for offset, pair in ((1, (target, source)), (-1, (source, target))):
            aa, tr = net(target, source, offset)
            assert aa.shape == (2, 1, 3) and tr.shape == (2, 1, 3)
            ref_aa, ref_tr = ref_pose_decoder(net.encoder(torch.cat(pair, 1))[-1], s_dec)
            assert ref_aa.shape == (2, 2, 1, 3)
            assert torch.allclose(aa, ref_aa[:, 0], atol=1e-6)
            assert torch.allclose(tr, ref_tr[:, 0], atol=1e-6)
        assert not torch.allclose(net(target, source, 1)[1], net(target, source, -1)[1])
    with pytest.raises(InputError):
        net(target, source, 0)


# ---------------------------------------------------------------- depth mapping
def test_disp_to_depth_formula():
    disp = torch.tensor([0.0, 0.5, 1.0])
    scaled, depth = disp_to_depth(disp, 0.1, 100.0)
    assert torch.allclose(scaled, torch.tensor([0.01, 5.005, 10.0]))
    assert torch.allclose(depth, torch.tensor([100.0, 1 / 5.005, 0.1]))
    with pytest.raises(InputError):
        disp_to_depth(disp, 10.0, 1.0)


# ---------------------------------------------------------------- weight files
def write_monodepth2_layout(folder, enc, dec, pose=None, height=64, width=96):
    """Write files the way Monodepth2's trainer does, independently of save_monodepth2_folder."""
    folder.mkdir(parents=True, exist_ok=True)
    state = dict(enc.state_dict())
    state["encoder.fc.weight"] = torch.randn(1000, enc.num_ch_enc[-1])
    state["encoder.fc.bias"] = torch.randn(1000)
    state.update(height=height, width=width, use_stereo=False)
    torch.save(state, folder / "encoder.pth")
    torch.save(dec.state_dict(), folder / "depth.pth")
    if pose is not None:
        pstate = dict(pose.encoder.state_dict())
        pstate["encoder.fc.weight"] = torch.zeros(1000, 512)
        pstate["encoder.fc.bias"] = torch.zeros(1000)
        torch.save(pstate, folder / "pose_encoder.pth")
        torch.save(pose.decoder.state_dict(), folder / "pose.pth")


def test_monodepth2_layout_loads(tmp_path, depth_net, pose_parts):
    enc, dec = depth_net
    write_monodepth2_layout(tmp_path / "m", enc, dec, pose_parts)
    loaded = load_monodepth2_folder(tmp_path / "m")
    assert loaded["meta"] == {"height": 64, "width": 96, "use_stereo": False}
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        want = dec(enc(x))
        got = loaded["depth_decoder"](loaded["encoder"](x))
        for s in range(4):
            assert torch.equal(got[("disp", s)], want[("disp", s)])
        pose = PoseNet(loaded["pose_encoder"], loaded["pose_decoder"]).eval()
        t, s = torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96)
        for a, b in zip(pose(t, s, 1), pose_parts(t, s, 1)):
            assert torch.equal(a, b)


def test_save_load_round_trip(tmp_path, depth_net, pose_parts):
    enc, dec = depth_net
    save_monodepth2_folder(
        tmp_path, enc, dec, height=192, width=640, use_stereo=True,
        pose_encoder=pose_parts.encoder, pose_decoder=pose_parts.decoder,
    )
    enc_file = torch.load(tmp_path / "encoder.pth", weights_only=True)
    assert set(enc_file) == {"encoder." + k for k in resnet18_trunk_keys()} | {
        "encoder.fc.weight", "encoder.fc.bias", "height", "width", "use_stereo"
    }
    assert enc_file["encoder.fc.weight"].shape == (1000, 512)
    assert list(torch.load(tmp_path / "depth.pth", weights_only=True)) == DEPTH_DECODER_KEYS
    assert list(torch.load(tmp_path / "pose.pth", weights_only=True)) == POSE_DECODER_KEYS
    loaded = load_monodepth2_folder(tmp_path)
    assert loaded["meta"] == {"height": 192, "width": 640, "use_stereo": True}
    assert not loaded["encoder"].training
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        got, want = loaded["depth_decoder"](loaded["encoder"](x)), dec(enc(x))
    for s in range(4):
        assert torch.equal(got[("disp", s)], want[("disp", s)])
    assert loaded["pose_encoder"].num_input_images == 2
    assert loaded["pose_decoder"].num_frames_to_predict_for == 2


def imagenet_state(num_layers, seed=5):
    """A torchvision-layout ImageNet file: trunk keys, fc.*, and no num_batches_tracked."""
    torch.manual_seed(seed)
    trunk = randomise_bn(ResnetEncoder(num_layers).encoder, seed)
    state = {k: v for k, v in trunk.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"] = torch.randn(1000, 512 if num_layers < 50 else 2048)
    state["fc.bias"] = torch.randn(1000)
    return state


def test_imagenet_file_loads(tmp_path):
    state = imagenet_state(18)
    torch.save(state, tmp_path / "resnet18.pth")
    enc = ResnetEncoder(18)
    load_imagenet_resnet(enc, tmp_path / "resnet18.pth")
    loaded = enc.encoder.state_dict()
    for k, v in state.items():
        if not k.startswith("fc."):
            assert torch.equal(loaded[k], v), k


def test_multi_image_conv1_repetition(tmp_path):
    state = imagenet_state(18)
    torch.save(state, tmp_path / "resnet18.pth")
    single, double = ResnetEncoder(18), ResnetEncoder(18, num_input_images=2)
    load_imagenet_resnet(single, tmp_path / "resnet18.pth")
    load_imagenet_resnet(double, tmp_path / "resnet18.pth")
    w = state["conv1.weight"]
    assert torch.allclose(double.encoder.conv1.weight, torch.cat([w, w], 1) / 2)
    # Two copies of one image through the 2-image encoder = one image through the 1-image one.
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a = single.eval()(x)[-1]
        b = double.eval()(torch.cat([x, x], 1))[-1]
    assert torch.allclose(a, b, atol=1e-4)


def test_infer_resnet_depth():
    assert infer_resnet_depth(ResnetEncoder(18).encoder.state_dict()) == 18
    assert infer_resnet_depth(ResnetEncoder(34).state_dict(), "encoder.") == 34
    assert infer_resnet_depth(ResnetEncoder(50).state_dict(), "encoder.") == 50
    assert infer_resnet_depth({"foo": torch.zeros(1)}) is None


def test_resnet50_folder_infers_depth_and_refuses_resnet18(tmp_path):
    torch.manual_seed(6)
    enc50 = ResnetEncoder(50)
    write_monodepth2_layout(tmp_path, enc50, DepthDecoder(enc50.num_ch_enc))
    assert load_monodepth2_folder(tmp_path)["encoder"].num_ch_enc[-1] == 2048
    with pytest.raises(CheckpointError) as err:
        load_monodepth2_folder(tmp_path, num_layers=18)
    msg = str(err.value)
    assert "encoder.pth" in msg and "ResNet-18" in msg and "is this a ResNet-50?" in msg
    assert "encoder.layer1.0.conv1.weight has shape (64, 64, 1, 1)" in msg


def test_resnet50_imagenet_file_into_resnet18(tmp_path):
    torch.save(imagenet_state(50), tmp_path / "resnet50.pth")
    with pytest.raises(CheckpointError, match=r"resnet50\.pth.*is this a ResNet-50\?"):
        load_imagenet_resnet(ResnetEncoder(18), tmp_path / "resnet50.pth")


@pytest.fixture()
def good_folder(tmp_path, depth_net):
    enc, dec = depth_net
    write_monodepth2_layout(tmp_path, enc, dec)
    return tmp_path


def test_truncated_file(good_folder):
    path = good_folder / "encoder.pth"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"encoder\.pth.*truncated"):
        load_monodepth2_folder(good_folder)


def test_random_bytes_file(good_folder):
    (good_folder / "depth.pth").write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(CheckpointError, match=r"depth\.pth"):
        load_monodepth2_folder(good_folder)


class NotWeights:
    pass


@pytest.mark.parametrize(
    "content",
    [["a", "list"], {"decoder.0.conv.conv.weight": "text"}, NotWeights(), {"state_dict": {}}],
    ids=["list", "dict-of-text", "custom-object", "wrapped"],
)
def test_foreign_files(good_folder, content):
    with open(good_folder / "depth.pth", "wb") as f:
        pickle.dump(content, f, protocol=2)
    with pytest.raises(CheckpointError, match=r"depth\.pth"):
        load_monodepth2_folder(good_folder)


def test_missing_files(tmp_path, good_folder):
    (good_folder / "depth.pth").unlink()
    with pytest.raises(CheckpointError, match=r"depth\.pth: file not found"):
        load_monodepth2_folder(good_folder)
    with pytest.raises(CheckpointError, match="not a folder"):
        load_monodepth2_folder(tmp_path / "nowhere")


def test_half_a_pose_net_is_refused(good_folder, pose_parts):
    torch.save(pose_parts.decoder.state_dict(), good_folder / "pose.pth")
    with pytest.raises(CheckpointError, match=r"pose_encoder\.pth: file not found"):
        load_monodepth2_folder(good_folder)


def test_load_state_dict_strict_messages():
    dec = DepthDecoder([64, 64, 128, 256, 512])
    good = dec.state_dict()
    bad = dict(good)
    del bad["decoder.3.conv.conv.bias"]
    bad["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_state_dict_strict(dec, bad, "my.ckpt", model_name="a depth decoder")
    msg = str(err.value)
    assert msg.startswith("my.ckpt: does not fit a depth decoder")
    assert "missing key decoder.3.conv.conv.bias" in msg and "unexpected key extra.weight" in msg
    before = dec.decoder[0].conv.conv.weight.clone()
    with pytest.raises(CheckpointError, match="none of its"):
        load_state_dict_strict(dec, {"x": torch.zeros(1)}, "other.ckpt")
    assert torch.equal(before, dec.decoder[0].conv.conv.weight)
