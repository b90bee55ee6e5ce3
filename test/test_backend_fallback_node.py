"""perception_node asked for a backend that fails to build: it starts on torch fp32, says which
backend was not used and why (log and /diagnostics), and serves depth over real loopback DDS."""
import pytest

from test_perception_node import TIMEOUT, running_node

# the node, with OpenVINO's compilation made to fail the way a broken runtime does
BROKEN_OPENVINO = """
import sys
import sa4depth_core.backends.openvino_nets as openvino_nets
import sa4depth_ros.perception_node as node
from sa4depth_core.backends.networks import BackendUnavailable

def broken(*args, **kwargs):
    raise BackendUnavailable("injected: the openvino runtime failed to compile")

openvino_nets.compile_graphs = broken
sys.exit(node.main(sys.argv))
"""


@pytest.fixture(scope="module")
def node(ros_domain_module, synth_root, tmp_path_factory):
    with running_node(ros_domain_module, synth_root, tmp_path_factory.mktemp("fallback"), backend="openvino",
                      program=("-c", BROKEN_OPENVINO)) as node:
        yield node


def test_a_backend_that_fails_to_build_falls_back_to_torch_and_says_why(node):
    d = node.diagnostics(lambda d: d.get("inference_backend"))
    assert d is not None, node.output()
    backend = d["inference_backend"]
    assert backend.startswith("torch fp32") and "not used: openvino" in backend and "injected" in backend, backend
    assert "injected: the openvino runtime failed to compile" in node.output()
    stamp, _ = node.frame()
    assert node.client.with_stamp("depth/image", stamp, TIMEOUT) is not None, node.output()
