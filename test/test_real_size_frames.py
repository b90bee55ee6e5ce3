"""Frames of real sizes reach perception_node on its default QoS, from reliable and from
best-effort cameras in other processes, and every frame is accounted for.

Sizes: 640x480 RGB (a USB camera), KITTI colour (1242x375) and grayscale (1226x370), 1280x720 and
1920x1080. On the node's old default (best-effort reading) none of the first two arrived from a
reliable camera: Fast DDS drops best-effort samples larger than its shared-memory segment. A
best-effort camera runs with the large-frames profile the package ships (config/), as the docs
ask of a camera driver; a camera whose images never arrive is named in /diagnostics with that fix.
"""
import json
import os
import signal
import subprocess
import sys

import pytest

from sa4depth_ros.frame_accounting import shutdown_counts
from test_launch_config import _start_run
from test_perception_node import REPO, TIMEOUT, running_node

SIZES = ("640x480:rgb8", "1242x375:rgb8", "1226x370:mono8", "1280x720:rgb8", "1920x1080:bgr8")
FRAMES = 3  # per size, after the warm-up
PROFILE = REPO / "config" / "fastdds_large_frames.xml"


@pytest.fixture(scope="module")
def node(ros_domain_module, synth_root, tmp_path_factory):
    with running_node(ros_domain_module, synth_root, tmp_path_factory.mktemp("node"),
                      ["input_width:=128", "input_height:=64"]) as node:
        yield node


def start_camera(domain: int, qos: str, *args: str, profile: bool = False) -> subprocess.Popen:
    """test/camera_process.py running in the background."""
    env = dict(os.environ)
    for name in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS"):
        env.pop(name, None)
    if profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    return subprocess.Popen([sys.executable, str(REPO / "test" / "camera_process.py"), "--domain", str(domain),
                             "--qos", qos, "--timeout", str(TIMEOUT), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def report_of(proc: subprocess.Popen) -> dict:
    """The camera's JSON report once it has ended (it must end well)."""
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"camera failed ({proc.returncode}):\n{out}\n{err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


def counts(node, predicate=lambda values: True) -> dict:
    values = node.diagnostics(predicate)
    assert values is not None, f"no diagnostics:\n{node.output()}"
    return {key: int(value) if str(value).lstrip("-").isdigit() else value for key, value in values.items()}


def at_rest(v) -> bool:
    """Every image that reached the node was paired and has its fate (the fixture's warm-up frames
    may still be in flight when a test starts)."""
    fates = ("frames_processed", "frames_dropped_stale", "frames_rejected", "frames_failed")
    return int(v["frames_received"]) == sum(int(v[key]) for key in fates)


@pytest.mark.parametrize("qos", ["reliable", "sensor_data"])
def test_frames_of_real_sizes_arrive_on_the_defaults_and_are_all_accounted(node, ros_domain_module, qos):
    before = counts(node, at_rest)
    report = report_of(start_camera(ros_domain_module, qos, "--frames", str(FRAMES), *SIZES,
                                    profile=qos == "sensor_data"))
    returned = {entry["size"]: (entry["returned"], entry["sent"]) for entry in report["sizes"]}
    assert returned == {size: (FRAMES, FRAMES) for size in SIZES}, f"{report}\n{node.output()}"
    sent = sum(entry["sent"] + entry["warm_up_sent"] for entry in report["sizes"])
    warm_up = report["sizes"][0]["warm_up_sent"]
    depth_back = len(SIZES) * FRAMES + 1  # the warm-up ends with the first frame that came back
    fates = ("frames_processed", "frames_dropped_stale", "frames_rejected", "frames_failed")

    def settled(v):  # every image that arrived was paired and has its fate (a slow warm-up frame may be in flight)
        delta = {key: int(v[key]) - before[key] for key in ("images_arrived", "frames_received") + fates}
        return delta["frames_processed"] >= depth_back and delta["frames_received"] == sum(delta[key] for key in fates)

    after = counts(node, settled)
    delta = {key: after[key] - before[key] for key in after if isinstance(after[key], int) and key in before}
    # every measured frame was processed and published; only warm-up frames (sent 2 s apart until one
    # came back) may have been replaced in the mailbox by the next, or lost before a best-effort
    # reader matched the camera
    assert depth_back <= delta["images_arrived"] <= sent, (delta, report)
    assert delta["frames_rejected"] == delta["frames_failed"] == 0, delta
    assert delta["frames_dropped_stale"] <= warm_up - 1, (delta, report)
    assert delta["frames_published"] == delta["frames_processed"] >= depth_back, delta
    assert delta["camera_infos_arrived"] >= depth_back, delta
    # the node read the camera as it offered (back to reliable once only the test's client is left)
    how = "best effort" if qos == "sensor_data" else "reliable"
    assert f"subscribed to /image ({how} as offered)" in node.log.read_text(), node.output()


def test_camera_infos_without_images_are_counted_and_named_with_the_fix(node, ros_domain_module):
    before = counts(node)
    # 10 CameraInfos a second for 8 s; the node names the problem while the camera is still there
    proc = start_camera(ros_domain_module, "sensor_data", "--frames", "80", "--infos-only", "640x480:rgb8")
    try:
        after = counts(node, lambda v: "FASTDDS_DEFAULT_PROFILES_FILE" in v["message"])
    finally:
        report_of(proc)
    assert after["camera_infos_arrived"] - before["camera_infos_arrived"] >= 3
    assert after["images_arrived"] == before["images_arrived"]
    assert str(PROFILE) in after["message"] and after["level"] == 1, after["message"]


def grey_kitti_bag(tmp_path, frames: int):
    """A bag of KITTI's grey left camera (mono8, /kitti/camera_gray_left) at KITTI's size."""
    import cv2

    from sa4depth_core.data.kitti2bag import convert
    from sa4depth_core.data.synth import generate_sequence

    generate_sequence(tmp_path / "kitti", "00", num_frames=frames, height=370, width=1226, seed=3)
    seq = tmp_path / "kitti" / "sequences" / "00"
    (seq / "image_0").mkdir()
    for png in sorted((seq / "image_2").glob("*.png")):
        cv2.imwrite(str(seq / "image_0" / png.name), cv2.imread(str(png), cv2.IMREAD_GRAYSCALE))
    bag = tmp_path / "bag"
    convert(seq, bag, cameras=(0,))
    return bag


def test_a_grey_kitti_bag_on_the_replay_graph_reaches_the_node_whole(ros_domain, tmp_path):
    from sa4depth_ros.frame_client import FrameClient

    frames = 12
    bag = grey_kitti_bag(tmp_path, frames)
    # the graph's defaults, no loop: no image topic given, the replay finds the bag's grey camera
    proc = _start_run(ros_domain, "--bag", str(bag), "--rate", "1")
    client = FrameClient(ros_domain, topics=("depth/image",), tf=False)
    try:
        # the player waits for the node's subscriptions, so every frame of the bag reaches it
        arrived = client.diagnostics(timeout=180, predicate=lambda d: int(d["images_arrived"]) >= frames)
        assert arrived is not None, "the node never saw every frame of the bag"
    finally:
        client.close()
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert f"/kitti/camera_gray_left/image_raw: {frames}" in output, output
    counts = shutdown_counts(output)
    assert counts, output
    assert counts["images_arrived"] == counts["camera_infos_arrived"] == counts["frames_received"] == frames, counts
    accounted = sum(counts[k] for k in ("frames_processed", "frames_dropped_stale", "frames_rejected", "frames_failed"))
    assert accounted == frames and counts["frames_rejected"] == counts["frames_failed"] == 0, counts
