"""sensor_msgs Image / CompressedImage <-> numpy, without cv_bridge.

Works on rclpy messages and on duck-typed ones (e.g. rosbags) alike: only the fields
height, width, encoding, is_bigendian, step and data are read. Outgoing data is always
little-endian and assigned as `bytes` (assigning an ndarray makes rclpy check every element).
"""
from __future__ import annotations

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from sa4depth_core.data.image_msg import (  # noqa: F401  (re-exported for the nodes)
    IMAGE_LAYOUTS,
    MAX_INPUT_PIXELS,
    UnsupportedImage,
    check_image_size,
    compressed_to_rgb,
    image_pixels,
    image_to_rgb,
)
from sa4depth_core.eval.trajectory_plot import colorize_depth  # noqa: F401

# Decoding is pure numpy and shared with bag reading in sa4depth_core.
_LAYOUTS = IMAGE_LAYOUTS
_FROM_RGB = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
_DEPTH_MM = ("16UC1", "mono16")
_DEPTH_ENCODINGS = ("32FC1",) + _DEPTH_MM


def decode_rgb(msg, max_pixels: int = MAX_INPUT_PIXELS) -> np.ndarray:
    """The RGB pixels of an Image (`image_to_rgb`) or a CompressedImage (jpeg or png,
    `compressed_to_rgb`), refused before anything is allocated or decoded when its header
    promises more than `max_pixels` pixels. Any unreadable message raises UnsupportedImage (an
    InputError).

    Returns:
        (H, W, 3) uint8 RGB.
    """
    if hasattr(msg, "format"):
        return compressed_to_rgb(msg, max_pixels)
    check_image_size(f"{msg.encoding} image", int(msg.width), int(msg.height), max_pixels)
    return image_to_rgb(msg)


def array_to_msg(arr: np.ndarray, header, encoding: str) -> Image:
    """Pack an array already laid out as `encoding` into a little-endian sensor_msgs/Image.

    Args:
        arr: (H, W) or (H, W, C) with the channel count and dtype the encoding names
            (e.g. bgr8: (H, W, 3) uint8 in B, G, R order; 32FC1: (H, W) float32).
        header: std_msgs/Header copied into the message.
    """
    if encoding not in _LAYOUTS:
        raise UnsupportedImage(f"cannot encode '{encoding}'; supported: {', '.join(_LAYOUTS)}")
    channels, dtype = _LAYOUTS[encoding]
    arr = np.asarray(arr)
    shape_ok = (arr.ndim == 2 and channels == 1) or (arr.ndim == 3 and arr.shape[2] == channels)
    if not shape_ok or arr.dtype != dtype:
        raise UnsupportedImage(
            f"{encoding} needs an (H, W{'' if channels == 1 else f', {channels}'}) {np.dtype(dtype).name} array, "
            f"got {arr.shape} {arr.dtype}"
        )
    arr = np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("<"))
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels * arr.itemsize
    msg.data = arr.tobytes()
    return msg


def rgb_to_compressed(img: np.ndarray, header, fmt: str = "jpeg") -> CompressedImage:
    """Encode an RGB image as a jpeg or png sensor_msgs/CompressedImage (what image_transport's
    compressed plugin publishes: format "rgb8; jpeg compressed bgr8").

    Args:
        img: (H, W, 3) uint8 RGB.
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or fmt not in ("jpeg", "png"):
        raise UnsupportedImage(f"rgb_to_compressed needs an (H, W, 3) uint8 RGB array and jpeg or png, got "
                               f"{img.shape} {img.dtype} {fmt}")
    ok, data = cv2.imencode("." + fmt, img[..., ::-1])
    if not ok:
        raise UnsupportedImage(f"OpenCV could not encode a {img.shape[1]}x{img.shape[0]} image as {fmt}")
    return CompressedImage(header=header, format=f"rgb8; {fmt} compressed bgr8", data=data.tobytes())


def rgb_to_msg(img: np.ndarray, header, encoding: str = "rgb8") -> Image:
    """Encode an RGB image as rgb8, bgr8, rgba8, bgra8 (alpha 255) or mono8 (luma).

    Args:
        img: (H, W, 3) uint8 RGB.
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise UnsupportedImage(f"rgb_to_msg needs an (H, W, 3) uint8 RGB array, got {img.shape} {img.dtype}")
    if encoding not in _FROM_RGB:
        raise UnsupportedImage(f"cannot encode an RGB image as '{encoding}'; supported: {', '.join(_FROM_RGB)}")
    if encoding == "mono8":
        return array_to_msg(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), header, encoding)
    out = img[..., ::-1] if encoding.startswith("bgr") else img
    if encoding.endswith("a8"):
        out = np.concatenate([out, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return array_to_msg(out, header, encoding)


def depth_to_msg(depth: np.ndarray, header) -> Image:
    """Metric depth as a 32FC1 Image (REP 118: metres along optical z, NaN = no reading).

    Args:
        depth: (H, W) float depth in metres.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
        raise UnsupportedImage(f"depth must be an (H, W) float array, got {depth.shape} {depth.dtype}")
    return array_to_msg(depth.astype(np.float32, copy=False), header, "32FC1")


def msg_to_depth(msg) -> np.ndarray:
    """Decode a depth Image: 32FC1 in metres, or 16UC1 / mono16 in millimetres (0 = no reading).

    Returns:
        (H, W) float32 metres; 16-bit zeros become NaN, 32FC1 values are kept as sent.
    """
    if msg.encoding not in _DEPTH_ENCODINGS:
        raise UnsupportedImage(
            f"image encoding '{msg.encoding}' is not a depth encoding; supported: {', '.join(_DEPTH_ENCODINGS)}"
        )
    channels, dtype = _LAYOUTS[msg.encoding]
    raw = image_pixels(msg, channels, dtype)[..., 0]
    if msg.encoding in _DEPTH_MM:
        depth = raw.astype(np.float32) * np.float32(0.001)
        depth[raw == 0] = np.nan
        return depth
    return raw
