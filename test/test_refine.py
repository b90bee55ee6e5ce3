import math

import pytest
import torch
import torch.nn.functional as F

from sa4depth_core.errors import InputError
from sa4depth_core.geometry import (
    backproject,
    make_transform,
    project,
    se3_exp,
    se3_log,
    so3_exp,
    so3_log,
    transform_points,
)
from sa4depth_core.networks.feature_net import FeatureNet
from sa4depth_core.lm_step import (
    add_prior,
    damped_step,
    is_informative,
    linearize,
    normal_equations,
    pixel_jacobian,
    robust_cost,
    robust_weight,
    source_maps,
)
from sa4depth_core.refine import FeatureMetricRefiner, PosePrior

DEG = math.pi / 180
f64 = torch.float64


# ---------------------------------------------------------------- synthetic scene
# A concave room corner (two walls and a floor) with a smooth multi-frequency texture fixed to
# the world. The target camera is the world frame. Every view is ray-cast exactly.
_PLANES = torch.tensor([[-0.6, -0.1, 0.8, 6.0], [0.6, -0.1, 0.8, 6.0], [0.0, 1.0, 0.0, 1.2]], dtype=f64)
_PLANES[:, :3] /= _PLANES[:, :3].norm(dim=1, keepdim=True)
_gen = torch.Generator().manual_seed(3)
_FREQ = torch.randn(3, 6, 3, generator=_gen, dtype=f64)
_FREQ = _FREQ / _FREQ.norm(dim=-1, keepdim=True) * torch.linspace(2.0, 9.0, 6, dtype=f64)[None, :, None]
_PHASE = torch.rand(3, 6, generator=_gen, dtype=f64) * 2 * math.pi
_AMP = 0.18 / torch.linspace(1.0, 2.5, 6, dtype=f64)


def render(K, T, H, W):
    """Image (1,3,H,W) and z-depth (1,1,H,W) seen by a camera with X_cam = T X_world."""
    v, u = torch.meshgrid(torch.arange(H, dtype=f64), torch.arange(W, dtype=f64), indexing="ij")
    rays = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], -1)
    R, t = T[:3, :3], T[:3, 3]
    origin, dirs = -R.T @ t, rays @ R
    normals, dists = _PLANES[:, :3], _PLANES[:, 3]
    denom = dirs @ normals.T
    hit = (dists - origin @ normals.T) / denom
    depth = torch.where((denom > 1e-9) & (hit > 0), hit, torch.full_like(hit, math.inf)).min(-1).values
    X = origin + depth[..., None] * dirs
    image = 0.5 + (_AMP * torch.sin(torch.einsum("hwi,cki->chwk", X, _FREQ) + _PHASE[:, None, None])).sum(-1)
    return image[None], depth[None, None]


def kitti_like_K(H, W):
    return torch.tensor([[0.58 * W, 0, W / 2 - 0.5], [0, 1.92 * H, H / 2 - 0.5], [0, 0, 1]], dtype=f64)


def image_pyramid(image, strides):
    """Images as features with confidence 1, coarse to fine."""
    levels = [F.avg_pool2d(image, s) if s > 1 else image for s in strides]
    return [(x, torch.ones_like(x[:, :1])) for x in levels]


T_GT = make_transform(so3_exp(torch.tensor([1.0, -2.0, 0.5], dtype=f64) * DEG), torch.tensor([0.15, -0.05, 0.6], dtype=f64))


def perturbed(axis, angle_deg, scale):
    axis = torch.tensor(axis, dtype=f64)
    return make_transform(so3_exp(axis / axis.norm() * angle_deg * DEG) @ T_GT[:3, :3], scale * T_GT[:3, 3])


def pose_errors(T, T_ref):
    """Rotation error (deg) and relative translation error per batch element."""
    T, T_ref = T.to(f64), T_ref.to(f64)
    rot = so3_log(T[:, :3, :3] @ T_ref[:3, :3].T).norm(dim=-1) / DEG
    return rot, (T[:, :3, 3] - T_ref[:3, 3]).norm(dim=-1) / T_ref[:3, 3].norm()


