"""Everything a perception node publishes for one camera frame, computed with one depth pass:
metric (or relative) depth, scale, and odometry of the robot base with covariances.

ROS adapters only convert the `FrameResult` into messages; the maths lives here.

Frames: the VO estimates the motion of the camera's optical frame (x right, y down, z forward).
`base_from_camera` (T_base_camera, (4,4)) places that frame on the robot, and the odom frame is
the base frame at the first frame after a reset, so

    T_odom_base(t) = T_base_camera @ T_cam0_cam(t) @ inv(T_base_camera).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transforms3d.euler import euler2mat

from .data.pose_io import save_kitti_poses, save_tum_poses
from .errors import InputError
from .geometry import so3_log
from .infer import ON_FAILURE, DepthPredictor, LoadedModel, OdometryEstimator
from .scale import ScaleEstimator


def pose_from_xyz_rpy(values) -> np.ndarray:
    """(4,4) transform from [x, y, z, roll, pitch, yaw] (metres, radians; URDF / tf2 convention:
    R = Rz(yaw) Ry(pitch) Rx(roll) about fixed axes)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size != 6 or not np.isfinite(v).all():
        raise InputError(f"expected 6 finite numbers [x, y, z, roll, pitch, yaw], got {list(v)}")
    T = np.eye(4)
    T[:3, :3] = euler2mat(v[3], v[4], v[5], "sxyz")
    T[:3, 3] = v[:3]
    return T


def se3_adjoint(T: np.ndarray) -> np.ndarray:
    """Adjoint (6,6) of a (4,4) rigid transform for twists ordered translation first:
    T @ exp(xi) @ inv(T) = exp(Ad(T) @ xi)."""
    R, t = T[:3, :3], T[:3, 3]
    tx = np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])
    Ad = np.zeros((6, 6))
    Ad[:3, :3] = R
    Ad[:3, 3:] = tx @ R
    Ad[3:, 3:] = R
    return Ad


