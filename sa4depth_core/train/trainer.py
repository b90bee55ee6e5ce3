"""Training loop: single process or DDP under torchrun, with validation, atomic checkpoints,
resumption and guards against diverging steps."""
from __future__ import annotations

import csv
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from ..checkpoint import check_finite_weights, features_trained, load_checkpoint, save_checkpoint
from ..config import Config, check_training
from ..errors import InputError
from ..eval.depth_metrics import evaluate_depth
from ..model import SA4DepthModel
from ..networks.depth_decoder import disp_to_depth
from ..networks.monodepth2_io import load_monodepth2_folder, model_settings
from ..objective import compute_losses
from .distributed import all_reduce_mean, init_distributed, shutdown
from .progress import TrainProgress
from .step import guarded_step


MODEL_KEYS_FROM_INIT = ("num_layers", "height", "width", "min_depth", "max_depth")


def _adopt_init_model(cfg: Config, log) -> None:
    """Fitting the refiner keeps the initial depth and pose networks: take their architecture and
    size from `train.init` (a checkpoint's config, or a Monodepth2 folder's encoder) so they load."""
    t = cfg.train
    if not cfg.refine.enabled:
        raise InputError("train.trainable=refiner trains the refinement: it needs refine.enabled=true")
    if not t.init and not t.resume:
        raise InputError("train.trainable=refiner needs the weights to start from: --init <checkpoint or "
                         "Monodepth2 folder>")
    if not t.init:
        return
    if Path(t.init).is_dir():
        source = model_settings(load_monodepth2_folder(t.init, torch.device("cpu")))
    else:
        source = load_checkpoint(t.init)["config"].get("model", {})
    for key in MODEL_KEYS_FROM_INIT:
        if source.get(key):
            setattr(cfg.model, key, type(getattr(cfg.model, key))(source[key]))
    log(f"model {cfg.model.num_layers} layers at {cfg.model.width}x{cfg.model.height} as in {t.init}")


class LossModule(nn.Module):
    """Puts the whole objective inside forward() so DistributedDataParallel sees every use of
    the parameters (calls to sub-modules outside forward would skip gradient syncing)."""

    def __init__(self, model: SA4DepthModel, cfg: Config):
        super().__init__()
        self.model, self.cfg = model, cfg

    def forward(self, batch: dict):
        return compute_losses(self.model, batch, self.cfg)


class CsvLog:
    """Long-format CSV (step, epoch, split, name, value): new metrics never break the header."""

    def __init__(self, path: Path, resume: bool):
        self.path = path
        new = not (resume and path.exists())
        self.file = open(path, "w" if new else "a", newline="")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(["step", "epoch", "split", "name", "value", "time"])

    def write(self, step: int, epoch: int, split: str, values: dict) -> None:
        now = round(time.time(), 3)
        for name, value in sorted(values.items()):
            self.writer.writerow([step, epoch, split, name, f"{value:.6g}", now])
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def collate(items: list[dict]) -> dict:
    """Stack tensors; keep ground-truth depth as a list because native sizes may differ."""
    out = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if key == "depth_gt":
            out[key] = values
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        else:
            out[key] = torch.as_tensor(values)
    return out


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