def smooth_maps(B, C, H, W, wavelength, seed):
    """Random smooth maps (B,C,H,W): sums of plane waves no shorter than `wavelength` px."""
    g = torch.Generator().manual_seed(seed)
    v, u = torch.meshgrid(torch.arange(H, dtype=f64), torch.arange(W, dtype=f64), indexing="ij")
    out = torch.zeros(B, C, H, W, dtype=f64)
    for _ in range(3):
        angle = torch.rand(B, C, 1, 1, generator=g, dtype=f64) * 2 * math.pi
        k = 2 * math.pi / (wavelength * (1 + torch.rand(B, C, 1, 1, generator=g, dtype=f64)))
        phase = torch.rand(B, C, 1, 1, generator=g, dtype=f64) * 2 * math.pi
        out = out + torch.sin(k * (torch.cos(angle) * u + torch.sin(angle) * v) + phase)
    return out / 3


def small_problem(B=2, C=3, H=6, W=8, seed=0):
    """Smooth features, confidences, depth, K and a pose for a tiny float64 refinement."""
    g = torch.Generator().manual_seed(seed)
    feat_t = smooth_maps(B, C, H, W, 6.0, seed)
    feat_s = smooth_maps(B, C, H, W, 6.0, seed + 1)
    conf_t = 0.2 + 0.7 * torch.rand(B, 1, H, W, generator=g, dtype=f64)
    conf_s = 0.2 + 0.7 * torch.rand(B, 1, H, W, generator=g, dtype=f64)
    depth = 3 + smooth_maps(B, 1, H, W, 8.0, seed + 2)
    K = torch.tensor([[W, 0.0, (W - 1) / 2], [0, W, (H - 1) / 2], [0, 0, 1]], dtype=f64).expand(B, 3, 3)
    T0 = se3_exp(torch.tensor([0.02, -0.01, 0.05, 0.01, -0.02, 0.005], dtype=f64).expand(B, 6))
    return feat_t, conf_t, feat_s, conf_s, depth, K, T0


def flat_level(depth, K, feat_t, conf_t):
    """Points and flattened target maps of a single full-resolution level."""
    B, _, H, W = depth.shape
    points = backproject(depth, torch.linalg.inv(K))
    ok = torch.ones(B, H * W, dtype=torch.bool)
    return points, ok, feat_t.flatten(2), conf_t.flatten(1)


# ---------------------------------------------------------------- Jacobians


def test_pixel_jacobian_matches_finite_differences():
    g = torch.Generator().manual_seed(0)
    B, N = 2, 40
    points = torch.randn(B, 3, N, generator=g, dtype=f64)
    points[:, 2] = 2 + 3 * torch.rand(B, N, generator=g, dtype=f64)
    K = torch.tensor([[180.0, 0.7, 160.0], [0, 175.0, 50.0], [0, 0, 1]], dtype=f64).expand(B, 3, 3)
    J = pixel_jacobian(points, K)
    h = 1e-6
    for k in range(6):
        step = torch.zeros(B, 6, dtype=f64)
        step[:, k] = h
        plus, _ = project(transform_points(se3_exp(step), points), K)
        minus, _ = project(transform_points(se3_exp(-step), points), K)
        fd = ((plus - minus) / (2 * h)).transpose(1, 2)  # (B,2,N)
        torch.testing.assert_close(J[:, k], fd, rtol=1e-6, atol=1e-6)


def _fd_residual_jacobian(T, points, ok, ft, ct, source, K, h=1e-6):
    cols = []
    for k in range(6):
        step = torch.zeros(T.shape[0], 6, dtype=f64)
        step[:, k] = h
        plus = linearize(se3_exp(step) @ T, points, ok, ft, ct, source, K).residual
        minus = linearize(se3_exp(-step) @ T, points, ok, ft, ct, source, K).residual
        cols.append((plus - minus) / (2 * h))
    return torch.stack(cols, -1).transpose(1, 2)  # (B,M,C,6)


