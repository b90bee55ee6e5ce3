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


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="sa4depth_demo_") as tmp:
        t0 = time.time()
        run = subprocess.run([sys.executable, "-m", "sa4depth_ros.demo", "--out", tmp, *sys.argv[1:]], cwd=ROOT)
        seconds = time.time() - t0
        if run.returncode != 0:
            return run.returncode
        metrics = json.loads((Path(tmp) / "metrics.json").read_text())
    s, d, o = metrics["summary"], metrics["depth"], metrics["odometry"]
    print(f"\n## make demo ({machine()})\n")
    print(f"Whole demo {seconds / 60:.1f} min (generation, training from scratch, bag, ROS 2 graph, scoring; "
          "no set-up).\n")
    print("| frames played | depth images | output Hz | latency p50 / p95 ms | AbsRel | d1 | AbsRel one scale | "
          "ATE 7dof m | t_err % | GT length m |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {s['frames played']} | {s['depth images received']} | {s['output rate Hz']:.1f} | "
          f"{s['latency ms p50']} / {s['latency ms p95']} | {d['abs_rel']:.3f} | {d['a1']:.3f} | "
          f"{d['abs_rel one scale']:.3f} | {o['ATE 7dof (m)']:.3f} | {o['t_err 7dof (%)']:.2f} | "
          f"{o['GT length (m)']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
