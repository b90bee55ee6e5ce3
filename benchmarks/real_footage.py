"""Real footage (issue 24): depth and odometry on the Karlsruhe car sequence, from a start that has
never seen it, before and after self-supervised fine-tuning on its first frames, beside a classical
OpenCV odometry.

Data: ../shared/data/karlsruhe_2010_03_09_drive_0019 (research data, read in place), converted
once by sa4depth_core.data.karlsruhe into --cache (benchmarks/.cache by default, never tracked):
left camera image_0, stereo depth_0, INS poses with the nominal mounting.

Frames (left camera only):
  0-199    fine-tuning (self-supervised: images only)
  200-249  validation: every choice (the learning rate when --lrs has several)
  250-372  test: the tables, each model evaluated once

Models: each start (--start; default the model `make demo` trains, 5 min of SA4Depth on one
generated world, cached in outputs/demo/train_64x192 and shared with the demo) and, per arm and
seed, that start fine-tuned --steps steps with the SA4Depth loss or the Monodepth2 loss
(refine.enabled=false); both arms get the same start, steps, batch, learning rate grid, seeds and
data order. A Monodepth2-arm model keeps the start's feature network (it trains none), so its
refined odometry is the start's refiner on the fine-tuned depth and PoseNet.

Scoring on the test frames:
  depth     vs the stereo depth (1e-3..80 m, no crop): AbsRel and delta1 median-scaled per image,
            and metric with the camera_height scale mode at the height the converter measured on
            the stereo depth (1.59 m; the pipeline's running-median plane fit, as on the robot),
            with the median stereo/predicted ratio (1 = metric)
  odometry  vs the INS poses re-expressed with the fitted mounting (below): 5-frame ATE
            (per-snippet scale), full ATE after Sim(3), per-pair rotation and translation-
            direction errors (odometry_metrics.pair_errors) and the path length ratio in the
            camera_height scale, for PoseNet, the refined odometry (the node's defaults) and the
            classical odometry (benchmarks/classical_vo.py: unit steps, so 5-frame ATE and pair
            errors; with each step's scale from the model's metric depth, full ATE and path)
Mounting: the INS track is of the vehicle and the camera's mounting is unknown (the converter uses
a nominal one, about 5 degrees off). One fixed rotation X (camera -> nominal camera) is fitted once
on frames 0-249 only, from the INS and classical relative motions (relative rotation axes of pairs
turning more than 1 degree and translation directions, fit_mounting), and the same corrected
ground truth scores every method. The lever arm stays unknown (taken as zero).

Each finished piece (a fine-tuned model, each evaluation) is kept under --out and reused while
its settings match, so an interrupted run continues.

    python benchmarks/real_footage.py                        # the full run: 3 seeds, 2 arms
    python benchmarks/real_footage.py --seeds 0 --steps 100  # a reduced run
    python benchmarks/real_footage.py --quick --cache /tmp/c --out /tmp/o   # smoke test (~1 min)
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

import common
from common import CACHE, RESULTS, machine
import classical_vo
from sa4depth_core.checkpoint import load_checkpoint
from sa4depth_core.config import load_config
from sa4depth_core.data.karlsruhe import convert
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.data.sequence import FrameSequence, TripletDataset
from sa4depth_core.eval.depth_metrics import evaluate_depth
from sa4depth_core.eval.odometry_metrics import (absolute_to_relative, pair_errors, relative_to_absolute,
                                                 snippet_ate, trajectory_ate)
from sa4depth_core.eval.run_model import run_sequence
from sa4depth_core.eval.trajectory_plot import colorize_depth
from sa4depth_core.loaded_model import load_model
from sa4depth_core.pipeline_options import PipelineOptions
from sa4depth_core.train.trainer import Trainer

DATA = (common.ROOT.parent / "shared" / "data" / "karlsruhe_2010_03_09_drive_0019").resolve()
ARMS = {"sa4depth": ("SA4Depth", ["refine.enabled=true"]),
        "monodepth2": ("Monodepth2 loss", ["refine.enabled=false"])}
PICTURE = common.ROOT / "docs" / "real_footage_depth.png"
DEPTH_COLUMNS = ("AbsRel", "δ1", "metric AbsRel", "metric δ1", "stereo/pred median ratio")
ODOM_METHODS = ("PoseNet", "refined", "classical", "classical + depth scale")
ODOM_COLUMNS = ("5-frame ATE (m)", "ATE Sim(3) (m)", "rotation (°/pair)", "direction (°/pair)", "path ratio")


@dataclass(frozen=True)
class Split:
    """Frame ranges of the converted sequence: fine-tuning, validation, test."""

    train: range
    val: range
    test: range


FULL = Split(range(0, 200), range(200, 250), range(250, 373))
QUICK = Split(range(0, 8), range(8, 12), range(12, 18))


class FrameRange(FrameSequence):
    """Frames `frames` of `seq` as a sequence of their own, so the trainer cannot see the others."""

    def __init__(self, seq: FrameSequence, frames: range):
        self.seq, self.frames = seq, frames
        self.name = f"{seq.name}[{frames.start}:{frames.stop}]"
        self.has_poses, self.has_depth = seq.has_poses, seq.has_depth

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.seq.image_size

    def intrinsics(self) -> np.ndarray:
        return self.seq.intrinsics()

    def image(self, i: int) -> np.ndarray:
        return self.seq.image(self.frames[i])

    def timestamp(self, i: int) -> float:
        return self.seq.timestamp(self.frames[i])

    def pose(self, i: int):
        return self.seq.pose(self.frames[i])

    def gt_depth(self, i: int):
        return self.seq.gt_depth(self.frames[i])


# -- the mounting ---------------------------------------------------------------------------------

def _rotvec(R: np.ndarray) -> np.ndarray:
    rvec, _ = cv2.Rodrigues(np.asarray(R, np.float64))
    return rvec.ravel()


def fit_mounting(gt_rel: np.ndarray, est_rel: np.ndarray, min_turn_deg: float = 1.0, min_turns: int = 5) -> np.ndarray:
    """Rotation X (3,3) with est ~ inv(X) gt X for relative poses of the same pairs.

    A camera mounted rotated by X from the nominal camera sees every relative motion of the
    nominal one rotated into its own axes: rotation axes and translation directions turn by X^T.
    The straight driving gives the forward direction, the turns give the up axis; together they
    fix X: Kabsch on unit vectors, the translation directions of every moving pair and the
    rotation axes of the pairs turning more than `min_turn_deg` in both. With fewer than
    `min_turns` such turns the roll about the direction of travel is not observable, and X is the
    smallest rotation that takes the mean direction onto the ground truth's.
    """
    dirs, axes = ([], []), ([], [])
    for g, e in zip(gt_rel, est_rel):
        tg, te = g[:3, 3], e[:3, 3]
        if np.linalg.norm(tg) > 1e-6 and np.linalg.norm(te) > 1e-6:
            dirs[0].append(tg / np.linalg.norm(tg))
            dirs[1].append(te / np.linalg.norm(te))
        rg, re = _rotvec(g[:3, :3]), _rotvec(e[:3, :3])
        if min(np.linalg.norm(rg), np.linalg.norm(re)) > np.radians(min_turn_deg):
            axes[0].append(rg / np.linalg.norm(rg))
            axes[1].append(re / np.linalg.norm(re))
    if not dirs[0]:
        raise ValueError("no moving pair to fit the camera mounting on")
    if len(axes[0]) < min_turns:
        a, b = np.mean(dirs[0], axis=0), np.mean(dirs[1], axis=0)
        a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
        axis = np.cross(b, a)
        angle = np.arctan2(np.linalg.norm(axis), a @ b)
        X, _ = cv2.Rodrigues(axis / max(np.linalg.norm(axis), 1e-12) * angle)
        return X
    a, b = np.array(dirs[0] + axes[0]), np.array(dirs[1] + axes[1])
    U, _, Vt = np.linalg.svd(a.T @ b)
    return U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt


def remount(poses: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Camera-to-world poses of the nominal camera -> those of a camera rotated by X in it,
    relative to the first frame."""
    T = np.eye(4)
    T[:3, :3] = X
    cams = poses @ T
    return np.linalg.inv(cams[0]) @ cams


