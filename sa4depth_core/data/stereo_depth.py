"""Metric depth of the left image of a rectified stereo pair, used as ground truth where a real
sequence has no other (the Karlsruhe sequence; any KITTI odometry sequence with image_0/1).

Semi-global matching (OpenCV StereoSGBM) in both directions; a left pixel keeps its disparity
only when its match lies inside the right image and the right image's disparity there agrees
within `max_lr_diff` px (occlusions and mismatches fail this), and the block around it has
texture and does not cross the image border. depth = fx * baseline / disparity, 0 where unsure: the evaluator's
convention for invalid ground truth. opencv-contrib's ximgproc (which has a right matcher) is not
a dependency: the right disparity comes from matching the mirrored pair, which is the same search.

`write_stereo_depth` stores it as `sequences/SS/depth_<left>/%06d.png`, the uint16 format of the
synthetic generator's exact depth, so `KittiOdometrySequence.gt_depth` and `sa4depth-eval depth`
read it unchanged; `depth_<left>/stereo.json` records that it is stereo depth and with which
settings, and frames already written with the same settings are not matched again.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sa4depth_core.data.calib import load_odometry_calib
from sa4depth_core.data.kitti_odometry import camera_images, depth_to_png16
from sa4depth_core.data.sequence import FrameSequence
from sa4depth_core.errors import InputError
from sa4depth_core.scale import camera_height_from_depth

STEREO_MARKER = "stereo.json"


@dataclass(frozen=True)
class StereoParams:
    """Settings of the matcher and of the checks that decide what is kept.

    num_disparities: search range in px (a multiple of 16); the nearest depth seen is
        fx * baseline / num_disparities.
    max_lr_diff: px a left disparity may differ from the right image's at its match.
    min_texture: least grey-level standard deviation in the block around a pixel.
    min_disparity: px; smaller disparities are within matching noise of infinity (at 1 px the
        depth is fx * baseline, 184 m for the Karlsruhe rig) and are dropped.
    """

    num_disparities: int = 96
    block_size: int = 5
    uniqueness_ratio: int = 10
    speckle_window: int = 100
    speckle_range: int = 2
    max_lr_diff: float = 1.0
    min_texture: float = 2.0
    min_disparity: float = 1.0

    def __post_init__(self):
        if self.num_disparities <= 0 or self.num_disparities % 16:
            raise InputError(f"num_disparities must be a positive multiple of 16, got {self.num_disparities}")
        if self.block_size < 1 or self.block_size % 2 == 0:
            raise InputError(f"block_size must be odd and positive, got {self.block_size}")
        if not (self.max_lr_diff >= 0 and self.min_texture >= 0 and self.min_disparity > 0):
            raise InputError(f"need max_lr_diff >= 0, min_texture >= 0 and min_disparity > 0, got "
                             f"{self.max_lr_diff}, {self.min_texture}, {self.min_disparity}")


@dataclass
class StereoDepth:
    """Depth of one left image and what each check removed.

    depth: (H,W) float32 metres, 0 = invalid. disparity: (H,W) float32 px, NaN = invalid.
    Fractions are of all pixels: `matched` by SGBM at all, then removed by the left-right check,
    by the texture test, by the image border and as too far (below min_disparity).
    """

    depth: np.ndarray
    disparity: np.ndarray
    matched: float
    lr_rejected: float
    texture_rejected: float
    border_rejected: float
    far_rejected: float

    @property
    def valid_fraction(self) -> float:
        return float((self.depth > 0).mean())


def _grey(image: np.ndarray, what: str) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise InputError(f"{what} image must be 8-bit grey (H,W) or colour (H,W,3), got {image.dtype} {image.shape}")
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def match_disparities(left: np.ndarray, right: np.ndarray,
                      params: StereoParams = StereoParams()) -> tuple[np.ndarray, np.ndarray]:
    """SGBM disparities of both images of a rectified pair (right camera at +x of the left).

    Args:
        left, right: (H,W) uint8 grey (or (H,W,3) BGR).
    Returns:
        left disparity (H,W) float32 (left x - right x of a point), right disparity (H,W)
        float32 (the same quantity indexed by right x); NaN where SGBM found no match.
    """
    left, right = _grey(left, "left"), _grey(right, "right")
    if left.shape != right.shape:
        raise InputError(f"stereo images differ in size: {left.shape} and {right.shape}")
    b = params.block_size
    sgbm = cv2.StereoSGBM_create(minDisparity=0, numDisparities=params.num_disparities, blockSize=b,
                                 P1=8 * b * b, P2=32 * b * b, disp12MaxDiff=-1,
                                 uniquenessRatio=params.uniqueness_ratio, speckleWindowSize=params.speckle_window,
                                 speckleRange=params.speckle_range, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    pad = params.num_disparities

    def compute(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # SGBM leaves the first num_disparities columns unmatched; padding gives them room to
        # search, and a match that lands in the padding fails the left-right check's bounds.
        a, b = (cv2.copyMakeBorder(x, 0, 0, pad, 0, cv2.BORDER_REPLICATE) for x in (a, b))
        return sgbm.compute(a, b)[:, pad:]

    raw_left = compute(left, right)
    # Mirrored, the right image becomes a left image whose matches lie at +x in the mirrored left.
    raw_right = compute(np.ascontiguousarray(right[:, ::-1]), np.ascontiguousarray(left[:, ::-1]))[:, ::-1]
    out = []
    for raw in (raw_left, raw_right):
        disp = raw.astype(np.float32) / 16.0  # SGBM's fixed point has 4 fractional bits
        disp[raw <= 0] = np.nan
        out.append(disp)
    return out[0], out[1]


def lr_consistent(disp_left: np.ndarray, disp_right: np.ndarray, max_diff: float) -> np.ndarray:
    """Left pixels whose disparity the right image confirms.

    Args:
        disp_left, disp_right: (H,W) float32 from `match_disparities` (NaN = no match).
    Returns:
        (H,W) bool: |d_L(x) - d_R(x - d_L(x))| <= max_diff, with the match inside the right image.
    """
    H, W = disp_left.shape
    xs = np.arange(W, dtype=np.float32)[None, :] - np.nan_to_num(disp_left, nan=0.0)
    xr = np.rint(xs).astype(np.int64)
    inside = np.isfinite(disp_left) & (xr >= 0) & (xr < W)
    rows = np.broadcast_to(np.arange(H)[:, None], (H, W))
    confirm = np.full((H, W), np.nan, np.float32)
    confirm[inside] = disp_right[rows[inside], xr[inside]]
    with np.errstate(invalid="ignore"):
        return inside & (np.abs(disp_left - confirm) <= max_diff)


def textured(image: np.ndarray, block_size: int, min_std: float) -> np.ndarray:
    """(H,W) bool: pixels whose block_size² neighbourhood has a grey-level std of at least min_std."""
    grey = _grey(image, "left").astype(np.float32)
    mean = cv2.blur(grey, (block_size, block_size))
    var = cv2.blur(grey * grey, (block_size, block_size)) - mean * mean
    return np.sqrt(np.maximum(var, 0.0)) >= min_std


def stereo_depth(left: np.ndarray, right: np.ndarray, fx: float, baseline: float,
                 params: StereoParams = StereoParams()) -> StereoDepth:
    """Metric depth of the left image of a rectified pair.

    Args:
        left, right: (H,W) uint8 grey (or (H,W,3) BGR), rectified, right camera at +x.
        fx: focal length in px of both rectified images. baseline: metres between the centres.
    """
    if not (np.isfinite(fx) and fx > 0 and np.isfinite(baseline) and baseline > 0):
        raise InputError(f"stereo depth needs fx > 0 and baseline > 0, got fx={fx}, baseline={baseline}")
    disp_left, disp_right = match_disparities(left, right, params)
    H, W = disp_left.shape
    matched = np.isfinite(disp_left)
    agree = lr_consistent(disp_left, disp_right, params.max_lr_diff)
    texture = textured(left, params.block_size, params.min_texture)
    # Blocks cut by the image edge are matched on padding.
    border = np.zeros((H, W), bool)
    m = params.block_size // 2
    border[m:H - m, m:W - m] = True
    with np.errstate(invalid="ignore"):
        near = disp_left >= params.min_disparity
    keep = agree & texture & border & near
    disparity = np.where(keep, disp_left, np.nan).astype(np.float32)
    depth = np.where(keep, fx * baseline / np.where(keep, disp_left, 1.0), 0.0).astype(np.float32)
    n = float(H * W)
    return StereoDepth(depth=depth, disparity=disparity, matched=matched.sum() / n,
                       lr_rejected=(matched & ~agree).sum() / n,
                       texture_rejected=(agree & ~texture).sum() / n,
                       border_rejected=(agree & texture & ~border).sum() / n,
                       far_rejected=(agree & texture & border & ~near).sum() / n)


def rectified_pair(seq_dir: Path, left: int, right: int) -> tuple[float, float]:
    """(fx, baseline in metres) of cameras `left` and `right` of a KITTI odometry calib.txt.

    The two must share K (a rectified pair) and the right one must sit at +x of the left.
    """
    calib = load_odometry_calib(seq_dir / "calib.txt", cameras=(left, right))
    P_l, P_r = calib.projection(left), calib.projection(right)
    if not np.allclose(P_l[:, :3], P_r[:, :3], rtol=1e-6, atol=1e-9):
        raise InputError(f"{calib.path}: P{left} and P{right} have different intrinsics, not a rectified pair")
    fx = float(P_l[0, 0])
    baseline = float(calib.cam0_to_cam(left)[0, 3] - calib.cam0_to_cam(right)[0, 3])
    if not baseline > 0:
        raise InputError(f"{calib.path}: camera {right} is not to the right of camera {left} "
                         f"(baseline {baseline:.4f} m from P{left}, P{right})")
    return fx, baseline


def write_stereo_depth(seq_dir: str | Path, left: int = 0, right: int = 1, params: StereoParams = StereoParams(),
                       max_frames: int = 0, progress=None) -> dict:
    """Match every frame pair of a KITTI odometry sequence once and store the left depth.

    Writes `depth_<left>/%06d.png` (uint16, metres * 256) and `depth_<left>/stereo.json`. Frames
    already there with the same settings and calibration are kept; other settings re-match all.
    A `depth_<left>` folder not written here (e.g. a synthetic sequence's exact depth) is refused.

    Returns:
        {"frames", "matched" (newly), "valid_fraction", "lr_rejected" (means over the newly matched
        frames, None when none were), "fx", "baseline_m"}.
    """
    seq_dir = Path(seq_dir)
    fx, baseline = rectified_pair(seq_dir, left, right)
    lefts, rights = camera_images(seq_dir, left), camera_images(seq_dir, right)
    if [p.name for p in lefts] != [p.name for p in rights]:
        raise InputError(f"{seq_dir}: image_{left} and image_{right} do not hold the same frame names")
    if max_frames:
        lefts, rights = lefts[:max_frames], rights[:max_frames]
    out_dir = seq_dir / f"depth_{left}"
    marker = out_dir / STEREO_MARKER
    settings = {"source": "stereo", "method": "OpenCV StereoSGBM with left-right check", "left": left, "right": right,
                "fx": fx, "baseline_m": baseline, "params": dataclasses.asdict(params)}
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not marker.is_file():
            raise InputError(f"{out_dir} holds depth not written by stereo matching; move it away to write stereo depth")
        if json.loads(marker.read_text()) != settings:
            for old in out_dir.glob("*.png"):
                old.unlink()
    out_dir.mkdir(exist_ok=True)
    marker.write_text(json.dumps(settings, indent=1) + "\n")
    valid, rejected = [], []
    for k, (lp, rp) in enumerate(zip(lefts, rights)):
        target = out_dir / f"{lp.stem}.png"
        if target.is_file():
            continue
        images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in (lp, rp)]
        for p, img in zip((lp, rp), images):
            if img is None:
                raise InputError(f"frame {p} cannot be decoded as an image")
        result = stereo_depth(images[0], images[1], fx, baseline, params)
        if not cv2.imwrite(str(target), depth_to_png16(result.depth)):
            raise InputError(f"{target}: cannot write PNG")
        valid.append(result.valid_fraction)
        rejected.append(result.lr_rejected)
        if progress:
            progress(k + 1, len(lefts))
    mean = (lambda v: float(np.mean(v)) if v else None)
    return {"frames": len(lefts), "matched": len(valid), "valid_fraction": mean(valid),
            "lr_rejected": mean(rejected), "fx": fx, "baseline_m": baseline}


@dataclass(frozen=True)
class HeightEstimate:
    """Camera height above the road from ground-truth depth: median over frames and its spread
    (the 25th and 75th percentiles), from `frames` frames where a road plane was found."""

    height: float
    p25: float
    p75: float
    frames: int
    tried: int


def ground_camera_height(seq: FrameSequence, frames) -> HeightEstimate:
    """Height of the camera above the road plane found in each frame's ground-truth depth.

    Per frame, a RANSAC plane through the 3D points of the image's lower part
    (`scale.camera_height_from_depth`, the same fit the camera_height scale mode runs on
    predicted depth); the distance from the camera centre to it, medianed over frames so parked
    cars or a kerb filling one frame's lower part do not decide it.
    """
    if not seq.has_depth:
        raise InputError(f"{seq.name}: has no ground-truth depth to find the road in")
    frames = list(frames)
    K = seq.intrinsics()
    heights = []
    for i in frames:
        fit = camera_height_from_depth(seq.gt_depth(i), K)
        if fit is not None:
            heights.append(fit[0])
    if not heights:
        raise InputError(f"{seq.name}: no road plane found in the depth of frames {frames[:5]}...")
    p25, med, p75 = np.percentile(heights, [25, 50, 75])
    return HeightEstimate(float(med), float(p25), float(p75), len(heights), len(frames))
