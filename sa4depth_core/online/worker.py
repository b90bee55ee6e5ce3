"""Running an OnlineLearner in the background: the training thread with its compute budget,
and a feeder that streams recorded sequences (bags, KITTI folders) into the learner."""
from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable

import torch

from ..data.sequence import FrameSequence
from ..errors import InputError
from .learner import EvalOutcome, OnlineLearner

log = logging.getLogger(__name__)


class BackgroundTrainer:
    """Trains `learner` in a daemon thread, evaluating every `learner.options.eval_every` steps.

    Budget: `threads` sets torch's CPU threads (process-wide, so run the trainer in its own
    process next to inference); `duty_cycle` in (0, 1] is the fraction of wall time spent in
    training steps: after a step of t seconds the thread rests t * (1 - d) / d.

    Control contract: `pause()` and `stop()` return only once the step (and the evaluation after
    it) in flight has finished, and no step starts after they return (until `start()`, for a
    pause). A step is begun under the same lock that `pause()` takes, so there is no moment
    where a step can slip in after the caller was told training is paused.

    `on_outcome(EvalOutcome)` runs in the training thread after each evaluation (e.g. to announce
    a deployment); calling pause() or stop() from it does not wait for itself. An unexpected
    exception in a step halts training with the reason in `learner.halted` instead of ending the
    thread.
    """

    # The learner has no signal for "a triplet arrived": the idle thread looks again this often.
    DATA_POLL_S = 0.2

    def __init__(self, learner: OnlineLearner, duty_cycle: float = 1.0, threads: int = 0,
                 on_outcome: Callable[[EvalOutcome], None] | None = None):
        if not 0 < duty_cycle <= 1:
            raise InputError(f"duty_cycle must be in (0, 1], got {duty_cycle}")
        self.learner = learner
        self.duty_cycle = float(duty_cycle)
        self.threads = int(threads)
        self.on_outcome = on_outcome
        self.last_outcome: EvalOutcome | None = None
        self._cond = threading.Condition()
        self._running = False  # start() was called and no pause()/stop() since
        self._stopping = False
        self._busy = False  # a step or evaluation is in flight
        self._steps: deque = deque(maxlen=50)  # monotonic times of recent steps
        self._last_eval_step = learner.step
        self._thread = threading.Thread(target=self._loop, name="sa4depth-online-trainer", daemon=True)
        self._thread.start()

    # -- control --------------------------------------------------------------------------------
    def start(self) -> str:
        """Run (again); clears a halt. Returns a one-line state."""
        self.learner.clear_halt()
        with self._cond:
            if self._stopping:
                return "training stopped"
            self._running = True
            self._cond.notify_all()
        return "training running"

    def pause(self) -> str:
        """Stop training after the step in flight: returns once it (and its evaluation) finished;
        no step starts afterwards until `start()`. Returns a one-line state."""
        with self._cond:
            self._running = False
            self._cond.notify_all()
            self._wait_idle()
            return f"training paused at step {self.learner.step}"

    def stop(self) -> None:
        """End the thread: returns once the step or evaluation in flight finished and the thread
        has ended; no step starts afterwards."""
        with self._cond:
            self._running, self._stopping = False, True
            self._cond.notify_all()
            self._wait_idle()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _wait_idle(self) -> None:
        """Under `_cond`: wait until no step is in flight (unless called from the step itself)."""
        if threading.current_thread() is not self._thread:
            self._cond.wait_for(lambda: not self._busy)

    @property
    def state(self) -> str:
        """'running', 'paused', 'waiting for data', 'halted: <reason>' or 'stopped'."""
        if self._stopping:
            return "stopped"
        if self.learner.halted:
            return f"halted: {self.learner.halted}"
        if not self._running:
            return "paused"
        return "running" if self.learner.ready() else "waiting for data"

    def steps_per_second(self, window: float = 30.0) -> float:
        """Training steps per second over the last `window` seconds (0 when idle)."""
        now = time.monotonic()
        recent = [t for t in list(self._steps) if now - t <= window]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(now - recent[0], 1e-9)

    # -- thread ---------------------------------------------------------------------------------
    def _claim_step(self, rest_until: float) -> bool:
        """Wait until a step may start and mark it in flight; False once stopping."""
        learner = self.learner
        with self._cond:
            while not self._stopping:
                if not self._running:
                    self._cond.wait()
                    continue
                now = time.monotonic()
                if now < rest_until:
                    self._cond.wait(rest_until - now)
                    continue
                if learner.halted or not learner.ready():
                    self._cond.wait(self.DATA_POLL_S)
                    continue
                self._busy = True
                return True
            return False

    def _loop(self) -> None:
        if self.threads > 0:
            torch.set_num_threads(self.threads)
        learner = self.learner
        rest_until = 0.0
        while self._claim_step(rest_until):
            started = time.monotonic()
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - a failed step must not kill the process
                learner.halt(f"training stopped by {type(exc).__name__}: {exc}")
                log.debug(traceback.format_exc())
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            busy = time.monotonic() - started
            rest_until = time.monotonic() + busy * (1.0 - self.duty_cycle) / self.duty_cycle

    def _step(self) -> None:
        """One training step, then an evaluation when one is due."""
        learner = self.learner
        if learner.train_step() is not None:
            self._steps.append(time.monotonic())
        if learner.step - self._last_eval_step >= learner.options.eval_every:
            self._last_eval_step = learner.step
            self.last_outcome = learner.evaluate()
            if self.on_outcome is not None:
                self.on_outcome(self.last_outcome)


def feed_sequence(learner: OnlineLearner, seq: FrameSequence, stop: threading.Event, steps_per_triplet: int = 0,
                  rate_hz: float = 0.0, frames: range | None = None) -> int:
    """Offer the frames of a recorded sequence to the learner, as a camera would.

    Args:
        steps_per_triplet: after a frame completes a triplet, wait until the learner has taken
            this many more training steps (offline fine-tuning: the buffer does not churn faster
            than training uses it). 0 = no waiting. Only waits while the learner can train.
        rate_hz: at most this many frames per second (0 = as fast as possible).
        frames: indices to feed (default: all).
    Returns:
        the number of frames offered (fewer when `stop` was set).
    """
    K = seq.intrinsics()
    fed = 0
    for i in frames if frames is not None else range(len(seq)):
        if stop.is_set():
            break
        started = time.monotonic()
        before = learner.triplets_added
        learner.add_frame(seq.image(i), K, seq.timestamp(i))
        fed += 1
        if steps_per_triplet and learner.triplets_added > before and learner.ready():
            target = learner.step + steps_per_triplet
            while learner.step < target and not stop.is_set() and not learner.halted:
                stop.wait(0.05)
        if rate_hz > 0:
            stop.wait(max(0.0, 1.0 / rate_hz - (time.monotonic() - started)))
    return fed
