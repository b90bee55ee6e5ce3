"""package.xml declares exactly what the code needs, with rosdep keys that resolve.

The keys were checked by hand against ros/rosdistro (humble, jazzy and kilted distribution.yaml,
rosdep/python.yaml, August 2026); KEY_OF records that result per imported module. The test fails
when a module the package always imports has no key, when a key serves no import, and when a key
decided against comes back.
"""
import ast
import sys
from pathlib import Path

from catkin_pkg.package import parse_package

REPO = Path(__file__).resolve().parents[1]
CODE = [REPO / "sa4depth_core", REPO / "sa4depth_ros", REPO / "launch"]
# imported top-level module -> rosdep key (ROS packages by package name, python3-* from python.yaml)
KEY_OF = {
    "rclpy": "rclpy", "std_msgs": "std_msgs", "std_srvs": "std_srvs", "sensor_msgs": "sensor_msgs",
    "nav_msgs": "nav_msgs", "geometry_msgs": "geometry_msgs", "diagnostic_msgs": "diagnostic_msgs",
    "rcl_interfaces": "rcl_interfaces", "tf2_ros": "tf2_ros_py", "tf2_msgs": "tf2_msgs",
    "message_filters": "message_filters", "launch": "launch", "launch_ros": "launch_ros",
    "ament_index_python": "ament_index_python", "cv2": "python3-opencv", "numpy": "python3-numpy",
    "transforms3d": "python3-transforms3d", "yaml": "python3-yaml", "tqdm": "python3-tqdm",
    "torch": "python3-torch", "rosbags": "python3-rosbags-pip",
}
# keys no import shows: sa4depth-play builds rosgraph_msgs/Clock by name for --clock
USED_WITHOUT_IMPORT = {"rosgraph_msgs"}
# decided against: unused (cv_bridge, visualization_msgs, builtin_interfaces: only through other
# messages), optional (rviz2), not a rosdep key (ament_python), end-of-life alias (python3-pytorch-pip)
ABSENT = {"cv_bridge", "visualization_msgs", "builtin_interfaces", "rviz2", "ament_python", "python3-pytorch-pip"}


def _imports(tree: ast.Module):
    """(always, lazily) imported top-level module names of a module: `always` are the imports run
    when the module loads; imports inside functions or guarded by `except ImportError` are lazy."""
    always, lazy = set(), set()

    def visit(node, guarded):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.ImportFrom) and (node.level or node.module is None):
                return
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            (lazy if guarded else always).update(n.split(".")[0] for n in names)
            return
        if isinstance(node, ast.Try):
            catches_import = any(isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                                 for h in node.handlers)
            for child in node.body:
                visit(child, guarded or catches_import)
            for child in node.handlers + node.orelse + node.finalbody:
                visit(child, guarded)
            return
        nested = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, guarded or nested)

    visit(tree, False)
    return always, lazy


def _code_imports():
    always, lazy = set(), set()
    for root in CODE:
        for path in root.rglob("*.py"):
            a, z = _imports(ast.parse(path.read_text(), filename=str(path)))
            always |= a
            lazy |= z
    ours = {"sa4depth_core", "sa4depth_ros"}
    stdlib = set(sys.stdlib_module_names)
    return always - ours - stdlib, (lazy - always) - ours - stdlib


def _package():
    return parse_package(str(REPO / "package.xml"))


def test_package_xml_is_valid_format_3_ament_python():
    package = _package()
    package.validate()
    assert package.package_format == 3 and package.name == "sa4depth_ros"
    assert package.get_build_type() == "ament_python"
    assert package.buildtool_depends == []


def test_every_module_the_package_always_imports_has_its_key():
    always, _ = _code_imports()
    unknown = always - set(KEY_OF)
    assert not unknown, f"imported without a known rosdep key (add it to KEY_OF and package.xml): {sorted(unknown)}"
    declared = {d.name for d in _package().exec_depends}
    missing = {KEY_OF[m] for m in always} - declared
    assert not missing, f"package.xml lacks {sorted(missing)}"


def test_every_declared_key_serves_an_import_and_none_decided_against_is_back():
    always, lazy = _code_imports()
    package = _package()
    declared = [d.name for d in package.exec_depends]
    assert len(declared) == len(set(declared)), "a key is declared twice"
    used = {KEY_OF[m] for m in always | lazy if m in KEY_OF} | USED_WITHOUT_IMPORT
    assert set(declared) <= used, f"declared but not imported: {sorted(set(declared) - used)}"
    every_key = {d.name for d in package.exec_depends + package.build_depends + package.buildtool_depends
                 + package.test_depends + package.build_export_depends}
    assert not every_key & ABSENT, sorted(every_key & ABSENT)
    assert {"python3-torch", "python3-rosbags-pip"} <= set(declared)  # both have keys (python.yaml)
    assert {d.name for d in package.test_depends} == {"python3-pytest", "python3-pytest-timeout"}
