"""Text files named by the user (poses, trajectories, split lists), read with one-line errors."""
from __future__ import annotations

from pathlib import Path

from sa4depth_core.errors import InputError


def read_text(path: str | Path, what: str) -> str:
    """The whole text of `path`, a `what` file (e.g. "KITTI poses").

    Raises InputError naming the file when it is missing, not a regular file, unreadable or not
    UTF-8 text (a binary file given by mistake).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} file not found")
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise InputError(f"{path}: is {kind}, not a {what} file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text file (byte {exc.start} is not UTF-8); expected a {what} file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what} file ({exc.strerror})") from None
