"""sa4depth-kitti2bag: KITTI odometry / raw trees -> bags, checked with rosbags, mcap, sqlite3 and rclpy."""
import calendar
import shutil
import sqlite3

import cv2
import numpy as np
import pytest
import yaml
from rosbags.typesys import Stores, get_typestore

from sa4depth_core.data import kitti2bag
from sa4depth_core.data.bag_reader import BAG_TYPESTORE, open_bag
from sa4depth_core.data.calib import load_odometry_calib
from sa4depth_core.data.kitti2bag import convert, main
from sa4depth_core.data.kitti_recording import ODOMETRY_EPOCH_S, T_BASE_CAM0
from sa4depth_core.data.kitti_raw import read_timestamps_ns
from sa4depth_core.data.pose_io import load_kitti_poses
from sa4depth_core.data.sequence import list_images, read_float_lines
from sa4depth_core.errors import InputError

IMAGE = "/kitti/camera_color_left/image_raw"
INFO = "/kitti/camera_color_left/camera_info"


def read_all(bag):
    """{topic: [(bag time, message)]} read back with rosbags."""
    out = {}
    with open_bag(bag) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, BAG_TYPESTORE.deserialize_cdr(raw, conn.msgtype)))
    return out


def stamp(msg):
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def quat_matrix(q):
    from transforms3d.quaternions import quat2mat
    return quat2mat([q.w, q.x, q.y, q.z])


def test_base_frame_axes_by_hand():
    # camera z (forward) -> base x, camera x (right) -> base -y, camera y (down) -> base -z
    np.testing.assert_array_equal(T_BASE_CAM0[:3, :3] @ [0, 0, 1], [1, 0, 0])
    np.testing.assert_array_equal(T_BASE_CAM0[:3, :3] @ [1, 0, 0], [0, -1, 0])
    np.testing.assert_array_equal(T_BASE_CAM0[:3, :3] @ [0, 1, 0], [0, 0, -1])


def test_written_types_are_identical_in_humble_jazzy_kilted():
    types = ["sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo",
             "sensor_msgs/msg/PointCloud2", "nav_msgs/msg/Odometry", "tf2_msgs/msg/TFMessage", "rosgraph_msgs/msg/Clock"]
    stores = [get_typestore(s) for s in (Stores.ROS2_HUMBLE, Stores.ROS2_JAZZY, Stores.ROS2_KILTED)]
    for t in types:
        assert len({s.generate_msgdef(t, ros_version=2)[0] for s in stores}) == 1, t
        assert len({s.hash_rihs01(t) for s in stores}) == 1, t


def test_kitti_timestamps_keep_nanoseconds(tmp_path):
    path = tmp_path / "timestamps.txt"
    path.write_text("2011-09-26 13:02:25.964389445\n2011-09-26 13:02:26.5\n2011-09-26 13:02:27\n")
    base = calendar.timegm((2011, 9, 26, 13, 2, 25)) * 10**9
    assert read_timestamps_ns(path, [0, 1, 2]).tolist() == [base + 964389445, base + 1_500_000_000, base + 2 * 10**9]
    path.write_text("2011-09-26 13:02:25.96x\n")
    with pytest.raises(InputError, match="timestamps.txt: timestamp of frame 0 is not"):
        read_timestamps_ns(path, [0])


# ------------------------------------------------------------------------------ odometry sequence

