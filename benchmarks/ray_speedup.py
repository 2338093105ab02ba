"""Wall time of one `percviz evaluate` run in-process vs on Ray with 1 and 2 local workers.

Every configuration runs the same command (EfficientNet-Lite0 at 224×224, the bundled photos × PGD
at two budgets, batch 1, no explainability) in a fresh process, Ray's start-up and model loading
included, and the `results.csv` files are compared row by row (timing columns aside; the run with
one thread per worker may round differently, so it is timed but not compared). Prints a Markdown table and ends
with one JSON line.

    python benchmarks/ray_speedup.py [--steps 10] [--limit 7]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def evaluate(out: Path, steps: int, limit: int, engine: list[str]) -> float:
    cmd = [
        sys.executable,
        "-m",
        "percviz",
        "evaluate",
        "--images",
        "sample:all",
        "--limit",
        str(limit),
        "--attack",
        "pgd",
        "--param",
        f"steps={steps}",
        "--sweep",
        "eps=0.00392157,0.0156863",
        "--batch",
        "1",
        "--no-explain",
        "--quiet",
        "--out",
        str(out),
        *engine,
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def numbers(path: Path) -> list[dict[str, str]]:
    """The rows of a results.csv without their timing columns."""
    with path.open(newline="") as fh:
        return [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in csv.DictReader(fh)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--limit", type=int, default=7)
    args = parser.parse_args(argv)
    configs = {
        "in-process": [],
        "ray, 1 worker": ["--engine", "ray", "--workers", "1"],
        "ray, 2 workers": ["--engine", "ray", "--workers", "2"],
        "ray, 2 workers × 1 thread": ["--engine", "ray", "--workers", "2", "--threads-per-worker", "1"],
    }
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        csvs: dict[str, str] = {}
        for name, engine in configs.items():
            out = Path(tmp) / name.replace(" ", "_").replace(",", "")
            times[name] = evaluate(out, args.steps, args.limit, engine)
            csvs[name] = numbers(out / "results.csv")
        identical = all(csvs[name] == csvs["in-process"] for name in configs if "× 1 thread" not in name)
    base = times["ray, 1 worker"]
    print("| engine | wall time (s) | speed-up vs 1 Ray worker |")
    print("| --- | --- | --- |")
    for name, t in times.items():
        print(f"| {name} | {t:.1f} | {base / t:.2f}× |")
    print(
        f"results.csv identical (timings aside) in-process, 1 and 2 workers at its thread count: {identical}"
    )
    print(
        json.dumps(
            {
                "times_s": times,
                "speedup_2_vs_1": base / times["ray, 2 workers"],
                "identical": identical,
                "units": 2 * args.limit,
            }
        )
    )
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