class Trainer:
    """Trains an SA4DepthModel on a TripletDataset; see TrainConfig for the knobs."""

    def __init__(self, cfg: Config, train_set, val_set=None, log=print):
        self.cfg, self.train_set, self.val_set = cfg, train_set, val_set
        self.dist, self.device = init_distributed(cfg.train.device)
        self.log = log if self.dist.is_main else (lambda *a, **k: None)
        if cfg.train.trainable == "refiner":
            _adopt_init_model(cfg, self.log)
        check_training(cfg)  # again: callers other than the command line, and the size taken from init
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.train.seed + self.dist.rank)
        self.out_dir = Path(cfg.train.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        if self.dist.is_main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.model = SA4DepthModel(cfg).to(self.device)
        self.step, self.epoch, self.best_score, self.parent = 0, 0, math.inf, ""
        self.init_features_trained = False  # the starting weights' flag (checkpoint.features_trained)
        self._load_initial_state()
        self.model.freeze(SA4DepthModel.FROZEN[cfg.train.trainable])
        if self.model.frozen:
            self.log(f"frozen: {', '.join(self.model.frozen)} (train.trainable={cfg.train.trainable})")
        self.optimizer = torch.optim.Adam(self.model.optimizer_groups(cfg.train.lr, cfg.train.damping_lr_factor))
        self.amp = bool(cfg.train.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        if self._resume_state is not None and "optimizer" in self._resume_state:
            self.optimizer.load_state_dict(self._resume_state["optimizer"])
        self._resume_state = None
        module = LossModule(self.model, cfg)
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # Without refinement the feature net and refiner take no part in the loss.
            module = DistributedDataParallel(module, device_ids=ids, find_unused_parameters=not cfg.refine.enabled)
        self.loss_module = module
        self.bad_steps = 0

    def _load_initial_state(self) -> None:
        t = self.cfg.train
        path = t.resume
        if path == "auto":
            found = sorted(self.ckpt_dir.glob("step_*.pt"))
            path = str(found[-1]) if found else ""
        self._resume_state = None
        if path:
            state = load_checkpoint(path, map_location=self.device)
            self.model.load_weights(state["model"], path)
            self._resume_state = state  # its optimizer state is loaded once the optimizer exists
            self.init_features_trained = features_trained(state)
            self.step, self.epoch = state["step"], state["epoch"]
            self.best_score = state.get("metrics", {}).get("best_score", math.inf)
            self.parent = str(path)
            self.log(f"resumed from {path} at step {self.step}, epoch {self.epoch}")
        elif t.init and Path(t.init).is_dir():
            self.model.load_monodepth2(load_monodepth2_folder(t.init, self.device, self.cfg.model.num_layers))
            check_finite_weights(self.model.state_dict(), t.init)  # a project checkpoint's are checked on loading
            self.parent = t.init
            self.log(f"initialised depth and pose networks from the Monodepth2 folder {t.init}")
        elif t.init:
            state = load_checkpoint(t.init, map_location=self.device)
            self.model.load_weights(state["model"], t.init)
            self.init_features_trained = features_trained(state)
            self.parent = t.init
            self.log(f"initialised weights from {t.init}")
        elif self.cfg.model.imagenet_weights:
            self.model.load_imagenet(self.cfg.model.imagenet_weights)
            self.log(f"encoders initialised from ImageNet weights {self.cfg.model.imagenet_weights}")

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        t = self.cfg.train
        if self.dist.enabled:
            sampler = DistributedSampler(dataset, self.dist.world_size, self.dist.rank, shuffle=shuffle, seed=t.seed)
        else:
            sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(t.seed)) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=t.batch_size,
            sampler=sampler,
            num_workers=self.cfg.data.workers,
            collate_fn=collate,
            drop_last=shuffle and len(dataset) >= t.batch_size * self.dist.world_size,
            pin_memory=self.device.type == "cuda",
        )

    def train_step(self, batch: dict) -> dict | None:
        """One optimiser step; returns stats, or None when the step was skipped as non-finite."""
        self.loss_module.train()
        batch = to_device(batch, self.device)
        with torch.autocast(self.device.type, enabled=self.amp):
            loss, stats = self.loss_module(batch)
        grad_norm, problem = guarded_step(loss, self.optimizer, self.model.parameters(), self.cfg.train.grad_clip,
                                          scaler=self.scaler)
        if problem is not None:
            self.bad_steps += 1
            if grad_norm is None and self.bad_steps >= 5:  # refused before backward: the loss itself
                raise FloatingPointError(f"loss was non-finite in {self.bad_steps} consecutive steps at step {self.step}")
            return None
        self.bad_steps = 0
        stats["grad_norm"] = grad_norm
        return stats

    @torch.no_grad()
    def validate(self) -> dict:
        """Self-supervised validation loss, plus median-scaled depth metrics when GT exists."""
        if self.val_set is None or len(self.val_set) == 0:
            return {}
        self.model.eval()
        totals: dict[str, float] = {}
        count = 0
        gts, preds = [], []
        for batch in self._loader(self.val_set, shuffle=False):
            gt = batch.pop("depth_gt", None)
            batch = to_device(batch, self.device)
            _, stats = compute_losses(self.model, batch, self.cfg)
            n = batch["images"].shape[0]
            for k, v in stats.items():
                totals[k] = totals.get(k, 0.0) + v * n
            count += n
            if gt is not None:
                disp = self.model.disparities(batch["images"][:, 0])[("disp", 0)]
                depth = disp_to_depth(disp, self.cfg.model.min_depth, self.cfg.model.max_depth)[1]
                preds += [d[0].float().cpu().numpy() for d in depth]
                gts += [g[0].numpy() for g in gt]
        out = {f"{k}": v / count for k, v in totals.items()}
        if gts:
            result = evaluate_depth(gts, preds, pred_kind="depth", median_scaling=True, crop="none")
            out["abs_rel"] = result["metrics"]["abs_rel"]
            out["a1"] = result["metrics"]["a1"]
            out["scale_std_over_median"] = result["ratio_std_over_median"]
        out = all_reduce_mean(out, self.dist, self.device)
        # Model selection uses the self-supervised loss: ground truth is rarely there on a robot.
        out["score"] = out["photometric"]
        return out

    def save(self, metrics: dict, best: bool = False) -> None:
        if not self.dist.is_main:
            return
        path = self.ckpt_dir / f"step_{self.step:08d}.pt"
        state = dict(config=self.cfg.to_dict(), model=self.model.state_dict(), step=self.step, epoch=self.epoch,
                     optimizer=self.optimizer.state_dict(), metrics={**metrics, "best_score": self.best_score},
                     parent=self.parent, features_trained=self.features_trained)
        save_checkpoint(path, **state)
        self.parent = str(path)
        if best:
            state.pop("optimizer")
            save_checkpoint(self.out_dir / "best.pt", **state)
        for old in sorted(self.ckpt_dir.glob("step_*.pt"))[: -max(self.cfg.train.keep_checkpoints, 1)]:
            old.unlink(missing_ok=True)

    @property
    def features_trained(self) -> bool:
        """Whether the model's feature network and damping have been trained: they came trained,
        or this run has taken steps with the refinement on."""
        return self.init_features_trained or (self.cfg.refine.enabled and self.step > 0)

    def fit(self) -> dict:
        """Train until the epoch, step or time budget runs out; returns the last validation."""
        t = self.cfg.train
        if len(self.train_set) == 0:
            raise InputError("the training set yields no batch: it holds no frame triplet")
        loader = self._loader(self.train_set, shuffle=True)
        csv_log = CsvLog(self.out_dir / "log.csv", resume=bool(t.resume)) if self.dist.is_main else None
        scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, max(t.lr_step_epoch, 1), 0.1, last_epoch=-1)
        for _ in range(self.epoch):
            scheduler.step()
        start = time.time()
        val: dict = {}
        progress = None
        if t.progress and self.dist.is_main:
            progress = TrainProgress(t.max_steps or t.epochs * len(loader), t.max_minutes, self.step, self.log,
                                     every=t.log_every)
        done = False
        try:
            while not done and self.epoch < t.epochs:
                if isinstance(loader.sampler, DistributedSampler):
                    loader.sampler.set_epoch(self.epoch)
                if hasattr(self.train_set, "set_epoch"):
                    self.train_set.set_epoch(self.epoch)
                for batch in loader:
                    stats = self.train_step(batch)
                    if stats is None:
                        self.log(f"step {self.step}: non-finite loss or gradient, step skipped")
                        continue
                    self.step += 1
                    if progress is not None:
                        progress.update(self.step, stats["loss"])
                    if self.step % t.log_every == 0:
                        stats = all_reduce_mean(stats, self.dist, self.device)
                        if csv_log:
                            csv_log.write(self.step, self.epoch, "train", {**stats, "lr": self.optimizer.param_groups[0]["lr"]})
                    out_of_time = t.max_minutes > 0 and (time.time() - start) / 60 >= t.max_minutes
                    done = (t.max_steps and self.step >= t.max_steps) or out_of_time
                    if self.step % t.val_every == 0 or self.step % t.save_every == 0 or done:
                        val = self.validate()
                        if csv_log and val:
                            csv_log.write(self.step, self.epoch, "val", val)
                        improved = bool(val) and val["score"] < self.best_score
                        if improved:
                            self.best_score = val["score"]
                        self.save(val, best=improved or not val)
                    if done:
                        break
                else:
                    self.epoch += 1
                    scheduler.step()
        finally:
            if progress is not None:
                progress.close()
            if csv_log:
                csv_log.close()
        return val

    def close(self) -> None:
        shutdown(self.dist)
