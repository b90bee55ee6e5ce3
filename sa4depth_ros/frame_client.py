"""FrameClient: the other end of a perception node, for tests, benchmarks and quick checks.

It publishes images with their CameraInfo, records what the node publishes (with the wall time of
arrival), calls its services and sets its parameters, all in a private rclpy context spun by a
background thread, so it can live inside a test process next to other rclpy users.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import ListParameters, SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from .camera_info import K_to_camera_info
from .executor import stop_spinning
from .image_codec import rgb_to_compressed, rgb_to_msg
from .perception_node import NODE_NAME, TOPICS
from .qos import qos_from_string, reliable_qos
from .stamps import stamp_msg
from .tf_out import TF_QOS, TFMessage


class FrameClient:
    """Publishes `image` / `camera_info` and subscribes to the node's outputs in `namespace`.

    With `compressed` ("jpeg" or "png") images go out as CompressedImage on `<image>/compressed`,
    as image_transport's compressed plugin publishes them. `camera_qos` ('reliable', 'sensor_data')
    is how images and CameraInfo go out, as a camera driver would offer them. Received messages are
    kept per topic as (arrival monotonic time, message), newest last, at most `keep` per topic.
    """

    def __init__(self, domain_id: int, namespace: str = "", topics=tuple(TOPICS), tf: bool = True,
                 diagnostics: bool = True, keep: int = 200, name: str = "sa4depth_frame_client",
                 image_topic: str = "image", camera_info_topic: str = "camera_info", compressed: str = "",
                 camera_qos: str = "reliable"):
        self.namespace = "/" + namespace.strip("/") if namespace.strip("/") else ""
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self._cond = threading.Condition()
        self._received: dict[str, list] = defaultdict(list)
        self._counts: dict[str, int] = defaultdict(int)
        self._keep = keep
        self.compressed = compressed
        camera = qos_from_string(camera_qos, depth=5)
        self.image_pub = (self.node.create_publisher(CompressedImage, self.topic(image_topic) + "/compressed",
                                                     camera) if compressed
                          else self.node.create_publisher(Image, self.topic(image_topic), camera))
        self.info_pub = self.node.create_publisher(CameraInfo, self.topic(camera_info_topic), camera)
        self._subscriptions = {
            name: self.node.create_subscription(TOPICS[name], self.topic(name), self._recorder(name), reliable_qos(10))
            for name in topics}
        if tf and TFMessage is not None:
            self._subscriptions["/tf"] = self.node.create_subscription(TFMessage, "/tf", self._recorder("/tf"), TF_QOS)
        if diagnostics:
            self._subscriptions["/diagnostics"] = self.node.create_subscription(
                DiagnosticArray, "/diagnostics", self._recorder("/diagnostics"), 10)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._spinner.start()

    def topic(self, name: str) -> str:
        """`name` resolved in the client's namespace (absolute names stay as they are)."""
        return name if name.startswith("/") else f"{self.namespace}/{name}"

    def service(self, name: str) -> str:
        """A service of the perception node in the client's namespace (absolute names stay as they are)."""
        return name if name.startswith("/") else f"{self.namespace}/{NODE_NAME}/{name}"

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # noqa: BLE001 - the context was shut down under the spinner
            pass

    def _recorder(self, name: str):
        def record(msg):
            with self._cond:
                queue = self._received[name]
                queue.append((time.monotonic(), msg))
                del queue[:-self._keep]
                self._counts[name] += 1
                self._cond.notify_all()
        return record

    def close(self, timeout: float = 30.0) -> None:
        """Stop the spinner (`stop_spinning`), then destroy the node and its context."""
        stop_spinning(self._executor, self._spinner, timeout)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    # -- waiting ------------------------------------------------------------------------------
    def wait_for(self, predicate, timeout: float):
        """Poll `predicate()` (under the receive lock) until it is truthy; returns it or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                remaining = deadline - time.monotonic()
                if value or remaining <= 0:
                    return value or None
                self._cond.wait(min(remaining, 0.1))

    def messages(self, name: str) -> list:
        with self._cond:
            return [msg for _, msg in self._received[name]]

    def arrivals(self, name: str) -> list:
        """(monotonic arrival time, message) pairs kept for `name`, oldest first."""
        with self._cond:
            return list(self._received[name])

    def count(self, name: str) -> int:
        """Messages received on `name` since the start or the last clear(), kept or not."""
        with self._cond:
            return self._counts[name]

    def clear(self) -> None:
        with self._cond:
            self._received.clear()
            self._counts.clear()

    def wait_connected(self, timeout: float = 20.0, info: bool = True, outputs=("depth/image",)) -> bool:
        """True once the node subscribes to our image (and camera_info) topics and publishes on
        each of `outputs` to us: discovery runs both ways, and a reliable volatile message sent
        before the match would be lost."""
        pubs = [self.image_pub] + ([self.info_pub] if info else [])
        subs = [self._subscriptions[name] for name in outputs]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in pubs) and all(s.get_publisher_count() > 0 for s in subs):
                return True
            time.sleep(0.05)
        return False

    def warm_up(self, rgb: np.ndarray, K: np.ndarray | None, timeout: float = 60.0, every: float = 2.0,
                start: float = 1.0) -> float | None:
        """Send a frame every `every` seconds (stamps start, start + every, ...) until a depth
        image comes back; returns the stamp in seconds of the frame that made it, None on timeout.

        A best-effort reader drops samples from writers it has not matched yet, and the writer
        cannot tell when that is, so the first frames of a new connection may vanish."""
        deadline = time.monotonic() + timeout
        seconds = start
        while time.monotonic() < deadline:
            stamp = self.send(rgb, K, seconds)
            wait = min(every, max(deadline - time.monotonic(), 0.0))
            if self.with_stamp("depth/image", stamp, wait) is not None:
                return seconds
            seconds += every
        return None

    def with_stamp(self, name: str, stamp, timeout: float):
        """The first message on `name` whose header stamp equals `stamp`, or None."""
        def find():
            for _, msg in self._received[name]:
                if msg.header.stamp == stamp:
                    return msg
            return None
        return self.wait_for(find, timeout)

    # -- sending ------------------------------------------------------------------------------
    def send(self, rgb: np.ndarray, K: np.ndarray | None, seconds: float, frame_id: str = "camera_optical",
             encoding: str = "rgb8"):
        """Publish an (H,W,3) uint8 RGB image (as `encoding`, or compressed when the client is) and,
        if K is given, its CameraInfo with the same header. Returns the stamp (builtin_interfaces/Time)."""
        header = Header(stamp=stamp_msg(seconds), frame_id=frame_id)
        if K is not None:
            self.info_pub.publish(K_to_camera_info(K, rgb.shape[1], rgb.shape[0], header))
        self.image_pub.publish(rgb_to_compressed(rgb, header, self.compressed) if self.compressed
                               else rgb_to_msg(rgb, header, encoding))
        return header.stamp

    def send_messages(self, image: Image | None, info: CameraInfo | None) -> None:
        """Publish hand-made messages (e.g. broken ones)."""
        if info is not None:
            self.info_pub.publish(info)
        if image is not None:
            self.image_pub.publish(image)

    # -- node control -------------------------------------------------------------------------
    def call(self, srv_type, name: str, request=None, timeout: float = 30.0):
        """Call service `name` (see `service`) and return its response; TimeoutError when it is
        not there or does not answer within `timeout` seconds."""
        client = self.node.create_client(srv_type, self.service(name))
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"service {self.service(name)} is not available")
            answered = threading.Event()
            future = client.call_async(request if request is not None else srv_type.Request())
            future.add_done_callback(lambda _: answered.set())
            if not answered.wait(timeout):
                raise TimeoutError(f"service {self.service(name)} did not answer in {timeout} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def trigger(self, name: str, timeout: float = 30.0) -> tuple[bool, str]:
        """Call a std_srvs/Trigger service of the node; returns (success, message)."""
        response = self.call(Trigger, name, Trigger.Request(), timeout)
        return response.success, response.message

    def set_parameters(self, timeout: float = 10.0, **values) -> list[tuple[bool, str]]:
        """Set node parameters (dots in names written as '__'); returns (successful, reason) each."""
        request = SetParameters.Request(
            parameters=[Parameter(k.replace("__", "."), value=v).to_parameter_msg() for k, v in values.items()])
        return [(r.successful, r.reason) for r in self.call(SetParameters, "set_parameters", request, timeout).results]

    def declared_parameters(self, timeout: float = 10.0) -> set[str]:
        """Names of every parameter the node has declared."""
        return set(self.call(ListParameters, "list_parameters", ListParameters.Request(), timeout).result.names)

    def diagnostics(self, timeout: float = 5.0, after: float | None = None, predicate=None,
                    component: str = "perception") -> dict | None:
        """Newest status of a node in the client's namespace from /diagnostics ('<node>: `component`',
        e.g. 'trainer' for trainer_node) as a dict of its values plus 'level' (int) and 'message',
        optionally received after monotonic time `after` and satisfying `predicate`."""
        def find():
            for arrived, msg in reversed(self._received["/diagnostics"]):
                if after is not None and arrived < after:
                    return None
                for status in msg.status:
                    if status.name.endswith(f": {component}") and self.namespace in "/" + status.name:
                        found = {kv.key: kv.value for kv in status.values}
                        found.update(level=int.from_bytes(status.level, "little"), message=status.message)
                        if predicate is None or predicate(found):
                            return found
            return None
        return self.wait_for(find, timeout)
