"""Property tests of everything a node does to an incoming message before the network sees it:
image decoding (raw, depth, compressed) and CameraInfo validation and rescaling.

The property: a message is either refused with an InputError (a reason for the log and
/diagnostics) or gives an output of the right shape whose values are finite, NaN only where the
input marks a pixel invalid; no other exception ever escapes. Messages are duck-typed (the
codecs read fields only) so that hypothesis can also build what rclpy would refuse to hold.
"""
import math
from types import SimpleNamespace

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from std_msgs.msg import Header

from sa4depth_core.data.image_msg import COLOUR_ENCODINGS, IMAGE_LAYOUTS
from sa4depth_core.errors import InputError
from sa4depth_core.geometry import scale_intrinsics
from sa4depth_ros.camera_info import K_to_camera_info, distortion_note, frame_intrinsics
from sa4depth_ros.image_codec import compressed_to_rgb, decode_rgb, msg_to_depth

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENCODINGS = st.sampled_from(sorted(IMAGE_LAYOUTS) + ["yuv422", "bayer_rggb8", "64FC1", "", "RGB8"])
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)


def refused_or(call):
    """call()'s result, or None when it raised InputError; any other exception fails the test."""
    try:
        return call()
    except InputError as exc:
        assert str(exc), "an InputError without a reason"
        return None


