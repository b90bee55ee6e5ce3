"""sensor_msgs/CameraInfo <-> intrinsics matrices; resizing delegates to sa4depth_core.geometry.

Every array of an incoming CameraInfo is checked before any of it is used or copied to an output
(`check_camera_info`): frames are used as pinhole images with K, so a message whose numbers are
not finite, whose arrays have the wrong length, or whose distortion model cannot be read as
(approximately) pinhole is refused with the reason.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo, RegionOfInterest

from sa4depth_core.errors import InputError
from sa4depth_core.geometry import scale_intrinsics


def _frame(msg) -> str:
    return f"frame_id '{msg.header.frame_id}'"


def camera_info_to_K(msg) -> np.ndarray:
    """The pinhole matrix K of a CameraInfo, checked for use.

    Returns:
        (3, 3) float64.
    """
    k = np.asarray(msg.k, dtype=np.float64)
    if k.size != 9:
        raise InputError(f"CameraInfo K must have 9 values, got {k.size} ({_frame(msg)})")
    if not np.any(k):
        raise InputError(f"CameraInfo K is all zeros: camera not calibrated ({_frame(msg)})")
    K = k.reshape(3, 3)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], (0.0, 0.0, 1.0)):
        raise InputError(
            f"CameraInfo K {K.tolist()} is not a pinhole matrix (needs fx, fy > 0 and last row 0 0 1; {_frame(msg)})"
        )
    return K


# distortion_model -> accepted lengths of D (an empty D means "no distortion given").
# plumb_bob and rational_polynomial are OpenCV's pinhole models with small radial/tangential
# terms; equidistant is a fisheye model, far from pinhole whenever its D is not zero.
DISTORTION_LENGTHS = {"plumb_bob": (5,), "rational_polynomial": (8, 12, 14), "equidistant": (4,)}
PINHOLE_WITH_DISTORTION = ("plumb_bob", "rational_polynomial")


def _finite_array(msg, field: str, size: int) -> np.ndarray:
    values = np.asarray(getattr(msg, field), dtype=np.float64).reshape(-1)
    if values.size != size:
        raise InputError(f"CameraInfo {field.upper()} must have {size} values, got {values.size} ({_frame(msg)})")
    if not np.isfinite(values).all():
        raise InputError(f"CameraInfo {field.upper()} has non-finite values {values.tolist()} ({_frame(msg)})")
    return values


def _check_distortion(msg) -> np.ndarray:
    """D of a CameraInfo, (N,) finite, refused where using the image as pinhole would be wrong."""
    model = str(msg.distortion_model)
    D = np.asarray(msg.d, dtype=np.float64).reshape(-1)
    if not np.isfinite(D).all():
        raise InputError(f"CameraInfo D has non-finite values {D.tolist()} ({_frame(msg)})")
    if not np.any(D):
        return D  # no distortion: pinhole whatever the model's name
    lengths = DISTORTION_LENGTHS.get(model)
    if lengths is None:
        raise InputError(f"CameraInfo distortion model '{model}' is unknown and D {D.tolist()} is not zero; "
                         f"rectify the images first (e.g. image_proc) and publish them with zero D ({_frame(msg)})")
    if D.size not in lengths:
        raise InputError(f"CameraInfo D of model '{model}' must have {' or '.join(map(str, lengths))} values, "
                         f"got {D.size} ({_frame(msg)})")
    if model not in PINHOLE_WITH_DISTORTION:
        raise InputError(f"CameraInfo distortion model '{model}' (fisheye) with non-zero D cannot be used as a "
                         f"pinhole image; rectify the images first (e.g. image_proc) ({_frame(msg)})")
    return D


def check_camera_info(msg) -> np.ndarray:
    """Validate every field of a CameraInfo that the node uses or passes on.

    Checks the image size, K (pinhole), D (finite, length for its model, a model that can be read
    as pinhole), R (9 finite values), P (12 finite values; all zero = not rectified, else a
    projection with fx', fy' > 0 and last row 0 0 1 0), and full-frame binning / ROI.

    Returns:
        (3, 3) float64 K.
    """
    if int(msg.width) <= 0 or int(msg.height) <= 0:
        raise InputError(f"CameraInfo has no image size ({msg.width}x{msg.height}, {_frame(msg)})")
    K = camera_info_to_K(msg)
    _check_distortion(msg)
    _finite_array(msg, "r", 9)
    P = _finite_array(msg, "p", 12).reshape(3, 4)
    if np.any(P) and not (P[0, 0] > 0 and P[1, 1] > 0 and np.allclose(P[2], (0.0, 0.0, 1.0, 0.0))):
        raise InputError(f"CameraInfo P {P.tolist()} is not a projection matrix (needs fx', fy' > 0 and last row "
                         f"0 0 1 0; all zero if not rectified; {_frame(msg)})")
    _check_full_frame(msg)
    return K


def distortion_note(msg) -> str:
    """'' or a sentence saying that a checked CameraInfo's non-zero lens distortion is ignored."""
    if not np.any(np.asarray(msg.d, dtype=np.float64)):
        return ""
    return (f"CameraInfo of {_frame(msg)} has {msg.distortion_model} distortion {list(np.round(msg.d, 6))}: "
            "frames are used as if undistorted (publish rectified images for exact geometry)")


