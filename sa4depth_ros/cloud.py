"""Pack back-projected depth (sa4depth_core.pointcloud) into sensor_msgs/PointCloud2."""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField

from sa4depth_core.errors import InputError
from sa4depth_core.pointcloud import depth_to_points

_XYZ = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
# PCL / RViz convention: 0x00RRGGBB stored in the bytes of a FLOAT32 field named "rgb".
_XYZRGB = _XYZ + [("rgb", "<u4")]


def _fields(dtype: np.dtype) -> list[PointField]:
    return [
        PointField(name=name, offset=dtype.fields[name][1], datatype=PointField.FLOAT32, count=1)
        for name in dtype.names
    ]


def depth_to_cloud_msg(depth: np.ndarray, K: np.ndarray, header, stride: int = 1,
                       rgb: np.ndarray | None = None) -> PointCloud2:
    """Organised point cloud of a depth map in the depth image's optical frame.

    Args:
        depth: (H, W) metres; invalid pixels become NaN points (is_dense = False).
        K: (3, 3) intrinsics of `depth`.
        header: std_msgs/Header; frame_id should be the camera's optical frame.
        stride: keep every stride-th row and column.
        rgb: optional (H, W, 3) uint8 RGB aligned with `depth`, packed as an "rgb" field.
    Returns:
        PointCloud2 of height ceil(H/stride), width ceil(W/stride), fields x, y, z[, rgb] float32.
    """
    points = depth_to_points(depth, K, stride)
    dtype = np.dtype(_XYZ if rgb is None else _XYZRGB)
    cloud = np.empty(points.shape[:2], dtype=dtype)
    cloud["x"], cloud["y"], cloud["z"] = points[..., 0], points[..., 1], points[..., 2]
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != np.shape(depth) + (3,) or rgb.dtype != np.uint8:
            raise InputError(
                f"rgb must be an (H, W, 3) uint8 image matching depth {np.shape(depth)}, got {rgb.shape} {rgb.dtype}"
            )
        c = rgb[::stride, ::stride].astype(np.uint32)
        cloud["rgb"] = (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]

    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = int(cloud.shape[0]), int(cloud.shape[1])
    msg.fields = _fields(dtype)
    msg.is_bigendian = False
    msg.point_step = dtype.itemsize
    msg.row_step = dtype.itemsize * msg.width
    msg.is_dense = False
    msg.data = cloud.tobytes()
    return msg
