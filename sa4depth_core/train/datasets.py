"""Build training and validation datasets from the `data` section of the config."""
from __future__ import annotations

from torch.utils.data import Subset

from ..config import Config
from ..data.sequence import TripletDataset, train_val_split
from ..data.sources import open_sequences

# Validation blocks of this many consecutive samples keep near-duplicate neighbours of a
# validation frame out of the training set.
VAL_BLOCK = 20


def build_datasets(cfg: Config):
    """(train, val) datasets; val may be None when data.val_fraction is 0 and no val sequences."""
    m, d = cfg.model, cfg.data
    gap = d.max_time_gap or None
    names = [str(n) for n in d.sequences]
    train_seqs = open_sequences(cfg, names)
    common = dict(height=m.height, width=m.width, frame_offsets=m.frame_offsets, max_time_gap=gap, seed=cfg.train.seed)
    train = TripletDataset(train_seqs, augment=d.augment, **common)
    if d.val_sequences:
        val_seqs = open_sequences(cfg, [str(n) for n in d.val_sequences])
        return train, TripletDataset(val_seqs, with_depth=all(s.has_depth for s in val_seqs), **common)
    if d.val_fraction <= 0:
        return train, None
    train_idx, val_idx = train_val_split(len(train), d.val_fraction, cfg.train.seed, block=VAL_BLOCK)
    val_full = TripletDataset(train_seqs, with_depth=all(s.has_depth for s in train_seqs), **common)
    return _SubsetWithEpoch(train, train_idx.tolist()), Subset(val_full, val_idx.tolist())


class _SubsetWithEpoch(Subset):
    """A Subset that forwards set_epoch so augmentation draws change per epoch."""

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)