# -- data and models ------------------------------------------------------------------------------

def prepare(data: Path, cache: Path, frames: int, log) -> tuple[Path, float]:
    """Convert the sequence once into `cache`; returns (root, camera height measured on its stereo depth)."""
    root = cache / ("karlsruhe" if not frames else f"karlsruhe_{frames}f")
    info = root / "sequences" / "00" / "conversion.json"
    if not info.is_file():
        log(f"converting {data} into {root} (stereo depth: about a minute on 2 cores)")
        convert(data, root, "00", max_frames=frames, overwrite=True)
    return root, float(json.loads(info.read_text())["camera_height_m"]["median"])


def grey_frames(seq: FrameSequence, frames: range) -> list[np.ndarray]:
    return [np.ascontiguousarray(seq.image(i)[:, :, 0]) for i in frames]  # grey replicated to RGB by the reader


def demo_start(log) -> Path:
    """The model `make demo` trains (and reuses): trained here the same way when it is not there yet."""
    from sa4depth_ros.demo import ROOT as DEMO_ROOT, get_model, parse_args

    return get_model(parse_args([]), DEMO_ROOT / "outputs" / "demo", log)


def tiny_start(cache: Path, log) -> Path:
    """A start for --quick: 2 steps on a small generated world (its figures mean nothing)."""
    out = cache / "runs" / "tiny_start"
    if not (out / "best.pt").is_file():
        world = common.synthetic("tiny_start", 8, 64, 192, 0)
        common.train(["model.height=64", "model.width=192", "train.batch_size=2", "train.max_steps=2",
                      "train.epochs=100", "train.val_every=1000000", "train.save_every=1000000"], [world], out, log)
    return out / "best.pt"


