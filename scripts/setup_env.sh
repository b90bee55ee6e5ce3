#!/usr/bin/env bash
# Creates .venv with everything the package needs on a fresh machine:
# ROS 2 (Kilted) from PyPI, a locally built tf2_msgs, CPU torch, OpenCV, rosbags.
# Idempotent: a finished set-up leaves .venv/.setup-done and is skipped next time.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.setup-done"
REQ_HASH="$(cat "$ROOT/scripts/setup_env.sh" "$ROOT/requirements.txt" | sha256sum | cut -c1-16)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$REQ_HASH" ]]; then
  echo "setup: $VENV is up to date"; exit 0
fi
echo "setup: creating $VENV"
"$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
"${PIP[@]}" --upgrade pip setuptools wheel
"${PIP[@]}" -r "$ROOT/requirements.txt"
"$ROOT/scripts/build_tf2_msgs.sh" "$VENV" || echo "setup: WARNING tf2_msgs could not be built; TF will be unavailable" >&2
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
echo "$REQ_HASH" > "$STAMP"
echo "setup: done ($VENV)"
