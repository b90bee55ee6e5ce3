"""DDS environment: keep discovery on this machine unless the user asks for the network, and let
best-effort camera frames of real sizes through Fast DDS.

Fast DDS in ROS 2 Kilted ignores ROS_LOCALHOST_ONLY and multicasts discovery on every interface by
default. Every process of this package that starts rclpy calls `ensure_loopback_dds()` first.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from sa4depth_core.errors import InputError

PACKAGE = "sa4depth_ros"
LARGE_FRAMES_PROFILE = ("config", "fastdds_large_frames.xml")
# Variables with which the user has already chosen Fast DDS's transports (FASTRTPS_* is the name
# before Fast DDS 3); any of them set means the user's choice stands.
FASTDDS_CHOICES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")

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


def share_file(*parts: str) -> Path:
    """A file of the package's share directory: the source tree's, else the installed one."""
    source = Path(__file__).resolve().parents[1].joinpath(*parts)
    if source.exists():
        return source
    return Path(sys.prefix, "share", PACKAGE, *parts)


def uses_fastdds() -> bool:
    """Whether rclpy will run on Fast DDS (ROS 2's default middleware)."""
    return os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp").startswith("rmw_fastrtps")


def ensure_large_frame_transport() -> str | None:
    """Give a process that publishes camera frames best effort a shared-memory segment that holds
    them (config/fastdds_large_frames.xml says why), unless the user chose Fast DDS's transports or
    another middleware. Must run before `rclpy.init()`. Returns the profile now set, or None."""
    if not uses_fastdds() or any(os.environ.get(name) for name in FASTDDS_CHOICES):
        return None
    profile = share_file(*LARGE_FRAMES_PROFILE)
    if not profile.is_file():
        return None
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    return str(profile)
