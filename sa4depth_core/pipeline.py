"""Everything a perception node publishes for one camera frame, computed with one depth pass:
metric (or relative) depth, scale, and odometry of the robot base with covariances.

ROS adapters only convert the `FrameResult` into messages; the maths lives here. The pipeline
is the one owner of the output scale (applied to depth and to each step's translation and
covariance), of the trajectory and of the failure counts; odometry stays in torch (float64)
until FrameResult, the message edge.

Frames: the VO estimates the motion of the camera's optical frame (x right, y down, z forward).
`base_from_camera` (T_base_camera, (4,4)) places that frame on the robot, and the odom frame is
the base frame at the first frame after a reset, so

    T_odom_base(t) = T_base_camera @ T_cam0_cam(t) @ inv(T_base_camera).

A frame whose odometry stage fails (any exception) still gets its depth: the failure is reported
in FrameResult.odometry_error and the next frame restarts odometry from the current pose.

This is the one per-frame odometry path: the node runs it, and so do evaluation
(eval.run_model.run_sequence) and the benchmarks, with the same PipelineOptions defaults.
"""
from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .backends import make_networks
from .data.pose_io import save_kitti_poses, save_tum_poses
from .errors import InputError
from .geometry import invert_transform, se3_adjoint, so3_log
from .infer import DepthPredictor
from .input_checks import check_covariance, check_rigid_transform
from .loaded_model import LoadedModel, network_size
from .odometry import LOST_VARIANCE, OdometryEstimator, Tracking
from .pipeline_options import PipelineOptions
from .scale import ScaleEstimator

_F64 = torch.float64


