"""Bags as frame sequences: round trip against the KITTI reader, topic/CameraInfo choice, stamps,
random access across processes, damaged bags, training from a bag, and trajectory evaluation."""
import json
import pickle

import cv2
import numpy as np
import pytest
import torch
from rosbags.rosbag2 import StoragePlugin, Writer

from sa4depth_core.config import load_config
from sa4depth_core.data.bag_ground_truth import StaticTransforms, interpolate_poses
from sa4depth_core.data.bag_reader import BAG_TYPESTORE
from sa4depth_core.data.bag_sequence import BagImageSequence, open_bag_sequences
from sa4depth_core.data.kitti2bag import convert
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.data.pose_io import save_kitti_poses, save_tum_poses
from sa4depth_core.data.sequence import TripletDataset
from sa4depth_core.errors import InputError
from sa4depth_core.eval import cli as eval_cli
from sa4depth_core.train.datasets import build_datasets
from sa4depth_core.train.trainer import Trainer, collate

T = BAG_TYPESTORE.types
K_TEST = np.array([[50.0, 0, 15.5], [0, 52, 7.5], [0, 0, 1]])


def header(ns, frame="cam"):
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9),
                                    frame_id=frame)


def image_msg(ns, value, encoding="rgb8", h=16, w=32):
    channels = 1 if encoding == "mono8" else 3
    data = np.full(h * w * channels, value, np.uint8)
    return T["sensor_msgs/msg/Image"](header=header(ns), height=h, width=w, encoding=encoding, is_bigendian=0,
                                      step=w * channels, data=data)


def info_msg(ns, K=K_TEST, h=16, w=32):
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return T["sensor_msgs/msg/CameraInfo"](header=header(ns), height=h, width=w, distortion_model="plumb_bob",
                                           d=np.zeros(5), k=K.ravel(), r=np.eye(3).ravel(),
                                           p=np.hstack([K, np.zeros((3, 1))]).ravel(), binning_x=0, binning_y=0,
                                           roi=roi)


def write_bag(path, messages, storage=StoragePlugin.SQLITE3):
    """messages: (topic, bag time ns, rosbags message) in any order."""
    with Writer(path, version=9, storage_plugin=storage) as writer:
        conns = {}
        for topic, t, msg in sorted(messages, key=lambda m: m[1]):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=BAG_TYPESTORE)
            writer.write(conns[topic], t, BAG_TYPESTORE.serialize_cdr(msg, msg.__msgtype__))
    return path


