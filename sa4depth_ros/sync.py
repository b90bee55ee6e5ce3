"""Pair each image with its CameraInfo by header stamp.

Uses message_filters.ApproximateTimeSynchronizer where ROS 2 provides it; the pip-only rclpy
has no message_filters, so `ApproximateSyncFallback` stands in with the same pairing rule.
"""
from __future__ import annotations

import threading
from collections import Counter
from typing import Callable

from sensor_msgs.msg import CameraInfo, Image

from sa4depth_core.errors import InputError
from sa4depth_core.stamps import stamp_ns

try:
    import message_filters
except ImportError:
    message_filters = None


class ApproximateSyncFallback:
    """Approximate-time pairing of two streams (images and CameraInfo) without message_filters.

    A new message is paired with the queued message of the other stream whose stamp is closest,
    if that is within `slop`; then both are handed to `callback(image, info)`. Messages older
    than an emitted pair can no longer pair with anything (streams arrive in stamp order) and are
    dropped, as is the oldest message when a queue exceeds `queue_size`. `dropped` counts them.
    Inputs never wait: matching is a scan of at most `queue_size` entries under a short lock,
    and the callback runs outside the lock.
    """

    def __init__(self, callback: Callable, slop: float = 0.02, queue_size: int = 5):
        if not slop >= 0:
            raise InputError(f"sync slop must be >= 0 seconds, got {slop}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise InputError(f"sync queue_size must be an integer >= 1, got {queue_size!r}")
        self._callback = callback
        self._slop_ns = int(round(slop * 1e9))
        self._queue_size = queue_size
        self._images: list[tuple[int, object]] = []
        self._infos: list[tuple[int, object]] = []
        self._lock = threading.Lock()
        self._dropped = 0

    @property
    def dropped(self) -> int:
        """Messages discarded without a partner so far."""
        return self._dropped

    def add_image(self, msg) -> None:
        """Input for the image stream (a subscription callback)."""
        pair = self._add(msg, self._images, self._infos)
        if pair is not None:
            self._callback(msg, pair)

    def add_info(self, msg) -> None:
        """Input for the CameraInfo stream (a subscription callback)."""
        pair = self._add(msg, self._infos, self._images)
        if pair is not None:
            self._callback(pair, msg)

    def _add(self, msg, own: list, other: list):
        """Queue `msg` or return its partner from `other`."""
        t = stamp_ns(msg.header.stamp)
        with self._lock:
            best = min(range(len(other)), key=lambda i: abs(other[i][0] - t), default=None)
            if best is None or abs(other[best][0] - t) > self._slop_ns:
                own.append((t, msg))
                if len(own) > self._queue_size:
                    del own[0]
                    self._dropped += 1
                return None
            t_other, partner = other.pop(best)
            for queue, cut in ((own, t), (other, t_other)):
                keep = [entry for entry in queue if entry[0] >= cut]
                self._dropped += len(queue) - len(keep)
                queue[:] = keep
            return partner


class ImageInfoSync:
    """Keeps the subscriptions of `make_image_info_sync` alive and can remove them.

    backend is 'message_filters', 'fallback' or 'image_only'; `synchronizer` is the
    message_filters or fallback object (None in image_only mode). `received` counts the messages
    that arrived per stream ('image', 'camera_info'), paired or not: CameraInfos arriving while
    images do not is how frames lost in transport show.
    """

    def __init__(self, node, subscriptions: list, backend: str, synchronizer=None, filters: tuple = (),
                 received: Counter | None = None):
        self.node = node
        self.subscriptions = subscriptions
        self.backend = backend
        self.synchronizer = synchronizer
        self._filters = filters  # message_filters Subscribers hold the chain to the synchroniser
        self.received = Counter() if received is None else received

    @property
    def dropped(self) -> int | None:
        """Unpaired messages discarded (fallback only; message_filters does not count them)."""
        return self.synchronizer.dropped if self.backend == "fallback" else None

    def destroy(self) -> None:
        """Destroy the subscriptions (e.g. on lifecycle deactivate)."""
        for sub in self.subscriptions:
            self.node.destroy_subscription(sub)
        self.subscriptions = []


def _counting(received: Counter, stream: str, callback: Callable) -> Callable:
    """`callback` that first counts its message in received[stream]."""
    def count(msg):
        received[stream] += 1
        callback(msg)
    return count


def make_image_info_sync(node, image_topic: str, info_topic: str | None, callback: Callable, qos,
                         slop: float = 0.02, queue_size: int = 5, callback_group=None,
                         image_type=Image) -> ImageInfoSync:
    """Subscribe to an image topic and its CameraInfo and call `callback(image, info)` per pair.

    With `info_topic=None` every image is delivered at once as `callback(image, None)`.

    Args:
        qos: QoS profile of both subscriptions (REP 2003: sensor data for camera inputs), or a pair
            (image profile, CameraInfo profile).
        slop: largest stamp difference in seconds that still pairs.
        queue_size: messages kept per stream while waiting for a partner.
        image_type: Image or CompressedImage.
    """
    image_qos, info_qos = qos if isinstance(qos, tuple) else (qos, qos)
    received = Counter()
    if info_topic is None:
        sub = node.create_subscription(image_type, image_topic,
                                       _counting(received, "image", lambda msg: callback(msg, None)), image_qos,
                                       callback_group=callback_group)
        return ImageInfoSync(node, [sub], "image_only", received=received)
    if message_filters is not None:
        filters = (
            message_filters.Subscriber(node, image_type, image_topic, qos_profile=image_qos,
                                       callback_group=callback_group),
            message_filters.Subscriber(node, CameraInfo, info_topic, qos_profile=info_qos,
                                       callback_group=callback_group),
        )
        for stream, source in zip(("image", "camera_info"), filters):
            source.registerCallback(_counting(received, stream, lambda msg: None))
        sync = message_filters.ApproximateTimeSynchronizer(list(filters), queue_size, slop)
        sync.registerCallback(callback)
        return ImageInfoSync(node, [f.sub for f in filters], "message_filters", sync, filters, received)
    sync = ApproximateSyncFallback(callback, slop, queue_size)
    subs = [
        node.create_subscription(image_type, image_topic, _counting(received, "image", sync.add_image), image_qos,
                                 callback_group=callback_group),
        node.create_subscription(CameraInfo, info_topic, _counting(received, "camera_info", sync.add_info), info_qos,
                                 callback_group=callback_group),
    ]
    return ImageInfoSync(node, subs, "fallback", sync, received=received)