@pytest.fixture(scope="module", params=["sqlite3", "mcap"])
def odo_bag(request, synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "bag"
    result = convert(synth_root / "sequences" / "01", out, storage=request.param)
    return request.param, out, result


def test_odometry_round_trip(odo_bag, synth_root):
    storage, bag, result = odo_bag
    seq = synth_root / "sequences" / "01"
    files = list_images(seq / "image_2")
    n = len(files)
    assert result.counts == {"/tf_static": 1, IMAGE: n, INFO: n, "/kitti/gt/odom": n, "/tf": n}
    msgs = read_all(bag)
    expected_ns = ODOMETRY_EPOCH_S * 10**9 + np.round(read_float_lines(seq / "times.txt", "t") * 1e9)
    images = msgs[IMAGE]
    assert [t for t, _ in images] == [stamp(m) for _, m in images] == expected_ns.astype(np.int64).tolist()
    for (_, msg), path in zip(images, files):
        assert (msg.encoding, msg.header.frame_id, msg.is_bigendian) == ("bgr8", "camera_color_left", 0)
        np.testing.assert_array_equal(msg.data.reshape(msg.height, msg.width, 3), cv2.imread(str(path)))
    P2 = load_odometry_calib(seq / "calib.txt").P[2]
    h, w = cv2.imread(str(files[0])).shape[:2]
    for (t, info), (_, img) in zip(msgs[INFO], images):
        assert t == stamp(info) == stamp(img) and (info.height, info.width) == (h, w)
        np.testing.assert_array_equal(info.k.reshape(3, 3), P2[:, :3])
        np.testing.assert_array_equal(info.p.reshape(3, 4), P2)
        np.testing.assert_array_equal(info.r.reshape(3, 3), np.eye(3))
        assert info.distortion_model == "plumb_bob" and not info.d.any()
    # ground truth: the poses file expressed for base_link (camera 0 = camera 2 in the synthetic calib)
    poses = load_kitti_poses(synth_root / "poses" / "01.txt")
    for (t, odom), (t_tf, tf), pose in zip(msgs["/kitti/gt/odom"], msgs["/tf"], poses):
        assert (odom.header.frame_id, odom.child_frame_id) == ("gt_world", "gt_base_link")
        T = np.eye(4)
        T[:3, :3] = quat_matrix(odom.pose.pose.orientation)
        T[:3, 3] = [odom.pose.pose.position.x, odom.pose.pose.position.y, odom.pose.pose.position.z]
        np.testing.assert_allclose(np.linalg.inv(T_BASE_CAM0) @ T @ T_BASE_CAM0, pose, atol=1e-9)
        (tr,) = tf.transforms
        assert t == t_tf == stamp(tr) and (tr.header.frame_id, tr.child_frame_id) == ("gt_world", "gt_base_link")
        assert tr.transform.translation.x == odom.pose.pose.position.x
    (static,) = [m for _, m in msgs["/tf_static"]]
    children = {tr.child_frame_id: tr for tr in static.transforms}
    assert set(children) == {"camera_color_left", "velo_link"}
    cam = children["camera_color_left"]
    assert cam.header.frame_id == "base_link" and stamp(cam) == expected_ns[0]
    np.testing.assert_allclose(quat_matrix(cam.transform.rotation), T_BASE_CAM0[:3, :3], atol=1e-12)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert (meta["version"], meta["storage_identifier"], meta["message_count"]) == (9, storage, 4 * n + 1)


def test_independent_readers_see_the_same_bag(odo_bag):
    from nav_msgs.msg import Odometry
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo, Image

    storage, bag, result = odo_bag
    ours = read_all(bag)
    counts, first_raw = {}, {}
    if storage == "mcap":
        from mcap.reader import make_reader
        from mcap_ros2.decoder import DecoderFactory

        (path,) = bag.glob("*.mcap")
        with path.open("rb") as f:
            reader = make_reader(f, decoder_factories=[DecoderFactory()])
            assert reader.get_header().profile == "ros2"
            for schema, channel, message, decoded in reader.iter_decoded_messages():
                counts[channel.topic] = counts.get(channel.topic, 0) + 1
                first_raw.setdefault(channel.topic, message.data)
                if channel.topic == IMAGE:
                    k = counts[IMAGE] - 1
                    assert message.log_time == ours[IMAGE][k][0]
                    assert bytes(decoded.data) == ours[IMAGE][k][1].data.tobytes()
    else:
        (path,) = bag.glob("*.db3")
        with sqlite3.connect(path) as db:
            topics = dict(db.execute("SELECT id, name FROM topics"))
            for topic_id, count in db.execute("SELECT topic_id, count(*) FROM messages GROUP BY topic_id"):
                counts[topics[topic_id]] = count
            for topic_id, data in db.execute("SELECT topic_id, data FROM messages ORDER BY timestamp, id"):
                first_raw.setdefault(topics[topic_id], data)
    assert counts == result.counts
    # rclpy's own CDR decoder agrees with what rosbags wrote
    img = deserialize_message(first_raw[IMAGE], Image)
    assert bytes(img.data) == ours[IMAGE][0][1].data.tobytes() and img.header.frame_id == "camera_color_left"
    info = deserialize_message(first_raw[INFO], CameraInfo)
    np.testing.assert_array_equal(np.array(info.p), ours[INFO][0][1].p)
    odom = deserialize_message(first_raw["/kitti/gt/odom"], Odometry)
    assert odom.child_frame_id == "gt_base_link"


def test_humble_metadata_uses_version_8_and_qos_strings(synth_root, tmp_path):
    bag = tmp_path / "humble"
    convert(synth_root / "sequences" / "01", bag, ros_distro="humble", max_frames=2)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8
    qos = {t["topic_metadata"]["name"]: t["topic_metadata"]["offered_qos_profiles"]
           for t in meta["topics_with_message_count"]}
    assert all(isinstance(q, str) for q in qos.values())  # Humble decodes this field as a string
    (static,) = yaml.safe_load(qos["/tf_static"])
    (image,) = yaml.safe_load(qos[IMAGE])
    # rmw enums as Humble writes them: history keep_last=1, reliable=1, transient_local=1, volatile=2
    assert (static["history"], static["depth"], static["reliability"], static["durability"]) == (1, 1, 1, 1)
    assert (image["reliability"], image["durability"], image["depth"]) == (1, 2, 10)
    assert len(read_all(bag)[IMAGE]) == 2


def test_compressed_images_carry_the_png_bytes(synth_root, tmp_path):
    bag = tmp_path / "png"
    result = convert(synth_root / "sequences" / "01", bag, storage="mcap", compressed=True, max_frames=3, gt=False)
    assert set(result.counts) == {"/tf_static", IMAGE + "/compressed", INFO}
    files = list_images(synth_root / "sequences" / "01" / "image_2")
    for (_, msg), path in zip(read_all(bag)[IMAGE + "/compressed"], files):
        assert msg.format == "bgr8; png compressed bgr8" and msg.data.tobytes() == path.read_bytes()


# ------------------------------------------------------------------------------------- raw drives

W, H = 40, 16
P_RECT_00 = np.array([[100.0, 0, 20, 0], [0, 100, 8, 0], [0, 0, 1, 0]])
P_RECT_02 = np.array([[100.0, 0, 20, 50], [0, 100, 8, 0], [0, 0, 1, 0]])  # t = (0.5, 0, 0): camera at x = -0.5
VELO_R = np.array([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]])  # velodyne x forward -> camera z forward
LAT0, DLON = 49.0, 1e-4


