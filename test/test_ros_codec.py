"""Message <-> numpy adapters of sa4depth_ros, on hand-built messages (no DDS)."""
import math

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from sa4depth_core.errors import InputError
from sa4depth_core.data.image_msg import compressed_size
from sa4depth_core.pointcloud import depth_to_points
from sa4depth_ros.camera_info import K_to_camera_info, PinholeFrames, camera_info_to_K, frame_intrinsics
from sa4depth_ros.cloud import depth_to_cloud_msg
from sa4depth_ros.image_codec import (
    UnsupportedImage,
    array_to_msg,
    colorize_depth,
    compressed_to_rgb,
    decode_rgb,
    depth_to_msg,
    image_to_rgb,
    msg_to_depth,
    rgb_to_compressed,
    rgb_to_msg,
)
from sa4depth_ros.qos import qos_from_string, reliable_qos, sensor_qos
from sa4depth_ros.pose_msgs import pose_to_transform_stamped


def _header(frame="cam_optical", sec=12, nanosec=345):
    return Header(frame_id=frame, stamp=Time(sec=sec, nanosec=nanosec))


def _raw_image(encoding, rows, width, step, bigendian=0):
    """Image from explicit row byte strings (each padded to `step` with 0xEE)."""
    msg = Image(height=len(rows), width=width, encoding=encoding, is_bigendian=bigendian, step=step)
    msg.data = b"".join(r + b"\xee" * (step - len(r)) for r in rows)
    return msg


RGB = np.array(
    [[[255, 0, 0], [0, 255, 0], [0, 0, 255]],
     [[10, 20, 30], [200, 100, 50], [1, 2, 3]]], dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_round_trip(encoding):
    msg = rgb_to_msg(RGB, _header(), encoding)
    channels = 4 if encoding.endswith("a8") else 3
    assert (msg.height, msg.width, msg.step, msg.is_bigendian) == (2, 3, 3 * channels, 0)
    assert msg.header.frame_id == "cam_optical" and msg.header.stamp.nanosec == 345
    first = bytes(msg.data[:channels])
    expected = {"rgb8": b"\xff\x00\x00", "bgr8": b"\x00\x00\xff",
                "rgba8": b"\xff\x00\x00\xff", "bgra8": b"\x00\x00\xff\xff"}[encoding]
    assert first == expected
    np.testing.assert_array_equal(image_to_rgb(msg), RGB)


def test_mono8_encode_is_luma():
    msg = rgb_to_msg(RGB, _header(), "mono8")
    # BT.601 luma as cv2 computes it, rounded
    expected = np.round(0.299 * RGB[..., 0] + 0.587 * RGB[..., 1] + 0.114 * RGB[..., 2])
    assert msg.step == 3
    got = np.frombuffer(bytes(msg.data), np.uint8).reshape(2, 3)
    np.testing.assert_allclose(got, expected, atol=1)


@pytest.mark.parametrize("encoding,order", [("rgb8", (0, 1, 2)), ("bgr8", (2, 1, 0)), ("8UC3", (2, 1, 0))])
def test_padded_step_three_channel(encoding, order):
    rows = [RGB[r][:, list(order)].tobytes() for r in range(2)]
    msg = _raw_image(encoding, rows, width=3, step=9 + 7)
    np.testing.assert_array_equal(image_to_rgb(msg), RGB)


@pytest.mark.parametrize("encoding", ["rgba8", "bgra8", "8UC4"])
def test_padded_step_four_channel(encoding):
    order = [0, 1, 2] if encoding == "rgba8" else [2, 1, 0]
    rows = [np.concatenate([RGB[r][:, order], np.full((3, 1), 77, np.uint8)], 1).tobytes() for r in range(2)]
    np.testing.assert_array_equal(image_to_rgb(_raw_image(encoding, rows, 3, 16)), RGB)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_grey_is_replicated(encoding):
    msg = _raw_image(encoding, [bytes([0, 50, 255]), bytes([7, 8, 9])], width=3, step=4)
    out = image_to_rgb(msg)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], [[0, 50, 255], [7, 8, 9]])


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1", "yuv422", "bayer_rggb8"])
def test_unsupported_colour_encoding(encoding):
    msg = _raw_image(encoding, [b"\x00" * 12], width=3, step=12)
    with pytest.raises(UnsupportedImage) as err:
        image_to_rgb(msg)
    text = str(err.value)
    assert f"'{encoding}'" in text and "rgb8" in text and "bgr8" in text
    assert isinstance(err.value, ValueError)