def test_residual_jacobian_is_exact_on_affine_features():
    # On maps affine in (u, v), bilinear sampling and central differences are exact, so the
    # analytic J must equal finite differences of the residual to rounding.
    B, C, H, W = 2, 4, 20, 28
    g = torch.Generator().manual_seed(1)
    v, u = torch.meshgrid(torch.arange(H, dtype=f64), torch.arange(W, dtype=f64), indexing="ij")
    coef = torch.randn(B, C, 3, 1, 1, generator=g, dtype=f64)
    feat_s = coef[:, :, 0] + 0.1 * coef[:, :, 1] * u + 0.1 * coef[:, :, 2] * v
    feat_t, conf_t, _, conf_s, depth, K, T = small_problem(B, C, H, W, seed=2)
    points, ok, ft, ct = flat_level(depth, K, feat_t, conf_t)
    source = source_maps(feat_s, conf_s)
    lin = linearize(T, points, ok, ft, ct, source, K, margin=2.0)
    fd = _fd_residual_jacobian(T, points, ok, ft, ct, source, K)
    keep = lin.valid
    assert keep.sum() > 0.5 * keep.numel()
    torch.testing.assert_close(lin.residual_jacobian()[keep], fd[keep], rtol=1e-6, atol=1e-7)


def test_residual_jacobian_matches_finite_differences_on_smooth_features():
    # On general smooth maps the central-difference gradient and the slope of the bilinear
    # interpolant differ by O(f''), so the agreement is close but not exact.
    B, C, H, W = 2, 4, 24, 32
    feat_t, conf_t, _, conf_s, depth, K, T = small_problem(B, C, H, W, seed=3)
    feat_s = smooth_maps(B, C, H, W, 40.0, seed=4)
    points, ok, ft, ct = flat_level(depth, K, feat_t, conf_t)
    source = source_maps(feat_s, conf_s)
    lin = linearize(T, points, ok, ft, ct, source, K, margin=3.0)
    fd = _fd_residual_jacobian(T, points, ok, ft, ct, source, K)
    keep = lin.valid
    assert keep.sum() > 0.5 * keep.numel()
    J = lin.residual_jacobian()[keep]
    rel = (J - fd[keep]).norm() / fd[keep].norm()
    assert rel < 0.05, rel
    # A sign or axis mix-up would be far off: e.g. swapping u and v derivatives.
    wrong = torch.einsum("bicm,bkim->bmck", lin.feature_grad.flip(1), lin.pixel_jac)[keep]
    assert (wrong - fd[keep]).norm() / fd[keep].norm() > 0.5


# ---------------------------------------------------------------- gradients


