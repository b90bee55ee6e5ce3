"""Shared pieces of the benchmarks: machine description, cached synthetic data, train + evaluate."""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sa4depth_core.config import load_config  # noqa: E402
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence  # noqa: E402
from sa4depth_core.data.sequence import TripletDataset  # noqa: E402
from sa4depth_core.data.synth import generate_sequence  # noqa: E402
from sa4depth_core.eval.depth_metrics import evaluate_depth  # noqa: E402
from sa4depth_core.eval.odometry_metrics import absolute_to_relative, odometry_errors, pair_errors, snippet_ate  # noqa: E402
from sa4depth_core.eval.scale_consistency import frame_scale_ratios, pose_depth_scale_ratios  # noqa: E402
from sa4depth_core.backends import make_networks  # noqa: E402
from sa4depth_core.backends.hardware import cpu_flags, native_bf16  # noqa: E402
from sa4depth_core.loaded_model import LoadedModel  # noqa: E402
from sa4depth_core.train.trainer import Trainer  # noqa: E402
from sa4depth_core.eval.run_model import run_sequence  # noqa: E402
from sa4depth_core.geometry import invert_transform  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"
RESULTS = ROOT / "benchmarks" / "results"
KITTI_GT = ROOT.parent / "shared" / "data" / "kitti_odometry" / "gt_poses"


# the CPU features that decide which inference backend and precision is fastest
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def speed_flags() -> list[str]:
    """Those of FLAGS this CPU has."""
    return sorted(f for f in FLAGS if f in cpu_flags())


def flags_line() -> str:
    """'CPU flags: ...; native bf16: ...' for a speed benchmark's heading (machines differ)."""
    return f"CPU flags: {', '.join(speed_flags()) or 'none of ' + ', '.join(FLAGS)}; native bf16: {native_bf16() or 'no'}"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"Python {platform.python_version()}")


def use_cache(path: Path) -> None:
    """Generate and read the synthetic worlds under `path` instead of benchmarks/.cache (a test's
    temporary directory)."""
    global CACHE
    CACHE = Path(path)


def synthetic(name: str, frames: int, height: int, width: int, seed: int, trajectory: str = "car",
              camera_height: float = 1.65, kitti_poses: str | None = None, kitti_start: int = 0) -> tuple[Path, str]:
    """Generate (once) and return (root, sequence) of a cached synthetic sequence."""
    root = CACHE / f"{name}_{frames}f_{height}x{width}"
    seq = "00"
    done = root / "sequences" / seq / "synth.json"
    if not done.exists():
        generate_sequence(root, seq, num_frames=frames, height=height, width=width, seed=seed,
                          trajectory=trajectory, camera_height=camera_height, kitti_poses=kitti_poses,
                          kitti_start=kitti_start, overwrite=True)
    return root, seq


def exact_geometry(depth: torch.Tensor, batch: dict, dtype: torch.dtype = torch.float32):
    """A batch's exact depth and relative poses in the scale of the predicted `depth`.

    Args:
        depth: (B,1,h,w) predicted depth of the target frames.
        batch: collated TripletDataset items with depth_gt [(1,H0,W0)] and pose_gt (B,F,4,4) camera-to-world.
        dtype: of the returned poses.
    Returns:
        scale (median predicted / exact depth over pixels with exact depth), exact depth (B,1,h,w)
        resampled to `depth`'s size (nearest; 0 where there is none, metres), and per source frame
        (B,4,4) T_t->s with its translation multiplied by scale.
    """
    exact = F.interpolate(torch.stack(batch["depth_gt"]), size=depth.shape[-2:], mode="nearest")
    valid = exact > 0
    scale = float(depth[valid].median() / exact[valid].median())
    world = batch["pose_gt"].to(dtype)
    poses = []
    for i in range(1, world.shape[1]):
        T = invert_transform(world[:, i]) @ world[:, 0]
        T[:, :3, 3] *= scale
        poses.append(T)
    return scale, exact, poses


