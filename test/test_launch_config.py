"""Launch files, YAML, RViz config and sa4depth-run agree with each other and with the node.

The launch files are read with `ast`, so these checks run without the `launch` package (pip-only
installs): every Node they start must be a console script of setup.py (or rviz2), every parameter
they or the YAML set must be one the node declares, with a valid value, and sa4depth-run must build
the same graphs. The last tests start the graph with sa4depth-run, the pip-only fallback, and talk
to it over loopback DDS; test_launch_run.py runs the launch files themselves under
launch.LaunchService from a colcon install space.
"""
import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from sa4depth_ros import params, run, trainer_node
from sa4depth_ros.perception_node import NODE_NAME, TOPICS

REPO = Path(__file__).resolve().parents[1]
LAUNCH = {name: REPO / "launch" / name for name in ("sa4depth.launch.py", "kitti_replay.launch.py")}
TABLES = {NODE_NAME: (params.PERCEPTION, REPO / "config" / "sa4depth.yaml"),
          trainer_node.NODE_NAME: (params.TRAINER, REPO / "config" / "trainer.yaml")}
# The robot launch departs from the node's defaults on purpose: metres, from a height it is given.
ROBOT_DEFAULTS = {"scale_mode": "camera_height"}
REQUIRED = {"camera_height"}  # launch arguments without a default
EXTERNAL = {("rviz2", "rviz2")}  # (package, executable) from other ROS packages
# launch arguments whose sa4depth-run option has another name
OPTION_NAMES = {"use_rviz": "rviz"}


def _console_scripts() -> dict:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            scripts = ast.literal_eval(node.value)["console_scripts"]
            return dict(line.replace(" ", "").split("=") for line in scripts)
    raise AssertionError("setup.py has no entry_points")


def _value(node, names=None):
    """A literal, ('arg', name) for LaunchConfiguration(name) (also inside ParameterValue or behind a
    variable of the file, looked up in `names`), or None."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and names and node.id in names:
        return _value(names[node.id], names)
    if isinstance(node, ast.Call):
        func = getattr(node.func, "id", None)
        if func == "LaunchConfiguration":
            return ("arg", node.args[0].value)
        if func == "ParameterValue":
            return _value(node.args[0], names)
    return None


def _included(call: ast.Call, names: dict, arguments: dict):
    """(arguments, nodes) of a launch file included by IncludeLaunchDescription `call`: the included
    file's model with its argument defaults replaced by what the call passes. A passed value must be
    a literal or the including file's argument of the same name (so one namespace of names serves
    both files)."""
    source = call.args[0]
    path = next(n.value for n in ast.walk(source) if isinstance(n, ast.Constant) and n.value.endswith(".launch.py"))
    inner_arguments, nodes = _launch_model(REPO / "launch" / path)
    passed = next(k.value for k in call.keywords if k.arg == "launch_arguments").func.value  # {...}.items()
    for key, value in zip(passed.keys, passed.values):
        value = _value(value, names)
        assert key.value in inner_arguments, f"{path} has no argument {key.value}"
        assert not isinstance(value, tuple) or value[1] == key.value, f"{key.value} passed as {value}"
        inner_arguments[key.value] = arguments[key.value] if isinstance(value, tuple) else value
    return inner_arguments, nodes


def _launch_model(path: Path):
    """({argument: default literal or None}, [node dicts]) of a launch file and the files it includes."""
    tree = ast.parse(path.read_text())
    names = {t.id: n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
             for t in n.targets if isinstance(t, ast.Name)}
    arguments, nodes, used, includes = {}, [], set(), []
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        func = getattr(call.func, "id", None)
        kw = {k.arg: k.value for k in call.keywords}
        if func == "LaunchConfiguration":
            used.add(call.args[0].value)
        elif func == "DeclareLaunchArgument":
            arguments[call.args[0].value] = _value(kw["default_value"]) if "default_value" in kw else None
        elif func == "IncludeLaunchDescription":
            includes.append(call)
        elif func == "Node":
            args = kw.get("arguments")
            if isinstance(args, ast.Name):
                args = names[args.id]
            if isinstance(args, ast.BinOp):  # player_arguments + ["--loop"]
                args = ast.List(elts=names[args.left.id].elts + args.right.elts)
            remappings = kw.get("remappings")
            if isinstance(remappings, ast.Name):
                remappings = names[remappings.id]
            overrides = {}
            for item in getattr(kw.get("parameters"), "elts", []):
                if isinstance(item, ast.Dict):
                    overrides.update({k.value: _value(v, names) for k, v in zip(item.keys, item.values)})
            nodes.append({
                "package": kw["package"].value, "executable": kw["executable"].value,
                "name": kw["name"].value if "name" in kw else None,
                "namespace": _value(kw["namespace"], names) if "namespace" in kw else "",
                "arguments": [_value(a, names) for a in getattr(args, "elts", [])],
                "overrides": overrides,
                "remappings": [tuple(_value(e, names) for e in t.elts) for t in getattr(remappings, "elts", [])],
                "condition": ast.unparse(kw["condition"]) if "condition" in kw else None,
            })
    assert used <= set(arguments), f"{path.name}: undeclared launch arguments {used - set(arguments)}"
    for call in includes:
        inner_arguments, inner_nodes = _included(call, names, arguments)
        arguments = {**inner_arguments, **{k: v for k, v in arguments.items() if k not in inner_arguments}}
        nodes += inner_nodes
    return arguments, nodes


def _yaml_parameters(node_name: str = NODE_NAME) -> dict:
    """{dotted parameter name: value} of a node's YAML file."""
    data = yaml.safe_load(TABLES[node_name][1].read_text())
    assert list(data) == [f"/**/{node_name}"]
    flat = {}

    def walk(prefix, tree):
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(prefix + key + ".", value)
            else:
                flat[prefix + key] = value
    walk("", data[f"/**/{node_name}"]["ros__parameters"])
    return flat