def test_gradcheck_one_lm_step(one_thread):
    feat_t, conf_t, feat_s, conf_s, depth, K, T0 = small_problem()
    refiner = FeatureMetricRefiner(strides=(1,), iterations=1, damping="learned", init_damping=1e-2,
                                   detach_depth=False, min_valid_points=3).double()
    xi = torch.zeros(1, 6, dtype=f64)
    logits = refiner.damping_logits.detach().clone() + torch.linspace(-1, 1, 6, dtype=f64)

    def step(ft, ct, fs, cs, d, xi, logits):
        T = se3_exp(xi.expand(T0.shape[0], 6)) @ T0
        out = torch.func.functional_call(refiner, {"damping_logits": logits}, (d, K, T, [(ft, ct)], [(fs, cs)]))
        return out.pose[:, :3]

    inputs = [x.clone().requires_grad_() for x in (feat_t, conf_t, feat_s, conf_s, depth, xi, logits)]
    out = refiner(depth, K, T0, [(feat_t, conf_t)], [(feat_s, conf_s)])
    assert out.success.all() and (out.level_stats[0].valid_fraction > 0.25).all()
    assert not torch.allclose(out.pose, T0)
    assert torch.autograd.gradcheck(step, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_refiner_applies_its_step_on_the_left():
    # The Jacobian is checked against Exp(delta) T above, so the update must compose the same way.
    feat_t, conf_t, feat_s, conf_s, depth, K, T0 = small_problem(H=12, W=16, seed=5)
    refiner = FeatureMetricRefiner(strides=(1,), iterations=1, damping="fixed", init_damping=1e-3, min_valid_points=3).double()
    points, ok, ft, ct = flat_level(depth, K, feat_t, conf_t)
    lin = linearize(T0, points, ok, ft, ct, source_maps(feat_s, conf_s), K)
    H, g = normal_equations(lin)
    delta, solved = damped_step(H, g, refiner.damping(0), is_informative(lin, 3))
    assert solved.all() and delta.abs().max() > 1e-3
    result = refiner(depth, K, T0, [(feat_t, conf_t)], [(feat_s, conf_s)])
    torch.testing.assert_close(result.pose, se3_exp(delta) @ T0, rtol=0, atol=1e-12)


def test_damped_step_falls_back_and_fails_safely():
    # Positive definite (Cholesky), indefinite but invertible (LU), singular after damping (fails).
    H = torch.stack([torch.diag(torch.tensor(d, dtype=f64)) for d in
                     ([2.0, 1, 1, 1, 1, 1], [2.0, 1, 1, 1, 1, -1], [2.0, 1, 1, 1, 1, -1e-6])])
    H = (H + 0.01 * torch.ones(6, 6, dtype=f64) * torch.tensor([1.0, 1.0, 0.0], dtype=f64)[:, None, None]).requires_grad_()
    g = torch.ones(3, 6, dtype=f64, requires_grad=True)
    damping = torch.zeros(6, dtype=f64, requires_grad=True)
    delta, solved = damped_step(H, g, damping, torch.ones(3, dtype=torch.bool))
    assert solved.tolist() == [True, True, False]
    damped = H.detach() + 1e-6 * torch.eye(6, dtype=f64)  # lambda 0 leaves the 1e-6 floor
    torch.testing.assert_close(delta[:2], -torch.linalg.solve(damped[:2], g.detach()[:2]))
    assert torch.equal(delta[2], torch.zeros(6, dtype=f64))
    delta.square().sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in (H, g, damping))


def _feature_net_problem(detach_between_levels, detach_depth):
    torch.manual_seed(0)
    H, W = 64, 128
    K = kitti_like_K(H, W).float()
    img_t, depth = render(K.double(), torch.eye(4, dtype=f64), H, W)
    img_s, _ = render(K.double(), T_GT, H, W)
    net = FeatureNet(strides=(8, 4, 2), channels=8)
    refiner = FeatureMetricRefiner(strides=(8, 4, 2), iterations=2, detach_between_levels=detach_between_levels,
                                   detach_depth=detach_depth, init_damping=1e-3)
    feats = net(torch.cat([img_t, img_s]).float())
    xi = torch.zeros(1, 6, requires_grad=True)
    depth = depth.float().requires_grad_()
    T_init = se3_exp(xi) @ perturbed([1, 1, 0], 2.0, 1.2)[None].float()
    result = refiner(depth, K[None], T_init, [(f[:1], c[:1]) for f, c in feats], [(f[1:], c[1:]) for f, c in feats])
    return net, refiner, xi, depth, result


def test_gradients_reach_features_damping_pose_and_optionally_depth():
    net, refiner, xi, depth, result = _feature_net_problem(detach_between_levels=False, detach_depth=False)
    result.pose[:, :3].square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert (refiner.damping_logits.grad.abs().sum(1) > 0).all()
    assert xi.grad.abs().sum() > 0 and depth.grad.abs().sum() > 0


def test_detach_between_levels_and_depth():
    _, refiner, xi, depth, result = _feature_net_problem(detach_between_levels=True, detach_depth=True)
    assert all(p.grad_fn is not None for p in result.level_poses)
    result.pose[:, :3].square().sum().backward(retain_graph=True)
    # Only the finest level is reached from the final pose; T_init and depth not at all.
    assert refiner.damping_logits.grad[:2].abs().sum() == 0 and refiner.damping_logits.grad[2].abs().sum() > 0
    assert xi.grad is None or xi.grad.abs().sum() == 0
    assert depth.grad is None
    # A loss on the coarsest level's pose trains that level and reaches T_init.
    result.level_poses[0][:, :3].square().sum().backward()
    assert refiner.damping_logits.grad[0].abs().sum() > 0 and xi.grad.abs().sum() > 0


