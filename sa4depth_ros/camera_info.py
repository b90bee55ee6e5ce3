"""sensor_msgs/CameraInfo -> the pinhole intrinsics of the image it describes, by the message's
definition; lens distortion removed with OpenCV; the CameraInfo of a pinhole image.

- K and P describe the full-resolution sensor: binning divides them and a region of interest
  shifts them (`frame_intrinsics`), so a binned or cropped image gets its own intrinsics and size.
- A rectified image (image_proc's image_rect) is described by P: D and R were applied to make
  it. A raw image is described by K and D: `PinholeFrames` undistorts it (OpenCV remap tables,
  kept per camera) or refuses it. Undistortion keeps K and leaves R out, so the pinhole image
  stays in the camera's own frame (the image's frame_id).
- Every array is checked before any of it is used (`check_camera_info`): non-finite numbers,
  wrong lengths, a P that is no projection or a region outside the sensor refuse the message; the
  intrinsics an image ends up with must be a camera's for its size (the core's
  `input_checks.check_intrinsics`), and OpenCV refusing a lens refuses the frame (InputError).
"""
from __future__ import annotations

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo

from sa4depth_core.errors import InputError
from sa4depth_core.geometry import scale_intrinsics
from sa4depth_core.input_checks import check_intrinsics, check_pinhole


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
    return check_pinhole(k.reshape(3, 3), f"CameraInfo K ({_frame(msg)})")


# distortion_model -> accepted lengths of D (an empty D means "no distortion given"). OpenCV
# undistorts all three: plumb_bob and rational_polynomial with cv2, equidistant with cv2.fisheye.
DISTORTION_LENGTHS = {"plumb_bob": (5,), "rational_polynomial": (8, 12, 14), "equidistant": (4,)}


def _finite_array(msg, field: str, size: int) -> np.ndarray:
    values = np.asarray(getattr(msg, field), dtype=np.float64).reshape(-1)
    if values.size != size:
        raise InputError(f"CameraInfo {field.upper()} must have {size} values, got {values.size} ({_frame(msg)})")
    if not np.isfinite(values).all():
        raise InputError(f"CameraInfo {field.upper()} has non-finite values {values.tolist()} ({_frame(msg)})")
    return values


def _distortion(msg) -> np.ndarray:
    """D of a CameraInfo, (N,) finite, of a length its model allows when the model is known."""
    model = str(msg.distortion_model)
    D = np.asarray(msg.d, dtype=np.float64).reshape(-1)
    if not np.isfinite(D).all():
        raise InputError(f"CameraInfo D has non-finite values {D.tolist()} ({_frame(msg)})")
    lengths = DISTORTION_LENGTHS.get(model)
    if np.any(D) and lengths is not None and D.size not in lengths:
        raise InputError(f"CameraInfo D of model '{model}' must have {' or '.join(map(str, lengths))} values, "
                         f"got {D.size} ({_frame(msg)})")
    return D


def lens_distortion(msg) -> tuple[str, np.ndarray] | None:
    """(model, D) of a checked CameraInfo whose D is not zero, None when it is (pinhole whatever
    the model's name). A non-zero D of a model OpenCV cannot undo is refused."""
    D = _distortion(msg)
    if not np.any(D):
        return None
    model = str(msg.distortion_model)
    if model not in DISTORTION_LENGTHS:
        raise InputError(f"CameraInfo distortion model '{model}' is unknown and D {D.tolist()} is not zero; "
                         f"rectify the images first (e.g. image_proc) and set rectified_images true ({_frame(msg)})")
    return model, D


def _binning(msg) -> tuple[int, int]:
    # 0 means 1 by the message's definition
    return max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)


def _window(msg) -> tuple[int, int, int, int]:
    """(x_offset, y_offset, width, height) of the region of the sensor the image shows."""
    roi = msg.roi
    x, y, w, h = int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)
    if (x, y, w, h) == (0, 0, 0, 0):  # full frame by the message's definition
        return 0, 0, int(msg.width), int(msg.height)
    if w <= 0 or h <= 0 or x + w > msg.width or y + h > msg.height:
        raise InputError(f"CameraInfo roi ({x}, {y}, {w}x{h}) is not a region of the {msg.width}x{msg.height} "
                         f"sensor ({_frame(msg)})")
    return x, y, w, h


def image_size(msg) -> tuple[int, int]:
    """(width, height) of the images a CameraInfo describes: its region, binned; InputError when
    the region is not on the sensor or binning leaves no pixel of it."""
    _, _, w, h = _window(msg)
    bx, by = _binning(msg)
    if w // bx < 1 or h // by < 1:
        raise InputError(f"CameraInfo binning {msg.binning_x}x{msg.binning_y} leaves no pixel of the {w}x{h} "
                         f"region ({_frame(msg)})")
    return w // bx, h // by


def check_camera_info(msg) -> np.ndarray:
    """Validate every field of a CameraInfo that the node uses or passes on.

    Checks the sensor size, K (pinhole), D (finite, length for its model), R (9 finite values),
    P (12 finite values; all zero = not rectified, else a projection with fx', fy' > 0 and last
    row 0 0 1 0), and the region of interest and binning (a region inside the sensor, at least a
    pixel after binning).

    Returns:
        (3, 3) float64 K.
    """
    if int(msg.width) <= 0 or int(msg.height) <= 0:
        raise InputError(f"CameraInfo has no image size ({msg.width}x{msg.height}, {_frame(msg)})")
    K = camera_info_to_K(msg)
    _distortion(msg)
    _finite_array(msg, "r", 9)
    P = _finite_array(msg, "p", 12).reshape(3, 4)
    if np.any(P) and not (P[0, 0] > 0 and P[1, 1] > 0 and np.allclose(P[2], (0.0, 0.0, 1.0, 0.0))):
        raise InputError(f"CameraInfo P {P.tolist()} is not a projection matrix (needs fx', fy' > 0 and last row "
                         f"0 0 1 0; all zero if not rectified; {_frame(msg)})")
    image_size(msg)
    return K