def test_data_length_and_step_errors():
    short = _raw_image("rgb8", [b"\x00" * 9], width=3, step=9)
    short.height = 2
    with pytest.raises(UnsupportedImage, match="data has 9 bytes, expected step\\*height = 9\\*2 = 18"):
        image_to_rgb(short)
    narrow = _raw_image("rgb8", [b"\x00" * 8], width=3, step=8)
    with pytest.raises(UnsupportedImage, match="step 8 is smaller than the 9 bytes"):
        image_to_rgb(narrow)


def test_depth_32fc1_round_trip_keeps_nan():
    depth = np.array([[1.5, np.nan, 3.0], [0.25, np.inf, 80.0]], np.float32)
    msg = depth_to_msg(depth, _header())
    assert (msg.encoding, msg.step, msg.is_bigendian, msg.width, msg.height) == ("32FC1", 12, 0, 3, 2)
    assert bytes(msg.data) == depth.astype("<f4").tobytes()
    back = msg_to_depth(msg)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, depth)


def test_depth_32fc1_padded_and_big_endian():
    vals = np.array([[1.0, 2.0], [3.5, np.nan]])
    rows = [vals[r].astype(">f4").tobytes() for r in range(2)]
    msg = _raw_image("32FC1", rows, width=2, step=12, bigendian=1)
    np.testing.assert_array_equal(msg_to_depth(msg), vals.astype(np.float32))


@pytest.mark.parametrize("bigendian", [0, 1])
def test_depth_16uc1_millimetres(bigendian):
    mm = np.array([[0, 1000, 2500], [65535, 1, 0]])
    rows = [mm[r].astype(">u2" if bigendian else "<u2").tobytes() for r in range(2)]
    msg = _raw_image("16UC1", rows, width=3, step=8, bigendian=bigendian)
    expected = np.array([[np.nan, 1.0, 2.5], [65.535, 0.001, np.nan]], np.float32)
    np.testing.assert_allclose(msg_to_depth(msg), expected, rtol=1e-6)


def test_depth_rejects_colour():
    with pytest.raises(UnsupportedImage, match="'rgb8' is not a depth encoding; supported: 32FC1, 16UC1, mono16"):
        msg_to_depth(rgb_to_msg(RGB, _header()))


def test_array_to_msg_checks_layout():
    with pytest.raises(UnsupportedImage, match="bgr8 needs an \\(H, W, 3\\) uint8 array"):
        array_to_msg(np.zeros((2, 2), np.uint8), _header(), "bgr8")


def test_colorize_depth():
    depth = np.array([[1.0, 2.0, 4.0], [8.0, np.nan, 0.0]], np.float32)
    out = colorize_depth(depth, min_depth=1.0, max_depth=8.0)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[1, 1], 0)
    np.testing.assert_array_equal(out[1, 2], 0)
    # inverse depth 1, 1/2, 1/4, 1/8 mapped over [1/8, 1] -> levels 255, 109, 36, 0 on the colour map
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[None], cv2.COLORMAP_MAGMA)[0]
    for (r, c), level in {(0, 0): 255, (0, 1): 109, (0, 2): 36, (1, 0): 0}.items():
        np.testing.assert_array_equal(out[r, c], lut[level])
    assert colorize_depth(depth).shape == (2, 3, 3)  # percentile bounds
    np.testing.assert_array_equal(colorize_depth(np.full((2, 2), np.nan)), 0)


