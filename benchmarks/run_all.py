"""`make bench`: run every benchmark one after another (they must not share the CPU) and
collect the markdown each prints into benchmarks/RESULTS.md, with the machine description.

    python benchmarks/run_all.py [--quick] [--only speed ablation ...]

With --only, the sections of the named benchmarks are replaced and the others kept, so that a
long benchmark need not be re-run to refresh another. Each section says when it was measured.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from common import machine

HERE = Path(__file__).resolve().parent
# name -> (script, arguments, quick arguments); full settings are the ones quoted in the README
BENCHMARKS = {
    "speed": ("speed", [], ["--repeats", "5"]),
    "refine_speed": ("refine_speed", [], []),
    "backends": ("backends", [], ["--repeats", "3"]),
    "pipeline_backends": ("pipeline_backends", [], ["--frames", "3", "--sizes", "96x320", "--steps", "3",
                                                     "--test-frames", "10"]),
    "pipeline_backends_parallel": ("pipeline_backends", ["--parallel", "--threads", "1"],
                                   ["--parallel", "--threads", "1", "--frames", "3", "--sizes", "96x320", "--steps", "3",
                                    "--test-frames", "10"]),
    "train_synthetic": ("train_synthetic", [], ["--minutes", "1"]),
    "train_synthetic_baseline": ("train_synthetic", ["--baseline"], ["--baseline", "--minutes", "1"]),
    "ablation": ("ablation", [], ["--steps", "5", "--seeds", "0", "--frames", "20"]),
    "ablation_variants": ("ablation", ["--seeds", "0", "--variants-only", "--variants", "distill", "both"],
                          ["--steps", "5", "--seeds", "0", "--frames", "20", "--variants-only", "--variants", "distill"]),
    "ablation_variants_3seeds": ("ablation", ["--seeds", "0", "1", "2", "--variants-only", "--variants", "both",
                                              "depth_detached"],
                                 ["--steps", "5", "--seeds", "0", "1", "--frames", "20", "--variants-only", "--variants",
                                  "depth_detached"]),
    # the other two switches of the method, measured with today's default (depth through the solver)
    "ablation_switches_3seeds": ("ablation", ["--seeds", "0", "1", "2", "--variants-only", "--variants", "both",
                                              "no_level_detach"],
                                 ["--steps", "5", "--seeds", "0", "--frames", "20", "--variants-only", "--variants",
                                  "no_level_detach"]),
    "trust_region": ("trust_region", [], ["--steps", "3", "--frames", "10"]),
    "lm_budget": ("lm_budget", [], ["--steps", "3", "--frames", "8", "--repeats", "2"]),
    "refiner_fit": ("refiner_fit", [], ["--start-steps", "3", "--fit-steps", "3", "--seeds", "0", "1", "--frames", "20"]),
    # quick: its own directory, so that it never replaces the saved pieces of the full study
    "study": ("study", [], ["--steps", "3", "--sup-steps", "3", "--pose-steps", "3", "--seeds", "0", "1",
                            "--lrs", "1e-4", "--frames", "20", "--out", str(HERE / "results" / "study_quick")]),
    "kitti2bag_speed": ("kitti2bag_speed", [], ["--frames", "50"]),
    "node_latency": ("node_latency", [], ["--frames", "60"]),
    # the same on the fastest backend here, both cores to the frame: the real-time goal's figure
    "node_latency_fast": ("node_latency", ["--backend", "auto", "--precision", "auto", "--threads", "2"],
                          ["--backend", "auto", "--precision", "auto", "--threads", "2", "--frames", "60"]),
    "node_memory": ("node_latency", ["--sizes", "96x320", "--frames", "10000", "--latency-frames", "20",
                                     "--rate-factor", "6"],
                    ["--sizes", "96x320", "--frames", "100", "--latency-frames", "5"]),
    "hostile_soak": ("hostile_soak", [], ["--frames", "200"]),
    "online_adaptation": ("online_adaptation", [], ["--quick"]),
    "gate_audit": ("gate_audit", ["--min-val", "3", "8", "--online-steps", "200"],
                   ["--pretrain-steps", "2", "--online-steps", "6", "--eval-every", "2", "--frames-a", "20",
                    "--frames-b", "24"]),
    "demo": ("demo", [], ["--train-minutes", "0.2", "--frames", "30"]),
    "fusion": ("fusion", [], ["--steps", "3", "--seeds", "0", "1", "--frames", "8", "--train-frames", "8",
                              "--size", "64x96"]),
    "real_footage": ("real_footage", [], ["--quick"]),
    "replay_frames": ("replay_frames", [], ["--frames", "20"]),
}
SECTION = re.compile(r"<!-- benchmark: (\S+) -->\n(.*?)<!-- /benchmark -->\n", re.S)


def _sections(path: Path) -> dict:
    """{benchmark name: section text} of an existing results file."""
    return dict(SECTION.findall(path.read_text())) if path.exists() else {}


def _write(out: Path, name: str, section: str, quick: bool) -> None:
    """Replace (or add) the section of benchmark `name` in `out`, keeping every other section."""
    header = (f"# Benchmark results\n\nMachine: {machine()}. Written by `make bench` (`benchmarks/run_all.py`)"
              f"{' with --quick budgets (not the published figures)' if quick else ''}: every figure below "
              "was printed by the script its section names, run alone on the machine unless the section says "
              "otherwise; sections without a date line are from the first session (2026-11-26).\n")
    sections = {**_sections(out), name: section}  # read now: the file may have changed during a long run
    ordered = [n for n in BENCHMARKS if n in sections] + [n for n in sections if n not in BENCHMARKS]
    out.write_text(header + "".join(f"\n<!-- benchmark: {n} -->\n{sections[n]}<!-- /benchmark -->\n"
                                    for n in ordered))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny budgets: checks the scripts run, numbers mean little")
    p.add_argument("--only", nargs="*", choices=list(BENCHMARKS))
    args = p.parse_args()
    out = HERE / ("RESULTS.quick.md" if args.quick else "RESULTS.md")
    failed = []
    for name, (script, full, quick) in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        cmd = [sys.executable, str(HERE / f"{script}.py"), *(quick if args.quick else full)]
        print(f"== {' '.join(cmd[1:])}", flush=True)
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True)
        print(proc.stdout[-4000:], flush=True)
        if proc.returncode != 0:
            failed.append(name)
            print(proc.stderr[-4000:], file=sys.stderr)
            continue
        text = proc.stdout
        start = text.find("\n## ")
        body = text[start + 1:].strip() if start >= 0 else f"## {name}\n\n{text.strip()}"
        section = (f"{body}\n\n(command: `python benchmarks/{script}.py {' '.join(cmd[2:])}`, "
                   f"{time.time() - t0:.0f} s, {time.strftime('%Y-%m-%d %H:%M')})\n")
        # written after every benchmark: a run of hours that dies late keeps what it measured
        _write(out, name, section, args.quick)
        print(f"wrote the {name} section of {out}", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
