"""Build training and validation datasets from the `data` section of the config."""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Subset

from ..config import Config
from ..data.image_folder import ImageFolderSequence
from ..data.kitti_odometry import KittiOdometrySequence
from ..data.kitti_raw import KittiRawDrive, load_split_file
from ..data.sequence import FrameSequence, TripletDataset, train_val_split
from ..errors import InputError

# Validation blocks of this many consecutive samples keep near-duplicate neighbours of a
# validation frame out of the training set.
VAL_BLOCK = 20


def open_sequences(cfg: Config, names: list) -> list[FrameSequence]:
    """FrameSequences for the configured data kind.

    kitti_odometry: names are sequence numbers under data.root.
    kitti_raw: names are drive folders relative to data.root (e.g. 2011_09_26/2011_09_26_drive_0001_sync);
        with data.split_file and no names, every drive the split file mentions.
    folder: names are image folders (relative to data.root when it is set).
    """
    d = cfg.data
    root = Path(d.root) if d.root else None
    if d.kind == "kitti_odometry":
        if root is None or not names:
            raise InputError("data.kind=kitti_odometry needs data.root and data.sequences (e.g. [00, 01])")
        # YAML reads 00 as the number 0: KITTI sequence folders have two digits.
        return [KittiOdometrySequence(root, f"{int(n):02d}" if n.isdigit() else n) for n in names]
    if d.kind == "kitti_raw":
        if root is None:
            raise InputError("data.kind=kitti_raw needs data.root")
        if not names and d.split_file:
            names = sorted({item.drive for item in load_split_file(d.split_file)})
        if not names:
            raise InputError("data.kind=kitti_raw needs data.sequences (drive folders) or data.split_file")
        return [KittiRawDrive(root / n) for n in names]
    if d.kind == "folder":
        folders = [root / n if root else Path(n) for n in names] or ([root] if root else [])
        if not folders:
            raise InputError("data.kind=folder needs data.root or data.sequences (image folders)")
        return [ImageFolderSequence(f, intrinsics=d.intrinsics or None) for f in folders]
    if d.kind == "bag":
        from ..data.bag_sequence import open_bag_sequences

        return open_bag_sequences(d.bag, d.image_topic, d.camera_info_topic, d.intrinsics or None)
    raise InputError(f"data.kind '{d.kind}' is not one of kitti_odometry, kitti_raw, folder, bag")


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