class OdomOrigin:
    """Where a reset to a pose (a node's ~/set_pose) restarted the trajectory: `pose` (4,4) of the
    base in the odom frame and its `covariance` (6,6) about the odom axes; the odometry since the
    reset is composed onto it."""

    def __init__(self, pose: np.ndarray, covariance: np.ndarray):
        self.pose, self.covariance = pose, covariance

    def compose(self, pose: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The base's (4,4) pose in odom and (6,6) covariance about the odom axes after the
        odometry's `pose` (4,4) with `covariance` (6,6) about its own start's axes: first-order
        propagation of both independent uncertainties (the origin's rotation error moves the
        base by its offset from the origin)."""
        out = self.pose @ pose
        step = np.kron(np.eye(2), self.pose[:3, :3])
        x, y, z = out[:3, 3] - self.pose[:3, 3]
        origin = np.eye(6)
        origin[:3, 3:] = [[0.0, z, -y], [-z, 0.0, x], [y, -x, 0.0]]  # -[offset]x
        return out, step @ covariance @ step.T + origin @ self.covariance @ origin.T


@dataclass
class OdometryOutput:
    """Odometry of the robot base for one frame (REP 105 odom frame, output units).

    pose: (4,4) T_odom_base. pose_covariance: (6,6) of (x, y, z, rot x, rot y, rot z) about the
    odom axes. twist: (6,) linear then angular velocity in the base frame (per second; zeros when
    the time step is unknown). twist_covariance: (6,6) in the base frame. camera_pose: (4,4)
    T_cam0_cam. tracking: odometry.Tracking. lost_count: failed steps since the last reset;
    lost_streak: failed steps in a row up to this one. reason: why the refinement was not used.
    """

    pose: np.ndarray
    pose_covariance: np.ndarray
    twist: np.ndarray
    twist_covariance: np.ndarray
    camera_pose: np.ndarray
    tracking: Tracking
    cost: float
    valid_fraction: float
    lost_count: int
    lost_streak: int
    reason: str = ""


@dataclass
class FrameResult:
    """depth: (h,w) float32 in output units (metres unless the scale mode is relative), NaN
    where invalid. K: (3,3) intrinsics of `depth`. scale: factor applied to network depth.
    odometry: None when odometry is off or its stage failed for this frame (odometry_error then
    says why). ms_depth / ms_odometry: wall time of the two parts. scale_state, status,
    warnings: the pipeline's describe_scale(), status() and warnings() after this frame, and
    metric whether depth and odometry are in metres (not in network units), so a caller
    publishing the frame needs nothing else from the pipeline."""

    depth: np.ndarray
    K: np.ndarray
    scale: float
    odometry: OdometryOutput | None
    ms_depth: float
    ms_odometry: float
    odometry_error: str = ""
    scale_state: str = ""
    status: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    metric: bool = False


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


def _symmetric(M: torch.Tensor) -> np.ndarray:
    """(6,6) numpy of the symmetric part of M."""
    return (0.5 * (M + M.T)).numpy()


class PerceptionPipeline:
    """Per-frame depth, scale and base odometry from one model.

    Not thread-safe: a node serialises `process`, `reset`, `configure` and `set_model`. In
    parallel mode it owns a thread: `close()` it, or use it as a context manager.

    nets: networks already built for `loaded` at the options' network size
        (backends.make_networks), so several pipelines over one model share one set (evaluation
        runs one per odometry mode); None builds them from the options' backend, precision and
        threads. Either way a later change of those settings or of the model builds anew.
    """

    def __init__(self, loaded: LoadedModel, device: torch.device, options: PipelineOptions | None = None,
                 nets=None):
        self.device = device
        self.options = options or PipelineOptions()
        self.options.check()
        self.loaded = loaded
        self._build_networks(nets)
        self._build_scale()
        self._build_odometry()
        self._trajectory = _Trajectory()
        self.counts: Counter = Counter()  # odometry steps per Tracking state, and failed stages
        self._origin: OdomOrigin | None = None  # set by reset(pose)
        self._pool: ThreadPoolExecutor | None = None
        self.last_rejection = ""
        self._reset_odometry_state(torch.eye(4, dtype=_F64))

    # -- construction -------------------------------------------------------------------------
    def _build_networks(self, nets=None) -> None:
        """The inference networks at the network size (`nets` when given and built for this model
        and size), and the depth predictor running them."""
        o = self.options
        if nets is None:
            nets = self.networks_for(self.loaded)
        elif nets.model_id != self.loaded.model_id or (nets.height, nets.width) != network_size(
                self.loaded, o.height, o.width):
            raise InputError(f"the given networks ({nets!r}) were not built for model {self.loaded.model_id} at "
                             f"the network size {network_size(self.loaded, o.height, o.width)}")
        self.nets, self.backend = nets, nets.description
        self.predictor = DepthPredictor(self.loaded, self.device, o.height, o.width, nets=self.nets)

    def _build_scale(self) -> None:
        o = self.options
        self.scale = ScaleEstimator(o.scale_mode, o.scale_factor, o.camera_height)

    def _build_odometry(self) -> None:
        self.estimator = OdometryEstimator(self.loaded, self.device, self.options, nets=self.nets)

    def _reset_odometry_state(self, camera_pose: torch.Tensor) -> None:
        self._camera_pose = camera_pose  # T_cam0_cam (4,4), output units
        self._cov = self.options.min_variance * torch.eye(6, dtype=_F64)  # pose covariance, base frame (right)
        self._prev_stamp: float | None = None
        self._input_hw: tuple[int, int] | None = None
        self.lost_count = 0
        self.lost_streak = 0

    # -- control ------------------------------------------------------------------------------
    @property
    def network_size(self) -> tuple[int, int]:
        """(height, width) of the network input and of the output depth."""
        return self.predictor.height, self.predictor.width

    def reset(self, pose: np.ndarray | None = None, covariance: np.ndarray | None = None) -> None:
        """Restart the trajectory at the identity, or with the base at `pose` (4,4) in the odom
        frame with `covariance` (6,6) about the odom axes (default zeros); the scale history is kept.
        The saved camera trajectory starts anew either way."""
        origin = None
        if pose is not None:
            pose = check_rigid_transform(pose, "a reset pose")
            covariance = np.zeros((6, 6)) if covariance is None else check_covariance(covariance, "a reset covariance")
            origin = OdomOrigin(pose, covariance)
        self.estimator.restart_reference()
        self._trajectory.clear()
        self._reset_odometry_state(torch.eye(4, dtype=_F64))
        self._origin = origin

    def configure(self, options: PipelineOptions) -> None:
        """Apply new settings, rebuilding only what they touch; the trajectory continues."""
        options.check()
        old, self.options = self.options, options
        if (old.height, old.width, old.backend, old.precision, old.threads) != (
                options.height, options.width, options.backend, options.precision, options.threads):
            self._build_networks()
            self.estimator.nets = self.nets
            self.estimator.restart_reference()
        if (old.scale_mode, old.scale_factor, old.camera_height) != (
                options.scale_mode, options.scale_factor, options.camera_height):
            self._build_scale()
        if (old.refine_iterations, old.refine_max_points) != (options.refine_iterations, options.refine_max_points):
            self._build_odometry()  # the next frame starts a new reference; the trajectory goes on
        self.estimator.options = options
        if options.odometry and not old.odometry:
            self.estimator.restart_reference()
            self._prev_stamp = None

    def networks_for(self, loaded: LoadedModel):
        """The inference networks `set_model(loaded, nets)` takes, built at the current settings
        without touching the pipeline: a caller builds them (seconds: export, compile, parity
        check) while frames still run, and the swap itself is then instant."""
        o = self.options
        return make_networks(loaded, o.backend, o.precision, self.device, o.height, o.width, o.threads)[0]

    def set_model(self, loaded: LoadedModel, nets=None) -> None:
        """Swap in another (already checked) model, with its networks from `networks_for` (None:
        build them now); the trajectory continues from the current pose, matched against frames
        of the new model only."""
        self.loaded = loaded
        self._build_networks(nets)
        self._build_odometry()
        self._prev_stamp = None

    def describe_scale(self) -> str:
        """The active scale mode and state in words, for logs and diagnostics."""
        return self.scale.describe()

    def status(self) -> dict:
        """The odometry mode and its counts since start, for diagnostics (str / int values)."""
        c = self.counts
        return {"inference_backend": self.backend, "odometry_mode": self.estimator.mode, "steps_refined": c[Tracking.REFINED],
                "steps_posenet": c[Tracking.POSENET], "steps_fallback": c[Tracking.FALLBACK],
                "steps_lost": c[Tracking.LOST], "odometry_stage_errors": c["error"],
                "last_rejection": self.last_rejection or "none"}

    def warnings(self) -> list[str]:
        """Conditions a user must know about although frames are processed."""
        out = []
        if self.options.odometry and self.options.refine and not self.estimator.refining:
            out.append(f"odometry is {self.estimator.mode}")
        if self.options.scale_mode == "relative":
            out.append("scale_mode relative: depth and odometry are in network units, not metres")
        elif not self.scale.ready:
            out.append("camera_height scale: no ground plane fitted yet, depth is in network units")
        return out

    # -- per frame ----------------------------------------------------------------------------
    def process(self, rgb: np.ndarray, K: np.ndarray, stamp: float) -> FrameResult:
        """One frame.

        Args:
            rgb: (H,W,3) uint8; K: (3,3) intrinsics of `rgb`; stamp: capture time in seconds.
        Returns:
            FrameResult
        Raises:
            InputError for a frame no depth can be computed from; any other failure of the depth
            stage propagates. Failures of the odometry stage do not (see FrameResult).
        """
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise InputError(f"intrinsics must be a (3,3) matrix, got shape {K.shape}")
        t0 = time.perf_counter()
        x, K_net = self.predictor.inputs(rgb, K)
        odometry, error, prepared = None, "", None
        if self.options.odometry:
            if self._input_hw is not None and self._input_hw != rgb.shape[:2]:
                # New camera geometry: the previous frame's features are not comparable.
                self.estimator.restart_reference()
            self._input_hw = rgb.shape[:2]
        if self.options.odometry and self.options.parallel:
            pending = self._worker().submit(self.predictor.depth, x)
            try:
                prepared = self.estimator.prepare(x)
            except Exception as exc:  # noqa: BLE001 - contained like the rest of the odometry stage
                error = self._odometry_failed(exc)
            depth_net = pending.result()
        else:
            depth_net = self.predictor.depth(x)
        depth_np = depth_net[0, 0].cpu().numpy()
        scale = self.scale.update(depth_np, K_net)
        depth = depth_np * np.float32(scale)
        with np.errstate(invalid="ignore"):
            depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
        t1 = time.perf_counter()
        if self.options.odometry and not error:
            try:
                prepared = prepared or self.estimator.prepare(x)
                odometry = self._odometry(prepared, depth_net, K_net, scale, float(stamp))
            except Exception as exc:  # noqa: BLE001 - one frame's odometry must not cost its depth
                error = self._odometry_failed(exc)
        t2 = time.perf_counter()
        return FrameResult(depth, K_net, float(scale), odometry, 1e3 * (t1 - t0), 1e3 * (t2 - t1), error,
                           self.describe_scale(), self.status(), self.warnings(),
                           self.options.scale_mode != "relative" and self.scale.ready)

    def _worker(self) -> ThreadPoolExecutor:
        """The thread that runs the depth network in parallel mode (made on first use)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="sa4depth-depth")
        return self._pool

    def close(self) -> None:
        """End the parallel mode's thread (waiting for a depth pass it runs). A later parallel
        frame starts a new one, so closing is safe at any point between frames."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def __enter__(self) -> PerceptionPipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _odometry_failed(self, exc: Exception) -> str:
        """Count a failed odometry stage and restart from the current pose; the reason."""
        self.estimator.restart_reference()
        self.counts["error"] += 1
        return f"{type(exc).__name__}: {exc}"

    def _odometry(self, prepared, depth_net, K_net, scale: float, stamp: float) -> OdometryOutput:
        step = self.estimator.finish(prepared, depth_net, K_net)
        tracking = step.tracking
        rel_cam = step.relative.clone()
        rel_cam[:3, 3] *= scale
        S = torch.diag(torch.tensor([scale] * 3 + [1.0] * 3, dtype=_F64))
        cov_cam = S @ step.covariance @ S
        camera_pose = self._camera_pose @ rel_cam
        if not (torch.isfinite(camera_pose).all() and torch.isfinite(cov_cam).all()):
            # an absurd scale: the motion is unknown, the pose is held
            rel_cam, cov_cam = torch.eye(4, dtype=_F64), LOST_VARIANCE * torch.eye(6, dtype=_F64)
            camera_pose, tracking = self._camera_pose, Tracking.LOST
        self._camera_pose = camera_pose
        self.counts[tracking] += 1
        if step.reason:
            self.last_rejection = step.reason
        self.lost_count += tracking.failed
        self.lost_streak = self.lost_streak + 1 if tracking.failed else 0

        T_bc = torch.from_numpy(np.asarray(self.options.base_from_camera, dtype=np.float64))
        T_cb = invert_transform(T_bc)
        rel = T_bc @ rel_cam @ T_cb
        Ad_bc = se3_adjoint(T_bc)
        rel_cov = Ad_bc @ cov_cam @ Ad_bc.T + self.options.min_variance * torch.eye(6, dtype=_F64)
        if tracking != Tracking.INIT:
            Ad_inv = se3_adjoint(invert_transform(rel))
            self._cov = Ad_inv @ self._cov @ Ad_inv.T + rel_cov
            if not torch.isfinite(self._cov).all():
                self._cov = LOST_VARIANCE * torch.eye(6, dtype=_F64)

        pose = T_bc @ camera_pose @ T_cb
        R6 = torch.block_diag(pose[:3, :3], pose[:3, :3])
        pose_cov = R6 @ self._cov @ R6.T

        dt = stamp - self._prev_stamp if self._prev_stamp is not None else 0.0
        if tracking != Tracking.INIT and dt > 0:
            twist = torch.cat([rel[:3, 3], so3_log(rel[:3, :3])]) / dt
            twist_cov = rel_cov / dt**2
        else:
            twist, twist_cov = torch.zeros(6, dtype=_F64), LOST_VARIANCE * torch.eye(6, dtype=_F64)
        self._prev_stamp = stamp
        camera_np = camera_pose.numpy()
        self._trajectory.append(stamp, camera_np)
        pose_np, pose_cov_np = pose.numpy(), _symmetric(pose_cov)
        if self._origin is not None:
            pose_np, pose_cov_np = self._origin.compose(pose_np, pose_cov_np)
        return OdometryOutput(pose_np, pose_cov_np, twist.numpy(), _symmetric(twist_cov),
                              camera_np.copy(), tracking, step.cost, step.valid_fraction,
                              self.lost_count, self.lost_streak, step.reason)

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
