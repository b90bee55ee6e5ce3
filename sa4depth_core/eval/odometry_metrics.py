"""Trajectory metrics: KITTI devkit drift (t_err / r_err), ATE, RPE, the 5-frame snippet ATE and
per-pair rotation / translation-direction / scale errors.

Absolute poses are (N,4,4) float64 camera-to-world. Relative poses follow the network
convention: rel[t] maps points in frame-t coordinates to frame-(t+1) coordinates, so
rel[t] = inv(P[t+1]) @ P[t].

The drift / ATE / RPE numbers reproduce kitti-odom-eval (both trajectories re-expressed in
their first frame, then the chosen alignment); the snippet ATE reproduces the SfMLearner /
Monodepth2 `evaluate_pose` formula, including its division by N instead of sqrt(N).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from sa4depth_core.errors import InputError

ALIGNMENTS = ("none", "scale", "6dof", "7dof", "scale_7dof")
SEGMENT_LENGTHS = (100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0)


def check_poses(poses: np.ndarray, name: str, min_frames: int = 2) -> np.ndarray:
    """Validate a pose stack and return it as (N,4,4) float64; `name` labels error messages."""
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (4, 4):
        raise InputError(f"{name}: expected poses of shape (N,4,4), got {arr.shape}")
    if arr.shape[0] < min_frames:
        raise InputError(f"{name}: need at least {min_frames} poses, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name}: poses contain NaN or infinite values")
    return arr


def _check_pair(gt: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt = check_poses(gt, "ground-truth trajectory")
    est = check_poses(est, "estimated trajectory")
    if len(gt) != len(est):
        raise InputError(f"trajectory lengths differ: {len(gt)} ground-truth poses vs "
                         f"{len(est)} estimated poses")
    return gt, est


def rotation_angle(T: np.ndarray) -> np.ndarray:
    """Rotation angle in radians of (...,4,4) or (...,3,3) matrices, from the trace (clamped)."""
    tr = T[..., 0, 0] + T[..., 1, 1] + T[..., 2, 2]
    return np.arccos(np.clip(0.5 * (tr - 1.0), -1.0, 1.0))


def absolute_to_relative(poses: np.ndarray) -> np.ndarray:
    """(N,4,4) camera-to-world poses -> (N-1,4,4) relative poses rel[t] = inv(P[t+1]) @ P[t]."""
    poses = check_poses(poses, "absolute poses")
    return np.linalg.inv(poses[1:]) @ poses[:-1]


def relative_to_absolute(rel: np.ndarray) -> np.ndarray:
    """(M,4,4) relative poses (frame t -> frame t+1 coordinates) -> (M+1,4,4) camera-to-world
    poses with P[0] = I, P[t+1] = P[t] @ inv(rel[t])."""
    rel = check_poses(rel, "relative poses", min_frames=1)
    inv_rel = np.linalg.inv(rel)
    out = np.empty((len(rel) + 1, 4, 4))
    out[0] = np.eye(4)
    for t, step in enumerate(inv_rel):
        out[t + 1] = out[t] @ step
    return out


def umeyama_alignment(src: np.ndarray, dst: np.ndarray,
                      with_scale: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares similarity (Umeyama 1991) taking src points onto dst points.

    src, dst: (N,3). Returns R (3,3), t (3,), s such that dst ~ s * R @ src + t
    (s = 1 when with_scale is False). Estimated positions that never moved (an odometry that
    rejected every step) have no rotation or scale to fit: they map onto dst's centroid (R = I,
    s = 0 with scale), so the error is dst's spread, the best any constant estimate gets.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 2:
        raise InputError(f"Umeyama alignment needs two (N,3) point sets with N >= 2, got "
                         f"{src.shape} and {dst.shape}")
    mu_src, mu_dst = src.mean(0), dst.mean(0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    var_src = np.mean(np.sum(src_c ** 2, axis=1))
    if var_src == 0.0:
        s = 0.0 if with_scale else 1.0
        return np.eye(3), mu_dst - s * mu_src, s
    u, d, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    # Reflection guard: force det(R) = +1.
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2] = -1.0
    R = (u * sign) @ vt
    s = float(np.sum(d * sign) / var_src) if with_scale else 1.0
    t = mu_dst - s * R @ mu_src
    return R, t, s


def align_trajectories(gt: np.ndarray, est: np.ndarray,
                       alignment: str = "none") -> tuple[np.ndarray, np.ndarray, float]:
    """Re-express both trajectories in their first frame, then align est to gt.

    gt, est: (N,4,4). alignment: 'none'; 'scale' (least-squares scale of positions about the
    first frame); '6dof' (Umeyama SE(3)); '7dof' (Umeyama Sim(3)); 'scale_7dof' (only the
    Umeyama scale is applied). Returns (gt_rel (N,4,4), est_aligned (N,4,4), scale applied).
    """
    gt, est = _check_pair(gt, est)
    if alignment not in ALIGNMENTS:
        raise InputError(f"unknown alignment {alignment!r}; choose one of {', '.join(ALIGNMENTS)}")
    gt = np.linalg.inv(gt[0]) @ gt
    est = np.linalg.inv(est[0]) @ est
    scale, transform = 1.0, None
    if alignment == "scale":
        p_est, p_gt = est[:, :3, 3], gt[:, :3, 3]
        denom = np.sum(p_est ** 2)
        if denom == 0.0:
            raise InputError("scale alignment: the estimated trajectory never leaves its first "
                             "position, so no scale can be fitted")
        scale = float(np.sum(p_est * p_gt) / denom)
    elif alignment != "none":
        R, t, scale = umeyama_alignment(est[:, :3, 3], gt[:, :3, 3],
                                        with_scale=alignment != "6dof")
        if alignment != "scale_7dof":
            transform = np.eye(4)
            transform[:3, :3], transform[:3, 3] = R, t
    est[:, :3, 3] *= scale
    if transform is not None:
        est = transform @ est
    return gt, est, scale


def segment_drift(gt: np.ndarray, est: np.ndarray,
                  lengths: Sequence[float] = SEGMENT_LENGTHS, step: int = 10) -> dict:
    """KITTI devkit drift over path segments (no alignment done here).

    gt, est: (N,4,4). Segments start every `step` frames; for each length L the segment ends at
    the first frame whose cumulative GT path length exceeds the start's by more than L. Per
    segment E = inv(inv(E_a) E_b) @ inv(G_a) G_b; t = |trans(E)| / L, r = angle(E) / L.
    Returns t_err (%), r_err (deg/100 m), num_segments and per_length {L: {t_err, r_err,
    count}}; errors are NaN when the trajectory is shorter than every segment length.
    """
    gt, est = _check_pair(gt, est)
    if step < 1:
        raise InputError(f"segment step must be a positive frame count, got {step}")
    lengths = np.asarray(lengths, dtype=np.float64)
    if lengths.ndim != 1 or lengths.size == 0 or np.any(lengths <= 0):
        raise InputError(f"segment lengths must be positive metres, got {lengths.tolist()}")
    steps = np.sqrt(np.sum(np.diff(gt[:, :3, 3], axis=0) ** 2, axis=1))
    dist = np.concatenate([[0.0], np.cumsum(steps)])

    first, seg_len = np.meshgrid(np.arange(0, len(gt), step), lengths, indexing="ij")
    first, seg_len = first.ravel(), seg_len.ravel()
    # dist is non-decreasing, so this is the first frame strictly beyond start + L.
    last = np.searchsorted(dist, dist[first] + seg_len, side="right")
    ok = last < len(gt)
    first, last, seg_len = first[ok], last[ok], seg_len[ok]

    delta_gt = np.linalg.inv(gt[first]) @ gt[last]
    delta_est = np.linalg.inv(est[first]) @ est[last]
    err = np.linalg.inv(delta_est) @ delta_gt
    t_seg = np.linalg.norm(err[:, :3, 3], axis=1) / seg_len
    r_seg = rotation_angle(err) / seg_len

    def summary(sel: np.ndarray) -> dict:
        n = int(np.count_nonzero(sel))
        if n == 0:
            return {"t_err": float("nan"), "r_err": float("nan"), "count": 0}
        return {"t_err": float(np.mean(t_seg[sel]) * 100.0),
                "r_err": float(np.degrees(np.mean(r_seg[sel])) * 100.0), "count": n}

    overall = summary(np.ones(len(seg_len), dtype=bool))
    return {"t_err": overall["t_err"], "r_err": overall["r_err"],
            "num_segments": overall["count"],
            "per_length": {float(L): summary(seg_len == L) for L in lengths}}


def ate_rmse(gt: np.ndarray, est: np.ndarray) -> float:
    """RMSE (m) of position differences of already aligned (N,4,4) trajectories."""
    gt, est = _check_pair(gt, est)
    return float(np.sqrt(np.mean(np.sum((gt[:, :3, 3] - est[:, :3, 3]) ** 2, axis=1))))


def frame_rpe(gt: np.ndarray, est: np.ndarray) -> tuple[float, float]:
    """Frame-to-frame relative pose error of (N,4,4) trajectories.

    Per pair E = inv(inv(G_t) G_t+1) @ inv(P_t) P_t+1. Returns (mean |trans(E)| in m,
    mean angle(E) in degrees).
    """
    gt, est = _check_pair(gt, est)
    d_gt = np.linalg.inv(gt[:-1]) @ gt[1:]
    d_est = np.linalg.inv(est[:-1]) @ est[1:]
    err = np.linalg.inv(d_gt) @ d_est
    return (float(np.mean(np.linalg.norm(err[:, :3, 3], axis=1))),
            float(np.degrees(np.mean(rotation_angle(err)))))


def trajectory_ate(gt: np.ndarray, est: np.ndarray, alignment: str = "7dof") -> float:
    """Full-trajectory ATE RMSE (m) after first-frame re-expression and `alignment`
    ('7dof' = Sim(3) Umeyama, 'scale' = least-squares scale only; see align_trajectories)."""
    gt_rel, est_aligned, _ = align_trajectories(gt, est, alignment)
    return ate_rmse(gt_rel, est_aligned)


def odometry_errors(gt: np.ndarray, est: np.ndarray, alignment: str = "none",
                    lengths: Sequence[float] = SEGMENT_LENGTHS, step: int = 10) -> dict:
    """All kitti-odom-eval numbers for one sequence.

    gt, est: (N,4,4) camera-to-world. Returns {alignment, scale, num_frames, t_err (%),
    r_err (deg/100 m), num_segments, per_length, ate (m), rpe_trans (m), rpe_rot (deg)}.
    """
    gt_rel, est_aligned, scale = align_trajectories(gt, est, alignment)
    drift = segment_drift(gt_rel, est_aligned, lengths, step)
    rpe_trans, rpe_rot = frame_rpe(gt_rel, est_aligned)
    return {"alignment": alignment, "scale": scale, "num_frames": len(gt_rel),
            "t_err": drift["t_err"], "r_err": drift["r_err"],
            "num_segments": drift["num_segments"], "per_length": drift["per_length"],
            "ate": ate_rmse(gt_rel, est_aligned), "rpe_trans": rpe_trans, "rpe_rot": rpe_rot}


def _nan_summary(values: np.ndarray) -> tuple[float, float]:
    """(mean, median) of the non-NaN entries of a (P,) array; NaN, NaN when there is none."""
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    return float(np.mean(finite)), float(np.median(finite))


def pair_errors(gt_rel: np.ndarray, est_rel: np.ndarray, min_translation: float = 1e-6) -> dict:
    """Pose error of each frame pair taken apart: rotation, translation direction, scale.

    A mixed translation error cannot tell a refinement that fixes the scale and ruins the
    direction from one that improves both; these three components can.

    gt_rel, est_rel: (P,4,4) relative poses of the same frame pairs in the same convention (the
    estimate in any scale). Per pair: rotation_deg, the angle of R_gt^T R_est; direction_deg, the
    angle between the two translations (NaN where either is shorter than `min_translation`, in
    each pose's own units: a motionless pose has no direction); scale_ratio, |t_est| / |t_gt|
    (NaN where |t_gt| < min_translation). Returns those three as (P,) lists plus their NaN-free
    summaries: rotation_deg_mean / _median, direction_deg_mean / _median, scale_ratio_mean /
    _median, scale_ratio_std_over_mean (population std; the pose scale's spread, 0 for a constant
    ratio, NaN when every ratio is 0), num_pairs and num_direction (pairs with a direction).
    """
    gt_rel = check_poses(gt_rel, "ground-truth relative poses", min_frames=1)
    est_rel = check_poses(est_rel, "estimated relative poses", min_frames=1)
    if gt_rel.shape != est_rel.shape:
        raise InputError(f"pair errors need relative poses of the same pairs, got {len(gt_rel)} "
                         f"ground-truth and {len(est_rel)} estimated")
    if not min_translation > 0:
        raise InputError(f"min_translation must be positive, got {min_translation}")
    rotation = np.degrees(rotation_angle(np.swapaxes(gt_rel[:, :3, :3], 1, 2) @ est_rel[:, :3, :3]))
    t_gt, t_est = gt_rel[:, :3, 3], est_rel[:, :3, 3]
    n_gt, n_est = np.linalg.norm(t_gt, axis=1), np.linalg.norm(t_est, axis=1)
    # atan2 of |a x b| and a.b keeps small angles exact, where arccos of the cosine loses them
    cross = np.linalg.norm(np.cross(t_gt, t_est), axis=1)
    direction = np.degrees(np.arctan2(cross, np.sum(t_gt * t_est, axis=1)))
    direction[(n_gt < min_translation) | (n_est < min_translation)] = np.nan
    moving = n_gt >= min_translation
    ratio = np.full(len(gt_rel), np.nan)
    ratio[moving] = n_est[moving] / n_gt[moving]
    out = {"rotation_deg": rotation.tolist(), "direction_deg": direction.tolist(),
           "scale_ratio": ratio.tolist(), "num_pairs": len(gt_rel),
           "num_direction": int(np.count_nonzero(~np.isnan(direction)))}
    for key, values in (("rotation_deg", rotation), ("direction_deg", direction), ("scale_ratio", ratio)):
        out[f"{key}_mean"], out[f"{key}_median"] = _nan_summary(values)
    finite = ratio[~np.isnan(ratio)]
    mean = float(np.mean(finite)) if finite.size else float("nan")
    out["scale_ratio_std_over_mean"] = float(np.std(finite)) / mean if mean > 0 else float("nan")
    return out


def snippet_ate(pred_rel: np.ndarray, gt_abs: np.ndarray, track_length: int = 5) -> dict:
    """SfMLearner / Monodepth2 short-snippet ATE.

    pred_rel: (N-1,4,4) predicted relative poses (frame t -> frame t+1 coordinates).
    gt_abs: (N,4,4) GT camera-to-world poses. For each start i in 0..N-2 the relative poses
    i..i+track_length-2 (fewer at the tail) are chained from the identity, C_{k+1} = C_k @ T_k,
    and the translations of C_k form the snippet. Per snippet: shift so the first points
    coincide, fit a least-squares scale (no rotation), then ATE = sqrt(sum |e|^2) / n_points.
    Returns {mean, std, ates (list), num_snippets}.
    """
    gt_abs = check_poses(gt_abs, "ground-truth poses")
    pred_rel = check_poses(pred_rel, "predicted relative poses", min_frames=1)
    if len(pred_rel) != len(gt_abs) - 1:
        raise InputError(f"snippet ATE needs N-1 relative poses for N GT poses, got "
                         f"{len(pred_rel)} relative and {len(gt_abs)} GT poses")
    if track_length < 2:
        raise InputError(f"track_length must be at least 2 frames, got {track_length}")
    gt_rel = absolute_to_relative(gt_abs)
    num_rel = len(gt_rel)
    starts = np.arange(num_rel)

    # Chain all snippets at once; tail snippets stop growing once they run out of poses.
    pts_pred = np.zeros((num_rel, track_length, 3))
    pts_gt = np.zeros((num_rel, track_length, 3))
    valid = np.zeros((num_rel, track_length), dtype=bool)
    valid[:, 0] = True
    chain_pred = np.broadcast_to(np.eye(4), (num_rel, 4, 4))
    chain_gt = chain_pred
    for k in range(track_length - 1):
        idx = starts + k
        in_range = idx < num_rel
        idx = np.minimum(idx, num_rel - 1)
        chain_pred = chain_pred @ pred_rel[idx]
        chain_gt = chain_gt @ gt_rel[idx]
        pts_pred[:, k + 1] = chain_pred[:, :3, 3]
        pts_gt[:, k + 1] = chain_gt[:, :3, 3]
        valid[:, k + 1] = in_range

    w = valid[..., None].astype(np.float64)
    pts_pred = pts_pred + (pts_gt[:, :1] - pts_pred[:, :1])
    num = np.sum(w * pts_gt * pts_pred, axis=(1, 2))
    den = np.sum(w * pts_pred ** 2, axis=(1, 2))
    # A snippet predicted as motionless has no scale to fit; it keeps scale 0.
    scale = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    err = w * (scale[:, None, None] * pts_pred - pts_gt)
    ates = np.sqrt(np.sum(err ** 2, axis=(1, 2))) / valid.sum(axis=1)
    return {"mean": float(np.mean(ates)), "std": float(np.std(ates)), "ates": ates.tolist(),
            "num_snippets": int(num_rel)}