def finetune(start: Path, arm: str, seed: int, lr: float, args, seq: FrameSequence, split: Split, out: Path,
             log) -> Path:
    """best.pt of `start` fine-tuned on the split's training frames with the arm's loss, kept in
    `out` beside the settings that made it and reused while they match."""
    settings = {"start": str(start), "start_mtime": start.stat().st_mtime, "arm": arm, "seed": seed, "lr": lr,
                "steps": args.steps, "batch": args.batch, "frames": [split.train.start, split.train.stop]}
    marker = out / "finetune.json"
    if (out / "best.pt").is_file() and marker.is_file() and json.loads(marker.read_text()) == settings:
        return out / "best.pt"
    model_cfg = load_checkpoint(start)["config"]["model"]
    h, w = model_cfg["height"], model_cfg["width"]
    overrides = [f"model.height={h}", f"model.width={w}", f"train.batch_size={args.batch}", "train.epochs=100000",
                 f"train.max_steps={args.steps}", "train.val_every=1000000", "train.save_every=1000000",
                 f"train.lr={lr}", f"train.seed={seed}", f"train.init={start}", f"train.out_dir={out}",
                 *ARMS[arm][1]]
    shutil.rmtree(out, ignore_errors=True)
    cfg = load_config(None, overrides)
    data = TripletDataset(FrameRange(seq, split.train), h, w, augment=cfg.data.augment, seed=seed)
    t0 = time.time()
    Trainer(cfg, data, None, log=lambda *_: None).fit()
    marker.write_text(json.dumps(settings) + "\n")
    log(f"  fine-tuned {arm} seed {seed} lr {lr:g}: {args.steps} steps in {time.time() - t0:.0f} s")
    return out / "best.pt"


# -- scoring --------------------------------------------------------------------------------------

def score_odometry(gt_abs: np.ndarray, est_rel: np.ndarray, full: bool = True) -> dict:
    """The odometry columns for one estimate; `full` False for unit steps (no ATE, no path)."""
    gt_rel = absolute_to_relative(gt_abs)
    pairs = pair_errors(gt_rel, est_rel)
    out = {"ate5": snippet_ate(est_rel, gt_abs)["mean"], "rotation_deg": pairs["rotation_deg_mean"],
           "direction_deg": pairs["direction_deg_mean"], "ate": float("nan"), "path_ratio": float("nan")}
    if full:
        out["ate"] = trajectory_ate(gt_abs, relative_to_absolute(est_rel), "7dof")
        out["path_ratio"] = float(np.linalg.norm(est_rel[:, :3, 3], axis=1).sum()
                                  / np.linalg.norm(gt_rel[:, :3, 3], axis=1).sum())
    return out


