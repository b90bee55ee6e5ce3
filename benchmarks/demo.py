"""The figures `make demo` prints, measured by running it (training its model anew) and reading
the metrics.json it writes, as one markdown section for RESULTS.md.

    python benchmarks/demo.py
"""
from __future__ import annotations

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


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="sa4depth_demo_") as tmp:
        t0 = time.time()
        run = subprocess.run([sys.executable, "-m", "sa4depth_ros.demo", "--out", tmp, *sys.argv[1:]], cwd=ROOT)
        seconds = time.time() - t0
        if run.returncode != 0:
            return run.returncode
        metrics = json.loads((Path(tmp) / "metrics.json").read_text())
    s, f, d, o = metrics["summary"], metrics["frames"], metrics["depth"], metrics["odometry"]
    print(f"\n## make demo ({machine()})\n")
    print(f"Whole demo {seconds / 60:.1f} min (generation, training from scratch, bag, ROS 2 graph, scoring; "
          "no set-up).\n")
    print("| frames played | node received | node published | depth images back | output Hz | latency p50 / p95 ms "
          "| AbsRel | d1 | AbsRel one scale | ATE 7dof m | scale 7dof | t_err % | GT length m |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {s['frames played']} | {f['node: frames received (paired)']} | {f['node: published']} | "
          f"{s['depth images received']} | {s['output rate Hz']:.1f} | "
          f"{s['latency ms p50']} / {s['latency ms p95']} | {d['abs_rel']:.3f} | {d['a1']:.3f} | "
          f"{d['abs_rel one scale']:.3f} | {o['ATE 7dof (m)']:.3f} | {o['scale 7dof']:.1f} | {_num(o['t_err 7dof (%)'])} | "
          f"{o['GT length (m)']:.1f} |")
    for finding in metrics["frame_losses"]:
        print(f"\n- {finding}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
