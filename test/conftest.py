"""Shared pytest setup: every ROS 2 test talks over loopback DDS in a domain of its own."""
import contextlib
import itertools
import os

import pytest

_pid_offsets = itertools.count()


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
def _pid_domain():
    # Without domain_coordinator nothing reserves ids across processes; spreading by pid keeps
    # parallel workers apart in practice.
    yield 1 + (os.getpid() + next(_pid_offsets)) % 100


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
        reserve = _pid_domain
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


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one torch thread (hand-offs cost more than they save), and the
    other core stays free for the parallel test worker."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
