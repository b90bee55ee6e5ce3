"""Where an OnlineLearner starts, and what it finds again after a restart.

The newest checkpoint of the store is resumed, with the recorded deployed model as the reference.
Without one the learner starts from `init`: a project checkpoint is itself the deployed model (it
stays outside the store); random or Monodepth2 weights have no project file, so they are written
as the initial checkpoint, and the deployed reference is a file that can be reloaded after a
restart. The triplet buffers come back from their manifest.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import Config
from ..errors import CheckpointError
from ..loaded_model import LoadedModel, load_model
from .buffer import TripletBuffer, load_buffer_manifest
from .deploy import record_deployed
from .options import OnlineOptions
from .store import CheckpointEntry, CheckpointStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartingPoint:
    """loaded: the weights training goes on from; step: their training step; resumed: the store
    entry they were read from (None: a fresh start from init); init: the init weights' path."""

    loaded: LoadedModel
    step: int
    resumed: CheckpointEntry | None
    init: str


def load_start(store: CheckpointStore, init: str, cfg: Config | None, device: torch.device) -> StartingPoint:
    """The newest checkpoint of `store`, else `init` (a checkpoint, a Monodepth2 folder, or "" for
    random weights from `cfg`). Raises CheckpointError when the weights cannot be loaded."""
    entry = store.latest()
    if entry is not None:
        return StartingPoint(load_model(store.path(entry), device), entry.step, entry, init)
    init = str(Path(init).expanduser()) if init else ""
    return StartingPoint(load_model(init or None, device, cfg), 0, None, init)


def settle_deployed(store: CheckpointStore, start: StartingPoint, device: torch.device,
                    report_error: Callable[[str], None]) -> dict | None:
    """Make the store's record of the deployed model fit the start.

    Returns:
        the deployed weights (a state dict) where they are not the start's own, else None.
    """
    if start.resumed is None:
        _record_initial(store, start, report_error)
        return None
    entry, path = start.resumed, store.path(start.resumed)
    note = f"; the init checkpoint {start.init} is not used" if start.init else ""
    log.info("resuming from %s (step %d), deployed model %s%s", path, entry.step, store.deployed_id, note)
    deployed = store.deployed
    if not deployed:  # the deployed weights were never written: the resumed ones take over
        record_deployed(store, path, entry.model_id, report_error)
    elif Path(deployed) != path:
        try:
            return load_model(deployed, device).model.state_dict()
        except CheckpointError as exc:
            report_error(f"the deployed checkpoint cannot be read ({exc}); {path} is the reference now")
            record_deployed(store, path, entry.model_id, report_error)
    return None


def _record_initial(store: CheckpointStore, start: StartingPoint, report_error: Callable[[str], None]) -> None:
    init, loaded = start.init, start.loaded
    if init and Path(init).is_file():
        record_deployed(store, Path(init).absolute(), loaded.model_id, report_error)
        return
    try:
        entry = store.write(config=loaded.cfg.to_dict(), model=loaded.model.state_dict(), step=0, kind="initial",
                            parent=str(init or "random initialisation"), features_trained=loaded.features_trained)
    except OSError as exc:
        report_error(f"could not write the initial checkpoint (training goes on in memory): {exc}")
        store.deployed_id = loaded.model_id
        return
    record_deployed(store, store.path(entry), entry.model_id, report_error)


def buffer_manifest(out_dir: Path) -> Path:
    """The manifest of a learner's mirrored buffers (buffer.save_buffer_manifest)."""
    return out_dir / "buffer" / "manifest.json"


def open_buffers(options: OnlineOptions, out_dir: Path, frame_size: list[int],
                 report_error: Callable[[str], None]) -> tuple[TripletBuffer, TripletBuffer]:
    """The replay and validation buffers, restored from `out_dir` when they are mirrored there.

    Args:
        frame_size: [H, W] of the model; stored triplets of another size are deleted.
    Returns:
        (replay, val).
    """
    buffer_dir = buffer_manifest(out_dir).parent
    mirror = options.persist_buffer
    replay = TripletBuffer(options.replay_capacity, buffer_dir / "replay" if mirror else None)
    val = TripletBuffer(options.val_capacity, buffer_dir / "val" if mirror else None)
    if not mirror:
        return replay, val
    extra, notes = load_buffer_manifest(buffer_manifest(out_dir), {"replay": replay, "val": val})
    for note in notes:
        report_error(f"buffer restore: {note}")
    if extra.get("frame_size") not in (None, frame_size):
        report_error(f"buffer restore: stored triplets are {extra['frame_size']}, the model takes "
                     f"{frame_size}; starting with empty buffers")
        replay = TripletBuffer(options.replay_capacity, buffer_dir / "replay")
        val = TripletBuffer(options.val_capacity, buffer_dir / "val")
        for buffer in (replay, val):
            buffer.restore([], 0)  # deletes the stored files
    if len(replay) or len(val):
        log.info("restored %d training and %d validation triplets from %s", len(replay), len(val), buffer_dir)
    return replay, val
