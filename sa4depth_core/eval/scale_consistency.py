"""Scale-consistency measures for monocular depth and pose.

A self-supervised monocular model is only defined up to scale; these numbers measure how much
that unknown scale wanders: between frames of a sequence (spread of the per-frame median
ratios), between sequences, and between the depth and the pose network (pose-vs-depth ratio).
Lower spread (std / mean) means more consistent. Standard deviations are population (ddof=0).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from sa4depth_core.errors import InputError
from sa4depth_core.eval.depth_metrics import masked_depth_pair


def frame_scale_ratios(gt_depths: Sequence[np.ndarray], preds: Sequence[np.ndarray], *,
                       pred_kind: str = "disparity", resize: str = "disparity",
                       min_depth: float = 1e-3, max_depth: float = 80.0,
                       crop: str = "garg") -> np.ndarray:
    """Per-frame median scale ratio r_i = median(gt) / median(pred) over valid pixels.

    gt_depths: list of (H,W) metric GT maps; preds: list of (h,w) disparity or depth maps.
    Masks and resizing are those of depth_metrics.evaluate_depth. Returns (N,) float64 with NaN
    for frames without a valid GT pixel, so indices stay aligned with frames.
    """
    if len(gt_depths) != len(preds):
        raise InputError(f"got {len(gt_depths)} GT depth maps but {len(preds)} predictions")
    ratios = np.full(len(gt_depths), np.nan)
    for i, (gt, pred) in enumerate(zip(gt_depths, preds)):
        pair = masked_depth_pair(gt, pred, pred_kind=pred_kind, resize=resize,
                                 min_depth=min_depth, max_depth=max_depth, crop=crop,
                                 name=f"frame {i}")
        if pair is not None:
            ratios[i] = np.median(pair[0]) / np.median(pair[1])
    return ratios


def ratio_stats(ratios: Sequence[float], name: str = "ratios") -> dict:
    """Spread of non-negative scale ratios (N,), NaN entries ignored.

    Returns {mean, std, std_over_mean, median, count}; std_over_mean is NaN when every ratio is
    0 (an estimate that never moved: a result to report, not an error).
    """
    r = np.asarray(ratios, dtype=np.float64).ravel()
    r = r[~np.isnan(r)]
    if r.size == 0:
        raise InputError(f"{name}: no finite scale ratio to summarise")
    if not np.all(np.isfinite(r) & (r >= 0)):
        raise InputError(f"{name}: scale ratios must be finite and non-negative")
    mean = float(np.mean(r))
    std = float(np.std(r))
    return {"mean": mean, "std": std, "std_over_mean": std / mean if mean > 0 else float("nan"),
            "median": float(np.median(r)), "count": int(r.size)}


def sequence_scale_consistency(ratios_by_sequence: Mapping[str, Sequence[float]]) -> dict:
    """Scale spread within and across sequences.

    ratios_by_sequence: {sequence name: (N_s,) per-frame ratios, NaN = no valid pixel}.
    Returns {per_sequence: {name: ratio_stats}, across_sequences_std_over_mean: std/mean of the
    per-sequence mean ratios, pooled: ratio_stats of all frames together}.
    """
    if not ratios_by_sequence:
        raise InputError("no sequences given for the scale-consistency summary")
    per_seq = {name: ratio_stats(r, name=f"sequence {name!r}")
               for name, r in ratios_by_sequence.items()}
    means = np.array([s["mean"] for s in per_seq.values()])
    pooled = np.concatenate([np.asarray(r, dtype=np.float64).ravel()
                             for r in ratios_by_sequence.values()])
    return {"per_sequence": per_seq,
            "across_sequences_std_over_mean": float(np.std(means) / np.mean(means)),
            "pooled": ratio_stats(pooled, name="all sequences")}


def pose_depth_scale_ratios(pred_rel: np.ndarray, gt_rel: np.ndarray,
                            depth_ratios: Sequence[float],
                            min_gt_translation: float = 0.01) -> dict:
    """Agreement between the pose network's and the depth network's scale, per frame pair.

    pred_rel, gt_rel: (P,4,4) relative poses of the same pairs (either direction; only the
    translation norm is used, which equals the camera-centre distance). depth_ratios: (P,)
    median depth ratio of the frame the pose is tied to (normally the target frame t).
    Ratio_p = |t_pred| * s_depth / |t_gt|; 1 means the pose is metric once the depth scale is
    applied. Pairs with |t_gt| < min_gt_translation (m) are static and skipped; pairs without a
    depth ratio (NaN) are skipped too. Returns {ratios (P,) with NaN where skipped, mean, std,
    std_over_mean, median, count, num_static, num_no_depth}.
    """
    pred_rel = np.asarray(pred_rel, dtype=np.float64)
    gt_rel = np.asarray(gt_rel, dtype=np.float64)
    s_depth = np.asarray(depth_ratios, dtype=np.float64).ravel()
    if pred_rel.ndim != 3 or pred_rel.shape[1:] != (4, 4) or pred_rel.shape != gt_rel.shape:
        raise InputError(f"pose-vs-depth scale needs two (P,4,4) pose stacks of equal length, "
                         f"got {pred_rel.shape} and {gt_rel.shape}")
    if len(s_depth) != len(pred_rel):
        raise InputError(f"got {len(s_depth)} depth ratios for {len(pred_rel)} pose pairs")
    if min_gt_translation <= 0:
        raise InputError(f"min_gt_translation must be positive, got {min_gt_translation}")
    t_pred = np.linalg.norm(pred_rel[:, :3, 3], axis=1)
    t_gt = np.linalg.norm(gt_rel[:, :3, 3], axis=1)
    static = t_gt < min_gt_translation
    no_depth = np.isnan(s_depth) & ~static
    use = ~static & ~no_depth
    if not use.any():
        raise InputError(f"pose-vs-depth scale: no usable pair ({int(static.sum())} static "
                         f"with |t_gt| < {min_gt_translation} m, {int(no_depth.sum())} without "
                         f"a depth ratio)")
    ratios = np.full(len(t_gt), np.nan)
    ratios[use] = t_pred[use] * s_depth[use] / t_gt[use]
    return {"ratios": ratios.tolist(), **ratio_stats(ratios, name="pose-vs-depth ratios"),
            "num_static": int(static.sum()), "num_no_depth": int(no_depth.sum())}
