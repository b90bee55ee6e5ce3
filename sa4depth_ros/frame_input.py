"""FrameInput: what an image and its CameraInfo become before any work is done on them: a pinhole
RGB image with its intrinsics and a header in the camera frame, refused whole (InputError) when
anything about them is unusable; and where that camera sits on the robot.

Images become pinhole images by the CameraInfo's definition (camera_info.PinholeFrames: P for
rectified images, K with OpenCV undistortion for raw ones, binning and region of interest
honoured); the camera's place comes from TF when it has the camera frame under base_frame, else
from the base_to_camera parameter (tf_lookup).
"""
from __future__ import annotations

import numpy as np
from std_msgs.msg import Header

from sa4depth_core.errors import InputError
from sa4depth_core.pipeline_options import pose_from_xyz_rpy

from . import params
from .camera_info import PinholeFrames, distortion_note
from .image_codec import decode_rgb

FALLBACK_FRAME = "camera_optical_frame"


class FrameInput:
    """Per-frame input preparation of a node (its worker thread only).

    Args:
        logger: the node's logger; tf_in: tf_lookup.TransformLookup.
    `extrinsic_note` says where the last extrinsic came from (diagnostics).
    """

    def __init__(self, logger, tf_in, s):
        self._logger, self._tf_in = logger, tf_in
        self._pinhole = PinholeFrames(s.rectified_images, s.undistort)
        self._distortion = ""
        self._warned_frame = False
        self.extrinsic_note = "none yet"

    def prepare(self, image, info, s) -> tuple[np.ndarray, np.ndarray, Header]:
        """(rgb (H,W,3) uint8, K (3,3), header) of an Image or CompressedImage and its CameraInfo
        (None with the intrinsics parameter). Raises InputError for a frame to refuse."""
        if (self._pinhole.rectified, self._pinhole.undistort) != (s.rectified_images, s.undistort):
            self._pinhole = PinholeFrames(s.rectified_images, s.undistort)  # its remap tables survive other changes
        rgb, K = self._pinhole(decode_rgb(image), info, s.K())
        header = self._header(image, s)
        self._note_distortion(info, s.rectified_images)
        return rgb, K, header

    def _header(self, image, s) -> Header:
        frame = s.camera_frame or image.header.frame_id
        if not frame:
            frame = FALLBACK_FRAME
            if not self._warned_frame:
                self._logger.warning(f"input images have an empty frame_id: using '{FALLBACK_FRAME}' "
                                     "(set the camera_frame parameter)")
                self._warned_frame = True
        problem = params.frames_problem(s.odom_frame, s.base_frame, frame, s.publish_camera_tf)
        if problem:  # the image's frame_id (camera_frame empty): the parameters' rule, per frame
            raise InputError(f"{problem} (the image's frame_id; set camera_frame)")
        return Header(stamp=image.header.stamp, frame_id=frame)

    def _note_distortion(self, info, rectified: bool) -> None:
        """Warn once per distinct lens distortion that rectified frames do not apply it."""
        note = distortion_note(info, rectified) if info is not None else ""
        if note and note != self._distortion:
            self._logger.warning(note)
        self._distortion = note

    def extrinsic(self, s, camera: str) -> np.ndarray:
        """(4,4) pose of the camera frame in base_frame: from TF when it connects them, else from
        the base_to_camera parameter."""
        T = self._tf_in.lookup(s.base_frame, camera)
        if T is not None:
            self.extrinsic_note = f"tf ({s.base_frame} -> {camera})"
            return T
        self.extrinsic_note = f"base_to_camera parameter (TF has no {s.base_frame} -> {camera})"
        return pose_from_xyz_rpy(s.base_to_camera)
