"""Which odometry a running perception node gives, over real topics: a Monodepth2 weights folder
and a checkpoint trained without the refinement have untrained features, so the node runs
PoseNet-only odometry and says so (log at start, /diagnostics WARN and `odometry_mode`); a
checkpoint with trained features refines."""
import pytest
import torch

from sa4depth_core.checkpoint import save_checkpoint
from sa4depth_core.config import load_config
from sa4depth_core.model import SA4DepthModel
from sa4depth_core.networks.monodepth2_io import save_monodepth2_folder
from test_perception_node import TIMEOUT, running_node

SIZE = ["model.height=64", "model.width=128"]


def _weights(kind: str, tmp):
    torch.manual_seed(0)
    if kind == "monodepth2 folder":
        model = SA4DepthModel(load_config(None, SIZE))
        save_monodepth2_folder(tmp / "md2", model.depth_encoder, model.depth_decoder, height=64, width=128,
                               pose_encoder=model.pose_net.encoder, pose_decoder=model.pose_net.decoder)
        return tmp / "md2"
    cfg = load_config(None, SIZE + [f"refine.enabled={str(kind == 'trained features').lower()}"])
    path = tmp / "model.pt"
    save_checkpoint(path, config=cfg.to_dict(), model=SA4DepthModel(cfg).state_dict(), step=10,
                    features_trained=kind == "trained features")
    return path


@pytest.mark.parametrize("kind", ["monodepth2 folder", "refine.enabled=false", "trained features"])
def test_untrained_features_run_posenet_only_and_say_so(kind, ros_domain, synth_root, tmp_path):
    weights = _weights(kind, tmp_path)
    with running_node(ros_domain, synth_root, tmp_path, [f"checkpoint:={weights}", "odometry.on_failure:=posenet",
                                                         "scale_mode:=fixed"]) as node:
        c = node.client
        for _ in range(3):
            stamp, _ = node.frame()
        assert c.with_stamp("odom", stamp, TIMEOUT) is not None
        d = node.diagnostics(lambda d: d.get("steps_posenet", "0") != "0" or d.get("steps_refined", "0") != "0"
                             or d.get("steps_fallback", "0") != "0")
        assert d is not None, node.output()
        if kind == "trained features":
            assert d["odometry_mode"].startswith("refined") and d["steps_posenet"] == "0", d
            assert "PoseNet only" not in d["message"]
        else:
            assert "never trained" in d["odometry_mode"] and d["steps_refined"] == "0", d
            assert d["level"] >= 1 and "PoseNet only" in d["message"], d
            assert "PoseNet only" in node.output()  # said once at start in the log