def fmt(values):
    return " ".join(f"{v:.12e}" for v in np.ravel(values))


def build_raw(root, kind="sync", n=3):
    date = root / "2011_09_26"
    drive = date / f"2011_09_26_drive_0001_{kind}"
    c, s = np.cos(0.1), np.sin(0.1)
    r_rect_02 = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    cam = {"S_00": f"{W + 8} {H + 4}", "K_00": fmt(P_RECT_00[:, :3]), "D_00": fmt([0.1, -0.2, 0.001, 0.002, 0.0]),
           "R_rect_00": fmt(np.eye(3)), "S_rect_00": f"{W} {H}", "P_rect_00": fmt(P_RECT_00),
           "S_02": f"{W + 8} {H + 4}", "K_02": fmt([[90.0, 0, 22], [0, 91, 9], [0, 0, 1]]),
           "D_02": fmt([-0.3, 0.1, 0.0, 0.001, -0.02]), "R_rect_02": fmt(r_rect_02),
           "S_rect_02": f"{W} {H}", "P_rect_02": fmt(P_RECT_02)}
    date.mkdir(parents=True)
    (date / "calib_cam_to_cam.txt").write_text("calib_time: 09-Jan-2012 13:57:47\n" +
                                               "".join(f"{k}: {v}\n" for k, v in cam.items()))
    (date / "calib_velo_to_cam.txt").write_text(f"R: {fmt(VELO_R)}\nT: 0 0 0\n")
    (date / "calib_imu_to_velo.txt").write_text(f"R: {fmt(np.eye(3))}\nT: 0 0 0\n")
    size = (W, H) if kind == "sync" else (W + 8, H + 4)
    stamps = [f"2011-09-26 13:02:{25 + i}.{100000000 * i + 5:09d}" for i in range(n)]
    for cam_dir, channels in (("image_00", 1), ("image_02", 3)):
        (drive / cam_dir / "data").mkdir(parents=True)
        for i in range(n):
            img = np.full((size[1], size[0], channels), 20 * i + 10 * channels, np.uint8)
            cv2.imwrite(str(drive / cam_dir / "data" / f"{i:010d}.png"), img)
        (drive / cam_dir / "timestamps.txt").write_text("\n".join(stamps) + "\n")
    velo = drive / "velodyne_points"
    (velo / "data").mkdir(parents=True)
    points = np.arange(4 * 5, dtype=np.float32).reshape(5, 4)
    for i in range(n):
        if kind == "sync":
            (points + i).tofile(velo / "data" / f"{i:010d}.bin")
        else:
            np.savetxt(velo / "data" / f"{i:010d}.txt", points + i)
    (velo / "timestamps.txt").write_text("\n".join(f"2011-09-26 13:02:{25 + i}.2" for i in range(n)) + "\n")
    oxts = drive / "oxts"
    (oxts / "data").mkdir(parents=True)
    packets = [[LAT0, 8.0, 100.0, 0, 0, 0], [LAT0, 8.0 + DLON, 100.0, 0, 0, 0], [LAT0, 8.0 + DLON, 100.0, 0, 0, np.pi / 2]]
    for i, packet in enumerate(packets):
        (oxts / "data" / f"{i:010d}.txt").write_text(fmt(packet + [0.0] * 24) + "\n")
    (oxts / "timestamps.txt").write_text("\n".join(f"2011-09-26 13:02:{25 + i}.05" for i in range(3)) + "\n")
    return drive, r_rect_02, points


