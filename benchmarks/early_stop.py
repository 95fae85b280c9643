"""What early stopping buys: the best found within the same wall-clock budget, with and without.

Runs ``archsmith run REQUEST --budget B`` twice in one fresh archsmith home (the dataset prepared
once before either), first without and then with ``--early-stop``, offline, in the local sandbox,
and prints for each: candidates evaluated and stopped, the best's CM, validation and held-out test
accuracy and FPS, and the best CM found by each fifth of the budget. The offline architect is
deterministic, so the two runs differ only by the rule (and by what it changes in the history the
architect reads).

    .venv/bin/python benchmarks/early_stop.py [--request "build a 1000-FPS malaria classifier"]
        [--data-dir ../shared/data] [--budget 15m] [--home DIR]
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
from typing import Any

log = logging.getLogger("benchmark")
REPO = Path(__file__).resolve().parents[1]
ARCHSMITH = [sys.executable, "-m", "archsmith"]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ARCHSMITH, *args], env=env, cwd=REPO, capture_output=True, text=True, check=False
    )


def search(
    request: str, data_dir: str, budget: str, early: bool, env: dict[str, str]
) -> dict[str, Any]:
    """One run to its end; its record as ``show --json`` gives it, and its wall time."""
    flags = ["--early-stop"] if early else []
    started = time.monotonic()
    done = _run(
        ["run", request, "--data-dir", data_dir, "--budget", budget, "-n", "1000", *flags], env
    )
    wall = time.monotonic() - started
    if done.returncode not in (0, 4):
        raise SystemExit(f"archsmith run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    shown = _run(["show", "latest", "--json"], env)
    if shown.returncode != 0:
        raise SystemExit(f"archsmith show failed:\n{shown.stderr[-2000:]}")
    story: dict[str, Any] = json.loads(shown.stdout)
    story["wall_s"] = wall
    return story


def best_by(story: dict[str, Any], seconds: float) -> float | None:
    """The best CM among candidates finished within ``seconds`` of the run's start."""
    start = float(story["run"]["created_at"])
    found = [
        float(e["combined_metric"])
        for e in story["iterations"]
        if e.get("is_best") and float(e["finished_at"]) - start <= seconds
    ]
    return max(found) if found else None


def summary(name: str, story: dict[str, Any], budget_s: float) -> list[str]:
    its = story["iterations"]
    status = [e["status"] for e in its]
    best = story.get("best") or {}
    m = best.get("metrics") or {}
    test = (best.get("test") or {}).get("test_accuracy")
    fifths = [best_by(story, budget_s * k / 5) for k in range(1, 6)]
    cells = ["-" if v is None else f"{v:.4f}" for v in fifths]
    return [
        f"{name}: {story['wall_s']:.0f} s, {len(its)} candidates ({status.count('evaluated')}"
        f" trained to the end, {status.count('stopped early')} stopped early,"
        f" {status.count('failed')} failed)",
        f"  best: iteration {best.get('iteration')}, CM {best.get('combined_metric')},"
        f" validation {m.get('val_accuracy')}, held-out test {test}, {m.get('fps')} FPS,"
        f" {m.get('params')} parameters",
        "  best CM by each fifth of the budget: " + " | ".join(cells),
        *(f"  {_candidate(e)}" for e in its),
    ]


def _candidate(e: dict[str, Any]) -> str:
    """One candidate: what it was, what it cost, what it reached, and the check's verdict."""
    m = e.get("metrics") or {}
    check = e.get("early_stop") or {}
    val = m.get("val_accuracy") if m.get("val_accuracy") is not None else check.get("val_accuracy")
    fps = m.get("fps")
    cm = e.get("combined_metric")
    return (
        f"#{e['iteration']} {e['status']}: {float(e.get('seconds') or 0):.0f} s,"
        f" val {'-' if val is None else f'{val:.4f}'},"
        f" {'-' if fps is None else f'{fps:,.0f}'} FPS, CM {'-' if cm is None else f'{cm:.4f}'}"
        f" ({str(e.get('summary', ''))[:60]})"
        + (f"; check at epoch {check.get('epoch')}: {check.get('reason')}" if check else "")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--request", default="build a 1000-FPS malaria classifier")
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--budget", default="15m")
    parser.add_argument(
        "--home", help="Keep the runs in this archsmith home (default: a temp one)."
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from archsmith.agents.session import parse_duration
    from archsmith.config import Settings
    from archsmith.data.prepared import prepare_dataset

    budget_s = parse_duration(args.budget)
    with tempfile.TemporaryDirectory(prefix="archsmith-early-stop-") as temp:
        home = args.home or temp
        env = {**os.environ, "ARCHSMITH_HOME": home}
        log.info("preparing the dataset ...")
        planned = _run(["plan", args.request, "--json"], env)
        if planned.returncode != 0:
            raise SystemExit(planned.stderr[-2000:])
        settings = Settings(home=Path(home), data_dir=Path(args.data_dir))
        prepare_dataset(
            json.loads(planned.stdout)["dataset"], settings.data_dir, settings.cache_dir
        )
        lines = [f"{args.request!r}, budget {args.budget} each, {os.cpu_count()} CPUs"]
        for name, early in (("without early stopping", False), ("with --early-stop", True)):
            log.info("running %s ...", name)
            lines += summary(
                name, search(args.request, args.data_dir, args.budget, early, env), budget_s
            )
    for line in lines:
        log.info("%s", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
