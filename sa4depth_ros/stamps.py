"""builtin_interfaces/Time <-> seconds, the one conversion every node, client and tool uses."""
from __future__ import annotations

from rclpy.time import Time


def stamp_msg(seconds: float):
    """builtin_interfaces/Time of `seconds`."""
    return Time(nanoseconds=int(round(seconds * 1e9))).to_msg()


def stamp_seconds(stamp) -> float:
    """Seconds of a builtin_interfaces/Time (e.g. a header stamp)."""
    return int(stamp.sec) + int(stamp.nanosec) * 1e-9
