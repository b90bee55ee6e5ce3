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


class StageHealth:
    """Outcome of the latest attempt at each stage of a frame (e.g. input, depth, odometry,
    outputs). A stage whose latest attempt failed is reported, with its reason and how many
    attempts in a row failed, until an attempt succeeds: no time window, so /diagnostics cannot
    say OK while frames fail, and it recovers by itself. Thread-safe."""

    def __init__(self, levels: dict):
        self._levels = dict(levels)  # stage -> level reported while it fails
        self._failing: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def ok(self, stage: str) -> None:
        with self._lock:
            self._failing.pop(stage, None)

    def failed(self, stage: str, reason: str) -> None:
        with self._lock:
            _, streak = self._failing.get(stage, ("", 0))
            self._failing[stage] = (reason, streak + 1)

    def problems(self) -> list:
        """(level, text) per failing stage, in the order the stages were given."""
        with self._lock:
            failing = dict(self._failing)
        return [(level, f"{stage} failed on the last {failing[stage][1]} attempt(s): {failing[stage][0]}")
                for stage, level in self._levels.items() if stage in failing]


class Counters:
    """Named event counters shared between threads."""

    def __init__(self, names):
        self._counts = dict.fromkeys(names, 0)
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self._counts)


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