def evaluate(path: Path, seq: KittiOdometrySequence, frames: range, height: float, gt_abs: np.ndarray,
             motions: list) -> dict:
    """Depth and odometry of the model at `path` on `frames` (gt_abs: their corrected poses;
    motions: the classical steps between them)."""
    loaded = load_model(path)
    options = PipelineOptions(scale_mode="camera_height", camera_height=height)
    run = run_sequence(loaded, seq, torch.device("cpu"), frames, options=options)
    gts = [seq.gt_depth(i) for i in frames]
    scaled = evaluate_depth(gts, run.depths, pred_kind="depth", crop="none")
    metric = evaluate_depth(gts, run.depths, pred_kind="depth", crop="none", median_scaling=False)
    out = {"depth": {"abs_rel": scaled["metrics"]["abs_rel"], "a1": scaled["metrics"]["a1"],
                     "metric_abs_rel": metric["metrics"]["abs_rel"], "metric_a1": metric["metrics"]["a1"],
                     "ratio_median": scaled["ratio_median"]},
           "features_trained": loaded.features_trained, "odometry": {}}
    for mode, name in (("posenet", "PoseNet"), ("refined", "refined")):
        if mode in run.poses:
            out["odometry"][name] = score_odometry(gt_abs, absolute_to_relative(run.poses[mode]))
    if "refined" in run.poses:
        out["acceptance"] = run.acceptance
    rel = classical_vo.depth_scaled(motions, run.depths, seq.image_size)
    out["odometry"]["classical + depth scale"] = score_odometry(gt_abs, rel)
    return out


def cached(path: Path, settings: dict, make):
    """The JSON at `path` when it was made with `settings`, else make() saved there."""
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("settings") == settings:
            return saved["result"]
    result = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"settings": settings, "result": result}, indent=1, default=float) + "\n")
    return result


# -- the tables -----------------------------------------------------------------------------------

