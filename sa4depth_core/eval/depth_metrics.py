"""Depth metrics under the KITTI Eigen protocol, with Monodepth2 `evaluate_depth` semantics.

Per image: resize the prediction to the GT size (in disparity space by default), mask GT to
(min, max) and the Garg crop, optionally scale (fixed factor, then per-image median ratio),
clamp the prediction to [min, max], then compute the seven standard errors. Dataset scores
are the mean over images of the per-image scores, not a pixel-pooled mean.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from sa4depth_core.errors import InputError

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")

# Garg et al. (ECCV'16) crop as fractions of the image size, as used by Monodepth2.
_GARG_ROWS = (0.40810811, 0.99189189)
_GARG_COLS = (0.03594771, 0.96405229)


def garg_crop_mask(h: int, w: int) -> np.ndarray:
    """Boolean (h,w) mask that is True inside the Garg crop of an h x w image.

    Rows [int(0.40810811 h), int(0.99189189 h)) and columns [int(0.03594771 w),
    int(0.96405229 w)); computed per image because KITTI raw frame sizes vary.
    """
    mask = np.zeros((h, w), dtype=bool)
    mask[int(_GARG_ROWS[0] * h):int(_GARG_ROWS[1] * h),
         int(_GARG_COLS[0] * w):int(_GARG_COLS[1] * w)] = True
    return mask


def compute_depth_errors(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The seven standard depth errors between matched valid depths.

    gt, pred: (n,) positive depths in metres (already masked, scaled and clamped).
    Returns {abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3}; a_k = fraction with
    max(pred/gt, gt/pred) < 1.25**k (strict).
    """
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if gt.shape != pred.shape or gt.ndim != 1 or gt.size == 0:
        raise InputError(f"depth errors need two equal-length non-empty 1-D arrays, got shapes "
                         f"{gt.shape} and {pred.shape}")
    ratio = np.maximum(gt / pred, pred / gt)
    diff = pred - gt
    return {
        "abs_rel": float(np.mean(np.abs(diff) / gt)),
        "sq_rel": float(np.mean(diff ** 2 / gt)),
        "rmse": float(np.sqrt(np.mean(diff ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(pred) - np.log(gt)) ** 2))),
        "a1": float(np.mean(ratio < 1.25)),
        "a2": float(np.mean(ratio < 1.25 ** 2)),
        "a3": float(np.mean(ratio < 1.25 ** 3)),
    }