def test_raw_sync_drive(tmp_path):
    drive, _, points = build_raw(tmp_path)
    bag = tmp_path / "bag"
    result = convert(drive, bag, cameras=(0, 2), velodyne=True)
    assert result.counts["/kitti/camera_gray_left/image_raw"] == 3 and result.counts["/kitti/velo/pointcloud"] == 3
    msgs = read_all(bag)
    base = calendar.timegm((2011, 9, 26, 13, 2, 25)) * 10**9
    grey = msgs["/kitti/camera_gray_left/image_raw"]
    assert [t for t, _ in grey] == [base + (10**9 + 100000000) * i + 5 for i in range(3)]
    assert grey[1][1].encoding == "mono8" and grey[1][1].data.tolist() == [30] * (W * H)
    info = msgs[INFO][0][1]
    np.testing.assert_array_equal(info.p.reshape(3, 4), P_RECT_02)
    np.testing.assert_array_equal(info.k.reshape(3, 3), P_RECT_02[:, :3])
    assert (info.width, info.height) == (W, H) and not info.d.any()
    static = {t.child_frame_id: t.transform for _, m in msgs["/tf_static"] for t in m.transforms}
    assert set(static) == {"camera_gray_left", "camera_color_left", "velo_link", "imu_link"}
    # camera 2 sits 0.5 m to the left of camera 0: base_link y = +0.5
    tr = static["camera_color_left"].translation
    assert (tr.x, tr.y, tr.z) == pytest.approx((0.0, 0.5, 0.0), abs=1e-12)
    # with R_rect = I and this Velodyne rotation, velo_link (x forward, z up) coincides with base_link
    np.testing.assert_allclose(quat_matrix(static["velo_link"].rotation), np.eye(3), atol=1e-12)
    clouds = msgs["/kitti/velo/pointcloud"]
    assert [t for t, _ in clouds] == [base + 10**9 * i + 200000000 for i in range(3)]
    cloud = clouds[2][1]
    assert ([f.name for f in cloud.fields], cloud.point_step, cloud.width, cloud.header.frame_id) == \
        (["x", "y", "z", "intensity"], 16, 5, "velo_link")
    np.testing.assert_array_equal(cloud.data.view(np.float32).reshape(-1, 4), points + 2)
    # OXTS: base_link == imu here; 1e-4 deg of longitude east at 49 deg N, then a 90 deg left turn
    odom = [m.pose.pose for _, m in msgs["/kitti/gt/odom"]]
    east = np.cos(np.radians(LAT0)) * 6378137.0 * np.radians(DLON)
    assert east == pytest.approx(7.3032, abs=1e-3)
    assert (odom[1].position.x, odom[1].position.y, odom[1].position.z) == pytest.approx((east, 0, 0), abs=1e-6)
    np.testing.assert_allclose(quat_matrix(odom[2].orientation), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-9)
    assert [t for t, _ in msgs["/kitti/gt/odom"]] == [base + 10**9 * i + 50000000 for i in range(3)]


