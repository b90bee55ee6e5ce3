"""Weight files: safe reading, strict state-dict loading with clear errors, Monodepth2's layout.

A Monodepth2 weights folder holds ``encoder.pth`` (the depth encoder's state dict with keys
``encoder.*`` plus the entries ``height``, ``width`` and ``use_stereo``), ``depth.pth`` (depth
decoder), and optionally ``pose_encoder.pth`` (2-image encoder) and ``pose.pth`` (pose decoder).
Monodepth2's encoders are torchvision ResNets, so their files also carry the unused classifier
``encoder.fc.*``, which is ignored on load and written as zeros on save.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path

import torch
from torch import nn

from sa4depth_core.checkpoint import atomic_torch_save, read_checkpoint
from sa4depth_core.errors import CheckpointError, InputError
from sa4depth_core.networks.depth_decoder import DepthDecoder
from sa4depth_core.networks.pose_decoder import PoseDecoder
from sa4depth_core.networks.resnet_encoder import ResnetEncoder, infer_resnet_depth

ENCODER_FILE = "encoder.pth"
DEPTH_FILE = "depth.pth"
POSE_ENCODER_FILE = "pose_encoder.pth"
POSE_DECODER_FILE = "pose.pth"
ENCODER_META_KEYS = ("height", "width", "use_stereo")

# BatchNorm's step counter is absent from older files (e.g. torchvision's ImageNet ResNets)
# and is not used in eval or with the default momentum, so a file may lack it.
_OPTIONAL_SUFFIXES = ("num_batches_tracked",)
_MAX_LISTED = 3
_IMAGENET_CLASSES = 1000


def load_state_dict_strict(
    module: nn.Module,
    state: object,
    source_name: str,
    *,
    model_name: str | None = None,
    ignore_keys: Collection[str] = (),
    ignore_prefixes: Collection[str] = (),
    hint: str | None = None,
) -> None:
    """Load ``state`` into ``module`` after checking every key and shape; explain any mismatch.

    Args:
        module: the network to fill.
        state: what was read from the file (see :func:`read_checkpoint`).
        source_name: file name used in messages.
        model_name: what ``module`` is, for messages, e.g. ``"a ResNet-18 encoder"``.
        ignore_keys: entries skipped by exact key (e.g. ``height``).
        ignore_prefixes: entries skipped by key prefix (e.g. ``fc.``).
        hint: appended to an architecture-mismatch message, e.g. ``"is this a ResNet-50?"``.

    Raises:
        CheckpointError: ``state`` is not a mapping of names to tensors, or keys are missing,
            unexpected or of another shape. The module is left unchanged then.
    """
    model_name = model_name or f"a {type(module).__name__}"
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{source_name}: holds a {type(state).__name__}, not a dict of tensors; "
            f"it is not a weights file for {model_name}"
        )
    prefixes = tuple(ignore_prefixes)
    kept = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(
                f"{source_name}: has a non-text key {key!r}; it is not a weights file for {model_name}"
            )
        if key in ignore_keys or (prefixes and key.startswith(prefixes)):
            continue
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{source_name}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                f"it is not a weights file for {model_name}"
            )
        kept[key] = value

    expected = module.state_dict()
    problems = []
    if not kept.keys() & expected.keys():
        problems.append(
            f"none of its {len(kept)} tensor entries belong to it"
            + (f" (it has {_listing(kept)})" if kept else "")
        )
    else:
        shape_errors = [
            f"{k} has shape {tuple(v.shape)} but {model_name} expects {tuple(expected[k].shape)}"
            for k, v in kept.items()
            if k in expected and v.shape != expected[k].shape
        ]
        if shape_errors:
            # One example says what is wrong; the count says how much.
            extra = len(shape_errors) - 1
            problems.append(shape_errors[0] + (f" ({extra} more shapes differ)" if extra else ""))
        missing = [k for k in expected if k not in kept and not k.endswith(_OPTIONAL_SUFFIXES)]
        if missing:
            problems.append(f"missing {_listing(missing)}")
        unexpected = [k for k in kept if k not in expected]
        if unexpected:
            problems.append(f"unexpected {_listing(unexpected)}")
    if problems:
        message = f"{source_name}: does not fit {model_name}: " + "; ".join(problems)
        raise CheckpointError(message + (f"; {hint}" if hint else ""))
    module.load_state_dict(kept, strict=False)


def load_imagenet_resnet(encoder: ResnetEncoder, path: str | os.PathLike) -> None:
    """Initialise ``encoder`` from a torchvision-layout ImageNet ResNet file (``fc.*`` ignored).

    For a multi-image encoder (n = ``num_input_images`` > 1) conv1's RGB filters are repeated
    n times along the input channels and divided by n, so that n identical images give the
    ImageNet network's response.

    Args:
        encoder: a :class:`ResnetEncoder` of the file's depth.
        path: e.g. ``resnet18-f37072fd.pth``.
    """
    state = read_checkpoint(path)
    name = str(path)
    n = encoder.num_input_images
    conv1 = state.get("conv1.weight") if isinstance(state, Mapping) else None
    if n > 1 and isinstance(conv1, torch.Tensor) and conv1.dim() == 4 and conv1.shape[1] == 3:
        state = dict(state)
        state["conv1.weight"] = torch.cat([conv1] * n, 1) / n
    hint = None
    if isinstance(state, Mapping):
        if "encoder.conv1.weight" in state:
            hint = "its keys start with 'encoder.': is it a Monodepth2 file (use load_monodepth2_folder)?"
        else:
            hint = _depth_hint(state, "", encoder.num_layers)
    load_state_dict_strict(
        encoder.encoder,
        state,
        name,
        model_name=f"a ResNet-{encoder.num_layers}",
        ignore_prefixes=("fc.",),
        hint=hint,
    )


def load_monodepth2_folder(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    num_layers: int | None = None,
) -> dict:
    """Load a Monodepth2 weights folder into the project's networks (in eval mode).

    Args:
        path: folder with ``encoder.pth`` and ``depth.pth``, and optionally both
            ``pose_encoder.pth`` and ``pose.pth``.
        device: where the networks are placed.
        num_layers: ResNet depth to insist on; None infers it from the keys.

    Returns:
        ``{"encoder": ResnetEncoder, "depth_decoder": DepthDecoder,
        "pose_encoder": ResnetEncoder | None, "pose_decoder": PoseDecoder | None,
        "meta": {"height": int | None, "width": int | None, "use_stereo": bool | None}}``;
        meta holds the training resolution stored in ``encoder.pth``.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(
            f"{folder}: not a folder; expected a Monodepth2 weights folder with "
            f"{ENCODER_FILE} and {DEPTH_FILE}"
        )
    enc_path = folder / ENCODER_FILE
    enc_state = read_checkpoint(enc_path, device)
    encoder = _load_encoder(enc_state, enc_path, num_layers, num_input_images=1)
    meta = _encoder_meta(enc_state, enc_path)

    depth_path = folder / DEPTH_FILE
    depth_decoder = DepthDecoder(encoder.num_ch_enc)
    load_state_dict_strict(
        depth_decoder,
        read_checkpoint(depth_path, device),
        str(depth_path),
        model_name=f"a depth decoder for a ResNet-{encoder.num_layers} encoder",
    )

    pose_enc_path, pose_dec_path = folder / POSE_ENCODER_FILE, folder / POSE_DECODER_FILE
    pose_encoder = pose_decoder = None
    has_enc, has_dec = pose_enc_path.exists(), pose_dec_path.exists()
    if has_enc != has_dec:
        absent, present = (pose_dec_path, pose_enc_path) if has_enc else (pose_enc_path, pose_dec_path)
        raise CheckpointError(
            f"{absent}: file not found, but {present.name} is there; give both or neither"
        )
    if has_enc:
        pose_state = read_checkpoint(pose_enc_path, device)
        pose_encoder = _load_encoder(
            pose_state, pose_enc_path, num_layers, _stacked_images(pose_state)
        )
        dec_state = read_checkpoint(pose_dec_path, device)
        inputs, frames = _pose_decoder_layout(dec_state)
        pose_decoder = PoseDecoder(pose_encoder.num_ch_enc, inputs, frames)
        load_state_dict_strict(
            pose_decoder,
            dec_state,
            str(pose_dec_path),
            model_name=f"a pose decoder for a ResNet-{pose_encoder.num_layers} encoder",
        )

    modules = {
        "encoder": encoder,
        "depth_decoder": depth_decoder,
        "pose_encoder": pose_encoder,
        "pose_decoder": pose_decoder,
    }
    for m in modules.values():
        if m is not None:
            m.to(device).eval()
    return {**modules, "meta": meta}


