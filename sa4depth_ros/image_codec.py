"""sensor_msgs Image / CompressedImage <-> numpy, without cv_bridge.

Works on rclpy messages and on duck-typed ones (e.g. rosbags) alike: only the fields
height, width, encoding, is_bigendian, step and data are read. Outgoing data is always
little-endian and assigned as `bytes` (assigning an ndarray makes rclpy check every element).
"""
from __future__ import annotations

import cv2
import numpy as np
from sensor_msgs.msg import Image

from sa4depth_core.errors import InputError


class UnsupportedImage(InputError):
    """An image message whose encoding, size or data this package cannot read."""


# encoding -> (channels, dtype) of the bytes on the wire
_LAYOUTS = {
    "rgb8": (3, np.uint8),
    "bgr8": (3, np.uint8),
    "rgba8": (4, np.uint8),
    "bgra8": (4, np.uint8),
    "mono8": (1, np.uint8),
    "8UC1": (1, np.uint8),
    "8UC3": (3, np.uint8),
    "8UC4": (4, np.uint8),
    "mono16": (1, np.uint16),
    "16UC1": (1, np.uint16),
    "32FC1": (1, np.float32),
}
# colour input: encoding -> channel indices giving R, G, B. Untyped 8UCn follow OpenCV's BGR order.
_TO_RGB = {
    "rgb8": (0, 1, 2),
    "rgba8": (0, 1, 2),
    "bgr8": (2, 1, 0),
    "bgra8": (2, 1, 0),
    "8UC3": (2, 1, 0),
    "8UC4": (2, 1, 0),
    "mono8": (0, 0, 0),
    "8UC1": (0, 0, 0),
}
_FROM_RGB = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
_DEPTH_MM = ("16UC1", "mono16")
_DEPTH_ENCODINGS = ("32FC1",) + _DEPTH_MM


def _pixels(msg, channels: int, dtype) -> np.ndarray:
    """(H, W, C) native-endian copy of the pixels, skipping the row padding given by `step`."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    dtype = np.dtype(dtype)
    row_bytes = w * channels * dtype.itemsize
    if h <= 0 or w <= 0:
        raise UnsupportedImage(f"{msg.encoding} image has an empty size {w}x{h}")
    if step < row_bytes:
        raise UnsupportedImage(
            f"{msg.encoding} image {w}x{h}: step {step} is smaller than the {row_bytes} bytes a row needs"
        )
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size != step * h:
        raise UnsupportedImage(
            f"{msg.encoding} image {w}x{h}: data has {buf.size} bytes, expected step*height = {step}*{h} = {step * h}"
        )
    rows = np.ascontiguousarray(buf.reshape(h, step)[:, :row_bytes])
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<") if dtype.itemsize > 1 else dtype
    return rows.view(wire).reshape(h, w, channels).astype(dtype)


def image_to_rgb(msg) -> np.ndarray:
    """Decode a colour or grey sensor_msgs/Image.

    Accepts rgb8, bgr8, rgba8, bgra8, mono8, 8UC1 (as mono8), 8UC3 (as bgr8), 8UC4 (as bgra8);
    alpha is dropped and grey is replicated. 16-bit and float images are refused: they are depth.

    Returns:
        (H, W, 3) uint8 RGB, C-contiguous.
    """
    order = _TO_RGB.get(msg.encoding)
    if order is None:
        raise UnsupportedImage(
            f"image encoding '{msg.encoding}' is not supported as colour input; "
            f"supported: {', '.join(_TO_RGB)}"
        )
    channels, dtype = _LAYOUTS[msg.encoding]
    return np.ascontiguousarray(_pixels(msg, channels, dtype)[..., list(order)])


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
    raw = _pixels(msg, channels, dtype)[..., 0]
    if msg.encoding in _DEPTH_MM:
        depth = raw.astype(np.float32) * np.float32(0.001)
        depth[raw == 0] = np.nan
        return depth
    return raw


def colorize_depth(
    depth: np.ndarray,
    min_depth: float | None = None,
    max_depth: float | None = None,
    percentiles: tuple[float, float] = (2.0, 98.0),
    colormap: int = cv2.COLORMAP_MAGMA,
) -> np.ndarray:
    """False-colour depth for people: near is bright, invalid (NaN, inf, <= 0) is black.

    Colours follow inverse depth, which spreads the near range where detail matters. Bounds not
    given are taken from the given percentiles of the valid inverse depths of this image.

    Args:
        depth: (H, W) metres.
    Returns:
        (H, W, 3) uint8 BGR (publish with `array_to_msg(..., "bgr8")`).
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise InputError(f"depth must be an (H, W) array, got shape {depth.shape}")
    for name, value in (("min_depth", min_depth), ("max_depth", max_depth)):
        if value is not None and not value > 0:
            raise InputError(f"{name} must be > 0, got {value}")
    if min_depth is not None and max_depth is not None and min_depth >= max_depth:
        raise InputError(f"min_depth {min_depth} must be smaller than max_depth {max_depth}")
    lo_pct, hi_pct = percentiles
    if not 0 <= lo_pct < hi_pct <= 100:
        raise InputError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")

    out = np.zeros(depth.shape + (3,), np.uint8)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
    if not valid.any():
        return out
    inv = 1.0 / depth[valid]
    inv_lo = 1.0 / max_depth if max_depth is not None else np.percentile(inv, lo_pct)
    inv_hi = 1.0 / min_depth if min_depth is not None else np.percentile(inv, hi_pct)
    level = np.clip((inv - inv_lo) / max(inv_hi - inv_lo, 1e-12), 0.0, 1.0)
    grey = np.zeros(depth.shape, np.uint8)
    grey[valid] = np.round(level * 255).astype(np.uint8)
    out[:] = cv2.applyColorMap(grey, colormap)
    out[~valid] = 0
    return out


def compressed_to_rgb(msg) -> np.ndarray:
    """Decode a jpeg or png sensor_msgs/CompressedImage (8-bit grey, colour or colour + alpha).

    Returns:
        (H, W, 3) uint8 RGB.
    """
    fmt = str(msg.format)
    if "compresseddepth" in fmt.lower():
        raise UnsupportedImage(
            f"CompressedImage format '{fmt}' is compressedDepth, not a colour image; subscribe to the raw depth topic"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise UnsupportedImage(
            f"could not decode CompressedImage with format '{fmt}' ({data.size} bytes); supported: jpeg, png"
        )
    if img.dtype != np.uint8:
        raise UnsupportedImage(f"CompressedImage format '{fmt}' holds {img.dtype} pixels; colour input must be 8-bit")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