def test_settings_cover_every_parameter_spec():
    from dataclasses import fields
    assert {f.name for f in fields(params.Settings)} == {params.field_name(s.name) for s in params.SPECS}


@pytest.mark.parametrize("node_name", sorted(TABLES))
def test_yaml_sets_every_declared_parameter_to_its_default(node_name):
    table = TABLES[node_name][0]
    values = _yaml_parameters(node_name)
    assert set(values) == set(table.by_name), "YAML and declared parameters differ"
    for name, value in values.items():
        checked = table.check_value(name, value)
        default = table.by_name[name].default
        assert checked == pytest.approx(default) if isinstance(default, (float, list)) else checked == default, name
    if node_name == NODE_NAME:
        params.Settings.from_values(values)
    else:
        params.online_options(table.checked(values))


@pytest.mark.parametrize("node_name", sorted(TABLES))
def test_every_number_has_a_range_in_its_descriptor(node_name):
    for spec in TABLES[node_name][0].specs:
        if isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool) and spec.name != "lr":
            descriptor = spec.descriptor()
            ranges = descriptor.floating_point_range or descriptor.integer_range
            assert len(ranges) == 1 and ranges[0].from_value <= spec.default <= ranges[0].to_value, spec.name


def test_trainer_bounds_name_online_options():
    from dataclasses import fields

    from sa4depth_core.online import OnlineOptions
    assert set(params.TRAINER_OPTION_BOUNDS) <= {f.name for f in fields(OnlineOptions)}


def test_interface_doc_names_every_parameter_topic_and_service():
    from sa4depth_ros.perception_node import SERVICES, SET_POSE_TOPIC

    doc = (REPO / "docs" / "ros_interface.md").read_text()
    for name in [s.name for s in params.SPECS] + list(TOPICS) + list(SERVICES) + [SET_POSE_TOPIC]:
        assert f"`{name}`" in doc, name


