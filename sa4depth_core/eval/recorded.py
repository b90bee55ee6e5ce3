"""Score outputs recorded from a running system (depth images, a saved trajectory) against the
ground truth of the sequence that was played to it, matching frames by timestamp."""
from __future__ import annotations

import numpy as np

from ..data.sequence import FrameSequence
from ..errors import InputError
from .depth_metrics import evaluate_depth
from .odometry_metrics import odometry_errors

# Monocular odometry has no scale of its own: the headline ATE is after a Sim(3) fit.
ALIGNMENT = "7dof"


def match_frames(frame_stamps: np.ndarray, stamps: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    """Index of the frame whose stamp is within `tol` s of each stamp, or -1.

    Args:
        frame_stamps: (N,) increasing seconds; stamps: (M,) seconds.
    Returns:
        (M,) int
    """
    idx = np.clip(np.searchsorted(frame_stamps, stamps), 1, len(frame_stamps) - 1)
    nearest = np.where(np.abs(frame_stamps[idx - 1] - stamps) <= np.abs(frame_stamps[idx] - stamps), idx - 1, idx)
    return np.where(np.abs(frame_stamps[nearest] - stamps) <= tol, nearest, -1)


def score_recording(seq: FrameSequence, frame_stamps: np.ndarray, depths: list[tuple[float, np.ndarray]],
                    trajectory: tuple[np.ndarray, np.ndarray]) -> dict:
    """Depth metrics (median-scaled, and with one scale for the sequence) and odometry errors.

    Args:
        seq: the played sequence, with GT depth and poses.
        frame_stamps: (N,) stamp in seconds that frame i carried when played.
        depths: (stamp s, (h,w) depth with NaN invalid) per received depth image.
        trajectory: (stamps (M,), camera poses (M,4,4)) as saved by the node.
    Returns:
        {depth: metrics, odometry: errors, depth_frames, depth_by_frame, odom_frames, trajectory (M',4,4)
        estimated poses matched to played frames, gt_poses (M',4,4) their ground truth, alignment: the
        one behind the odometry errors, for `plot_trajectories(..., gt_poses, trajectory, alignment)`}
    """
    if not depths:
        raise InputError("no depth image was received: nothing to score")
    frame_stamps = np.asarray(frame_stamps, dtype=np.float64)
    d_idx = match_frames(frame_stamps, np.array([s for s, _ in depths]))
    depth_by_frame = {int(i): np.nan_to_num(d, nan=0.0) for i, (_, d) in zip(d_idx, depths) if i >= 0}
    frames = sorted(depth_by_frame)
    result = evaluate_depth([seq.gt_depth(i) for i in frames], [depth_by_frame[i] for i in frames],
                            pred_kind="depth", crop="none")
    depth = {"images": len(frames), **{k: result["metrics"][k] for k in ("abs_rel", "sq_rel", "rmse", "a1")},
             "abs_rel one scale": result["global_metrics"]["abs_rel"],
             "scale std/median": result["ratio_std_over_median"]}
    t_stamps, poses = trajectory
    o_idx = match_frames(frame_stamps, np.asarray(t_stamps, dtype=np.float64))
    keep = o_idx >= 0
    if keep.sum() < 3:
        raise InputError(f"only {int(keep.sum())} trajectory poses match played frames: nothing to score")
    odom_frames = o_idx[keep]
    est = np.asarray(poses)[keep]
    gt = np.stack([seq.pose(int(i)) for i in odom_frames])
    errors = odometry_errors(gt, est, alignment=ALIGNMENT)
    scale_only = odometry_errors(gt, est, alignment="scale")
    odometry = {"poses": int(keep.sum()), "ATE 7dof (m)": errors["ate"], "scale 7dof": errors["scale"],
                "t_err 7dof (%)": errors["t_err"], "r_err (deg/100m)": errors["r_err"],
                "ATE scale-only (m)": scale_only["ate"],
                "GT length (m)": float(np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1).sum())}
    return {"depth": depth, "odometry": odometry, "depth_frames": frames, "depth_by_frame": depth_by_frame,
            "odom_frames": odom_frames.tolist(), "trajectory": est, "gt_poses": gt, "alignment": ALIGNMENT}
