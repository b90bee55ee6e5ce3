"""The frame worker: subscription callbacks hand frames to a one-slot mailbox that never waits,
and one thread takes the newest and processes it, so a slow frame drops stale ones (counted)
instead of queueing them."""
from __future__ import annotations

import threading
from typing import Callable


class LatestFrame:
    """One-slot mailbox between callbacks and the worker: `put` never waits and replaces an item
    the worker has not taken yet (drop-oldest, counted in `dropped`)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._closed = False
        self.dropped = 0

    def put(self, item) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float):
        """The newest item, or None after `timeout` seconds or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class FrameWorker:
    """A daemon thread running `handle(*frame)` for the newest frame `put` into its mailbox."""

    def __init__(self, handle: Callable, name: str):
        self._mailbox = LatestFrame()
        self._handle = handle
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, *frame) -> None:
        """Hand over a frame; never waits (a frame the worker has not taken yet is dropped)."""
        self._mailbox.put(frame)

    @property
    def dropped(self) -> int:
        """Frames replaced in the mailbox by a newer one before the worker took them."""
        return self._mailbox.dropped

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Take no new frame; the one in progress finishes."""
        self._stop.set()
        self._mailbox.close()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the thread to end; True when it has."""
        self._thread.join(timeout=timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            frame = self._mailbox.take(timeout=0.2)
            if frame is not None:
                self._handle(*frame)
