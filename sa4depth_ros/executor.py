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

Only public rclpy API (the same in Humble, Jazzy and Kilted): the executor implements the methods
rclpy documents for custom executors (spin_once, spin_once_until_future_complete, work from
wait_for_ready_callbacks) and its own spin_until_future_complete, because rclpy's calls the public
spin_once_until_future_complete up to Jazzy but a private method from Kilted on.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from rclpy.executors import (
    ConditionReachedException,
    Executor,
    ShutdownException,
    TimeoutException,
)


def stop_spinning(executor: Executor, spinner: threading.Thread, timeout: float = 30.0) -> None:
    """Shut `executor` down and wait until `spinner`, the thread spinning it, has returned.

    Only then may its nodes or context be destroyed: rcl segfaults when a wait set it is waiting on
    loses its node or context (seen on loaded machines when the wait outlived a 1 s shutdown).
    Raises RuntimeError when the thread is still spinning after `timeout` seconds.
    """
    executor.shutdown(timeout_sec=timeout)
    spinner.join(timeout=timeout)
    if spinner.is_alive():
        raise RuntimeError(f"the thread spinning {type(executor).__name__} did not stop within {timeout:g} s")


def _never() -> bool:
    # one function object: wait_for_ready_callbacks keeps its pending work while its arguments repeat
    return False


class InlineExecutor(Executor):
    """Runs callbacks in the thread that spins, those of `slow_groups` in `threads` pool threads.

    An exception raised by a slow callback is re-raised by the next spin, as rclpy's executors do
    for their own callbacks.
    """

    def __init__(self, slow_groups=(), threads: int = 2, *, context=None):
        super().__init__(context=context)
        self._slow = tuple(slow_groups)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sa4depth-slow-callback")
        self._running: list[Future] = []
        self._stopped = False

    def spin_once(self, timeout_sec: float | None = None) -> None:
        """Wait up to `timeout_sec` (None: forever) for one callback and run or start it."""
        self._run_next(timeout_sec, _never)

    def spin_once_until_future_complete(self, future, timeout_sec: float | None = None) -> None:
        """spin_once that also returns when `future` (an rclpy Future) is done."""
        future.add_done_callback(lambda _: self.wake())
        self._run_next(timeout_sec, future.done)

    def spin_until_future_complete(self, future, timeout_sec: float | None = None) -> None:
        """Run callbacks until `future` is done or cancelled, `timeout_sec` passed (None or
        negative: no limit), the executor shut down or its context ended."""
        future.add_done_callback(lambda _: self.wake())
        deadline = None if timeout_sec is None or timeout_sec < 0 else time.monotonic() + timeout_sec
        while self.context.ok() and not self._stopped and not (future.done() or future.cancelled()):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            self._run_next(remaining, future.done)

    def _run_next(self, timeout_sec: float | None, condition) -> None:
        self._raise_finished()
        try:
            handler, entity, _ = self.wait_for_ready_callbacks(timeout_sec, None, condition)
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
        self._stopped = True
        stopped = super().shutdown(timeout_sec)
        self._pool.shutdown(wait=False)
        return stopped


def _run_after(started: threading.Event, handler) -> None:
    started.set()
    handler()
    handler.result()
