"""Bounded triplet buffers, mirrored to disk so that a restarted learner finds its data again.

Each persisted triplet is one `.npz` file (written atomically) in the buffer's directory; the
buffer manifest (JSON, also atomic) lists the files of every buffer in order plus counters. The
manifest is the authority at restore: listed files that are gone are skipped, files it does not
list were written after the last manifest and are removed. A disk that is full or read-only only
stops the mirroring (the error is returned to the caller); the buffers keep working in memory.
"""
from __future__ import annotations

import io
import json
import random
from collections import deque
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_write_bytes
from ..errors import InputError
from .keyframes import Triplet

MANIFEST_FORMAT = "sa4depth-buffer-manifest"


class TripletBuffer:
    """FIFO of at most `capacity` triplets; optional mirror directory.

    `version` changes whenever the contents change, so a score computed on the buffer can be
    cached until then.
    """

    def __init__(self, capacity: int, directory: str | Path | None = None):
        if capacity < 1:
            raise InputError(f"buffer capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.directory = Path(directory) if directory else None
        self._items: deque = deque()  # (uid, Triplet, persisted)
        self.next_uid = 0
        self.version = 0

    def __len__(self) -> int:
        return len(self._items)

    def triplets(self) -> list[Triplet]:
        """The held triplets, oldest first."""
        return [t for _, t, _ in self._items]

    def sample(self, n: int, rng: random.Random) -> list[Triplet]:
        """n triplets drawn uniformly with replacement."""
        items = self.triplets()
        return [items[rng.randrange(len(items))] for _ in range(n)]

    def files(self) -> list[str]:
        """Names of the persisted triplets, oldest first."""
        return [self._name(uid) for uid, _, persisted in self._items if persisted]

    def add(self, triplet: Triplet) -> str | None:
        """Append (evicting the oldest when full). Returns None, or the reason the triplet could
        not be mirrored to disk (it is kept in memory regardless)."""
        uid, self.next_uid = self.next_uid, self.next_uid + 1
        problem = None
        persisted = False
        if self.directory is not None:
            try:
                atomic_write_bytes(self.directory / self._name(uid), _encode(triplet))
                persisted = True
            except OSError as exc:
                problem = str(exc)
        self._items.append((uid, triplet, persisted))
        while len(self._items) > self.capacity:
            old_uid, _, old_persisted = self._items.popleft()
            if old_persisted:
                _remove(self.directory / self._name(old_uid))
        self.version += 1
        return problem

    def restore(self, names: list[str], next_uid: int) -> list[str]:
        """Load the listed triplet files (oldest first) and delete unlisted ones.

        Returns:
            one note per listed file that could not be read.
        """
        notes = []
        if self.directory is None:
            return notes
        listed = set(names)
        for path in self.directory.glob("*.npz"):
            if path.name not in listed:
                _remove(path)
        for name in names[-self.capacity:]:
            try:
                with np.load(self.directory / name) as data:
                    triplet = Triplet(data["images"], data["K"], data["stamps"])
                self._items.append((int(Path(name).stem), triplet, True))
            except (OSError, ValueError, KeyError) as exc:
                notes.append(f"{self.directory / name}: {exc}")
        self.next_uid = max([int(next_uid)] + [uid + 1 for uid, _, _ in self._items])
        self.version += 1
        return notes

    @staticmethod
    def _name(uid: int) -> str:
        return f"{uid:08d}.npz"


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # read-only: the file stays, unlisted, and is removed by a later restore


def _encode(triplet: Triplet) -> bytes:
    out = io.BytesIO()
    np.savez(out, images=triplet.images, K=triplet.K, stamps=triplet.stamps)
    return out.getvalue()


def save_buffer_manifest(path: str | Path, buffers: dict[str, TripletBuffer], extra: dict) -> None:
    """Write the manifest of named buffers atomically (raises OSError on a full or read-only disk)."""
    data = {"format": MANIFEST_FORMAT, "version": 1, "extra": extra,
            "buffers": {name: {"files": b.files(), "next_uid": b.next_uid} for name, b in buffers.items()}}
    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())


def load_buffer_manifest(path: str | Path, buffers: dict[str, TripletBuffer]) -> tuple[dict, list[str]]:
    """Restore named buffers from a manifest written by save_buffer_manifest.

    Returns:
        (extra, notes): the manifest's `extra` dict ({} without a manifest) and notes on anything
        that could not be restored (an unreadable manifest restores nothing and says why).
    """
    path = Path(path)
    if not path.exists():
        return {}, []
    try:
        data = json.loads(path.read_text())
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError("not a buffer manifest")
        entries = {name: data["buffers"].get(name, {"files": [], "next_uid": 0}) for name in buffers}
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        return {}, [f"{path}: unreadable buffer manifest, starting with empty buffers ({exc})"]
    notes = []
    for name, buffer in buffers.items():
        notes += buffer.restore(list(entries[name]["files"]), int(entries[name]["next_uid"]))
    return dict(data.get("extra") or {}), notes
