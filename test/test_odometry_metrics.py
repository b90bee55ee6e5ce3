"""Odometry metrics (KITTI drift, ATE, RPE, 5-frame ATE), the odom CLI and report helpers."""

import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import transforms3d.axangles as ta
import transforms3d.quaternions as tq

from sa4depth_core.errors import InputError
from sa4depth_core.eval.cli_odometry import main
from sa4depth_core.eval.odometry_metrics import (absolute_to_relative, align_trajectories,
                                                 odometry_errors, pair_errors, relative_to_absolute,
                                                 segment_drift, snippet_ate, trajectory_ate,
                                                 umeyama_alignment)
from sa4depth_core.eval.report import format_table, write_json
from sa4depth_core.eval.trajectory_matching import associate_timestamps, load_trajectory_pair

# CI places shared/ beside the clone; locally it is /work/shared.
KITTI_ODOM = Path(__file__).resolve().parents[2] / "shared" / "data" / "kitti_odometry"


def _load_kitti(path):
    rows = np.loadtxt(path).reshape(-1, 3, 4)
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    poses[:, :3] = rows
    return poses


def _pose(R=np.eye(3), t=(0.0, 0.0, 0.0)):
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def test_pair_errors_hand_computed():
    # pair 0: 3 deg about y, t 45 deg off and 2*sqrt(2) times longer; pair 1: the ground truth
    # stands still (no direction, no ratio); pair 2: the estimate stands still (ratio 0, no
    # direction); pair 3: exact up to a factor 0.5 in scale
    gt = np.stack([_pose(t=(0, 0, 1)), _pose(), _pose(t=(0, 0, 2)), _pose(t=(1, 0, 0))])
    est = np.stack([_pose(ta.axangle2mat((0, 1, 0), math.radians(3)), (2, 0, 2)),
                    _pose(ta.axangle2mat((1, 0, 0), math.radians(1)), (0, 0, 1)),
                    _pose(), _pose(t=(0.5, 0, 0))])
    e = pair_errors(gt, est)
    assert e["rotation_deg"] == pytest.approx([3.0, 1.0, 0.0, 0.0], abs=1e-6)
    assert e["direction_deg"][0] == pytest.approx(45.0)
    assert math.isnan(e["direction_deg"][1]) and math.isnan(e["direction_deg"][2])
    assert e["direction_deg"][3] == pytest.approx(0.0, abs=1e-9)
    assert e["scale_ratio"][0] == pytest.approx(2 * math.sqrt(2))
    assert math.isnan(e["scale_ratio"][1])
    assert e["scale_ratio"][2:] == pytest.approx([0.0, 0.5])
    assert e["rotation_deg_mean"] == pytest.approx(1.0) and e["rotation_deg_median"] == pytest.approx(0.5)
    assert e["direction_deg_mean"] == pytest.approx(22.5) and e["direction_deg_median"] == pytest.approx(22.5)
    ratios = np.array([2 * math.sqrt(2), 0.0, 0.5])
    assert e["scale_ratio_mean"] == pytest.approx(ratios.mean())
    assert e["scale_ratio_median"] == pytest.approx(0.5)
    assert e["scale_ratio_std_over_mean"] == pytest.approx(ratios.std() / ratios.mean())
    assert (e["num_pairs"], e["num_direction"]) == (4, 2)


def test_pair_errors_keeps_small_direction_errors_and_ignores_scale():
    # 1e-4 deg: arccos of the cosine would round this to 0 in float64
    angle = math.radians(1e-4)
    gt = _pose(t=(0, 0, 1))[None]
    est = _pose(t=(7 * math.sin(angle), 0, 7 * math.cos(angle)))[None]
    e = pair_errors(gt, est)
    assert e["direction_deg"][0] == pytest.approx(1e-4, rel=1e-6)
    assert e["scale_ratio"][0] == pytest.approx(7.0)
    assert e["scale_ratio_std_over_mean"] == 0.0


def test_pair_errors_refuses_mismatched_pairs():
    with pytest.raises(InputError, match="same pairs"):
        pair_errors(np.stack([_pose()] * 2), np.stack([_pose()] * 3))
    with pytest.raises(InputError, match="min_translation"):
        pair_errors(np.stack([_pose()]), np.stack([_pose()]), min_translation=0.0)


