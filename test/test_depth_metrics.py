"""Depth metrics (Eigen protocol) and scale-consistency measures against hand-computed values."""

import math

import numpy as np
import pytest

from sa4depth_core.errors import InputError
from sa4depth_core.eval.depth_metrics import compute_depth_errors, evaluate_depth, garg_crop_mask
from sa4depth_core.eval.scale_consistency import (frame_scale_ratios, pose_depth_scale_ratios,
                                                  ratio_stats, sequence_scale_consistency)


def _ramp_gt(h=12, w=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(2.0, 35.0, size=(h, w)).astype(np.float32)


def test_garg_crop_kitti_size():
    mask = garg_crop_mask(375, 1242)
    expected = np.zeros((375, 1242), dtype=bool)
    expected[153:371, 44:1197] = True
    np.testing.assert_array_equal(mask, expected)


def test_garg_crop_other_size():
    rows, cols = np.nonzero(garg_crop_mask(370, 1224))
    # 0.40810811*370 = 151.0, 0.99189189*370 = 366.99, 0.03594771*1224 = 43.999,
    # 0.96405229*1224 = 1180.0: bounds truncate, they do not round.
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (151, 366, 43, 1180)


def test_errors_hand_computed():
    e = compute_depth_errors(np.array([4.0, 8.0]), np.array([5.0, 8.0]))
    assert e["abs_rel"] == pytest.approx(0.125)
    assert e["sq_rel"] == pytest.approx(0.125)
    assert e["rmse"] == pytest.approx(math.sqrt(0.5))
    assert e["rmse_log"] == pytest.approx(math.log(1.25) / math.sqrt(2))
    # 5/4 is exactly 1.25, which is not < 1.25.
    assert (e["a1"], e["a2"], e["a3"]) == (0.5, 1.0, 1.0)


def test_delta_thresholds_at_boundaries():
    gt = np.array([4.0, 4.0, 4.0, 4.0])
    pred = np.array([4.0 * 1.25 * (1 - 1e-9), 4.0 * 1.5625, 4.0 / 1.5625 * (1 + 1e-9),
                     4.0 * 1.953125])
    e = compute_depth_errors(gt, pred)
    assert e["a1"] == pytest.approx(0.25)
    assert e["a2"] == pytest.approx(0.5)
    assert e["a3"] == pytest.approx(0.75)


def test_median_scaling_of_doubled_depth_is_perfect():
    gts = [_ramp_gt(seed=s) for s in range(3)]
    preds = [2.0 * g for g in gts]
    res = evaluate_depth(gts, preds, pred_kind="depth", crop="none")
    assert res["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert res["metrics"]["rmse"] == pytest.approx(0.0, abs=1e-4)
    assert res["metrics"]["a1"] == 1.0
    assert res["ratio_median"] == pytest.approx(0.5)
    assert res["ratio_std_over_median"] == pytest.approx(0.0, abs=1e-6)


def test_without_scaling_doubled_depth_has_abs_rel_one():
    gts = [_ramp_gt(seed=s) for s in range(2)]
    preds = [1.0 / (2.0 * g) for g in gts]  # as disparity
    res = evaluate_depth(gts, preds, median_scaling=False, crop="none")
    assert res["metrics"]["abs_rel"] == pytest.approx(1.0, rel=1e-5)
    assert res["metrics"]["a3"] == 0.0  # 2 > 1.25**3
    assert res["global_metrics"] is None
    fixed = evaluate_depth(gts, preds, median_scaling=False, fixed_scale=0.5, crop="none")
    assert fixed["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-5)


def test_resize_happens_in_disparity_space():
    # cv2 bilinear 2 -> 4 samples the source at x = 0, 0.25, 0.75, 1 (clamped half-pixel).
    disp = np.array([[0.1, 0.5]], dtype=np.float32)
    gt = np.array([[10.0, 5.0, 2.5, 2.0]], dtype=np.float32)
    common = dict(median_scaling=False, crop="none")
    assert evaluate_depth([gt], [disp], **common)["metrics"]["abs_rel"] == pytest.approx(
        0.0, abs=1e-6)
    assert evaluate_depth([gt], [1.0 / disp], pred_kind="depth", **common)["metrics"][
        "abs_rel"] == pytest.approx(0.0, abs=1e-6)
    # Interpolating depth instead gives 10, 8, 4, 2: abs_rel = (0 + 0.6 + 0.6 + 0) / 4.
    in_depth = evaluate_depth([gt], [disp], resize="depth", **common)
    assert in_depth["metrics"]["abs_rel"] == pytest.approx(0.3, rel=1e-6)


def test_mean_is_over_images_not_pixels():
    gt_a = np.zeros((4, 4), np.float32)
    gt_a[0, 0] = 10.0  # one valid pixel
    pred_a = np.full((4, 4), 15.0, np.float32)
    gt_b = np.full((4, 4), 10.0, np.float32)
    pred_b = gt_b.copy()
    res = evaluate_depth([gt_a, gt_b], [pred_a, pred_b], pred_kind="depth",
                         median_scaling=False, crop="none")
    assert res["metrics"]["abs_rel"] == pytest.approx(0.25)


def test_masks_and_clamping():
    gt = np.array([[79.0, 79.0, 0.0, np.nan, 85.0, np.inf]], dtype=np.float32)
    pred = np.full_like(gt, 100.0)
    res = evaluate_depth([gt], [pred], pred_kind="depth", median_scaling=False, crop="none")
    # Only the two 79 m pixels count; the 100 m prediction is clamped to 80 m.
    assert res["metrics"]["abs_rel"] == pytest.approx(1.0 / 79.0, rel=1e-6)
    assert res["ratios"] == [pytest.approx(0.79)]


def test_global_scale_variant():
    gt = _ramp_gt()
    res = evaluate_depth([gt, gt], [gt / 2.0, gt / 4.0], pred_kind="depth", crop="none")
    assert res["ratios"] == [pytest.approx(2.0), pytest.approx(4.0)]
    assert res["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert res["global_scale"] == pytest.approx(3.0)
    # Scale 3 makes image 1 read 1.5*gt (abs_rel 0.5) and image 2 0.75*gt (abs_rel 0.25).
    assert res["global_metrics"]["abs_rel"] == pytest.approx(0.375, rel=1e-5)
    assert res["ratio_std_over_median"] == pytest.approx(1.0 / 3.0)
    assert (res["ratio_mean"], res["ratio_std"]) == (pytest.approx(3.0), pytest.approx(1.0))


def test_empty_masks_are_skipped_and_counted():
    gt = _ramp_gt()
    empty = np.zeros_like(gt)
    res = evaluate_depth([empty, gt], [gt, gt], pred_kind="depth", crop="none")
    assert res["skipped"] == [0]
    assert (res["num_images"], res["num_evaluated"]) == (2, 1)
    with pytest.raises(InputError, match="none of the 2"):
        evaluate_depth([empty, empty], [gt, gt], pred_kind="depth")


def test_garg_crop_limits_the_valid_pixels():
    gt = np.full((375, 1242), 10.0, np.float32)
    pred = np.full((375, 1242), 10.0, np.float32)
    pred[:153] = 40.0  # outside the crop only
    res = evaluate_depth([gt], [pred], pred_kind="depth", median_scaling=False)
    assert res["metrics"]["abs_rel"] == 0.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(gts=[np.ones((4, 4))], preds=[]), "1 GT depth maps but 0"),
    (dict(gts=[np.ones((4, 4))], preds=[-np.ones((2, 2))]), "image 0.*non-positive"),
    (dict(gts=[np.ones((1, 4, 4))], preds=[np.ones((2, 2))]), "2-D"),
    (dict(gts=[np.ones((4, 4))], preds=[np.ones((2, 2))], crop="eigen"), "crop"),
])
def test_bad_inputs_raise(kwargs, match):
    gts, preds = kwargs.pop("gts"), kwargs.pop("preds")
    with pytest.raises(InputError, match=match):
        evaluate_depth(gts, preds, **kwargs)


def test_frame_ratios_with_known_scale_drift():
    gt = _ramp_gt()
    drift = 1.0 + 0.1 * np.arange(5)  # 1.0 .. 1.4, mean 1.2
    # Frame i predicts depth gt / drift[i] (given as disparity).
    ratios = frame_scale_ratios([gt] * 5, [drift_i / gt for drift_i in drift], crop="none")
    np.testing.assert_allclose(ratios, drift, rtol=1e-5)
    stats = ratio_stats(ratios)
    assert stats["mean"] == pytest.approx(1.2)
    assert stats["std"] == pytest.approx(math.sqrt(0.02))
    assert stats["std_over_mean"] == pytest.approx(math.sqrt(0.02) / 1.2)


def test_frame_ratios_mark_empty_frames_nan():
    gt = _ramp_gt()
    ratios = frame_scale_ratios([gt, np.zeros_like(gt)], [1.0 / gt, 1.0 / gt], crop="none")
    assert ratios[0] == pytest.approx(1.0) and np.isnan(ratios[1])
    assert ratio_stats(ratios)["count"] == 1


def test_cross_sequence_consistency():
    res = sequence_scale_consistency({"a": [1.0, 1.0, 1.0], "b": [3.0, 3.0, np.nan]})
    assert res["per_sequence"]["b"]["mean"] == pytest.approx(3.0)
    assert res["across_sequences_std_over_mean"] == pytest.approx(0.5)
    # Pooled [1,1,1,3,3]: mean 1.8, variance (3*0.64 + 2*1.44)/5 = 0.96.
    assert res["pooled"]["std_over_mean"] == pytest.approx(math.sqrt(0.96) / 1.8)


def _translation(x, y, z):
    T = np.eye(4)
    T[:3, 3] = (x, y, z)
    return T


def test_pose_depth_ratio_consistent_scale_is_one():
    gt_rel = np.stack([_translation(0, 0, -1.0), _translation(0.3, 0, -0.8),
                       _translation(0, 0, 0.001), _translation(0, 0, -1.2)])
    s_depth = np.array([2.0, 4.0, 5.0, np.nan])
    pred_rel = gt_rel.copy()
    pred_rel[:, :3, 3] /= np.array([2.0, 4.0, 5.0, 3.0])[:, None]
    res = pose_depth_scale_ratios(pred_rel, gt_rel, s_depth)
    assert (res["num_static"], res["num_no_depth"], res["count"]) == (1, 1, 2)
    assert res["mean"] == pytest.approx(1.0) and res["std"] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(res["ratios"][2]) and np.isnan(res["ratios"][3])


def test_pose_depth_ratio_detects_half_scale_pose():
    gt_rel = np.stack([_translation(0, 0, -1.0), _translation(0, 0, -2.0)])
    pred_rel = gt_rel.copy()
    pred_rel[:, :3, 3] *= np.array([[0.5], [0.25]])
    res = pose_depth_scale_ratios(pred_rel, gt_rel, [1.0, 1.0])
    assert res["ratios"] == [pytest.approx(0.5), pytest.approx(0.25)]
    assert res["std_over_mean"] == pytest.approx(0.125 / 0.375)
    with pytest.raises(InputError, match="no usable pair"):
        pose_depth_scale_ratios(pred_rel, gt_rel * 0 + np.eye(4), [1.0, 1.0])


def test_ratios_of_an_estimate_that_never_moved_have_no_spread_to_report():
    stats = ratio_stats([0.0, 0.0, float("nan")])
    assert stats["mean"] == 0.0 and stats["count"] == 2 and math.isnan(stats["std_over_mean"])
