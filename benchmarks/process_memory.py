"""Resident memory of a running process, which the node benchmarks watch for growth (Linux /proc)."""
from __future__ import annotations

from pathlib import Path


def rss_mb(pid: int) -> float:
    """Resident set size of process `pid` in MiB; NaN where /proc does not list it (a zombie)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
