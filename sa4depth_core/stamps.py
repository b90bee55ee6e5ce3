"""builtin_interfaces/Time <-> integer nanoseconds (both directions) and -> seconds, in one place.

Duck-typed over anything with `.sec` and `.nanosec` (rclpy messages and rosbags messages alike),
so the core converts stamps without importing rclpy.
"""
from __future__ import annotations

NS_PER_S = 1_000_000_000


def stamp_ns(stamp) -> int:
    """Integer nanoseconds of a builtin_interfaces/Time (e.g. a header's stamp)."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def sec_nanosec(ns: int) -> tuple[int, int]:
    """(sec, nanosec) of a builtin_interfaces/Time at `ns` integer nanoseconds, nanosec in [0, 1e9)."""
    return divmod(int(ns), NS_PER_S)


def stamp_seconds(stamp) -> float:
    """Seconds of a builtin_interfaces/Time (e.g. a header's stamp)."""
    return int(stamp.sec) + int(stamp.nanosec) * 1e-9
