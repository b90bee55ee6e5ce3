"""trainer_node: keeps fine-tuning the depth, pose and feature networks on what the camera sees,
and hands weights that scored better to the perception node without stopping it.

Scheduling: the image (+ CameraInfo) callback only decodes the frame, makes it pinhole as the
perception node does (camera_info.PinholeFrames), and offers it to
`sa4depth_core.online.OnlineLearner` (keyframe selection, replay and validation buffers); a
`BackgroundTrainer` thread trains with the `threads` / `duty_cycle` budget and evaluates every
`eval_every` steps. A candidate that passes the gate is announced on `model_update`
(std_msgs/String, JSON, transient local) and, when `perception_node` is set, handed over by
setting that node's `checkpoint` parameter and calling its `reload_model` service (which swaps
only after a smoke inference). With `bags` set, recorded images feed the same learner.

Services (std_srvs/Trigger): ~/start, ~/pause, ~/save. /diagnostics: state, steps/s, buffer
fill, scores, deployed model id, rollbacks, write errors. All learning logic lives in
sa4depth_core.online; the parameters are params.TRAINER, listed with their defaults in
config/trainer.yaml.
"""
from __future__ import annotations

import json
import threading
import time

import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rcl_interfaces.srv import SetParameters
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from sa4depth_core.config import Config
from sa4depth_core.data.bag_sequence import open_bag_sequences
from sa4depth_core.errors import InputError
from sa4depth_core.online import (
    BackgroundTrainer,
    EvalOutcome,
    OnlineLearner,
    feed_sequence,
)
from sa4depth_core.online.learner import DEPLOYED
from sa4depth_core.stamps import stamp_seconds

from . import params
from .camera_info import PinholeFrames
from .diagnostics import ERROR, OK, WARN, make_array, make_status, worst_level
from .image_codec import decode_rgb
from .node_main import run_node, torch_device
from .input_subscription import INPUT_REFRESH_S, CameraInput
from .input_watch import InputWatch

NODE_NAME = "trainer_node"
RECENT_S = 30.0  # a write error or rollback stays in the diagnostics message this long
LOG_THROTTLE_S = 5.0


def model_update_qos() -> QoSProfile:
    """Reliable and transient local: a node that starts later still gets the latest deployment."""
    return QoSProfile(reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                      history=HistoryPolicy.KEEP_LAST, depth=1)


