"""Parameters of both nodes: one table each of names, defaults, descriptions, ranges and checks.

A `ParamTable` declares its parameters on a node (with descriptors carrying the range and the
read-only flag), types and checks start-up and live values the same way (a rejected live value
comes back to the caller with the reason), checks the combination by its rules (a value that is
fine alone but not beside the others, e.g. a base frame named like the odom frame), and is what the
launch/config tests check the YAML and launch files against. `PERCEPTION` is perception_node's
table, `TRAINER` trainer_node's (its own parameters plus every sa4depth_core.online.OnlineOptions
field under the same name). Names follow common ROS 2 VO/depth nodes (odom_frame, base_frame,
publish_tf, ...).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, fields, replace
from typing import Callable

import numpy as np

from sa4depth_core.backends import BACKENDS, PRECISIONS
from sa4depth_core.errors import InputError
from sa4depth_core.infer import select_device
from sa4depth_core.network_input import MAX_NETWORK_PIXELS, MAX_NETWORK_SIDE, network_size_problem
from sa4depth_core.odometry import FUSIONS, ON_FAILURE
from sa4depth_core.online import OnlineOptions
from sa4depth_core.pipeline_options import PipelineOptions, pose_from_xyz_rpy
from sa4depth_core.scale import SCALE_MODES

from .qos import AUTO, INPUT_QOS_NAMES, QOS_NAMES

MAX_THREADS = 256
IMAGE_TRANSPORTS = ("raw", "compressed")
# Camera optical frame (x right, y down, z forward) on a base with x forward, z up (REP 103).
OPTICAL_ON_BASE = [0.0, 0.0, 0.0, -math.pi / 2, 0.0, -math.pi / 2]


def _one_of(options) -> Callable:
    return lambda v: None if v in options else f"must be one of {', '.join(options)}, got '{v}'"


def _positive(v) -> str | None:
    return None if math.isfinite(v) and v > 0 else f"must be a positive number, got {v}"


def _network_side(axis: str) -> Callable:
    """Check of one side of the network input: 0 (the checkpoint's) or what network_size_problem
    accepts with the smallest valid other side."""
    def check(v):
        if v == 0:
            return None
        problem = network_size_problem(64, v) if axis == "width" else network_size_problem(v, 64)
        return f"must be 0 (the checkpoint's size) or a network {axis}: {problem}" if problem else None
    return check


# A frame id the node sends: parts of letters, digits, _ . - joined by single slashes (a namespace
# prefix, robot1/base_link). tf2 itself takes almost any string, but a space, a colon or a
# newline garbles tf2's YAML frame listing (which the TF lookup reads) and the tools that print it.
FRAME_ID = re.compile(r"[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*")


def _frame_name(optional: bool) -> Callable:
    def check(v):
        if not v:
            return None if optional else "must not be empty"
        if v.startswith("/"):
            return f"'{v}' must not start with '/' (tf2 frame ids have no leading slash)"
        if not FRAME_ID.fullmatch(v):
            return (f"{v!r} is not a frame id: letters, digits and the characters _ . - only, in parts joined by "
                    "single '/'")
        return None
    return check


def frames_problem(odom: str, base: str, camera: str, publish_camera_tf: bool) -> str | None:
    """Why frames named so would close a loop through the node's own transforms, or None.

    The node publishes odom -> base (publish_tf), base -> camera (publish_camera_tf) and reads the
    camera's mounting as the camera in base; `camera` is the camera frame (camera_frame, or the
    image's frame_id; '' = not known yet). A camera that is the base is fine (odometry of the
    camera itself) unless its mounting on itself would be published.
    """
    if base == odom:
        return f"base_frame '{base}' is the odom_frame: the node would publish {odom} -> {odom}"
    if camera == odom:
        return (f"the camera frame '{camera}' is the odom_frame: the camera's mounting would be read from the "
                f"node's own odometry ({odom} -> {base})")
    if camera == base and publish_camera_tf:
        return f"the camera frame '{camera}' is the base_frame: publish_camera_tf would publish {base} -> {base}"
    return None


def _frames_loop_free(values: dict) -> str | None:
    return frames_problem(values["odom_frame"], values["base_frame"], values["camera_frame"],
                          values["publish_camera_tf"])


def _camera_height_given(values: dict) -> str | None:
    if values["scale_mode"] == "camera_height" and not values["camera_height"]:
        return ("scale_mode camera_height needs the camera_height parameter: the camera's height above the ground "
                "in metres (there is no default: a guessed height gives wrong metres)")
    return None


def _checkpoint(v) -> str | None:
    path = os.path.expanduser(v)
    if not v or os.path.isfile(path) or os.path.isdir(path):
        return None
    return f"'{v}' is not a regular file or a directory" if os.path.exists(path) else f"'{v}' does not exist"


def _accepted_by(convert: Callable) -> Callable:
    """A check that gives the InputError `convert` raises on a value as the reason."""
    def check(v):
        try:
            convert(v)
        except InputError as exc:
            return str(exc)
        return None
    return check


def _node_name(v) -> str | None:
    """Why `v` cannot name the perception node the trainer hands models to ('' = nobody)."""
    from rclpy.exceptions import InvalidServiceNameException
    from rclpy.expand_topic_name import expand_topic_name
    from rclpy.validate_full_topic_name import validate_full_topic_name

    if not v.strip():
        return None
    try:
        validate_full_topic_name(expand_topic_name(f"{v.strip()}/reload_model", "trainer_node", "/"), is_service=True)
    except (ValueError, InvalidServiceNameException) as exc:
        return f"is not a usable node name: '{v}' ({exc})"
    return None


def intrinsics_problem(v) -> str | None:
    """Why [fx, fy, cx, cy] cannot be an `intrinsics` parameter value, or None."""
    if len(v) != 4 or not all(math.isfinite(x) for x in v):
        return f"must be 4 finite numbers [fx, fy, cx, cy] (all 0 = use CameraInfo), got {list(v)}"
    if any(v) and not (v[0] > 0 and v[1] > 0):
        return f"fx and fy must be > 0, got {list(v)}"
    return None


def intrinsics_matrix(intrinsics) -> np.ndarray:
    """(3,3) K of an `intrinsics` parameter value [fx, fy, cx, cy]."""
    fx, fy, cx, cy = intrinsics
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def coerce(expected, value, name: str):
    """`value` in the type of the default `expected` (floats also accept integers, lists become
    lists of floats), or InputError naming parameter `name`."""
    if isinstance(expected, bool):
        ok = isinstance(value, bool)
    elif isinstance(expected, int):
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    elif isinstance(expected, float):
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(expected, str):
        ok = isinstance(value, str)
    else:  # list of floats; rclpy hands double arrays over as array.array
        try:
            value = [float(x) for x in value]
            ok = not isinstance(value, (str, bytes))
        except (TypeError, ValueError):
            ok = False
    if not ok:
        raise InputError(f"parameter '{name}' expects {type(expected).__name__}, got {value!r}")
    return int(value) if isinstance(expected, int) and not isinstance(expected, bool) else value


@dataclass(frozen=True)
class ParamSpec:
    """name: ROS parameter name; default fixes the type (float params also accept integers);
    read_only: only settable at start-up; check: returns a reason when a value is unusable;
    bounds: (low, high) inclusive for numbers, declared as the parameter's range too, so that
    no value can ask for absurd work or memory (e.g. 2^31 threads)."""

    name: str
    default: object
    description: str
    read_only: bool = False
    check: Callable | None = None
    bounds: tuple | None = None

    def problem(self, value) -> str | None:
        """Why a typed `value` is unusable, or None."""
        if self.bounds is not None:
            low, high = self.bounds
            if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
                return f"must be between {low:g} and {high:g}, got {value}"
        return self.check(value) if self.check else None

    def descriptor(self):
        """rcl_interfaces/ParameterDescriptor with the description, read-only flag and range."""
        from rcl_interfaces.msg import (
            FloatingPointRange,
            IntegerRange,
            ParameterDescriptor,
        )

        descriptor = ParameterDescriptor(description=self.description, read_only=self.read_only,
                                         dynamic_typing=isinstance(self.default, float))
        if self.bounds is not None and isinstance(self.default, float):
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(self.bounds[0]), to_value=float(self.bounds[1]), step=0.0)]
        elif self.bounds is not None:
            descriptor.integer_range = [IntegerRange(
                from_value=int(self.bounds[0]), to_value=int(self.bounds[1]), step=0)]
        return descriptor


class ParamTable:
    """The parameters of one node: declared, typed and checked by one path. `rules` check the
    combination: each takes {name: checked value} of every parameter and returns a reason or None."""

    def __init__(self, specs, rules=()):
        self.specs = tuple(specs)
        self.by_name = {spec.name: spec for spec in self.specs}
        self.rules = tuple(rules)

    def check_value(self, name: str, value):
        """Checked, typed value of parameter `name`; InputError with the reason if unusable.
        Parameters not in the table (e.g. use_sim_time) pass through."""
        spec = self.by_name.get(name)
        if spec is None:
            return value
        value = coerce(spec.default, value, name)
        reason = spec.problem(value)
        if reason:
            raise InputError(f"parameter '{name}' {reason}")
        return value

    def checked(self, values: dict) -> dict:
        """{name: checked value} of every parameter, the default where `values` has none; InputError
        with the reason when a value, or the combination (the rules), is unusable."""
        checked = {spec.name: self.check_value(spec.name, values.get(spec.name, spec.default)) for spec in self.specs}
        for rule in self.rules:
            reason = rule(checked)
            if reason:
                raise InputError(reason)
        return checked

    def changed(self, current: dict, parameters) -> dict:
        """`current` with the rclpy Parameters of a live change applied, each checked."""
        return {**current, **{p.name: self.check_value(p.name, p.value) for p in parameters if p.name in self.by_name}}

    def declare(self, node) -> dict:
        """Declare every parameter on an rclpy node; returns the checked start-up values (a value of
        the wrong type or out of range raises InputError naming it)."""
        from rclpy.exceptions import (
            InvalidParameterTypeException,
            InvalidParameterValueException,
        )

        values = {}
        for spec in self.specs:
            try:
                values[spec.name] = node.declare_parameter(spec.name, spec.default, spec.descriptor()).value
            except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
                raise InputError(f"parameter '{spec.name}': {exc}") from None
        return self.checked(values)


# Input parameters both nodes share (the trainer learns from the stream the perception node sees).
DEVICE = ParamSpec("device", "auto", "auto | cpu | cuda | cuda:N (CUDA missing: CPU with a warning)",
                   read_only=True, check=_accepted_by(select_device))
THREADS = ParamSpec("threads", 0, "torch CPU threads (0 = torch default)", bounds=(0, MAX_THREADS))
INPUT_WIDTH = ParamSpec("input_width", 0, "network input width (0 = the checkpoint's)", check=_network_side("width"),
                        bounds=(0, MAX_NETWORK_SIDE))
INPUT_HEIGHT = ParamSpec("input_height", 0, "network input height (0 = the checkpoint's)",
                         check=_network_side("height"), bounds=(0, MAX_NETWORK_SIDE))
STREAM = (
    ParamSpec("image_transport", "raw", "raw: subscribe to image (sensor_msgs/Image); compressed: to "
              "<image>/compressed (sensor_msgs/CompressedImage, jpeg or png)", read_only=True,
              check=_one_of(IMAGE_TRANSPORTS)),
    ParamSpec("rectified_images", True, "true: images are rectified (e.g. image_proc's image_rect), used with "
              "CameraInfo P; false: raw images, used with K and D"),
    ParamSpec("undistort", True, "raw images (rectified_images false) with non-zero D: undistort them with OpenCV "
              "(true) or refuse them (false)"),
    ParamSpec("intrinsics", [0.0, 0.0, 0.0, 0.0], "fx, fy, cx, cy of the input image in pixels; all 0 = pair "
              "images with camera_info instead", read_only=True, check=intrinsics_problem),
    ParamSpec("sync_slop", 0.02, "largest image/CameraInfo stamp difference that pairs (s)", read_only=True,
              bounds=(0.0, 10.0)),
    ParamSpec("qos.image", AUTO, "QoS of the image and camera_info subscriptions: auto = reliable when every "
              "publisher offers it, else best effort; or a fixed " + " | ".join(QOS_NAMES), read_only=True,
              check=_one_of(INPUT_QOS_NAMES)),
)
DIAGNOSTICS_PERIOD = ParamSpec("diagnostics_period", 1.0, "seconds between /diagnostics messages", read_only=True,
                               bounds=(0.05, 3600.0))

SPECS = (
    ParamSpec("checkpoint", "", "project .pt checkpoint or Monodepth2 weights folder; empty = randomly initialised "
              "networks (meaningless depth). A live change takes effect on ~/reload_model", check=_checkpoint),
    DEVICE,
    THREADS,
    ParamSpec("backend", "auto", "what runs the networks: " + " | ".join(BACKENDS) + " (auto: the fastest that "
              "works here; kept by ~/reload_model)", read_only=True, check=_one_of(BACKENDS)),
    ParamSpec("precision", "auto", " | ".join(PRECISIONS) + " (auto: the backend's best here)", read_only=True,
              check=_one_of(PRECISIONS)),
    ParamSpec("parallel", False, "run the depth network in a second thread beside PoseNet and the feature network "
              "(pays with openvino/onnxruntime at threads 1, see docs/backends.md)"),
    INPUT_WIDTH,
    INPUT_HEIGHT,
    ParamSpec("scale_mode", "relative", "relative (network units, NOT metres: a WARN in /diagnostics) | fixed "
              "(x scale_factor) | camera_height (metres from the camera's height above a fitted ground plane)",
              check=_one_of(SCALE_MODES)),
    ParamSpec("scale_factor", 1.0, "depth multiplier in scale_mode fixed", check=_positive, bounds=(0.0, 1e6)),
    ParamSpec("camera_height", 0.0, "the camera's height above the ground in metres, needed by scale_mode "
              "camera_height; 0 = not given (there is no default: a guessed height gives wrong metres)",
              bounds=(0.0, 100.0)),
    ParamSpec("odometry.enabled", True, "compute and publish odometry, path and TF"),
    ParamSpec("odometry.refine", True, "feature-metric LM refinement of PoseNet's motion"),
    ParamSpec("odometry.on_failure", "hold", "when refinement fails: hold (keep the last pose) | posenet "
              "(use PoseNet's motion); either way with inflated covariance", check=_one_of(ON_FAILURE)),
    # defaults and checks are the core's (PipelineOptions), so the node cannot drift from eval
    ParamSpec("odometry.fusion", PipelineOptions.fusion, "how the published motion combines PoseNet's and the "
              "LM's: " + " | ".join(FUSIONS) + " (prior: PoseNet's motion as a prior inside the solve)"),
    ParamSpec("odometry.posenet_sigma", list(PipelineOptions.posenet_sigma), "PoseNet's standard deviation per "
              "degree of freedom: translation x, y, z as fractions of the median depth, rotation x, y, z in "
              "degrees (calibrated on validation worlds)"),
    ParamSpec("refine_iterations", 0, "LM iterations per level at inference (0 = the model's)", bounds=(0, 100)),
    ParamSpec("refine_max_points", 0, "LM points per level at inference (0 = the model's)",
              bounds=(0, MAX_NETWORK_PIXELS)),
    ParamSpec("odom_frame", "odom", "odometry frame (header of odom, path, TF parent)", check=_frame_name(False)),
    ParamSpec("base_frame", "base_link", "robot base frame (odom child, TF child)", check=_frame_name(False)),
    ParamSpec("camera_frame", "", "frame of the outputs; empty = the input image's frame_id",
              check=_frame_name(True)),
    ParamSpec("base_to_camera", OPTICAL_ON_BASE, "camera optical frame in the base frame: x, y, z (m), roll, pitch, "
              "yaw (rad), used while TF has no transform from base_frame to the camera frame; default: optical "
              "axes on a REP 103 base", read_only=True, check=_accepted_by(pose_from_xyz_rpy)),
    ParamSpec("publish_tf", True, "publish odom_frame -> base_frame on /tf"),
    ParamSpec("publish_camera_tf", False, "publish base_frame -> camera frame (base_to_camera) on /tf_static, "
              "unless the camera frame already has a parent in TF (e.g. from robot_state_publisher)"),
    ParamSpec("publish_points", True, "offer the points PointCloud2 (built only while someone subscribes)",
              read_only=True),
    ParamSpec("points_stride", 4, "keep every n-th row and column in points", bounds=(1, 64)),
    ParamSpec("path_max_size", 1024, "poses kept in path", bounds=(1, 100_000)),
    ParamSpec("path_period", 0.5, "seconds of image time between path messages, 0 = every frame (each "
              "message carries the whole path: about 6 ms of serialisation per 1000 poses)", bounds=(0.0, 3600.0)),
    *STREAM,
    ParamSpec("qos.output", "reliable", "QoS of the publishers", read_only=True, check=_one_of(QOS_NAMES)),
    ParamSpec("trajectory_dir", "~/.ros/sa4depth", "directory ~/save_trajectory writes to",
              check=lambda v: None if v.strip() else "must not be empty"),
    ParamSpec("reload_timeout", 60.0, "seconds ~/reload_model may take to load and smoke-test a model before it "
              "answers failure (the stuck load is abandoned)", bounds=(1.0, 3600.0)),
    DIAGNOSTICS_PERIOD,
)
PERCEPTION = ParamTable(SPECS, rules=(_camera_height_given, _frames_loop_free))
BY_NAME = PERCEPTION.by_name

# trainer_node: its own parameters, then every OnlineOptions field (same name, same meaning).
TRAINER_LIVE = {"lr", "duty_cycle", "margin", "eval_every", "perception_node", "reload_timeout"}
TRAINER_OPTION_DEFAULTS = {"out_dir": "~/.ros/sa4depth/online"}
# Interface limits of OnlineOptions fields (OnlineOptions.check has the rules; these only keep a
# parameter from asking for absurd memory or work). lr has none: any finite positive rate costs the
# same, and a hopeless one is what the gate and rollbacks are for.
TRAINER_OPTION_BOUNDS = {"batch_size": (1, 4096), "replay_capacity": (1, 1_000_000),
                         "val_capacity": (1, 100_000), "val_period": (1, 1_000_000), "min_val": (1, 100_000),
                         "eval_every": (1, 10**9), "margin": (0.0, 1.0), "collapse_factor": (1.0, 1e6),
                         "scale_weight": (0.0, 1e3), "max_grad_norm": (0.0, 1e12), "max_bad_steps": (1, 10**6),
                         "max_rollbacks": (1, 10**6), "keep_checkpoints": (1, 10_000), "min_motion": (0.0, 1.0),
                         "min_texture": (0.0, 1.0), "max_time_gap": (0.0, 1e6), "refine_iterations": (0, 100),
                         "refine_max_points": (0, MAX_NETWORK_PIXELS), "seed": (0, 2**31 - 1)}
_TRAINER_NODE_SPECS = (
    ParamSpec("init_checkpoint", "", "weights to start from when out_dir holds no checkpoint: project .pt or "
              "Monodepth2 folder; empty = random initialisation", read_only=True),
    replace(DEVICE, description="auto | cpu | cuda | cuda:N"),
    replace(THREADS, default=1, description="torch CPU threads for training (0 = torch default); keep below the "
            "core count so inference keeps its rate", read_only=True),
    ParamSpec("duty_cycle", 1.0, "fraction of wall time spent training, (0, 1]; lower leaves the CPU/GPU to "
              "inference", check=_positive, bounds=(0.0, 1.0)),
    ParamSpec("autostart", True, "start training at once (else wait for ~/start)", read_only=True),
    ParamSpec("save_on_exit", True, "write the current weights on shutdown, so a restart resumes from them",
              read_only=True),
    replace(INPUT_WIDTH, description="network width for random initialisation (0 = 640); a checkpoint brings its "
            "own", read_only=True),
    replace(INPUT_HEIGHT, description="network height for random initialisation (0 = 192)", read_only=True),
    ParamSpec("perception_node", "perception_node", "node whose checkpoint parameter is set and whose reload_model "
              "is called on deployment (a relative name is in this node's namespace); empty = publish "
              "model_update only", check=_node_name),
    ParamSpec("reload_timeout", 30.0, "seconds to wait for the perception node's parameter and reload services",
              check=_positive, bounds=(0.0, 3600.0)),
    ParamSpec("bags", "", "bag directories or .mcap/.db3 files, comma separated, to train on (offline "
              "fine-tuning)", read_only=True),
    ParamSpec("bag_image_topic", "", "image topic in the bags (empty = the only one)", read_only=True),
    ParamSpec("bag_camera_info_topic", "", "CameraInfo topic in the bags (empty = next to the image topic)",
              read_only=True),
    ParamSpec("steps_per_triplet", 2, "bags: training steps per new triplet before the next frames are read",
              read_only=True, bounds=(0, 10_000)),
    *(replace(spec, read_only=True) for spec in STREAM),
    DIAGNOSTICS_PERIOD,
)
TRAINER = ParamTable(
    tuple(ParamSpec(f.name, TRAINER_OPTION_DEFAULTS.get(f.name, f.default),
                    f"online learning: {f.name} (see sa4depth_core.online.OnlineOptions)",
                    read_only=f.name not in TRAINER_LIVE, bounds=TRAINER_OPTION_BOUNDS.get(f.name))
          for f in fields(OnlineOptions))
    + _TRAINER_NODE_SPECS)


def online_options(values: dict) -> OnlineOptions:
    """The OnlineOptions of the trainer's checked parameter values (InputError for a bad combination)."""
    return OnlineOptions.from_dict({f.name: values[f.name] for f in fields(OnlineOptions)})


