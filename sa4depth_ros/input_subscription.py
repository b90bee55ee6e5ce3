"""The camera inputs of a node (image + CameraInfo), subscribed with the reliability their
publishers offer.

Why not always best effort (REP 2003's sensor-data QoS): a best-effort reader receives a reliable
writer's samples best effort, and Fast DDS then drops every sample larger than its 512 KiB
shared-memory segment (0 of 20 640x480 RGB frames arrived; the same frames from the same writer
all arrived at a reliable reader). With `qos.image: auto` a topic is read reliably when every
publisher of it offers reliable, best effort when any offers only best effort (a reliable reader
would not match it), as `ros2 bag record` adapts to the offered QoS. Until the image topic has a
publisher nothing is subscribed, so the first subscription already has the right reliability and
a player that waits for the node's subscription loses nothing. `refresh` follows later changes in
the publishers. A fixed profile name ('sensor_data', 'reliable', 'system_default') subscribes at
once and never changes.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import Image

from .qos import AUTO, qos_from_string, reliable_qos, sensor_qos
from .sync import ImageInfoSync, make_image_info_sync

INPUT_REFRESH_S = 0.25  # how soon the subscriptions follow a camera that appears or changes its QoS


def offered_reliability(publishers: list) -> ReliabilityPolicy | None:
    """The reliability to read a topic with: RELIABLE when every publisher (rclpy TopicEndpointInfo)
    offers it, BEST_EFFORT when any does not, None when there is no publisher."""
    if not publishers:
        return None
    if all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers):
        return ReliabilityPolicy.RELIABLE
    return ReliabilityPolicy.BEST_EFFORT


def _profile(reliability: ReliabilityPolicy):
    """Keep-last-1 reading (never a stale backlog) with `reliability`."""
    return reliable_qos(1) if reliability == ReliabilityPolicy.RELIABLE else sensor_qos(1)


def _name(reliability: ReliabilityPolicy | None) -> str:
    return {ReliabilityPolicy.RELIABLE: "reliable", ReliabilityPolicy.BEST_EFFORT: "best effort"}.get(
        reliability, "no publisher")


class CameraInput:
    """Image (+ CameraInfo) subscriptions of `node` delivering pairs to `callback(image, info)`.

    Args:
        image_topic: the image topic (already with '/compressed' for a compressed stream).
        info_topic: the CameraInfo topic, or None for images alone.
        qos_name: 'auto' or a profile name of qos.qos_from_string.
        log: called with one line each time the subscriptions change.
    Counts (`received`, `dropped`) run on across re-subscriptions.
    """

    def __init__(self, node, image_topic: str, info_topic: str | None, callback: Callable, qos_name: str,
                 slop: float, image_type=Image, log: Callable[[str], None] = lambda line: None):
        self._node = node
        self.topics = tuple(node.resolve_topic_name(t) for t in (image_topic, info_topic) if t is not None)
        self._info_topic = info_topic
        self._callback, self._slop, self._image_type, self._log = callback, slop, image_type, log
        self._auto = str(qos_name).strip().lower() == AUTO
        self._sync: ImageInfoSync | None = None
        self._reliability: tuple = ()
        self._past_received: Counter = Counter()
        self._past_dropped = 0
        self.backend = "waiting" if self._auto else ""
        if not self._auto:
            profile = qos_from_string(qos_name, depth=1)
            self._subscribe((profile.reliability,) * len(self.topics), (profile,) * len(self.topics))
        self.refresh()

    def publishers(self) -> list[list]:
        """Per topic, the endpoint infos of its publishers."""
        return [self._node.get_publishers_info_by_topic(topic) for topic in self.topics]

    def refresh(self) -> None:
        """Re-subscribe when the reliability the publishers offer changed ('auto' only). Runs in
        the thread that spins the node (a timer), so no message callback runs meanwhile."""
        if not self._auto:
            return
        offered = [offered_reliability(p) for p in self.publishers()]
        if offered[0] is None:
            return  # no camera yet, or it went away: keep what matched it
        # a CameraInfo topic without publisher yet is read best effort, which matches any later one
        wanted = tuple(r or ReliabilityPolicy.BEST_EFFORT for r in offered)
        if wanted != self._reliability:
            self._subscribe(wanted, tuple(_profile(r) for r in wanted))

    def _subscribe(self, reliability: tuple, profiles: tuple) -> None:
        if self._sync is not None:
            self._past_received += self._sync.received
            self._past_dropped += self._sync.dropped or 0
            self._sync.destroy()
        self._sync = make_image_info_sync(
            self._node, self.topics[0], self.topics[1] if self._info_topic is not None else None, self._callback,
            profiles if len(profiles) == 2 else profiles[0], slop=self._slop, image_type=self._image_type)
        self._reliability = reliability
        self.backend = self._sync.backend
        self._log(f"subscribed to {self.describe()}")

    def describe(self) -> str:
        """'/image (reliable), /camera_info (best effort)', or what it waits for."""
        if self._sync is None:
            return f"waiting for a publisher on {self.topics[0]}"
        how = " as offered" if self._auto else ""
        return ", ".join(f"{t} ({_name(r)}{how})" for t, r in zip(self.topics, self._reliability))

    @property
    def image_best_effort(self) -> bool:
        """Whether images are read best effort (then large frames depend on the sender's transport)."""
        return bool(self._reliability) and self._reliability[0] == ReliabilityPolicy.BEST_EFFORT

    @property
    def received(self) -> Counter:
        """Messages that arrived per stream ('image', 'camera_info') over every subscription."""
        return self._past_received + (self._sync.received if self._sync is not None else Counter())

    @property
    def dropped(self) -> int | None:
        """Unpaired messages the synchroniser discarded (None where it does not count them)."""
        if self._sync is not None and self._sync.dropped is None:
            return None
        return self._past_dropped + (self._sync.dropped if self._sync is not None else 0)

    def destroy(self) -> None:
        if self._sync is not None:
            self._sync.destroy()
