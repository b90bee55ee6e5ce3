"""Networks of the Monodepth2-style pipeline and the loading of their weight files."""

from sa4depth_core.networks.depth_decoder import DepthDecoder, disp_to_depth
from sa4depth_core.networks.monodepth2_io import (
    load_imagenet_resnet,
    load_monodepth2_folder,
    load_state_dict_strict,
    read_checkpoint,
    save_monodepth2_folder,
)
from sa4depth_core.networks.pose_decoder import PoseDecoder, PoseNet
from sa4depth_core.networks.resnet_encoder import ResnetEncoder, infer_resnet_depth

__all__ = [
    "DepthDecoder",
    "PoseDecoder",
    "PoseNet",
    "ResnetEncoder",
    "disp_to_depth",
    "infer_resnet_depth",
    "load_imagenet_resnet",
    "load_monodepth2_folder",
    "load_state_dict_strict",
    "read_checkpoint",
    "save_monodepth2_folder",
]