def train(cfg_overrides: list[str], train_seqs: list[tuple[Path, str]], out_dir: Path, log=print) -> Trainer:
    """Train from scratch into `out_dir` (emptied first: a run never starts from an older one's files)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    cfg = load_config(None, cfg_overrides + [f"train.out_dir={out_dir}"])
    seqs = [KittiOdometrySequence(r, s) for r, s in train_seqs]
    data = TripletDataset(seqs, cfg.model.height, cfg.model.width, augment=cfg.data.augment, seed=cfg.train.seed)
    trainer = Trainer(cfg, data, None, log=log)
    trainer.fit()
    return trainer


def trained_model(name: str, refine: bool, steps: int = 400, seed: int = 0, size=(64, 192), runs: Path | None = None,
                  train_frames: int = 120) -> Path:
    """best.pt of a model trained on the training worlds (SA4Depth, or the Monodepth2 loss when
    `refine` is False), trained once and kept in <runs>/<name> (default benchmarks/results/runs)
    for the benchmarks that only need some trained model (delete the folder to train anew)."""
    from worlds import worlds

    h, w = size
    out = (RESULTS / "runs" if runs is None else Path(runs)) / name
    if not (out / "best.pt").exists():
        train([f"model.height={h}", f"model.width={w}", "train.batch_size=4", "train.epochs=1000",
               f"train.max_steps={steps}", "train.val_every=1000000", "train.save_every=1000000", "train.lr=2e-4",
               f"train.seed={seed}", f"refine.enabled={str(refine).lower()}"], worlds("train", h, w, train_frames), out)
    return out / "best.pt"


# per-pair error summaries (odometry_metrics.pair_errors) every benchmark reports beside the ATEs
PAIR_KEYS = ("rotation_deg_mean", "direction_deg_mean", "direction_deg_median", "scale_ratio_std_over_mean")
ODOMETRY_KEYS = ("ate_7dof", "ate5", "t_err", "pose_depth_ratio_mean", "pose_depth_ratio_std_over_mean") + PAIR_KEYS


def evaluate(trainer_or_model, cfg, seqs: list[tuple[Path, str]], max_frames: int = 0, odometry: bool = True,
             backend: str = "torch", precision: str = "fp32", modes=("posenet", "refined"), options=None) -> dict:
    """Depth (median-scaled AbsRel, d1; AbsRel with one scale per sequence and one for all),
    scale consistency and, with `odometry`, the odometry of each of `modes` (run_model.run_sequence:
    "posenet", "refined", or a fusion name) on held-out sequences, with the pipelines' `options`
    (None: the node's defaults); the networks run on `backend` at `precision` (backends.make_networks)."""
    model = trainer_or_model.model if hasattr(trainer_or_model, "model") else trainer_or_model
    # the features count as trained only where training ran the refinement
    loaded = LoadedModel(model.eval(), cfg, "benchmark", "benchmark", True, cfg.refine.enabled)
    nets, _ = make_networks(loaded, backend, precision, fallback=False)
    gts, preds, per_seq_ratio, out = [], [], [], {"sequences": {}}
    seq_scale_abs_rel, seq_images = [], []
    for root, s in seqs:
        seq = KittiOdometrySequence(root, s)
        frames = range(min(len(seq), max_frames) if max_frames else len(seq))
        run = run_sequence(loaded, seq, torch.device("cpu"), frames, odometry=odometry, nets=nets, refine_modes=modes,
                           options=options)
        g = [seq.gt_depth(i) for i in frames]
        gts += g
        preds += run.depths
        ratios = frame_scale_ratios(g, run.depths, pred_kind="depth", crop="none")
        per_seq_ratio.append(np.nanmean(ratios))
        seq_depth = evaluate_depth(g, run.depths, pred_kind="depth", crop="none")
        seq_scale_abs_rel.append(seq_depth["global_metrics"]["abs_rel"])
        seq_images.append(seq_depth["num_evaluated"])
        gt = np.stack([seq.pose(i) for i in frames])
        seq_out = {"scale_std_over_mean": float(np.nanstd(ratios) / np.nanmean(ratios)),
                   "abs_rel_sequence_scale": seq_scale_abs_rel[-1]}
        gt_rel = absolute_to_relative(gt)
        for mode, est in run.poses.items():
            rel = absolute_to_relative(est)
            pd = pose_depth_scale_ratios(rel, gt_rel, ratios[1:])
            errors = odometry_errors(gt, est, "7dof")
            pairs = pair_errors(gt_rel, rel)
            seq_out[mode] = {
                "ate_7dof": errors["ate"],
                "t_err": errors["t_err"],  # NaN when the trajectory is shorter than every segment length
                "ate5": snippet_ate(rel, gt)["mean"],
                "pose_depth_ratio_mean": pd["mean"],
                "pose_depth_ratio_std_over_mean": pd["std_over_mean"],
                **{key: pairs[key] for key in PAIR_KEYS},
            }
            if mode in run.acceptances:
                seq_out[mode]["acceptance"] = run.acceptances[mode]
        out["sequences"][str(root.name)] = seq_out
    depth = evaluate_depth(gts, preds, pred_kind="depth", crop="none")
    out["abs_rel"] = depth["metrics"]["abs_rel"]
    out["a1"] = depth["metrics"]["a1"]
    out["abs_rel_one_scale"] = depth["global_metrics"]["abs_rel"]
    # weighted by evaluated images: the mean over all images, each scaled by its sequence's one scale
    out["abs_rel_sequence_scale"] = float(np.average(seq_scale_abs_rel, weights=seq_images))
    ratios = np.array(per_seq_ratio)
    out["scale_across_sequences_std_over_mean"] = float(ratios.std() / ratios.mean())
    return out


def _finite_mean(values) -> float:
    """Mean of the finite values, NaN when there is none (e.g. t_err of short trajectories)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def summarize(result: dict) -> dict:
    """Scalars of one `evaluate` result, per-sequence figures averaged over its sequences; the
    odometry keys ("<mode> <key>" for each trajectory, "posenet", "refined", ...) only for the
    trajectories and keys it has."""
    seqs = list(result["sequences"].values())
    out = {
        "abs_rel": result["abs_rel"],
        "a1": result["a1"],
        "abs_rel_sequence_scale": result["abs_rel_sequence_scale"],
        "abs_rel_one_scale": result["abs_rel_one_scale"],
        "scale_std_over_mean": float(np.mean([s["scale_std_over_mean"] for s in seqs])),
        "scale_across_sequences_std_over_mean": result["scale_across_sequences_std_over_mean"],
    }
    for mode in [m for m in seqs[0] if isinstance(seqs[0][m], dict)]:
        # a study piece saved before a key existed lacks it: its tables print "—" there
        for key in [k for k in ODOMETRY_KEYS if k in seqs[0][mode]]:
            out[f"{mode} {key}"] = _finite_mean([s[mode][key] for s in seqs])
        if "acceptance" in seqs[0][mode]:
            out[f"{mode} acceptance"] = _finite_mean([s[mode]["acceptance"] for s in seqs])
    return out


def save_result(name: str, data: dict, directory: Path = RESULTS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    data = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), **data}
    path.write_text(json.dumps(data, indent=2, default=float) + "\n")
    return path
