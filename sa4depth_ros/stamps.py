"""Seconds -> builtin_interfaces/Time, the one conversion every node, client and tool uses to
stamp what it sends (the other directions are in sa4depth_core.stamps: they need no ROS)."""
from __future__ import annotations

from builtin_interfaces.msg import Time

from sa4depth_core.stamps import sec_nanosec


def stamp_msg(seconds: float) -> Time:
    """builtin_interfaces/Time of `seconds` (rounded to the nanosecond)."""
    sec, nanosec = sec_nanosec(round(seconds * 1e9))
    return Time(sec=sec, nanosec=nanosec)
