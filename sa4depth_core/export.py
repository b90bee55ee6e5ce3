"""ONNX graphs of the depth, pose and feature networks at a fixed input size, for the inference
backends (converted in memory at start-up) and for `sa4depth-export` (written to files, e.g. for
TensorRT on a Jetson).

    sa4depth-export --checkpoint best.pt --out onnx/ [--height 192 --width 640]

Graphs (batch 1, static shapes):
    depth.onnx     image (1,3,H,W) RGB in [0,1] -> disparity (1,1,H,W) sigmoid in (0,1),
                   depth (1,1,H,W) = 1 / (1/max_depth + (1/min_depth - 1/max_depth) * disparity)
    pose.onnx      image_earlier, image_later (1,3,H,W) -> axisangle (1,1,3), translation (1,1,3)
                   of T with X_later = T X_earlier (Monodepth2's convention; see PoseNet)
    features.onnx  image (1,3,H,W) -> features_s<k> (1,C,H/k,W/k) unit norm over C and
                   confidence_s<k> (1,1,H/k,W/k) in (0,1), for each refinement stride k, coarse first

Opset 13 (OPSET): every operator these networks use (Conv, Pad reflect/edge, Resize nearest,
ReduceL2, Elu, Sigmoid, MaxPool, ReduceMean) exists there, and it is the newest opset that
TensorRT 8.2 (JetPack 4.6) parses; TensorRT 8.5 (JetPack 5) reads up to 17, TensorRT 10
(JetPack 6) 9 to 20, and OpenVINO and ONNX Runtime read all of them. The graphs come from torch's
TorchScript-based exporter (`dynamo=False`): the torch.export-based one needs the extra
`onnxscript` package and writes opset 18 or newer, which TensorRT before 10 cannot read.
"""
from __future__ import annotations

import copy
import io
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.onnx import _constants as _torch_onnx_constants

from . import __version__
from .checkpoint import atomic_write_bytes
from .loaded_model import LoadedModel, network_size
from .networks.depth_decoder import disp_to_depth

log = logging.getLogger(__name__)

OPSET = 13
# Oldest opset --opset may ask for: before 9 the exporter cannot write the decoders' upsampling.
# The newest is torch's (a private constant: the exporter itself fails only deep inside the export).
MIN_OPSET = 9


def opset_problem(opset: int) -> str | None:
    """Why `opset` cannot be written by this torch, or None."""
    newest = _torch_onnx_constants.ONNX_MAX_OPSET
    if not MIN_OPSET <= opset <= newest:
        return f"--opset {opset} cannot be written: this exporter writes opsets {MIN_OPSET} to {newest}"
    return None


