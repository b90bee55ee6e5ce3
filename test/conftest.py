"""Shared pytest setup: every ROS 2 test talks over loopback DDS in a domain of its own."""
import contextlib
import faulthandler
import fcntl
import itertools
import os
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from transforms3d.euler import euler2mat

_pid_offsets = itertools.count()


def pytest_configure(config):
    # A worker ended by SIGTERM or SIGHUP would vanish as "node down" with no trace (pytest's
    # faulthandler covers only crashes): print every thread's stack first, then let it end.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        faulthandler.register(signum, file=sys.__stderr__, all_threads=True, chain=True)


@pytest.fixture(scope="session", autouse=True)
def _loopback_dds():
    """Keep DDS discovery off the LAN for the whole session (Kilted ignores ROS_LOCALHOST_ONLY)."""
    old = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    yield
    if old is None:
        os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
    else:
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = old


@contextlib.contextmanager
def _locked_domain():
    """Fallback for domain_coordinator: an id in 1..100 held by an exclusive flock on a file per id
    (released by the kernel when the holder dies, however it dies), so tests in parallel workers
    or in two runs at once never share a domain. The search starts at a pid-dependent id."""
    directory = Path(tempfile.gettempdir()) / f"sa4depth_ros_domains_{os.getuid()}"
    directory.mkdir(exist_ok=True)
    start = os.getpid() + next(_pid_offsets)
    for k in range(100):
        domain = 1 + (start + k) % 100
        fd = os.open(directory / f"{domain}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield domain
        finally:
            os.close(fd)  # closing releases the lock
        return
    raise RuntimeError(f"all 100 ROS domain ids are held by other tests (locks in {directory})")


@pytest.fixture
def ros_domain():
    """A ROS_DOMAIN_ID (1..100) reserved for this test, set in os.environ before rclpy.init.

    Subprocesses started with a copy of os.environ inherit it.
    """
    with _reserved_domain() as domain:
        yield domain


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A tiny synthetic KITTI-odometry tree (sequences 00 and 01, 64x128) with exact depth and poses."""
    from sa4depth_core.data.synth import generate_sequence

    root = tmp_path_factory.mktemp("synth")
    generate_sequence(root, "00", num_frames=14, height=64, width=128, seed=0)
    generate_sequence(root, "01", num_frames=8, height=64, width=128, seed=1)
    return root


@contextlib.contextmanager
def _reserved_domain():
    """Reserve a domain id and export it as ROS_DOMAIN_ID for as long as the block runs."""
    try:
        from domain_coordinator import domain_id as reserve
    except ImportError:
        reserve = _locked_domain
    old = os.environ.get("ROS_DOMAIN_ID")
    with reserve() as domain:
        os.environ["ROS_DOMAIN_ID"] = str(domain)
        try:
            yield domain
        finally:
            if old is None:
                os.environ.pop("ROS_DOMAIN_ID", None)
            else:
                os.environ["ROS_DOMAIN_ID"] = old


@pytest.fixture(scope="module")
def ros_domain_module():
    """ros_domain for module-scoped fixtures, e.g. one node process shared by a module's tests."""
    with _reserved_domain() as domain:
        yield domain


def pose_at(xyz, rpy) -> np.ndarray:
    """(4,4) transform with translation xyz (3,) and rotation rpy (3,) = roll, pitch, yaw about
    fixed axes (R = Rz(yaw) Ry(pitch) Rx(roll), the URDF / tf2 convention)."""
    T = np.eye(4)
    T[:3, :3] = euler2mat(*rpy)
    T[:3, 3] = xyz
    return T


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one torch thread (hand-offs cost more than they save), and the
    other core stays free for the parallel test worker."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def untrained():
    """A model with random weights at 64x128 (seeded), its features not trained."""
    import torch
    from sa4depth_core.config import load_config
    from sa4depth_core.loaded_model import load_model

    torch.manual_seed(0)
    return load_model(None, torch.device("cpu"), load_config(None, ["model.height=64", "model.width=128"]))


@pytest.fixture(scope="module")
def refining(untrained):
    """The untrained model with its features declared trained, so the refinement runs (the
    mechanisms under test do not depend on what the weights learned)."""
    import dataclasses

    return dataclasses.replace(untrained, features_trained=True)


@pytest.fixture(scope="module")
def frames(synth_root):
    """(images [(64,128,3) uint8], K (3,3)) of every frame of synth_root's sequence 00."""
    from sa4depth_core.data.kitti_odometry import KittiOdometrySequence

    seq = KittiOdometrySequence(synth_root, "00")
    return [seq.image(i) for i in range(len(seq))], seq.intrinsics()


@pytest.fixture
def small_pipeline():
    """make(loaded, **options): a PerceptionPipeline on the CPU at 64x128 with those
    PipelineOptions; every one made is closed after the test."""
    import torch
    from sa4depth_core.pipeline import PerceptionPipeline
    from sa4depth_core.pipeline_options import PipelineOptions

    made = []

    def make(loaded, **options):
        made.append(PerceptionPipeline(loaded, torch.device("cpu"), PipelineOptions(height=64, width=128, **options)))
        return made[-1]

    yield make
    for pipe in made:
        pipe.close()