def _straight_line(n, step=1.0):
    return np.stack([_pose(t=(step * k, 0.0, 0.0)) for k in range(n)])


def _wiggly_trajectory(n=60, seed=0):
    rng = np.random.default_rng(seed)
    poses, T = [], np.eye(4)
    for _ in range(n):
        poses.append(T.copy())
        R = ta.axangle2mat(rng.normal(size=3), rng.uniform(0.0, 0.05))
        T = T @ _pose(R, (rng.normal(0, 0.1), rng.normal(0, 0.05), 1.0 + rng.normal(0, 0.1)))
    return np.stack(poses)


# Regression anchors: kitti-odom-eval on its bundled example_1 results (depth_anchors.md §2.5).
ANCHORS = [  # seq, alignment, t_err %, r_err deg/100m, ATE m
    ("09", "none", 2.6068, 0.2877, 17.919),
    ("10", "none", 2.2932, 0.3693, 9.035),
    ("09", "7dof", 2.5275, 0.2877, 10.729),
    ("10", "7dof", 2.2212, 0.3693, 3.356),
]


@pytest.mark.parametrize("seq, alignment, t_err, r_err, ate", ANCHORS)
def test_kitti_odom_eval_anchors(seq, alignment, t_err, r_err, ate):
    if not KITTI_ODOM.is_dir():
        pytest.skip(f"shared KITTI odometry data not found at {KITTI_ODOM}")
    gt = _load_kitti(KITTI_ODOM / "gt_poses" / f"{seq}.txt")
    est = _load_kitti(KITTI_ODOM / "example_results" / f"{seq}.txt")
    res = odometry_errors(gt, est, alignment)
    assert round(res["t_err"], 4) == t_err
    assert round(res["r_err"], 4) == r_err
    assert round(res["ate"], 3) == ate


def test_segment_drift_hand_computed():
    gt = _straight_line(200)
    est = gt.copy()
    est[:, :3, 3] *= 1.1
    theta = 1e-3
    est[:, :3, :3] = [ta.axangle2mat([0, 1, 0], k * theta) for k in range(200)]
    res = segment_drift(gt, est)
    # A 100 m segment ends 101 frames later (strictly beyond 100 m); starts 0..90 fit in 200
    # frames, longer segments do not.
    assert res["num_segments"] == 10
    assert res["per_length"][200.0]["count"] == 0
    assert res["r_err"] == pytest.approx(math.degrees(101 * theta / 100) * 100)
    no_rot = est.copy()
    no_rot[:, :3, :3] = np.eye(3)
    assert segment_drift(gt, no_rot)["t_err"] == pytest.approx(0.1 * 101 / 100 * 100)


def test_short_trajectory_has_undefined_drift():
    gt = _straight_line(20)
    res = segment_drift(gt, gt)
    assert res["num_segments"] == 0 and math.isnan(res["t_err"])


def test_frame_rpe_and_scale_alignment():
    gt = _straight_line(50)
    est = gt.copy()
    est[:, :3, 3] *= 1.1
    res = odometry_errors(gt, est, "none")
    assert res["rpe_trans"] == pytest.approx(0.1)
    assert res["rpe_rot"] == pytest.approx(0.0, abs=1e-9)
    scaled = odometry_errors(gt, est, "scale")
    assert scaled["scale"] == pytest.approx(1 / 1.1)
    assert scaled["ate"] == pytest.approx(0.0, abs=1e-9)


def test_umeyama_recovers_known_sim3():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(30, 3)) * [5.0, 1.0, 3.0]
    R_true = ta.axangle2mat([0.3, -1.0, 0.5], 2.1)
    t_true = np.array([4.0, -2.0, 7.5])
    dst = 2.5 * src @ R_true.T + t_true
    R, t, s = umeyama_alignment(src, dst)
    np.testing.assert_allclose(R, R_true, atol=1e-10)
    np.testing.assert_allclose(t, t_true, atol=1e-9)
    assert s == pytest.approx(2.5)
    R6, t6, s6 = umeyama_alignment(src, src @ R_true.T + t_true, with_scale=False)
    np.testing.assert_allclose(R6, R_true, atol=1e-10)
    assert s6 == 1.0