def field_name(name: str) -> str:
    """Settings attribute of a parameter name."""
    return name.replace(".", "_")


@dataclass(frozen=True)
class Settings:
    """Checked values of every perception_node parameter (dots in names become underscores)."""

    checkpoint: str
    device: str
    threads: int
    backend: str
    precision: str
    parallel: bool
    input_width: int
    input_height: int
    scale_mode: str
    scale_factor: float
    camera_height: float
    odometry_enabled: bool
    odometry_refine: bool
    odometry_on_failure: str
    odometry_fusion: str
    odometry_posenet_sigma: tuple
    refine_iterations: int
    refine_max_points: int
    odom_frame: str
    base_frame: str
    camera_frame: str
    base_to_camera: tuple
    publish_tf: bool
    publish_camera_tf: bool
    publish_points: bool
    points_stride: int
    path_max_size: int
    path_period: float
    image_transport: str
    rectified_images: bool
    undistort: bool
    intrinsics: tuple
    sync_slop: float
    qos_image: str
    qos_output: str
    trajectory_dir: str
    reload_timeout: float
    diagnostics_period: float

    @classmethod
    def from_values(cls, values: dict) -> "Settings":
        """From {parameter name: value} covering SPECS; raises InputError naming a bad one."""
        checked = {field_name(name): value for name, value in PERCEPTION.checked(values).items()}
        for key in ("base_to_camera", "intrinsics", "odometry_posenet_sigma"):
            checked[key] = tuple(checked[key])
        settings = cls(**checked)
        settings.pipeline_options().check()
        return settings

    def values(self) -> dict:
        """{parameter name: value} of every parameter."""
        return {spec.name: getattr(self, field_name(spec.name)) for spec in SPECS}

    def updated(self, parameters) -> "Settings":
        """A copy with the rclpy Parameters of a live change applied (InputError if a value or the
        combination is bad)."""
        return Settings.from_values(PERCEPTION.changed(self.values(), parameters))

    @property
    def intrinsics_given(self) -> bool:
        return any(self.intrinsics)

    def K(self) -> np.ndarray:
        """(3,3) intrinsics from the `intrinsics` parameter."""
        return intrinsics_matrix(self.intrinsics)

    def pipeline_options(self, base_from_camera: np.ndarray | None = None) -> PipelineOptions:
        """The pipeline's options; `base_from_camera` (4,4) replaces the base_to_camera parameter
        (e.g. the extrinsic TF holds)."""
        return PipelineOptions(
            height=self.input_height, width=self.input_width, scale_mode=self.scale_mode,
            scale_factor=self.scale_factor, camera_height=self.camera_height, odometry=self.odometry_enabled,
            refine=self.odometry_refine, on_failure=self.odometry_on_failure, fusion=self.odometry_fusion,
            posenet_sigma=self.odometry_posenet_sigma,
            refine_iterations=self.refine_iterations, refine_max_points=self.refine_max_points,
            backend=self.backend, precision=self.precision, threads=self.threads, parallel=self.parallel,
            base_from_camera=pose_from_xyz_rpy(self.base_to_camera) if base_from_camera is None else base_from_camera)


def declare(node) -> Settings:
    """Declare every perception_node parameter on an rclpy node and return the checked start-up
    values; a start-up value of the wrong type or out of range raises InputError naming it."""
    return Settings.from_values(PERCEPTION.declare(node))
