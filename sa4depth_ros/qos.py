"""QoS profiles: publishers reliable (REP 2003), so RViz and recorders with default QoS connect;
camera inputs read with the reliability their publishers offer ('auto', input_subscription.py
says why), or with a fixed profile. Both are overridable through a string parameter parsed by
`qos_from_string`.
"""
from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_system_default,
)

from sa4depth_core.errors import InputError

QOS_NAMES = ("sensor_data", "reliable", "system_default")
AUTO = "auto"  # inputs only: the publishers' reliability (input_subscription.CameraInput)
INPUT_QOS_NAMES = (AUTO,) + QOS_NAMES


def _keep_last(reliability: ReliabilityPolicy, depth: int) -> QoSProfile:
    return QoSProfile(reliability=reliability, history=HistoryPolicy.KEEP_LAST, depth=depth,
                      durability=DurabilityPolicy.VOLATILE)


def sensor_qos(depth: int = 1) -> QoSProfile:
    """Best effort, keep last `depth`, volatile. Depth 1 keeps only the newest frame, never a stale backlog."""
    return _keep_last(ReliabilityPolicy.BEST_EFFORT, depth)


def reliable_qos(depth: int = 10) -> QoSProfile:
    """Reliable, keep last `depth`, volatile."""
    return _keep_last(ReliabilityPolicy.RELIABLE, depth)


def qos_from_string(name: str, depth: int | None = None) -> QoSProfile:
    """Profile for a parameter value: 'sensor_data', 'reliable' or 'system_default' (any case).

    Args:
        depth: history depth; None keeps each profile's default (system_default ignores it).
    """
    key = str(name).strip().lower()
    if key == "sensor_data":
        return sensor_qos() if depth is None else sensor_qos(depth)
    if key == "reliable":
        return reliable_qos() if depth is None else reliable_qos(depth)
    if key == "system_default":
        return qos_profile_system_default
    raise InputError(f"unknown QoS profile name '{name}'; valid names: {', '.join(QOS_NAMES)}")
