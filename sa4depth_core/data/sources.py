"""The frame sequences that the `data` section of a config names: KITTI odometry sequences, KITTI
raw drives, image folders or ROS 2 bags."""
from __future__ import annotations

from pathlib import Path

from sa4depth_core.config import Config
from sa4depth_core.data.image_folder import ImageFolderSequence
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence, camera_index
from sa4depth_core.data.kitti_raw import KittiRawDrive, load_split_file
from sa4depth_core.data.sequence import FrameSequence
from sa4depth_core.errors import InputError


def open_sequences(cfg: Config, names: list) -> list[FrameSequence]:
    """FrameSequences for the configured data kind.

    kitti_odometry: names are sequence numbers under data.root, seen by data.camera (image_0..image_3).
    kitti_raw: names are drive folders relative to data.root (e.g. 2011_09_26/2011_09_26_drive_0001_sync);
        with data.split_file and no names, every drive the split file mentions; data.camera image_2 or image_3.
    folder: names are image folders (relative to data.root when it is set).
    """
    d = cfg.data
    root = Path(d.root) if d.root else None
    if d.kind == "kitti_odometry":
        if root is None or not names:
            raise InputError("data.kind=kitti_odometry needs data.root and data.sequences (e.g. [00, 01])")
        # YAML reads 00 as the number 0: KITTI sequence folders have two digits.
        camera = camera_index(d.camera)
        return [KittiOdometrySequence(root, f"{int(n):02d}" if n.isdigit() else n, camera) for n in names]
    if d.kind == "kitti_raw":
        if root is None:
            raise InputError("data.kind=kitti_raw needs data.root")
        if not names and d.split_file:
            names = sorted({item.drive for item in load_split_file(d.split_file)})
        if not names:
            raise InputError("data.kind=kitti_raw needs data.sequences (drive folders) or data.split_file")
        return [KittiRawDrive(root / n, camera_index(d.camera)) for n in names]
    if d.kind == "folder":
        folders = [root / n if root else Path(n) for n in names] or ([root] if root else [])
        if not folders:
            raise InputError("data.kind=folder needs data.root or data.sequences (image folders)")
        return [ImageFolderSequence(f, intrinsics=d.intrinsics or None) for f in folders]
    if d.kind == "bag":
        from sa4depth_core.data.bag_sequence import open_bag_sequences

        return open_bag_sequences(d.bag, d.image_topic, d.camera_info_topic, d.intrinsics or None)
    raise InputError(f"data.kind '{d.kind}' is not one of kitti_odometry, kitti_raw, folder, bag")
