"""DDS environment guard: keep discovery on this machine unless the user asks for the network.

Fast DDS in ROS 2 Kilted ignores ROS_LOCALHOST_ONLY and multicasts discovery on every interface by
default. Every process of this package that starts rclpy calls `ensure_loopback_dds()` first.
"""
from __future__ import annotations

import os

from sa4depth_core.errors import InputError

# Domain ids whose DDS ports stay below Linux's ephemeral range (ROS 2 docs: 0..101 are safe).
MAX_SAFE_DOMAIN_ID = 101


def ensure_loopback_dds(domain_id: int | None = None) -> tuple[str, str | None]:
    """Restrict DDS discovery to localhost unless the environment already chose a range.

    Must run before `rclpy.init()`: the middleware reads these variables when the context starts,
    and child processes inherit them. On a robot whose nodes talk across machines, set
    ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET (or SYSTEM_DEFAULT) explicitly; an explicit value is kept.

    Args:
        domain_id: if given, sets ROS_DOMAIN_ID (0..101); None leaves ROS_DOMAIN_ID as it is.
    Returns:
        (discovery range, ROS_DOMAIN_ID or None) now in effect.
    """
    if not os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE"):
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if domain_id is not None:
        if isinstance(domain_id, bool) or not isinstance(domain_id, int) or not 0 <= domain_id <= MAX_SAFE_DOMAIN_ID:
            raise InputError(f"ROS domain id must be an integer in 0..{MAX_SAFE_DOMAIN_ID}, got {domain_id!r}")
        os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    return os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"], os.environ.get("ROS_DOMAIN_ID")
