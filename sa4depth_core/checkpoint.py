"""Project checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts:
    format, version, config (Config.to_dict()), model (state dict), optimizer (optional),
    step, epoch, metrics, parent, created.
Writing goes to a temporary file in the same directory, is fsync'ed, then renamed over the
target, so a crash or a full disk never leaves a half-written file under the final name.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
import zipfile
from pathlib import Path

import torch

from .errors import CheckpointError

FORMAT = "sa4depth-checkpoint"
VERSION = 1


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes so that `path` holds either the old or the complete new content.

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
                    extra: dict | None = None) -> str:
    """Serialise and atomically write a checkpoint; returns its sha256 (the model id)."""
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
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer
    if extra:
        payload["extra"] = extra
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def read_torch_file(path: str | Path, map_location="cpu"):
    """torch.load with weights_only=True, turning every failure into one CheckpointError line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: file is empty")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (zipfile.BadZipFile, EOFError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first})") from None
    except Exception as e:  # the unpickler's refusals come as several exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported" in str(e):
            raise CheckpointError(f"{path}: contains Python objects that are not loaded for safety ({first[:160]})") from None
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint ({first[:160]})") from None


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a project checkpoint and check that it is one."""
    data = read_torch_file(path, map_location)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not an sa4depth checkpoint (for Monodepth2 weight folders use --monodepth2 / load_monodepth2_folder)"
        )
    if data.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: written by a newer sa4depth (format version {data['version']} > {VERSION})")
    for key in ("config", "model"):
        if not isinstance(data.get(key), dict):
            raise CheckpointError(f"{path}: checkpoint has no '{key}' section")
    return data


def file_sha256(path: str | Path) -> str:
    """Content hash used as the model id in manifests and diagnostics."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