def model_settings(parts: dict) -> dict:
    """The `config.model` values a Monodepth2 folder fixes, from `load_monodepth2_folder`'s
    result: num_layers, and height/width where encoder.pth stores its training size."""
    meta = parts["meta"]
    return {"num_layers": parts["encoder"].num_layers,
            **{key: int(meta[key]) for key in ("height", "width") if meta.get(key)}}


def save_monodepth2_folder(
    path: str | os.PathLike,
    encoder: ResnetEncoder,
    depth_decoder: DepthDecoder,
    *,
    height: int,
    width: int,
    use_stereo: bool = False,
    pose_encoder: ResnetEncoder | None = None,
    pose_decoder: PoseDecoder | None = None,
) -> None:
    """Write networks in Monodepth2's folder layout, readable by Monodepth2's own scripts.

    Each file is written to a temporary name and renamed, so a crash never leaves a partial
    file under the final name.

    Args:
        path: folder, created if needed.
        encoder, depth_decoder: the depth network.
        height, width: training resolution, stored in ``encoder.pth``.
        use_stereo: stored in ``encoder.pth``.
        pose_encoder, pose_decoder: written only when both are given.
    """
    if (pose_encoder is None) != (pose_decoder is None):
        raise InputError("pass both pose_encoder and pose_decoder to save_monodepth2_folder, or neither")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    enc_state = _with_zero_classifier(encoder)
    enc_state.update(height=int(height), width=int(width), use_stereo=bool(use_stereo))
    atomic_torch_save(enc_state, folder / ENCODER_FILE)
    atomic_torch_save(_cpu_state(depth_decoder), folder / DEPTH_FILE)
    if pose_encoder is not None:
        atomic_torch_save(_with_zero_classifier(pose_encoder), folder / POSE_ENCODER_FILE)
        atomic_torch_save(_cpu_state(pose_decoder), folder / POSE_DECODER_FILE)