def masked_depth_pair(gt: np.ndarray, pred: np.ndarray, *, pred_kind: str = "disparity",
                      resize: str = "disparity", min_depth: float = 1e-3,
                      max_depth: float = 80.0, crop: str = "garg",
                      name: str = "prediction") -> tuple[np.ndarray, np.ndarray] | None:
    """GT and unscaled predicted depth at the valid pixels of one image.

    gt: (H,W) metric depth, 0 / non-finite = invalid. pred: (h,w) disparity or depth
    (`pred_kind`), any size; it is resized to (H,W) bilinearly in `resize` space
    ('disparity' as Monodepth2, or 'depth'). Valid = min_depth < gt < max_depth and, for
    crop='garg', inside the Garg crop. Returns ((n,), (n,)) float64 arrays, or None when no pixel
    is valid. `name` labels the image in error messages.
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if pred_kind not in ("disparity", "depth"):
        raise InputError(f"pred_kind must be 'disparity' or 'depth', got {pred_kind!r}")
    if resize not in ("disparity", "depth"):
        raise InputError(f"resize must be 'disparity' or 'depth', got {resize!r}")
    if crop not in ("garg", "none"):
        raise InputError(f"crop must be 'garg' or 'none', got {crop!r}")
    if gt.ndim != 2 or pred.ndim != 2:
        raise InputError(f"{name}: GT and prediction must be 2-D (H,W) maps, got shapes "
                         f"{gt.shape} and {pred.shape}")
    if not np.all(np.isfinite(pred)) or np.any(pred <= 0):
        raise InputError(f"{name}: prediction has non-finite or non-positive values; "
                         f"expected a strictly positive {pred_kind} map")
    if pred.dtype not in (np.float32, np.float64):
        pred = pred.astype(np.float32)

    h, w = gt.shape
    # Convert to the interpolation space, resize, then convert to depth.
    to_resize = pred if pred_kind == resize else 1.0 / pred
    resized = cv2.resize(to_resize, (w, h), interpolation=cv2.INTER_LINEAR)
    pred_depth = 1.0 / resized if resize == "disparity" else resized

    with np.errstate(invalid="ignore"):
        mask = (gt > min_depth) & (gt < max_depth)
    if crop == "garg":
        mask &= garg_crop_mask(h, w)
    if not mask.any():
        return None
    return gt[mask].astype(np.float64), pred_depth[mask].astype(np.float64)


def _errors_at_scale(pairs: Sequence[tuple[np.ndarray, np.ndarray]], scales: Sequence[float],
                     min_depth: float, max_depth: float) -> dict[str, float]:
    """Mean over images of the errors after pred *= scale and clamping to [min, max]."""
    per_image = [compute_depth_errors(g, np.clip(p * s, min_depth, max_depth))
                 for (g, p), s in zip(pairs, scales)]
    return {k: float(np.mean([e[k] for e in per_image])) for k in METRIC_NAMES}


def evaluate_depth(gt_depths: Sequence[np.ndarray], preds: Sequence[np.ndarray], *,
                   pred_kind: str = "disparity", median_scaling: bool = True,
                   fixed_scale: float | None = None, min_depth: float = 1e-3,
                   max_depth: float = 80.0, crop: str = "garg",
                   resize: str = "disparity") -> dict:
    """Eigen-protocol depth evaluation of a list of predictions.

    gt_depths: list of (H_i,W_i) metric GT maps. preds: list of (h,w) disparity or depth maps
    (`pred_kind`). The prediction is first multiplied by `fixed_scale` (e.g. 5.4 for stereo
    models; 1 if None), then, with `median_scaling`, by the per-image ratio
    r_i = median(gt)/median(pred) over valid pixels (ratios are always reported).

    Returns a dict:
      metrics: mean over evaluated images of the per-image errors (the headline numbers);
      global_scale, global_metrics: with median_scaling, the same evaluation using one scale
        s = median(r) for every image (None otherwise) — its gap to `metrics` measures scale
        inconsistency;
      ratios (list), ratio_median, ratio_std_over_median = std(r / median(r)), ratio_mean,
        ratio_std;
      num_images, num_evaluated, skipped (indices of images without valid pixels).
    """
    if len(gt_depths) != len(preds):
        raise InputError(f"got {len(gt_depths)} GT depth maps but {len(preds)} predictions")
    if len(gt_depths) == 0:
        raise InputError("no images to evaluate: the GT depth list is empty")
    if not 0 < min_depth < max_depth:
        raise InputError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
    factor = 1.0 if fixed_scale is None else float(fixed_scale)
    if not (np.isfinite(factor) and factor > 0):
        raise InputError(f"fixed_scale must be a positive finite number, got {fixed_scale}")

    pairs, skipped = [], []
    for i, (gt, pred) in enumerate(zip(gt_depths, preds)):
        pair = masked_depth_pair(gt, pred, pred_kind=pred_kind, resize=resize,
                                 min_depth=min_depth, max_depth=max_depth, crop=crop,
                                 name=f"image {i}")
        if pair is None:
            skipped.append(i)
        else:
            pairs.append((pair[0], pair[1] * factor))
    if not pairs:
        raise InputError(f"none of the {len(gt_depths)} GT maps has a valid pixel in "
                         f"({min_depth}, {max_depth}) m inside crop={crop!r}")

    ratios = np.array([np.median(g) / np.median(p) for g, p in pairs])
    ratio_median = float(np.median(ratios))
    per_image_scales = ratios if median_scaling else np.ones_like(ratios)
    return {
        "metrics": _errors_at_scale(pairs, per_image_scales, min_depth, max_depth),
        "global_scale": ratio_median if median_scaling else None,
        "global_metrics": (_errors_at_scale(pairs, [ratio_median] * len(pairs), min_depth,
                                            max_depth) if median_scaling else None),
        "ratios": ratios.tolist(),
        "ratio_median": ratio_median,
        "ratio_std_over_median": float(np.std(ratios / ratio_median)),
        "ratio_mean": float(np.mean(ratios)),
        "ratio_std": float(np.std(ratios)),
        "num_images": len(gt_depths),
        "num_evaluated": len(pairs),
        "skipped": skipped,
    }