@pytest.mark.parametrize("launch_file", sorted(LAUNCH))
def test_launch_nodes_exist_and_set_declared_parameters(launch_file):
    scripts = _console_scripts()
    arguments, nodes = _launch_model(LAUNCH[launch_file])
    yaml_values = {name: _yaml_parameters(name) for name in TABLES}
    for node in nodes:
        key = (node["package"], node["executable"])
        if node["package"] == run.PACKAGE:
            assert node["executable"] in scripts, f"{key} is not a console script in setup.py"
            assert scripts[node["executable"]].split(":")[0] == run.MODULES[node["executable"]]
        else:
            assert key in EXTERNAL, key
        if node["executable"] in TABLES:  # the YAML is keyed by the node's name
            assert node["name"] == node["executable"]
            table = TABLES[node["name"]][0]
            assert set(node["overrides"]) <= set(table.by_name) | {"use_sim_time"}
            for name, value in node["overrides"].items():
                literal = arguments[value[1]] if isinstance(value, tuple) else value
                if name not in table.by_name:
                    continue
                if literal is None:  # a required argument: there is no value to check
                    assert launch_file == "sa4depth.launch.py" and value == ("arg", name) and name in REQUIRED, name
                    continue
                default = table.by_name[name].default
                value = literal == "true" if isinstance(default, bool) else type(default)(literal)
                typed = table.check_value(name, value)
                if launch_file == "sa4depth.launch.py":  # launching with only the required arguments = the YAML
                    assert typed == ROBOT_DEFAULTS.get(name, yaml_values[node["name"]][name]), name
        if node["executable"] == "perception_node":
            assert [r[0] for r in node["remappings"]] == ["image", "camera_info"]
            assert REQUIRED <= set(node["overrides"])
        if node["executable"] == "trainer_node":
            trainer_yaml = yaml_values[trainer_node.NODE_NAME]
            assert node["condition"] == "IfCondition(LaunchConfiguration('online_learning'))"
            assert node["remappings"] == [("image", ("arg", "image_topic")),
                                          ("camera_info", ("arg", "camera_info_topic"))]
            # the trainer starts from the perception node's model, on the same device, and reads the same stream
            for name in ("image_transport", "rectified_images"):
                assert node["overrides"][name] == ("arg", name)
            assert node["overrides"]["init_checkpoint"] == ("arg", "checkpoint")
            assert node["overrides"]["device"] == ("arg", "device")
            assert arguments["checkpoint"] == trainer_yaml["init_checkpoint"]
            assert arguments["device"] == trainer_yaml["device"]
        if node["executable"] == "rviz2":  # the config's relative topics resolve in the nodes' namespace
            assert node["namespace"] == ("arg", "namespace")
            assert node["remappings"] == [("image", ("arg", "image_topic"))]
    for option in (OPTION_NAMES.get(a, a) for a in arguments):
        assert any(action.dest == option for action in run.parser()._actions), f"sa4depth-run lacks --{option}"


def _graph_from_run(argv):
    graph = run.build_graph(run.parser().parse_args(argv))
    return [{"package": s.package, "executable": s.executable, "name": s.name, "namespace": s.namespace,
             "arguments": s.arguments,
             "overrides": s.parameters, "remappings": s.remappings} for s in graph]


def _resolve(value, arguments, given):
    """A launch value with its LaunchConfiguration replaced by the argument's value."""
    if isinstance(value, tuple):
        return given.get(value[1], arguments[value[1]])
    return value


