"""InlineExecutor relies on public rclpy API only, and rclpy's future-based spinning keeps its
behaviour: input callbacks in the spinning thread, slow groups in pool threads.

test_executor.py covers spin() and spin_once(); these cover spin_until_future_complete and
spin_once_until_future_complete, which rclpy routes through a private method since Kilted.
"""
import ast
import threading
import time
from pathlib import Path

import pytest
import rclpy
import rclpy.executors
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.task import Future
from std_msgs.msg import String

from sa4depth_ros import executor as executor_module
from sa4depth_ros.executor import InlineExecutor
from sa4depth_ros.qos import reliable_qos

SOURCE = Path(executor_module.__file__)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_rclpy_name_is_used_or_overridden():
    tree = ast.parse(SOURCE.read_text())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("rclpy") for alias in node.names]
    assert not [n for n in imported if _private(n)], imported
    assert not [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and any(_private(part) for part in (node.module or "").split("."))]
    # private names the module defines itself (methods, attributes, helpers) are its own business
    own = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    own |= {t.attr for node in ast.walk(tree) if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Attribute)}
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute) and _private(node.attr)}
    assert used <= own, f"private attributes of other objects: {sorted(used - own)}"
    # ...as long as none of them shadows one of rclpy's executors
    rclpy_private = {name for cls in (rclpy.executors.Executor, rclpy.executors.SingleThreadedExecutor)
                     for name in vars(cls) if _private(name)}
    methods = {name for name, value in vars(InlineExecutor).items() if callable(value)}
    assert not (methods & rclpy_private), f"overrides rclpy internals: {sorted(methods & rclpy_private)}"
    assert InlineExecutor.__mro__[1] is rclpy.executors.Executor


class _Node:
    """A subscription in the default group and a timer in a slow group that blocks until released
    and then completes `future`."""

    def __init__(self, context):
        self.node = rclpy.create_node("executor_api", context=context)
        self.slow = MutuallyExclusiveCallbackGroup()
        self.future = Future()
        self.entered, self.release = threading.Event(), threading.Event()
        self.slow_thread, self.ticks = None, []
        self.timer = self.node.create_timer(0.01, self._slow, callback_group=self.slow)
        self.node.create_subscription(String, "ticks", lambda m: self.ticks.append(threading.get_ident()),
                                      reliable_qos(20))

    def _slow(self):
        self.timer.cancel()
        self.slow_thread = threading.get_ident()
        self.entered.set()
        self.release.wait(20.0)
        self.future.set_result("done")


@pytest.fixture
def context(ros_domain):
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    yield context
    rclpy.try_shutdown(context=context)


def test_spin_until_future_complete_keeps_inputs_inline_while_a_slow_callback_runs(context):
    server = _Node(context)
    executor = InlineExecutor([server.slow], context=context)
    executor.add_node(server.node)
    publisher_node = rclpy.create_node("executor_api_pub", context=context)
    pub = publisher_node.create_publisher(String, "ticks", reliable_qos(20))
    expected_ticks = 5

    def feed():
        # once the slow callback blocks, ticks must still reach the spinning thread
        if not server.entered.wait(20.0):
            return
        for i in range(expected_ticks):
            pub.publish(String(data=str(i)))
        deadline = time.monotonic() + 20.0
        while len(server.ticks) < expected_ticks and time.monotonic() < deadline:
            time.sleep(0.01)
        server.release.set()

    feeder = threading.Thread(target=feed, daemon=True)
    try:
        deadline = time.monotonic() + 20.0
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert pub.get_subscription_count() > 0
        feeder.start()
        executor.spin_until_future_complete(server.future, timeout_sec=30.0)
        assert server.future.done() and server.future.result() == "done"
        assert len(server.ticks) == expected_ticks
        assert set(server.ticks) == {threading.get_ident()}
        assert server.slow_thread not in (None, threading.get_ident())
    finally:
        server.release.set()
        feeder.join(timeout=5.0)
        executor.shutdown(timeout_sec=1.0)


def test_spin_until_future_complete_returns_on_timeout_and_on_a_done_future(context):
    node = rclpy.create_node("executor_api_idle", context=context)
    executor = InlineExecutor(context=context)
    executor.add_node(node)
    try:
        pending = Future()
        executor.spin_until_future_complete(pending, timeout_sec=0.2)
        assert not pending.done()
        finished = Future()
        node.create_timer(0.01, lambda: finished.done() or finished.set_result(1))
        executor.spin_once_until_future_complete(finished, timeout_sec=10.0)
        executor.spin_until_future_complete(finished, timeout_sec=10.0)
        assert finished.result() == 1
    finally:
        executor.shutdown(timeout_sec=1.0)