def frame_intrinsics(info, image_hw: tuple[int, int], fallback: np.ndarray) -> np.ndarray:
    """(3,3) K of an image of size `image_hw` (H, W): from the CameraInfo paired with it, fully
    checked (`check_camera_info`) and checked to be for that size, or `fallback` (the nodes'
    intrinsics parameter) when `info` is None. Raises InputError before any work is done on a
    frame that could not be published whole."""
    if info is None:
        return fallback
    K = check_camera_info(info)
    if (int(info.width), int(info.height)) != (image_hw[1], image_hw[0]):
        raise InputError(f"CameraInfo is for {info.width}x{info.height} but the image is "
                         f"{image_hw[1]}x{image_hw[0]} (topic pairing or a camera size change?)")
    return K


def _check_full_frame(msg) -> None:
    """K and P refer to the full sensor; a binned or cropped stream would need them shifted first."""
    binned = max(int(msg.binning_x), 1) != 1 or max(int(msg.binning_y), 1) != 1
    roi = msg.roi
    # roi 0x0 means "full frame" by the message's own definition
    cropped = (roi.width, roi.height) != (0, 0) and (
        (roi.x_offset, roi.y_offset, roi.width, roi.height) != (0, 0, msg.width, msg.height))
    if binned or cropped:
        raise InputError(
            f"CameraInfo with binning {msg.binning_x}x{msg.binning_y} / roi "
            f"({roi.x_offset}, {roi.y_offset}, {roi.width}x{roi.height}) is not supported; "
            f"publish full-frame images ({_frame(msg)})"
        )


def scaled_camera_info(msg, out_w: int, out_h: int) -> CameraInfo:
    """CameraInfo of the same camera after resizing its image to (out_w, out_h).

    K and P follow `sa4depth_core.geometry.scale_intrinsics` (pixel centres at integers); P's
    Tx, Ty terms (focal length times baseline) scale with fx, fy. D, R and the distortion model
    are unchanged (they live in normalised coordinates); binning and roi are cleared. An all-zero
    P (not rectified) stays zero.
    """
    K = check_camera_info(msg)
    if isinstance(out_w, bool) or isinstance(out_h, bool) or int(out_w) != out_w or int(out_h) != out_h \
            or out_w <= 0 or out_h <= 0:
        raise InputError(f"output size must be positive integers, got {out_w}x{out_h}")
    sx, sy = out_w / msg.width, out_h / msg.height

    P = np.asarray(msg.p, dtype=np.float64).reshape(3, 4).copy()
    if np.any(P):
        P[:, :3] = scale_intrinsics(P[:, :3], sx, sy)
        P[0, 3] *= sx
        P[1, 3] *= sy

    out = CameraInfo()
    out.header = msg.header
    out.width, out.height = int(out_w), int(out_h)
    out.distortion_model = msg.distortion_model
    out.d = list(msg.d)
    out.r = np.asarray(msg.r, dtype=np.float64)
    out.k = scale_intrinsics(K, sx, sy).reshape(9)
    out.p = P.reshape(12)
    out.roi = RegionOfInterest()
    return out


def K_to_camera_info(K: np.ndarray, width: int, height: int, header) -> CameraInfo:
    """CameraInfo for a rectified (undistorted) pinhole image.

    Args:
        K: (3, 3) intrinsics in pixels of a width x height image.
    Returns:
        CameraInfo with K, P = [K | 0], R = identity and zero plumb_bob distortion.
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"K must be a finite (3, 3) intrinsics matrix with fx, fy > 0, got {K.tolist()}")
    msg = CameraInfo()
    msg.header = header
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = K.reshape(9)
    msg.r = np.eye(3).reshape(9)
    msg.p = np.hstack([K, np.zeros((3, 1))]).reshape(12)
    return msg