@pytest.mark.parametrize("launch_file, argv, given", [
    ("sa4depth.launch.py", ["--rviz", "--camera-height", "0.4"], {"use_rviz": "true", "camera_height": "0.4"}),
    ("sa4depth.launch.py", ["--rviz", "--namespace", "car", "--image-topic", "/cam/image", "--camera-height", "1.2",
                            "--image-transport", "compressed", "--rectified-images", "false"],
     {"use_rviz": "true", "namespace": "car", "image_topic": "/cam/image", "camera_height": "1.2",
      "image_transport": "compressed", "rectified_images": "false"}),
    ("sa4depth.launch.py", ["--online-learning", "--checkpoint", "/m.pt", "--namespace", "car", "--camera-height", "0",
                            "--scale-mode", "relative"],
     {"online_learning": "true", "checkpoint": "/m.pt", "namespace": "car", "camera_height": "0",
      "scale_mode": "relative"}),
    ("kitti_replay.launch.py", ["--bag", "/b", "--online-learning", "--device", "cpu"],
     {"bag": "/b", "online_learning": "true", "device": "cpu", "use_rviz": "false"}),
    ("kitti_replay.launch.py", ["--bag", "/data/bag"], {"bag": "/data/bag", "use_rviz": "false"}),
    ("kitti_replay.launch.py", ["--bag", "/data/bag", "--loop", "--rviz"], {"bag": "/data/bag", "loop": "true"}),
])
def test_sa4depth_run_builds_the_launch_graph(launch_file, argv, given):
    arguments, nodes = _launch_model(LAUNCH[launch_file])
    expected = []
    for node in nodes:
        cond = node["condition"]
        if cond:
            flag = given.get(cond.split("'")[1], arguments[cond.split("'")[1]]) == "true"
            if flag != cond.startswith("IfCondition"):
                continue
        expected.append({
            "package": node["package"], "executable": node["executable"], "name": node["name"],
            "namespace": _resolve(node["namespace"], arguments, given),
            "arguments": [_resolve(a, arguments, given) for a in node["arguments"]],
            "overrides": {k: str(_resolve(v, arguments, given)).lower() if isinstance(v, bool)
                          else _resolve(v, arguments, given) for k, v in node["overrides"].items()},
            "remappings": [tuple(_resolve(x, arguments, given) for x in r) for r in node["remappings"]],
        })
    got = _graph_from_run(argv)
    for g in got:  # the launch file passes the params file as a separate list entry
        if g["arguments"] and g["arguments"][0] == "-d":
            g["arguments"][1] = arguments["rviz_config"]
    key = lambda n: (n["package"], n["executable"])  # noqa: E731
    assert sorted(got, key=key) == sorted(expected, key=key)


def test_rviz_config_shows_the_node_outputs_in_the_odom_frame():
    config = yaml.safe_load((REPO / "config" / "sa4depth.rviz").read_text())["Visualization Manager"]
    assert config["Global Options"]["Fixed Frame"] == params.BY_NAME["odom_frame"].default
    shown = {d["Class"].split("/")[1]: [] for d in config["Displays"]}
    for d in config["Displays"]:
        if "Topic" in d:
            shown[d["Class"].split("/")[1]].append(d["Topic"]["Value"])
    # relative names: RViz started in the nodes' namespace shows that namespace's topics
    assert sorted(shown["Image"]) == ["depth/color", "image"]
    assert shown["PointCloud2"] == ["points"] and shown["Odometry"] == ["odom"] and shown["Path"] == ["path"]
    assert {"TF", "Grid"} <= set(shown)
    assert {t for ts in shown.values() for t in ts} <= set(TOPICS) | {"image"}