@pytest.fixture(scope="module")
def kitti_bags(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("bags")
    return {st: convert(synth_root / "sequences" / "00", out / st, storage=st).path for st in ("sqlite3", "mcap")}


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_round_trip_matches_the_kitti_reader(kitti_bags, synth_root, storage):
    seq = BagImageSequence(kitti_bags[storage])
    ref = KittiOdometrySequence(synth_root, "00")
    assert len(seq) == len(ref) and seq.image_size == ref.image_size
    assert seq.topic == "/kitti/camera_color_left/image_raw" and seq.camera_info_topic.endswith("camera_info")
    np.testing.assert_array_equal(seq.intrinsics(), ref.intrinsics())
    order = [5, 0, 13, 5, 7, 1]  # random access, repeats served from the cache
    for i in order:
        np.testing.assert_array_equal(seq.image(i), ref.image(i))
    ref_ns = np.round(np.array([ref.timestamp(i) for i in range(len(ref))]) * 1e9).astype(np.int64)
    assert (seq.stamps_ns - seq.stamps_ns[0]).tolist() == ref_ns.tolist()
    np.testing.assert_allclose([seq.timestamp(i) for i in range(len(seq))], seq.stamps_ns / 1e9, rtol=0, atol=1e-6)
    assert seq.has_poses and "gt_base_link -> camera_color_left" in seq.gt_note
    P = np.stack([seq.pose(i) for i in range(len(seq))])
    R = np.stack([ref.pose(i) for i in range(len(ref))])
    np.testing.assert_allclose(np.linalg.inv(P[0]) @ P, np.linalg.inv(R[0]) @ R, atol=1e-9)


def test_compressed_topic_and_topic_choice(synth_root, tmp_path):
    bag = convert(synth_root / "sequences" / "01", tmp_path / "png", storage="mcap", compressed=True).path
    seq = BagImageSequence(bag)
    ref = KittiOdometrySequence(synth_root, "01")
    assert seq.msgtype == "sensor_msgs/msg/CompressedImage"
    np.testing.assert_array_equal(seq.image(3), ref.image(3))
    np.testing.assert_array_equal(seq.intrinsics(), ref.intrinsics())


def test_several_image_topics_need_a_choice(tmp_path):
    K_right = K_TEST * [[2], [2], [1]]
    msgs = [("/left/image_raw", 10**9, image_msg(10**9, 10)), ("/right/image_raw", 10**9, image_msg(10**9, 20)),
            ("/left/camera_info", 10**9, info_msg(10**9)), ("/right/camera_info", 10**9, info_msg(10**9, K_right))]
    bag = write_bag(tmp_path / "two", msgs)
    with pytest.raises(InputError, match=r"two: several image topics \['/left/image_raw', '/right/image_raw'\]; "
                                         r"choose one with --image-topic"):
        BagImageSequence(bag)
    right = BagImageSequence(bag, image_topic="/right/image_raw")
    assert right.camera_info_topic == "/right/camera_info" and right.image(0)[0, 0].tolist() == [20, 20, 20]
    np.testing.assert_array_equal(right.intrinsics(), K_right)
    with pytest.raises(InputError, match=r"no image topic '/nope'; image topics: \['/left/image_raw'"):
        BagImageSequence(bag, image_topic="/nope")


def test_missing_camera_info_asks_for_intrinsics(tmp_path):
    bag = write_bag(tmp_path / "noinfo", [("/cam/image", 10**9 + k, image_msg(10**9 + k, k)) for k in range(3)])
    with pytest.raises(InputError, match=r"noinfo: cannot tell which CameraInfo belongs to /cam/image "
                                         r"\(CameraInfo topics: none\); pass --camera-info-topic or --intrinsics"):
        BagImageSequence(bag)
    (tmp_path / "K.txt").write_text("50 52 15.5 7.5\n")
    (seq,) = open_bag_sequences(str(bag), "", "", str(tmp_path / "K.txt"))
    np.testing.assert_array_equal(seq.intrinsics(), K_TEST)
    assert not seq.has_poses


def test_camera_info_must_fit_the_images(tmp_path):
    bag = write_bag(tmp_path / "big", [("/cam/image", 10**9, image_msg(10**9, 1)),
                                       ("/cam/camera_info", 10**9, info_msg(10**9, h=32, w=64))])
    with pytest.raises(InputError, match="CameraInfo is for 64x32 images but /cam/image is 32x16"):
        BagImageSequence(bag)
    zero = write_bag(tmp_path / "zero", [("/cam/image", 10**9, image_msg(10**9, 1)),
                                         ("/cam/camera_info", 10**9, info_msg(10**9, K=np.zeros((3, 3))))])
    with pytest.raises(InputError, match="zero /cam/camera_info CameraInfo: K must be 9 numbers, not all zero"):
        BagImageSequence(zero)


def test_depth_topic_is_refused(tmp_path):
    depth = T["sensor_msgs/msg/Image"](header=header(10**9), height=2, width=2, encoding="32FC1", is_bigendian=0,
                                       step=8, data=np.zeros(16, np.uint8))
    bag = write_bag(tmp_path / "depth", [("/depth", 10**9, depth), ("/camera_info", 10**9, info_msg(10**9, h=2, w=2))])
    with pytest.raises(InputError, match="depth /depth frame 0: image encoding '32FC1' is not supported as colour"):
        BagImageSequence(bag)


def test_header_stamps_order_frames_and_gaps_are_skipped(tmp_path):
    # 10 Hz camera, frames 3 and 4 dropped; bag (receive) times jitter and arrive out of order
    stamps = [0, 1, 2, 5, 6, 7]
    arrivals = [30, 150, 120, 520, 610, 700]  # ms; frame 2 arrives before frame 1
    base = 1_700_000_000 * 10**9
    msgs = [("/cam/image", base + a * 10**6, image_msg(base + s * 10**8, 10 * s, "mono8"))
            for s, a in zip(stamps, arrivals)]
    msgs.append(("/cam/image", base + 800 * 10**6, image_msg(base + 7 * 10**8, 99, "mono8")))  # repeated stamp
    msgs.append(("/cam/camera_info", base, info_msg(base)))
    seq = BagImageSequence(write_bag(tmp_path / "drops", msgs, StoragePlugin.MCAP))
    assert seq.stamp_source == "header" and seq.dropped_duplicates == 1
    assert (seq.stamps_ns - base).tolist() == [s * 10**8 for s in stamps]
    assert [int(seq.image(i)[0, 0, 0]) for i in range(len(seq))] == [0, 10, 20, 50, 60, 70]
    ds = TripletDataset(seq, 16, 32, max_time_gap=0.15)
    assert ds.samples[:, 1].tolist() == [1, 4]


def test_zero_stamps_fall_back_to_bag_times(tmp_path):
    msgs = [("/cam/image", 10**9 + k * 10**8, image_msg(0, k)) for k in range(3)]
    seq = BagImageSequence(write_bag(tmp_path / "nostamp", msgs), intrinsics=K_TEST)
    assert seq.stamp_source == "bag" and seq.stamps_ns.tolist() == [10**9, 11 * 10**8, 12 * 10**8]
    assert [int(seq.image(i)[0, 0, 0]) for i in range(3)] == [0, 1, 2]


def test_sequence_survives_pickling_and_forked_workers(kitti_bags, synth_root):
    seq = BagImageSequence(kitti_bags["sqlite3"])
    seq.image(0)  # the parent has an open reader when the workers fork
    clone = pickle.loads(pickle.dumps(seq))
    np.testing.assert_array_equal(clone.image(4), seq.image(4))
    ds = TripletDataset(seq, 32, 64)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate,
                                         multiprocessing_context="fork")
    got = torch.cat([b["images"] for b in loader])
    want = torch.stack([ds[i]["images"] for i in range(len(ds))])
    assert torch.equal(got, want)


