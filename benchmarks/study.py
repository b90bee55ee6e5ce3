"""A fair SA4Depth vs Monodepth2 study: one working start for everyone, four arms, every choice
made on the validation worlds, the test worlds touched once for the final table.

Stages (--sections; each uses the saved results of the ones before it):
  start   one start for every arm, from the `pretrain` worlds only: the depth network supervised
          on their exact depth (scale-invariant log loss; it stands in for the ImageNet
          pre-training of the paper's models), then PoseNet supervised on their exact relative
          poses with the depth network frozen, the translations brought to that depth's scale (a
          stand-in for a pose network trained beforehand). A self-supervised Monodepth2 phase
          did not make PoseNet work: after 300 steps (lr 1e-4, depth frozen) its translations
          were 0.047 of the depth's scale, 0.16 at lr 1e-3, and the arms trained from such a
          start shrank their depth to meet it (Monodepth2 arm, val AbsRel 0.178 -> 0.637). The
          depth phase is short on purpose (--sup-steps, chosen on the val worlds): from a start
          that supervision had taken further than self-supervision reaches in the arms' budget,
          every arm only lost accuracy (Monodepth2 arm, lr 5e-5, 360 steps: 150 supervised steps,
          val AbsRel 0.221 -> 0.251; 400: 0.188 -> 0.217; 800: 0.177 -> 0.212), while from 60
          steps it improves (0.325 -> 0.302). An ImageNet-initialised encoder, which this stands
          in for, gives no depth at all, so a weak start is the closer stand-in
  select  per arm, the learning rate of --lrs with the lowest median-scaled AbsRel on the `val`
          worlds after --steps steps on the `train` worlds (seed 0)
  final   every arm at its rate for every seed (seed 0's selection run is reused); the start and
          the arms evaluated once on the `test` worlds, the runs also on the `val` worlds (does
          the baseline improve on the start?); the table

Arms (same start, seeds, data order, steps and optimizer; they differ only in the loss):
  (1) monodepth2             the Monodepth2 loss
  (2) monodepth2_aux         (1) + SA4Depth's auxiliary photometric weight with PoseNet's pose
                             (loss.baseline_aux): depth gets the same total supervision as in (3)
  (3) sa4depth               SA4Depth as configured by default
  (4) sa4depth_aux_detached  (3) with the auxiliary terms giving depth no gradient
                             (refine.aux_trains_depth=false)

Each finished piece (the start, each arm/lr/seed run, each evaluation) is saved as JSON under
--out with the settings that made it, and reused while they match (unless --fresh).

    python benchmarks/study.py                   # the full study: about 80 min on 2 idle cores
    python benchmarks/study.py --sections final  # the table again from the saved pieces
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler

import common
from common import RESULTS, evaluate, exact_geometry, machine, summarize, train
from sa4depth_core.checkpoint import atomic_write_bytes, file_sha256, load_checkpoint, save_checkpoint
from sa4depth_core.config import load_config
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.data.sequence import TripletDataset
from sa4depth_core.geometry import invert_transform, se3_log
from sa4depth_core.loaded_model import load_model
from sa4depth_core.model import SA4DepthModel
from sa4depth_core.networks.depth_decoder import disp_to_depth
from sa4depth_core.train.trainer import collate, seed_everything
from worlds import WORLDS, worlds

ARMS = {
    "monodepth2": ("(1) Monodepth2 loss", ["refine.enabled=false"]),
    "monodepth2_aux": ("(2) Monodepth2 loss + SA4Depth's auxiliary weight", ["refine.enabled=false",
                                                                            "loss.baseline_aux=true"]),
    "sa4depth": ("(3) SA4Depth", ["refine.enabled=true"]),
    "sa4depth_aux_detached": ("(4) SA4Depth, auxiliary terms without depth gradient",
                              ["refine.enabled=true", "refine.aux_trains_depth=false"]),
}
REFERENCE_ARM = "monodepth2"  # step times are given relative to it
SECTIONS = ("start", "select", "final")
SELECTION_SEED = 0
# The start is not tuned (it only has to work; its validation AbsRel is printed). Its seed is
# fixed: the arms' seeds vary their own data order and augmentation, not their start.
START_LR, START_SEED = 1e-4, 0
POSE_ROTATION_WEIGHT = 10.0  # radians against translation in depth units: 0.1 rad weighs as 1 unit
SILOG_LAMBDA = 0.85  # 1 would leave the depth's scale free, 0 is plain log-depth regression

DEPTH_COLUMNS = [("AbsRel", "abs_rel"), ("δ1", "a1"), ("AbsRel, one scale per sequence", "abs_rel_sequence_scale"),
                 ("AbsRel, one scale for all", "abs_rel_one_scale"),
                 ("scale std/mean in sequence", "scale_std_over_mean"),
                 ("scale std/mean across sequences", "scale_across_sequences_std_over_mean"),
                 ("train s/step", "s_per_step"), ("step time ÷ (1)", "step_time_ratio")]
ODOMETRY_COLUMNS = [("ATE (m, Sim3)", "ate_7dof"), ("5-frame ATE (m)", "ate5"), ("t_err (%)", "t_err"),
                    ("pose/depth scale ratio", "pose_depth_ratio_mean"),
                    ("ratio std/mean", "pose_depth_ratio_std_over_mean"),
                    ("rotation err (deg)", "rotation_deg_mean"), ("direction err (deg)", "direction_deg_mean"),
                    ("‖t‖ ratio std/mean", "scale_ratio_std_over_mean")]


class Store:
    """The study's saved pieces, <out>/<name>.json, each with the settings that made it: a piece is
    reused while its settings match, made again otherwise (or always once with --fresh)."""

    def __init__(self, out: Path, fresh: bool):
        self.out, self.fresh, self.made = out, fresh, set()

    def piece(self, name: str, settings: dict, make, may_make: bool, needs_weights: bool = False) -> dict:
        """The data of piece `name`: saved, or made by `make()` when `may_make` (its section runs).

        needs_weights: the piece names a "checkpoint" (relative to out) that must still exist.
        """
        path = self.out / f"{name}.json"
        settings = json.loads(json.dumps(settings))  # as it reads back: tuples are lists
        fresh = may_make and self.fresh and name not in self.made
        if path.exists() and not fresh:
            saved = json.loads(path.read_text())
            if saved["settings"] != settings:
                print(f"{name}: saved with other settings, made again", flush=True)
            elif needs_weights and not (self.out / saved["data"]["checkpoint"]).is_file():
                print(f"{name}: its weights are gone, made again", flush=True)
            else:
                return saved["data"]
        if not may_make:
            raise SystemExit(f"study: {path} is missing or was made with other settings: run the section that "
                             "makes it (--sections start select final)")
        data = make()
        text = json.dumps({"settings": settings, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
                           "data": data}, indent=2, default=float)
        atomic_write_bytes(path, text.encode() + b"\n")
        self.made.add(name)
        return data


def silog(depth: torch.Tensor, gt: torch.Tensor, lam: float = SILOG_LAMBDA) -> torch.Tensor:
    """Scale-invariant log-depth loss (Eigen et al. 2014) over the valid pixels of each image.

    Args:
        depth: (B,1,H,W) predicted; gt: (B,1,H,W) metric depth, 0 where invalid (sky).
    Returns:
        scalar: mean over images of sqrt(mean(d^2) - lam * mean(d)^2), d = log(depth / gt)
    """
    valid = (gt > 0).to(depth.dtype)
    count = valid.sum((1, 2, 3)).clamp_min(1)
    d = (torch.log(depth) - torch.log(gt.clamp_min(1e-3))) * valid
    mean = d.sum((1, 2, 3)) / count
    return torch.sqrt((d.square().sum((1, 2, 3)) / count - lam * mean.square()).clamp_min(1e-8)).mean()


def pretrain_depth(cfg, seqs: list, steps: int, path: Path) -> dict:
    """The stand-in for ImageNet pre-training: the depth network alone, supervised on the exact
    depth of `seqs` by `silog` at every decoder scale upsampled to full resolution (as the
    self-supervised loss uses them, so that no scale enters the next phase untrained). Saved as a
    project checkpoint at `path`; returns its step count, time per step and first/last loss."""
    seed_everything(START_SEED)
    model = SA4DepthModel(cfg).train()
    m = cfg.model
    data = TripletDataset([KittiOdometrySequence(r, s) for r, s in seqs], m.height, m.width, frame_offsets=(0,),
                          augment=True, with_depth=True, seed=START_SEED)
    loader = DataLoader(data, batch_size=cfg.train.batch_size, collate_fn=collate, drop_last=True,
                        sampler=RandomSampler(data, generator=torch.Generator().manual_seed(START_SEED)))
    if len(loader) == 0:
        raise SystemExit(f"study: the pretrain worlds give {len(data)} frames, fewer than a batch")
    params = [p for net in (model.depth_encoder, model.depth_decoder) for p in net.parameters()]
    optimizer = torch.optim.Adam(params, lr=START_LR)
    losses, epoch, t0 = [], 0, time.time()
    while len(losses) < steps:
        data.set_epoch(epoch)
        for batch in loader:
            gt = torch.stack(batch["depth_gt"])
            disps = model.disparities(batch["images_aug"][:, 0])
            loss = sum(silog(disp_to_depth(F.interpolate(disps[("disp", s)], size=gt.shape[-2:], mode="bilinear",
                                                         align_corners=False), m.min_depth, m.max_depth)[1], gt)
                       for s in m.scales) / len(m.scales)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if len(losses) == steps:
                break
        epoch += 1
    wall = time.time() - t0
    save_checkpoint(path, config=cfg.to_dict(), model=model.state_dict(), step=steps)
    return {"steps": steps, "s_per_step": wall / max(steps, 1), "wall_s": wall, "loss_first": losses[0],
            "loss_last": float(np.mean(losses[-10:]))}


def pretrain_pose(cfg, seqs: list, steps: int, init: Path, path: Path) -> dict:
    """The start's PoseNet: supervised on the exact relative poses of `seqs`, their translation
    brought to the scale of the (frozen) depth network of `init` by each batch's median
    prediction/ground-truth depth ratio, so PoseNet and depth agree from the first arm step.
    Saved at `path` with `init`'s depth network; returns its stats and the depth scale used."""
    seed_everything(START_SEED)
    model = SA4DepthModel(cfg)
    model.load_state_dict(load_checkpoint(init)["model"])
    model.freeze(SA4DepthModel.FROZEN["pose"])
    model.train()
    m = cfg.model
    data = TripletDataset([KittiOdometrySequence(r, s) for r, s in seqs], m.height, m.width, augment=True,
                          with_depth=True, seed=START_SEED)
    loader = DataLoader(data, batch_size=cfg.train.batch_size, collate_fn=collate, drop_last=True,
                        sampler=RandomSampler(data, generator=torch.Generator().manual_seed(START_SEED)))
    optimizer = torch.optim.Adam(model.pose_net.parameters(), lr=START_LR)
    losses, scales, epoch, t0 = [], [], 0, time.time()
    while len(losses) < steps:
        data.set_epoch(epoch)
        for batch in loader:
            images = batch["images_aug"]
            with torch.no_grad():
                scale, _, exact_poses = exact_geometry(model.depth(images[:, 0]), batch, torch.float64)
            loss = 0.0
            for i, offset in enumerate(m.frame_offsets[1:], 1):
                T_gt = exact_poses[i - 1]
                error = se3_log(invert_transform(model.relative_pose(images[:, 0], images[:, i], offset).double()) @ T_gt)
                loss = loss + (error[:, :3].abs().sum(-1) + POSE_ROTATION_WEIGHT * error[:, 3:].abs().sum(-1)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            scales.append(scale)
            if len(losses) == steps:
                break
        epoch += 1
    wall = time.time() - t0
    save_checkpoint(path, config=cfg.to_dict(), model=model.state_dict(), step=steps)
    return {"steps": steps, "s_per_step": wall / max(steps, 1), "wall_s": wall, "loss_first": losses[0],
            "loss_last": float(np.mean(losses[-10:])), "depth_scale": float(np.median(scales))}


def overrides(args, lr: float, steps: int, seed: int, extra: list[str]) -> list[str]:
    h, w = size(args)
    return [f"model.height={h}", f"model.width={w}", f"train.batch_size={args.batch}", "train.epochs=1000000",
            f"train.max_steps={steps}", "train.val_every=1000000", "train.save_every=1000000", f"train.lr={lr}",
            f"train.seed={seed}", "train.progress=false", "train.keep_checkpoints=1", *extra]


def size(args) -> tuple[int, int]:
    h, w = (int(v) for v in args.size.split("x"))
    return h, w


class Study:
    """The pieces of the study (see the module docstring) over one Store."""

    def __init__(self, args, store: Store, splits: dict):
        self.args, self.store, self.splits = args, store, splits
        self.base = {"size": args.size, "frames": args.frames, "eval_frames": args.frames // 2, "batch": args.batch}
        self.start_settings = {**self.base, "supervised_steps": args.sup_steps, "pose_steps": args.pose_steps,
                               "pose_rotation_weight": POSE_ROTATION_WEIGHT,
                               "lr": START_LR, "silog_lambda": SILOG_LAMBDA, "seed": START_SEED}
        self.start_data: dict = {}  # set by start()

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    def evaluation(self, name: str, settings: dict, split: str, weights, may_make: bool,
                   odometry: bool | None = None) -> dict:
        """The evaluation of the weights `weights()` (a path relative to out) on `split`: by default
        depth only on the validation worlds, depth and odometry on the test worlds."""
        odometry = split == "test" if odometry is None else odometry

        def make() -> dict:
            loaded = load_model(self.store.out / weights())
            t0 = time.time()
            result = evaluate(loaded.model, loaded.cfg, self.splits[split], odometry=odometry)
            self.log(f"{name} on {split}: AbsRel {result['abs_rel']:.4f} ({time.time() - t0:.0f} s)")
            return result

        return self.store.piece(f"{name}_{split}", {**settings, "split": split, "odometry": odometry}, make, may_make)

    def start(self, may_make: bool) -> dict:
        """The common start: {"checkpoint", "supervised" (that phase's stats), "val", "supervised_val",
        "sha256"}; the other stages read it from `start_data`."""
        store, args = self.store, self.args
        cfg_overrides = overrides(args, START_LR, args.pose_steps, START_SEED, ["refine.enabled=false"])

        def make_supervised() -> dict:
            stats = pretrain_depth(load_config(None, cfg_overrides), self.splits["pretrain"], args.sup_steps,
                                   store.out / "runs" / "start_supervised.pt")
            self.log(f"start, supervised: {stats['steps']} steps, {stats['s_per_step']:.2f} s/step, silog "
                     f"{stats['loss_first']:.3f} -> {stats['loss_last']:.3f}")
            return {"checkpoint": "runs/start_supervised.pt", **stats}

        def make_start() -> dict:
            supervised = store.piece("start_supervised", self.start_settings, make_supervised, may_make, True)
            path = store.out / "runs" / "start" / "best.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            stats = pretrain_pose(load_config(None, cfg_overrides), self.splits["pretrain"], args.pose_steps,
                                  store.out / supervised["checkpoint"], path)
            self.log(f"start, pose supervised: {stats['steps']} steps, {stats['s_per_step']:.2f} s/step, loss "
                     f"{stats['loss_first']:.3f} -> {stats['loss_last']:.3f}, depth scale {stats['depth_scale']:.3f}")
            return {"checkpoint": "runs/start/best.pt", **stats, "supervised": supervised}

        start = store.piece("start", self.start_settings, make_start, may_make, needs_weights=True)
        start["supervised_val"] = self.evaluation("start_supervised", self.start_settings, "val",
                                                  lambda: "runs/start_supervised.pt", may_make)
        # with PoseNet's odometry: does the start's pose agree with its depth on worlds it never saw?
        start["val"] = self.evaluation("start", self.start_settings, "val", lambda: start["checkpoint"], may_make,
                                       odometry=True)
        # the runs name the start's content: a start made again is a new start for every run
        start["sha256"] = file_sha256(store.out / start["checkpoint"])
        self.start_data = start
        return start

    def trained(self, name: str, cfg_overrides: list[str], split: str) -> dict:
        """Train `name` on the worlds of `split`; returns its checkpoint and time per step."""
        out_dir = self.store.out / "runs" / name
        t0 = time.time()
        trainer = train(cfg_overrides, self.splits[split], out_dir, log=lambda *a: None)
        wall = time.time() - t0
        shutil.rmtree(out_dir / "checkpoints")  # optimizer states: only best.pt (the last step) is used
        steps = max(trainer.step, 1)
        self.log(f"{name}: {trainer.step} steps on the {split} worlds, {wall / steps:.2f} s/step")
        return {"checkpoint": f"runs/{name}/best.pt", "steps": trainer.step, "s_per_step": wall / steps, "wall_s": wall}

    def run_settings(self, arm: str, lr: float, seed: int) -> dict:
        return {**self.base, "start": self.start_data["sha256"], "arm": ARMS[arm][1], "lr": lr, "seed": seed,
                "steps": self.args.steps}

    def run(self, arm: str, lr: float, seed: int, may_make: bool, needs_weights: bool = False) -> dict:
        """One arm trained from the start at `lr` with `seed`: {"checkpoint", "s_per_step", ...}."""
        name = run_name(arm, lr, seed)
        extra = [*ARMS[arm][1], f"train.init={self.store.out / self.start_data['checkpoint']}"]
        return self.store.piece(
            name, self.run_settings(arm, lr, seed),
            lambda: self.trained(name, overrides(self.args, lr, self.args.steps, seed, extra), "train"),
            may_make, needs_weights)

    def run_evaluation(self, arm: str, lr: float, seed: int, split: str, may_make: bool) -> dict:
        return self.evaluation(run_name(arm, lr, seed), self.run_settings(arm, lr, seed), split,
                               lambda: self.run(arm, lr, seed, may_make, needs_weights=True)["checkpoint"], may_make)

    def select(self, may_make: bool) -> dict:
        """{arm: {"lr": chosen rate, "val": {lr: validation AbsRel}}}, seed 0 per rate."""
        grid = {arm: {} for arm in self.args.arms}
        for lr in self.args.lrs:
            for arm in self.args.arms:
                grid[arm][lr] = self.run_evaluation(arm, lr, SELECTION_SEED, "val", may_make)["abs_rel"]
        chosen = {arm: {"lr": min(scores, key=scores.get), "val": scores} for arm, scores in grid.items()}
        if may_make:  # the weights of the rates not chosen are never evaluated again
            for arm, choice in chosen.items():
                for lr in set(self.args.lrs) - {choice["lr"]}:
                    (self.store.out / "runs" / run_name(arm, lr, SELECTION_SEED) / "best.pt").unlink(missing_ok=True)
        return chosen

    def final(self, chosen: dict, may_make: bool) -> dict:
        """{"start": test scalars, arm: [per seed {test scalars, "val_abs_rel", step times}]}."""
        rows = {"start": summarize(self.evaluation("start", self.start_settings, "test",
                                                   lambda: self.start_data["checkpoint"], may_make))}
        for arm in self.args.arms:
            rows[arm] = []
        for seed in self.args.seeds:
            for arm in self.args.arms:
                lr = chosen[arm]["lr"]
                test = self.run_evaluation(arm, lr, seed, "test", may_make)
                val = self.run_evaluation(arm, lr, seed, "val", may_make)
                rows[arm].append({**summarize(test), "val_abs_rel": val["abs_rel"],
                                  "s_per_step": self.run(arm, lr, seed, may_make)["s_per_step"]})
        reference = REFERENCE_ARM if REFERENCE_ARM in self.args.arms else self.args.arms[0]
        for arm in self.args.arms:
            for row, ref in zip(rows[arm], rows[reference]):
                row["step_time_ratio"] = row["s_per_step"] / ref["s_per_step"]
        return rows


def run_name(arm: str, lr: float, seed: int) -> str:
    return f"{arm}_lr{lr:g}_seed{seed}"


def cell(value) -> str:
    """A table entry: "—" where the metric does not exist, n/a where it is undefined (NaN)."""
    if value is None:
        return "—"
    return f"{value:.4f}" if np.isfinite(value) else "n/a"


def mean_std(values: list) -> str:
    """mean ± std over seeds (ddof=1), "—" / n/a as in `cell`."""
    if any(v is None for v in values):
        return "—"
    v = np.array(values, dtype=float)
    if not np.isfinite(v).all():
        return "n/a"
    return f"{v.mean():.4f} ± " + (f"{v.std(ddof=1):.4f}" if len(v) > 1 else "n/a (1 seed)")


def runs_table(columns: list[tuple[str, str]], rows: dict, args) -> None:
    """Rows: the start, then per arm each seed and mean ± std; columns (label, key); keys a row
    lacks (refined odometry of a model without trained features) print as "—"."""
    print("| model | seed | " + " | ".join(label for label, _ in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    print("| start | — | " + " | ".join(cell(rows["start"].get(key)) for _, key in columns) + " |")
    for arm in args.arms:
        label = ARMS[arm][0]
        for seed, row in zip(args.seeds, rows[arm]):
            print(f"| {label} | {seed} | " + " | ".join(cell(row.get(key)) for _, key in columns) + " |")
        print(f"| {label} | mean ± std | " + " | ".join(mean_std([r.get(k) for r in rows[arm]]) for _, k in columns)
              + " |")
    print()


def report(args, study: Study, start: dict, chosen: dict | None, rows: dict | None, stage_s: dict) -> None:
    """The markdown section: settings, the start, the choices, the baseline check and the table."""
    h, w = size(args)
    print(f"\n## study ({machine()})\n")
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}; sections {' '.join(args.sections)}. Worlds "
          f"({h}x{w}): " + "; ".join(f"{split} {', '.join(r.name for r, _ in study.splits[split])}"
                                     for split in WORLDS) +
          f". Training worlds {args.frames} frames, validation and test worlds {args.frames // 2}. Batch {args.batch}, "
          f"Adam, every arm {args.steps} steps from the same start with the same seeds and data order.\n")
    sup = start["supervised"]
    print(f"**Start** (pretrain worlds only, lr {START_LR:g}, not tuned): {sup['steps']} steps of depth supervised "
          f"on exact depth (scale-invariant log loss, λ {SILOG_LAMBDA}; silog {sup['loss_first']:.3f} -> "
          f"{sup['loss_last']:.3f}), validation AbsRel {start['supervised_val']['abs_rel']:.4f}; then "
          f"{start['steps']} steps of PoseNet supervised on the exact relative poses, their translation in the depth "
          f"network's scale (×{start['depth_scale']:.3f}; loss {start['loss_first']:.3f} -> {start['loss_last']:.3f}), "
          f"the depth network frozen: validation AbsRel {start['val']['abs_rel']:.4f}. Its PoseNet on the validation "
          "worlds, translation over what its depth implies (1 = they agree; mean per world) and 5-frame ATE: "
          + "; ".join(f"{world.rsplit('_', 2)[0]} {seq['posenet']['pose_depth_ratio_mean']:.2f}, "
                      f"{seq['posenet']['ate5']:.3f} m" for world, seq in start["val"]["sequences"].items()) + ".\n")
    if chosen is not None:
        print(f"**Learning rate per arm**, chosen on the validation worlds (median-scaled AbsRel, seed "
              f"{SELECTION_SEED}, {args.steps} steps; chosen in bold):\n")
        print("| arm | " + " | ".join(f"lr {lr:g}" for lr in args.lrs) + " |")
        print("|---|" + "---|" * len(args.lrs))
        for arm, choice in chosen.items():
            print(f"| {ARMS[arm][0]} | " + " | ".join(
                f"**{choice['val'][lr]:.4f}**" if lr == choice["lr"] else f"{choice['val'][lr]:.4f}" for lr in args.lrs)
                + " |")
        picks = ", ".join(f"{ARMS[arm][0]} lr {choice['lr']:g}" for arm, choice in chosen.items())
        print(f"\nChosen: {picks}. The training "
              f"budget ({args.steps} steps) is not chosen: it is what fits the time budget.\n")
    if rows is not None:
        print("**Validation AbsRel** (median-scaled) of the final runs against the start:\n")
        print("| model | lr | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean ± std |")
        print("|---|---|" + "---|" * (len(args.seeds) + 1))
        print("| start | — | " + " | ".join("—" for _ in args.seeds) + f" | {start['val']['abs_rel']:.4f} |")
        for arm in args.arms:
            vals = [r["val_abs_rel"] for r in rows[arm]]
            print(f"| {ARMS[arm][0]} | {chosen[arm]['lr']:g} | " + " | ".join(f"{v:.4f}" for v in vals)
                  + f" | {mean_std(vals)} |")
        print()
        if REFERENCE_ARM in rows:
            base = np.mean([r["val_abs_rel"] for r in rows[REFERENCE_ARM]])
            gain = start["val"]["abs_rel"] - base
            verdict = (f"improves on the start by {gain:.4f}" if gain > 0 else
                       f"DOES NOT improve on the start (worse by {-gain:.4f}): the comparison below is between "
                       "arms that did not learn from the training worlds")
            print(f"Baseline check on the validation worlds: start {start['val']['abs_rel']:.4f}, "
                  f"{ARMS[REFERENCE_ARM][0]} {base:.4f} (mean over seeds): the baseline {verdict}.\n")
        print(f"**Test worlds** (touched once, for this table), per seed then mean ± std over seeds {args.seeds} "
              "(ddof=1). Depth median-scaled per image unless one scale is named; step times measured in this "
              "run (a resumed run's come from the session that trained it).\n")
        runs_table(DEPTH_COLUMNS, rows, args)
        print("PoseNet-only odometry (t_err: n/a where the trajectories are shorter than the 100 m segments):\n")
        runs_table([(label, f"posenet {key}") for label, key in ODOMETRY_COLUMNS], rows, args)
        print("Refined odometry (only where the features were trained: arms without refinement have none):\n")
        runs_table([(label, f"refined {key}") for label, key in ODOMETRY_COLUMNS]
                   + [("acceptance", "refined acceptance")], rows, args)
    print("Wall time of this invocation (saved pieces reused cost nothing): "
          + ", ".join(f"{name} {s:.0f} s" for name, s in stage_s.items()) + f", total {sum(stage_s.values()):.0f} s.")


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lrs", type=float, nargs="+", default=[5e-5, 1e-4], help="grid of each arm's learning rate")
    p.add_argument("--steps", type=int, default=240, help="training steps of every arm run")
    p.add_argument("--sup-steps", type=int, default=60, help="supervised depth steps of the start")
    p.add_argument("--pose-steps", type=int, default=600, help="supervised PoseNet steps of the start")
    p.add_argument("--frames", type=int, default=120, help="frames per pretrain/train world (val and test: half)")
    p.add_argument("--size", default="64x192", help="HxW of the networks and the worlds")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--out", type=Path, default=RESULTS / "study", help="saved pieces and weights")
    p.add_argument("--cache", type=Path, default=common.CACHE, help="where the synthetic worlds are generated")
    p.add_argument("--fresh", action="store_true", help="make the pieces of the chosen sections again")
    args = p.parse_args(argv)
    if SELECTION_SEED not in args.seeds:
        p.error(f"--seeds must include {SELECTION_SEED}, the seed of the selection runs")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    common.use_cache(args.cache)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"study: {machine()}, CPU capability {torch.backends.cpu.get_cpu_capability()}", flush=True)
    print(f"command: study.py {' '.join(sys.argv[1:] if argv is None else argv)}", flush=True)
    runs = len(args.arms) * (len(args.lrs) + len(args.seeds) - 1)
    print(f"plan: start {args.sup_steps} depth + {args.pose_steps} pose supervised steps; {runs} arm runs of "
          f"{args.steps} steps ({len(args.arms)} arms x {len(args.lrs)} rates on seed {SELECTION_SEED}, then "
          f"{len(args.seeds) - 1} more seeds at the chosen rate)", flush=True)
    h, w = size(args)
    splits = {split: worlds(split, h, w, args.frames if split in ("pretrain", "train") else args.frames // 2)
              for split in WORLDS}
    study = Study(args, Store(args.out, args.fresh), splits)
    stage_s, chosen, rows = {}, None, None
    t0 = time.time()
    start = study.start(may_make="start" in args.sections)
    stage_s["start"] = time.time() - t0
    if "select" in args.sections or "final" in args.sections:
        t0 = time.time()
        chosen = study.select(may_make="select" in args.sections)
        stage_s["select"] = time.time() - t0
    if "final" in args.sections:
        t0 = time.time()
        rows = study.final(chosen, may_make=True)
        stage_s["final"] = time.time() - t0
    report(args, study, start, chosen, rows, stage_s)
    if rows is not None:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        common.save_result("study", {"args": settings, "chosen": chosen,
                                     "start": start, "rows": rows}, directory=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
