"""`sa4depth-train`: self-supervised training from KITTI, image folders or ROS 2 bags.

Examples:
    sa4depth-train --config config/train_kitti.yaml data.root=/data/kitti_odometry
    sa4depth-train --data-root runs/synth --sequences 00 train.max_steps=200 refine.enabled=false
    torchrun --nproc_per_node=4 -m sa4depth_core.train.cli --config cfg.yaml train.device=cuda
    sa4depth-train --init monodepth2_weights/ --train refiner --data-root /data/kitti_odometry --sequences 00
"""
from __future__ import annotations

import argparse
import logging
import sys

from ..config import TRAINABLE, check_training, load_config
from ..errors import InputError
from .datasets import build_datasets
from .trainer import Trainer


def parse_args(argv):
    p = argparse.ArgumentParser(prog="sa4depth-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with model/refine/loss/data/train sections")
    p.add_argument("--data-kind", choices=["kitti_odometry", "kitti_raw", "folder", "bag"])
    p.add_argument("--data-root", help="dataset root (KITTI odometry/raw root or image folder)")
    p.add_argument("--sequences", help="comma-separated sequences / drives / folders")
    p.add_argument("--val-sequences", help="comma-separated held-out sequences for validation")
    p.add_argument("--bag", help="ROS 2 bag (folder or .mcap/.db3) to train from directly")
    p.add_argument("--image-topic", help="image topic in the bag (default: the only image topic)")
    p.add_argument("--camera-info-topic", help="CameraInfo topic in the bag (default: next to the image topic)")
    p.add_argument("--intrinsics", help="intrinsics file when the data has no calibration")
    p.add_argument("--out", help="output folder (train.out_dir)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--init", help="start from these weights: a checkpoint or a Monodepth2 folder (train.init)")
    p.add_argument("--train", dest="trainable", choices=list(TRAINABLE),
                   help="refiner: keep the depth and pose networks of --init fixed and fit only the feature "
                        "network and damping, so their odometry can be refined; pose: keep the depth network "
                        "fixed (train.trainable)")
    p.add_argument("overrides", nargs="*", help="section.key=value settings, e.g. train.max_steps=100")
    return p.parse_args(argv)


def config_from_args(args):
    overrides = list(args.overrides)
    flag_map = {
        "data_kind": "data.kind", "data_root": "data.root", "sequences": "data.sequences",
        "val_sequences": "data.val_sequences", "bag": "data.bag", "image_topic": "data.image_topic",
        "camera_info_topic": "data.camera_info_topic", "intrinsics": "data.intrinsics", "out": "train.out_dir",
        "device": "train.device", "init": "train.init", "trainable": "train.trainable",
    }
    for attr, key in flag_map.items():
        value = getattr(args, attr)
        if value is not None:
            overrides.insert(0, f"{key}={value}")
    if args.bag and not args.data_kind:
        overrides.insert(0, "data.kind=bag")
    return load_config(args.config, overrides)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = config_from_args(args)
        check_training(cfg)
        train_set, val_set = build_datasets(cfg)
        trainer = Trainer(cfg, train_set, val_set)
    except (InputError, OSError) as e:
        print(f"sa4depth-train: error: {e}", file=sys.stderr)
        return 2
    trainer.log(f"training on {len(train_set)} samples, validating on {len(val_set) if val_set else 0}; "
                f"refinement {'on' if cfg.refine.enabled else 'off'}; training {cfg.train.trainable}; "
                f"device {trainer.device}; output {cfg.train.out_dir}")
    try:
        val = trainer.fit()
    except (InputError, OSError) as e:  # fewer samples than one batch; a full disk (the last good checkpoint is intact)
        print(f"sa4depth-train: error: {e}", file=sys.stderr)
        return 2
    finally:
        trainer.close()
    if val:
        trainer.log("final validation: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(val.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
