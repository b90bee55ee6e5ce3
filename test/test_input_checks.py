"""The core's checks of numbers from outside (issue 27), without ROS: covariances checked as
covariances, rigid transforms, and intrinsics bounded to what a camera of the image's size can have."""
import math

import numpy as np
import pytest
from transforms3d.euler import euler2mat

from sa4depth_core.errors import InputError
from sa4depth_core.input_checks import (
    MAX_FOCAL_RATIO,
    MAX_RAY_SLOPE,
    MAX_VARIANCE,
    check_covariance,
    check_intrinsics,
    check_pinhole,
    check_rigid_transform,
)


def _correlated(sd, rho) -> np.ndarray:
    """(n,n) covariance with standard deviations `sd` and one correlation `rho` everywhere off the diagonal."""
    sd = np.asarray(sd, dtype=np.float64)
    corr = np.full((sd.size, sd.size), rho)
    np.fill_diagonal(corr, 1.0)
    return corr * np.outer(sd, sd)


def test_covariances_pass_and_come_back_symmetric():
    for C in (np.zeros((6, 6)), np.diag([0.04, 0.04, 0.01, 0.001, 0.001, 0.0025]),
              MAX_VARIANCE * np.eye(6), _correlated([1.0, 2.0, 3.0, 0.1, 0.2, 0.3], 0.5)):
        np.testing.assert_array_equal(check_covariance(C), C)
    # rank one (perfectly correlated), rounded through float32 as a driver's would be
    v = np.array([1.0, -2.0, 0.5, 0.01, 0.02, -0.03])
    C = np.outer(v, v).astype(np.float32).astype(np.float64)
    C[0, 1] += 1e-7  # asymmetric by float32 rounding
    out = check_covariance(C)
    np.testing.assert_array_equal(out, out.T)


@pytest.mark.parametrize("make, reason", [
    (lambda: 1e308 * np.eye(6), "variance 1e\\+308 of x is not in \\[0, 1e\\+06\\]"),
    (lambda: np.diag([1.0, 1.0, 1.0, 1.0, 1.0, 2e6]), "variance 2e\\+06 of rot z"),
    (lambda: np.diag([1.0, -1e-9, 1.0, 1.0, 1.0, 1.0]), "variance -1e-09 of y"),
    (lambda: _off_diagonal(0, 1, 1e308, np.zeros(6)), "entry \\(x, y\\) 1e\\+308 .*correlation beyond"),
    (lambda: _off_diagonal(2, 5, 1.5, np.ones(6)), "entry \\(z, rot z\\) 1.5 .*correlation beyond"),
    (lambda: _off_diagonal(0, 1, 0.5, np.ones(6), transpose=-0.5), "not symmetric"),
    (lambda: _correlated(np.ones(6), -0.5), "not positive semi-definite"),  # each pair fine, the whole not
    (lambda: np.full((6, 6), math.nan), "non-finite"),
    (lambda: np.eye(3), "must be a \\(6, 6\\) matrix"),
])
def test_what_is_no_covariance_is_refused_with_the_reason(make, reason):
    with pytest.raises(InputError, match=f"set_pose covariance.*{reason}"):
        check_covariance(make(), "set_pose covariance")


def _off_diagonal(i, j, value, variances, transpose=None) -> np.ndarray:
    C = np.diag(variances).astype(np.float64)
    C[i, j] = value
    C[j, i] = value if transpose is None else transpose
    return C


def test_rigid_transforms():
    T = np.eye(4)
    T[:3, :3] = euler2mat(0.3, -1.2, 2.9)
    T[:3, 3] = (1.0, -2.0, 1e6)
    np.testing.assert_array_equal(check_rigid_transform(T), T)
    for bad, reason in [(_scaled(T, 1.001), "not a rotation"), (_scaled(T, -1.0), "not a rotation"),
                        (_with(T, (3, 0), 0.5), "last row"), (_with(T, (0, 3), math.inf), "not finite"),
                        (np.eye(3), "\\(4, 4\\) matrix")]:
        with pytest.raises(InputError, match=f"mount {reason}|mount .*{reason}"):
            check_rigid_transform(bad, "mount")


def _scaled(T, factor) -> np.ndarray:
    out = T.copy()
    out[:3, :3] *= factor
    return out


def _with(T, index, value) -> np.ndarray:
    out = T.copy()
    out[index] = value
    return out


K = np.array([[90.0, 0.0, 63.5], [0.0, 90.0, 31.5], [0.0, 0.0, 1.0]])  # a 128x64 image


def test_camera_intrinsics_pass():
    np.testing.assert_array_equal(check_intrinsics(K, 128, 64), K)
    # a fisheye's raw K (180°: f = W / pi), a long telephoto, a region cut from a sensor's corner
    for f, c in [(128 / math.pi, (63.5, 31.5)), (30 * 128, (63.5, 31.5)), (500.0, (900.0, -400.0))]:
        check_intrinsics(np.array([[f, 0.0, c[0]], [0.0, f, c[1]], [0.0, 0.0, 1.0]]), 128, 64)


@pytest.mark.parametrize("fx, fy, cx, cy, reason", [
    (1e-300, 1e-300, 63.5, 31.5, "fx 1e-300 with principal point cx 63.5 is no camera's"),
    (90.0, 0.2, 63.5, 31.5, "fy 0.2 with principal point cy 31.5"),
    (0.5, 0.5, 63.5, 31.5, "fx 0.5 .*128 focal lengths off the optical axis \\(at most 100, 89.4°\\)"),
    (90.0, 90.0, 1e12, 31.5, "cx 1e\\+12"),
    (1e300, 1e300, 63.5, 31.5, "fx 1e\\+300 is longer than any camera's for a 128x64 image"),
    (MAX_FOCAL_RATIO * 128 * 1.01, 90.0, 63.5, 31.5, "fx .* is longer"),
    (-90.0, 90.0, 63.5, 31.5, "not a pinhole matrix"),
    (math.nan, 90.0, 63.5, 31.5, "not a pinhole matrix"),
])
def test_intrinsics_no_camera_has_are_refused_with_the_reason(fx, fy, cx, cy, reason):
    bad = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    with pytest.raises(InputError, match=f"CameraInfo P.*{reason}"):
        check_intrinsics(bad, 128, 64, "CameraInfo P")


def test_the_ray_bound_is_where_the_edge_pixel_sees_at_most_max_ray_slope():
    # principal point at the centre: the edge (-0.5) is 64 px away
    edge = 64.0 / MAX_RAY_SLOPE
    check_intrinsics(np.array([[edge, 0.0, 63.5], [0.0, 90.0, 31.5], [0.0, 0.0, 1.0]]), 128, 64)
    with pytest.raises(InputError, match="fx"):
        check_intrinsics(np.array([[edge * 0.99, 0.0, 63.5], [0.0, 90.0, 31.5], [0.0, 0.0, 1.0]]), 128, 64)


def test_pinhole_form_and_image_size():
    with pytest.raises(InputError, match="K .*last row 0 0 1"):
        check_pinhole(np.array([[90.0, 0.0, 63.5], [0.0, 90.0, 31.5], [0.0, 1.0, 1.0]]), "K")
    with pytest.raises(InputError, match="no size"):
        check_intrinsics(K, 0, 64)