def test_dry_run_prints_ros_args():
    out = subprocess.run([sys.executable, "-m", "sa4depth_ros.run", "--dry-run", "--namespace", "cam",
                          "--checkpoint", "", "--camera-height", "0.5", "-p", "points_stride:=2"],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.count("\n") == 1
    assert ("-r __node:=perception_node -r __ns:=/cam --params-file" in out and "-p checkpoint:=''" in out
            and "-p points_stride:=2" in out and "-r image:=image" in out and "-p camera_height:=0.5" in out
            and "-p scale_mode:=camera_height" in out)


def test_sa4depth_run_needs_the_camera_height_of_a_live_camera():
    done = subprocess.run([sys.executable, "-m", "sa4depth_ros.run", "--dry-run"], capture_output=True, text=True,
                          cwd=REPO)
    assert done.returncode == 2 and "--camera-height is required" in done.stderr, done.stderr
    replay = subprocess.run([sys.executable, "-m", "sa4depth_ros.run", "--dry-run", "--bag", "/b"],
                            capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert f"-p camera_height:={run.KITTI_CAMERA_HEIGHT}" in replay and "-p scale_mode:=camera_height" in replay


def _start_run(domain, *extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "sa4depth_ros.run", "--domain-id", str(domain),
           "-p", "input_width:=128", "-p", "input_height:=64", "-p", "threads:=1", "-p", "backend:=torch", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sa4depth_run_stops_when_the_node_cannot_start(ros_domain):
    proc = _start_run(ros_domain, "--camera-height", "0.5", "-p", "scale_mode:=metric")
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, output
    assert "scale_mode" in output and "metric" in output


def test_sa4depth_run_graph_with_intrinsics_namespace_and_remap(ros_domain, synth_root):
    from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
    from sa4depth_ros.frame_client import FrameClient

    seq = KittiOdometrySequence(synth_root, "01")
    K = seq.intrinsics()
    intrinsics = f"[{K[0, 0]}, {K[1, 1]}, {K[0, 2]}, {K[1, 2]}]"
    proc = _start_run(ros_domain, "--namespace", "cam", "--image-topic", "rgb", "-p", f"intrinsics:={intrinsics}",
                      "--camera-height", "0", "--scale-mode", "relative")
    client = FrameClient(ros_domain, namespace="cam", image_topic="rgb", topics=("depth/image", "depth/camera_info"))
    try:
        assert client.wait_connected(timeout=40, info=False, outputs=("depth/image", "depth/camera_info"))
        seconds = client.warm_up(seq.image(0), None, timeout=60)
        assert seconds is not None, "no depth through sa4depth-run"
        info = client.with_stamp("depth/camera_info", client.messages("depth/image")[-1].header.stamp, 10)
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), K)
        assert client.declared_parameters() >= set(params.BY_NAME) | {"use_sim_time"}
        diag = client.diagnostics(timeout=10, predicate=lambda d: d["sync"] == "image_only")
        assert diag is not None and diag["model_id"] == "untrained"
    finally:
        client.close()
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)  # a node that ignores SIGINT fails here
    assert proc.returncode == 0, output
    assert "Traceback" not in output


def test_sa4depth_run_replays_a_kitti_bag(ros_domain, synth_root, tmp_path):
    from sa4depth_core.data.kitti2bag import convert
    from sa4depth_ros.frame_client import FrameClient

    bag = tmp_path / "bag"
    convert(synth_root / "sequences" / "01", bag)
    proc = _start_run(ros_domain, "--bag", str(bag), "--loop", "--rate", "2")
    client = FrameClient(ros_domain, topics=("depth/image", "odom"))
    try:
        depth = client.wait_for(lambda: client.messages("depth/image"), timeout=60)
        assert depth, "no depth from the replayed bag"
        assert depth[0].header.frame_id == "camera_color_left" and (depth[0].height, depth[0].width) == (64, 128)
        odom = client.wait_for(lambda: client.messages("odom"), timeout=20)
        assert odom and odom[0].header.frame_id == "odom"
        # The two subscriptions match the node at different moments, so the first odometry may belong
        # to a frame whose depth arrived before the depth subscription did; the looping bag repeats it.
        def shared_stamps():
            depth_stamps = {(d.header.stamp.sec, d.header.stamp.nanosec) for d in client.messages("depth/image")}
            return depth_stamps & {(o.header.stamp.sec, o.header.stamp.nanosec) for o in client.messages("odom")}

        assert client.wait_for(shared_stamps, timeout=30), "odometry never carried a depth frame's stamp"
        # /diagnostics on the bag's looping /clock, with KITTI's height and the bag's camera mounting
        d = client.diagnostics(timeout=20, after=time.monotonic(), predicate=lambda d: (
            d["extrinsic"].startswith("tf") and "camera_height 1.65 m" in d["scale"]))
        assert d is not None, "no diagnostics with KITTI's camera height and the bag's camera mounting"
        assert d["extrinsic"] == "tf (base_link -> camera_color_left)"
    finally:
        client.close()
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
