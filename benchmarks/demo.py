"""The figures `make demo` prints, measured by running it (training its model anew) and reading
the metrics.json it writes, as one markdown section for RESULTS.md.

    python benchmarks/demo.py                      # demo options may follow, e.g. --frames 60
    python benchmarks/demo.py --keep outputs/run   # keep the demo's artefacts there (a new folder)
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine


def _num(value, fmt: str = ".2f") -> str:
    """metrics.json holds null for an undefined figure (t_err of a path under 100 m)."""
    return "n/a" if value is None else format(value, fmt)


def section(metrics: dict, seconds: float) -> str:
    """The RESULTS.md section for one demo run's metrics.json and its wall time."""
    s, f, d, o = metrics["summary"], metrics["frames"], metrics["depth"], metrics["odometry"]
    lines = [f"## make demo ({machine()})", "",
             f"Whole demo {seconds / 60:.1f} min (generation, training from scratch, bag, ROS 2 graph, scoring; "
             "no set-up).", "",
             "| frames played | node received | node published | depth images back | output Hz | latency p50 / p95 ms "
             "| AbsRel | d1 | AbsRel one scale | ATE 7dof m | scale 7dof | t_err % | GT length m |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
             f"| {s['frames played']} | {f['node: frames received (paired)']} | {f['node: published']} | "
             f"{s['depth images received']} | {s['output rate Hz']:.1f} | "
             f"{s['latency ms p50']} / {s['latency ms p95']} | {d['abs_rel']:.3f} | {d['a1']:.3f} | "
             f"{d['abs_rel one scale']:.3f} | {o['ATE 7dof (m)']:.3f} | {o['scale 7dof']:.1f} | "
             f"{_num(o['t_err 7dof (%)'])} | {o['GT length (m)']:.1f} |"]
    lines += [f"\n- {finding}" for finding in metrics["frame_losses"]]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keep", help="write the demo's artefacts into this new folder instead of a temporary one")
    args, demo_args = p.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="sa4depth_demo_") as tmp:
        out = Path(args.keep or tmp)
        if args.keep and out.exists():
            p.error(f"--keep {out} exists: the demo would reuse the model it finds there instead of training")
        t0 = time.time()
        run = subprocess.run([sys.executable, "-m", "sa4depth_ros.demo", "--out", str(out), *demo_args], cwd=ROOT)
        seconds = time.time() - t0
        if run.returncode != 0:
            return run.returncode
        metrics = json.loads((out / "metrics.json").read_text())
    print("\n" + section(metrics, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