def test_damaged_bags_name_the_bag(kitti_bags, tmp_path):
    with pytest.raises(InputError, match="nowhere: ROS 2 bag not found"):
        BagImageSequence(tmp_path / "nowhere")
    (mcap,) = kitti_bags["mcap"].glob("*.mcap")
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    with pytest.raises(InputError, match="cut.mcap: cannot read ROS 2 bag"):
        BagImageSequence(cut)
    garbage = tmp_path / "garbage.db3"
    garbage.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    with pytest.raises(InputError, match="garbage.db3: cannot read ROS 2 bag"):
        BagImageSequence(garbage)
    (db3,) = kitti_bags["sqlite3"].glob("*.db3")
    lost = tmp_path / "lost"
    lost.mkdir()
    (lost / "metadata.yaml").write_text((kitti_bags["sqlite3"] / "metadata.yaml").read_text())
    with pytest.raises(InputError, match=f"lost: cannot read ROS 2 bag .*{db3.name}"):
        BagImageSequence(lost)


def test_static_transform_lookup_and_interpolation():
    rot = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # 90 deg about z
    A, B = np.eye(4), np.eye(4)
    A[:3, 3] = [1, 0, 0]
    B[:3, :3], B[:3, 3] = rot, [0, 2, 0]
    tree = StaticTransforms({"a": ("base", A), "b": ("a", B), "c": ("base", B)})
    np.testing.assert_allclose(tree.lookup("base", "b"), A @ B)
    np.testing.assert_allclose(tree.lookup("c", "b"), np.linalg.inv(B) @ A @ B)
    assert tree.lookup("base", "elsewhere") is None
    poses = interpolate_poses(np.array([0, 100]), np.stack([np.eye(4), B]), np.array([50, 100, 105]), 10)
    half = np.array([[np.cos(np.pi / 4), -np.sin(np.pi / 4), 0], [np.sin(np.pi / 4), np.cos(np.pi / 4), 0], [0, 0, 1]])
    np.testing.assert_allclose(poses[0, :3, :3], half, atol=1e-12)
    np.testing.assert_allclose(poses[0, :3, 3], [0, 1, 0])
    np.testing.assert_allclose(poses[2], B)
    assert interpolate_poses(np.array([0, 100]), np.stack([np.eye(4), B]), np.array([120]), 10) is None


# ------------------------------------------------------------------------------ training and eval

@pytest.fixture(scope="module")
def trained(kitti_bags, tmp_path_factory):
    """Overfit one batch of bag triplets through the train CLI's dataset path; (losses, checkpoint)."""
    out = tmp_path_factory.mktemp("train")
    cfg = load_config(None, ["model.height=64", "model.width=128", "train.batch_size=2", "train.progress=false",
                             "refine.enabled=false", "data.kind=bag", f"data.bag={kitti_bags['mcap']}",
                             "data.max_time_gap=0.15", "data.val_fraction=0", "data.augment=false",
                             f"train.out_dir={out}"])
    train, val = build_datasets(cfg)
    assert val is None and isinstance(train.sequences[0], BagImageSequence) and len(train) == 12
    torch.manual_seed(0)
    trainer = Trainer(cfg, train, None, log=lambda *a: None)
    batch = collate([train[i] for i in (2, 7)])
    losses = [trainer.train_step(batch)["loss"] for _ in range(12)]
    trainer.save({})
    return losses, next((out / "checkpoints").glob("step_*.pt"))


