"""Project checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts:
    format, version, config (Config.to_dict()), model (state dict), optimizer (optional),
    step, epoch, metrics, parent, created, features_trained (whether the feature network and the
    refiner's damping were trained, so that odometry may refine with them).
Writing goes to a temporary file in the same directory, is fsync'ed, then renamed over the
target, so a crash or a full disk never leaves a half-written file under the final name.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import tempfile
import time
from pathlib import Path

import torch

from .errors import CheckpointError

FORMAT = "sa4depth-checkpoint"
VERSION = 1


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> None:
    """Write bytes so that `path` holds either the old or the complete new content.

    mode: permission bits of the new file; None leaves the temporary file's private 0o600.
    Raises OSError (e.g. ENOSPC, EACCES) with the path in the message; the target is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, f"could not write {path}: {e.strerror}") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | Path, *, config: dict, model: dict, step: int = 0, epoch: int = 0,
                    optimizer: dict | None = None, metrics: dict | None = None, parent: str = "",
                    extra: dict | None = None, features_trained: bool = False) -> str:
    """Serialise and atomically write a checkpoint; returns its sha256 (the model id).

    features_trained: the feature network and damping were trained through the refinement
    (False by default: a model nobody vouches for runs PoseNet-only odometry).
    """
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": config,
        "model": {k: v.detach().cpu() for k, v in model.items()},
        "step": int(step),
        "epoch": int(epoch),
        "metrics": dict(metrics or {}),
        "parent": parent,
        "created": time.time(),
        "features_trained": bool(features_trained),
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer
    if extra:
        payload["extra"] = extra
    return atomic_torch_save(payload, path)


def atomic_torch_save(obj, path: str | Path) -> str:
    """torch.save through atomic_write_bytes; returns the sha256 of the written bytes."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> object:
    """Load a torch file with ``weights_only=True``, turning every failure into CheckpointError.

    Args:
        path: the file.
        map_location: device the tensors are loaded onto.

    Returns:
        The loaded object (usually a dict of tensors); its contents are not checked here.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: file not found")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a directory, not a checkpoint file")
    if not p.is_file():
        # a FIFO or device would block the reader forever or stream without end
        raise CheckpointError(f"{p}: is not a regular file (a pipe, socket or device?)")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _weights_only_reason(exc)
        if reason is not None:
            raise CheckpointError(
                f"{p}: the safe loader (weights_only) refused it ({reason}); it holds Python "
                "objects other than tensors and plain containers, or is corrupt"
            ) from exc
        raise CheckpointError(
            f"{p}: cannot be read as a torch file; it is truncated, corrupt or of another "
            f"format ({first_line(exc)})"
        ) from exc
    # torch.load reports damaged files through many exception types (RuntimeError, EOFError,
    # ValueError, UnicodeDecodeError, zip errors, ...), none of which the caller can act on
    # differently: each means "this file is not a readable checkpoint".
    except Exception as exc:
        raise CheckpointError(
            f"{p}: cannot be read as a torch file; it is truncated, corrupt or of another "
            f"format ({type(exc).__name__}: {first_line(exc)})"
        ) from exc


def _weights_only_reason(exc: BaseException) -> str | None:
    # torch wraps the refusal in a long generic text; only the unpickler's own words help.
    text = str(exc)
    if not text.startswith("Weights only load failed"):
        return None
    marker, end = "WeightsUnpickler error:", "Check the documentation"
    if marker not in text:
        return "unsupported content"
    detail = text.split(marker, 1)[1].split(end, 1)[0]
    return _first_sentence(" ".join(detail.split())) or "unsupported content"


def _first_sentence(text: str) -> str:
    # torch's messages go on with advice that does not apply here (e.g. to drop weights_only).
    text = text.strip()
    return text.splitlines()[0].split(". ")[0].rstrip(".") if text else ""


def first_line(exc: BaseException) -> str:
    return _first_sentence(str(exc)) or type(exc).__name__


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a project checkpoint and check that it is one."""
    data = read_checkpoint(path, map_location)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not an sa4depth checkpoint (for Monodepth2 weight folders use --monodepth2 / load_monodepth2_folder)"
        )
    if data.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: written by a newer sa4depth (format version {data['version']} > {VERSION})")
    for key in ("config", "model"):
        if not isinstance(data.get(key), dict):
            raise CheckpointError(f"{path}: checkpoint has no '{key}' section")
    check_finite_weights(data["model"], path)
    return data


def check_finite_weights(weights: dict, source) -> None:
    """CheckpointError naming `source` and the first tensor of `weights` (a state dict) holding NaN
    or Inf: such weights come from a diverged run, train to NaN and crashed the backward pass."""
    for name, tensor in weights.items():
        if isinstance(tensor, torch.Tensor) and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{source}: tensor {name} holds NaN or Inf values (a diverged run?); "
                                  "start from other weights")


def features_trained(state: dict) -> bool:
    """Whether a loaded checkpoint's feature network and damping were trained.

    Files written before the flag existed came from the project's trainers, which trained the
    features whenever refinement was on; a step-0 file was never trained at all.
    """
    if "features_trained" in state:
        return bool(state["features_trained"])
    refine = state["config"].get("refine", {})
    return bool(refine.get("enabled", True)) and int(state.get("step", 0)) > 0


def file_sha256(path: str | Path) -> str:
    """Content hash used as the model id in manifests and diagnostics."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
