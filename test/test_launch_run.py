"""The package as a ROS 2 install uses it: `colcon build` into a fresh install space, then the launch
files from that install space under launch.LaunchService (what `ros2 launch` does, minus the CLI),
with the nodes answering over loopback DDS and every process gone after LaunchService.shutdown().

launch, launch_ros and colcon are not on PyPI; `make setup` installs them from
../shared/vendor/ros2_launch (scripts/install_ros2_launch.sh). Without that folder these tests skip;
with it, a missing install is a failure.
"""
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
VENDOR = REPO.parent / "shared" / "vendor" / "ros2_launch"
if not VENDOR.is_dir():
    pytest.skip(f"{VENDOR} is absent, so make setup installed neither launch nor colcon",
                allow_module_level=True)

from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch import LaunchDescription, LaunchService  # noqa: E402
from launch.actions import IncludeLaunchDescription, LogInfo, RegisterEventHandler  # noqa: E402
from launch.event_handlers import OnProcessExit, OnProcessStart  # noqa: E402
from launch.launch_description_sources import (  # noqa: E402
    PythonLaunchDescriptionSource,
    get_launch_description_from_python_launch_file,
)
from launch_ros.actions import Node  # noqa: E402

from sa4depth_ros.run import PACKAGE  # noqa: E402

PYTHON_DIR = f"python{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(scope="module")
def install_space(tmp_path_factory):
    """A colcon install space of this package (isolated layout: <install>/sa4depth_ros)."""
    root = tmp_path_factory.mktemp("colcon")
    env = dict(os.environ, COLCON_HOME=str(root / "colcon_home"))  # no user defaults or mixins
    # `python -m colcon`, as in the README's venv install: this interpreter runs setup.py, so the
    # installed scripts start with it
    done = subprocess.run([sys.executable, "-m", "colcon", "--log-base", str(root / "log"), "build",
                           "--paths", str(REPO), "--build-base", str(root / "build"),
                           "--install-base", str(root / "install")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"colcon build failed (is colcon installed? make setup):\n{done.stdout}{done.stderr}"
    return root / "install"


@pytest.fixture
def from_install(install_space, monkeypatch, tmp_path, tmp_path_factory):
    """The environment `source install/setup.bash` gives, for this process and the nodes it launches
    (their log files, and launch's, in the session's temporary directory; the parameter files
    launch_ros writes for a Node's dict parameters, and leaves behind, in the test's)."""
    prefix = install_space / PACKAGE
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path_factory.getbasetemp() / "ros_log"))
    monkeypatch.setenv("AMENT_PREFIX_PATH", os.pathsep.join([str(prefix), sys.prefix]))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(prefix / "lib" / PYTHON_DIR / "site-packages"), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return prefix


def test_colcon_build_installs_scripts_launch_files_and_config(install_space):
    prefix = install_space / PACKAGE
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    share = prefix / "share" / PACKAGE
    assert {p.name for p in (share / "launch").iterdir()} == {p.name for p in (REPO / "launch").glob("*.launch.py")}
    assert {p.name for p in (share / "config").iterdir()} == {p.name for p in (REPO / "config").iterdir()}
    assert (share / "package.xml").read_text() == (REPO / "package.xml").read_text()
    for script in ("perception_node", "trainer_node", "sa4depth-play"):
        path = prefix / "lib" / PACKAGE / script  # where launch_ros looks for a package's executables
        assert path.is_file() and os.access(path, os.X_OK), path
        assert path.read_text().startswith(f"#!{sys.executable}\n"), path
    site = prefix / "lib" / PYTHON_DIR / "site-packages"
    assert (site / "sa4depth_ros" / "perception_node.py").is_file() and (site / "sa4depth_core").is_dir()


def _small_params(prefix: Path, path: Path) -> Path:
    """The installed sa4depth.yaml with a tiny network input and one torch thread."""
    data = yaml.safe_load((prefix / "share" / PACKAGE / "config" / "sa4depth.yaml").read_text())
    data["/**/perception_node"]["ros__parameters"].update(input_width=128, input_height=64, threads=1, backend="torch",
                                                          precision="fp32")
    path.write_text(yaml.safe_dump(data))
    return path