def _sensor_matrix(msg, K: np.ndarray, rectified: bool) -> tuple[np.ndarray, str]:
    """(3,3) full-sensor intrinsics of the image kind and the field they come from: P's for
    rectified images (K's when P is all zero and there is no distortion), K's for raw ones."""
    if not rectified:
        return K, "K"
    P = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
    if np.any(P):
        return P[:, :3].copy(), "P"
    if np.any(np.asarray(msg.d, dtype=np.float64)):
        raise InputError(f"rectified_images is true but CameraInfo P is all zero and D is not: are these raw "
                         f"images? Set rectified_images false ({_frame(msg)})")
    return K, "K"


def frame_intrinsics(info, image_hw: tuple[int, int], fallback: np.ndarray, rectified: bool = True) -> np.ndarray:
    """(3,3) intrinsics of an image of size `image_hw` (H, W): from the CameraInfo paired with it
    (P for a rectified image, K for a raw one; binning and region applied), fully checked and
    checked to be for that size, or `fallback` (the nodes' intrinsics parameter) when `info` is
    None; either way intrinsics a camera can have for that size (check_intrinsics). Raises
    InputError before any work is done on a frame that could not be published whole."""
    height, width = image_hw
    if info is None:
        return check_intrinsics(fallback, width, height, "the intrinsics parameter")
    K = check_camera_info(info)
    size = image_size(info)
    if size != (image_hw[1], image_hw[0]):
        window = (int(info.width), int(info.height)) != size
        raise InputError(f"CameraInfo is for {size[0]}x{size[1]} images"
                         + (f" (sensor {info.width}x{info.height}, binning {info.binning_x}x{info.binning_y}, roi "
                            f"{info.roi.width}x{info.roi.height})" if window else "")
                         + f" but the image is {image_hw[1]}x{image_hw[0]} (topic pairing or a camera size change?)")
    if rectified and (info.roi.width or info.roi.height) and info.roi.do_rectify:
        raise InputError(f"CameraInfo roi with do_rectify: the rectified region is not computed here; publish "
                         f"full-frame rectified images ({_frame(info)})")
    x, y, _, _ = _window(info)
    bx, by = _binning(info)
    shifted, field = _sensor_matrix(info, K, rectified)
    shifted[0, 2] -= x
    shifted[1, 2] -= y
    return check_intrinsics(scale_intrinsics(shifted, 1.0 / bx, 1.0 / by), width, height,
                            f"CameraInfo {field} ({_frame(info)}; binning and roi applied)")


def distortion_note(msg, rectified: bool = True) -> str:
    """'' or a sentence saying that a checked CameraInfo's non-zero D is not applied to images
    taken as rectified."""
    if not rectified or not np.any(np.asarray(msg.d, dtype=np.float64)):
        return ""
    return (f"CameraInfo of {_frame(msg)} has {msg.distortion_model} distortion {list(np.round(msg.d, 6))}: the "
            "images are taken as rectified (rectified_images true), so P is used and D is not applied; for raw "
            "images set rectified_images false")


def undistortion_maps(K: np.ndarray, model: str, D: np.ndarray, size: tuple[int, int]) -> tuple:
    """OpenCV remap tables (two (h, w) float32 arrays) turning a `size` (w, h) image with lens
    distortion (model, D) and intrinsics K (3,3) into a pinhole image with the same K; InputError
    when OpenCV refuses the lens (e.g. "newCameraMatrix*R is singular"): the CameraInfo, not the
    node, is at fault, so the frame is rejected rather than failed."""
    try:
        if model == "equidistant":
            return cv2.fisheye.initUndistortRectifyMap(K, D, np.eye(3), K, size, cv2.CV_32FC1)
        return cv2.initUndistortRectifyMap(K, D, None, K, size, cv2.CV_32FC1)
    except cv2.error as exc:
        raise InputError(f"OpenCV cannot undo {model} distortion D {np.asarray(D).tolist()} with K "
                         f"{np.asarray(K).tolist()}: {str(exc).strip().splitlines()[-1]}") from None


class PinholeFrames:
    """Images made pinhole with their intrinsics, the way the nodes' parameters say.

    rectified: images are rectified (P). Else raw (K): a non-zero D is undone with OpenCV when
    `undistort`, otherwise the frame is refused. The remap tables of the last camera are kept.
    """

    def __init__(self, rectified: bool, undistort: bool):
        self.rectified, self.undistort = rectified, undistort
        self._key, self._maps = None, None

    def __call__(self, rgb: np.ndarray, info, fallback: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pinhole (H,W,3) image, its (3,3) K) of an (H,W,3) image and its CameraInfo (or None:
        the `fallback` K, image unchanged). InputError when the frame cannot be used."""
        K = frame_intrinsics(info, rgb.shape[:2], fallback, self.rectified)
        distortion = None if info is None or self.rectified else lens_distortion(info)
        if distortion is None:
            return rgb, K
        if not self.undistort:
            raise InputError(f"raw image with {distortion[0]} distortion (D {distortion[1].tolist()}) refused: set "
                             "undistort true, or publish rectified images (image_proc) with rectified_images true")
        size = (rgb.shape[1], rgb.shape[0])
        key = (distortion[0], distortion[1].tobytes(), K.tobytes(), size)
        if key != self._key:
            self._maps, self._key = undistortion_maps(K, *distortion, size), key
        return cv2.remap(rgb, *self._maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT), K


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
