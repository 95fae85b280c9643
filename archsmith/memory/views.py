"""The read side of runs: find one by id, prefix or ``latest``; gather its story; diff two steps.

Runs whose directories exist but which the store does not know (made before the store existed, or
after a damaged store was moved aside) are imported from their checkpoints, so nothing a run
recorded is lost to a missing row.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any

from archsmith.config import Settings
from archsmith.errors import InputError
from archsmith.memory.recorder import RunRecorder
from archsmith.memory.store import RunStore

__all__ = [
    "MetricDelta",
    "code_diff",
    "import_missing_runs",
    "iteration_entry",
    "metric_deltas",
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


def import_missing_runs(store: RunStore, settings: Settings) -> list[str]:
    """Import run directories the store does not know from their run.json and checkpoints."""
    runs_dir = settings.home / "runs"
    if not runs_dir.is_dir():
        return []
    known = set(store.run_ids())
    missing = [
        d for d in sorted(runs_dir.iterdir()) if d.name not in known and (d / "run.json").is_file()
    ]
    if not missing:
        return []
    # Only now the graph machinery: listing runs should not pay for importing LangGraph.
    from archsmith.agents.runs import load_meta, open_checkpointer, pending, run_dir
    from archsmith.agents.session import run_row

    imported = []
    for directory in missing:
        meta = load_meta(settings.home, directory.name)
        if meta.checkpoint_url:
            log.warning("run %s keeps its checkpoints in PostgreSQL; not imported", meta.run_id)
            continue
        with open_checkpointer(directory, None) as saver:
            _, state = pending(saver, meta.run_id)
        # One transaction: a run is imported whole or not at all, so a failure is retried later.
        with store.transaction(f"importing run {meta.run_id}"):
            store.upsert_run(run_row(meta, run_dir(settings.home, meta.run_id)))
            RunRecorder(store, meta.run_id, directory).sync(dict(state or {}))
        imported.append(meta.run_id)
        log.info("imported run %s from %s", meta.run_id, directory)
    return imported


def resolve_run(store: RunStore, settings: Settings, text: str) -> dict[str, Any]:
    """The run named by its id, a unique prefix of it, or ``latest``; else a helpful InputError."""
    import_missing_runs(store, settings)
    ids = store.run_ids()
    if not ids:
        raise InputError(
            f"there are no runs yet in {settings.store_path}; start one with"
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