def test_an_estimate_that_never_moved_scores_the_spread_of_the_ground_truth():
    # an odometry that rejected every step holds its pose: that is a result, not an error
    gt = _wiggly_trajectory(20)
    est = np.tile(np.eye(4), (20, 1, 1))
    positions = gt[:, :3, 3] - gt[0, :3, 3]
    spread = math.sqrt(np.mean(np.sum((positions - positions.mean(0)) ** 2, axis=1)))
    for alignment in ("6dof", "7dof"):
        assert trajectory_ate(gt, est, alignment) == pytest.approx(spread)
    R, t, s = umeyama_alignment(np.zeros((5, 3)), np.arange(15.0).reshape(5, 3))
    assert s == 0.0 and np.allclose(R, np.eye(3)) and np.allclose(t, [6.0, 7.0, 8.0])


@pytest.mark.parametrize("alignment", ["7dof", "scale"])
def test_similarity_transformed_trajectory_aligns_exactly(alignment):
    gt = _wiggly_trajectory()
    world = _pose(ta.axangle2mat([1, 2, 3], 0.7), (10.0, -3.0, 2.0))
    est = world @ gt
    est[:, :3, 3] *= 0.3  # estimate in another frame and at another scale
    assert trajectory_ate(gt, est, alignment) == pytest.approx(0.0, abs=1e-9)
    assert trajectory_ate(gt, est, "none") > 1.0


def test_alignment_does_not_modify_inputs_and_rejects_unknown_mode():
    gt = _wiggly_trajectory()
    est = gt * 1.0
    est[:, :3, 3] *= 2.0
    before = est.copy()
    align_trajectories(gt, est, "7dof")
    np.testing.assert_array_equal(est, before)
    with pytest.raises(InputError, match="unknown alignment"):
        align_trajectories(gt, est, "sim3")
    with pytest.raises(InputError, match="lengths differ"):
        odometry_errors(gt, est[:-1])


def test_relative_absolute_round_trip():
    poses = _wiggly_trajectory(10)
    rel = absolute_to_relative(poses)
    # rel[t] maps frame-t points into frame t+1.
    x_t = np.array([0.3, -0.2, 5.0, 1.0])
    np.testing.assert_allclose(rel[3] @ x_t, np.linalg.inv(poses[4]) @ poses[3] @ x_t)
    np.testing.assert_allclose(relative_to_absolute(rel), np.linalg.inv(poses[0]) @ poses,
                               atol=1e-10)


def test_snippet_ate_hand_computed():
    gt = np.stack([_pose(t=(0, 0, k)) for k in range(3)])
    pred_rel = np.stack([_pose(t=(0, 0, -1)), _pose(t=(1, 0, -1))])
    res = snippet_ate(pred_rel, gt)
    # Snippet 0: scale 5/6, squared error 5/6 over 3 points; snippet 1 (tail, 2 points):
    # scale 1/2, squared error 1/2.
    expected = [math.sqrt(5 / 6) / 3, math.sqrt(0.5) / 2]
    assert res["ates"] == pytest.approx(expected)
    assert res["mean"] == pytest.approx(np.mean(expected))
    assert res["std"] == pytest.approx(np.std(expected))


@pytest.mark.parametrize("factor", [1.0, 0.02, 37.0])
def test_snippet_ate_of_scaled_perfect_prediction_is_zero(factor):
    gt = _wiggly_trajectory(40)
    rel = absolute_to_relative(gt)
    rel[:, :3, 3] *= factor
    res = snippet_ate(rel, gt)
    assert res["num_snippets"] == 39
    assert res["mean"] == pytest.approx(0.0, abs=1e-12)


