"""perception_node: depth, point cloud and visual odometry from one camera, one depth pass per frame.

Scheduling: subscription callbacks only hand the newest (image, CameraInfo) pair to the frame
worker (frame_worker: a stale pair is dropped and counted); its thread runs
`sa4depth_core.pipeline.PerceptionPipeline` and publishes (perception_outputs). Input callbacks run
in the spinning thread; services, ~/set_pose and the diagnostics timer are `slow_callback_groups`
run by pool threads (see executor.InlineExecutor), and they touch the pipeline only between frames.

Hostile input: a frame goes through stages, each contained on its own and recorded in one
FrameHealth (frame_health says how). Models load in a guarded, time-limited thread
(model_loader), and every service call gets an answer.

Geometry: images become pinhole images with their intrinsics by the CameraInfo's definition
(camera_info.PinholeFrames: P for rectified images, K with OpenCV undistortion for raw ones,
binning and region of interest honoured); the camera's place on the robot comes from TF when it
has the camera frame under base_frame, else from base_to_camera (tf_lookup).
The topics, parameters and services are listed in docs/ros_interface.md.
"""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from sa4depth_core.errors import InputError
from sa4depth_core.odometry import Tracking
from sa4depth_core.pipeline import PerceptionPipeline
from sa4depth_core.stamps import stamp_seconds

from . import params
from .diagnostics import ERROR, WARN, make_array, make_status, worst_level
from .frame_health import LOG_THROTTLE_S, FrameHealth, FrameTimes
from .frame_input import FrameInput
from .frame_worker import FrameWorker
from .input_subscription import INPUT_REFRESH_S, CameraInput
from .input_watch import InputWatch
from .model_loader import ModelLoader, swap_model
from .node_main import answering, run_node, torch_device
from .perception_outputs import TOPICS, PerceptionOutputs, units
from .pose_msgs import pose_with_covariance
from .qos import reliable_qos
from .tf_lookup import TransformLookup

__all__ = ["NODE_NAME", "TOPICS", "SERVICES", "SET_POSE_TOPIC", "PerceptionNode", "main"]

NODE_NAME = "perception_node"
SERVICES = ("~/reset", "~/save_trajectory", "~/reload_model")
SET_POSE_TOPIC = "~/set_pose"  # geometry_msgs/PoseWithCovarianceStamped, as robot_localization's set_pose
# `tracking` in /diagnostics while there is no odometry.Tracking state to show
TRACKING_NO_FRAME = "none"  # no frame processed yet
TRACKING_OFF = "off"  # the last frame got no odometry: switched off, or its odometry stage failed
RELATIVE_WARNING = ("scale_mode relative: depth, points, odom and TF are in network units, NOT metres (every "
                    "consumer reads them as metres); set scale_mode camera_height with the camera_height, or fixed")