class _Run:
    """One LaunchService run of an installed launch file, with the processes it started and their
    exit codes (by pid)."""

    def __init__(self, launch_file: str, arguments: dict):
        self.path = Path(get_package_share_directory(PACKAGE), "launch", launch_file)
        self.started, self.exited = {}, {}
        self.service = LaunchService()
        on_start = OnProcessStart(on_start=lambda event, _: self.started.update({event.pid: event.cmd}))
        on_exit = OnProcessExit(on_exit=lambda event, _: self.exited.update({event.pid: event.returncode}))
        self.service.include_launch_description(LaunchDescription([
            RegisterEventHandler(on_start), RegisterEventHandler(on_exit),
            IncludeLaunchDescription(PythonLaunchDescriptionSource(str(self.path)), launch_arguments=arguments.items()),
        ]))

    def executables(self) -> list:
        return sorted(Path(cmd[0]).name for cmd in self.started.values())

    def wait_started(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.started) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.started) == count, f"started {self.executables()}"

    def assert_running(self) -> None:
        assert not self.exited, f"exited early: {[(self.started[p], c) for p, c in self.exited.items()]}"

    def run(self, check) -> int:
        """Run the launch in this (main) thread and `check(self)` beside it, then shut down; returns
        LaunchService's exit code and re-raises what `check` raised."""
        errors, finished = [], threading.Event()

        def checker():
            try:
                check(self)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread below
                errors.append(exc)
            finally:
                while not finished.is_set():  # shutdown() does nothing before the service runs
                    self.service.shutdown()
                    finished.wait(0.5)

        thread = threading.Thread(target=checker, daemon=True)
        thread.start()
        try:
            code = self.service.run(shutdown_when_idle=False)
        finally:
            finished.set()
            thread.join(timeout=60)
        if errors:
            raise errors[0]
        return code

    def assert_clean_exit(self, code: int, prefix: Path) -> None:
        assert code == 0
        assert self.exited == {pid: 0 for pid in self.started}, self.started
        assert all(cmd[0].startswith(str(prefix)) for cmd in self.started.values()), self.started
        assert all("--ros-args" in cmd for cmd in self.started.values())
        assert not [pid for pid in self.started if Path(f"/proc/{pid}").exists()], "processes left behind"


def test_sa4depth_launch_runs_the_node_in_a_namespace_from_the_install_space(from_install, ros_domain,
                                                                              synth_root, tmp_path):
    from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
    from sa4depth_ros import params
    from sa4depth_ros.frame_client import FrameClient

    seq = KittiOdometrySequence(synth_root, "00")
    run = _Run("sa4depth.launch.py", {
        "namespace": "cam", "image_topic": "rgb", "device": "cpu", "use_rviz": "false", "camera_height": "0.8",
        "params_file": str(_small_params(from_install, tmp_path / "params.yaml"))})

    def check(run):
        run.wait_started(1, timeout=60)
        client = FrameClient(ros_domain, namespace="cam", image_topic="rgb",
                             topics=("depth/image", "depth/camera_info"))
        try:
            deadline = time.monotonic() + 90
            while not client.wait_connected(timeout=1, outputs=("depth/image", "depth/camera_info")):
                run.assert_running()
                assert time.monotonic() < deadline, "perception_node never matched /cam/rgb and /cam/depth/image"
            seconds = client.warm_up(seq.image(0), seq.intrinsics(), timeout=90)
            assert seconds is not None, "no depth for an image sent to /cam/rgb"
            depth = client.messages("depth/image")[-1]
            assert (depth.height, depth.width) == seq.image(0).shape[:2]
            assert client.with_stamp("depth/camera_info", depth.header.stamp, 10) is not None
            # the node's services live in the namespace, under the name the YAML is keyed by
            assert client.declared_parameters() >= set(params.BY_NAME)
            # metres from the height the launch was given (an untrained model fits no ground plane yet)
            d = client.diagnostics(timeout=10, after=time.monotonic(),
                                   predicate=lambda d: "camera_height 0.8 m" in d["scale"])
            assert d is not None, "no diagnostics in /cam with the scale from the camera_height argument"
            run.assert_running()
        finally:
            client.close()

    code = run.run(check)
    assert run.executables() == ["perception_node"]
    run.assert_clean_exit(code, from_install)


