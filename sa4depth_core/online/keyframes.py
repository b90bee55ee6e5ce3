"""From a camera stream to training triplets: frame checks and keyframe selection.

A frame becomes a keyframe when it differs enough from the previous keyframe (mean absolute
difference of small grey thumbnails), so a robot standing still does not fill the replay buffer
with copies of one view, which teach nothing and drown the rest. Frames that cannot be learned
from (non-finite pixels, a blank or constant image) are rejected before they reach any buffer.

Three consecutive keyframes form a triplet. Every `val_period` training triplets, the next three
*fresh* keyframes form a validation triplet and the chain restarts, so validation frames never
appear in a training triplet.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import InputError
from ..geometry import scale_intrinsics

# Verdicts of KeyframeSelector.add
KEYFRAME, STATIC, INVALID, TEXTURELESS = "keyframe", "static", "invalid", "textureless"
TRAIN, VAL = "train", "val"


@dataclass
class Triplet:
    """Three keyframes for the photometric loss.

    images: (3,H,W,3) uint8 RGB at network size, in frame-offset order (0, -1, +1): the middle
        keyframe (target) first, then the one before and the one after.
    K: (3,3) float64 intrinsics at network size.
    stamps: (3,) float64 capture times in seconds, same order.
    """

    images: np.ndarray
    K: np.ndarray
    stamps: np.ndarray


@dataclass
class _Keyframe:
    image: np.ndarray  # (H,W,3) uint8 at network size
    K: np.ndarray
    stamp: float
    thumb: np.ndarray


def grey_thumbnail(rgb: np.ndarray, width: int = 64) -> np.ndarray:
    """Area-averaged grey copy `width` pixels wide (averaging also suppresses sensor noise).

    Args:
        rgb: (H,W,3) uint8.
    Returns:
        (h,width) float32 in [0,1].
    """
    h, w = rgb.shape[:2]
    size = (width, max(1, round(h * width / w)))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def image_motion(thumb_a: np.ndarray, thumb_b: np.ndarray) -> float:
    """Mean absolute grey difference of two thumbnails (0 = identical, ~0.07 for a car at 10 Hz)."""
    return float(np.abs(thumb_a - thumb_b).mean())


def to_uint8_rgb(image: np.ndarray) -> np.ndarray | None:
    """(H,W,3) uint8 RGB, or None when a float image holds non-finite values.

    Args:
        image: (H,W,3) uint8, or float in [0,1] (values outside are clipped).
    Raises InputError for other shapes or types.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 2 or image.shape[1] < 2:
        raise InputError(f"expected an (H,W,3) RGB image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image
    if not np.issubdtype(image.dtype, np.floating):
        raise InputError(f"expected a uint8 or float RGB image, got {image.dtype}")
    if not np.isfinite(image).all():
        return None
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class KeyframeSelector:
    """Turns a stream of frames into training and validation triplets.

    Args:
        height, width: network input size the keyframes are stored at.
        min_motion: thumbnail difference to the last keyframe below which a frame is "static".
        min_texture: grey standard deviation below which a frame is "textureless" (blank,
            covered lens, constant test pattern): such frames give no photometric signal and
            would make any model look perfect on validation.
        max_time_gap: seconds; a longer gap between keyframes (or time running backwards, e.g.
            a bag restarting) starts a new chain, so no triplet spans it.
        val_period: training triplets between two validation triplets; the first triplet of a
            selector goes to validation.
    """

    def __init__(self, height: int, width: int, min_motion: float = 0.01, min_texture: float = 0.02,
                 max_time_gap: float = 1.0, val_period: int = 10):
        if height <= 0 or width <= 0:
            raise InputError(f"keyframe size must be positive, got {width}x{height}")
        if not (min_motion >= 0 and min_texture >= 0 and max_time_gap > 0 and val_period >= 1):
            raise InputError("min_motion and min_texture must be >= 0, max_time_gap > 0 and val_period >= 1, got "
                             f"{min_motion}, {min_texture}, {max_time_gap}, {val_period}")
        self.height, self.width = int(height), int(width)
        self.min_motion, self.min_texture = float(min_motion), float(min_texture)
        self.max_time_gap, self.val_period = float(max_time_gap), int(val_period)
        self.counts: Counter = Counter()
        self.last_motion = float("nan")
        self._chain: list[_Keyframe] = []
        self._last: _Keyframe | None = None
        self._train_since_val = self.val_period  # the first triplet is held out

    def add(self, image: np.ndarray, K: np.ndarray, stamp: float) -> tuple[str, list[tuple[str, Triplet]]]:
        """Offer one frame.

        Args:
            image: (H0,W0,3) uint8 RGB, or float in [0,1]; K: (3,3) intrinsics of `image`;
            stamp: capture time in seconds.
        Returns:
            (verdict, triplets): verdict is "keyframe", "static", "invalid" (non-finite pixels)
            or "textureless"; triplets lists the (split, Triplet) pairs this frame completed,
            split being "train" or "val".
        """
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise InputError(f"invalid intrinsics {K.tolist()}: expected a finite (3,3) pinhole matrix")
        rgb = to_uint8_rgb(image)
        self.counts["frames"] += 1
        if rgb is None:
            return self._count(INVALID), []
        thumb = grey_thumbnail(rgb)
        if float(thumb.std()) < self.min_texture:
            return self._count(TEXTURELESS), []
        stamp = float(stamp)
        if self._last is not None:
            self.last_motion = image_motion(thumb, self._last.thumb)
            if self.last_motion < self.min_motion:
                return self._count(STATIC), []
            if not 0 < stamp - self._last.stamp <= self.max_time_gap:
                self._chain.clear()
        h0, w0 = rgb.shape[:2]
        small = rgb if (h0, w0) == (self.height, self.width) else \
            cv2.resize(rgb, (self.width, self.height), interpolation=cv2.INTER_AREA)
        keyframe = _Keyframe(small, scale_intrinsics(K, self.width / w0, self.height / h0), stamp, thumb)
        self._last = keyframe
        self._chain.append(keyframe)
        return self._count(KEYFRAME), self._complete()

    def _count(self, verdict: str) -> str:
        self.counts[verdict] += 1
        return verdict

    def _complete(self) -> list[tuple[str, Triplet]]:
        if len(self._chain) < 3:
            return []
        before, centre, after = self._chain
        triplet = Triplet(np.stack([centre.image, before.image, after.image]), centre.K.copy(),
                          np.array([centre.stamp, before.stamp, after.stamp]))
        if self._train_since_val >= self.val_period:
            split, self._train_since_val = VAL, 0
            self._chain.clear()
        else:
            split = TRAIN
            self._train_since_val += 1
            self._chain.pop(0)
            if self._train_since_val >= self.val_period:
                self._chain.clear()  # the validation triplet starts from fresh keyframes
        self.counts[split] += 1
        return [(split, triplet)]