class PerceptionNode(Node):
    """See the module docstring. Raises InputError at construction for unusable parameters or a
    checkpoint that does not load; a missing checkpoint gives an untrained model and a warning."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.settings = s = params.declare(self)
        self.device = torch_device(self, s.device, s.threads)
        self._loader = ModelLoader(self.device)
        loaded = self._loader.load(s.checkpoint or None, s.input_height, s.input_width, s.reload_timeout)
        self._announce_model(loaded)
        self.pipeline = PerceptionPipeline(loaded, self.device, s.pipeline_options())
        self._pipeline_lock = threading.Lock()
        self._reloading = threading.Lock()
        # what the pipeline was last configured with (worker thread only): settings, extrinsic
        self._applied, self._applied_extrinsic = s, self.pipeline.options.base_from_camera

        self._health, self._times = FrameHealth(self.get_logger(), self.context.ok), FrameTimes()
        # the newest frame's state, for diagnostics (before one: the pipeline's at start)
        self._last = {"tracking": TRACKING_NO_FRAME, "lost_count": 0, "lost_streak": 0,
                      "scale": self.pipeline.describe_scale(), "input_size": "none",
                      "units": units(s.scale_mode != "relative" and self.pipeline.scale.ready, s.scale_mode),
                      "status": self.pipeline.status(), "warnings": self.pipeline.warnings()}
        self._notes = {"origin": "first frame", "waiting": ""}
        self._tf_in = TransformLookup(self)
        self._frame_input = FrameInput(self.get_logger(), self._tf_in, s)
        self._outputs = PerceptionOutputs(self, s, self._tf_in, self._health)

        # Inputs stay in the default group (run by the spinning thread). Loading a model takes
        # seconds: its own group keeps reset/save, set_pose and diagnostics responsive meanwhile.
        # A compressed stream is the image topic's image_transport sibling: the remapped name
        # plus /compressed.
        compressed = s.image_transport == "compressed"
        self._input = CameraInput(
            self, self.resolve_topic_name("image") + "/compressed" if compressed else "image",
            None if s.intrinsics_given else "camera_info", self._on_frame, s.qos_image, slop=s.sync_slop,
            image_type=CompressedImage if compressed else Image, log=self.get_logger().info)
        self._input_watch = InputWatch(self._input)
        # follows the camera's offered reliability (qos.image auto); in the spinning thread, as
        # the subscriptions' callbacks, so none runs while they are replaced
        self.create_timer(INPUT_REFRESH_S, self._input.refresh, clock=Clock(clock_type=ClockType.STEADY_TIME))
        control, reload = MutuallyExclusiveCallbackGroup(), MutuallyExclusiveCallbackGroup()
        self.slow_callback_groups = (control, reload)
        handlers = {"~/reset": (self._srv_reset, control), "~/save_trajectory": (self._srv_save, control),
                    "~/reload_model": (self._srv_reload, reload)}
        for name in SERVICES:
            handler, group = handlers[name]
            self.create_service(Trigger, name, answering(self.get_logger(), handler), callback_group=group)
        self.create_subscription(PoseWithCovarianceStamped, SET_POSE_TOPIC, self._on_set_pose, reliable_qos(5),
                                 callback_group=control)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # steady time: on a replay's /clock, which jumps back when the bag loops, the timer would stop
        self.create_timer(s.diagnostics_period, self._publish_diagnostics, callback_group=control,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._worker = FrameWorker(self._process, "sa4depth-perception")
        self._worker.start()
        self.get_logger().info(
            f"ready: network {self.pipeline.network_size[1]}x{self.pipeline.network_size[0]} on {self.device}, "
            f"inference {self.pipeline.backend}, model {loaded.model_id}, scale {self.pipeline.describe_scale()}, "
            f"input {self._input_note(s)}, intrinsics from "
            f"{'intrinsics parameter' if s.intrinsics_given else 'CameraInfo'}, "
            f"extrinsic from TF ({self._tf_in.backend}) else base_to_camera, TF out via {self._outputs.tf.backend}")
        if s.scale_mode == "relative":
            self.get_logger().warning(RELATIVE_WARNING)

    # -- lifecycle ------------------------------------------------------------------------------
    def shutdown(self) -> bool:
        """Stop the worker (the frame in progress finishes first), release a reload that waits for
        a load and let a load in progress end, and log the frame counts in one line. Returns False
        when the worker is still inside a frame after 30 s: its publishers are in use, so the node
        must not be destroyed. `exit_at_once` tells main a load is still running after
        reload_timeout (ModelLoader.close says why the process must then skip finalisation)."""
        timeout = self.settings.reload_timeout
        self._worker.stop()
        self.exit_at_once = not self._loader.close(timeout)
        # a reload past its load builds networks (native code) and swaps them in: let it finish
        if self._reloading.acquire(timeout=timeout):
            self._reloading.release()
        else:
            self.exit_at_once = True
        stopped = self._worker.join(timeout=30.0)
        if stopped:
            self.pipeline.close()  # its depth thread (parallel mode) is idle once no frame runs
        self._say("info", "frame counts at shutdown: " + " ".join(
            f"{key}={value}" for key, value in self.frame_counts().items()))
        if self.exit_at_once:
            self._say("warning", f"a model load is still running {timeout:g} s after shutdown; exiting without "
                                 "waiting for it")
        if not stopped:
            self._say("error", "the perception worker is still inside a frame 30 s after shutdown; exiting without "
                               "destroying the node")
        return stopped

    def _say(self, level: str, text: str) -> None:
        """Log `text`; once the context is shut down (SIGINT), to stderr only: the node's log
        would also try /rosout, which then fails with a message of its own."""
        if not self.context.ok():
            print(f"[{level.upper()}] [{self.get_name()}]: {text}", file=sys.stderr, flush=True)
        elif level == "error":  # one call per level: rclpy refuses a second severity at one call site
            self.get_logger().error(text)
        elif level == "warning":
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)

    def frame_counts(self) -> dict:
        """Every frame the node was handed, by fate: received = dropped_stale + rejected + failed +
        processed (+ the one or two in the mailbox or in progress); published <= processed.
        frames_unpaired counts images and CameraInfo messages the synchroniser discarded without a
        partner (fallback synchroniser only; 'n/a' with message_filters); images_arrived and
        camera_infos_arrived count what reached the node per stream, paired or not.
        odometry_failed counts frames whose odometry failed: the pipeline's count of its odometry
        stage errors (as of the last frame; the pipeline is the one that counts them) plus odometry
        this node computed but could not publish."""
        counts = self._health.snapshot()
        unpaired, received = self._input.dropped, self._input.received
        return {"frames_received": counts["frames_received"], "frames_processed": counts["frames_processed"],
                "frames_published": counts["frames_published"], "frames_dropped_stale": self._worker.dropped,
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

    # -- frames ---------------------------------------------------------------------------------
    def _on_frame(self, image, info) -> None:
        self._health.count("frames_received")
        self._input_watch.paired()
        self._times.arrived()
        self._worker.put(image, info, time.monotonic())

    def _apply_settings(self, s, extrinsic: np.ndarray) -> None:
        """Bring the pipeline up to settings `s` and the camera's extrinsic (worker thread, under
        the lock)."""
        if s is self._applied and np.array_equal(extrinsic, self._applied_extrinsic):
            return
        if s.threads and s.threads != self._applied.threads:
            torch.set_num_threads(s.threads)
        self.pipeline.configure(s.pipeline_options(extrinsic))
        self._outputs.restart_path(size=s.path_max_size)
        self._applied, self._applied_extrinsic = s, extrinsic

    def _process(self, image, info, received: float) -> None:
        """One frame, stage by stage; each stage's exception is contained and reported."""
        s = self.settings
        try:  # everything that can refuse the frame, before any work is done on it
            rgb, K, header = self._frame_input.prepare(image, info, s)
        except Exception as exc:  # noqa: BLE001 - a frame must not end the node
            self._health.failed("input", exc, "frames_rejected" if isinstance(exc, InputError) else "frames_failed")
            return
        self._health.ok("input")
        extrinsic = self._frame_input.extrinsic(s, header.frame_id)
        # Publishing under the lock keeps a reset or model swap from landing between a frame's
        # computation and its path/TF messages.
        with self._pipeline_lock:
            try:
                self._apply_settings(s, extrinsic)
                result = self.pipeline.process(rgb, K, stamp_seconds(header.stamp))
                if not (np.isfinite(result.scale) and result.scale > 0):
                    raise RuntimeError(f"depth scale {result.scale} is not a positive number")
            except InputError as exc:
                self._health.failed("input", exc, "frames_rejected")
                return
            except Exception as exc:  # noqa: BLE001
                self._health.failed("depth", exc, "frames_failed")
                return
            self._health.count("frames_processed")
            self._health.ok("depth")
            if self._outputs.depth(result, rgb, header, s):
                self._times.published(received, result.ms_depth + result.ms_odometry)
            self._outputs.odometry(result, header, s)
        odo = result.odometry
        tracking = {"tracking": TRACKING_OFF, "lost_count": 0, "lost_streak": 0} if odo is None else {
            "tracking": odo.tracking, "lost_count": odo.lost_count, "lost_streak": odo.lost_streak}
        self._last = {**tracking, "scale": result.scale_state, "units": units(result.metric, s.scale_mode),
                      "input_size": f"{rgb.shape[1]}x{rgb.shape[0]}", "status": result.status,
                      "warnings": result.warnings}

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
    def _restart(self, note: str, pose=None, covariance=None) -> None:
        """Restart the trajectory at the identity, or at the base `pose` with `covariance`."""
        with self._pipeline_lock:
            self.pipeline.reset(pose, covariance)
            self._outputs.restart_path()
            self._notes["origin"] = note

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
            self._health.problem(f"set_pose ignored: {exc}")
            return
        x, y, z = pose[:3, 3]
        self._restart(f"set_pose at ({x:.3f}, {y:.3f}, {z:.3f}), stamp {stamp_seconds(msg.header.stamp):.3f}",
                      pose, covariance)
        self.get_logger().info(f"trajectory restarted by {self._notes['origin']}")

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
        try:
            if self._worker.stopping:
                raise InputError("the node is shutting down")
            loaded = swap_model(self._loader, self.pipeline, self._pipeline_lock, self.settings)
            self._announce_model(loaded)
        except Exception as exc:  # noqa: BLE001 - InputError with the reason, or anything set_model raised
            reason = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
            response.success, response.message = False, f"kept model {self._model['model_id']}: {reason}"
            self._say("info" if self._worker.stopping else "error", response.message)
            return response
        response.success, response.message = True, (f"now running model {loaded.model_id} from {loaded.source} "
                                                     f"on {self.pipeline.backend}")
        self.get_logger().info(response.message)
        return response

    # -- diagnostics ----------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        try:
            status = self._diagnostic_status()
        except Exception as exc:  # noqa: BLE001 - a timer callback that raises would end the node
            self.get_logger().error(f"diagnostics failed: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=LOG_THROTTLE_S)
            return
        self._diag_pub.publish(make_array(self.get_clock().now().to_msg(), [status]))

    def _problems(self, s, last: dict) -> list:
        """(level, text) of everything a user must know now."""
        problems = [(WARN, "untrained model: depth and odometry are meaningless")] if not self._model["trained"] else []
        note = self._input_watch.problem(s.sync_slop)
        if note and note != self._notes["waiting"]:
            self.get_logger().warning(note)
        self._notes["waiting"] = note
        if note:
            problems.append((WARN, note))
        problems += self._health.problems()
        tracking = last["tracking"]
        if isinstance(tracking, Tracking) and tracking.failed:
            problems.append((ERROR if last["lost_streak"] >= 10 else WARN,
                             f"odometry {tracking} for {last['lost_streak']} frame(s)"))
        problems += [(WARN, text) for text in last["warnings"]]
        if s.publish_camera_tf and self._outputs.camera_tf_blocked:
            problems.append((WARN, f"publish_camera_tf: {self._outputs.camera_tf}"))
        return problems

    def _diagnostic_status(self):
        s, last = self.settings, self._last
        problems = self._problems(s, last)
        values = {
            **self._model,
            "device": str(self.device),
            "scale_mode": s.scale_mode,
            "scale": last["scale"],
            "units": last["units"],
            **self._times.values(),
            **self.frame_counts(),
            "last_problem": self._health.last_problem or "none",
            "input_size": last["input_size"],
            "network_size": "{1}x{0}".format(*self.pipeline.network_size),
            "input": self._input_note(s),
            "odometry": "on" if s.odometry_enabled else "off",
            "tracking": last["tracking"],
            "lost_count": last["lost_count"],
            "odom_origin": self._notes["origin"],
            **last["status"],
            "extrinsic": self._frame_input.extrinsic_note,
            "camera_tf": self._outputs.camera_tf if s.publish_camera_tf else "off",
            "sync": self._input.backend,
            "input_qos": self._input.describe(),
            "tf": str(self._outputs.tf.backend),
            "tf_in": str(self._tf_in.backend),
        }
        message = "; ".join(text for _, text in problems) if problems else "ok"
        name = f"{self.get_fully_qualified_name().lstrip('/')}: perception"
        return make_status(name, str(self.device), worst_level(problems), message, values)


def main(args=None) -> int:
    """Console script `perception_node`; returns the exit status (0 on SIGINT/SIGTERM)."""
    return run_node(PerceptionNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
