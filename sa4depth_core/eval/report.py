"""Plain-text tables and atomic JSON files for evaluation results."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..checkpoint import atomic_write_bytes
from ..errors import InputError


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, int, float, np.generic))


def _cell(value: Any, float_fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return format(value, float_fmt) if math.isfinite(value) else str(value)
    return str(value)


def format_table(rows: Mapping[str, Any] | Sequence[Mapping[str, Any]], title: str = "",
                 float_fmt: str = ".4f", label_header: str = "") -> str:
    """Render results as an aligned plain-text table.

    rows: a flat mapping {column: value} (one row); a mapping {row label: {column: value}}
    (labelled rows, label column headed `label_header`); or a list of {column: value} mappings.
    Columns appear in first-seen order; missing cells and None print '-'; floats use
    `float_fmt`; non-scalar values (nested dicts, lists) are left out so whole result dicts can
    be passed. Numbers are right-aligned, text left-aligned. Returns the table without a
    trailing newline.
    """
    labels: list[str] | None = None
    if isinstance(rows, Mapping):
        if rows and all(isinstance(v, Mapping) for v in rows.values()):
            labels = [str(k) for k in rows]
            records = list(rows.values())
        else:
            records = [rows]
    else:
        records = list(rows)

    columns: list[str] = []
    for rec in records:
        for key, value in rec.items():
            if _is_scalar(value) and str(key) not in columns:
                columns.append(str(key))
    str_records = [{str(k): v for k, v in rec.items()} for rec in records]
    header = ([label_header] if labels is not None else []) + columns
    body = []
    numeric = [False] * len(header)
    for r, rec in enumerate(str_records):
        line = [labels[r]] if labels is not None else []
        for col in columns:
            value = rec.get(col)
            line.append(_cell(value, float_fmt))
            if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                numeric[len(line) - 1] = True
        body.append(line)

    widths = [max(len(row[c]) for row in [header] + body) for c in range(len(header))]

    def render(line: list[str]) -> str:
        return "  ".join(cell.rjust(w) if num else cell.ljust(w)
                         for cell, w, num in zip(line, widths, numeric)).rstrip()

    lines = [render(header), render(["-" * w for w in widths])] + [render(b) for b in body]
    if title:
        lines.insert(0, title)
    return "\n".join(lines)


def pair_columns(pairs: Mapping[str, Any]) -> dict:
    """The odometry table's per-pair columns from an odometry_metrics.pair_errors result: mean
    rotation and translation-direction errors (deg) and the spread of the pose scale (std/mean of
    |t_est| / |t_gt|), the three parts a mixed translation error blurs together."""
    return {"rot(deg)": pairs["rotation_deg_mean"], "dir(deg)": pairs["direction_deg_mean"],
            "|t| std/mean": pairs["scale_ratio_std_over_mean"]}


def to_jsonable(obj: Any) -> Any:
    """Recursively convert numpy scalars/arrays, paths, tuples and sets to JSON types.

    Non-finite floats become None (strict JSON has no NaN); mapping keys become strings.
    """
    if isinstance(obj, Mapping):
        return {str(k.item() if isinstance(k, np.generic) else k): to_jsonable(v)
                for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    raise TypeError(f"cannot write a {type(obj).__name__} to JSON")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as indented JSON atomically (checkpoint.atomic_write_bytes), creating parent
    directories. Readers never see a half-written file. Returns the path."""
    path = Path(path)
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"
    # Results are shared like any other output, not private like a temporary file.
    atomic_write_bytes(path, text.encode("utf-8"), mode=0o644)
    return path


def refuse_directories(**outputs: str | os.PathLike | None) -> None:
    """InputError naming the first output (option name -> path, None when not asked for) that is an
    existing directory: checked before any work, so that no other output is written in vain."""
    for option, path in outputs.items():
        if path is not None and Path(path).is_dir():
            raise InputError(f"{path}: is a directory; --{option} names the file to write")
