"""Frame sequences shared by all readers, and the multi-frame torch Dataset used for training.

A `FrameSequence` is one camera stream (a KITTI drive, an odometry sequence, an image folder, a
bag) with native-resolution intrinsics, timestamps and, where known, ground-truth poses and
depth. `TripletDataset` turns a list of them into samples of neighbouring frames, augmented as
`augment.Augmentation` says.
"""
from __future__ import annotations

import abc
import math
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from sa4depth_core.data.augment import Augmentation, flip_pose
from sa4depth_core.errors import InputError
from sa4depth_core.geometry import scale_intrinsics

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class FrameSequence(abc.ABC):
    """One camera stream with native-resolution intrinsics.

    Subclasses set `name` and implement the abstract methods; `pose` and `gt_depth` return None
    unless the subclass has ground truth (then it also sets `has_poses` / `has_depth`).
    """

    name: str = ""
    has_poses: bool = False
    has_depth: bool = False

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @property
    @abc.abstractmethod
    def image_size(self) -> tuple[int, int]:
        """Native (H, W) of every frame."""

    @abc.abstractmethod
    def intrinsics(self) -> np.ndarray:
        """(3,3) float64 K at native resolution."""

    @abc.abstractmethod
    def image(self, i: int) -> np.ndarray:
        """Frame i as uint8 RGB (H,W,3)."""

    @abc.abstractmethod
    def timestamp(self, i: int) -> float:
        """Capture time of frame i in seconds."""

    def pose(self, i: int) -> np.ndarray | None:
        """(4,4) float64 camera-to-world pose of frame i, or None without ground truth."""
        self._check_index(i)
        return None

    def gt_depth(self, i: int) -> np.ndarray | None:
        """(H,W) float32 metric depth of frame i (0 = invalid), or None without ground truth."""
        self._check_index(i)
        return None

    def _check_index(self, i: int) -> None:
        if not 0 <= i < len(self):
            raise IndexError(f"{self.name}: frame {i} out of range 0..{len(self) - 1}")


class FixedCameraSequence(FrameSequence):
    """A FrameSequence of one fixed-size camera whose frame count and times are known up front.

    Subclasses fill `_hw` (native (H, W)), `_K` ((3,3) native intrinsics) and `_times` ((N,)
    capture times in seconds) in their constructor and implement `image`.
    """

    _hw: tuple
    _K: np.ndarray
    _times: np.ndarray

    def __len__(self) -> int:
        return len(self._times)

    @property
    def image_size(self) -> tuple[int, int]:
        return self._hw

    def intrinsics(self) -> np.ndarray:
        return self._K.copy()

    def timestamp(self, i: int) -> float:
        self._check_index(i)
        return float(self._times[i])


class ImageFileSequence(FixedCameraSequence):
    """A FixedCameraSequence whose frames are image files: subclasses also fill `_files` (one path
    per timestamp)."""

    _files: list

    def image(self, i: int) -> np.ndarray:
        self._check_index(i)
        return read_rgb(self._files[i], self._hw)


def natural_key(name: str) -> list:
    """Sort key that orders `frame2` before `frame10`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    """Image files (png/jpg) directly in `folder`, in natural name order."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: natural_key(p.name))


def require_dir(path: Path, what: str) -> Path:
    """Return `path` if it is a directory, else raise InputError naming it."""
    if not path.is_dir():
        raise InputError(f"{path}: {what} directory not found")
    return path


