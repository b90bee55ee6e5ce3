"""Checkpoints of an online learner: atomic files, a manifest, and retention that never deletes
the deployed model.

Layout of the directory:
    step_XXXXXXXX.pt   project checkpoints (checkpoint.save_checkpoint: temp file, fsync, rename)
    manifest.json      {"entries": [...], "deployed": path, "deployed_id": ...}, written atomically

Every entry records step, score, parent checkpoint and sha256 (the model id is its first 12
hex digits, as loaded_model.load_model reports it). "Deployed" is the model the learner vouches for:
its initial weights until a candidate passes the gate, then the last such candidate; it may be
a file outside the directory (the checkpoint the learner started from).

Crash safety: a checkpoint is renamed into place before the manifest lists it, and the manifest
points at a new deployed file only after that file is complete, so a kill at any moment leaves
the deployed file intact. Leftovers of a killed write (temporary files, checkpoints the manifest
never listed) are removed when the store is opened.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..checkpoint import atomic_write_bytes, save_checkpoint
from ..errors import CheckpointError, InputError

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "sa4depth-online-checkpoints"
_CHECKPOINT_NAME = re.compile(r"^step_\d{8}(_\d+)?\.pt$")


@dataclass
class CheckpointEntry:
    """One checkpoint file. kind: "initial" (the weights training started from), "candidate"
    (passed the gate) or "save" (written on request or at shutdown, not deployed)."""

    file: str
    step: int
    kind: str
    sha256: str
    parent: str
    score: float | None = None
    created: float = 0.0

    @property
    def model_id(self) -> str:
        return self.sha256[:12]


class CheckpointStore:
    """Writes, lists and prunes checkpoints in `directory`, keeping the newest `keep` plus the
    deployed one. The directory is created lazily, so a read-only location is reported by the
    first write instead of failing construction."""

    def __init__(self, directory: str | Path, keep: int = 3):
        if keep < 1:
            raise InputError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory).expanduser().absolute()
        self.keep = int(keep)
        self.entries: list[CheckpointEntry] = []
        self.deployed = ""  # path of the deployed weights ("" = only in memory)
        self.deployed_id = ""
        self._load()

    # -- reading --------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    def path(self, entry: CheckpointEntry) -> Path:
        """Absolute path of an entry's file."""
        return self.directory / entry.file

    def latest(self) -> CheckpointEntry | None:
        """The newest entry (what a restart resumes from), or None."""
        return self.entries[-1] if self.entries else None

    def _load(self) -> None:
        if not self.manifest_path.exists():
            self._remove_leftovers()
            return
        try:
            data = json.loads(self.manifest_path.read_text())
            if data.get("format") != MANIFEST_FORMAT:
                raise ValueError("format field missing or different")
            self.entries = [CheckpointEntry(**e) for e in data["entries"]]
            self.deployed, self.deployed_id = str(data["deployed"]), str(data["deployed_id"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{self.manifest_path}: not a readable online-learning manifest ({exc}); "
                                  "move the directory away to start afresh") from exc
        missing = [e.file for e in self.entries if not self.path(e).is_file()]
        self.entries = [e for e in self.entries if e.file not in missing]
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        if not self.directory.is_dir():
            return
        listed = {e.file for e in self.entries}
        for path in self.directory.iterdir():
            killed_write = path.name.startswith(".step_") and path.name.endswith(".tmp")
            unlisted = _CHECKPOINT_NAME.match(path.name) and path.name not in listed
            if killed_write or unlisted:
                try:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass  # a read-only directory keeps its leftovers; the manifest ignores them

    # -- writing --------------------------------------------------------------------------------
    def write(self, *, config: dict, model: dict, step: int, kind: str, parent: str,
              score: float | None = None, metrics: dict | None = None,
              features_trained: bool = False) -> CheckpointEntry:
        """Write a checkpoint and list it in the manifest.

        Raises OSError (full disk, no permission) with nothing changed on disk: a checkpoint whose
        manifest update failed is removed again.
        """
        name = self._free_name(step)
        path = self.directory / name
        sha = save_checkpoint(path, config=config, model=model, step=step, parent=parent,
                              metrics={**(metrics or {}), **({"score": score} if score is not None else {})},
                              extra={"kind": kind}, features_trained=features_trained)
        entry = CheckpointEntry(name, int(step), kind, sha, parent, score, time.time())
        self.entries.append(entry)
        try:
            self._write_manifest()
        except OSError:
            self.entries.pop()
            path.unlink(missing_ok=True)
            raise
        return entry

    def set_deployed(self, path: str | Path, model_id: str) -> None:
        """Record the deployed weights (raises OSError, leaving the previous record in place)."""
        old = self.deployed, self.deployed_id
        self.deployed, self.deployed_id = str(path), model_id
        try:
            self._write_manifest()
        except OSError:
            self.deployed, self.deployed_id = old
            raise

    def prune(self) -> list[str]:
        """Delete all but the newest `keep` checkpoints, never the deployed one; returns the names
        deleted. A failed deletion is left for the next prune."""
        keep = {e.file for e in self.entries[-self.keep:]}
        removed = []
        for entry in list(self.entries):
            if entry.file in keep or self.path(entry) == Path(self.deployed):
                continue
            try:
                self.path(entry).unlink(missing_ok=True)
            except OSError:
                continue
            self.entries.remove(entry)
            removed.append(entry.file)
        if removed:
            try:
                self._write_manifest()
            except OSError:
                pass  # the manifest still lists files that are gone; _load skips those
        return removed

    def _free_name(self, step: int) -> str:
        taken = {e.file for e in self.entries}
        name, n = f"step_{step:08d}.pt", 1
        while name in taken:
            name, n = f"step_{step:08d}_{n}.pt", n + 1
        return name

    def _write_manifest(self) -> None:
        data = {"format": MANIFEST_FORMAT, "version": 1, "deployed": self.deployed, "deployed_id": self.deployed_id,
                "entries": [asdict(e) for e in self.entries]}
        atomic_write_bytes(self.manifest_path, (json.dumps(data, indent=1) + "\n").encode())
