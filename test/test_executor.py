"""InlineExecutor with real rclpy on loopback DDS: inputs run in the spinning thread, slow
callback groups in pool threads that never hold the inputs up, each callback runs once, and a
slow callback's exception reaches the spinner."""
import threading

import pytest
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import String
from std_srvs.srv import Trigger

from sa4depth_ros.executor import InlineExecutor, stop_spinning
from sa4depth_ros.qos import reliable_qos


def _matched(pub, timeout=15.0) -> bool:
    """Until `pub` has a subscriber: rclpy offers no event for a match, so the graph is polled."""
    poll = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if pub.get_subscription_count() > 0:
            return True
        poll.wait(0.01)
    return pub.get_subscription_count() > 0


def _answered(future, timeout=15.0) -> bool:
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    return done.wait(timeout)


class _Server:
    """A node with a blocking service in a slow group and a subscription in the default group."""

    def __init__(self, context):
        self.node = rclpy.create_node("executor_server", context=context)
        self.slow = MutuallyExclusiveCallbackGroup()
        self.entered, self.release = threading.Event(), threading.Event()
        self.calls, self.ticks = [], []
        self.changed = threading.Condition()
        self.node.create_service(Trigger, "slow", self._slow, callback_group=self.slow)
        self.node.create_subscription(String, "ticks", self._tick, reliable_qos(20))

    def _tick(self, msg) -> None:
        with self.changed:
            self.ticks.append(threading.get_ident())
            self.changed.notify_all()

    def _slow(self, request, response):
        with self.changed:
            self.calls.append(threading.get_ident())
            self.changed.notify_all()
        self.entered.set()
        self.release.wait(20.0)
        response.success = True
        return response

    def wait(self, predicate, timeout=15.0) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)


@pytest.fixture
def contexts(ros_domain):
    made = []

    def make():
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=ros_domain)
        made.append(context)
        return context
    yield make
    for context in made:
        rclpy.try_shutdown(context=context)


def test_inputs_keep_flowing_in_the_spinning_thread_while_a_slow_callback_runs(contexts):
    server = _Server(contexts())
    executor = InlineExecutor([server.slow], context=server.node.context)
    executor.add_node(server.node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    client_context = contexts()
    caller = rclpy.create_node("executor_client", context=client_context)
    client_executor = SingleThreadedExecutor(context=client_context)
    client_executor.add_node(caller)
    client_spinner = threading.Thread(target=client_executor.spin, daemon=True)
    client_spinner.start()
    pub = caller.create_publisher(String, "ticks", reliable_qos(20))
    client = caller.create_client(Trigger, "slow")
    try:
        assert client.wait_for_service(timeout_sec=15.0)
        assert _matched(pub)
        first = client.call_async(Trigger.Request())
        assert server.entered.wait(15.0)
        for i in range(5):
            pub.publish(String(data=str(i)))
        # the service is still blocked, yet every tick arrives, handled by the spinning thread
        assert server.wait(lambda: len(server.ticks) == 5), f"{len(server.ticks)} of 5 ticks while the service ran"
        assert not first.done()
        assert set(server.ticks) == {spinner.ident}
        assert server.calls[0] != spinner.ident
        server.release.set()
        assert _answered(first) and first.result().success
        # one callback per request: the slow group runs one callback at a time, so a request run
        # twice would be counted before the next request is answered
        for n in (2, 3):
            assert _answered(client.call_async(Trigger.Request())) and len(server.calls) == n
    finally:
        server.release.set()
        # both spinners must have returned before the fixture shuts the contexts down
        stop_spinning(client_executor, client_spinner)
        stop_spinning(executor, spinner)


def test_an_exception_in_a_slow_callback_reaches_the_spinner(contexts):
    node = rclpy.create_node("executor_failing", context=contexts())
    slow = MutuallyExclusiveCallbackGroup()

    def fail():
        raise RuntimeError("slow callback failed")
    node.create_timer(0.05, fail, callback_group=slow)
    executor = InlineExecutor([slow], context=node.context)
    executor.add_node(node)
    try:
        with pytest.raises(RuntimeError, match="slow callback failed"):
            for _ in range(100):  # the timer fires every 50 ms; the failure surfaces at a later spin
                executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown(timeout_sec=1.0)
