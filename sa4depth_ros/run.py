"""sa4depth-run: start the graph of launch/sa4depth.launch.py (or, with --bag, of
launch/kitti_replay.launch.py) without the `launch` package.

Each node runs as a child process with `--ros-args` (node name, namespace, --params-file from the
same YAML the launch files use, -p overrides, -r remappings). The children get DDS kept on
loopback (ensure_loopback_dds) and a process group of their own, so a Ctrl-C reaches them once,
forwarded by this launcher: SIGINT/SIGTERM here -> SIGINT to every child, then SIGTERM and
SIGKILL for any that do not exit within --kill-timeout seconds.

test/test_launch_config.py checks that the graphs built here match the launch files.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sa4depth_core.data.bag_reader import camera_topics
from sa4depth_core.errors import InputError

from .ros_env import PACKAGE, ensure_loopback_dds, share_file

# Console scripts of setup.py that these graphs start, and the modules behind them.
MODULES = {"perception_node": "sa4depth_ros.perception_node", "trainer_node": "sa4depth_ros.trainer_node",
           "sa4depth-play": "sa4depth_ros.bag_player"}
KITTI_IMAGE = "/kitti/camera_color_left/image_raw"
WAIT_FOR_NODE_S = 120  # the player's longest wait for the node's input subscriptions
KITTI_INFO = "/kitti/camera_color_left/camera_info"
KITTI_CAMERA_HEIGHT = "1.65"


@dataclass
class NodeSpec:
    """One process of a graph, as a launch_ros Node action would describe it."""

    package: str
    executable: str
    name: str | None = None
    namespace: str = ""
    arguments: list = field(default_factory=list)
    parameters: dict = field(default_factory=dict)  # -p overrides applied after the params file
    remappings: list = field(default_factory=list)
    params_file: str | None = None


def default_params_file() -> Path:
    return share_file("config", "sa4depth.yaml")


def default_trainer_params_file() -> Path:
    return share_file("config", "trainer.yaml")


def default_rviz_config() -> Path:
    return share_file("config", "sa4depth.rviz")


def _parameter_override(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected name:=value, got '{text}'")
    return name, value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sa4depth-run",
        description="Run the sa4depth_ros nodes the way `ros2 launch sa4depth_ros sa4depth.launch.py` "
                    "(or, with --bag, kitti_replay.launch.py) does, on machines without `launch`.")
    p.add_argument("--params-file", default=str(default_params_file()), help="node parameters YAML")
    p.add_argument("--checkpoint", default="", help="model checkpoint (empty: untrained, with a warning)")
    p.add_argument("--image-topic", default=None,
                   help=f"image topic (default: image, or with --bag the bag's camera, {KITTI_IMAGE} first)")
    p.add_argument("--camera-info-topic", default=None,
                   help="CameraInfo topic (default: camera_info, or with --bag the bag's camera's)")
    p.add_argument("--namespace", default="", help="namespace of the nodes (and of RViz)")
    p.add_argument("--scale-mode", default="camera_height", choices=("relative", "fixed", "camera_height"),
                   help="camera_height (metres from --camera-height, the default) | fixed | relative (network "
                        "units, not metres)")
    p.add_argument("--camera-height", default=None,
                   help="REQUIRED without --bag: the camera's height above the ground in metres (no default: a "
                        f"guessed height gives wrong metres; any value with --scale-mode relative or fixed); "
                        f"{KITTI_CAMERA_HEIGHT} with --bag")
    p.add_argument("--image-transport", default="raw", choices=("raw", "compressed"),
                   help="raw: Image on the image topic; compressed: CompressedImage on <image topic>/compressed")
    p.add_argument("--rectified-images", default="true", choices=("true", "false"),
                   help="true: rectified images used with CameraInfo P; false: raw images used with K and D")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--use-sim-time", action="store_true", help="run on /clock (always on with --bag)")
    p.add_argument("--online-learning", action="store_true",
                   help="also start trainer_node (fine-tunes on the stream, hands better models to the perception node)")
    p.add_argument("--trainer-params-file", default=str(default_trainer_params_file()),
                   help="trainer_node parameters YAML")
    p.add_argument("--bag", default="", help="play this bag with sa4depth-play (the kitti_replay graph)")
    p.add_argument("--rate", default="1.0", help="bag playback rate")
    p.add_argument("--loop", action="store_true", help="loop the bag")
    p.add_argument("--rviz", action="store_true", help="also start rviz2 with --rviz-config")
    p.add_argument("--rviz-config", default=str(default_rviz_config()))
    p.add_argument("-p", "--param", dest="params", action="append", default=[], type=_parameter_override,
                   metavar="NAME:=VALUE", help="extra perception_node parameter (repeatable)")
    p.add_argument("-t", "--trainer-param", dest="trainer_params", action="append", default=[],
                   type=_parameter_override, metavar="NAME:=VALUE",
                   help="extra trainer_node parameter (repeatable, with --online-learning)")
    p.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID for all nodes")
    p.add_argument("--kill-timeout", type=float, default=15.0, help="seconds from SIGINT to SIGTERM")
    p.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    return p


def replay_camera(bag: str) -> tuple[str, str]:
    """The camera a replay feeds the node: KITTI's left colour camera when the bag has it, else the
    bag's first camera (a grey KITTI bag has only camera_gray_left), else KITTI's topic names (the
    player then says what the bag holds)."""
    try:
        return camera_topics(bag, prefer=KITTI_IMAGE) or (KITTI_IMAGE, KITTI_INFO)
    except InputError:
        return KITTI_IMAGE, KITTI_INFO


def build_graph(args: argparse.Namespace) -> list[NodeSpec]:
    """The processes of sa4depth.launch.py, or of kitti_replay.launch.py when args.bag is set."""
    replay = bool(args.bag)
    if args.camera_height is None and not replay:
        raise InputError("--camera-height is required: the camera's height above the ground in metres sets the scale "
                         "of every output (with --scale-mode relative or fixed pass any value, e.g. 0)")
    sim_time = "true" if replay or args.use_sim_time else "false"
    bag_camera = replay_camera(args.bag) if replay else ("image", "camera_info")
    inputs = [("image", args.image_topic or bag_camera[0]), ("camera_info", args.camera_info_topic or bag_camera[1])]
    stream = {"image_transport": args.image_transport, "rectified_images": args.rectified_images}
    overrides = {
        "checkpoint": args.checkpoint,
        "scale_mode": args.scale_mode,
        "camera_height": args.camera_height or KITTI_CAMERA_HEIGHT,
        "device": args.device,
        **stream,
        "use_sim_time": sim_time,
    }
    overrides.update(dict(args.params))
    graph = [NodeSpec(PACKAGE, "perception_node", name="perception_node", namespace=args.namespace,
                      parameters=overrides, params_file=args.params_file, remappings=inputs)]
    if replay:
        # the node subscribes once it has loaded its model and seen the player's publishers: frames
        # played before that would be lost unseen
        image = inputs[0][1] + ("/compressed" if args.image_transport == "compressed" else "")
        waited = [image] if "intrinsics" in overrides else [image, inputs[1][1]]
        player_args = [args.bag, "--rate", str(args.rate), "--clock", "--wait-subscribers", str(WAIT_FOR_NODE_S),
                       "--wait-for", *waited] + (["--loop"] if args.loop else [])
        graph.insert(0, NodeSpec(PACKAGE, "sa4depth-play", arguments=player_args))
    if args.online_learning:
        trainer = {"init_checkpoint": args.checkpoint, "device": args.device, **stream, "use_sim_time": sim_time}
        trainer.update(dict(args.trainer_params))
        graph.append(NodeSpec(PACKAGE, "trainer_node", name="trainer_node", namespace=args.namespace,
                              parameters=trainer, params_file=args.trainer_params_file, remappings=inputs))
    if args.rviz:
        graph.append(NodeSpec("rviz2", "rviz2", name="rviz2", namespace=args.namespace,
                              arguments=["-d", args.rviz_config], parameters={"use_sim_time": sim_time},
                              remappings=[("image", inputs[0][1])]))
    return graph


def _quote_value(value: str) -> str:
    # an empty value must be spelled '' on the command line (rcl rejects "name:=")
    return value if value != "" else "''"


def command(spec: NodeSpec) -> list[str]:
    """argv of one node: `python -m module` for this package's scripts, the executable otherwise."""
    if spec.package == PACKAGE:
        argv = [sys.executable, "-m", MODULES[spec.executable]]
    else:
        found = shutil.which(spec.executable)
        if found is None:
            raise InputError(f"'{spec.executable}' (package {spec.package}) is not on PATH; source a ROS 2 "
                             "installation that has it, or leave it out (e.g. no --rviz)")
        argv = [found]
    argv += list(spec.arguments)
    ros = []
    if spec.name:
        ros += ["-r", f"__node:={spec.name}"]
    if spec.namespace.strip("/"):
        ros += ["-r", f"__ns:=/{spec.namespace.strip('/')}"]
    if spec.params_file:
        ros += ["--params-file", spec.params_file]
    for name, value in spec.parameters.items():
        ros += ["-p", f"{name}:={_quote_value(str(value))}"]
    for source, target in spec.remappings:
        ros += ["-r", f"{source}:={target}"]
    return argv + (["--ros-args"] + ros if ros else [])