# ---------------------------------------------------------------- recovery


def test_recovers_ground_truth_pose_from_image_pyramid():
    H, W = 96, 320
    strides = (8, 4, 2, 1)
    K = kitti_like_K(H, W)
    img_t, depth = render(K, torch.eye(4, dtype=f64), H, W)
    img_s, _ = render(K, T_GT, H, W)
    T0 = torch.stack([perturbed([1, 2, -1], 3.5, 1.3), perturbed([-2, 1, 1], 4.0, 0.7), perturbed([0, 0, 1], 5.0, 1.3)])
    B = T0.shape[0]
    rot0, trans0 = pose_errors(T0, T_GT)
    assert (rot0 > 3).all() and (trans0 > 0.25).all()

    refiner = FeatureMetricRefiner(strides=strides, iterations=5, damping="fixed", init_damping=1e-3)
    batch = lambda levels: [(f.expand(B, -1, -1, -1).float(), c.expand(B, -1, -1, -1).float()) for f, c in levels]
    result = refiner(depth.expand(B, -1, -1, -1).float(), K.expand(B, 3, 3).float(), T0.float(),
                     batch(image_pyramid(img_t, strides)), batch(image_pyramid(img_s, strides)))
    rot, trans = pose_errors(result.pose, T_GT)
    assert result.success.all()
    assert (rot < 0.1).all(), rot
    assert (trans < 0.01).all(), trans
    assert (result.level_stats[-1].cost < result.level_stats[0].cost).all()
    cov = result.covariance()
    assert torch.isfinite(cov).all() and (cov.diagonal(dim1=1, dim2=2) > 0).all()
    torch.testing.assert_close(cov, torch.linalg.inv(result.hessian), rtol=1e-3, atol=1e-9)


# ---------------------------------------------------------------- degenerate inputs


def test_degenerate_elements_keep_their_pose_and_stay_finite():
    H, W = 48, 160
    strides = (4, 2)
    K = kitti_like_K(H, W)
    img_t, depth = render(K, torch.eye(4, dtype=f64), H, W)
    img_s, _ = render(K, T_GT, H, W)
    B = 6  # good, textureless, zero depth, out of view, NaN depth, good with scattered NaN depth
    feats_t = [(f.expand(B, -1, -1, -1).float().clone(), c.expand(B, -1, -1, -1).float().clone()) for f, c in image_pyramid(img_t, strides)]
    feats_s = [(f.expand(B, -1, -1, -1).float().clone(), c.expand(B, -1, -1, -1).float().clone()) for f, c in image_pyramid(img_s, strides)]
    for ft_l, fs_l in zip(feats_t, feats_s):
        ft_l[0][1] = 0.5
        fs_l[0][1] = 0.5
    leaves = [x.requires_grad_() for level in feats_t + feats_s for x in level]
    depth = depth.expand(B, -1, -1, -1).float().clone()
    depth[2] = 0
    depth[4] = math.nan
    depth[5].view(-1)[::7] = math.nan
    depth.requires_grad_()
    xi = torch.zeros(B, 6, requires_grad=True)
    base = perturbed([1, 0, 0], 2.0, 1.2).float().expand(B, 4, 4).clone()
    base[3, 0, 3] = 1e4
    T_init = se3_exp(xi) @ base
    refiner = FeatureMetricRefiner(strides=strides, iterations=3, detach_depth=False, detach_between_levels=False)
    result = refiner(depth, K.expand(B, 3, 3).float(), T_init, feats_t, feats_s)

    assert result.success.tolist() == [True, False, False, False, False, True]
    assert torch.isfinite(result.pose).all()
    assert torch.equal(result.pose[1:5], T_init[1:5])
    torch.testing.assert_close(result.pose[5], result.pose[0], atol=2e-3, rtol=0)
    assert not torch.allclose(result.pose[0], T_init[0])
    for stats in result.level_stats:
        for value in (stats.cost, stats.num_valid, stats.valid_fraction):
            assert torch.isfinite(value).all()
    assert result.level_stats[-1].num_valid[[2, 3, 4]].eq(0).all()
    cov = result.covariance()
    assert torch.isfinite(cov).all()
    assert torch.equal(cov[1:5], torch.eye(6).expand(4, 6, 6) * 1e6)

    loss = sum(p.sum() for p in result.level_poses) + sum(s.cost.sum() for s in result.level_stats)
    loss.backward()
    for x in [*leaves, depth, xi, refiner.damping_logits]:
        assert torch.isfinite(x.grad).all()
    # A failed element passes T_init through unchanged: d pose / d xi is the identity map.
    assert xi.grad[1:5].abs().sum() > 0


