#!/usr/bin/env bash
# Installs `launch`, `launch_xml`, `launch_yaml`, `launch_ros` and `composition_interfaces` from a
# vendored source folder (../shared/vendor/ros2_launch, see its README) and colcon from PyPI into a
# pip venv that has the ROS 2 wheels: PyPI has no launch packages, and the launch tests run the
# launch files under launch.LaunchService from a `colcon build` install space.
# Usage: install_ros2_launch.sh VENV VENDOR
set -euo pipefail
V="$(cd "$1" && pwd)"
SRC="$(cd "$2" && pwd)/src"
HERE="$(cd "$(dirname "$0")" && pwd)"
PIP=("$V/bin/python" -m pip install --disable-pip-version-check -q)
"${PIP[@]}" -r "$HERE/requirements-launch.txt"
# pip builds in the source tree (build/, *.egg-info): build from a copy, the vendor folder stays as it is.
COPY="$(mktemp -d)"; trap 'rm -rf "$COPY"' EXIT
for p in launch launch_xml launch_yaml launch_ros; do
  cp -r "$SRC/$p" "$COPY/$p" && chmod -R u+w "$COPY/$p"
  "${PIP[@]}" --no-deps --no-build-isolation "$COPY/$p"
done
"$HERE/build_tf2_msgs.sh" "$V" "$SRC/composition_interfaces" "from composition_interfaces.srv import LoadNode"
(cd / && AMENT_PREFIX_PATH="$V" "$V/bin/python" -c "from launch import LaunchService; from launch_ros.actions import Node") \
  && echo "ros2_launch: launch, launch_ros and colcon installed into $V"
