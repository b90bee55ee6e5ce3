"""Trust in the refined pose: the acceptance test (cost at start vs result, trust region), the
covariance of singular problems, and the solver on a real photograph pair with exact geometry
(Middlebury 2014 Motorcycle, shipped with scikit-image: rectified stereo, ground-truth disparity)."""
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sa4depth_core.geometry import make_transform, so3_exp, so3_log
from sa4depth_core.refine import FeatureMetricRefiner, RefineResult, TrustRegion

skimage_data = pytest.importorskip("skimage.data")

DEG = math.pi / 180
STRIDES = (8, 4, 2, 1)


@pytest.fixture(scope="module")
def stereo():
    """Left image, right image resampled onto the left camera's intrinsics, left z-depth (0 where
    unknown), K and the exact T_left->right, at 160x240.

    The calibration is scikit-image's for its 4x down-sampled pair: f 994.978 px, principal point
    (311.193, 254.877), the right camera's 31.086 px further right, baseline 193.001 mm.
    """
    left, right, disp = skimage_data.stereo_motorcycle()
    f, cx, cy, doffs, baseline = 994.978, 311.193, 254.877, 31.086, 0.193001
    h0, w0 = disp.shape
    shift = np.float32([[1, 0, doffs], [0, 1, 0]])
    right = cv2.warpAffine(right, shift, (w0, h0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REFLECT)
    known = np.isfinite(disp) & (disp > 0)
    depth = np.where(known, f * baseline / np.where(known, disp + doffs, 1.0), 0.0).astype(np.float32)
    H, W = 160, 240
    sx, sy = W / w0, H / h0
    small = [cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA) for img in (left, right)]
    share = cv2.resize(known.astype(np.float32), (W, H), interpolation=cv2.INTER_AREA)
    total = cv2.resize(depth, (W, H), interpolation=cv2.INTER_AREA)
    depth = np.where(share > 0.99, total / np.maximum(share, 1e-6), 0.0)
    K = np.array([[f * sx, 0, (cx + 0.5) * sx - 0.5], [0, f * sy, (cy + 0.5) * sy - 0.5], [0, 0, 1]])
    T = np.eye(4)
    T[0, 3] = -baseline
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float()  # noqa: E731
    return {"left": small[0], "right": small[1], "depth": to_t(depth)[None, None], "K": to_t(K)[None],
            "T": to_t(T)}


def pyramid(image: np.ndarray, batch: int):
    """The image pyramid as features (confidence 1), coarse to fine, repeated `batch` times."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    levels = [F.avg_pool2d(x, s) if s > 1 else x for s in STRIDES]
    return [(f.expand(batch, -1, -1, -1), torch.ones_like(f[:, :1]).expand(batch, -1, -1, -1)) for f in levels]


def starts(T_gt: torch.Tensor, n: int, degrees: tuple, scale_off: tuple, seed: int) -> torch.Tensor:
    """(n,4,4) starts: rotation off by a random axis and angle in `degrees`, translation scaled by
    1 +- a factor in `scale_off`."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        axis = rng.normal(size=3)
        angle = rng.uniform(*degrees) * DEG
        R = so3_exp(torch.from_numpy(axis / np.linalg.norm(axis) * angle).float()) @ T_gt[:3, :3]
        out.append(make_transform(R, T_gt[:3, 3] * (1 + rng.choice([-1, 1]) * rng.uniform(*scale_off))))
    return torch.stack(out)


