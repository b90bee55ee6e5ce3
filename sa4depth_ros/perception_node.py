"""perception_node: depth, point cloud and visual odometry from one camera, one depth pass per frame.

Scheduling: subscription callbacks only put the newest (image, CameraInfo) pair into a one-slot
mailbox (an unprocessed older pair is dropped and counted); a worker thread takes it, runs
`sa4depth_core.pipeline.PerceptionPipeline` and publishes. Input callbacks run in the spinning
thread; services, ~/set_pose and the diagnostics timer are `slow_callback_groups` run by pool
threads (see executor.InlineExecutor), and they touch the pipeline only between frames.

Hostile input: a frame goes through stages (input: decode, check and make pinhole before any
work; depth; outputs; odometry), each contained on its own, so one that raises costs that stage of
that frame only; /diagnostics reports a failing stage until it next succeeds (StageHealth), and
every frame is counted in exactly one of processed, rejected, failed or dropped. Models load in a
guarded, time-limited thread (ModelLoader), and every service call gets an answer.

Geometry: images become pinhole images with their intrinsics by the CameraInfo's definition
(camera_info.PinholeFrames: P for rectified images, K with OpenCV undistortion for raw ones,
binning and region of interest honoured); the camera's place on the robot comes from TF when it
has the camera frame under base_frame, else from base_to_camera (tf_lookup).
The topics, parameters and services are listed in docs/ros_interface.md.
"""
from __future__ import annotations

import math
import queue
import sys
import threading
import time
import traceback
from collections import Counter, deque

import cv2
import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from sa4depth_core.errors import CheckpointError, InputError
from sa4depth_core.infer import LoadedModel, load_checked_model
from sa4depth_core.odometry import Tracking
from sa4depth_core.pipeline import PerceptionPipeline
from sa4depth_core.pipeline_options import pose_from_xyz_rpy
from sa4depth_core.stamps import stamp_seconds

from . import params
from .camera_info import K_to_camera_info, PinholeFrames, distortion_note
from .cloud import depth_to_cloud_msg
from .diagnostics import (
    ERROR,
    WARN,
    Counters,
    LatencyWindow,
    RateMeter,
    StageHealth,
    make_array,
    make_status,
    worst_level,
)
from .image_codec import array_to_msg, colorize_depth, decode_rgb, depth_to_msg
from .input_subscription import INPUT_REFRESH_S, CameraInput
from .node_main import run_node, torch_device
from .pose_msgs import pose_msg, pose_to_transform_stamped, pose_with_covariance
from .qos import qos_from_string, reliable_qos
from .ros_env import LARGE_FRAMES_PROFILE, share_file
from .tf_lookup import TransformLookup
from .tf_out import TransformPublisher

NODE_NAME = "perception_node"
FALLBACK_FRAME = "camera_optical_frame"
# Output topics (relative: they follow the node's namespace and remappings). depth/image and
# depth/camera_info are siblings, as image_transport's camera publishers and subscribers pair them.
TOPICS = {"depth/image": Image, "depth/camera_info": CameraInfo, "depth/color": Image, "points": PointCloud2,
          "odom": Odometry, "path": Path}
SERVICES = ("~/reset", "~/save_trajectory", "~/reload_model")
SET_POSE_TOPIC = "~/set_pose"  # geometry_msgs/PoseWithCovarianceStamped, as robot_localization's set_pose
LOG_THROTTLE_S = 5.0
# Stages of a frame and the level /diagnostics reports while one fails. Bad input is the sender's
# problem (WARN); a stage that raised on a valid frame is the node's (ERROR).
STAGES = {"input": WARN, "depth": ERROR, "outputs": ERROR, "odometry": ERROR}
# Counted here; frames_dropped_stale (mailbox) and frames_unpaired (synchroniser) come from those.
# The pipeline counts its odometry stage errors; here only odometry it computed that the node could not publish.
COUNTERS = ("frames_received", "frames_processed", "frames_published", "frames_rejected", "frames_failed",
            "odometry_unpublished")
