#!/usr/bin/env bash
# Builds the tf2_msgs interface package (TFMessage) into a pip venv that has the ROS 2 wheels.
# PyPI has no tf2_msgs wheel; the rosidl toolchain wheels can generate it in a few seconds.
# Usage: build_tf2_msgs.sh VENV [SOURCE IMPORT]: another interface package (SOURCE), checked by the
# Python statement IMPORT (scripts/install_ros2_launch.sh builds composition_interfaces this way).
set -euo pipefail
V="$(cd "$1" && pwd)"
HERE="$(cd "$(dirname "$0")" && pwd)"
SRC="${2:-$HERE/tf2_msgs}"; CHECK="${3:-from tf2_msgs.msg import TFMessage}"; NAME="$(basename "$SRC")"
if (cd / && "$V/bin/python" -c "$CHECK") 2>/dev/null; then echo "$NAME: already importable"; exit 0; fi
command -v cmake >/dev/null || { echo "$NAME: cmake not found" >&2; exit 1; }
GEN=Ninja; command -v ninja >/dev/null || GEN="Unix Makefiles"
PYINC="$("$V/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
NPINC="$("$V/bin/python" -c 'import numpy; print(numpy.get_include())')"
# The wheels' exported CMake targets name the wheel builder's Python; point them at ours.
for f in $(grep -rl --include='*.cmake' -e '/include/python3\.[0-9]*' "$V/share" || true); do
  sed -i -E "s#/opt/python/[^/;\"]+/include/python3\.[0-9]+#$PYINC#g; s#/opt/python/[^;\"]+/site-packages/numpy/_core/include#$NPINC#g" "$f"
done
BUILD="$(mktemp -d)"; trap 'rm -rf "$BUILD"' EXIT
AMENT_PREFIX_PATH="$V" CMAKE_PREFIX_PATH="$V" PATH="$V/bin:$PATH" \
  cmake -S "$SRC" -B "$BUILD" -G "$GEN" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$V" -DPython3_EXECUTABLE="$V/bin/python" -DBUILD_TESTING=OFF > "$BUILD/configure.log" 2>&1 \
  || { tail -30 "$BUILD/configure.log" >&2; exit 1; }
cmake --build "$BUILD" -j2 > "$BUILD/build.log" 2>&1 || { tail -30 "$BUILD/build.log" >&2; exit 1; }
cmake --install "$BUILD" > /dev/null
(cd / && "$V/bin/python" -c "$CHECK") && echo "$NAME: built into $V"
