"""ROS 2 bags (sqlite3 or mcap) read with rosbags, without a ROS install: an open reader whose
failures name the bag, and message decoding."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from sa4depth_core.errors import InputError

# Every message type used here has the same definition (and RIHS01 hash) in Humble, Jazzy and Kilted.
BAG_TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
ODOMETRY_TYPE = "nav_msgs/msg/Odometry"
TF_TYPE = "tf2_msgs/msg/TFMessage"


def _bag_error(bag, exc: BaseException) -> InputError:
    return InputError(f"{bag}: cannot read ROS 2 bag ({type(exc).__name__}: {exc})")


class CheckedReader:
    """A rosbags Reader whose failures while opening or reading become InputError naming the bag."""

    def __init__(self, bag: str | Path):
        self.bag = Path(bag)
        if not self.bag.exists():
            raise InputError(f"{self.bag}: ROS 2 bag not found")
        try:
            self._reader = Reader(self.bag)
            self._reader.open()
        except Exception as exc:
            raise _bag_error(self.bag, exc) from exc

    @property
    def connections(self) -> list:
        return self._reader.connections

    @property
    def start_time(self) -> int:
        """Bag time (ns) of the first message."""
        return self._reader.start_time

    @property
    def end_time(self) -> int:
        """Bag time (ns) just after the last message."""
        return self._reader.end_time

    def messages(self, connections=(), start: int | None = None, stop: int | None = None):
        """Yield (connection, bag time ns, CDR bytes) in bag-time order, as rosbags' Reader.messages."""
        try:
            it = iter(self._reader.messages(connections, start, stop))
        except Exception as exc:
            raise _bag_error(self.bag, exc) from exc
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except Exception as exc:
                raise _bag_error(self.bag, exc) from exc
            yield item

    def close(self) -> None:
        self._reader.close()


@contextmanager
def open_bag(bag: str | Path):
    """An open CheckedReader for a bag directory or a single .db3/.mcap file, closed on exit.

    Missing, foreign, truncated or corrupt bags raise InputError naming the bag, also when the
    damage only shows while messages are read.
    """
    reader = CheckedReader(bag)
    try:
        yield reader
    finally:
        reader.close()


def bag_topics(reader) -> dict[str, str]:
    """{topic: message type} of an open reader."""
    return {c.topic: c.msgtype for c in reader.connections}


def deserialize(raw: bytes, msgtype: str, where: str):
    """A rosbags message object from CDR bytes; `where` names the bag and topic in errors."""
    try:
        return BAG_TYPESTORE.deserialize_cdr(raw, msgtype)
    except Exception as exc:
        raise InputError(f"{where}: cannot decode a {msgtype} message ({type(exc).__name__}: {exc})") from exc


def camera_topics(bag: str | Path, prefer: str = "") -> tuple[str, str] | None:
    """(image topic, CameraInfo topic) of a camera in `bag`: an Image or CompressedImage topic whose
    sibling `camera_info` topic holds CameraInfo (`<ns>/image_raw` pairs with `<ns>/camera_info`;
    a compressed stream is named by its raw topic). `prefer` (an image topic) wins when the bag has
    it; otherwise the first camera in name order; None when the bag has none."""
    with open_bag(bag) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
    images = sorted({t.removesuffix("/compressed") for t, kind in types.items() if kind in (IMAGE_TYPE, COMPRESSED_TYPE)})
    cameras = [(image, image.rsplit("/", 1)[0] + "/camera_info") for image in images]
    cameras = [(image, info) for image, info in cameras if types.get(info) == CAMERA_INFO_TYPE]
    return next((c for c in cameras if c[0] == prefer), cameras[0] if cameras else None)