def _snippet_ate_reference(pred_rel, gt_abs, track_length=5):
    """Literal per-snippet loop of §2.4, independent of the vectorised implementation."""
    gt_local = [np.linalg.inv(np.linalg.inv(gt_abs[i - 1]) @ gt_abs[i])
                for i in range(1, len(gt_abs))]

    def chain(transforms):
        C, xyz = np.eye(4), [np.zeros(3)]
        for T in transforms:
            C = C @ T
            xyz.append(C[:3, 3])
        return np.array(xyz)

    ates = []
    for i in range(len(gt_abs) - 1):
        g = chain(gt_local[i:i + track_length - 1])
        p = chain(pred_rel[i:i + track_length - 1])
        p = p + (g[0] - p[0])
        s = np.sum(g * p) / np.sum(p ** 2)
        ates.append(np.sqrt(np.sum((s * p - g) ** 2)) / len(g))
    return np.array(ates)


def test_snippet_ate_matches_literal_loop():
    gt = _wiggly_trajectory(30, seed=2)
    noisy = _wiggly_trajectory(30, seed=3)
    pred_rel = absolute_to_relative(noisy)
    np.testing.assert_allclose(snippet_ate(pred_rel, gt)["ates"],
                               _snippet_ate_reference(pred_rel, gt), rtol=1e-9)
    with pytest.raises(InputError, match="N-1 relative poses"):
        snippet_ate(pred_rel, gt[:-1])


# ---------------------------------------------------------------- CLI and file formats


def _write_kitti(path, poses):
    np.savetxt(path, poses[:, :3, :].reshape(len(poses), 12), fmt="%.12e")


def _write_tum(path, stamps, poses):
    lines = ["# timestamp tx ty tz qx qy qz qw"]
    for t, P in zip(stamps, poses):
        w, x, y, z = tq.mat2quat(P[:3, :3])
        lines.append(" ".join(f"{v:.12f}" for v in (t, *P[:3, 3], x, y, z, w)))
    path.write_text("\n".join(lines) + "\n")


