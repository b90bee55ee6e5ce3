"""trainer_node: keeps fine-tuning the depth, pose and feature networks on what the camera sees,
and hands weights that scored better to the perception node without stopping it.

Scheduling: the image (+ CameraInfo) callback only decodes the frame and offers it to
`sa4depth_core.online.OnlineLearner` (keyframe selection, replay and validation buffers); a
`BackgroundTrainer` thread trains with the `threads` / `duty_cycle` budget and evaluates every
`eval_every` steps. A candidate that passes the gate is announced on `model_update`
(std_msgs/String, JSON, transient local) and, when `perception_node` is set, handed over by
setting that node's `checkpoint` parameter and calling its `reload_model` service (which swaps
only after a smoke inference). With `bags` set, recorded images feed the same learner.

Services (std_srvs/Trigger): ~/start, ~/pause, ~/save. /diagnostics: state, steps/s, buffer
fill, scores, deployed model id, rollbacks, write errors. All learning logic lives in
sa4depth_core.online; parameters are listed in config/trainer.yaml.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import fields

import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rcl_interfaces.srv import SetParameters
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import InvalidServiceNameException
from rclpy.expand_topic_name import expand_topic_name
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.validate_full_topic_name import validate_full_topic_name
from std_msgs.msg import String
from std_srvs.srv import Trigger

from sa4depth_core.config import Config
from sa4depth_core.data.bag_sequence import open_bag_sequences
from sa4depth_core.errors import InputError
from sa4depth_core.infer import select_device
from sa4depth_core.online import (
    BackgroundTrainer,
    EvalOutcome,
    OnlineLearner,
    OnlineOptions,
    feed_sequence,
)
from sa4depth_core.online.learner import DEPLOYED

from . import params
from .camera_info import frame_intrinsics
from .diagnostics import ERROR, OK, WARN, make_array, make_status, worst_level
from .image_codec import image_to_rgb
from .qos import QOS_NAMES, qos_from_string
from .node_main import run_node, torch_device
from .stamps import stamp_seconds
from .sync import make_image_info_sync

NODE_NAME = "trainer_node"
RECENT_S = 30.0  # a write error or rollback stays in the diagnostics message this long
LOG_THROTTLE_S = 5.0

# Parameters of the node itself; every OnlineOptions field is a parameter too (same name).
NODE_PARAMS = {
    "init_checkpoint": ("", ("weights to start from when out_dir holds no checkpoint: project .pt or "
                             "Monodepth2 folder; empty = random initialisation")),
    "device": ("auto", "auto | cpu | cuda | cuda:N"),
    "threads": (1, ("torch CPU threads for training (0 = torch default); keep below the core count so "
                    "inference keeps its rate")),
    "duty_cycle": (1.0, "fraction of wall time spent training, (0, 1]; lower leaves the CPU/GPU to inference"),
    "autostart": (True, "start training at once (else wait for ~/start)"),
    "save_on_exit": (True, "write the current weights on shutdown, so a restart resumes from them"),
    "input_width": (0, "network width for random initialisation (0 = 640); a checkpoint brings its own"),
    "input_height": (0, "network height for random initialisation (0 = 192)"),
    "perception_node": ("perception_node", ("node whose checkpoint parameter is set and whose reload_model "
                                            "is called on deployment (a relative name is in this node's "
                                            "namespace); empty = publish model_update only")),
    "reload_timeout": (30.0, "seconds to wait for the perception node's parameter and reload services"),
    "bags": ("", "bag directories or .mcap/.db3 files, comma separated, to train on (offline fine-tuning)"),
    "bag_image_topic": ("", "image topic in the bags (empty = the only one)"),
    "bag_camera_info_topic": ("", "CameraInfo topic in the bags (empty = next to the image topic)"),
    "steps_per_triplet": (2, "bags: training steps per new triplet before the next frames are read"),
    "intrinsics": ([0.0, 0.0, 0.0, 0.0], "fx, fy, cx, cy of the live images; all 0 = pair with camera_info"),
    "sync_slop": (0.02, "largest image/CameraInfo stamp difference that pairs (s)"),
    "qos.image": ("sensor_data", "QoS of the image and camera_info subscriptions: " + " | ".join(QOS_NAMES)),
    "diagnostics_period": (1.0, "seconds between /diagnostics messages"),
}
NODE_DEFAULT_OPTIONS = {"out_dir": "~/.ros/sa4depth/online"}
LIVE = {"lr", "duty_cycle", "margin", "eval_every", "perception_node", "reload_timeout"}


def model_update_qos() -> QoSProfile:
    """Reliable and transient local: a node that starts later still gets the latest deployment."""
    return QoSProfile(reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                      history=HistoryPolicy.KEEP_LAST, depth=1)


def _check_node_values(v: dict) -> None:
    if not 0 < v["duty_cycle"] <= 1:
        raise InputError(f"parameter 'duty_cycle' must be in (0, 1], got {v['duty_cycle']}")
    if v["threads"] < 0 or v["input_width"] < 0 or v["input_height"] < 0 or v["steps_per_triplet"] < 0:
        raise InputError("parameters threads, input_width, input_height and steps_per_triplet must be >= 0")
    for name in ("input_width", "input_height"):
        if v[name] and (v[name] % 32 or v[name] < 64):
            raise InputError(f"parameter '{name}' must be 0 or a multiple of 32 of at least 64, got {v[name]}")
    if not v["reload_timeout"] > 0 or not v["diagnostics_period"] > 0 or v["sync_slop"] < 0:
        raise InputError("parameters reload_timeout and diagnostics_period must be > 0 and sync_slop >= 0")
    reason = params.intrinsics_problem(v["intrinsics"])
    if reason:
        raise InputError(f"parameter 'intrinsics' {reason}")
    if v["qos.image"] not in QOS_NAMES:
        raise InputError(f"parameter 'qos.image' must be one of {', '.join(QOS_NAMES)}, got '{v['qos.image']}'")
    target = v["perception_node"].strip()
    if target:
        try:
            validate_full_topic_name(expand_topic_name(f"{target}/reload_model", NODE_NAME, "/"), is_service=True)
        except (ValueError, InvalidServiceNameException) as exc:
            raise InputError(f"parameter 'perception_node' is not a usable node name: '{target}' ({exc})") from exc
    select_device(v["device"])


class TrainerNode(Node):
    """See the module docstring. Raises InputError at construction for unusable parameters or an
    init checkpoint that does not load; write errors later are reported, never raised."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.values = self._declare()
        v = self.values
        options = OnlineOptions.from_dict({f.name: v[f.name] for f in fields(OnlineOptions)})
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
        self._sync = make_image_info_sync(
            self, "image", None if any(v["intrinsics"]) else "camera_info", self._on_frame,
            qos_from_string(v["qos.image"]), slop=v["sync_slop"])
        self.create_service(Trigger, "~/start", self._srv_start, callback_group=control)
        self.create_service(Trigger, "~/pause", self._srv_pause, callback_group=control)
        self.create_service(Trigger, "~/save", self._srv_save, callback_group=control)
        self.create_timer(v["diagnostics_period"], self._publish_diagnostics, callback_group=control)
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
    def _declare(self) -> dict:
        specs = {f.name: (NODE_DEFAULT_OPTIONS.get(f.name, f.default),
                          f"online learning: {f.name} (see sa4depth_core.online.OnlineOptions)")
                 for f in fields(OnlineOptions)}
        specs.update(NODE_PARAMS)
        values = {}
        for name, (default, description) in specs.items():
            descriptor = ParameterDescriptor(description=description, read_only=name not in LIVE,
                                             dynamic_typing=isinstance(default, float))
            values[name] = params.coerce(default, self.declare_parameter(name, default, descriptor).value, name)
        self._defaults = {name: default for name, (default, _) in specs.items()}
        _check_node_values(values)
        return values

    def _on_set_parameters(self, changed) -> SetParametersResult:
        try:
            new = {p.name: params.coerce(self._defaults[p.name], p.value, p.name) for p in changed
                   if p.name in self._defaults}
            candidate = {**self.values, **new}
            _check_node_values(candidate)
            OnlineOptions.from_dict({f.name: candidate[f.name] for f in fields(OnlineOptions)})
        except (InputError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.values = candidate
        if "lr" in new:
            self.learner.set_lr(new["lr"])
        if "margin" in new:
            self.learner.options.margin = new["margin"]
        if "eval_every" in new:
            self.learner.options.eval_every = new["eval_every"]
        if "duty_cycle" in new:
            self.trainer.duty_cycle = new["duty_cycle"]
        return SetParametersResult(successful=True)

    # -- input ----------------------------------------------------------------------------------
    def _on_frame(self, image, info) -> None:
        self._frames_in += 1
        try:
            rgb = image_to_rgb(image)
            K = frame_intrinsics(info, rgb.shape[:2], params.intrinsics_matrix(self.values["intrinsics"]))
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
        values = {
            "state": state,
            "steps": s["step"],
            "steps_per_s": self.trainer.steps_per_second(),
            **{k: v for k, v in s.items() if k != "step"},
            "frames_received": self._frames_in,
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
    def shutdown(self) -> None:
        """Stop feeding and training (the current step finishes), then save if asked to."""
        self._stop.set()
        self.trainer.stop()
        if self._bag_thread is not None:
            self._bag_thread.join(timeout=10.0)
        latest = self.learner.store.latest()
        if self.values["save_on_exit"] and (latest is None or latest.step != self.learner.step):
            ok, message = self.learner.save()
            (self.get_logger().info if ok else self.get_logger().error)(message)


def main(args=None) -> int:
    """Console script `trainer_node`; returns the exit status (0 on SIGINT/SIGTERM)."""
    return run_node(TrainerNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