def test_sa4depth_launch_without_a_camera_height_stops_before_starting_anything(from_install, caplog):
    run = _Run("sa4depth.launch.py", {"device": "cpu", "use_rviz": "false"})
    assert run.service.run() == 1 and not run.started
    assert "missing required argument 'camera_height'" in caplog.text  # launch's own error, with the description
    assert "height above the ground in metres" in caplog.text


def test_kitti_replay_launch_plays_a_bag_into_the_node(from_install, ros_domain, synth_root, tmp_path):
    from sa4depth_core.data.kitti2bag import convert
    from sa4depth_ros.frame_client import FrameClient

    bag = tmp_path / "bag"
    convert(synth_root / "sequences" / "01", bag)
    run = _Run("kitti_replay.launch.py", {
        "bag": str(bag), "loop": "true", "rate": "2", "device": "cpu", "use_rviz": "false",
        "params_file": str(_small_params(from_install, tmp_path / "params.yaml"))})

    def check(run):
        run.wait_started(2, timeout=60)
        client = FrameClient(ros_domain, topics=("depth/image", "odom"))
        try:
            def shared_stamps():
                # odometry for a frame whose depth also arrived: the whole graph ran on the bag
                run.assert_running()
                depth = {(d.header.stamp.sec, d.header.stamp.nanosec) for d in client.messages("depth/image")}
                return depth & {(o.header.stamp.sec, o.header.stamp.nanosec) for o in client.messages("odom")}

            assert client.wait_for(shared_stamps, timeout=120), "no odometry and depth of the same bag frame"
            depth = client.messages("depth/image")[-1]
            assert depth.header.frame_id == "camera_color_left" and (depth.height, depth.width) == (64, 128)
            assert client.messages("odom")[-1].header.frame_id == "odom"
            # KITTI's camera height, and the camera's mounting from the bag's /tf_static
            d = client.diagnostics(timeout=20, after=time.monotonic(), predicate=lambda d: (
                d["extrinsic"].startswith("tf") and "camera_height 1.65 m" in d["scale"]))
            assert d is not None, "no diagnostics with KITTI's camera height and the bag's camera mounting"
            assert d["extrinsic"] == "tf (base_link -> camera_color_left)"
        finally:
            client.close()

    code = run.run(check)
    assert run.executables() == ["perception_node", "sa4depth-play"]
    run.assert_clean_exit(code, from_install)


def _rviz_actions(from_install):
    description = get_launch_description_from_python_launch_file(
        str(Path(get_package_share_directory(PACKAGE), "launch", "sa4depth.launch.py")))
    nodes = [e for e in description.entities if isinstance(e, Node) and e.node_package == "rviz2"]
    notes = [e for e in description.entities if isinstance(e, LogInfo)]
    return nodes, notes


def test_rviz_is_optional(from_install, tmp_path, monkeypatch):
    # the install space and the venv have no rviz2: use_rviz:=true logs a note instead of failing
    nodes, notes = _rviz_actions(from_install)
    assert not nodes and len(notes) == 1
    # an rviz2 package on the ament index: the RViz node
    fake = tmp_path / "rviz2_prefix"
    marker = fake / "share" / "ament_index" / "resource_index" / "packages" / "rviz2"
    marker.parent.mkdir(parents=True)
    marker.touch()
    monkeypatch.setenv("AMENT_PREFIX_PATH", os.pathsep.join([os.environ["AMENT_PREFIX_PATH"], str(fake)]))
    nodes, notes = _rviz_actions(from_install)
    assert len(nodes) == 1 and not notes