# `tracking` in /diagnostics while there is no odometry.Tracking state to show
TRACKING_NO_FRAME = "none"  # no frame processed yet
TRACKING_OFF = "off"  # the last frame got no odometry: switched off, or its odometry stage failed
MAX_STUCK_LOADS = 2
LOST_BEST_EFFORT_FRAMES = (
    "the camera publishes its images best effort, and Fast DDS never delivers a best-effort sample larger than "
    "the SENDER's shared-memory segment (512 KiB by default; a 640x480 RGB frame is 0.9 MB): publish the images "
    "reliably, or start the camera's process with FASTDDS_DEFAULT_PROFILES_FILE={profile}")
RELATIVE_WARNING = ("scale_mode relative: depth, points, odom and TF are in network units, NOT metres (every "
                    "consumer reads them as metres); set scale_mode camera_height with the camera_height, or fixed")


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


class ModelLoader:
    """Loads and smoke-tests models (`load_checked_model`) in a daemon worker thread, waiting at
    most a timeout: `load` returns a model or raises CheckpointError with the reason, whatever the
    loading does (MemoryError, a FIFO that never opens, a hung network file system).

    One worker serves every load (threads do not pile up, and the memory a load frees is reused
    by the next in the same malloc arena). A load that overruns is abandoned with its worker (which ends once the load returns, if ever) and
    the next load gets a new worker; while MAX_STUCK_LOADS workers are stuck, loads are refused
    at once instead of piling up. Daemon threads do not hold up the process's exit, and `close`
    releases a waiting caller.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._cond = threading.Condition()
        self._closed = False
        self._jobs: queue.SimpleQueue | None = None  # the current worker's
        self._stuck: list[tuple[threading.Thread, str]] = []

    @staticmethod
    def _serve(jobs: queue.SimpleQueue) -> None:
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


class PerceptionNode(Node):
    """See the module docstring. Raises InputError at construction for unusable parameters or a
    checkpoint that does not load; a missing checkpoint gives an untrained model and a warning."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.settings = params.declare(self)
        s = self.settings
        self.device = torch_device(self, s.device, s.threads)
        self._loader = ModelLoader(self.device)
        loaded = self._loader.load(s.checkpoint or None, s.input_height, s.input_width, s.reload_timeout)
        self._announce_model(loaded)
        self.pipeline = PerceptionPipeline(loaded, self.device, s.pipeline_options())
        self._pipeline_lock = threading.Lock()
        self._reloading = threading.Lock()
        # what the pipeline was last configured with (worker thread only): settings, extrinsic
        self._applied, self._applied_extrinsic = s, self.pipeline.options.base_from_camera
        self._pinhole = PinholeFrames(s.rectified_images, s.undistort)

        self._slot = LatestFrame()
        self._in_rate, self._out_rate = RateMeter(), RateMeter()
        self._latency, self._core_ms = LatencyWindow(), LatencyWindow()
        self._counts = Counters(COUNTERS)
        self._health = StageHealth(STAGES)
        self._last_problem = ""  # the newest problem of any frame, kept as history in diagnostics
        self._waiting_note = ""
        self._distortion_note = ""
        self._last = {"tracking": TRACKING_NO_FRAME, "lost_count": 0, "lost_streak": 0,
                      "scale": self.pipeline.describe_scale(), "units": self._units(), "input_size": "none",
                      "status": self.pipeline.status(), "warnings": self.pipeline.warnings()}
        self._path: deque = deque(maxlen=s.path_max_size)
        self._path_stamp: float | None = None  # image time of the last path message
        self._origin_note = "first frame"
        self._extrinsic_note = "none yet"
        self._camera_tf_sent: dict[str, str] = {}  # camera frame -> the parent this node published for it
        self._camera_tf_note = "off"
        self._warned_frame = False
        self._started = time.monotonic()
        self._last_pair = -1e9
        self._unpaired_seen = 0
        self._arrived_at_pair = Counter()  # messages arrived per stream as of the last pair

        out_image_qos = qos_from_string(s.qos_output, depth=2)
        out_qos = qos_from_string(s.qos_output, depth=10)
        self._pubs = {
            name: self.create_publisher(kind, name, out_image_qos if kind in (Image, PointCloud2) else out_qos)
            for name, kind in TOPICS.items() if name != "points" or s.publish_points}
        self._tf = TransformPublisher(self)
        self._tf_in = TransformLookup(self)

        # Inputs stay in the default group (run by the spinning thread). Loading a model takes
        # seconds: its own group keeps reset/save, set_pose and diagnostics responsive meanwhile.
        # A compressed stream is the image topic's image_transport sibling: the remapped name
        # plus /compressed.
        compressed = s.image_transport == "compressed"
        self._input = CameraInput(
            self, self.resolve_topic_name("image") + "/compressed" if compressed else "image",
            None if s.intrinsics_given else "camera_info", self._on_frame, s.qos_image, slop=s.sync_slop,
            image_type=CompressedImage if compressed else Image, log=self.get_logger().info)
        # follows the camera's offered reliability (qos.image auto); in the spinning thread, as
        # the subscriptions' callbacks, so none runs while they are replaced
        self.create_timer(INPUT_REFRESH_S, self._input.refresh, clock=Clock(clock_type=ClockType.STEADY_TIME))
        control, reload = MutuallyExclusiveCallbackGroup(), MutuallyExclusiveCallbackGroup()
        self.slow_callback_groups = (control, reload)
        handlers = {"~/reset": (self._srv_reset, control), "~/save_trajectory": (self._srv_save, control),
                    "~/reload_model": (self._srv_reload, reload)}
        for name in SERVICES:
            handler, group = handlers[name]
            self.create_service(Trigger, name, self._answering(handler), callback_group=group)
        self.create_subscription(PoseWithCovarianceStamped, SET_POSE_TOPIC, self._on_set_pose, reliable_qos(5),
                                 callback_group=control)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # steady time: on a replay's /clock, which jumps back when the bag loops, the timer would stop
        self.create_timer(s.diagnostics_period, self._publish_diagnostics, callback_group=control,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="sa4depth-perception", daemon=True)
        self._worker.start()
        mode = "intrinsics parameter" if s.intrinsics_given else "CameraInfo"
        self.get_logger().info(
            f"ready: network {self.pipeline.network_size[1]}x{self.pipeline.network_size[0]} on {self.device}, "
            f"inference {self.pipeline.backend}, model {loaded.model_id}, scale {self.pipeline.describe_scale()}, "
            f"input {self._input_note(s)}, intrinsics from {mode}, "
            f"extrinsic from TF ({self._tf_in.backend}) else base_to_camera, TF out via {self._tf.backend}")
        if s.scale_mode == "relative":
            self.get_logger().warning(RELATIVE_WARNING)

    # -- lifecycle ------------------------------------------------------------------------------
    def shutdown(self) -> bool:
        """Stop the worker (the frame in progress finishes first), release a reload that waits for
        a load and let a load in progress end, and log the frame counts in one line. Returns False
        when the worker is still inside a frame after 30 s: its publishers are in use, so the node
        must not be destroyed. `exit_at_once` tells main a load is still running after
        reload_timeout (ModelLoader.close says why the process must then skip finalisation)."""
        self._stop.set()
        self._slot.close()
        self.exit_at_once = not self._loader.close(self.settings.reload_timeout)
        # a reload past its load builds networks (native code) and swaps them in: let it finish
        if self._reloading.acquire(timeout=self.settings.reload_timeout):
            self._reloading.release()
        else:
            self.exit_at_once = True
        self._worker.join(timeout=30.0)
        self._say("info", "frame counts at shutdown: " + " ".join(
            f"{key}={value}" for key, value in self.frame_counts().items()))
        if self.exit_at_once:
            self._say("warning", f"a model load is still running {self.settings.reload_timeout:g} s after shutdown; "
                                 "exiting without waiting for it")
        if self._worker.is_alive():
            self._say("error", "the perception worker is still inside a frame 30 s after shutdown; exiting without "
                               "destroying the node")
            return False
        return True

    def _say(self, level: str, text: str) -> None:
        """Log `text`; once the context is shut down (SIGINT), to stderr only: the node's log
        would also try /rosout, which then fails with a message of its own."""
        if self.context.ok():
            getattr(self.get_logger(), level)(text)
        else:
            print(f"[{level.upper()}] [{self.get_name()}]: {text}", file=sys.stderr, flush=True)

    def frame_counts(self) -> dict:
        """Every frame the node was handed, by fate: received = dropped_stale + rejected + failed +
        processed (+ the one or two in the mailbox or in progress); published <= processed.
        frames_unpaired counts images and CameraInfo messages the synchroniser discarded without a
        partner (fallback synchroniser only; 'n/a' with message_filters). odometry_failed counts
        frames whose odometry failed: the pipeline's count of its odometry stage errors (as of the
        last frame; the pipeline is the one that counts them) plus odometry this node computed but
        could not publish."""
        counts = self._counts.snapshot()
        unpaired = self._input.dropped
        received = self._input.received
        return {"frames_received": counts["frames_received"], "frames_processed": counts["frames_processed"],
                "frames_published": counts["frames_published"], "frames_dropped_stale": self._slot.dropped,
                "frames_rejected": counts["frames_rejected"], "frames_failed": counts["frames_failed"],
                "frames_unpaired": "n/a" if unpaired is None else unpaired,
                "images_arrived": received["image"], "camera_infos_arrived": received["camera_info"],
                "odometry_failed": self._last["status"]["odometry_stage_errors"] + counts["odometry_unpublished"]}

    def _announce_model(self, loaded) -> None:
        self._model = {"model_id": loaded.model_id, "model_source": loaded.source, "trained": loaded.trained}
        if not loaded.trained:
            self.get_logger().warning(
                "no checkpoint given: running RANDOMLY INITIALISED networks, depth and odometry are meaningless; "
                "set the 'checkpoint' parameter to a trained model")
        if not loaded.features_trained and self.settings.odometry_refine:
            self.get_logger().warning(
                f"model {loaded.model_id}: its feature network was never trained, so odometry is PoseNet only "
                "(no refinement); fit the features with sa4depth-train --train refiner")

    def _input_note(self, s) -> str:
        """The input topic and how its frames become pinhole images (log and diagnostics)."""
        kind = "rectified: P" if s.rectified_images else f"raw: K, D {'undistorted' if s.undistort else 'refused'}"
        return f"{self._input.topics[0]} ({s.image_transport}, {kind})"

    def _units(self) -> str:
        """What a unit of depth and odometry is now (diagnostics key `units`)."""
        if self.pipeline.options.scale_mode == "relative":
            return "network units (scale_mode relative, not metres)"
        return "m" if self.pipeline.scale.ready else "network units (no ground plane fitted yet, not metres)"

    # -- input ----------------------------------------------------------------------------------
    def _on_frame(self, image, info) -> None:
        self._counts.add("frames_received")
        self._last_pair = time.monotonic()
        self._arrived_at_pair = self._input.received
        self._in_rate.tick()
        self._slot.put((image, info, time.monotonic()))

    def _work(self) -> None:
        while not self._stop.is_set():
            frame = self._slot.take(timeout=0.2)
            if frame is not None:
                self._process(*frame)

    def _stage_failed(self, stage: str, exc: BaseException | str, counter: str | None = None) -> None:
        """Record a stage's failure: an InputError is a rejected frame (WARN), anything else an error
        of the node (ERROR, with the traceback at debug level)."""
        if not self.context.ok():  # SIGINT shut the context down under the frame: the shutdown, not a fault
            return
        if isinstance(exc, InputError):
            text = f"frame rejected: {exc}"
            self.get_logger().warning(text, throttle_duration_sec=LOG_THROTTLE_S)
        else:
            text = f"{stage} failed: {exc}" if isinstance(exc, str) else f"{stage} failed: {type(exc).__name__}: {exc}"
            self.get_logger().error(text, throttle_duration_sec=LOG_THROTTLE_S)
            if isinstance(exc, BaseException):
                self.get_logger().debug(traceback.format_exc())
        if counter:
            self._counts.add(counter)
        self._health.failed(stage, text)
        self._last_problem = text

    def _header(self, image, s) -> Header:
        frame = s.camera_frame or image.header.frame_id
        if not frame:
            frame = FALLBACK_FRAME
            if not self._warned_frame:
                self.get_logger().warning(f"input images have an empty frame_id: using '{FALLBACK_FRAME}' "
                                          "(set the camera_frame parameter)")
                self._warned_frame = True
        problem = params.frames_problem(s.odom_frame, s.base_frame, frame, s.publish_camera_tf)
        if problem:  # the image's frame_id (camera_frame empty): the parameters' rule, per frame
            raise InputError(f"{problem} (the image's frame_id; set camera_frame)")
        return Header(stamp=image.header.stamp, frame_id=frame)

    def _pinhole_frames(self, s) -> PinholeFrames:
        """The frame maker for the settings (worker thread; its remap tables survive other changes)."""
        if (self._pinhole.rectified, self._pinhole.undistort) != (s.rectified_images, s.undistort):
            self._pinhole = PinholeFrames(s.rectified_images, s.undistort)
        return self._pinhole

    def _extrinsic(self, s, camera: str) -> np.ndarray:
        """(4,4) pose of the camera frame in base_frame: from TF when it connects them, else from
        the base_to_camera parameter."""
        T = self._tf_in.lookup(s.base_frame, camera)
        if T is not None:
            self._extrinsic_note = f"tf ({s.base_frame} -> {camera})"
            return T
        self._extrinsic_note = f"base_to_camera parameter (TF has no {s.base_frame} -> {camera})"
        return pose_from_xyz_rpy(s.base_to_camera)

    def _apply_settings(self, s, extrinsic: np.ndarray) -> None:
        """Bring the pipeline up to settings `s` and the camera's extrinsic (worker thread, under
        the lock)."""
        if s is self._applied and np.array_equal(extrinsic, self._applied_extrinsic):
            return
        if s.threads and s.threads != self._applied.threads:
            torch.set_num_threads(s.threads)
        self.pipeline.configure(s.pipeline_options(extrinsic))
        if s.path_max_size != self._applied.path_max_size:
            self._path = deque(self._path, maxlen=s.path_max_size)
        self._applied, self._applied_extrinsic = s, extrinsic

    def _process(self, image, info, received: float) -> None:
        """One frame, stage by stage; each stage's exception is contained and reported."""
        s = self.settings
        try:  # everything that can refuse the frame, before any work is done on it
            rgb, K = self._pinhole_frames(s)(decode_rgb(image), info, s.K())
            header = self._header(image, s)
        except Exception as exc:  # noqa: BLE001 - a frame must not end the node
            self._stage_failed("input", exc, "frames_rejected" if isinstance(exc, InputError) else "frames_failed")
            return
        self._health.ok("input")
        self._note_distortion(info, s.rectified_images)
        extrinsic = self._extrinsic(s, header.frame_id)
        # Publishing under the lock keeps a reset or model swap from landing between a frame's
        # computation and its path/TF messages.
        with self._pipeline_lock:
            try:
                self._apply_settings(s, extrinsic)
                result = self.pipeline.process(rgb, K, stamp_seconds(header.stamp))
                if not (math.isfinite(result.scale) and result.scale > 0):
                    raise RuntimeError(f"depth scale {result.scale} is not a positive number")
            except InputError as exc:
                self._stage_failed("input", exc, "frames_rejected")
                return
            except Exception as exc:  # noqa: BLE001
                self._stage_failed("depth", exc, "frames_failed")
                return
            self._counts.add("frames_processed")
            self._health.ok("depth")
            self._publish_depth(result, rgb, header, s, received)
            self._publish_odometry_of(result, header, s)
            self._last = {**self._odometry_state(result.odometry), "scale": self.pipeline.describe_scale(),
                          "units": self._units(), "input_size": f"{rgb.shape[1]}x{rgb.shape[0]}",
                          "status": self.pipeline.status(), "warnings": self.pipeline.warnings()}

    @staticmethod
    def _odometry_state(odo) -> dict:
        """tracking (a Tracking, or TRACKING_OFF), lost_count and lost_streak of a frame's
        odometry.OdometryOutput or None."""
        if odo is None:
            return {"tracking": TRACKING_OFF, "lost_count": 0, "lost_streak": 0}
        return {"tracking": odo.tracking, "lost_count": odo.lost_count, "lost_streak": odo.lost_streak}

    def _note_distortion(self, info, rectified: bool) -> None:
        """Warn once per distinct lens distortion that rectified frames do not apply it."""
        note = distortion_note(info, rectified) if info is not None else ""
        if note and note != self._distortion_note:
            self.get_logger().warning(note)
        self._distortion_note = note

    def _publish_depth(self, result, rgb, header: Header, s, received: float) -> None:
        """depth/image, depth/camera_info (the intrinsics of the depth image, the same that built
        points), the camera's mounting on /tf_static when asked and, while subscribed,
        depth/color and points (stage 'outputs')."""
        try:
            h, w = result.depth.shape
            self._pubs["depth/image"].publish(depth_to_msg(result.depth, header))
            self._counts.add("frames_published")
            self._out_rate.tick()
            self._latency.add(1e3 * (time.monotonic() - received))
            self._core_ms.add(result.ms_depth + result.ms_odometry)
            self._pubs["depth/camera_info"].publish(K_to_camera_info(result.K, w, h, header))
            if self._pubs["depth/color"].get_subscription_count():
                self._pubs["depth/color"].publish(array_to_msg(colorize_depth(result.depth), header, "bgr8"))
            points = self._pubs.get("points")
            if points is not None and points.get_subscription_count():
                small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
                points.publish(depth_to_cloud_msg(result.depth, result.K, header, s.points_stride, rgb=small))
            if s.publish_camera_tf:
                self._publish_camera_tf(s, header)
        except Exception as exc:  # noqa: BLE001
            self._stage_failed("outputs", exc)
        else:
            self._health.ok("outputs")

    def _publish_camera_tf(self, s, header: Header) -> None:
        """base_frame -> camera frame (base_to_camera) on /tf_static, once per frame pair, unless
        TF already has another parent for the camera frame: a frame with two parents breaks TF."""
        camera = header.frame_id
        parent, ours = self._tf_in.parent(camera), self._camera_tf_sent.get(camera)
        if parent is not None and parent != ours:
            note = f"not published: '{camera}' already has parent '{parent}' in TF"
            if note != self._camera_tf_note:
                self.get_logger().warning(f"publish_camera_tf: {note}; leaving the camera's mounting to it")
            self._camera_tf_note = note
            return
        if ours != s.base_frame:
            self._tf.send_static(pose_to_transform_stamped(
                pose_from_xyz_rpy(s.base_to_camera), s.base_frame, camera, header.stamp))
            self._camera_tf_sent[camera] = s.base_frame
            self._camera_tf_note = f"published {s.base_frame} -> {camera}"

    def _publish_odometry_of(self, result, header: Header, s) -> None:
        """odom, path and TF of a frame (stage 'odometry'): never a non-finite number."""
        odo = result.odometry
        if result.odometry_error:
            self._stage_failed("odometry", result.odometry_error)  # the pipeline counted it
            return
        if odo is None:
            self._health.ok("odometry")
            return
        pose, pose_covariance = odo.pose, odo.pose_covariance
        arrays = (pose, pose_covariance, odo.twist, odo.twist_covariance)
        if not all(np.isfinite(a).all() for a in arrays):
            self._stage_failed("odometry", "non-finite pose, twist or covariance (not published)",
                               "odometry_unpublished")
            return
        try:
            self._publish_odometry(pose, pose_covariance, odo, header, s)
        except Exception as exc:  # noqa: BLE001
            self._stage_failed("odometry", exc, "odometry_unpublished")
        else:
            self._health.ok("odometry")

    def _publish_odometry(self, pose: np.ndarray, pose_covariance: np.ndarray, odo, header: Header, s) -> None:
        msg = Odometry()
        msg.header = Header(stamp=header.stamp, frame_id=s.odom_frame)
        msg.child_frame_id = s.base_frame
        msg.pose.pose = pose_msg(pose)
        msg.pose.covariance = pose_covariance.reshape(36).tolist()
        msg.twist.twist.linear.x, msg.twist.twist.linear.y, msg.twist.twist.linear.z = (float(v) for v in odo.twist[:3])
        msg.twist.twist.angular.x, msg.twist.twist.angular.y, msg.twist.twist.angular.z = (
            float(v) for v in odo.twist[3:])
        msg.twist.covariance = odo.twist_covariance.reshape(36).tolist()
        self._pubs["odom"].publish(msg)

        self._path.append(PoseStamped(header=msg.header, pose=msg.pose.pose))
        stamp = stamp_seconds(header.stamp)
        # a stamp that went backwards (bag loop, reset) publishes at once
        due = self._path_stamp is None or not 0.0 <= stamp - self._path_stamp < s.path_period
        if due and self._pubs["path"].get_subscription_count():
            self._pubs["path"].publish(Path(header=msg.header, poses=list(self._path)))
            self._path_stamp = stamp
        if s.publish_tf:
            self._tf.send(pose_to_transform_stamped(pose, s.odom_frame, s.base_frame, header.stamp))

    # -- parameters -----------------------------------------------------------------------------
    def _on_set_parameters(self, changed) -> SetParametersResult:
        try:
            new = self.settings.updated(changed)
        except Exception as exc:  # noqa: BLE001 - InputError with the reason; anything else is refused too
            return SetParametersResult(successful=False, reason=str(exc) if isinstance(exc, InputError)
                                       else f"{type(exc).__name__}: {exc}")
        if new.scale_mode == "relative" != self.settings.scale_mode:
            self.get_logger().warning(RELATIVE_WARNING)
        self.settings = new  # the worker applies it before its next frame
        return SetParametersResult(successful=True)

    # -- services and ~/set_pose ----------------------------------------------------------------
    def _answering(self, handler):
        """`handler` made to answer every call: an exception becomes success False with the reason
        (left to the executor it would end the node and leave the caller waiting)."""
        def serve(request, response):
            try:
                return handler(request, response)
            except Exception as exc:  # noqa: BLE001
                response.success, response.message = False, f"failed: {type(exc).__name__}: {exc}"
                self.get_logger().error(response.message)
                self.get_logger().debug(traceback.format_exc())
                return response
        return serve

    def _restart(self, note: str, pose=None, covariance=None) -> None:
        """Restart the trajectory at the identity, or at the base `pose` with `covariance`."""
        with self._pipeline_lock:
            self.pipeline.reset(pose, covariance)
            self._path.clear()
            self._path_stamp = None
            self._origin_note = note

    def _srv_reset(self, request, response):
        self._restart("~/reset")
        response.success, response.message = True, "trajectory restarted at the identity"
        self.get_logger().info(response.message)
        return response

    def _on_set_pose(self, msg) -> None:
        """~/set_pose: restart the trajectory at the given base pose and covariance (odom_frame)."""
        s = self.settings
        try:
            if msg.header.frame_id not in ("", s.odom_frame):
                raise InputError(f"the pose is in frame '{msg.header.frame_id}'; give it in '{s.odom_frame}'")
            pose, covariance = pose_with_covariance(msg.pose, "its pose")
        except InputError as exc:
            self._last_problem = f"set_pose ignored: {exc}"
            self.get_logger().warning(self._last_problem)
            return
        x, y, z = pose[:3, 3]
        self._restart(f"set_pose at ({x:.3f}, {y:.3f}, {z:.3f}), stamp {stamp_seconds(msg.header.stamp):.3f}",
                      pose, covariance)
        self.get_logger().info(f"trajectory restarted by {self._origin_note}")

    def _srv_save(self, request, response):
        stem = "trajectory_" + time.strftime("%Y%m%d-%H%M%S")
        try:
            with self._pipeline_lock:
                count = len(self.pipeline.trajectory()[0])
                kitti, tum = self.pipeline.save_trajectory(self.settings.trajectory_dir, stem)
        except (InputError, OSError) as exc:
            response.success, response.message = False, f"trajectory not saved: {exc}"
        else:
            response.success, response.message = True, f"saved {count} camera poses to {kitti} and {tum}"
        self.get_logger().info(response.message)
        return response

    def _srv_reload(self, request, response):
        with self._reloading:  # shutdown waits for it: a swap must not meet a destroyed node
            return self._reload(response)

    def _reload(self, response):
        """Load and check the model, build its networks while frames still run, then swap them
        in under the pipeline lock in an instant (building there stopped output for ~2 s)."""
        s = self.settings
        try:
            if self._stop.is_set():
                raise InputError("the node is shutting down")
            loaded = self._loader.load(s.checkpoint or None, s.input_height, s.input_width, s.reload_timeout)
            nets = self.pipeline.networks_for(loaded)
            with self._pipeline_lock:
                previous, previous_nets = self.pipeline.loaded, self.pipeline.nets
                try:
                    self.pipeline.set_model(loaded, nets)
                except Exception:
                    self.pipeline.set_model(previous, previous_nets)  # never leave a half-swapped pipeline
                    raise
                self._announce_model(loaded)
        except Exception as exc:  # noqa: BLE001 - InputError with the reason, or anything set_model raised
            reason = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
            response.success, response.message = False, f"kept model {self._model['model_id']}: {reason}"
            self._say("info" if self._stop.is_set() else "error", response.message)
            return response
        response.success, response.message = True, (f"now running model {loaded.model_id} from {loaded.source} "
                                                     f"on {self.pipeline.backend}")
        self.get_logger().info(response.message)
        return response

    # -- diagnostics ----------------------------------------------------------------------------
    def _check_inputs(self) -> str:
        """Why no frames are paired, when the graph or the synchroniser can tell; '' otherwise."""
        now = time.monotonic()
        unpaired = self._input.dropped
        grew = unpaired is not None and unpaired > self._unpaired_seen
        self._unpaired_seen = unpaired or 0
        received = self._input.received
        infos_alone = received["camera_info"] - self._arrived_at_pair["camera_info"]
        images_since = received["image"] - self._arrived_at_pair["image"]
        if self._input.backend in ("image_only", "waiting") or now - max(self._last_pair, self._started) < 3.0:
            return ""
        image_topic, info_topic = self._input.topics
        image_pubs, info_pubs = (len(p) for p in self._input.publishers())
        if image_pubs and not info_pubs:
            return (f"nothing publishes {info_topic} for the images on {image_topic}: publish CameraInfo or set the "
                    "'intrinsics' parameter (fx, fy, cx, cy); waiting")
        if image_pubs and infos_alone >= 3 and not images_since:
            # no count in the text: the warning is logged once while it stays the same
            return f"CameraInfos keep arriving on {info_topic} but no image on {image_topic}: " + (
                LOST_BEST_EFFORT_FRAMES.format(profile=share_file(*LARGE_FRAMES_PROFILE))
                if self._input.image_best_effort else "the images are lost before they reach the node")
        if grew:
            return (f"images on {image_topic} do not pair with CameraInfo on {info_topic} within sync_slop "
                    f"{self.settings.sync_slop} s: do their stamps match?")
        return ""

    def _publish_diagnostics(self) -> None:
        try:
            status = self._diagnostic_status()
        except Exception as exc:  # noqa: BLE001 - a timer callback that raises would end the node
            self.get_logger().error(f"diagnostics failed: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=LOG_THROTTLE_S)
            return
        self._diag_pub.publish(make_array(self.get_clock().now().to_msg(), [status]))

    def _diagnostic_status(self):
        s = self.settings
        last = self._last
        problems = []
        if not self._model["trained"]:
            problems.append((WARN, "untrained model: depth and odometry are meaningless"))
        note = self._check_inputs()
        if note and note != self._waiting_note:
            self.get_logger().warning(note)
        self._waiting_note = note
        if note:
            problems.append((WARN, note))
        problems += self._health.problems()
        tracking = last["tracking"]
        if isinstance(tracking, Tracking) and tracking.failed:
            problems.append((ERROR if last["lost_streak"] >= 10 else WARN,
                             f"odometry {tracking} for {last['lost_streak']} frame(s)"))
        problems += [(WARN, text) for text in last["warnings"]]
        if s.publish_camera_tf and self._camera_tf_note.startswith("not published"):
            problems.append((WARN, f"publish_camera_tf: {self._camera_tf_note}"))
        values = {
            **self._model,
            "device": str(self.device),
            "scale_mode": s.scale_mode,
            "scale": last["scale"],
            "units": last["units"],
            "input_rate_hz": self._in_rate.rate(),
            "output_rate_hz": self._out_rate.rate(),
            "latency_ms_p50": self._latency.percentile(50),
            "latency_ms_p95": self._latency.percentile(95),
            "inference_ms_p50": self._core_ms.percentile(50),
            **self.frame_counts(),
            "last_problem": self._last_problem or "none",
            "input_size": last["input_size"],
            "network_size": "{1}x{0}".format(*self.pipeline.network_size),
            "input": self._input_note(s),
            "odometry": "on" if s.odometry_enabled else "off",
            "tracking": tracking,
            "lost_count": last["lost_count"],
            "odom_origin": self._origin_note,
            **last["status"],
            "extrinsic": self._extrinsic_note,
            "camera_tf": self._camera_tf_note if s.publish_camera_tf else "off",
            "sync": self._input.backend,
            "input_qos": self._input.describe(),
            "tf": str(self._tf.backend),
            "tf_in": str(self._tf_in.backend),
        }
        level = worst_level(problems)
        message = "; ".join(text for _, text in problems) if problems else "ok"
        name = f"{self.get_fully_qualified_name().lstrip('/')}: perception"
        return make_status(name, str(self.device), level, message, values)


def main(args=None) -> int:
    """Console script `perception_node`; returns the exit status (0 on SIGINT/SIGTERM)."""
    return run_node(PerceptionNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
