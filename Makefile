# One-command set-up, tests, demo and benchmarks. Everything runs inside .venv.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST

.PHONY: setup test demo bench clean

setup:
	@bash scripts/setup_env.sh

test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile --max-worker-restart=0 --timeout=600 test

demo: setup
	$(PY) -m sa4depth_ros.demo

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