def test_cli_kitti_writes_table_and_json(tmp_path, capsys):
    gt = _wiggly_trajectory(40)
    est = gt.copy()
    est[:, :3, 3] *= 0.5
    _write_kitti(tmp_path / "gt.txt", gt)
    _write_kitti(tmp_path / "est.txt", est)
    out_json = tmp_path / "out" / "odom.json"
    rc = main(["--gt", str(tmp_path / "gt.txt"), "--est", str(tmp_path / "est.txt"),
               "--align", "scale", "--json", str(out_json)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "t_err(%)" in printed and "est.txt" in printed and "dir(deg)" in printed
    data = json.loads(out_json.read_text())
    # half the scale everywhere: exact rotation and direction, a constant pose scale
    assert data["pairs"]["rotation_deg_mean"] == pytest.approx(0.0, abs=1e-5)
    assert data["pairs"]["direction_deg_mean"] == pytest.approx(0.0, abs=1e-5)
    assert data["pairs"]["scale_ratio_median"] == pytest.approx(0.5)
    assert data["pairs"]["scale_ratio_std_over_mean"] == pytest.approx(0.0, abs=1e-8)
    assert data["alignment"] == "scale" and data["scale"] == pytest.approx(2.0)
    assert data["ate"] == pytest.approx(0.0, abs=1e-8)
    assert data["t_err"] is None  # 40 m trajectory: no 100 m segment
    assert data["ate_5frame_mean"] == pytest.approx(0.0, abs=1e-8)


def test_cli_reports_malformed_line_and_length_mismatch(tmp_path, capsys):
    gt = _wiggly_trajectory(5)
    _write_kitti(tmp_path / "gt.txt", gt)
    lines = (tmp_path / "gt.txt").read_text().splitlines()
    (tmp_path / "bad.txt").write_text("\n".join(lines[:2] + ["1 2 3"] + lines[3:]) + "\n")
    assert main(["--gt", str(tmp_path / "gt.txt"), "--est", str(tmp_path / "bad.txt")]) == 2
    err = capsys.readouterr().err
    assert "bad.txt" in err and "line 3" in err
    _write_kitti(tmp_path / "short.txt", gt[:4])
    assert main(["--gt", str(tmp_path / "gt.txt"), "--est", str(tmp_path / "short.txt")]) == 2
    assert "5 poses but" in capsys.readouterr().err


def test_tum_quaternion_order_and_stamp_checks(tmp_path):
    # qx qy qz qw = 0 0 sin45 cos45: +90 degrees about z.
    h = math.sqrt(0.5)
    (tmp_path / "t.txt").write_text(f"0.0 1 2 3 0 0 {h} {h}\n0.1 1 2 3 0 0 0 1\n")
    gt, _ = load_trajectory_pair(tmp_path / "t.txt", tmp_path / "t.txt", "tum")
    np.testing.assert_allclose(gt[0, :3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(gt[0, :3, 3], [1, 2, 3])
    (tmp_path / "back.txt").write_text("0.2 0 0 0 0 0 0 1\n0.1 0 0 0 0 0 0 1\n")
    with pytest.raises(InputError, match="back.txt: timestamps must increase"):
        load_trajectory_pair(tmp_path / "t.txt", tmp_path / "back.txt", "tum")
    (tmp_path / "far.txt").write_text("5.0 0 0 0 0 0 0 1\n6.0 0 0 0 0 0 0 1\n")
    with pytest.raises(InputError, match="only 0 of the 2 poses"):
        load_trajectory_pair(tmp_path / "t.txt", tmp_path / "far.txt", "tum")


def test_tum_association_matches_kitti_evaluation(tmp_path, capsys):
    gt = _wiggly_trajectory(30)
    est = gt.copy()
    est[:, :3, 3] *= 3.0
    stamps = 100.0 + 0.1 * np.arange(30)
    _write_tum(tmp_path / "gt.txt", stamps, gt)
    # Estimate: stamps jittered by 3 ms, first GT frame missing, one unmatched extra pose.
    est_stamps = np.append(stamps[1:] + 0.003, stamps[-1] + 0.5)
    _write_tum(tmp_path / "est.txt", est_stamps, np.concatenate([est[1:], est[-1:]]))
    rc = main(["--gt", str(tmp_path / "gt.txt"), "--est", str(tmp_path / "est.txt"),
               "--format", "tum", "--align", "7dof", "--json", str(tmp_path / "r.json")])
    assert rc == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "r.json").read_text())
    expected = odometry_errors(gt[1:], est[1:], "7dof")
    assert data["num_frames"] == 29
    assert data["rpe_trans"] == pytest.approx(expected["rpe_trans"], abs=1e-9)
    assert data["ate"] == pytest.approx(0.0, abs=1e-6)


def test_association_is_one_to_one_within_tolerance():
    t_gt = np.array([0.0, 1.0, 2.0, 3.0])
    t_est = np.array([0.9, 1.02, 1.6, 2.995])
    idx_gt, idx_est = associate_timestamps(t_gt, t_est, max_dt=0.05)
    np.testing.assert_array_equal(idx_gt, [1, 3])
    np.testing.assert_array_equal(idx_est, [1, 3])


# ---------------------------------------------------------------- report helpers


def test_format_table_aligns_columns():
    text = format_table({"09": {"t_err": 2.5, "name": "x", "nested": {"a": 1}},
                         "10": {"t_err": 12.25, "frames": 1201}}, title="Odom",
                        float_fmt=".2f", label_header="seq")
    lines = text.splitlines()
    assert lines[0] == "Odom"
    assert lines[1].split() == ["seq", "t_err", "name", "frames"]
    assert lines[3] == "09    2.50  x          -"
    assert lines[4] == "10   12.25  -       1201"
    assert format_table([{"a": 1}, {"b": None}]).splitlines()[2:] == ["1  -", "-  -"]


def test_write_json_is_atomic_and_converts_numpy(tmp_path):
    target = tmp_path / "sub" / "r.json"
    write_json(target, {"a": np.float32(1.5), "b": np.arange(3), "c": float("nan"),
                        np.int64(7): (np.bool_(True), Path("/x"))})
    assert json.loads(target.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": None,
                                              "7": [True, "/x"]}
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    with pytest.raises(TypeError):
        write_json(target, {"bad": object()})
    assert json.loads(target.read_text())["a"] == 1.5  # old file intact
    assert sorted(p.name for p in target.parent.iterdir()) == ["r.json"]  # no temp left
