"""InputWatch: why a node gets no frames, when the graph or the synchroniser can tell: nothing
publishes CameraInfo, images and CameraInfo do not pair, or CameraInfos arrive without their images
(lost on the way: a best-effort camera whose frames are too large for Fast DDS's default transport)."""
from __future__ import annotations

import time
from collections import Counter

from .input_subscription import CameraInput
from .ros_env import LARGE_FRAMES_PROFILE, share_file

LOST_BEST_EFFORT_FRAMES = (
    "the camera publishes its images best effort, and Fast DDS never delivers a best-effort sample larger than "
    "the SENDER's shared-memory segment (512 KiB by default; a 640x480 RGB frame is 0.9 MB): publish the images "
    "reliably, or start the camera's process with FASTDDS_DEFAULT_PROFILES_FILE={profile}")
QUIET_S = 3.0  # seconds without a pair before the inputs are looked into


class InputWatch:
    """Watches `camera_input` (input_subscription.CameraInput); `paired` is told of every pair."""

    def __init__(self, camera_input: CameraInput):
        self._input = camera_input
        self._started = time.monotonic()
        self._last_pair = -1e9
        self._unpaired_seen = 0
        self._arrived_at_pair = Counter()  # messages arrived per stream as of the last pair

    def paired(self) -> None:
        self._last_pair = time.monotonic()
        self._arrived_at_pair = self._input.received

    def problem(self, sync_slop: float) -> str:
        """What keeps frames from pairing, '' when nothing does or it cannot tell yet."""
        unpaired = self._input.dropped
        grew = unpaired is not None and unpaired > self._unpaired_seen
        self._unpaired_seen = unpaired or 0
        received = self._input.received
        infos_alone = received["camera_info"] - self._arrived_at_pair["camera_info"]
        images_since = received["image"] - self._arrived_at_pair["image"]
        quiet = time.monotonic() - max(self._last_pair, self._started) >= QUIET_S
        if self._input.backend in ("image_only", "waiting") or not quiet:
            return ""
        image_topic, info_topic = self._input.topics
        image_pubs, info_pubs = (len(p) for p in self._input.publishers())
        if image_pubs and not info_pubs:
            return (f"nothing publishes {info_topic} for the images on {image_topic}: publish CameraInfo or set the "
                    "'intrinsics' parameter (fx, fy, cx, cy); waiting")
        if image_pubs and infos_alone >= 3 and not images_since:
            # no count in the text: the warning is logged once while it stays the same
            return f"CameraInfos keep arriving on {info_topic} but no image on {image_topic}: " + (
                LOST_BEST_EFFORT_FRAMES.format(profile=share_file(*LARGE_FRAMES_PROFILE))
                if self._input.image_best_effort else "the images are lost before they reach the node")
        if grew:
            return (f"images on {image_topic} do not pair with CameraInfo on {info_topic} within sync_slop "
                    f"{sync_slop} s: do their stamps match?")
        return ""