def test_compressed_png_and_jpeg():
    img = np.random.default_rng(0).integers(0, 255, (8, 10, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", img[..., ::-1])
    assert ok
    msg = CompressedImage(format="png")
    msg.data = png.tobytes()
    np.testing.assert_array_equal(compressed_to_rgb(msg), img)

    flat = np.zeros((16, 16, 3), np.uint8)
    flat[..., 0] = 200  # pure-ish red survives jpeg
    ok, jpg = cv2.imencode(".jpg", flat[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    msg = CompressedImage(format="rgb8; jpeg compressed bgr8")
    msg.data = jpg.tobytes()
    out = compressed_to_rgb(msg)
    assert out.shape == (16, 16, 3)
    assert abs(int(out[..., 0].mean()) - 200) <= 3 and out[..., 2].mean() < 5

    bad = CompressedImage(format="jpeg")
    bad.data = b"not an image"
    with pytest.raises(UnsupportedImage, match="could not decode CompressedImage with format 'jpeg'"):
        compressed_to_rgb(bad)


def _info(k, width=640, height=480, p=None):
    msg = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    msg.header = _header()
    msg.k = np.asarray(k, np.float64).reshape(9)
    msg.d = [0.1, -0.2, 0.001, 0.002, 0.03]
    if p is not None:
        msg.p = np.asarray(p, np.float64).reshape(12)
    return msg


def test_camera_info_to_K_validates():
    K = [[500.0, 0, 319.5], [0, 400.0, 239.5], [0, 0, 1]]
    np.testing.assert_array_equal(camera_info_to_K(_info(K)), K)
    uncalibrated = "CameraInfo K is all zeros: camera not calibrated \\(frame_id 'cam_optical'\\)"
    with pytest.raises(InputError, match=uncalibrated):
        camera_info_to_K(_info(np.zeros(9)))
    with pytest.raises(InputError, match="not a pinhole matrix"):
        camera_info_to_K(_info([[-1.0, 0, 1], [0, 1, 1], [0, 0, 1]]))


K_TEST = [[500.0, 0, 319.5], [0, 400.0, 239.5], [0, 0, 1]]
P_TEST = [[480.0, 0, 322.0, -24.0], [0, 480.0, 236.0, 0], [0, 0, 1, 0]]


def test_rectified_images_are_read_with_P_and_raw_ones_with_K():
    msg = _info(K_TEST, p=P_TEST)
    np.testing.assert_array_equal(frame_intrinsics(msg, (480, 640), None, rectified=True), np.array(P_TEST)[:, :3])
    np.testing.assert_array_equal(frame_intrinsics(msg, (480, 640), None, rectified=False), K_TEST)
    # not rectified (P all zero): K describes the image when there is no distortion to undo
    msg = _info(K_TEST)
    msg.d = [0.0] * 5
    np.testing.assert_array_equal(frame_intrinsics(msg, (480, 640), None, rectified=True), K_TEST)
    msg.d = [0.1, 0, 0, 0, 0]
    with pytest.raises(InputError, match="P is all zero and D is not: are these raw images"):
        frame_intrinsics(msg, (480, 640), None, rectified=True)


@pytest.mark.parametrize("field, index, value, reason", [
    ("p", 0, math.nan, "P has non-finite"), ("p", 11, math.inf, "P has non-finite"),
    ("r", 4, math.nan, "R has non-finite"), ("d", 2, math.nan, "D has non-finite"),
    ("d", 0, -math.inf, "D has non-finite"),
])
def test_camera_info_arrays_must_be_finite(field, index, value, reason):
    msg = _info(K_TEST, p=np.hstack([K_TEST, np.zeros((3, 1))]))
    values = np.array(getattr(msg, field))
    values[index] = value
    setattr(msg, field, values)
    for rectified in (True, False):
        with pytest.raises(InputError, match=reason):
            frame_intrinsics(msg, (480, 640), None, rectified)


@pytest.mark.parametrize("model, d, reason", [
    ("plumb_bob", [0.1, 0.2], "model 'plumb_bob' must have 5 values, got 2"),
    ("rational_polynomial", [0.1] * 5, "must have 8 or 12 or 14 values"),
])
def test_a_distortion_of_the_wrong_length_is_refused_in_either_mode(model, d, reason):
    msg = _info(K_TEST, p=P_TEST)
    msg.distortion_model, msg.d = model, d
    for rectified in (True, False):
        with pytest.raises(InputError, match=reason):
            frame_intrinsics(msg, (480, 640), None, rectified)


@pytest.mark.parametrize("model, d", [("kannala_brandt", [0.1, 0.0, 0.0, 0.0]), ("", [0.1])])
def test_an_unknown_distortion_is_refused_on_raw_images_only(model, d):
    msg = _info(K_TEST, p=P_TEST)
    msg.distortion_model, msg.d = model, d
    image = np.zeros((480, 640, 3), np.uint8)
    # rectified images have had their distortion removed, whatever its model
    assert PinholeFrames(rectified=True, undistort=True)(image, msg, None)[0] is image
    with pytest.raises(InputError, match=f"'{model}' is unknown"):
        PinholeFrames(rectified=False, undistort=True)(image, msg, None)


def _binned(sensor_wh, K, binning=(0, 0), roi=(0, 0, 0, 0)):
    msg = _info(K, width=sensor_wh[0], height=sensor_wh[1])
    msg.d = [0.0] * 5
    msg.binning_x, msg.binning_y = binning
    msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = roi
    return msg


def test_binning_and_a_region_of_interest_give_the_intrinsics_of_the_delivered_pixels():
    K = [[300.0, 0, 131.0], [0, 310.0, 70.0], [0, 0, 1]]
    # binning 2: focal lengths halve; a binned pixel's centre is the mean of the two it merges
    np.testing.assert_allclose(frame_intrinsics(_binned((256, 128), K, (2, 2)), (64, 128), None),
                               [[150, 0, 65.25], [0, 155, 34.75], [0, 0, 1]])
    np.testing.assert_allclose(frame_intrinsics(_binned((256, 128), K, (2, 1)), (128, 128), None),
                               [[150, 0, 65.25], [0, 310, 70], [0, 0, 1]])
    # a region shifts the principal point by its offset
    np.testing.assert_allclose(frame_intrinsics(_binned((256, 128), K, roi=(64, 32, 128, 64)), (64, 128), None),
                               [[300, 0, 67], [0, 310, 38], [0, 0, 1]])
    # both: cropped on the full-resolution sensor, then binned
    np.testing.assert_allclose(frame_intrinsics(_binned((512, 256), K, (2, 2), (100, 20, 256, 128)), (64, 128), None),
                               [[150, 0, 15.25], [0, 155, 24.75], [0, 0, 1]])
    # a full-frame region is no region
    np.testing.assert_allclose(frame_intrinsics(_binned((128, 64), K, roi=(0, 0, 128, 64)), (64, 128), None), K)


@pytest.mark.parametrize("binning, roi, image_hw, reason", [
    ((2, 2), (0, 0, 0, 0), (128, 256), "CameraInfo is for 128x64 images \\(sensor 256x128, binning 2x2"),
    ((0, 0), (200, 0, 128, 64), (64, 128), "roi \\(200, 0, 128x64\\) is not a region of the 256x128 sensor"),
    ((0, 0), (8, 0, 0, 0), (128, 256), "is not a region"),
    ((1000, 1), (0, 0, 0, 0), (128, 256), "binning 1000x1 leaves no pixel"),
])
def test_binning_or_a_region_that_does_not_fit_is_refused(binning, roi, image_hw, reason):
    msg = _binned((256, 128), K_TEST, binning, roi)
    with pytest.raises(InputError, match=reason):
        frame_intrinsics(msg, image_hw, None)


def test_a_rectified_region_is_not_guessed():
    msg = _binned((256, 128), K_TEST, roi=(64, 32, 128, 64))
    msg.roi.do_rectify = True
    with pytest.raises(InputError, match="do_rectify"):
        frame_intrinsics(msg, (64, 128), None, rectified=True)
    frame_intrinsics(msg, (64, 128), None, rectified=False)  # a raw region is a plain crop


def test_a_projection_that_is_not_one_is_refused():
    with pytest.raises(InputError, match="not a projection matrix"):
        frame_intrinsics(_info(K_TEST, p=[[500.0, 0, 319.5, 0], [0, 400.0, 239.5, 0], [0, 0, 0, 0]]), (480, 640), None)


def test_image_size_is_bounded_before_decoding():
    msg = rgb_to_msg(np.zeros((64, 64, 3), np.uint8), _header())
    assert decode_rgb(msg).shape == (64, 64, 3)
    with pytest.raises(UnsupportedImage, match="64x64 has 4,096 pixels, more than the 1,000"):
        decode_rgb(msg, max_pixels=1000)
    # a header promising 2^31 pixels with no data behind it is refused by its size alone
    huge = Image(height=2**16, width=2**15, encoding="rgb8", step=3 * 2**15, data=b"")
    with pytest.raises(UnsupportedImage, match="megapixels"):
        decode_rgb(huge)
    # a compressed image is measured by the size in its header
    png = rgb_to_compressed(np.zeros((64, 64, 3), np.uint8), _header(), "png")
    assert decode_rgb(png).shape == (64, 64, 3)
    with pytest.raises(UnsupportedImage, match="CompressedImage \\(rgb8; png compressed bgr8\\) 64x64 has"):
        decode_rgb(png, max_pixels=1000)


@pytest.mark.parametrize("fmt, flags", [("png", []), ("jpeg", []), ("jpeg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])],
                         ids=["png", "jpeg", "progressive-jpeg"])
def test_a_compressed_image_declaring_gigapixels_is_refused_without_decoding(fmt, flags, monkeypatch):
    ok, encoded = cv2.imencode("." + fmt, np.zeros((48, 80, 3), np.uint8), flags)
    data = bytearray(encoded.tobytes())
    assert compressed_size(bytes(data)) == (80, 48)
    if fmt == "png":  # IHDR: width, height as 32-bit big-endian
        data[16:24] = (40000).to_bytes(4, "big") + (30000).to_bytes(4, "big")
    else:  # start of frame: height, width as 16-bit big-endian after the precision byte
        i = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
        data[i + 5:i + 9] = (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big")

    def no_decoding(*_):
        raise AssertionError("decoded although the header was too large")
    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    with pytest.raises(UnsupportedImage, match="megapixels"):
        compressed_to_rgb(CompressedImage(format=fmt, data=bytes(data)))
    with pytest.raises(UnsupportedImage, match="neither png nor jpeg"):
        compressed_to_rgb(CompressedImage(format=fmt, data=bytes(data[:10])))


def test_K_to_camera_info():
    K = np.array([[721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 1]])
    msg = K_to_camera_info(K, 1242, 375, _header())
    np.testing.assert_array_equal(camera_info_to_K(msg), K)
    np.testing.assert_array_equal(msg.p.reshape(3, 4)[:, :3], K)
    np.testing.assert_array_equal(msg.p.reshape(3, 4)[:, 3], 0)
    np.testing.assert_array_equal(msg.r.reshape(3, 3), np.eye(3))
    assert (msg.width, msg.height, list(msg.d)) == (1242, 375, [0.0] * 5)


def _read_cloud(msg):
    """Structured array from the message bytes, laid out by its own PointField offsets."""
    assert all(f.datatype == 7 and f.count == 1 for f in msg.fields)  # FLOAT32
    dtype = np.dtype({"names": [f.name for f in msg.fields], "formats": ["<f4"] * len(msg.fields),
                      "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})
    return np.frombuffer(bytes(msg.data), dtype).reshape(msg.height, msg.width)


def test_point_cloud_packing_hand_computed():
    depth = np.array([[2.0, 4.0, np.nan], [1.0, 0.0, 3.0]], np.float32)
    K = np.array([[2.0, 0, 1.0], [0, 4.0, 0.5], [0, 0, 1]])
    msg = depth_to_cloud_msg(depth, K, _header())
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (2, 3, 12, 36)
    assert [f.name for f in msg.fields] == ["x", "y", "z"] and [f.offset for f in msg.fields] == [0, 4, 8]
    assert msg.is_dense is False and msg.is_bigendian is False
    pts = _read_cloud(msg)
    # x = (u - 1) / 2 * z, y = (v - 0.5) / 4 * z
    expected = {(0, 0): (-1.0, -0.25, 2.0), (0, 1): (0.0, -0.5, 4.0),
                (1, 0): (-0.5, 0.125, 1.0), (1, 2): (1.5, 0.375, 3.0)}
    for (v, u), xyz in expected.items():
        np.testing.assert_allclose([pts[v, u]["x"], pts[v, u]["y"], pts[v, u]["z"]], xyz)
    for v, u in [(0, 2), (1, 1)]:
        assert all(math.isnan(pts[v, u][n]) for n in "xyz")


def test_point_cloud_rgb_and_stride():
    depth = np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[2, 2] = (0x12, 0x34, 0x56)
    K = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1]])
    msg = depth_to_cloud_msg(depth, K, _header(), stride=2, rgb=rgb)
    assert (msg.height, msg.width, msg.point_step) == (2, 2, 16)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"]
    pts = _read_cloud(msg)
    np.testing.assert_allclose([pts[1, 1]["x"], pts[1, 1]["y"], pts[1, 1]["z"]], [2 * 11, 2 * 11, 11])
    packed = np.frombuffer(pts["rgb"].tobytes(), "<u4").reshape(2, 2)
    assert packed[1, 1] == 0x123456 and packed[0, 0] == 0
    with pytest.raises(InputError, match="rgb must be an \\(H, W, 3\\) uint8 image"):
        depth_to_cloud_msg(depth, K, _header(), rgb=rgb[:2])


def test_depth_to_points_reprojects_with_skew():
    rng = np.random.default_rng(1)
    depth = rng.uniform(1, 10, (5, 7)).astype(np.float32)
    K = np.array([[300.0, 2.0, 3.2], [0, 280.0, 2.1], [0, 0, 1]])
    pts = depth_to_points(depth, K).reshape(-1, 3).astype(np.float64)
    uvw = pts @ K.T
    v, u = np.mgrid[0:5, 0:7]
    np.testing.assert_allclose(uvw[:, 0] / uvw[:, 2], u.ravel(), atol=1e-4)
    np.testing.assert_allclose(uvw[:, 1] / uvw[:, 2], v.ravel(), atol=1e-4)
    np.testing.assert_allclose(pts[:, 2], depth.ravel(), rtol=1e-6)
    assert depth_to_points(depth, K, stride=3).shape == (2, 3, 3)
    with pytest.raises(InputError, match="stride must be an integer >= 1"):
        depth_to_points(depth, K, stride=0)


def test_transform_stamped_from_known_rotation():
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # +90 degrees about z
    T[:3, 3] = [1.0, -2.0, 0.5]
    msg = pose_to_transform_stamped(T, "odom", "base_link", Time(sec=3, nanosec=7))
    assert (msg.header.frame_id, msg.child_frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == (
        "odom", "base_link", 3, 7)
    t, q = msg.transform.translation, msg.transform.rotation
    assert (t.x, t.y, t.z) == (1.0, -2.0, 0.5)
    s = math.sqrt(0.5)
    np.testing.assert_allclose(np.abs([q.x, q.y, q.z, q.w]), [0, 0, s, s], atol=1e-12)
    assert q.z * q.w > 0  # same sign: a +90 degree turn, not -90
    T[0, 0] = 2.0
    with pytest.raises(InputError, match="not a rotation"):
        pose_to_transform_stamped(T, "odom", "base_link", Time())


def test_qos_profiles():
    s = sensor_qos()
    assert (s.reliability, s.history, s.depth, s.durability) == (
        ReliabilityPolicy.BEST_EFFORT, HistoryPolicy.KEEP_LAST, 1, DurabilityPolicy.VOLATILE)
    r = reliable_qos()
    assert (r.reliability, r.depth, r.durability) == (ReliabilityPolicy.RELIABLE, 10, DurabilityPolicy.VOLATILE)
    assert qos_from_string("SENSOR_DATA", depth=3).depth == 3
    assert qos_from_string("reliable").reliability == ReliabilityPolicy.RELIABLE
    assert qos_from_string("system_default").reliability == ReliabilityPolicy.SYSTEM_DEFAULT
    names = "valid names: sensor_data, reliable, system_default"
    with pytest.raises(InputError, match=f"unknown QoS profile name 'fast'; {names}"):
        qos_from_string("fast")
