"""Candidates per hour with `--workers 1` and `--workers 2`, and Ray's overhead per candidate.

    .venv/bin/python benchmarks/ray_workers.py --iterations 4 --epochs 3

Runs `archsmith run` on digits (offline architect, bundled bubblewrap) once per worker count,
each in its own ARCHSMITH_HOME, and reads the run store: the run's wall time (from the command's
start, Ray's start included) and, for the parallel run, per candidate the time its jobs spent in
Ray tasks (submitted to returned) against their time in the sandbox, and the time a speed job
waited for its node.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from archsmith.memory.store import RunStore

log = logging.getLogger("ray_workers")
SCRIPT = Path(sys.executable).parent / "archsmith"


def one(workers: int, iterations: int, epochs: int) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix=f"archsmith-bench-w{workers}-"))
    env = {**os.environ, "ARCHSMITH_HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [
        str(SCRIPT), "run", "build a digits classifier", "--llm", "offline",
        "--iterations", str(iterations), "--epochs", str(epochs), "--workers", str(workers),
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    with RunStore(home / "archsmith.db") as store:
        (run_id,) = store.run_ids()
        rows = [r for r in store.iterations(run_id) if r["status"] != "failed"]
        calls = store.tool_calls(run_id)
    figures = {
        "workers": workers,
        "candidates": len(rows),
        "wall_s": round(wall, 1),
        "candidates_per_hour": round(len(rows) / wall * 3600, 1),
        "mean_candidate_s": round(sum(r["seconds"] for r in rows) / len(rows), 1),
    }
    placed = [c for c in calls if (c["args"] or {}).get("placement")]
    if placed:
        in_ray = sum(
            c["args"]["placement"]["returned_at"] - c["args"]["placement"]["submitted_at"]
            for c in placed
        )
        in_sandbox = sum(c["duration_s"] for c in placed)
        waited = sum(c["args"]["placement"]["lock_wait_s"] for c in placed)
        overhead = (in_ray - in_sandbox - waited) / len(rows)
        figures["ray_overhead_per_candidate_s"] = round(overhead, 3)
        figures["speed_lock_wait_per_candidate_s"] = round(waited / len(rows), 2)
        figures["jobs"] = len(placed)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for workers in args.workers:
        log.info(json.dumps(one(workers, args.iterations, args.epochs)))


if __name__ == "__main__":
    main()
