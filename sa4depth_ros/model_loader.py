"""ModelLoader: models loaded and smoke-tested in a guarded, time-limited worker thread, so a
checkpoint that hangs, exhausts memory or raises costs its caller an answer, never the node."""
from __future__ import annotations

import os
import queue
import threading
import time

import torch

from sa4depth_core.errors import CheckpointError, InputError
from sa4depth_core.loaded_model import LoadedModel, load_checked_model

MAX_STUCK_LOADS = 2
# Loads and network builds run at this nice value (Linux schedules threads on their own), so that
# on a CPU the frames already use fully they take what the frames leave instead of half of it.
BACKGROUND_NICE = 10


def _lower_priority() -> None:
    """Make the calling thread a background one (where the OS allows it; elsewhere nothing)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (AttributeError, OSError):
        pass


def in_background(fn, *args):
    """fn(*args) in a thread of its own at background priority; its result, or its exception."""
    outcome: dict = {}

    def run():
        _lower_priority()
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="sa4depth-build", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome.pop("error")
    return outcome["value"]


class ModelLoader:
    """Loads and smoke-tests models (`load_checked_model`) in a daemon worker thread, waiting at
    most a timeout: `load` returns a model or raises CheckpointError with the reason, whatever the
    loading does (MemoryError, a FIFO that never opens, a hung network file system).

    One worker serves every load (threads do not pile up, and the memory a load frees is reused
    by the next in the same malloc arena). A load that overruns is abandoned with its worker
    (which ends once the load returns, if ever) and the next load gets a new worker; while
    MAX_STUCK_LOADS workers are stuck, loads are refused at once instead of piling up. `close`
    releases a waiting caller and lets a load in progress end before the process does.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._cond = threading.Condition()
        self._closed = False
        self._jobs: queue.SimpleQueue | None = None  # the current worker's
        self._stuck: list[tuple[threading.Thread, str]] = []

    @staticmethod
    def _serve(jobs: queue.SimpleQueue) -> None:
        _lower_priority()
        for job in iter(jobs.get, None):
            job()

    def load(self, path: str | None, height: int, width: int, timeout: float) -> LoadedModel:
        name = path or "the untrained model"
        outcome: dict = {}

        def job():
            try:
                outcome["model"] = load_checked_model(path, self.device, height, width)
            except Exception as exc:  # noqa: BLE001 - every failure becomes the caller's answer
                outcome["error"] = exc
            with self._cond:
                outcome["done"] = True
                self._cond.notify_all()

        with self._cond:
            self._stuck = [(t, p) for t, p in self._stuck if t.is_alive()]
            if len(self._stuck) >= MAX_STUCK_LOADS:
                raise CheckpointError(f"not loading {name}: {len(self._stuck)} earlier loads "
                                      f"({', '.join(p for _, p in self._stuck)}) are still stuck")
            if self._jobs is None:
                self._jobs = queue.SimpleQueue()
                self._worker = threading.Thread(target=self._serve, args=(self._jobs,), name="sa4depth-model-load",
                                                daemon=True)
                self._worker.start()
            self._jobs.put(job)
            self._cond.wait_for(lambda: "done" in outcome or self._closed, timeout)
            if "done" not in outcome:
                self._jobs.put(None)  # the abandoned worker ends after this load, if it ever returns
                self._jobs = None
                self._stuck.append((self._worker, name))
                raise CheckpointError("the node is shutting down" if self._closed else
                                      f"{name}: loading did not finish within {timeout:g} s (a FIFO, a hung file "
                                      "system?); abandoned")
        # The error's traceback holds job's frame, which holds `outcome`: emptying it breaks that
        # cycle, so the failed model is freed now rather than at some later garbage collection
        # (each huge-size reload grew the node by ~50 MB until this).
        error, model = outcome.pop("error", None), outcome.pop("model", None)
        outcome.clear()
        if isinstance(error, InputError):
            raise error
        if error is not None:
            detail = str(error).strip().splitlines()[0] if str(error).strip() else "no detail"
            raise CheckpointError(f"{name}: cannot be loaded ({type(error).__name__}: {detail})") from error
        return model

    def close(self, timeout: float) -> bool:
        """Release a waiting caller, end the worker after its load and wait up to `timeout` seconds
        for loads in progress; True when no thread is left inside one.

        Why wait: a daemon thread still inside torch when the interpreter finalises is ended by
        pthread_exit, whose forced unwinding through torch's noexcept frames aborts the process
        (SIGABRT, "terminate called without an active exception": 10 of 16 SIGINT/SIGTERM within
        0.6 s of a ~/reload_model call)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            workers = [t for t, _ in self._stuck]
            if self._jobs is not None:
                self._jobs.put(None)
                workers.append(self._worker)
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(deadline - time.monotonic(), 0.0))
        return not any(worker.is_alive() for worker in workers)


def swap_model(loader: ModelLoader, pipeline, lock: threading.Lock, s) -> LoadedModel:
    """Load and check the model of settings `s`, build its networks while frames still run, then
    swap them into `pipeline` (sa4depth_core.pipeline.PerceptionPipeline) under `lock` in an
    instant (building there stopped output for ~2 s). On any failure the pipeline keeps the
    model it had, whole."""
    loaded = loader.load(s.checkpoint or None, s.input_height, s.input_width, s.reload_timeout)
    nets = in_background(pipeline.networks_for, loaded)
    with lock:
        previous, previous_nets = pipeline.loaded, pipeline.nets
        try:
            pipeline.set_model(loaded, nets)
        except Exception:
            pipeline.set_model(previous, previous_nets)  # never leave a half-swapped pipeline
            raise
    return loaded
