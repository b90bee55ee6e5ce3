"""`sa4depth-play BAG`: publish a ROS 2 bag into the graph, for machines without `ros2 bag`.

    sa4depth-play bags/seq09 --rate 0.5 --clock
    sa4depth-play bags/seq09 --topics /kitti/camera_color_left/image_raw /kitti/camera_color_left/camera_info --loop
    sa4depth-play bags/seq09 --ros-args -r __node:=player -r /clock:=/sim/clock    # as launch_ros runs it
    sa4depth-play bags/seq09 --wait-subscribers 120 --wait-for /kitti/camera_color_left/image_raw

Messages go out as the recorded CDR bytes (no decode/encode), in bag-time order, at the
recorded pace times `--rate`. Each topic's publisher uses the QoS the bag recorded for it
(reliable only if every recorded publisher was; transient-local likewise), else reliable
volatile, and `/tf_static` reliable transient-local so late subscribers still get the rig.
ROS arguments after `--ros-args` (remappings, node name) go to rclpy; at the end the player prints
how many messages it published on each topic. A bag recorded from a best-effort camera is played
best effort: the player gives itself Fast DDS's large-frames profile (config/fastdds_large_frames.xml)
unless the environment chose Fast DDS's transports, so frames of any size reach other processes.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections import Counter

import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.utilities import remove_ros_args
from rosbags.interfaces import QosDurability, QosHistory, QosReliability

from sa4depth_core.data.bag_reader import open_bag
from sa4depth_core.errors import InputError
from sa4depth_core.stamps import sec_nanosec
from sa4depth_ros.ros_env import ensure_large_frame_transport, ensure_loopback_dds

DEFAULT_DEPTH = 10
CLOCK_TOPIC = "/clock"


def message_class(msgtype: str):
    """The rclpy message class of `pkg/msg/Name`, or None when its package is not installed."""
    try:
        package, kind, name = msgtype.split("/")
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ValueError, ImportError, AttributeError):
        return None


def qos_for(topic: str, recorded: list):
    """QoS for republishing `topic` given the rosbags Qos profiles recorded for it.

    rosbag2's playback rule: reliable (transient-local) only when every recorded publisher
    offered it; history depth from the first profile when known (> 0), else DEFAULT_DEPTH.
    Nothing recorded: reliable volatile, `/tf_static` reliable transient-local depth 1.
    """
    if not recorded:
        latched = topic == "/tf_static"
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1 if latched else DEFAULT_DEPTH,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
    reliable = all(q.reliability == QosReliability.RELIABLE for q in recorded)
    latched = all(q.durability == QosDurability.TRANSIENT_LOCAL for q in recorded)
    first = recorded[0]
    keep_all = first.history == QosHistory.KEEP_ALL
    return QoSProfile(history=HistoryPolicy.KEEP_ALL if keep_all else HistoryPolicy.KEEP_LAST,
                      depth=first.depth if first.depth > 0 else DEFAULT_DEPTH,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def play_window(bag_start_ns: int, bag_end_ns: int, start_s: float, duration_s: float | None) -> tuple[int, int]:
    """[start, stop) in bag nanoseconds for `--start` seconds after the first message and `--duration`."""
    if not start_s >= 0:
        raise InputError(f"--start must be >= 0 seconds, got {start_s}")
    if duration_s is not None and not duration_s > 0:
        raise InputError(f"--duration must be > 0 seconds, got {duration_s}")
    start = bag_start_ns + round(start_s * 1e9)
    stop = bag_end_ns if duration_s is None else min(bag_end_ns, start + round(duration_s * 1e9))
    if start >= bag_end_ns:
        raise InputError(f"--start {start_s} s is past the end of the bag ({(bag_end_ns - bag_start_ns) / 1e9:.3f} s long)")
    return start, stop


class BagPlayer:
    """Publishers for the selected topics of an open rosbags reader, and the timed replay loop.

    Args:
        node: rclpy node owning the publishers.
        reader: open reader from `sa4depth_core.data.bag_reader.open_bag`.
        topics: topics to play (None = all whose message package is installed).
        clock_hz: publish rosgraph_msgs/Clock on /clock at this rate (0 = off).

    `sent` counts the messages published per topic over every play().
    """

    def __init__(self, node, reader, bag_name: str, topics: list[str] | None = None, clock_hz: float = 0.0):
        self.node, self.reader = node, reader
        by_topic: dict[str, list] = {}
        for conn in reader.connections:
            by_topic.setdefault(conn.topic, []).append(conn)
        missing = sorted(set(topics or ()) - set(by_topic))
        if missing:
            raise InputError(f"{bag_name}: no topic {missing}; the bag has {sorted(by_topic)}")
        self.connections, self.publishers, self.skipped = [], {}, []
        self.sent = Counter()
        for topic in (topics or sorted(by_topic)):
            conns = by_topic[topic]
            types = {c.msgtype for c in conns}
            if len(types) > 1:
                raise InputError(f"{bag_name}: topic {topic} holds several types {sorted(types)}")
            cls = message_class(types.pop())
            if cls is None:
                self.skipped.append(f"{topic} ({conns[0].msgtype})")
                continue
            profiles = [q for c in conns for q in getattr(c.ext, "offered_qos_profiles", [])]
            self.publishers[topic] = node.create_publisher(cls, topic, qos_for(topic, profiles))
            self.connections += conns
        if not self.publishers:
            raise InputError(f"{bag_name}: none of the selected topics has an installed message type "
                             f"(skipped {', '.join(self.skipped)})")
        self.clock_period = 1.0 / clock_hz if clock_hz > 0 else 0.0
        self.clock_pub = None
        if clock_hz > 0:
            Clock = message_class("rosgraph_msgs/msg/Clock")
            if Clock is None:
                raise InputError("--clock needs the rosgraph_msgs package (pip install ros-rosgraph-msgs)")
            self._clock_msg = Clock
            # reliable reaches both reliable and best-effort (/clock's usual) subscribers
            self.clock_pub = node.create_publisher(Clock, CLOCK_TOPIC,
                                                   QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))

    def wait_for_subscribers(self, timeout_s: float, topics: list[str] | None = None) -> bool:
        """Block until the publishers of `topics` (None: all) have a subscriber or `timeout_s`
        passes; True if all have one."""
        unknown = sorted(set(topics or ()) - set(self.publishers))
        if unknown:
            raise InputError(f"--wait-for names topics the player does not play: {unknown}; it plays "
                             f"{sorted(self.publishers)}")
        waited = [self.publishers[t] for t in topics] if topics else list(self.publishers.values())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in waited):
                return True
            time.sleep(0.02)
        return all(p.get_subscription_count() > 0 for p in waited)

    def _publish_clock(self, bag_ns: int) -> None:
        msg = self._clock_msg()
        msg.clock.sec, msg.clock.nanosec = sec_nanosec(bag_ns)
        self.clock_pub.publish(msg)

    def _wait_until(self, wall: float, bag_at) -> None:
        """Sleep until monotonic time `wall`, ticking /clock with bag_at(now) in between."""
        while rclpy.ok():
            now = time.monotonic()
            if now >= wall:
                return
            if self.clock_pub is None:
                time.sleep(min(wall - now, 0.1))
                continue
            self._publish_clock(bag_at(now))
            time.sleep(min(wall - now, self.clock_period))

    def play(self, start_ns: int, stop_ns: int, rate: float) -> int:
        """Publish the messages with bag time in [start_ns, stop_ns) once; returns how many went out."""
        wall0 = time.monotonic()

        def bag_at(wall: float) -> int:
            return start_ns + int((wall - wall0) * rate * 1e9)

        count = 0
        for conn, t, raw in self.reader.messages(self.connections, start=start_ns, stop=stop_ns):
            self._wait_until(wall0 + (t - start_ns) / 1e9 / rate, bag_at)
            if not rclpy.ok():
                break
            if self.clock_pub is not None:
                self._publish_clock(t)
            self.publishers[conn.topic].publish(bytes(raw))
            self.sent[conn.topic] += 1
            count += 1
        return count

    def flush(self, timeout_s: float = 2.0) -> None:
        """Give reliable subscribers up to `timeout_s` to acknowledge the last messages."""
        for pub in self.publishers.values():
            pub.wait_for_all_acked(Duration(seconds=timeout_s))


def sent_summary(player: BagPlayer) -> str:
    """'N messages (topic: n, ...)' over every topic the player publishes, zeros included."""
    counts = {topic: player.sent[topic] for topic in sorted(player.publishers)}
    return f"{sum(counts.values())} messages (" + ", ".join(f"{t}: {n}" for t, n in counts.items()) + ")"


def main(argv: list[str] | None = None) -> int:
    """Command line `sa4depth-play`; returns the process exit code.

    `argv` (without the program name) may end with `--ros-args ...`, as launch_ros appends it to
    every Node's command line: those arguments go to rclpy.init, the others to argparse.
    """
    parser = argparse.ArgumentParser(prog="sa4depth-play", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bag", help="bag directory or .mcap/.db3 file")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    parser.add_argument("--loop", action="store_true", help="play again from the start until interrupted")
    parser.add_argument("--start", type=float, default=0.0, help="skip this many seconds of the bag")
    parser.add_argument("--duration", type=float, default=None, help="play only this many seconds")
    parser.add_argument("--topics", nargs="+", help="play only these topics")
    parser.add_argument("--clock", type=float, nargs="?", const=100.0, default=0.0, metavar="HZ",
                        help="publish /clock (rosgraph_msgs/Clock) at HZ (default 100 when given)")
    parser.add_argument("--delay", type=float, default=0.5, help="seconds to wait before playing (default 0.5)")
    parser.add_argument("--wait-subscribers", type=float, default=0.0, metavar="SECONDS",
                        help="before playing, wait up to SECONDS until every topic (or those of --wait-for) has a "
                             "subscriber")
    parser.add_argument("--wait-for", nargs="+", metavar="TOPIC",
                        help="with --wait-subscribers: wait only for subscribers of these topics")
    argv = ["sa4depth-play"] + list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(remove_ros_args(argv)[1:])
    except RuntimeError as exc:  # rclpy's error for a malformed --ros-args section
        parser.error(f"invalid ROS arguments: {exc}")
    if not args.rate > 0:
        print(f"sa4depth-play: error: --rate must be > 0, got {args.rate}", file=sys.stderr)
        return 2

    ensure_loopback_dds()
    ensure_large_frame_transport()  # recorded best-effort image topics are played best effort
    rclpy.init(args=argv)
    node = rclpy.create_node("sa4depth_play")
    log = node.get_logger()
    player = None
    try:
        with open_bag(args.bag) as reader:
            player = BagPlayer(node, reader, args.bag, args.topics, args.clock)
            if player.skipped:
                log.warning(f"not playing topics whose message package is missing: {', '.join(player.skipped)}")
            start, stop = play_window(reader.start_time, reader.end_time, args.start, args.duration)
            if args.wait_subscribers > 0 and not player.wait_for_subscribers(args.wait_subscribers, args.wait_for):
                log.warning(f"some topics still have no subscriber after {args.wait_subscribers} s; playing anyway")
            time.sleep(max(args.delay, 0.0))
            while rclpy.ok():
                count = player.play(start, stop, args.rate)
                if not rclpy.ok():  # Ctrl-C: rclpy's handler has shut the context down
                    break
                if args.loop:
                    log.info(f"played {args.bag} through ({count} messages), again")
                else:
                    player.flush()
                    break
    except InputError as exc:
        print(f"sa4depth-play: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if player is not None:  # printed: after Ctrl-C the node can no longer log to /rosout
            print(f"sa4depth-play: published {sent_summary(player)} from {args.bag}", flush=True)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
