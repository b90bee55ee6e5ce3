"""The synthetic worlds of the benchmarks, split once for all of them.

    pretrain    worlds only the study's common start learns from (supervised on exact depth)
    train       worlds the compared models train on
    val         worlds every default and hyperparameter is chosen on
    test        worlds that carry the published figures, touched once per final table

Each world differs in seed (layout, textures, colours), trajectory and camera height, so in
scene scale; `kitti` trajectories follow a real KITTI odometry ground truth (shared/data) where
it is present. The splits share no seed and no stretch of a KITTI sequence.
"""
from __future__ import annotations

from common import KITTI_GT, synthetic

# name, seed, trajectory, camera height (m), KITTI sequence and start frame for "kitti"
WORLDS = {
    "pretrain": [("pre_car", 41, "car", 1.5, None), ("pre_car_high", 42, "car", 2.3, None),
                 ("pre_hand", 43, "handheld", 1.4, None), ("pre_kitti02", 44, "kitti", 1.65, ("02", 200)),
                 ("pre_hand_b", 45, "handheld", 1.6, None), ("pre_hand_c", 46, "handheld", 1.2, None),
                 ("pre_car_b", 47, "car", 1.9, None)],
    "train": [("abl_car_a", 11, "car", 1.65, None), ("abl_car_b", 12, "car", 2.2, None),
              ("abl_hand", 13, "handheld", 1.3, None), ("abl_kitti00", 14, "kitti", 1.65, ("00", 100))],
    "val": [("val_car", 31, "car", 1.8, None), ("val_hand", 32, "handheld", 1.5, None),
            ("val_kitti08", 33, "kitti", 1.65, ("08", 500))],
    "test": [("abl_test_car", 21, "car", 1.4, None), ("abl_test_car_high", 22, "car", 2.0, None),
             ("abl_test_kitti", 23, "kitti", 1.65, ("05", 300))],
}


def worlds(split: str, height: int, width: int, frames: int) -> list:
    """[(root, sequence)] of one split, generated on first use (benchmarks/.cache); worlds that
    follow a KITTI trajectory are left out when the ground truth is not there."""
    out = []
    for name, seed, trajectory, camera_height, kitti in WORLDS[split]:
        if kitti is not None:
            poses = KITTI_GT / f"{kitti[0]}.txt"
            if not poses.exists():
                continue
            out.append(synthetic(name, frames, height, width, seed=seed, trajectory=trajectory,
                                 camera_height=camera_height, kitti_poses=str(poses), kitti_start=kitti[1]))
        else:
            out.append(synthetic(name, frames, height, width, seed=seed, trajectory=trajectory,
                                 camera_height=camera_height))
    return out
