"""Seconds -> builtin_interfaces/Time, the one conversion every node, client and tool uses to
stamp what it sends (the other directions are in sa4depth_core.stamps: they need no ROS)."""
from __future__ import annotations

from rclpy.time import Time


def stamp_msg(seconds: float):
    """builtin_interfaces/Time of `seconds` (rounded to the nanosecond)."""
    return Time(nanoseconds=int(round(seconds * 1e9))).to_msg()
