"""Training augmentation of a group of frames (a triplet): horizontal flip and Monodepth2's colour
jitter, one draw for the whole group. Used by the offline dataset and the online learner.

Pixel convention (shared with `sa4depth_core.geometry`): integer (u, v) are pixel centres, so a
horizontal flip maps column u to W - 1 - u and the principal point cx to W - 1 - cx.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# Luma weights of ITU-R BT.601, the grey level colour jitter blends towards.
_GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Monodepth2's augmentation: flip and jitter each with p = 0.5; factors in [1 - 0.2, 1 + 0.2],
# hue shift in [-0.1, 0.1] turns.
JITTER_RANGE = 0.2
HUE_RANGE = 0.1


@dataclass(frozen=True)
class Augmentation:
    """One draw for a group of frames.

    flip: mirror horizontally. jitter: None, or the arguments of `color_jitter` after the images
    (brightness, contrast, saturation, hue, order).

    Two ways to draw it, each keeping the random numbers its user has always drawn (same seeds,
    same augmentation): `draw` for a generator of its own per item, `draw_from_stream` for one
    stream shared by many draws.
    """

    flip: bool = False
    jitter: tuple | None = None

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Augmentation:
        """Draw every number, used or not, so that the jitter does not depend on the flip."""
        flip = rng.random() < 0.5
        jitter = rng.random() < 0.5
        factors = rng.uniform(1 - JITTER_RANGE, 1 + JITTER_RANGE, size=3)
        hue = rng.uniform(-HUE_RANGE, HUE_RANGE)
        order = rng.permutation(4)
        return cls(flip, (*factors, hue, order) if jitter else None)

    @classmethod
    def draw_from_stream(cls, rng: random.Random) -> Augmentation:
        """Draw only the numbers used, leaving the rest of the stream to the next draw."""
        flip = rng.random() < 0.5
        if not rng.random() < 0.5:
            return cls(flip)
        factors = [rng.uniform(1 - JITTER_RANGE, 1 + JITTER_RANGE) for _ in range(3)]
        order = rng.sample(range(4), 4)
        return cls(flip, (*factors, rng.uniform(-HUE_RANGE, HUE_RANGE), order))

    def apply(self, images: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Augment the frames of one group.

        Args:
            images: (F,H,W,3) float32 RGB in [0,1]; K: (3,3) intrinsics for (H,W).
        Returns:
            images (F,H,W,3) flipped, for the photometric loss; the same flipped and jittered
            (F,H,W,3), for the networks; K (3,3) of the flipped images. Outputs may share memory
            with the inputs.
        """
        if self.flip:
            images = images[:, :, ::-1]
            K = K.copy()
            K[0, 2] = images.shape[2] - 1 - K[0, 2]
        augmented = images if self.jitter is None else color_jitter(images, *self.jitter)
        return images, augmented, K


def color_jitter(images: np.ndarray, brightness: float, contrast: float, saturation: float, hue: float,
                 order: Sequence[int] = (0, 1, 2, 3)) -> np.ndarray:
    """Apply the same photometric change to every frame.

    Args:
        images: (F,H,W,3) float32 RGB in [0,1].
        brightness, contrast, saturation: multiplicative factors (1 = unchanged).
        hue: shift of the hue angle in turns (0 = unchanged, 0.5 = opposite colour).
        order: the order of the four operations (0 brightness, 1 contrast, 2 saturation, 3 hue).
    Returns:
        (F,H,W,3) float32 in [0,1].
    """
    # Python floats keep the arithmetic in float32 (numpy float64 scalars would promote it).
    brightness, contrast, saturation, hue = float(brightness), float(contrast), float(saturation), float(hue)
    out = images.astype(np.float32, copy=True)
    for op in order:
        if op == 0:
            out = out * brightness
        elif op == 1:
            mean = (out @ _GREY_WEIGHTS).mean(axis=(1, 2))[:, None, None, None]
            out = contrast * out + (1 - contrast) * mean
        elif op == 2:
            grey = (out @ _GREY_WEIGHTS)[..., None]
            out = saturation * out + (1 - saturation) * grey
        else:
            out = np.stack([_shift_hue(frame, hue) for frame in out])
        out = np.clip(out, 0.0, 1.0, out=out)
    return out


def _shift_hue(rgb: np.ndarray, hue: float) -> np.ndarray:
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)  # float input: H in degrees
    hsv[..., 0] = np.mod(hsv[..., 0] + 360.0 * hue, 360.0)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def flip_pose(T: np.ndarray) -> np.ndarray:
    """Camera-to-world pose of the mirrored scene seen in a horizontally flipped image.

    Mirroring x in camera and world frames (S = diag(-1,1,1,1)) keeps relative poses consistent:
    inv(S·A·S)·(S·B·S) = S·inv(A)·B·S.

    Args:
        T: (...,4,4)
    """
    S = np.diag([-1.0, 1.0, 1.0, 1.0])
    return S @ T @ S
