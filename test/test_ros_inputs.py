"""perception_node reading CompressedImage (png and jpeg) over real loopback DDS, on backend auto:
the one node of the test suite whose inference backend is what `auto` picks on this machine, named
at start-up, in /diagnostics and kept by ~/reload_model.
"""
import time

import numpy as np
import pytest

from sa4depth_core.checkpoint import save_checkpoint
from sa4depth_core.config import Config
from sa4depth_core.loaded_model import load_model
from test_perception_node import TIMEOUT, running_node


@pytest.fixture(scope="module")
def node(ros_domain_module, synth_root, tmp_path_factory):
    params = ["input_width:=128", "input_height:=64", "points_stride:=1", "image_transport:=compressed"]
    with running_node(ros_domain_module, synth_root, tmp_path_factory.mktemp("compressed"), params,
                      backend="auto", compressed="png") as node:
        yield node


def test_compressed_png_and_jpeg_frames_are_decoded(node):
    c = node.client
    rgb = node.images[2]
    try:
        for fmt, largest_mean_error in (("png", 0.0), ("jpeg", 8.0)):
            c.compressed = fmt
            stamp, depth = node.frame(rgb)
            assert (depth.height, depth.width) == (64, 128)
            cloud = c.with_stamp("points", stamp, TIMEOUT)
            packed = np.frombuffer(bytes(cloud.data), np.uint32).reshape(64, 128, 4)[..., 3]
            colours = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], -1)
            assert np.abs(colours.astype(float) - rgb).mean() <= largest_mean_error, fmt  # R, G, B in place
    finally:
        c.compressed = "png"
    d = node.diagnostics(lambda d: "compressed" in d["input"])
    assert d is not None and d["input"].startswith("/image/compressed")


def test_the_inference_backend_is_named_at_start_and_kept_by_a_reload(node, tmp_path):
    c = node.client
    d = node.diagnostics(lambda d: d.get("inference_backend"))
    backend = d["inference_backend"]
    assert f"inference {backend}," in node.log.read_text()
    cfg = Config()
    cfg.model.height, cfg.model.width = 64, 128
    other = tmp_path / "other.pt"
    save_checkpoint(other, config=cfg.to_dict(), model=load_model(None).model.state_dict())
    assert c.set_parameters(checkpoint=str(other))[0][0]
    ok, message = c.trigger("reload_model")
    assert ok and message.endswith(f"on {backend}"), message
    node.frame()
    since = time.monotonic()
    d = c.diagnostics(timeout=TIMEOUT, after=since, predicate=lambda d: d["model_source"] == str(other))
    assert d is not None and d["inference_backend"] == backend