def read_rgb(path: Path, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as RGB, checking that it decodes and has the sequence size.

    Returns:
        (H,W,3) uint8; a grey file has its channel replicated.
    """
    # The networks take 3 channels: IMREAD_COLOR replicates a grey file's channel here, so grey
    # cameras (KITTI image_0/1, the Karlsruhe sequence) need nothing further downstream.
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        problem = "is missing" if not path.is_file() else "cannot be decoded as an image"
        raise InputError(f"frame {path} {problem}")
    if expected_hw is not None and bgr.shape[:2] != tuple(expected_hw):
        h, w = bgr.shape[:2]
        raise InputError(f"frame {path} is {w}x{h} but the sequence is {expected_hw[1]}x{expected_hw[0]}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_float_lines(path: Path, what: str) -> np.ndarray:
    """One number per non-empty line (e.g. `times.txt`).

    Returns:
        (N,) float64.
    """
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found")
    values = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values.append(float(line))
        except ValueError:
            raise InputError(f"{path}: line {lineno} is not a number: {line.strip()!r}") from None
    out = np.array(values, dtype=np.float64)
    if not np.all(np.isfinite(out)):
        raise InputError(f"{path}: contains non-finite values")
    return out


class TripletDataset(Dataset):
    """Samples of neighbouring frames for self-supervised training and evaluation.

    Item `idx` is a dict of torch tensors:
        images      (F,3,H,W) float32 in [0,1], frames in the order of `frame_offsets`.
        images_aug  (F,3,H,W) same frames with colour jitter (equal to `images` without augment);
                    feed these to the networks and `images` to the photometric loss.
        K, K_inv    (3,3) float32 intrinsics for (H,W) (flipped with the images).
        timestamps  (F,) float64 seconds.
        index, sequence, frame: int64 scalars (dataset item, sequence number, centre frame).
        flipped     bool scalar.
        depth_gt    (1,H0,W0) float32 native-resolution depth of the centre frame, with_depth only.
        pose_gt     (F,4,4) float32 camera-to-world, only when every sequence has poses.

    Only centre frames whose neighbours all exist are used; with `max_time_gap`, every gap
    between consecutive frames inside the window must be in (0, max_time_gap] seconds, so a
    window across a dropped frame is skipped.

    Augmentation draws from a generator seeded by (seed, epoch, idx): items are reproducible,
    independent of worker assignment, and change with `set_epoch`.
    """

    def __init__(self, sequences: FrameSequence | Sequence[FrameSequence], height: int, width: int,
                 frame_offsets: Sequence[int] = (0, -1, 1), augment: bool = False,
                 max_time_gap: float | None = None, with_depth: bool = False, seed: int = 0):
        if isinstance(sequences, FrameSequence):
            sequences = [sequences]
        self.sequences = list(sequences)
        if not self.sequences:
            raise InputError("TripletDataset needs at least one sequence")
        if int(height) != height or int(width) != width or height <= 0 or width <= 0:
            raise InputError(f"TripletDataset size must be positive integers, got {height}x{width} (HxW)")
        self.offsets = tuple(int(o) for o in frame_offsets)
        if 0 not in self.offsets or len(set(self.offsets)) != len(self.offsets):
            raise InputError(f"frame_offsets must be distinct and contain 0, got {tuple(frame_offsets)}")
        if int(seed) != seed or seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {seed!r}")
        if max_time_gap is not None and not max_time_gap > 0:
            raise InputError(f"max_time_gap must be positive seconds or None, got {max_time_gap}")
        if with_depth:
            missing = [seq.name for seq in self.sequences if not seq.has_depth]
            if missing:
                raise InputError(f"with_depth=True but these sequences have no ground-truth depth: {missing}")
        self.height, self.width = int(height), int(width)
        self.augment = augment
        self.with_depth = with_depth
        self.with_poses = all(seq.has_poses for seq in self.sequences)
        self.seed = int(seed)
        self.epoch = 0
        self.samples = np.concatenate(
            [self._valid_centres(s, seq, max_time_gap) for s, seq in enumerate(self.sequences)], axis=0
        )
        if not len(self.samples):
            names = [seq.name for seq in self.sequences]
            raise InputError(f"no frame of {names} has all neighbours {self.offsets}"
                             + (f" within {max_time_gap} s gaps" if max_time_gap is not None else ""))

    def _valid_centres(self, s: int, seq: FrameSequence, max_time_gap: float | None) -> np.ndarray:
        lo, hi = min(self.offsets), max(self.offsets)
        centres = np.arange(-lo, len(seq) - hi)
        if max_time_gap is not None and centres.size:
            times = np.array([seq.timestamp(i) for i in range(len(seq))])
            bad_gap = ~((np.diff(times) > 0) & (np.diff(times) <= max_time_gap))
            bad_before = np.concatenate([[0], np.cumsum(bad_gap)])  # bad gaps among frames 0..k
            centres = centres[bad_before[centres + hi] - bad_before[centres + lo] == 0]
        return np.stack([np.full_like(centres, s), centres], axis=1)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draw of this epoch (call before creating the epoch's iterator)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        idx = int(idx)
        if not 0 <= idx < len(self):
            raise IndexError(f"item {idx} out of range 0..{len(self) - 1}")
        s, i = (int(v) for v in self.samples[idx])
        seq = self.sequences[s]
        frames = [seq.image(i + o) for o in self.offsets]
        h0, w0 = frames[0].shape[:2]
        images = np.stack([self._resize(f) for f in frames]).astype(np.float32) / 255.0
        K = scale_intrinsics(seq.intrinsics(), self.width / w0, self.height / h0)

        augmentation = Augmentation()
        if self.augment:
            augmentation = Augmentation.draw(np.random.default_rng([self.seed, self.epoch, idx]))
        images, images_aug, K = augmentation.apply(images, K)
        flip = augmentation.flip

        item = {
            "images": _to_chw(images),
            "images_aug": _to_chw(images_aug),
            "K": torch.from_numpy(K.astype(np.float32)),
            "K_inv": torch.from_numpy(np.linalg.inv(K).astype(np.float32)),
            "timestamps": torch.tensor([seq.timestamp(i + o) for o in self.offsets], dtype=torch.float64),
            "index": torch.tensor(idx, dtype=torch.int64),
            "sequence": torch.tensor(s, dtype=torch.int64),
            "frame": torch.tensor(i, dtype=torch.int64),
            "flipped": torch.tensor(flip),
        }
        if self.with_depth:
            depth = seq.gt_depth(i)
            if flip:
                depth = depth[:, ::-1]
            item["depth_gt"] = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32)[None])
        if self.with_poses:
            poses = np.stack([seq.pose(i + o) for o in self.offsets])
            if flip:
                poses = flip_pose(poses)
            item["pose_gt"] = torch.from_numpy(poses.astype(np.float32))
        return item

    def _resize(self, image: np.ndarray) -> np.ndarray:
        if image.shape[:2] == (self.height, self.width):
            return image
        return cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)


def _to_chw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def train_val_split(dataset_len: int, val_fraction: float, seed: int = 0,
                    block: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Random split of item indices into train and validation.

    Items are grouped into contiguous blocks of `block` indices and whole blocks are assigned, so
    neighbouring, nearly identical frames do not leak from training into validation.

    Returns:
        train (N_t,) and val (N_v,) sorted int64 index arrays that partition range(dataset_len).
    """
    if not 0 <= val_fraction < 1:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if dataset_len < 0 or block < 1:
        raise InputError(f"dataset_len must be >= 0 and block >= 1, got {dataset_len} and {block}")
    n_blocks = math.ceil(dataset_len / block)
    n_val = round(n_blocks * val_fraction)
    if val_fraction > 0 and n_blocks > 1:
        n_val = min(max(n_val, 1), n_blocks - 1)
    val_blocks = np.random.default_rng(seed).permutation(n_blocks)[:n_val]
    is_val = np.zeros(dataset_len, dtype=bool)
    for b in val_blocks:
        is_val[b * block:(b + 1) * block] = True
    indices = np.arange(dataset_len, dtype=np.int64)
    return indices[~is_val], indices[is_val]