def test_raw_extract_drive_is_unrectified(tmp_path):
    drive, r_rect_02, points = build_raw(tmp_path, kind="extract")
    bag = tmp_path / "bag"
    convert(drive, bag, cameras=(2,), velodyne=True, gt=False, storage="mcap")
    msgs = read_all(bag)
    info = msgs[INFO][0][1]
    assert (info.width, info.height) == (W + 8, H + 4)
    np.testing.assert_array_equal(info.k.reshape(3, 3), [[90.0, 0, 22], [0, 91, 9], [0, 0, 1]])
    np.testing.assert_array_equal(info.d, [-0.3, 0.1, 0.0, 0.001, -0.02])
    np.testing.assert_allclose(info.r.reshape(3, 3), r_rect_02, atol=1e-12)  # calib written with 13 digits
    np.testing.assert_array_equal(info.p.reshape(3, 4), P_RECT_02)
    static = {t.child_frame_id: t.transform for _, m in msgs["/tf_static"] for t in m.transforms}
    np.testing.assert_allclose(quat_matrix(static["camera_color_left"].rotation), T_BASE_CAM0[:3, :3] @ r_rect_02,
                               atol=1e-12)
    np.testing.assert_array_equal(msgs["/kitti/velo/pointcloud"][1][1].data.view(np.float32).reshape(-1, 4),
                                  points + 1)
    assert "/kitti/gt/odom" not in msgs


def test_raw_image_size_must_match_calibration(tmp_path):
    drive, _, _ = build_raw(tmp_path)
    cv2.imwrite(str(drive / "image_02" / "data" / "0000000000.png"), np.zeros((5, 7, 3), np.uint8))
    with pytest.raises(InputError, match="0000000000.png is 7x5 but .*calib_cam_to_cam.txt key S_rect_02 says 40x16"):
        convert(drive, tmp_path / "bag")


# ----------------------------------------------------------------------------- output handling

def test_failed_conversion_leaves_no_bag(synth_root, tmp_path, monkeypatch):
    real, calls = kitti2bag._image_msg, []

    def failing(stream, i, compressed):
        calls.append(i)
        if i == 2:
            raise InputError("simulated unreadable frame")
        return real(stream, i, compressed)

    monkeypatch.setattr(kitti2bag, "_image_msg", failing)
    with pytest.raises(InputError, match="simulated"):
        convert(synth_root / "sequences" / "01", tmp_path / "bag")
    assert calls == [0, 1, 2] and list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(synth_root, tmp_path):
    src = synth_root / "sequences" / "01"
    convert(src, tmp_path / "bag", max_frames=2)
    with pytest.raises(InputError, match="bag already exists; choose another output or pass --overwrite"):
        convert(src, tmp_path / "bag", max_frames=3)
    convert(src, tmp_path / "bag", max_frames=3, overwrite=True)
    assert len(read_all(tmp_path / "bag")[IMAGE]) == 3 and [p.name for p in tmp_path.iterdir()] == ["bag"]


@pytest.mark.parametrize("where", ["source", "parent", "root", "inside"])
def test_an_output_overlapping_the_source_is_refused_before_anything_is_deleted(synth_root, tmp_path, where):
    root = tmp_path / "kitti"
    shutil.copytree(synth_root, root)  # the session's tree must survive a failing run of this test
    src = root / "sequences" / "01"
    out = {"source": src, "parent": src.parent, "root": root, "inside": src / "image_2"}[where]
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with pytest.raises(InputError, match="write the bag elsewhere \\(nothing was changed\\)"):
        convert(src, out, max_frames=2, overwrite=True)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_cli_refuses_to_overwrite_its_source(synth_root, tmp_path, capsys):
    src = tmp_path / "01"
    shutil.copytree(synth_root / "sequences" / "01", src)
    assert main([str(src), str(src), "--overwrite", "--quiet"]) == 2
    assert "is the source" in capsys.readouterr().err and (src / "times.txt").is_file()


def test_cli(synth_root, tmp_path, capsys):
    assert main([str(synth_root / "sequences" / "01"), str(tmp_path / "b"), "--storage", "mcap", "--max-frames",
                 "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"{IMAGE}: 2" in out and "metadata v9" in out and "frames/s" in out
    assert main([str(tmp_path), str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}: neither a KITTI odometry sequence" in err
    assert main([str(synth_root / "sequences" / "01"), str(tmp_path / "d"), "--cameras", "2,5"]) == 2
    assert "cameras must be a non-empty subset of 0, 1, 2, 3" in capsys.readouterr().err
