import numpy as np
import pytest
import torch
import transforms3d

from sa4depth_core import geometry as g


def test_so3_exp_matches_transforms3d():
    rng = np.random.default_rng(0)
    for _ in range(20):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        angle = rng.uniform(0, 3.0)
        R = g.so3_exp(torch.tensor(axis * angle)).numpy()
        np.testing.assert_allclose(R, transforms3d.axangles.axangle2mat(axis, angle), atol=1e-12)


@pytest.mark.parametrize("scale", [1e-9, 1e-5, 1e-2, 1.0, 2.5])
def test_se3_exp_log_round_trip(scale):
    xi = torch.randn(64, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    xi = xi / xi[:, 3:].norm(dim=1, keepdim=True) * scale
    T = g.se3_exp(xi)
    np.testing.assert_allclose(g.se3_log(T).numpy(), xi.numpy(), atol=1e-10, rtol=1e-7)
    R = T[:, :3, :3]
    np.testing.assert_allclose((R @ R.transpose(1, 2)).numpy(), np.tile(np.eye(3), (64, 1, 1)), atol=1e-12)


def test_se3_exp_is_matrix_exponential():
    xi = torch.tensor([0.3, -0.2, 0.5, 0.4, -0.1, 0.2], dtype=torch.float64)
    hat = torch.zeros(4, 4, dtype=torch.float64)
    hat[:3, :3] = g.skew(xi[3:])
    hat[:3, 3] = xi[:3]
    np.testing.assert_allclose(g.se3_exp(xi).numpy(), torch.linalg.matrix_exp(hat).numpy(), atol=1e-12)


def test_gradients_finite_at_zero_rotation():
    xi = torch.zeros(2, 6, dtype=torch.float64, requires_grad=True)
    g.se3_exp(xi).sum().backward()
    assert torch.isfinite(xi.grad).all()
    T = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1).requires_grad_(True)
    g.se3_log(T).sum().backward()
    assert torch.isfinite(T.grad).all()


def test_pose_from_axisangle_invert():
    aa = torch.tensor([[[0.1, -0.2, 0.05]]])
    t = torch.tensor([[[0.5, 0.1, -1.0]]])
    T = g.pose_from_axisangle(aa, t)
    Ti = g.pose_from_axisangle(aa, t, invert=True)
    np.testing.assert_allclose((T @ Ti)[0].numpy(), np.eye(4), atol=1e-6)
    np.testing.assert_allclose(T[0, :3, 3].numpy(), t[0, 0].numpy())


def test_backproject_project_round_trip():
    K = torch.tensor([[[50.0, 0, 15.5], [0, 48.0, 9.5], [0, 0, 1]]])
    depth = torch.rand(1, 1, 20, 32) * 10 + 1
    pts = g.backproject(depth, torch.inverse(K))
    pix, z = g.project(pts, K)
    np.testing.assert_allclose(z[0].numpy(), depth.reshape(-1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(pix[0].numpy(), g.pixel_grid(20, 32)[:2].T.numpy(), atol=1e-4)


def test_warp_identity_and_shift():
    img = torch.rand(1, 3, 16, 24)
    K = torch.tensor([[[20.0, 0, 11.5], [0, 20.0, 7.5], [0, 0, 1]]])
    depth = torch.full((1, 1, 16, 24), 2.0)
    T = torch.eye(4)[None]
    warped, valid = g.warp(img, depth, T, K, torch.inverse(K))
    np.testing.assert_allclose(warped.numpy(), img.numpy(), atol=1e-5)
    assert valid.all()
    # A sideways move of depth/fx metres shifts a fronto-parallel plane by exactly one pixel.
    T[0, 0, 3] = 2.0 / 20.0
    warped, valid = g.warp(img, depth, T, K, torch.inverse(K))
    np.testing.assert_allclose(warped[..., :-1].numpy(), img[..., 1:].numpy(), atol=1e-5)
    assert valid[..., -1].sum() == 0 and valid[..., :-1].all()


def test_in_view_rejects_behind_and_nan():
    pix = torch.tensor([[[5.0, 5.0], [5.0, 5.0], [float("nan"), 1.0], [30.0, 1.0]]])
    z = torch.tensor([[1.0, -1.0, 1.0, 1.0]])
    assert g.in_view(pix, z, 10, 10).tolist() == [[True, False, False, False]]


def test_scale_intrinsics_matches_resize():
    # A bright dot imaged at (u, v) must appear at the K-predicted spot after cv2.resize.
    import cv2

    K = np.array([[100.0, 0, 40.0], [0, 100.0, 30.0], [0, 0, 1]])
    X = np.array([0.31, -0.17, 2.0])
    u, v = (K @ X)[:2] / X[2]
    img = np.zeros((64, 96), np.float32)
    yy, xx = np.mgrid[:64, :96]
    img += np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 2.0**2))
    small = cv2.resize(img, (48, 32), interpolation=cv2.INTER_AREA)
    K2 = g.scale_intrinsics(K, 0.5, 0.5)
    u2, v2 = (K2 @ X)[:2] / X[2]
    ys, xs = np.mgrid[:32, :48]
    w = small / small.sum()
    assert abs((w * xs).sum() - u2) < 0.05 and abs((w * ys).sum() - v2) < 0.05
    Kt = g.scale_intrinsics(torch.tensor(K), 0.5, 0.5)
    np.testing.assert_allclose(Kt.numpy(), K2)


def test_sample_rows_equals_grid_sample_with_its_gradients():
    """The LM's gather sampler (channels-last rows) gives grid_sample's values and gradients, for
    points inside, between and beyond the borders (clamped), and a NaN position stays finite."""
    rng = torch.Generator().manual_seed(3)
    image = torch.randn(2, 5, 9, 11, dtype=torch.float64, generator=rng, requires_grad=True)
    pixels = (torch.rand(2, 40, 2, dtype=torch.float64, generator=rng) * torch.tensor([15.0, 13.0]) - 2.0)
    pixels.requires_grad_()
    expected = g.sample(image, pixels)
    got = g.sample_rows(image.permute(0, 2, 3, 1).contiguous(), pixels)
    assert got.shape == (2, 5, 40) and torch.allclose(got, expected, atol=1e-12)
    for a, b in zip(torch.autograd.grad(expected.square().sum(), (image, pixels)),
                    torch.autograd.grad(got.square().sum(), (image, pixels))):
        assert torch.allclose(a, b, atol=1e-10)
    nan = torch.full((1, 1, 2), float("nan"), dtype=torch.float64)
    assert torch.isfinite(g.sample_rows(image[:1].detach().permute(0, 2, 3, 1).contiguous(), nan)).all()