@st.composite
def image_messages(draw):
    """An Image whose size, step, byte order and data length are consistent or not, at random."""
    encoding = draw(ENCODINGS)
    channels, dtype = IMAGE_LAYOUTS.get(encoding, (draw(st.integers(1, 4)), np.uint8))
    height, width = draw(st.integers(0, 7)), draw(st.integers(0, 7))
    row = width * channels * np.dtype(dtype).itemsize
    step = draw(st.one_of(st.just(row), st.integers(0, row + 9)))
    size = draw(st.one_of(st.just(step * height), st.integers(0, step * height + 9)))
    if dtype == np.float32:  # NaN, infinities and any other bit pattern a sender may put there
        values = draw(st.lists(st.floats(width=32), min_size=size // 4, max_size=size // 4))
        data = np.array(values, np.float32).tobytes() + bytes(size % 4)
    else:
        data = draw(st.binary(min_size=size, max_size=size))
    return SimpleNamespace(height=height, width=width, encoding=encoding, step=step, data=data,
                           is_bigendian=draw(st.sampled_from([0, 1, 7])))


def _consistent(msg) -> bool:
    channels, dtype = IMAGE_LAYOUTS.get(msg.encoding, (0, np.uint8))
    row = msg.width * channels * np.dtype(dtype).itemsize
    return msg.height > 0 and msg.width > 0 and row <= msg.step and len(msg.data) == msg.step * msg.height


@FUZZ
@given(image_messages())
def test_colour_decoding_refuses_or_gives_an_rgb_image(msg):
    rgb = refused_or(lambda: decode_rgb(msg))
    if rgb is None:
        assert not (msg.encoding in COLOUR_ENCODINGS and _consistent(msg)), "a readable image was refused"
        return
    assert rgb.shape == (msg.height, msg.width, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous


@FUZZ
@given(image_messages())
def test_depth_decoding_refuses_or_marks_only_invalid_pixels_nan(msg):
    depth = refused_or(lambda: msg_to_depth(msg))
    if depth is None:
        assert not (msg.encoding in ("32FC1", "16UC1", "mono16") and _consistent(msg)), "a depth image was refused"
        return
    assert depth.shape == (msg.height, msg.width) and depth.dtype == np.float32
    wire = np.dtype(IMAGE_LAYOUTS[msg.encoding][1]).newbyteorder(">" if msg.is_bigendian else "<")
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, :msg.width * wire.itemsize]
    sent = np.ascontiguousarray(rows).view(wire).reshape(msg.height, msg.width)
    if msg.encoding == "32FC1":  # kept as sent, NaN exactly where the sender put NaN
        np.testing.assert_array_equal(depth, sent.astype(np.float32))
    else:  # millimetres; 0 = no reading is the only NaN
        assert np.array_equal(np.isnan(depth), sent == 0) and np.isfinite(depth[sent != 0]).all()


@st.composite
def compressed_messages(draw):
    """Random bytes, or a real PNG/JPEG of a random small image in any channel count and depth."""
    fmt = draw(st.sampled_from(["png", "jpeg", "rgb8; png compressed bgr8", "16UC1; compressedDepth", ""]))
    if draw(st.booleans()):
        return SimpleNamespace(format=fmt, data=draw(st.binary(max_size=64)))
    h, w, channels = draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.sampled_from([1, 3, 4]))
    dtype = draw(st.sampled_from([np.uint8, np.uint16]))
    pixels = np.array(draw(st.lists(st.integers(0, np.iinfo(dtype).max), min_size=h * w * channels,
                                    max_size=h * w * channels)), dtype).reshape(h, w, channels)
    ok, data = cv2.imencode(".png" if dtype == np.uint16 or draw(st.booleans()) else ".jpg", pixels)
    assert ok
    return SimpleNamespace(format=fmt, data=data.tobytes(), shape=(h, w))


@FUZZ
@given(compressed_messages())
def test_compressed_decoding_refuses_or_gives_an_rgb_image(msg):
    rgb = refused_or(lambda: compressed_to_rgb(msg))
    if rgb is not None:
        assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8
        assert rgb.shape[:2] == getattr(msg, "shape", rgb.shape[:2])


def _array(draw, size: int, base):
    """`size` numbers: the base values, or a copy with NaN/inf/any float at random places."""
    values = np.resize(np.asarray(base, np.float64), size)
    for index in draw(st.lists(st.integers(0, max(size - 1, 0)), max_size=3)) if size else []:
        values[index] = draw(FLOATS)
    return values


@st.composite
def camera_infos(draw):
    """A CameraInfo of a 640x480 pinhole camera, with any of its fields broken at random."""
    K = [500.0, 0, 319.5, 0, 400.0, 239.5, 0, 0, 1]
    P = draw(st.sampled_from([np.zeros(12), np.array([500.0, 0, 319.5, 0, 0, 400.0, 239.5, 0, 0, 0, 1, 0])]))
    model = draw(st.sampled_from(["plumb_bob", "rational_polynomial", "equidistant", "", "kannala_brandt"]))
    d_size = draw(st.sampled_from([0, 4, 5, 8, 14, 3]))
    d_base = draw(st.sampled_from([0.0, 0.01]))
    roi = SimpleNamespace(x_offset=draw(st.sampled_from([0, 8])), y_offset=0, width=draw(st.sampled_from([0, 640, 320])),
                          height=draw(st.sampled_from([0, 480, 240])), do_rectify=False)
    return SimpleNamespace(
        header=Header(frame_id="camera"), width=draw(st.sampled_from([640, 0, 320])), height=480,
        k=_array(draw, draw(st.sampled_from([9, 9, 9, 6])), K), d=_array(draw, d_size, [d_base]),
        r=_array(draw, draw(st.sampled_from([9, 9, 0])), np.eye(3).reshape(9)),
        p=_array(draw, draw(st.sampled_from([12, 12, 9])), P), distortion_model=model,
        binning_x=draw(st.sampled_from([0, 1, 2])), binning_y=draw(st.sampled_from([0, 1])), roi=roi)


@FUZZ
@given(camera_infos(), st.sampled_from([(64, 192), (480, 640), (1, 1)]))
def test_camera_info_is_refused_or_passed_on_finite(info, out_hw):
    K = refused_or(lambda: frame_intrinsics(info, (480, 640), None))
    if K is None:
        return
    assert K.shape == (3, 3) and np.isfinite(K).all() and K[0, 0] > 0 and K[1, 1] > 0
    assert isinstance(distortion_note(info), str)
    # depth/camera_info of a checked message: its intrinsics at the network size
    out = K_to_camera_info(scale_intrinsics(K, out_hw[1] / 640, out_hw[0] / 480), out_hw[1], out_hw[0], info.header)
    assert (out.height, out.width) == out_hw
    for field in ("k", "d", "r", "p"):
        assert all(map(math.isfinite, getattr(out, field))), field
