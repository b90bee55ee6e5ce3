"""FrameHealth: what became of every frame and of each stage of it, recorded in one place by the
worker, the services and ~/set_pose, and read by /diagnostics and the shutdown line; FrameTimes:
how fast and how late frames go through.

A frame goes through stages (input: decode, check and make pinhole before any work; depth;
outputs; odometry), each contained on its own, so one that raises costs that stage of that frame
only; a failing stage is reported until it next succeeds (StageHealth), and every frame is
counted in exactly one of processed, rejected, failed or dropped.
"""
from __future__ import annotations

import time
import traceback
from typing import Callable

from sa4depth_core.errors import InputError

from .diagnostics import ERROR, WARN, Counters, LatencyWindow, RateMeter, StageHealth

# Stages of a frame and the level /diagnostics reports while one fails. Bad input is the sender's
# problem (WARN); a stage that raised on a valid frame is the node's (ERROR).
STAGES = {"input": WARN, "depth": ERROR, "outputs": ERROR, "odometry": ERROR}
# Counted here; frames_dropped_stale (mailbox) and frames_unpaired (synchroniser) come from those.
# The pipeline counts its odometry stage errors; here only odometry it computed that the node could not publish.
COUNTERS = ("frames_received", "frames_processed", "frames_published", "frames_rejected", "frames_failed",
            "odometry_unpublished")
LOG_THROTTLE_S = 5.0


class FrameHealth:
    """Frame counts (COUNTERS), the stages failing now and the newest problem of any kind.

    Args:
        logger: the node's logger (rclpy RcutilsLogger).
        live: whether the node's context is still up; once SIGINT shut it down, a stage failing
            under the frame in progress is the shutdown itself: counted, not logged.
    """

    def __init__(self, logger, live: Callable[[], bool]):
        self._logger, self._live = logger, live
        self._counts = Counters(COUNTERS)
        self._stages = StageHealth(STAGES)
        self.last_problem = ""  # kept as history in diagnostics

    def count(self, name: str) -> None:
        self._counts.add(name)

    def ok(self, stage: str) -> None:
        self._stages.ok(stage)

    def failed(self, stage: str, exc: BaseException | str, counter: str | None = None) -> None:
        """A stage's failure: an InputError is a rejected frame (WARN), anything else an error of
        the node (ERROR, with the traceback at debug level); `counter` counts the frame's fate."""
        if counter:
            self._counts.add(counter)
        if not self._live():
            return
        if isinstance(exc, InputError):
            text = f"frame rejected: {exc}"
            self._logger.warning(text, throttle_duration_sec=LOG_THROTTLE_S)
        else:
            text = f"{stage} failed: {exc}" if isinstance(exc, str) else f"{stage} failed: {type(exc).__name__}: {exc}"
            self._logger.error(text, throttle_duration_sec=LOG_THROTTLE_S)
            if isinstance(exc, BaseException):
                self._logger.debug(traceback.format_exc())
        self._stages.failed(stage, text)
        self.last_problem = text

    def problem(self, text: str) -> None:
        """A problem outside the frames (a refused ~/set_pose): logged and kept as the newest."""
        self.last_problem = text
        self._logger.warning(text)

    def problems(self) -> list:
        """(level, text) per failing stage."""
        return self._stages.problems()

    def snapshot(self) -> dict:
        return self._counts.snapshot()


class FrameTimes:
    """Input and output rates, latency from arrival to published depth, and the pipeline's own time
    per frame (wall clock windows: bag replay at any rate and sim time do not distort them)."""

    def __init__(self):
        self._in_rate, self._out_rate = RateMeter(), RateMeter()
        self._latency, self._core_ms = LatencyWindow(), LatencyWindow()

    def arrived(self) -> None:
        self._in_rate.tick()

    def published(self, arrived: float, core_ms: float) -> None:
        """A frame that arrived at monotonic time `arrived` has its depth out; the pipeline took `core_ms`."""
        self._out_rate.tick()
        self._latency.add(1e3 * (time.monotonic() - arrived))
        self._core_ms.add(core_ms)

    def values(self) -> dict:
        return {"input_rate_hz": self._in_rate.rate(), "output_rate_hz": self._out_rate.rate(),
                "latency_ms_p50": self._latency.percentile(50), "latency_ms_p95": self._latency.percentile(95),
                "inference_ms_p50": self._core_ms.percentile(50)}
