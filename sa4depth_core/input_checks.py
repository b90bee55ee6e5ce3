"""Whether numbers that come from outside (a message, a parameter) are what they claim to be: a
covariance, a rigid transform, the intrinsics of a camera.

Each check raises InputError naming `what` and the reason, so that a caller can refuse an input
whole before any of it is used; each returns the checked array (float64) on success. Finite is not
enough: 1e308 is finite, and the first product with it overflows (issue 27).
"""
from __future__ import annotations

import math

import numpy as np

from .errors import InputError

# Largest variance (m², rad²) accepted in a covariance that comes from outside. A standard
# deviation of 1 km, or of 1000 rad (any heading), already says "unknown" to a visual odometry
# frame, and the pipeline's own "lost" step variance (LOST_VARIANCE, 1000) sits below it. The
# bound also keeps the node's sums numerically sound: its odometry adds variances down to 1e-6
# (PipelineOptions.min_variance), and float64 resolves 1e-6 beside 1e6 with six digits to spare
# (1e6 · 2.2e-16 ≈ 2e-10), while 1e308 overflows in the first propagation through an adjoint.
MAX_VARIANCE = 1e6
# Relative tolerance of symmetry and positive semi-definiteness, in units of the largest
# variance: a covariance computed in float32 (a network, a driver) and widened is symmetric and
# semi-definite to about 1e-7 of its scale.
COVARIANCE_RTOL = 1e-6
POSE_AXES = ("x", "y", "z", "rot x", "rot y", "rot z")

# Orthonormality tolerance of a rigid transform's rotation block: the poses made here are float64
# (networks' float32 rotations are projected back onto SO(3) before they are composed), and
# transforms read from messages come from normalised quaternions, both orthonormal to ~1e-15.
RIGID_ATOL = 1e-6

# Intrinsics. Every pixel of the image must see a ray within atan(100) ≈ 89.4° of the optical axis
# along each image axis, i.e. |u - cx| <= 100 fx over the image: a pinhole cannot see at 90°, and
# beyond that back-projected points and the odometry's projections leave any useful range (with
# fx = 1e-300 every point was Inf). With the principal point inside the image this asks for
# fx >= max(W, H) / 100 or so, a field of view up to about 179°: wider than any pinhole lens
# (the widest rectilinear ones are about 120°, fx ≈ 0.29 W), and the raw K of a fisheye
# (equidistant, 180°: fx ≈ W / π) passes too. A principal point outside the image (a region of
# interest cut from a sensor's edge) is fine as long as the rays stay in that cone.
MAX_RAY_SLOPE = 100.0
# Longest focal length, in units of the image's larger side: a field of view of 0.057°. A long
# telephoto on a full sensor is about 30 (2°), so this leaves room for regions of interest cut
# from it, and it keeps projections (fx · x / z) far from overflow.
MAX_FOCAL_RATIO = 1e3


def check_covariance(covariance, what: str = "covariance", axes=POSE_AXES) -> np.ndarray:
    """Check that `covariance` is a covariance matrix and return its symmetric part.

    Args:
        covariance: (N, N), N = len(axes); e.g. (6, 6) of x, y, z, rotation about x, y, z.
        what: names the matrix in the error.
        axes: names of the N components, for the error.
    Returns:
        (N, N) float64, symmetric, with every variance in [0, MAX_VARIANCE].
    Raises:
        InputError when it is not finite, has a variance outside [0, MAX_VARIANCE], a
        correlation beyond ±1, is not symmetric or not positive semi-definite (each within
        COVARIANCE_RTOL of the largest variance).
    """
    C = np.asarray(covariance, dtype=np.float64)
    n = len(axes)
    if C.shape != (n, n):
        raise InputError(f"{what} must be a ({n}, {n}) matrix, got shape {C.shape}")
    if not np.isfinite(C).all():
        raise InputError(f"{what} has non-finite values: {C.tolist()}")
    variances = np.diag(C)
    for axis, v in zip(axes, variances):
        if not 0.0 <= v <= MAX_VARIANCE:
            raise InputError(f"{what}: variance {v:g} of {axis} is not in [0, {MAX_VARIANCE:g}] (m², rad²)")
    tol = COVARIANCE_RTOL * float(variances.max(initial=0.0))
    # |C_ij| <= sqrt(C_ii C_jj) holds for every covariance; checked before anything multiplies
    # C, since it also bounds the off-diagonal entries (1e308 beside zero variances is finite).
    sd = np.sqrt(variances)
    excess = np.abs(C) - np.outer(sd, sd)
    i, j = np.unravel_index(int(np.argmax(excess)), excess.shape)
    if excess[i, j] > tol:
        raise InputError(f"{what} is not a covariance: entry ({axes[i]}, {axes[j]}) {C[i, j]:g} exceeds what the "
                         f"variances {variances[i]:g} and {variances[j]:g} allow (a correlation beyond ±1)")
    asymmetry = float(np.abs(C - C.T).max())
    if asymmetry > tol:
        raise InputError(f"{what} is not symmetric (entries differ from their transposes by up to {asymmetry:g})")
    C = 0.5 * (C + C.T)
    smallest = float(np.linalg.eigvalsh(C)[0])
    if smallest < -tol:
        raise InputError(f"{what} is not a covariance: not positive semi-definite (eigenvalue {smallest:g})")
    return C