class DepthGraph(nn.Module):
    """image (1,3,H,W) -> disparity (1,1,H,W), depth (1,1,H,W)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.encoder, self.decoder = model.depth_encoder, model.depth_decoder
        self.min_depth, self.max_depth = model.min_depth, model.max_depth

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        disparity = self.decoder(self.encoder(image))[("disp", 0)]
        return disparity, disp_to_depth(disparity, self.min_depth, self.max_depth)[1]


class PoseGraph(nn.Module):
    """image_earlier, image_later (1,3,H,W) -> axisangle (1,1,3), translation (1,1,3)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.pose_net = model.pose_net

    def forward(self, earlier: torch.Tensor, later: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Offset +1 makes PoseNet stack [target, source] = [earlier, later] without inverting.
        return self.pose_net(earlier, later, 1)


class FeatureGraph(nn.Module):
    """image (1,3,H,W) -> features_s<k> (1,C,H/k,W/k), confidence_s<k> (1,1,H/k,W/k), coarse first."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.feature_net = model.feature_net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t for level in self.feature_net(image) for t in level)


@dataclass(frozen=True)
class GraphSpec:
    """One exported network: its file stem, module wrapper and tensor names."""

    name: str
    module: type
    inputs: tuple
    outputs: tuple


def graph_specs(model: nn.Module) -> list[GraphSpec]:
    """The three graphs of a SA4DepthModel, in the order depth, pose, features."""
    feature_outputs = tuple(f"{kind}_s{s}" for s in model.feature_net.strides for kind in ("features", "confidence"))
    return [
        GraphSpec("depth", DepthGraph, ("image",), ("disparity", "depth")),
        GraphSpec("pose", PoseGraph, ("image_earlier", "image_later"), ("axisangle", "translation")),
        GraphSpec("features", FeatureGraph, ("image",), feature_outputs),
    ]


def export_graphs(loaded: LoadedModel, height: int = 0, width: int = 0, opset: int = OPSET) -> dict[str, bytes]:
    """Serialised ONNX models {"depth", "pose", "features"} of the loaded networks at (height, width).

    The export works on a CPU copy of the model: torch's exporter switches the modules it is
    given between train and eval mode, and the caller's model may be serving frames meanwhile.
    """
    h, w = network_size(loaded, height, width)
    model = copy.deepcopy(loaded.model).cpu().float().eval()
    image = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    graphs = {}
    with warnings.catch_warnings():
        # The shape checks in forward() trace to constants, which is what static shapes want.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # The exporter's notes (its deprecation, unfolded constant slices) concern it, not the user.
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*legacy TorchScript-based ONNX")
        for category in (DeprecationWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category, module=r"torch\.onnx")
        for spec in graph_specs(model):
            buffer = io.BytesIO()
            args = (image,) * len(spec.inputs)
            torch.onnx.export(spec.module(model).eval(), args, buffer, dynamo=False, opset_version=opset,
                              input_names=list(spec.inputs), output_names=list(spec.outputs),
                              do_constant_folding=True)
            graphs[spec.name] = buffer.getvalue()
    return graphs


def metadata(loaded: LoadedModel, height: int, width: int, opset: int) -> dict[str, str]:
    """ONNX metadata_props written into every exported file."""
    m = loaded.cfg.model
    return {
        "sa4depth_version": __version__,
        "model_id": loaded.model_id,
        "source": loaded.source,
        "trained": str(loaded.trained).lower(),
        "height": str(height),
        "width": str(width),
        "min_depth": repr(float(m.min_depth)),
        "max_depth": repr(float(m.max_depth)),
        "refine_strides": ",".join(str(s) for s in loaded.cfg.refine.strides),
        "opset": str(opset),
        "pose_convention": "X_later = T(axisangle, translation) X_earlier; T = [R(axisangle) | translation]",
    }


def fold_constants(graph: bytes) -> bytes:
    """The graph after ONNX Runtime's basic optimisations, or unchanged without ONNX Runtime.

    torch's exporter leaves constant sub-graphs (each reflection pad's sizes as ~10 nodes, Shape
    of static tensors before Resize); the basic level folds them and removes Identity nodes,
    using standard ONNX operators only, so the file stays valid for any runtime (TensorRT's
    guide asks for such folding before parsing).
    """
    try:
        import onnxruntime as ort
    except ImportError:
        log.warning("onnxruntime is not installed: the exported graphs keep their constant sub-graphs")
        return graph
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with tempfile.TemporaryDirectory() as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "folded.onnx")
        ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        return Path(options.optimized_model_filepath).read_bytes()


def with_metadata(graph: bytes, props: dict[str, str], doc: str) -> bytes:
    """The ONNX model with `props` as metadata_props and `doc` as its doc string (needs `onnx`).

    Operator-set imports no node uses (ONNX Runtime lists its own domains) are dropped, so
    other parsers see only the standard domain.
    """
    import onnx  # optional: only writing files needs it, and the core must import without it

    proto = onnx.load_from_string(graph)
    used = {node.domain for node in proto.graph.node} | {""}
    kept = [o for o in proto.opset_import if o.domain in used]
    del proto.opset_import[:]
    proto.opset_import.extend(kept)
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = doc
    proto.producer_name = "sa4depth-export"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def write_onnx(loaded: LoadedModel, out_dir: str | Path, height: int = 0, width: int = 0,
               opset: int = OPSET) -> dict[str, Path]:
    """Export the three graphs with metadata to out_dir/{depth,pose,features}.onnx."""
    h, w = network_size(loaded, height, width)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    props = metadata(loaded, h, w, opset)
    paths = {}
    for name, graph in export_graphs(loaded, h, w, opset).items():
        path = out / f"{name}.onnx"
        doc = f"SA4Depth {name} network, {w}x{h}, model {loaded.model_id}"
        atomic_write_bytes(path, with_metadata(fold_constants(graph), props, doc), mode=0o644)  # whole or not at all
        paths[name] = path
    return paths
