import numpy as np
import torch

from sa4depth_core import losses


def _ssim_reference(x, y):
    """Direct window-by-window SSIM on one channel with reflect padding, for comparison."""
    xp = np.pad(x, 1, mode="reflect")
    yp = np.pad(y, 1, mode="reflect")
    out = np.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            a = xp[i : i + 3, j : j + 3]
            b = yp[i : i + 3, j : j + 3]
            ma, mb = a.mean(), b.mean()
            va, vb = (a * a).mean() - ma**2, (b * b).mean() - mb**2
            c = (a * b).mean() - ma * mb
            s = ((2 * ma * mb + 1e-4) * (2 * c + 9e-4)) / ((ma**2 + mb**2 + 1e-4) * (va + vb + 9e-4))
            out[i, j] = np.clip((1 - s) / 2, 0, 1)
    return out


def test_ssim_against_direct_computation():
    rng = np.random.default_rng(0)
    x = rng.random((7, 9))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    got = losses.ssim_dissimilarity(torch.tensor(x)[None, None], torch.tensor(y)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(got, _ssim_reference(x, y), atol=1e-9)


def test_photometric_error_zero_for_identical_and_l1_for_constant_offset():
    x = torch.rand(2, 3, 8, 8)
    assert losses.photometric_error(x, x).abs().max() < 1e-6
    a = torch.full((1, 3, 8, 8), 0.2)
    b = torch.full((1, 3, 8, 8), 0.5)
    err = losses.photometric_error(a, b)
    # constant images: SSIM term = (1 - (2ab+C1)/(a^2+b^2+C1)) / 2
    s = (1 - (2 * 0.2 * 0.5 + 1e-4) / (0.04 + 0.25 + 1e-4)) / 2
    np.testing.assert_allclose(err.numpy(), 0.85 * s + 0.15 * 0.3, rtol=1e-5)


def test_min_reprojection_picks_minimum_and_automasks():
    w1 = torch.tensor([[[[0.5, 0.1], [0.4, 0.3]]]])
    w2 = torch.tensor([[[[0.2, 0.3], [0.6, 0.3]]]])
    i1 = torch.tensor([[[[0.9, 0.9], [0.1, 0.9]]]])
    i2 = torch.full_like(i1, 0.9)
    loss, mask = losses.min_reprojection_loss([w1, w2], [i1, i2], identity_jitter=0.0)
    # pixel (1,0): the identity error 0.1 beats both warps -> masked (contributes its identity value)
    np.testing.assert_allclose(loss.item(), (0.2 + 0.1 + 0.1 + 0.3) / 4, rtol=1e-6)
    assert mask[0, 0].tolist() == [[1.0, 1.0], [0.0, 1.0]]


def test_min_reprojection_ignores_out_of_view():
    w1 = torch.tensor([[[[0.05, 0.1]]]])
    w2 = torch.tensor([[[[0.5, 0.3]]]])
    m1 = torch.tensor([[[[0.0, 1.0]]]])
    m2 = torch.tensor([[[[1.0, 0.0]]]])
    loss, mask = losses.min_reprojection_loss([w1, w2], None, [m1, m2])
    np.testing.assert_allclose(loss.item(), (0.5 + 0.1) / 2, rtol=1e-6)
    loss, mask = losses.min_reprojection_loss([w1], None, [torch.zeros_like(m1)])
    assert loss.item() == 0 and mask.sum() == 0


def test_smoothness_zero_for_constant_and_scale_invariant():
    img = torch.rand(1, 3, 8, 8)
    assert losses.smoothness_loss(torch.full((1, 1, 8, 8), 0.3), img).item() < 1e-6
    disp = torch.rand(1, 1, 8, 8) + 0.1
    a = losses.smoothness_loss(disp, img)
    b = losses.smoothness_loss(disp * 7, img)
    np.testing.assert_allclose(a.item(), b.item(), rtol=1e-5)
    # edges in the image reduce the penalty
    edge_img = torch.zeros(1, 3, 8, 8)
    edge_img[..., 4:] = 1.0
    step = torch.ones(1, 1, 8, 8)
    step[..., 4:] = 2.0
    assert losses.smoothness_loss(step, edge_img) < losses.smoothness_loss(step, torch.zeros_like(edge_img))