class Launcher:
    """Runs commands as child processes and stops them together."""

    def __init__(self, commands: list[list[str]], kill_timeout: float = 15.0):
        self.commands = commands
        self.kill_timeout = kill_timeout
        self.procs: list[subprocess.Popen] = []
        self._stopping = False

    def start(self) -> None:
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        for argv in self.commands:
            # A group of its own: a terminal Ctrl-C reaches the child once, through stop().
            self.procs.append(subprocess.Popen(argv, env=env, start_new_session=True))

    def stop(self, *_signal_args) -> None:
        """SIGINT every running child; wait() escalates if needed."""
        self._stopping = True
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)

    def wait(self) -> int:
        """Until every child exited: 0, or the first non-zero exit status. A child failing while
        the graph runs stops the others (like a launch file's required node)."""
        status = 0
        deadline = None
        while any(proc.poll() is None for proc in self.procs):
            for proc, argv in zip(self.procs, self.commands):
                code = proc.poll()
                if code not in (None, 0) and not self._stopping:
                    print(f"sa4depth-run: {' '.join(argv[:3])} exited with {code}; stopping the others",
                          file=sys.stderr)
                    status = status or code
                    self.stop()
            if self._stopping and deadline is None:
                deadline = time.monotonic() + self.kill_timeout
            if deadline is not None and time.monotonic() > deadline:
                for proc in self.procs:
                    if proc.poll() is None:
                        proc.terminate()
                deadline = time.monotonic() + self.kill_timeout / 3
                for proc in self.procs:
                    try:
                        proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
                    except subprocess.TimeoutExpired:
                        proc.kill()
            time.sleep(0.1)
        for proc in self.procs:
            status = status or proc.returncode
        return status


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        ensure_loopback_dds(args.domain_id)
        commands = [command(spec) for spec in build_graph(args)]
    except InputError as exc:
        print(f"sa4depth-run: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        for argv in commands:
            print(" ".join(argv))
        return 0
    launcher = Launcher(commands, args.kill_timeout)
    signal.signal(signal.SIGINT, launcher.stop)
    signal.signal(signal.SIGTERM, launcher.stop)
    launcher.start()
    return launcher.wait()


if __name__ == "__main__":
    raise SystemExit(main())
