"""Parameters of the perception node: one table of names, defaults, descriptions and checks.

The table declares the parameters on the node, validates start-up and live values (a rejected
live value comes back to the caller with the reason), and is what the launch/config tests check
the YAML and launch files against. Names follow common ROS 2 VO/depth nodes (odom_frame,
base_frame, publish_tf, ...).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from sa4depth_core.errors import InputError
from sa4depth_core.infer import MAX_NETWORK_SIDE, select_device
from sa4depth_core.odometry import ON_FAILURE
from sa4depth_core.pipeline import PipelineOptions, pose_from_xyz_rpy
from sa4depth_core.scale import SCALE_MODES

from .qos import QOS_NAMES

MAX_THREADS = 256
# Camera optical frame (x right, y down, z forward) on a base with x forward, z up (REP 103).
OPTICAL_ON_BASE = [0.0, 0.0, 0.0, -math.pi / 2, 0.0, -math.pi / 2]


def _one_of(options) -> Callable:
    return lambda v: None if v in options else f"must be one of {', '.join(options)}, got '{v}'"


def _positive(v) -> str | None:
    return None if math.isfinite(v) and v > 0 else f"must be a positive number, got {v}"


def _network_size(v) -> str | None:
    return None if v == 0 or (v >= 64 and v % 32 == 0) else \
        f"must be 0 (the checkpoint's size) or a multiple of 32 of at least 64, got {v}"


def _frame_name(optional: bool) -> Callable:
    def check(v):
        if not v:
            return None if optional else "must not be empty"
        return f"'{v}' must not start with '/' (tf2 frame ids have no leading slash)" if v.startswith("/") else None
    return check


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
        from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

        descriptor = ParameterDescriptor(description=self.description, read_only=self.read_only,
                                         dynamic_typing=isinstance(self.default, float))
        if self.bounds is not None and isinstance(self.default, float):
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(self.bounds[0]), to_value=float(self.bounds[1]), step=0.0)]
        elif self.bounds is not None:
            descriptor.integer_range = [IntegerRange(
                from_value=int(self.bounds[0]), to_value=int(self.bounds[1]), step=0)]
        return descriptor


SPECS = (
    ParamSpec("checkpoint", "", "project .pt checkpoint or Monodepth2 weights folder; empty = randomly initialised "
              "networks (meaningless depth). A live change takes effect on ~/reload_model", check=_checkpoint),
    ParamSpec("device", "auto", "auto | cpu | cuda | cuda:N (CUDA missing: CPU with a warning)",
              read_only=True, check=_accepted_by(select_device)),
    ParamSpec("threads", 0, "torch CPU threads (0 = torch default)", bounds=(0, MAX_THREADS)),
    ParamSpec("input_width", 0, "network input width (0 = the checkpoint's)", check=_network_size,
              bounds=(0, MAX_NETWORK_SIDE)),
    ParamSpec("input_height", 0, "network input height (0 = the checkpoint's)", check=_network_size,
              bounds=(0, MAX_NETWORK_SIDE)),
    ParamSpec("scale_mode", "relative", "relative (network units) | fixed (x scale_factor) | camera_height "
              "(metres from the camera's height above a fitted ground plane)", check=_one_of(SCALE_MODES)),
    ParamSpec("scale_factor", 1.0, "depth multiplier in scale_mode fixed", check=_positive, bounds=(0.0, 1e6)),
    ParamSpec("camera_height", 1.65, "camera height above the ground in metres (scale_mode camera_height)",
              check=_positive, bounds=(0.0, 100.0)),
    ParamSpec("odometry.enabled", True, "compute and publish odometry, path and TF"),
    ParamSpec("odometry.refine", True, "feature-metric LM refinement of PoseNet's motion"),
    ParamSpec("odometry.on_failure", "hold", "when refinement fails: hold (keep the last pose) | posenet "
              "(use PoseNet's motion); either way with inflated covariance", check=_one_of(ON_FAILURE)),
    ParamSpec("odom_frame", "odom", "odometry frame (header of odom, path, TF parent)", check=_frame_name(False)),
    ParamSpec("base_frame", "base_link", "robot base frame (odom child, TF child)", check=_frame_name(False)),
    ParamSpec("camera_frame", "", "frame of the outputs; empty = the input image's frame_id",
              check=_frame_name(True)),
    ParamSpec("base_to_camera", OPTICAL_ON_BASE, "camera optical frame in the base frame: x, y, z (m), "
              "roll, pitch, yaw (rad); default: optical axes on a REP 103 base", read_only=True, check=_accepted_by(pose_from_xyz_rpy)),
    ParamSpec("publish_tf", True, "publish odom_frame -> base_frame on /tf"),
    ParamSpec("publish_camera_tf", False, "publish base_frame -> camera frame (base_to_camera) on /tf_static; "
              "leave off when robot_state_publisher already does"),
    ParamSpec("publish_points", True, "offer the points PointCloud2 (built only while someone subscribes)",
              read_only=True),
    ParamSpec("points_stride", 4, "keep every n-th row and column in points", bounds=(1, 64)),
    ParamSpec("path_max_size", 1024, "poses kept in path", bounds=(1, 100_000)),
    ParamSpec("path_period", 0.5, "seconds of image time between path messages, 0 = every frame (each "
              "message carries the whole path: about 6 ms of serialisation per 1000 poses)", bounds=(0.0, 3600.0)),
    ParamSpec("intrinsics", [0.0, 0.0, 0.0, 0.0], "fx, fy, cx, cy of the input image in pixels; all 0 = pair "
              "images with camera_info instead", read_only=True, check=intrinsics_problem),
    ParamSpec("sync_slop", 0.02, "largest image/CameraInfo stamp difference that pairs (s)", read_only=True,
              bounds=(0.0, 10.0)),
    ParamSpec("qos.image", "sensor_data", "QoS of the image and camera_info subscriptions", read_only=True,
              check=_one_of(QOS_NAMES)),
    ParamSpec("qos.output", "reliable", "QoS of the publishers", read_only=True, check=_one_of(QOS_NAMES)),
    ParamSpec("trajectory_dir", "~/.ros/sa4depth", "directory ~/save_trajectory writes to",
              check=lambda v: None if v.strip() else "must not be empty"),
    ParamSpec("reload_timeout", 60.0, "seconds ~/reload_model may take to load and smoke-test a model before it "
              "answers failure (the stuck load is abandoned)", bounds=(1.0, 3600.0)),
    ParamSpec("diagnostics_period", 1.0, "seconds between /diagnostics messages", read_only=True,
              bounds=(0.05, 3600.0)),
)
BY_NAME = {spec.name: spec for spec in SPECS}


def coerce(expected, value, name: str):
    """`value` in the type of the default `expected` (floats also accept integers, lists become
    lists of floats), or InputError naming parameter `name`. Both nodes type their parameters so."""
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


def check_value(name: str, value):
    """Checked, typed value of parameter `name`; InputError with the reason if unusable.
    Parameters not in the table (e.g. use_sim_time) pass through."""
    spec = BY_NAME.get(name)
    if spec is None:
        return value
    value = coerce(spec.default, value, name)
    reason = spec.problem(value)
    if reason:
        raise InputError(f"parameter '{name}' {reason}")
    return value


def field_name(name: str) -> str:
    """Settings attribute of a parameter name."""
    return name.replace(".", "_")


@dataclass(frozen=True)
class Settings:
    """Checked values of every parameter in SPECS (dots in names become underscores)."""

    checkpoint: str
    device: str
    threads: int
    input_width: int
    input_height: int
    scale_mode: str
    scale_factor: float
    camera_height: float
    odometry_enabled: bool
    odometry_refine: bool
    odometry_on_failure: str
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
        checked = {field_name(spec.name): check_value(spec.name, values.get(spec.name, spec.default)) for spec in SPECS}
        for key in ("base_to_camera", "intrinsics"):
            checked[key] = tuple(checked[key])
        settings = cls(**checked)
        settings.pipeline_options().check()
        return settings

    def updated(self, values: dict) -> "Settings":
        """A copy with some parameters changed (InputError if a value or the combination is bad)."""
        current = {spec.name: getattr(self, field_name(spec.name)) for spec in SPECS}
        current.update({k: v for k, v in values.items() if k in BY_NAME})
        return Settings.from_values(current)

    @property
    def intrinsics_given(self) -> bool:
        return any(self.intrinsics)

    def K(self) -> np.ndarray:
        """(3,3) intrinsics from the `intrinsics` parameter."""
        return intrinsics_matrix(self.intrinsics)

    def pipeline_options(self) -> PipelineOptions:
        return PipelineOptions(
            height=self.input_height, width=self.input_width, scale_mode=self.scale_mode,
            scale_factor=self.scale_factor, camera_height=self.camera_height, odometry=self.odometry_enabled,
            refine=self.odometry_refine, on_failure=self.odometry_on_failure,
            base_from_camera=pose_from_xyz_rpy(self.base_to_camera))


def declare(node) -> Settings:
    """Declare every parameter on an rclpy node and return the checked start-up values; a start-up
    value of the wrong type or out of range raises InputError naming it."""
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    values = {}
    for spec in SPECS:
        try:
            values[spec.name] = node.declare_parameter(spec.name, spec.default, spec.descriptor()).value
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            raise InputError(f"parameter '{spec.name}': {exc}") from None
    return Settings.from_values(values)

