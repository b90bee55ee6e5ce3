"""Progress of a training run: steps, loss, rate and time left, as a tqdm bar when the stream
is a terminal, else as one plain line every few steps (CI logs and files stay short) or at least
once a minute."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable

# Plain lines come every `every` steps but no closer than MIN_LINE_SECONDS, so fast runs stay
# quiet in logs, and no further apart than MAX_LINE_SECONDS, so slow runs do not look stuck.
MIN_LINE_SECONDS = 15.0
MAX_LINE_SECONDS = 60.0


def _is_tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False


def _clock_text(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class TrainProgress:
    """Reports the steps of one training run.

    Args:
        max_steps: step budget (0 = none); max_minutes: wall-clock budget (0 = none). The time
            left is that of whichever budget runs out first at the rate so far.
        start_step: steps done before this run (a resumed run).
        log: receives the plain lines.
        stream: where a bar would draw; a bar only when it is a TTY.
        every: steps between plain lines (at most one per MIN_LINE_SECONDS, at least one per
            MAX_LINE_SECONDS while steps are made).
        clock: monotonic seconds.
    """

    def __init__(self, max_steps: int, max_minutes: float, start_step: int = 0, log: Callable[[str], None] = print,
                 stream=None, every: int = 10, clock: Callable[[], float] = time.monotonic):
        self.max_steps, self.max_seconds = int(max_steps), 60.0 * float(max_minutes)
        self.log, self.every, self.clock = log, max(int(every), 1), clock
        self.start_step = self.step = int(start_step)
        self.started = self._last_line = clock()
        self._line_step = self.start_step  # the step of the last plain line
        self._losses: list[float] = []
        stream = sys.stderr if stream is None else stream
        self.bar = None
        if _is_tty(stream):
            from tqdm import tqdm

            self.bar = tqdm(initial=start_step, desc="train", file=stream, dynamic_ncols=True,
                            bar_format="{desc}: {n_fmt} steps [{elapsed}, {rate_fmt}{postfix}]")

    def status(self) -> dict:
        """{step, loss: mean since the last report (None before a step), steps_per_s, seconds_left: None
        without a budget or a rate, by_steps: whether the step budget is the one that ends the run}."""
        elapsed = self.clock() - self.started
        done = self.step - self.start_step
        rate = done / elapsed if done and elapsed > 0 else 0.0
        by_steps = by_time = None
        if self.max_steps and rate > 0:
            by_steps = max(self.max_steps - self.step, 0) / rate
        if self.max_seconds:
            by_time = max(self.max_seconds - elapsed, 0.0)
        left = [t for t in (by_steps, by_time) if t is not None]
        loss = sum(self._losses) / len(self._losses) if self._losses else None
        return {"step": self.step, "loss": loss, "steps_per_s": rate, "seconds_left": min(left) if left else None,
                "by_steps": bool(self.max_steps) and (by_time is None or (by_steps is not None and by_steps <= by_time))}

    def text(self) -> str:
        """'step 120/500, loss 0.1234, 0.80 steps/s, 7:55 left' (the step budget shown only when it is
        the one that ends the run; parts without a value left out)."""
        s = self.status()
        parts = [f"step {s['step']}" + (f"/{self.max_steps}" if s["by_steps"] else "")]
        if s["loss"] is not None:
            parts.append(f"loss {s['loss']:.4f}")
        parts.append(f"{s['steps_per_s']:.2f} steps/s")
        if s["seconds_left"] is not None:
            parts.append(f"{_clock_text(s['seconds_left'])} left")
        return ", ".join(parts)

    def update(self, step: int, loss: float) -> None:
        """After optimiser step number `step` with training loss `loss`."""
        self.step = step
        self._losses.append(float(loss))
        if self.bar is not None:
            s = self.status()
            left = "" if s["seconds_left"] is None else f", {_clock_text(s['seconds_left'])} left"
            self.bar.set_postfix_str(f"loss {s['loss']:.4f}{left}", refresh=False)
            self.bar.update(1)
            self._losses.clear()
            return
        now = self.clock()
        since = now - self._last_line
        if since >= MAX_LINE_SECONDS or ((step - self.start_step) % self.every == 0 and since >= MIN_LINE_SECONDS):
            self._line()
            self._last_line = now

    def _line(self) -> None:
        self.log(self.text())
        self._losses.clear()
        self._line_step = self.step

    def close(self) -> None:
        """End the bar, or write a last plain line (unless the last one was at this step)."""
        if self.bar is not None:
            self.bar.close()
        elif self.step > self._line_step:
            self._line()
