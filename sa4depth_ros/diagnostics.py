"""/diagnostics without diagnostic_updater (not on PyPI): event-rate and latency windows, and the
DiagnosticArray message. Levels follow diagnostic_msgs: OK, WARN, ERROR."""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


class RateMeter:
    """Events per second over the last `window` seconds (wall clock, so bag replay at any rate and
    sim time do not distort it). Thread-safe: ticks come from callbacks, reads from a timer."""

    def __init__(self, window: float = 5.0):
        self._window = window
        self._times: deque = deque()
        self._lock = threading.Lock()
        self.count = 0

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._times.append(now)
            self.count += 1
            self._trim(now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            if len(self._times) < 2:
                return 0.0
            # n events span n-1 intervals; a stream that stopped decays towards 0 as `now` moves on
            return (len(self._times) - 1) / max(now - self._times[0], 1e-9)

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self._window:
            self._times.popleft()


class LatencyWindow:
    """The last `size` durations in milliseconds and their percentiles."""

    def __init__(self, size: int = 200):
        self._values: deque = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self._values.append(float(ms))

    def percentile(self, q: float) -> float:
        """q in [0, 100]; NaN before the first value."""
        with self._lock:
            values = list(self._values)
        return float(np.percentile(values, q)) if values else float("nan")


def _text(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def make_status(name: str, hardware_id: str, level, message: str, values: dict) -> DiagnosticStatus:
    """One DiagnosticStatus; `values` become KeyValue pairs in insertion order (floats to 4 digits)."""
    return DiagnosticStatus(level=level, name=name, hardware_id=hardware_id, message=message,
                            values=[KeyValue(key=str(k), value=_text(v)) for k, v in values.items()])


def make_array(stamp, statuses: list) -> DiagnosticArray:
    """DiagnosticArray stamped `stamp` (builtin_interfaces/Time)."""
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = list(statuses)
    return msg


def worst_level(problems: list) -> bytes:
    """Highest level among (level, text) problems, OK for none."""
    return max((level for level, _ in problems), default=OK)
