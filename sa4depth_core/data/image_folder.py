"""A plain folder of images (png/jpg, natural name order) with an intrinsics file and optional times.

Intrinsics files:
  * `intrinsics.txt`: 9 numbers (K row-major) or 4 numbers (fx fy cx cy); `#` starts a comment.
  * YAML in the style of a CameraInfo message (`k:` or `K:` list of 9) or of the ROS camera
    calibration file (`camera_matrix: {data: [...]}`); `width`/`height` or
    `image_width`/`image_height`, when present, must match the images.
`times.txt` holds one timestamp in seconds per image; without it frames are spaced by 1/fps.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from sa4depth_core.data.sequence import ImageFileSequence, list_images, read_float_lines, read_rgb, require_dir
from sa4depth_core.errors import InputError

INTRINSICS_NAMES = ("intrinsics.txt", "camera_info.yaml", "camera_info.yml", "intrinsics.yaml", "intrinsics.yml")


def _intrinsics_from_numbers(values: list[float], path: Path) -> np.ndarray:
    if len(values) == 9:
        K = np.array(values, dtype=np.float64).reshape(3, 3)
    elif len(values) == 4:
        fx, fy, cx, cy = values
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
    else:
        raise InputError(f"{path}: intrinsics need 9 numbers (K row-major) or 4 (fx fy cx cy), got {len(values)}")
    if not np.all(np.isfinite(K)) or not np.allclose(K[2], (0, 0, 1)) or K[0, 0] <= 0 or K[1, 1] <= 0 or K[1, 0] != 0:
        raise InputError(f"{path}: not a pinhole K (need fx, fy > 0, K[1,0] = 0 and last row 0 0 1): {K.tolist()}")
    return K


def load_intrinsics(path: str | Path) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Read an intrinsics text or YAML file.

    Returns:
        K (3,3) float64 and the (H, W) the file declares, or None if it declares none.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: intrinsics file not found")
    if path.suffix.lower() in (".yaml", ".yml"):
        return _load_yaml_intrinsics(path)
    text = " ".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
    try:
        values = [float(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise InputError(f"{path}: intrinsics must be numbers only") from None
    return _intrinsics_from_numbers(values, path), None


def _load_yaml_intrinsics(path: Path) -> tuple[np.ndarray, tuple[int, int] | None]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping with a 'k', 'K' or 'camera_matrix' entry")
    if "k" in data or "K" in data:
        values = data.get("k", data.get("K"))
    elif isinstance(data.get("camera_matrix"), dict) and "data" in data["camera_matrix"]:
        values = data["camera_matrix"]["data"]
    else:
        raise InputError(f"{path}: no 'k', 'K' or 'camera_matrix: data' entry")
    try:
        numbers = [float(v) for v in values] if isinstance(values, list) else None
    except (TypeError, ValueError):
        numbers = None
    if numbers is None:
        raise InputError(f"{path}: the camera matrix must be a list of numbers, got {values!r}")
    K = _intrinsics_from_numbers(numbers, path)
    width = data.get("width", data.get("image_width"))
    height = data.get("height", data.get("image_height"))
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return K, (height, width)
    return K, None


class ImageFolderSequence(ImageFileSequence):
    """Images of one camera in a folder.

    Args:
        folder: directory with the images.
        intrinsics: a file path, a (3,3) K, or None to look for one of INTRINSICS_NAMES in `folder`.
        times: a timestamps file, or None to use `folder/times.txt` if present.
        fps: frame rate used for timestamps when there is no timestamps file.
    """

    def __init__(self, folder: str | Path, intrinsics: str | Path | np.ndarray | None = None,
                 times: str | Path | None = None, fps: float = 10.0):
        folder = require_dir(Path(folder), "image")
        self.name = folder.name
        self._files = list_images(folder)
        if not self._files:
            raise InputError(f"{folder}: no png/jpg images")
        self._hw = read_rgb(self._files[0]).shape[:2]

        if isinstance(intrinsics, np.ndarray):
            self._K = _intrinsics_from_numbers(np.asarray(intrinsics, dtype=np.float64).reshape(-1).tolist(),
                                               Path("<intrinsics array>"))
        else:
            path = Path(intrinsics) if intrinsics is not None else self._find_intrinsics(folder)
            self._K, declared_hw = load_intrinsics(path)
            if declared_hw is not None and declared_hw != self._hw:
                raise InputError(f"{path} is for {declared_hw[1]}x{declared_hw[0]} images "
                                 f"but {self._files[0]} is {self._hw[1]}x{self._hw[0]}")

        times_path = Path(times) if times is not None else folder / "times.txt"
        if times is not None or times_path.is_file():
            self._times = read_float_lines(times_path, "timestamps")
            if len(self._times) != len(self._files):
                raise InputError(f"{times_path} has {len(self._times)} timestamps for {len(self._files)} images")
        else:
            if not fps > 0:
                raise InputError(f"fps must be positive, got {fps}")
            self._times = np.arange(len(self._files)) / float(fps)

    @staticmethod
    def _find_intrinsics(folder: Path) -> Path:
        for name in INTRINSICS_NAMES:
            if (folder / name).is_file():
                return folder / name
        raise InputError(f"{folder}: no intrinsics file (looked for {', '.join(INTRINSICS_NAMES)})")

