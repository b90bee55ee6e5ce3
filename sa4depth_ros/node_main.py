"""The shared `main` of the project's nodes: loopback DDS, SIGINT and SIGTERM as one clean stop,
an InlineExecutor (the node's `slow_callback_groups` in pool threads), exit status 2 with one
reason when the node cannot start."""
from __future__ import annotations

import os
import signal
import sys
import threading
import traceback

import rclpy
import torch
from rclpy.executors import ExternalShutdownException

from sa4depth_core.errors import InputError
from sa4depth_core.infer import select_device

from .executor import InlineExecutor
from .ros_env import ensure_loopback_dds


_SIGNALLED = threading.Event()


def _signal_as_interrupt(signum, frame):
    """The first SIGINT or SIGTERM stops the spin (KeyboardInterrupt in the main thread); later ones
    are ignored, so they cannot break off the shutdown that the first one started.

    The node's own handler replaces rclpy's for SIGINT too: rclpy's shut the context down under
    callbacks and frames in flight (an RCLError from a publish, a take on the dead context), and a
    KeyboardInterrupt raised inside a native call surfaces as another exception (pybind11's
    "Unable to convert call argument" from a subscription take, seen in a CI run of the replay
    launch test, while rclpy.ok() still held): run_node knows from
    _SIGNALLED that such an exception is the stop. The executor still wakes for it: every node
    here has timers (input refresh, diagnostics)."""
    if not _SIGNALLED.is_set():
        _SIGNALLED.set()
        raise KeyboardInterrupt


def torch_device(node, name: str, threads: int) -> torch.device:
    """The device for parameter value `name` (auto/cpu/cuda/cuda:N; a warning if CUDA was asked
    for but is missing), after setting torch's CPU threads to `threads` (0 keeps torch's default)."""
    device, note = select_device(name)
    if note:
        node.get_logger().warning(note)
    if threads:
        torch.set_num_threads(threads)
    return device


def run_node(make_node, node_name: str, args=None) -> int:
    """Build the node with `make_node()` and spin it; returns the exit status (0 on SIGINT/SIGTERM)."""
    ensure_loopback_dds()
    rclpy.init(args=args)
    _SIGNALLED.clear()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _signal_as_interrupt)
    node, executor, status = None, None, 0
    try:
        node = make_node()
        executor = InlineExecutor(node.slow_callback_groups)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except InputError as exc:
        rclpy.logging.get_logger(node_name).fatal(f"cannot start: {exc}")
        status = 2
    except Exception:
        # raised by the stop itself (see _signal_as_interrupt), or after something else shut the
        # context down (a take or publish on the dead context): not a fault
        if rclpy.ok() and not _SIGNALLED.is_set():
            raise
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=0)
        if node is not None and node.shutdown():
            node.destroy_node()
        rclpy.try_shutdown()
    if getattr(node, "exit_at_once", False):
        # a thread is still inside native code that finalisation would abort (ModelLoader.close)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def answering(logger, handler):
    """Service `handler` made to answer every call: an exception becomes success False with the
    reason (left to the executor it would end the node and leave the caller waiting)."""
    def serve(request, response):
        try:
            return handler(request, response)
        except Exception as exc:  # noqa: BLE001
            response.success, response.message = False, f"failed: {type(exc).__name__}: {exc}"
            logger.error(response.message)
            logger.debug(traceback.format_exc())
            return response
    return serve