def errors(T: torch.Tensor, T_gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation error (deg) and translation error relative to the baseline, per element."""
    rot = torch.rad2deg(so3_log(T[:, :3, :3] @ T_gt[:3, :3].T).norm(dim=-1))
    return rot, (T[:, :3, 3] - T_gt[:3, 3]).norm(dim=-1) / T_gt[:3, 3].norm()


def solve(stereo, T0: torch.Tensor, trust: TrustRegion) -> RefineResult:
    B = T0.shape[0]
    refiner = FeatureMetricRefiner(strides=STRIDES, iterations=5, damping="fixed", init_damping=1e-3)
    return refiner(stereo["depth"].expand(B, -1, -1, -1), stereo["K"].expand(B, 3, 3), T0,
                   pyramid(stereo["left"], B), pyramid(stereo["right"], B), trust=trust)


TEST_TRUST = TrustRegion(max_rotation_deg=4.0, max_translation=0.05)  # starts below are up to 3 deg off


def test_real_pair_converges_from_moderate_starts_and_is_accepted(stereo, one_thread):
    T_gt = stereo["T"]
    T0 = starts(T_gt, 12, (1.0, 3.0), (0.0, 0.25), seed=1)
    result = solve(stereo, T0, TEST_TRUST)
    rot, trans = errors(result.pose, T_gt)
    # the residual 2-3 % is the ground truth's own: disparities at a quarter of the resolution
    assert (rot < 0.3).all() and (trans < 0.06).all(), (rot, trans)
    a = result.acceptance
    assert a.accepted.all(), a.reasons
    assert (a.cost_final < 0.5 * a.cost_start).all()
    assert (a.num_common > 0.5 * 160 * 240).all()


def test_real_pair_far_starts_are_rejected_rather_than_accepted_wrong(stereo, one_thread):
    T_gt = stereo["T"]
    T0 = starts(T_gt, 16, (6.0, 12.0), (0.3, 0.8), seed=2)
    result = solve(stereo, T0, TEST_TRUST)
    a = result.acceptance
    rot0, trans0 = errors(T0, T_gt)
    rot, trans = errors(result.pose, T_gt)
    assert result.success.all()  # the solver itself reports nothing wrong
    moved = torch.rad2deg(so3_log(result.pose[:, :3, :3] @ T0[:, :3, :3].transpose(1, 2)).norm(dim=-1))
    away = moved > TEST_TRUST.max_rotation_deg
    assert away.sum() >= 4, moved  # these starts are outside the basin: many solves wander off ...
    assert not (a.accepted & away).any()  # ... and none of those is accepted
    # an accepted result is never further from the truth than its start plus what the trust allows
    assert (rot[a.accepted] <= rot0[a.accepted] + TEST_TRUST.max_rotation_deg).all()
    assert all(a.reason(i) for i in torch.nonzero(~a.accepted).flatten().tolist())


def test_far_start_solves_that_end_off_are_not_used(stereo, one_thread):
    """Issue 23: with the node's default trust region, far starts (3-12 deg, 10-80 % off) that
    end in a local minimum near the start lowered the cost and were accepted 7 deg and 188 % off.
    Their cost stays an order above what converged solves reach; with the converged solves' cost
    as reference, none of them is used, and the converged ones still are."""
    T_gt = stereo["T"]
    near = solve(stereo, starts(T_gt, 12, (1.0, 3.0), (0.0, 0.25), seed=1), TrustRegion())
    reference = near.acceptance.cost_final.median()
    T0 = torch.cat([starts(T_gt, 16, (6.0, 12.0), (0.3, 0.8), seed=2), starts(T_gt, 16, (3.0, 6.0), (0.1, 0.3), seed=3)])
    without = solve(stereo, T0, TrustRegion())
    rot, trans = errors(without.pose, T_gt)
    off = (rot > 1.0) | (trans > 0.1)
    assert (without.acceptance.accepted & off).sum() >= 2  # the failure of the issue, without a reference
    refiner = FeatureMetricRefiner(strides=STRIDES, iterations=5, damping="fixed", init_damping=1e-3)
    B = T0.shape[0]
    result = refiner(stereo["depth"].expand(B, -1, -1, -1), stereo["K"].expand(B, 3, 3), T0,
                     pyramid(stereo["left"], B), pyramid(stereo["right"], B), trust=TrustRegion(),
                     cost_reference=reference.expand(B))
    torch.testing.assert_close(result.pose, without.pose)  # the test decides, the solve is the same
    a = result.acceptance
    assert not (a.accepted & off).any(), (rot[a.accepted], trans[a.accepted])
    assert (a.accepted & ~off).sum() >= 4  # converged far starts inside the trust region are kept
    assert any("converged solves" in a.reason(i) for i in torch.nonzero(off).flatten().tolist())


def test_a_solve_pulled_off_by_its_features_is_rejected(stereo, one_thread):
    """Source features shifted 12 px sideways: from the true pose, the solver converges confidently
    to another pose; the trust region around the start says no."""
    T_gt = stereo["T"]
    shifted = np.ascontiguousarray(np.roll(stereo["right"], 12, axis=1))
    refiner = FeatureMetricRefiner(strides=STRIDES, iterations=5, damping="fixed", init_damping=1e-3)
    result = refiner(stereo["depth"], stereo["K"], T_gt[None], pyramid(stereo["left"], 1), pyramid(shifted, 1),
                     trust=TrustRegion(max_rotation_deg=0.5, max_translation=0.01))
    a = result.acceptance
    assert result.success.all() and (a.cost_final < a.cost_start).all()  # descent alone would accept it
    assert not a.accepted.any()
    assert "from the start" in a.reason(0)


def test_a_step_that_raises_the_cost_is_rejected(stereo, one_thread, monkeypatch):
    """A solver whose every step turns the camera 0.57 deg, started at the true pose."""
    import sa4depth_core.refine as refine_module
    from sa4depth_core.geometry import se3_exp

    push = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.01, 0.0])
    monkeypatch.setattr(refine_module, "se3_exp", lambda delta: se3_exp(torch.zeros_like(delta) + push.to(delta)))
    result = solve(stereo, stereo["T"][None], TrustRegion(max_rotation_deg=180.0, max_translation=1e6))
    a = result.acceptance
    assert result.success.all() and (a.cost_final > a.cost_start).all()
    assert not a.accepted.any() and a.reason(0) == "the cost rose"


def test_covariance_of_a_singular_problem_is_bounded_not_an_exception():
    """A fence: texture along one image axis only makes H singular although the solve succeeded."""
    B = 3
    H = torch.zeros(B, 6, 6)
    H[0] = torch.eye(6)
    H[1, 0, 0] = 1.0  # rank one
    H[2] = torch.diag(torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, -1e-3]))  # indefinite from round-off
    result = RefineResult(pose=torch.eye(4).expand(B, 4, 4), level_poses=[], level_stats=[],
                          success=torch.ones(B, dtype=torch.bool), hessian=H)
    cov = result.covariance(max_variance=1e6)
    assert torch.isfinite(cov).all()
    torch.testing.assert_close(cov[0], torch.eye(6))
    torch.testing.assert_close(cov[1], 1e6 * torch.eye(6))
    torch.testing.assert_close(cov[2], 1e6 * torch.eye(6))