class TrainerNode(Node):
    """See the module docstring. Raises InputError at construction for unusable parameters or an
    init checkpoint that does not load; write errors later are reported, never raised."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.values = params.TRAINER.declare(self)
        v = self.values
        options = params.online_options(v)
        self.device = torch_device(self, v["device"], v["threads"])
        cfg = Config()
        cfg.model.height = v["input_height"] or cfg.model.height
        cfg.model.width = v["input_width"] or cfg.model.width
        self.learner = OnlineLearner(options, v["init_checkpoint"], cfg, self.device)
        self._frames_in = 0
        self._decode_rejected = 0
        self._last_problem = ""
        self._announce = "none yet"
        self._announce_ok = True
        self._errors_seen, self._error_time = self.learner.errors, -1e9
        self._rollbacks_seen, self._rollback_time = self.learner.rollbacks, -1e9
        self._bag_state = "none"

        control = MutuallyExclusiveCallbackGroup()
        self.slow_callback_groups = (control,)  # ~/save writes a checkpoint
        self._update_pub = self.create_publisher(String, "model_update", model_update_qos())
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._pinhole = PinholeFrames(v["rectified_images"], v["undistort"])
        compressed = v["image_transport"] == "compressed"
        self._input = CameraInput(
            self, self.resolve_topic_name("image") + "/compressed" if compressed else "image",
            None if any(v["intrinsics"]) else "camera_info", self._on_frame, v["qos.image"], slop=v["sync_slop"],
            image_type=CompressedImage if compressed else Image, log=self.get_logger().info)
        self._input_watch = InputWatch(self._input)
        self.create_timer(INPUT_REFRESH_S, self._input.refresh, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.create_service(Trigger, "~/start", self._srv_start, callback_group=control)
        self.create_service(Trigger, "~/pause", self._srv_pause, callback_group=control)
        self.create_service(Trigger, "~/save", self._srv_save, callback_group=control)
        # steady time: on a replay's /clock, which jumps back when the bag loops, the timer would stop
        self.create_timer(v["diagnostics_period"], self._publish_diagnostics, callback_group=control,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.trainer = BackgroundTrainer(self.learner, v["duty_cycle"], v["threads"], self._on_outcome)
        self._stop = threading.Event()
        self._bag_thread = None
        if v["bags"].strip():
            self._bag_thread = threading.Thread(target=self._feed_bags, name="sa4depth-bag-feeder", daemon=True)
            self._bag_thread.start()
        if v["autostart"]:
            self.trainer.start()
        s = self.learner.status()
        self.get_logger().info(
            f"ready: step {s['step']}, deployed model {s['deployed_model_id']}, buffers {s['replay_fill']} train / "
            f"{s['val_fill']} val, {'training' if v['autostart'] else 'paused (call ~/start)'} on {self.device} "
            f"with {v['threads'] or torch.get_num_threads()} thread(s), duty cycle {v['duty_cycle']:g}")

    # -- parameters -----------------------------------------------------------------------------
    def _on_set_parameters(self, changed) -> SetParametersResult:
        try:
            candidate = params.TRAINER.changed(self.values, changed)
            params.online_options(candidate)
        except InputError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.values, names = candidate, {p.name for p in changed}
        if "lr" in names:
            self.learner.set_lr(candidate["lr"])
        if "margin" in names:
            self.learner.options.margin = candidate["margin"]
        if "eval_every" in names:
            self.learner.options.eval_every = candidate["eval_every"]
        if "duty_cycle" in names:
            self.trainer.duty_cycle = candidate["duty_cycle"]
        return SetParametersResult(successful=True)

    # -- input ----------------------------------------------------------------------------------
    def _on_frame(self, image, info) -> None:
        self._frames_in += 1
        self._input_watch.paired()
        try:
            rgb, K = self._pinhole(decode_rgb(image), info, params.intrinsics_matrix(self.values["intrinsics"]))
            self.learner.add_frame(rgb, K, stamp_seconds(image.header.stamp))
        except InputError as exc:
            self._decode_rejected += 1
            self._last_problem = f"frame rejected: {exc}"
            self.get_logger().warning(self._last_problem, throttle_duration_sec=LOG_THROTTLE_S)

    def _feed_bags(self) -> None:
        v = self.values
        try:
            sequences = open_bag_sequences(v["bags"], v["bag_image_topic"], v["bag_camera_info_topic"])
        except InputError as exc:
            self._bag_state = f"failed: {exc}"
            self.learner.report_error(f"bags not used: {exc}")
            return
        for n, seq in enumerate(sequences, 1):
            self._bag_state = f"reading {seq.name} ({n}/{len(sequences)})"
            try:
                feed_sequence(self.learner, seq, self._stop, v["steps_per_triplet"])
            except InputError as exc:
                self.learner.report_error(f"bag {seq.name} stopped: {exc}")
            if self._stop.is_set():
                return
        self._bag_state = f"done ({len(sequences)} bag(s))"
        self.get_logger().info("all bags read; training goes on with the buffered triplets")

    # -- deployment -----------------------------------------------------------------------------
    def _on_outcome(self, outcome: EvalOutcome) -> None:
        """Training thread, after each evaluation."""
        if outcome.action != DEPLOYED:
            self.get_logger().info(f"evaluation at step {self.learner.step}: {outcome.action}: {outcome.message}")
            return
        entry = outcome.entry
        self.get_logger().info(outcome.message)
        note = {"checkpoint": outcome.path, "model_id": entry.model_id, "step": entry.step,
                "score": outcome.candidate["score"], "previous_score": outcome.reference["score"],
                "parent": entry.parent}
        self._update_pub.publish(String(data=json.dumps(note)))
        target = self.values["perception_node"].strip()
        if not target:
            self._announce, self._announce_ok = f"published {entry.model_id} on model_update", True
            return
        ok, text = self._hand_over(target, outcome.path)
        self._announce, self._announce_ok = text, ok
        (self.get_logger().info if ok else self.get_logger().error)(text)

    def _call(self, srv_type, name: str, request, timeout: float):
        client = self.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=min(timeout, 5.0)):
                return None
            done = threading.Event()
            future = client.call_async(request)
            future.add_done_callback(lambda _: done.set())
            done.wait(timeout)
            return future.result() if future.done() else None
        finally:
            self.destroy_client(client)

    def _hand_over(self, target: str, path: str) -> tuple[bool, str]:
        """Set the perception node's checkpoint parameter, then ask it to reload."""
        timeout = self.values["reload_timeout"]
        request = SetParameters.Request(parameters=[Parameter("checkpoint", value=path).to_parameter_msg()])
        response = self._call(SetParameters, f"{target}/set_parameters", request, timeout)
        if response is None:
            return False, f"{target} did not answer set_parameters within {timeout:g} s; update on model_update only"
        if not response.results or not response.results[0].successful:
            reason = response.results[0].reason if response.results else "no result"
            return False, f"{target} refused checkpoint {path}: {reason}"
        reply = self._call(Trigger, f"{target}/reload_model", Trigger.Request(), timeout)
        if reply is None:
            return False, f"{target} did not answer reload_model within {timeout:g} s"
        return bool(reply.success), f"{target}: {reply.message}"

    # -- services -------------------------------------------------------------------------------
    def _srv_start(self, request, response):
        response.success, response.message = True, self.trainer.start()
        self.get_logger().info(response.message)
        return response

    def _srv_pause(self, request, response):
        response.success, response.message = True, self.trainer.pause()
        self.get_logger().info(response.message)
        return response

    def _srv_save(self, request, response):
        response.success, response.message = self.learner.save()
        (self.get_logger().info if response.success else self.get_logger().error)(response.message)
        return response

    # -- diagnostics ----------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        s = self.learner.status()
        if s["errors"] > self._errors_seen:
            self._errors_seen, self._error_time = s["errors"], now
        if s["rollbacks"] > self._rollbacks_seen:
            self._rollbacks_seen, self._rollback_time = s["rollbacks"], now
        problems = []
        state = self.trainer.state
        if state.startswith("halted"):
            problems.append((ERROR, state))
        if now - self._error_time < RECENT_S:
            problems.append((ERROR, s["last_error"]))
        if now - self._rollback_time < RECENT_S:
            problems.append((WARN, s["last_rollback"]))
        if not self._announce_ok:
            problems.append((WARN, self._announce))
        input_problem = self._input_watch.problem(self.values["sync_slop"])
        if input_problem:
            problems.append((WARN, input_problem))
        received = self._input.received
        values = {
            "state": state,
            "steps": s["step"],
            "steps_per_s": self.trainer.steps_per_second(),
            **{k: v for k, v in s.items() if k != "step"},
            "frames_received": self._frames_in,
            "images_arrived": received["image"],
            "camera_infos_arrived": received["camera_info"],
            "input_qos": self._input.describe(),
            "frames_undecodable": self._decode_rejected,
            "last_problem": self._last_problem or "none",
            "perception_update": self._announce,
            "bags": self._bag_state,
            "out_dir": str(self.learner.out_dir),
            "device": str(self.device),
            "threads": self.values["threads"] or torch.get_num_threads(),
            "duty_cycle": self.values["duty_cycle"],
        }
        message = "; ".join(text for _, text in problems) if problems else state
        name = f"{self.get_fully_qualified_name().lstrip('/')}: trainer"
        status = make_status(name, str(self.device), worst_level(problems) if problems else OK, message, values)
        self._diag_pub.publish(make_array(self.get_clock().now().to_msg(), [status]))

    # -- lifecycle ------------------------------------------------------------------------------
    def shutdown(self) -> bool:
        """Stop feeding and training (the current step finishes), then save if asked to; True: the
        node may be destroyed (no thread of it is left inside rcl)."""
        self._stop.set()
        self.trainer.stop()
        if self._bag_thread is not None:
            self._bag_thread.join(timeout=10.0)
        latest = self.learner.store.latest()
        if self.values["save_on_exit"] and (latest is None or latest.step != self.learner.step):
            ok, message = self.learner.save()
            (self.get_logger().info if ok else self.get_logger().error)(message)
        return True


def main(args=None) -> int:
    """Console script `trainer_node`; returns the exit status (0 on SIGINT/SIGTERM)."""
    return run_node(TrainerNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
