#!/usr/bin/env bash
# Creates .venv with everything the package needs on a fresh machine:
# ROS 2 (Kilted) from PyPI, a locally built tf2_msgs, CPU torch, OpenCV, rosbags; and, when the
# vendored launch sources sit beside the repository (../shared/vendor/ros2_launch, as on the
# development machines and in CI), launch, launch_ros and colcon for the launch tests.
# Idempotent: a finished set-up leaves .venv/.setup-done holding a hash of its inputs (these
# scripts, the requirements, the vendored sources) and is skipped while they stay the same.
# `setup_env.sh --hash` prints that hash and exits (e.g. as a cache key for .venv).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.setup-done"
LAUNCH_VENDOR="$ROOT/../shared/vendor/ros2_launch"
vendor_hash() {
  if [[ -d "$LAUNCH_VENDOR" ]]; then (cd "$LAUNCH_VENDOR" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
  else echo "no ros2_launch vendor folder"; fi
}
REQ_HASH="$( (cat "$ROOT"/scripts/*.sh "$ROOT"/scripts/requirements-launch.txt "$ROOT/requirements.txt"; vendor_hash) \
  | sha256sum | cut -c1-16)"
if [[ "${1:-}" == "--hash" ]]; then echo "$REQ_HASH"; exit 0; fi
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$REQ_HASH" ]]; then
  echo "setup: $VENV is up to date"; exit 0
fi
echo "setup: creating $VENV"
"$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
"${PIP[@]}" --upgrade pip wheel "setuptools<80"  # colcon-core (launch tests) requires setuptools<80
"${PIP[@]}" -r "$ROOT/requirements.txt"
"$ROOT/scripts/build_tf2_msgs.sh" "$VENV" || echo "setup: WARNING tf2_msgs could not be built; TF will be unavailable" >&2
if [[ -d "$LAUNCH_VENDOR" ]]; then
  "$ROOT/scripts/install_ros2_launch.sh" "$VENV" "$LAUNCH_VENDOR"
else
  echo "setup: no $LAUNCH_VENDOR: launch, launch_ros and colcon not installed (the launch and colcon tests will skip)"
fi
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
echo "$REQ_HASH" > "$STAMP"
echo "setup: done ($VENV)"