def _fmt(v: float, digits: int = 3) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _mean_std(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return "—"
    return f"**{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}**"


DEPTH_KEYS = ("abs_rel", "a1", "metric_abs_rel", "metric_a1", "ratio_median")
ODOM_KEYS = ("ate5", "ate", "rotation_deg", "direction_deg", "path_ratio")


def tables(rows: list[tuple[str, str, dict]], classical: dict, fit_frames: str) -> str:
    """Markdown tables: depth, then odometry per method; `rows` are (model, seed, evaluation)
    where seed "" marks a start; arms get a mean ± std row after their seeds."""
    lines = ["**Depth** vs the stereo depth, test frames:", "",
             "| model | seed | " + " | ".join(DEPTH_COLUMNS) + " |", "|---|---|" + "---|" * len(DEPTH_COLUMNS)]

    def with_means(section):
        out, group = [], []
        for k, (model, seed, ev) in enumerate(rows):
            out.append(section(model, seed or "—", [ev]))
            if seed != "":
                group.append(ev)
            if seed != "" and (k + 1 == len(rows) or rows[k + 1][0] != model):
                if len(group) > 1:  # one seed has no spread to show
                    out.append(section(model, "mean ± std", group))
                group = []
        return out

    def depth_row(model, seed, evs):
        cells = [_fmt(evs[0]["depth"][k]) if len(evs) == 1 and seed != "mean ± std"
                 else _mean_std([e["depth"][k] for e in evs]) for k in DEPTH_KEYS]
        return f"| {model} | {seed} | " + " | ".join(cells) + " |"

    lines += with_means(depth_row)
    lines += ["", f"**Odometry** vs the INS poses (mounting fitted on frames {fit_frames}), test frames; "
              "classical (unit steps): " + ", ".join(f"{c} {_fmt(classical[k])}" for c, k in
                                                     zip(ODOM_COLUMNS, ODOM_KEYS) if np.isfinite(classical[k])), ""]
    for method in ("PoseNet", "refined", "classical + depth scale"):
        lines += [f"{method}:", "", "| model | seed | " + " | ".join(ODOM_COLUMNS) + " |",
                  "|---|---|" + "---|" * len(ODOM_COLUMNS)]

        def odom_row(model, seed, evs, method=method):
            got = [e["odometry"][method] for e in evs if method in e["odometry"]]
            if not got:
                return f"| {model} | {seed} | " + " | ".join("—" for _ in ODOM_KEYS) + " |"
            cells = [_fmt(got[0][k]) if len(evs) == 1 and seed != "mean ± std"
                     else _mean_std([g[k] for g in got]) for k in ODOM_KEYS]
            return f"| {model} | {seed} | " + " | ".join(cells) + " |"

        lines += with_means(odom_row) + [""]
    return "\n".join(lines)


def picture(path: Path, image: np.ndarray, pred: np.ndarray, stereo: np.ndarray, caption: str,
            width: int = 448) -> Path:
    """A real frame above its predicted depth and the stereo depth, both coloured on the stereo
    depth's inverse-depth range so that the same colour is the same distance."""
    valid = stereo[stereo > 0]
    near, far = np.percentile(valid, [2, 98])
    h = round(image.shape[0] * width / image.shape[1])
    rows = [cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), (width, h), interpolation=cv2.INTER_AREA)]
    for depth, label in ((pred, caption), (stereo, "stereo depth (black: no match)")):
        row = cv2.resize(colorize_depth(depth, near, far), (width, h), interpolation=cv2.INTER_NEAREST)
        cv2.rectangle(row, (0, 0), (8 + 7 * len(label), 16), (0, 0, 0), cv2.FILLED)
        cv2.putText(row, label, (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.concatenate(rows, axis=0), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"{path}: cannot write PNG")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start", nargs="+", default=["demo"],
                   help="starts, each 'demo' (the model make demo trains and keeps in outputs/demo; the default), "
                        "a checkpoint, or NAME=CHECKPOINT")
    p.add_argument("--data", type=Path, default=DATA, help="the Karlsruhe sequence folder")
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lrs", type=float, nargs="+", default=[5e-5, 1e-4],
                   help="learning-rate grid, one chosen per arm and start on the validation frames (seed 0)")
    p.add_argument("--steps", type=int, default=300, help="fine-tuning steps of every run")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 18 frames, a 2-step start, 2 fine-tuning steps, one seed, two rates")
    p.add_argument("--cache", type=Path, default=CACHE, help="where the sequence is converted and models kept")
    p.add_argument("--out", type=Path, default=RESULTS / "real_footage", help="saved evaluations")
    p.add_argument("--picture", type=Path, default=None, help=f"the depth picture (default {PICTURE}; "
                   "with --quick, in --out)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    split = QUICK if args.quick else FULL
    if args.quick:
        args.seeds, args.lrs, args.steps, args.batch = args.seeds[:1], args.lrs[:2], 2, 2
    common.use_cache(args.cache)
    picture_path = args.picture or (args.out / "real_footage_depth.png" if args.quick else PICTURE)
    t_start = time.time()
    log = lambda *a: print(*a, flush=True)  # noqa: E731

    if not (args.data / "poses.txt").is_file():
        print(f"real_footage: the Karlsruhe sequence is not at {args.data}", file=sys.stderr)
        return 2
    root, height = prepare(args.data, args.cache, split.test.stop if args.quick else 0, log)
    seq = KittiOdometrySequence(root, "00", camera=0)
    nominal = np.stack([seq.pose(i) for i in range(len(seq))])

    # the classical odometry once: it fits the mounting on frames 0-249 and is scored on the test frames
    t0 = time.time()
    motions = classical_vo.run(grey_frames(seq, range(split.test.stop)), seq.intrinsics())
    classical_rel = np.stack([m.rel for m in motions])
    fit_pairs = range(split.train.start, split.val.stop - 1)
    X = fit_mounting(absolute_to_relative(nominal)[fit_pairs], classical_rel[fit_pairs])
    gt = remount(nominal[:split.test.stop], X)
    turn = np.degrees(np.linalg.norm(_rotvec(X)))
    log(f"classical odometry: {len(motions)} pairs in {time.time() - t0:.0f} s, "
        f"{sum(m.ok for m in motions)} solved; mounting fitted on frames {split.train.start}-{split.val.stop - 1}: "
        f"{turn:.2f}° from the nominal one (rotation vector {np.round(np.degrees(_rotvec(X)), 2).tolist()} °)")
    test_rel = classical_rel[split.test.start:split.test.stop - 1]
    classical = score_odometry(gt[split.test.start:split.test.stop], test_rel, full=False)
    raw = score_odometry(nominal[split.test.start:split.test.stop], test_rel, full=False)
    log(f"classical on the test frames: 5-frame ATE {classical['ate5']:.4f} m, direction "
        f"{classical['direction_deg']:.2f}°/pair (nominal mounting: {raw['ate5']:.4f} m, "
        f"{raw['direction_deg']:.2f}°)")

    def evaluation(name: str, path: Path, part: str):
        frames = getattr(split, part)
        sub_gt = gt[frames.start:frames.stop]
        sub_motions = motions[frames.start:frames.stop - 1]
        settings = {"model": str(path), "model_mtime": path.stat().st_mtime, "frames": [frames.start, frames.stop],
                    "height": height, "mounting": X.round(9).tolist()}

        def make():
            t = time.time()
            result = evaluate(path, seq, frames, height, sub_gt, sub_motions)
            log(f"  evaluated {name} on {part} frames {frames.start}-{frames.stop - 1} in {time.time() - t:.0f} s: "
                f"AbsRel {result['depth']['abs_rel']:.3f}")
            return result

        return cached(args.out / f"{name}_{part}.json", settings, make)

    rows, val_rows, picture_model = [], [], None
    for s, start_arg in enumerate(args.start):
        name, _, given = start_arg.rpartition("=") if "=" in start_arg else (start_arg, "", "")
        if given:
            start = Path(given)
        else:
            start = (tiny_start(args.cache, log) if args.quick else demo_start(log)) if name == "demo" else Path(name)
            name = "demo" if name == "demo" else Path(name).parent.name
        label = f"{name} start"
        tag = f"start{s}"
        log(f"{label}: {start}")
        rows.append((f"{label} (no fine-tuning)", "", evaluation(tag, start, "test")))
        choose = len(args.lrs) > 1  # one rate leaves nothing to choose: the validation frames are not run
        if choose:
            val_rows.append((label, "—", "—", evaluation(tag, start, "val")["depth"]["abs_rel"]))
        for arm in args.arms:
            def run_name(seed, lr, arm=arm, tag=tag):
                return f"{tag}_{arm}_lr{lr:g}_seed{seed}"

            def model(seed, lr, arm=arm, start=start):
                return finetune(start, arm, seed, lr, args, seq, split, args.cache / "runs" / run_name(seed, lr), log)

            lr = args.lrs[0]
            if choose:
                val = {}
                for lr in args.lrs:
                    seed0 = run_name(args.seeds[0], lr)
                    val[lr] = evaluation(seed0, model(args.seeds[0], lr), "val")["depth"]["abs_rel"]
                    val_rows.append((f"{label} + {ARMS[arm][0]}", f"{lr:g}", str(args.seeds[0]), val[lr]))
                lr = min(val, key=val.get)
                log(f"  {ARMS[arm][0]}: lr {lr:g} chosen on the validation frames")
            for seed in args.seeds:
                path = model(seed, lr)
                result = evaluation(run_name(seed, lr), path, "test")
                rows.append((f"{label} + {ARMS[arm][0]} (lr {lr:g})", str(seed), result))
                if arm == "sa4depth" and seed == args.seeds[0] and s == 0:
                    picture_model = path

    # the picture: one test frame in the middle of the held-out part, the first SA4Depth run's depth
    frame = split.test.start + len(split.test) // 2
    if picture_model is not None:
        loaded = load_model(picture_model)
        run = run_sequence(loaded, seq, torch.device("cpu"), range(frame - 20 if not args.quick else frame, frame + 1),
                           odometry=False, options=PipelineOptions(scale_mode="camera_height", camera_height=height))
        picture(picture_path, seq.image(frame), run.depths[-1], seq.gt_depth(frame),
                f"SA4Depth fine-tuned, seed {args.seeds[0]} (camera-height metric)")

    minutes = (time.time() - t_start) / 60
    report = [f"## real_footage ({time.strftime('%Y-%m-%d')})", "",
              f"Machine: {machine()}.",
              f"Budget: {args.steps} fine-tuning steps (batch {args.batch}) per arm and seed; seeds "
              f"{', '.join(map(str, args.seeds))}; learning-rate grid {', '.join(f'{lr:g}' for lr in args.lrs)}; "
              f"frames: fine-tuning {split.train.start}-{split.train.stop - 1}, validation {split.val.start}-"
              f"{split.val.stop - 1}, test {split.test.start}-{split.test.stop - 1}; camera height {height:.3f} m "
              f"(measured on the stereo depth); mounting fitted {turn:.2f}° from the nominal one; "
              f"wall time {minutes:.1f} min (pieces reused from earlier runs count as 0).", "",
              *(["Validation frames, median-scaled AbsRel (what chooses the learning rate):", "",
                 "| model | lr | seed | val AbsRel |", "|---|---|---|---|",
                 *[f"| {m} | {lr} | {seed} | {v:.3f} |" for m, lr, seed, v in val_rows]] if val_rows else
                ["One learning rate given: nothing chosen, the validation frames not run."]), "",
              tables(rows, classical, f"{split.train.start}-{split.val.stop - 1}"), "",
              f"Classical odometry against the nominal mounting (no fit): 5-frame ATE {raw['ate5']:.4f} m, "
              f"rotation {raw['rotation_deg']:.3f}°/pair, direction {raw['direction_deg']:.2f}°/pair."]
    if picture_model is not None:
        report.append(f"Picture: {picture_path} (test frame {frame}).")
    text = "\n".join(report)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "real_footage.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