def test_points_on_or_behind_the_camera_plane_fail_cleanly():
    # With constant depth 5 and t_z = -5 every point lands exactly on Z = 0, where 1/Z is infinite.
    B, H, W = 2, 16, 32
    K = kitti_like_K(H, W).float().expand(B, 3, 3)
    feats = [tuple(x.float().requires_grad_() for x in (smooth_maps(B, 4, H // s, W // s, 6.0, s), torch.ones(B, 1, H // s, W // s)))
             for s in (4, 2)]
    xi = torch.zeros(B, 6, requires_grad=True)
    T_init = se3_exp(xi) @ torch.stack([torch.eye(4), torch.eye(4)])
    T_init = T_init + torch.zeros(B, 4, 4).index_put_((torch.tensor([0, 1]), torch.tensor([2, 2]), torch.tensor([3, 3])), torch.tensor([-5.0, -50.0]))
    refiner = FeatureMetricRefiner(strides=(4, 2), detach_between_levels=False)
    result = refiner(torch.full((B, 1, H, W), 5.0), K, T_init, feats, feats)
    assert torch.equal(result.pose, T_init) and not result.success.any()
    result.pose.sum().backward()
    for x in [xi, refiner.damping_logits, *[t for level in feats for t in level]]:
        assert torch.isfinite(x.grad).all()


# ---------------------------------------------------------------- modes and options


def test_float64_inference_mode_and_eval_subsampling():
    H, W = 48, 160
    strides = (4, 2)
    K = kitti_like_K(H, W)
    img_t, depth = render(K, torch.eye(4, dtype=f64), H, W)
    img_s, _ = render(K, T_GT, H, W)
    T0 = perturbed([0, 1, 0], 1.5, 1.1)[None]
    refiner = FeatureMetricRefiner(strides=strides, iterations=4, init_damping=1e-3, max_points=(None, 1500)).double().eval()
    args = (depth, K[None], T0, image_pyramid(img_t, strides), image_pyramid(img_s, strides))
    with torch.inference_mode():
        a = refiner(*args)
    with torch.no_grad():
        b = refiner(*args)
    assert a.pose.dtype == f64 and torch.equal(a.pose, b.pose) and a.success.all()
    assert 1000 < a.level_stats[1].num_valid.item() <= 1500  # of 24 x 80 pixels
    rot, trans = pose_errors(a.pose, T_GT)
    rot0, trans0 = pose_errors(T0, T_GT)
    assert rot < rot0 / 5 and trans < trans0 / 4


def test_robust_kernel_values():
    s = torch.tensor([0.0, 0.02, 0.03], dtype=f64)
    torch.testing.assert_close(robust_weight(s, 0.0, 0.1), torch.tensor([1.0, 0.5, 0.4], dtype=f64))
    torch.testing.assert_close(robust_cost(s, 0.0, 0.1)[1], torch.tensor(0.02 * math.log(2), dtype=f64))
    torch.testing.assert_close(robust_weight(s, 1.0, 0.1)[2], torch.tensor(0.5, dtype=f64))  # (3 + 1)^-1/2
    torch.testing.assert_close(robust_cost(s, 2.0, 0.1), s)
    for alpha in (0.0, 1.0, -2.0, 2.0):
        x = s.clone().requires_grad_()
        (grad,) = torch.autograd.grad(robust_cost(x, alpha, 0.1).sum(), x)
        torch.testing.assert_close(grad, robust_weight(s, alpha, 0.1))


def test_learned_damping_starts_at_init_value():
    refiner = FeatureMetricRefiner(strides=(8, 4), init_damping=3e-3)
    torch.testing.assert_close(refiner.damping(1), torch.full((6,), 3e-3))


def test_bad_inputs_raise_input_error():
    B, H, W = 1, 16, 32
    K = torch.eye(3).expand(B, 3, 3)
    T = torch.eye(4).expand(B, 4, 4)
    coarse = (torch.zeros(B, 2, 4, 8), torch.ones(B, 1, 4, 8))
    fine = (torch.zeros(B, 2, 8, 16), torch.ones(B, 1, 8, 16))
    depth = torch.ones(B, 1, H, W)
    refiner = FeatureMetricRefiner(strides=(4, 2))
    with pytest.raises(InputError, match="2 feature levels"):
        refiner(depth, K, T, [coarse], [coarse])
    with pytest.raises(InputError, match="coarse to fine"):
        refiner(depth, K, T, [fine, coarse], [fine, coarse])
    with pytest.raises(InputError, match="damping"):
        FeatureMetricRefiner(damping="adaptive")
    with pytest.raises(InputError, match="iterations"):
        FeatureMetricRefiner(strides=(4, 2), iterations=[3, 3, 3])


# ---------------------------------------------------------------- a prior on the pose


def test_add_prior_hand_computed():
    H, g = torch.eye(6, dtype=f64)[None] * 2, torch.ones(1, 6, dtype=f64)
    info = torch.diag(torch.tensor([1.0, 2, 3, 4, 5, 6], dtype=f64))[None]
    e = torch.tensor([[1.0, 0, 0, 0, 0, -1]], dtype=f64)
    H2, g2 = add_prior(H, g, e, info, torch.tensor([0.5], dtype=f64))
    torch.testing.assert_close(H2[0], torch.diag(torch.tensor([2.5, 3, 3.5, 4, 4.5, 5], dtype=f64)))
    torch.testing.assert_close(g2[0], torch.tensor([1.5, 1, 1, 1, 1, -2], dtype=f64))


def test_a_prior_pulls_the_solve_toward_its_pose_by_its_information():
    """No information: the plain solve, bit for bit; overwhelming information: the prior's pose;
    in between, a pose between the two."""
    H, W = 48, 160
    strides = (4, 2, 1)
    K = kitti_like_K(H, W)
    img_t, depth = render(K, torch.eye(4, dtype=f64), H, W)
    img_s, _ = render(K, T_GT, H, W)
    T0 = perturbed([1, 2, -1], 2.0, 1.2)[None]
    prior_pose = perturbed([0, 1, 0], 1.0, 0.9)[None]
    refiner = FeatureMetricRefiner(strides=strides, iterations=5, damping="fixed", init_damping=1e-3)

    def run(information=None):
        prior = None if information is None else PosePrior(prior_pose, information * torch.eye(6, dtype=f64)[None])
        return refiner(depth, K[None], T0, image_pyramid(img_t, strides), image_pyramid(img_s, strides),
                       prior=prior).pose

    plain = run()
    torch.testing.assert_close(run(0.0), plain, rtol=0, atol=1e-12)
    pinned = run(1e12)
    torch.testing.assert_close(pinned, prior_pose, rtol=0, atol=1e-6)
    rot_plain, _ = pose_errors(plain, T_GT)
    assert rot_plain[0] < 0.1  # the features alone find the true pose
    middle = run(1e3)
    d_plain = se3_log(middle[0] @ torch.linalg.inv(plain[0])).norm()
    d_prior = se3_log(middle[0] @ torch.linalg.inv(prior_pose[0])).norm()
    gap = se3_log(prior_pose[0] @ torch.linalg.inv(plain[0])).norm()
    assert 0 < d_plain < gap and 0 < d_prior < gap, (d_plain, d_prior, gap)
