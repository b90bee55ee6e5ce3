"""InlineExecutor: the executor the project's nodes spin in.

Why not rclpy's MultiThreadedExecutor: in the rclpy of Kilted's pip wheels (9.1.x) its spinning
thread re-yields a callback that is queued for the pool but not started yet, submits it again and
loops without waiting, holding the GIL. Measured with perception_node at 96x320 on 2 cores: images
reached the subscription callback 3-4 ms after publishing at the median and up to 2.3 s late, and
the worker's inference slowed down with it; with callbacks run in the spinning thread the same
frames arrived in 0.7 ms (max 8 ms). (Later rclpy releases yield the CPU after each submit.)

So callbacks run in the spinning thread, except those of the callback groups a node names as slow
(loading a model, writing files): they run in a small thread pool, and the spinning thread waits
until such a callback has started before it looks for more work, so nothing is submitted twice.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from rclpy.executors import (
    ConditionReachedException,
    ShutdownException,
    SingleThreadedExecutor,
    TimeoutException,
)


class InlineExecutor(SingleThreadedExecutor):
    """Runs callbacks in the thread that spins, those of `slow_groups` in `threads` pool threads.

    An exception raised by a slow callback is re-raised by the next spin, as rclpy's executors do
    for their own callbacks.
    """

    def __init__(self, slow_groups=(), threads: int = 2, *, context=None):
        super().__init__(context=context)
        self._slow = tuple(slow_groups)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sa4depth-slow-callback")
        self._running: list[Future] = []

    def _spin_once_impl(self, timeout_sec=None, wait_condition=lambda: False) -> None:
        self._raise_finished()
        try:
            handler, entity, _ = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except (ShutdownException, TimeoutException, ConditionReachedException):
            return
        if getattr(entity, "callback_group", None) in self._slow:
            started = threading.Event()
            self._running.append(self._pool.submit(_run_after, started, handler))
            started.wait()
            return
        handler()
        handler.result()  # raises the callback's exception

    def _raise_finished(self) -> None:
        done = [f for f in self._running if f.done()]
        self._running = [f for f in self._running if not f.done()]
        for future in done:
            future.result()

    def shutdown(self, timeout_sec: float | None = None) -> bool:
        """Stop spinning; slow callbacks in progress finish in their threads."""
        stopped = super().shutdown(timeout_sec)
        self._pool.shutdown(wait=False)
        return stopped


def _run_after(started: threading.Event, handler) -> None:
    started.set()
    handler()
    handler.result()