def _load_encoder(
    state: object, path: Path, num_layers: int | None, num_input_images: int
) -> ResnetEncoder:
    inferred = infer_resnet_depth(state, "encoder.") if isinstance(state, Mapping) else None
    depth = num_layers if num_layers is not None else inferred
    if depth is None:
        if isinstance(state, Mapping):
            raise CheckpointError(
                f"{path}: has no ResNet entries (encoder.conv1.weight, encoder.layer1.0..., ...); "
                "is it a Monodepth2 encoder file?"
            )
        depth = 18  # let the strict loader report what the file holds instead
    if depth not in (18, 34, 50):
        raise CheckpointError(f"{path}: holds a ResNet-{depth}; only ResNet-18, 34 and 50 are supported")
    encoder = ResnetEncoder(depth, num_input_images=num_input_images)
    load_state_dict_strict(
        encoder,
        state,
        str(path),
        model_name=f"a ResNet-{depth} encoder",
        ignore_keys=ENCODER_META_KEYS,
        ignore_prefixes=("encoder.fc.",),
        hint=_depth_hint(state, "encoder.", depth) if isinstance(state, Mapping) else None,
    )
    return encoder


def _depth_hint(state: Mapping, prefix: str, expected: int) -> str | None:
    found = infer_resnet_depth(state, prefix)
    return f"is this a ResNet-{found}?" if found is not None and found != expected else None


def _stacked_images(state: object) -> int:
    # Monodepth2's pose encoder takes 2 stacked RGB images; the count is read off conv1 so that
    # other variants load too, and anything odd falls back to 2 for the strict loader to report.
    w = state.get("encoder.conv1.weight") if isinstance(state, Mapping) else None
    if isinstance(w, torch.Tensor) and w.dim() == 4 and w.shape[1] % 3 == 0 and w.shape[1] > 0:
        return int(w.shape[1]) // 3
    return 2


def _pose_decoder_layout(state: object) -> tuple[int, int]:
    inputs, frames = 1, 2
    if isinstance(state, Mapping):
        w1, w3 = state.get("net.1.weight"), state.get("net.3.weight")
        if isinstance(w1, torch.Tensor) and w1.dim() == 4 and w1.shape[1] % 256 == 0 and w1.shape[1]:
            inputs = int(w1.shape[1]) // 256
        if isinstance(w3, torch.Tensor) and w3.dim() == 4 and w3.shape[0] % 6 == 0 and w3.shape[0]:
            frames = int(w3.shape[0]) // 6
    return inputs, frames


def _encoder_meta(state: Mapping, path: Path) -> dict:
    meta = {}
    for key in ("height", "width"):
        value = state.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise CheckpointError(f"{path}: entry {key!r} is {value!r}; expected a positive integer")
        meta[key] = value
    stereo = state.get("use_stereo")
    if stereo is not None and not isinstance(stereo, bool):
        raise CheckpointError(f"{path}: entry 'use_stereo' is {stereo!r}; expected true or false")
    meta["use_stereo"] = stereo
    return meta


def _cpu_state(module: nn.Module) -> dict:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def _with_zero_classifier(encoder: ResnetEncoder) -> dict:
    # Monodepth2's scripts load encoder files strictly into a torchvision ResNet, which has a
    # 1000-class ``fc``; the project's encoder has none, so a zero one is written.
    state = _cpu_state(encoder)
    state["encoder.fc.weight"] = torch.zeros(_IMAGENET_CLASSES, encoder.num_ch_enc[-1])
    state["encoder.fc.bias"] = torch.zeros(_IMAGENET_CLASSES)
    return state


def _listing(keys: Collection[str]) -> str:
    keys = list(keys)
    noun = "key" if len(keys) == 1 else "keys"
    more = f" (and {len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return f"{noun} " + ", ".join(keys[:_MAX_LISTED]) + more