def _invert(T: np.ndarray) -> np.ndarray:
    Ti = np.eye(4)
    Ti[:3, :3] = T[:3, :3].T
    Ti[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return Ti


@dataclass
class PipelineOptions:
    """Settings of a PerceptionPipeline (all can change between frames via `configure`).

    height, width: network input size, multiples of 32 and at least 64 (the encoder downsamples
        by 32 and its last map must be 2 pixels or more); 0 takes the model's own size.
    on_failure: see OdometryEstimator ("hold" keeps the last pose when refinement fails).
    base_from_camera: (4,4) pose of the camera optical frame in the base frame.
    min_variance: floor added to every relative-motion variance (m^2, rad^2), so that a
        near-perfect feature match never claims impossible certainty.
    """

    height: int = 0
    width: int = 0
    scale_mode: str = "relative"
    scale_factor: float = 1.0
    camera_height: float = 1.65
    odometry: bool = True
    refine: bool = True
    on_failure: str = "hold"
    base_from_camera: np.ndarray = field(default_factory=lambda: np.eye(4))
    min_variance: float = 1e-6

    def check(self) -> None:
        """Raise InputError for settings no frame could be processed with."""
        for name in ("height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value % 32 or value < 0 \
                    or 0 < value < 64:
                raise InputError(f"network input {name} must be 0 (the model's) or a multiple of 32 of at least 64, "
                                 f"got {value!r}")
        if self.on_failure not in ON_FAILURE:
            raise InputError(f"on_failure '{self.on_failure}' is not one of {', '.join(ON_FAILURE)}")
        T = np.asarray(self.base_from_camera, dtype=np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all() or not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3),
                                                                            atol=1e-6):
            raise InputError("base_from_camera must be a finite (4,4) rigid transform")
        if not self.min_variance > 0:
            raise InputError(f"min_variance must be > 0, got {self.min_variance}")
        ScaleEstimator(self.scale_mode, self.scale_factor, self.camera_height)


@dataclass
class OdometryOutput:
    """Odometry of the robot base for one frame (REP 105 odom frame, output units).

    pose: (4,4) T_odom_base. pose_covariance: (6,6) of (x, y, z, rot x, rot y, rot z) about the
    odom axes. twist: (6,) linear then angular velocity in the base frame (per second; zeros when
    the time step is unknown). twist_covariance: (6,6) in the base frame. camera_pose: (4,4)
    T_cam0_cam. tracking: OdometryStep.tracking. lost_count: failed steps since the last reset;
    lost_streak: failed steps in a row up to this one.
    """

    pose: np.ndarray
    pose_covariance: np.ndarray
    twist: np.ndarray
    twist_covariance: np.ndarray
    camera_pose: np.ndarray
    tracking: str
    cost: float
    valid_fraction: float
    lost_count: int
    lost_streak: int


@dataclass
class FrameResult:
    """depth: (h,w) float32 in output units (metres unless the scale mode is relative), NaN
    where invalid. K: (3,3) intrinsics of `depth`. scale: factor applied to network depth.
    odometry: None when odometry is off. ms_depth / ms_odometry: wall time of the two parts."""

    depth: np.ndarray
    K: np.ndarray
    scale: float
    odometry: OdometryOutput | None
    ms_depth: float
    ms_odometry: float


class _Trajectory:
    """Growable (N,) stamps and (N,4,4) camera poses without per-frame Python objects."""

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self._stamps = np.empty(64)
        self._poses = np.empty((64, 4, 4))
        self.size = 0

    def append(self, stamp: float, pose: np.ndarray) -> None:
        if self.size == len(self._stamps):
            self._stamps = np.resize(self._stamps, 2 * self.size)
            self._poses = np.resize(self._poses, (2 * self.size, 4, 4))
        self._stamps[self.size], self._poses[self.size] = stamp, pose
        self.size += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self._stamps[: self.size].copy(), self._poses[: self.size].copy()


class PerceptionPipeline:
    """Per-frame depth, scale and base odometry from one model.

    Not thread-safe: a node serialises `process`, `reset`, `configure` and `set_model`.
    """

    def __init__(self, loaded: LoadedModel, device: torch.device, options: PipelineOptions | None = None):
        self.device = device
        self.options = options or PipelineOptions()
        self.options.check()
        self.loaded = loaded
        self._build_depth()
        self._build_scale()
        self._build_odometry(np.eye(4))
        self._trajectory = _Trajectory()
        self._reset_odometry_state()

    # -- construction -------------------------------------------------------------------------
    def _build_depth(self) -> None:
        self.predictor = DepthPredictor(self.loaded, self.device, self.options.height or None,
                                        self.options.width or None)

    def _build_scale(self) -> None:
        o = self.options
        self.scale = ScaleEstimator(o.scale_mode, o.scale_factor, o.camera_height)

    def _build_odometry(self, pose: np.ndarray) -> None:
        o = self.options
        self.estimator = OdometryEstimator(self.loaded, self.device, refine=o.refine, on_failure=o.on_failure)
        self.estimator.reset(pose)

    def _reset_odometry_state(self) -> None:
        self._cov = np.zeros((6, 6))  # pose covariance, base frame (right perturbation)
        self._prev_stamp: float | None = None
        self._input_hw: tuple[int, int] | None = None
        self.lost_count = 0
        self.lost_streak = 0

    # -- control ------------------------------------------------------------------------------
    @property
    def network_size(self) -> tuple[int, int]:
        """(height, width) of the network input and of the output depth."""
        return self.predictor.height, self.predictor.width

    def reset(self) -> None:
        """Restart the trajectory at the identity; the scale history is kept."""
        self.estimator.reset()
        self._trajectory.clear()
        self._reset_odometry_state()

    def configure(self, options: PipelineOptions) -> None:
        """Apply new settings, rebuilding only what they touch; the trajectory continues."""
        options.check()
        old, self.options = self.options, options
        if (old.height, old.width) != (options.height, options.width):
            self._build_depth()
            self.estimator.restart_reference()
        if (old.scale_mode, old.scale_factor, old.camera_height) != (
                options.scale_mode, options.scale_factor, options.camera_height):
            self._build_scale()
        self.estimator.refine = options.refine
        self.estimator.on_failure = options.on_failure
        if options.odometry and not old.odometry:
            self.estimator.restart_reference()
            self._prev_stamp = None

    def set_model(self, loaded: LoadedModel) -> None:
        """Swap in another (already checked) model; the trajectory continues from the current
        pose, matched against frames of the new model only."""
        self.loaded = loaded
        self._build_depth()
        self._build_odometry(self.estimator.pose)
        self._prev_stamp = None

    def describe_scale(self) -> str:
        """The active scale mode and state in words, for logs and diagnostics."""
        return self.scale.describe()

    # -- per frame ----------------------------------------------------------------------------
    def process(self, rgb: np.ndarray, K: np.ndarray, stamp: float) -> FrameResult:
        """One frame.

        Args:
            rgb: (H,W,3) uint8; K: (3,3) intrinsics of `rgb`; stamp: capture time in seconds.
        Returns:
            FrameResult
        """
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise InputError(f"intrinsics must be a (3,3) matrix, got shape {K.shape}")
        t0 = time.perf_counter()
        depth_net, K_net, x = self.predictor(rgb, K)
        scale = self.scale.update(depth_net, K_net)
        depth = depth_net * np.float32(scale)
        with np.errstate(invalid="ignore"):
            depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
        t1 = time.perf_counter()
        odometry = None
        if self.options.odometry:
            if self._input_hw is not None and self._input_hw != rgb.shape[:2]:
                # New camera geometry: the previous frame's features are not comparable.
                self.estimator.restart_reference()
            self._input_hw = rgb.shape[:2]
            odometry = self._odometry(x, depth_net, K_net, scale, float(stamp))
        t2 = time.perf_counter()
        return FrameResult(depth, K_net, float(scale), odometry, 1e3 * (t1 - t0), 1e3 * (t2 - t1))

    def _odometry(self, x, depth_net, K_net, scale, stamp) -> OdometryOutput:
        step = self.estimator.step(x, depth_net, K_net, scale)
        failed = step.tracking in ("lost", "posenet_fallback")
        self.lost_count += failed
        self.lost_streak = self.lost_streak + 1 if failed else 0

        T_bc = np.asarray(self.options.base_from_camera, dtype=np.float64)
        T_cb = _invert(T_bc)
        rel = T_bc @ step.relative @ T_cb
        Ad_bc = se3_adjoint(T_bc)
        rel_cov = Ad_bc @ step.covariance @ Ad_bc.T + self.options.min_variance * np.eye(6)
        if step.tracking != "init":
            Ad_inv = se3_adjoint(_invert(rel))
            self._cov = Ad_inv @ self._cov @ Ad_inv.T + rel_cov

        pose = T_bc @ step.pose @ T_cb
        R6 = np.kron(np.eye(2), pose[:3, :3])
        pose_cov = R6 @ self._cov @ R6.T

        dt = stamp - self._prev_stamp if self._prev_stamp is not None else 0.0
        if step.tracking != "init" and dt > 0:
            angular = so3_log(torch.from_numpy(rel[:3, :3])).numpy()
            twist = np.concatenate([rel[:3, 3], angular]) / dt
            twist_cov = rel_cov / dt**2
        else:
            twist, twist_cov = np.zeros(6), np.eye(6) * OdometryEstimator.LOST_VARIANCE
        self._prev_stamp = stamp
        self._trajectory.append(stamp, step.pose)
        return OdometryOutput(pose, 0.5 * (pose_cov + pose_cov.T), twist, 0.5 * (twist_cov + twist_cov.T),
                              step.pose, step.tracking, step.cost, step.valid_fraction,
                              self.lost_count, self.lost_streak)

    # -- trajectory ---------------------------------------------------------------------------
    def trajectory(self) -> tuple[np.ndarray, np.ndarray]:
        """Stamps (N,) seconds and camera poses T_cam0_cam (N,4,4) since the last reset."""
        return self._trajectory.arrays()

    def save_trajectory(self, directory: str | Path, stem: str = "trajectory") -> tuple[Path, Path]:
        """Write the camera trajectory since the last reset as `<stem>_kitti.txt` (3x4 per line)
        and `<stem>_tum.txt` (stamp, position, quaternion), both camera-to-first-camera, the
        form KITTI and TUM ground truth take. Returns the two paths."""
        stamps, poses = self.trajectory()
        if len(poses) == 0:
            raise InputError("no trajectory to save yet: no frame has been processed since the last reset")
        out = Path(directory).expanduser()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create trajectory directory {out}: {exc.strerror}") from exc
        kitti, tum = out / f"{stem}_kitti.txt", out / f"{stem}_tum.txt"
        save_kitti_poses(kitti, poses)
        save_tum_poses(tum, stamps, poses)
        return kitti, tum