def check_rigid_transform(T, what: str = "transform", atol: float = RIGID_ATOL) -> np.ndarray:
    """Check that `T` is a rigid transform.

    Args:
        T: (4, 4).
        atol: how far R^T R may be from the identity, entry by entry.
    Returns:
        (4, 4) float64.
    Raises:
        InputError when it is not finite, its last row is not 0 0 0 1, or its rotation block is
        not a rotation (orthonormal within `atol`, determinant > 0).
    """
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise InputError(f"{what} must be a (4, 4) matrix, got shape {T.shape}")
    if not np.isfinite(T).all():
        raise InputError(f"{what} is not finite: {T.tolist()}")
    if not np.allclose(T[3], (0.0, 0.0, 0.0, 1.0), rtol=0.0, atol=atol):
        raise InputError(f"{what} is not a rigid transform: its last row is {T[3].tolist()}, not 0 0 0 1")
    R = T[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), rtol=0.0, atol=atol) or np.linalg.det(R) <= 0:
        raise InputError(f"{what} has a rotation block that is not a rotation: {R.tolist()}")
    return T


def check_pinhole(K, what: str = "intrinsics") -> np.ndarray:
    """Check that `K` has the form of a pinhole camera matrix, whatever the image.

    Args:
        K: (3, 3) [[fx, s, cx], [0, fy, cy], [0, 0, 1]].
    Returns:
        (3, 3) float64.
    Raises:
        InputError when it is not finite, fx or fy is not > 0 or the last row is not 0 0 1.
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all() or not (K[0, 0] > 0 and K[1, 1] > 0) \
            or not np.allclose(K[2], (0.0, 0.0, 1.0)):
        raise InputError(f"{what} {K.tolist()} is not a pinhole matrix (needs finite values, fx, fy > 0 and last "
                         f"row 0 0 1)")
    return K


def check_intrinsics(K, width: int, height: int, what: str = "intrinsics") -> np.ndarray:
    """Check that `K` can be the intrinsics of a width x height image (see MAX_RAY_SLOPE and
    MAX_FOCAL_RATIO for the bounds and why).

    Args:
        K: (3, 3) pinhole matrix in pixels, pixel centres at integers.
    Returns:
        (3, 3) float64.
    Raises:
        InputError naming `what` and the bound it breaks.
    """
    K = check_pinhole(K, what)
    if int(width) <= 0 or int(height) <= 0:
        raise InputError(f"{what}: the image has no size ({width}x{height})")
    longest = MAX_FOCAL_RATIO * max(int(width), int(height))
    for axis, size, f, c in (("x", int(width), K[0, 0], K[0, 2]), ("y", int(height), K[1, 1], K[1, 2])):
        name = "f" + axis
        if f > longest:
            raise InputError(f"{what}: focal length {name} {f:g} is longer than any camera's for a {width}x{height} "
                             f"image (at most {MAX_FOCAL_RATIO:g} x its larger side, {longest:g})")
        # the image spans -0.5 .. size - 0.5 (pixel centres at integers)
        reach = max(abs(-0.5 - c), abs(size - 0.5 - c))
        if reach > MAX_RAY_SLOPE * f:
            degrees = math.degrees(math.atan(MAX_RAY_SLOPE))
            raise InputError(f"{what}: focal length {name} {f:g} with principal point c{axis} {c:g} is no camera's for "
                             f"a {width}x{height} image: its edge would see rays {reach / f:.3g} focal lengths off the "
                             f"optical axis (at most {MAX_RAY_SLOPE:g}, {degrees:.1f}°)")
    return K
