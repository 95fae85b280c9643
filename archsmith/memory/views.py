"""The read side of runs: find one by id, prefix or ``latest``; gather its story; diff two steps.

They read the run store only; the commands import the run directories it does not know first
(``cli_runs.import_missing_runs``, which needs the graph's checkpoints, a layer above).
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any

from archsmith import home
from archsmith.config import Settings
from archsmith.errors import InputError
from archsmith.memory.store import RunStore

__all__ = [
    "MetricDelta",
    "code_diff",
    "iteration_entry",
    "metric_deltas",
    "prune_home",
    "require_finished",
    "resolve_run",
    "run_story",
]

log = logging.getLogger(__name__)

#: Metrics compared by ``diff``, with whether higher is better.
DIFF_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("val_accuracy", "validation accuracy", True),
    ("train_accuracy", "train accuracy", True),
    ("fps", "FPS", True),
    ("latency_ms", "latency (ms)", False),
    ("params", "parameters", False),
    ("model_size_mb", "size (MB)", False),
    ("train_energy_kwh_pue", "training energy (kWh-PUE)", False),
    ("val_energy_kwh_pue", "validation energy (kWh-PUE)", False),
)

MetricDelta = tuple[str, float | None, float | None, float | None, bool | None]


def resolve_run(store: RunStore, settings: Settings, text: str) -> dict[str, Any]:
    """The run named by its id, a unique prefix of it, or ``latest``; else a helpful InputError.

    The one resolver of run ids: every command that takes one uses it, on a store that has
    imported the run directories it did not know (``cli_runs.import_missing_runs``)."""
    ids = store.run_ids()
    if not ids:
        which = "" if text == "latest" else f"no run {text!r}: "
        raise InputError(
            f"{which}there are no runs yet in {settings.store_path}; start one with"
            ' `archsmith run "build a 1000-FPS digits classifier"`'
        )
    if text == "latest":
        matches = [max(ids, key=lambda i: (store.get_run(i) or {}).get("created_at", 0.0))]
    elif text in ids:
        matches = [text]
    else:
        matches = [i for i in ids if i.startswith(text)]
    if len(matches) > 1:
        raise InputError(
            f"{text!r} matches {len(matches)} runs ({', '.join(matches[:5])}); give more of the id"
        )
    if not matches:
        recent = ", ".join(ids[-5:])
        raise InputError(
            f"no run {text!r} in {settings.store_path}; recent runs: {recent}"
            " (`archsmith runs` lists them all)"
        )
    run = store.get_run(matches[0])
    if run is None:
        raise InputError(f"run {matches[0]} vanished while being read; try again")
    return run


def prune_home(store: RunStore, settings: Settings, *, dry_run: bool) -> home.Reclaimed:
    """``archsmith runs --prune``: what failed or deleted runs left in the home (``home.prune``),
    keeping every program a run in the store refers to, and whatever a run still going may be
    about to record. The store must have imported the run directories it can
    (``cli_runs.import_missing_runs``)."""
    unknown = home.unknown_runs(settings.home, store.run_ids())
    if unknown:
        raise InputError(
            f"the store does not know run{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
            " (checkpoints in PostgreSQL?), so it cannot tell which models they need; nothing"
            " was pruned"
        )
    runs = store.list_runs()
    referenced = [
        str(entry.get("model_dir") or "")
        for run in runs
        for entry in store.iterations(run["run_id"])
    ]
    # A run on another host (alive None) may be going too.
    live = [r["created_at"] for r in runs if r["status"] == "running" and r["alive"] is not False]
    return home.prune(settings.home, referenced, min(live) if live else None, dry_run=dry_run)


def require_finished(run: dict[str, Any], what: str, *, allow_running: bool = False) -> None:
    """Refuse to act on a run another process is still driving, unless the user allows it."""
    if run["status"] == "running" and run.get("alive") is not False and not allow_running:
        raise InputError(
            f"run {run['run_id']} is still going (process {run.get('pid')}); {what} would see"
            f" a half-finished search. Wait for it, stop it with `archsmith stop {run['run_id']}`,"
            " or pass --allow-running to use the best so far."
        )


def run_story(store: RunStore, run_id: str) -> dict[str, Any]:
    """Everything recorded about a run, as plain data for ``show --json``, reports and exports."""
    run = store.get_run(run_id)
    if run is None:
        raise InputError(f"no run {run_id!r}")
    iterations = store.iterations(run_id)
    best = None
    for entry in iterations:
        if entry.get("is_best"):
            best = entry
    return {
        "run": run,
        "spec": run.get("spec") or {},
        "assumptions": run.get("assumptions") or [],
        "iterations": iterations,
        "best": best,
        "llm_calls": store.llm_calls(run_id),
        "tool_calls": store.tool_calls(run_id),
        "artifacts": store.artifacts(run_id),
    }


def iteration_entry(story: dict[str, Any], number: int) -> dict[str, Any]:
    """One iteration's history entry, or an InputError listing the ones there are."""
    for entry in story["iterations"]:
        if int(entry["iteration"]) == number:
            found: dict[str, Any] = entry
            return found
    have = [int(e["iteration"]) for e in story["iterations"]]
    span = f"1..{max(have)}" if have else "none yet"
    raise InputError(f"run {story['run']['run_id']} has no iteration {number} (recorded: {span})")


def code_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    """A unified diff of two iterations' code."""
    lines = difflib.unified_diff(
        str(a.get("code", "")).splitlines(keepends=True),
        str(b.get("code", "")).splitlines(keepends=True),
        fromfile=f"iteration {a['iteration']}",
        tofile=f"iteration {b['iteration']}",
    )
    return "".join(lines)


def metric_deltas(a: dict[str, Any], b: dict[str, Any]) -> list[MetricDelta]:
    """(label, A, B, B - A, whether B is better) for each metric and CM; None where missing."""
    ma, mb = a.get("metrics") or {}, b.get("metrics") or {}
    rows: list[MetricDelta] = []
    pairs = [(label, ma.get(k), mb.get(k), up) for k, label, up in DIFF_METRICS]
    pairs.append(("combined metric CM", a.get("combined_metric"), b.get("combined_metric"), True))
    for label, va, vb, higher_better in pairs:
        if va is None or vb is None:
            rows.append((label, va, vb, None, None))
            continue
        delta = float(vb) - float(va)
        better = None if delta == 0 else (delta > 0) == higher_better
        rows.append((label, float(va), float(vb), delta, better))
    return rows


def default_report_path(run: dict[str, Any]) -> Path:
    """Where ``report`` writes when no -o is given: beside the run's other files."""
    return Path(run["directory"]) / "report.html"