def test_training_from_a_bag_lowers_the_loss(trained):
    losses, _ = trained
    assert np.isfinite(losses).all() and np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3])


def _eval(args):
    return eval_cli.main(["odom"] + [str(a) for a in args])


def test_eval_trajectory_file_against_bag_ground_truth(kitti_bags, synth_root, trained, tmp_path):
    ref = KittiOdometrySequence(synth_root, "00")
    seq = BagImageSequence(kitti_bags["sqlite3"])
    poses = np.stack([ref.pose(i) for i in range(len(ref))])
    noisy = poses.copy()
    noisy[:, :3, 3] = 3.0 * poses[:, :3, 3] + np.random.default_rng(0).normal(0, 0.003, (len(poses), 3))
    save_tum_poses(tmp_path / "est.tum", seq.stamps_ns / 1e9, noisy)
    assert _eval(["--bag", kitti_bags["sqlite3"], "--trajectory", tmp_path / "est.tum", "--json", tmp_path / "r.json",
                  "--checkpoint", trained[1], "--device", "cpu"]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["matched_by"] == "stamps" and result["num_frames"] == len(ref)
    assert result["scale"] == pytest.approx(1 / 3, rel=0.01) and result["ate"] < 0.01
    assert result["body_frame"] == "camera_color_left"
    plot = cv2.imread(str(tmp_path / "r.png"))
    assert plot is not None and (plot == (40, 60, 220)).all(axis=2).any()  # the estimate's red is drawn
    strip = cv2.imread(str(tmp_path / "r_depth.png"))
    assert strip.shape == (4 * 320, 2 * 640, 3)
    # the same poses with one of them 1 m off raise the ATE
    noisy[6, :3, 3] += 3.0
    save_tum_poses(tmp_path / "bad.tum", seq.stamps_ns / 1e9, noisy)
    assert _eval(["--bag", kitti_bags["sqlite3"], "--trajectory", tmp_path / "bad.tum", "--json", tmp_path / "b.json"]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["ate"] > 0.05


def test_eval_recorded_odometry_topic(synth_root, tmp_path):
    ref = KittiOdometrySequence(synth_root, "01")
    base = 1_600_000_000 * 10**9
    stamps = base + np.arange(len(ref)) * 10**8
    msgs = [("/cam/image", int(t), image_msg(int(t), 0)) for t in stamps]
    odom_cls, pose_cls = T["nav_msgs/msg/Odometry"], T["geometry_msgs/msg/Pose"]
    from transforms3d.quaternions import mat2quat

    def odom(t, P, frame, child):
        w, x, y, z = mat2quat(P[:3, :3])
        pose = pose_cls(position=T["geometry_msgs/msg/Point"](x=P[0, 3], y=P[1, 3], z=P[2, 3]),
                        orientation=T["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w))
        zero = T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)
        return odom_cls(header=header(int(t), frame), child_frame_id=child,
                        pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
                        twist=T["geometry_msgs/msg/TwistWithCovariance"](
                            twist=T["geometry_msgs/msg/Twist"](linear=zero, angular=zero), covariance=np.zeros(36)))

    for k, t in enumerate(stamps):
        P = ref.pose(k)
        msgs.append(("/ground_truth/odom", int(t), odom(t, P, "world", "gt_cam")))
        est = P.copy()
        est[:3, 3] *= 0.5
        msgs.append(("/odom", int(t) + 5 * 10**6, odom(t + 2 * 10**6, est, "odom", "cam")))  # stamped 2 ms later
    bag = write_bag(tmp_path / "rec", msgs)
    save_kitti_poses(tmp_path / "gt.txt", np.stack([ref.pose(i) for i in range(len(ref))]))
    assert _eval(["--bag", bag, "--json", tmp_path / "r.json", "--align", "scale"]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["est"].endswith("/odom") and result["gt"].endswith("/ground_truth/odom")
    assert result["scale"] == pytest.approx(2.0, rel=0.05) and result["ate"] < 0.05
    # ground truth from a KITTI file is matched line by line
    assert _eval(["--bag", bag, "--gt", tmp_path / "gt.txt", "--json", tmp_path / "f.json", "--align", "scale"]) == 0
    assert json.loads((tmp_path / "f.json").read_text())["matched_by"] == "line"
    assert _eval(["--bag", bag, "--est-topic", "/cam/image"]) == 2
