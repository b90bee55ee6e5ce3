"""sensor_msgs/Image and CompressedImage -> numpy without ROS: works on any object with the fields.

Bags read with rosbags and live rclpy messages both pass through here: only height, width,
encoding, is_bigendian, step and data (Image) or format and data (CompressedImage) are read.
`sa4depth_ros.image_codec` adds the encoders that need the rclpy message classes.
"""
from __future__ import annotations

import cv2
import numpy as np

from sa4depth_core.errors import InputError


class UnsupportedImage(InputError):
    """An image message whose encoding, size or data this package cannot read."""


# encoding -> (channels, dtype) of the bytes on the wire
IMAGE_LAYOUTS = {
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
COLOUR_ENCODINGS = {
    "rgb8": (0, 1, 2),
    "rgba8": (0, 1, 2),
    "bgr8": (2, 1, 0),
    "bgra8": (2, 1, 0),
    "8UC3": (2, 1, 0),
    "8UC4": (2, 1, 0),
    "mono8": (0, 0, 0),
    "8UC1": (0, 0, 0),
}


def image_pixels(msg, channels: int, dtype) -> np.ndarray:
    """(H, W, C) native-endian copy of an Image's pixels, skipping the row padding given by `step`."""
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
    order = COLOUR_ENCODINGS.get(msg.encoding)
    if order is None:
        raise UnsupportedImage(
            f"image encoding '{msg.encoding}' is not supported as colour input; "
            f"supported: {', '.join(COLOUR_ENCODINGS)}"
        )
    channels, dtype = IMAGE_LAYOUTS[msg.encoding]
    return np.ascontiguousarray(image_pixels(msg, channels, dtype)[..., list(order)])


# Largest input image decoded: 8K UHD (7680x4320) fits. A frame is resized to the network's size
# anyway; beyond this a malformed or hostile header would only make the reader allocate gigabytes.
MAX_INPUT_PIXELS = 40_000_000
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (C4, C8 and CC are other segments that share the range)
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def check_image_size(kind: str, width: int, height: int, max_pixels: int = MAX_INPUT_PIXELS) -> None:
    """Refuse (UnsupportedImage) an image of `kind` (named in the message) whose size, read from
    its header before anything is allocated or decoded, is more than `max_pixels` pixels."""
    if width * height > max_pixels:
        # exact counts: 8001x5000 is 40 005 000 pixels, which "40.0 megapixels, more than 40" hid
        raise UnsupportedImage(f"{kind} {width}x{height} has {width * height:,} pixels, more than the {max_pixels:,} "
                               f"({max_pixels / 1e6:g} megapixels) accepted; publish a smaller image")


def compressed_size(data) -> tuple[int, int] | None:
    """(width, height) that a png or jpeg file declares in its header, read without decoding;
    None when `data` (bytes or a byte memoryview) is neither or its header is cut short."""
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                return None
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def compressed_to_rgb(msg, max_pixels: int = MAX_INPUT_PIXELS) -> np.ndarray:
    """Decode a jpeg or png sensor_msgs/CompressedImage (8-bit grey, colour or colour + alpha).

    The size its header declares is checked against `max_pixels` before anything is decoded: a
    few megabytes of png can declare a gigapixel image.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    fmt = str(msg.format)
    if "compresseddepth" in fmt.lower():
        raise UnsupportedImage(
            f"CompressedImage format '{fmt}' is compressedDepth, not a colour image; use the raw depth topic"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    size = compressed_size(memoryview(data))  # a view: the frame's bytes are not copied
    if size is None:
        raise UnsupportedImage(
            f"could not decode CompressedImage with format '{fmt}' ({data.size} bytes): neither png nor jpeg, "
            "or its header is cut short")
    check_image_size(f"CompressedImage ({fmt})", *size, max_pixels)
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
