"""`sa4depth-export`: a checkpoint or Monodepth2 folder to ONNX files (export.py) and an
export.json that records them with their parity against torch on the installed ONNX runtimes."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from . import export
from .backends import make_networks
from .backends.parity import compare
from .checkpoint import atomic_write_bytes
from .errors import InputError
from .loaded_model import load_model, network_size


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sa4depth-export", description=export.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="project checkpoint file or Monodepth2 weights folder")
    p.add_argument("--out", required=True, help="directory for depth.onnx, pose.onnx, features.onnx, export.json")
    p.add_argument("--height", type=int, default=0, help="input height (default: the model's)")
    p.add_argument("--width", type=int, default=0, help="input width (default: the model's)")
    p.add_argument("--opset", type=int, default=export.OPSET, help=f"ONNX opset (default {export.OPSET}, see above)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        problem = export.opset_problem(args.opset)
        if problem:
            raise InputError(problem)
        loaded = load_model(args.checkpoint, "cpu")
        h, w = network_size(loaded, args.height, args.width)
        t0 = time.perf_counter()
        paths = export.write_onnx(loaded, args.out, h, w, args.opset)
    except (InputError, OSError) as exc:
        print(f"sa4depth-export: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"sa4depth-export: {exc.name or exc} is missing: pip install onnx", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(str(q) for q in paths.values())} ({w}x{h}, opset {args.opset}, "
          f"{time.perf_counter() - t0:.1f} s)")
    # The parity check runs the files just written, on whichever ONNX runtime is installed.
    report = {"metadata": export.metadata(loaded, h, w, args.opset), "files": {k: str(v) for k, v in paths.items()},
              "parity": {}}
    reference, _ = make_networks(loaded, "torch", "fp32", height=h, width=w)
    for backend in ("onnxruntime", "openvino"):
        try:
            nets, description = make_networks(loaded, backend, "fp32", height=h, width=w, onnx_dir=args.out,
                                              verify=False, fallback=False)
        except Exception as exc:  # noqa: BLE001 - a missing runtime only skips its check
            print(f"parity {backend}: not checked ({exc})")
            continue
        diffs = compare(reference, nets)
        report["parity"][description] = diffs
        print(f"parity {description} vs torch fp32 (max abs diff): "
              + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    try:
        atomic_write_bytes(Path(args.out) / "export.json", (json.dumps(report, indent=2) + "\n").encode(), mode=0o644)
    except OSError as exc:
        print(f"sa4depth-export: {exc}", file=sys.stderr)
        return 2
    if not report["parity"]:
        print("sa4depth-export: no ONNX runtime installed, parity not checked (pip install onnxruntime)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
