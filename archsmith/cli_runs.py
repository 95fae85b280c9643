"""Commands that look back at runs: ``runs``, ``show``, ``diff``, ``report``, ``export``, ``stop``.

They read the run store (and import run directories it does not know), so they work while a run
goes on in another terminal, after a crash, and on runs made before the store existed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from archsmith.cli_common import EXIT_LIMIT_MISSED, TargetOption, err, out
from archsmith.cli_common import fail as _fail
from archsmith.config import Settings
from archsmith.errors import InputError
from archsmith.home import run_dir, unknown_runs
from archsmith.memory.store import RunStore
from archsmith.memory.views import (
    code_diff,
    default_report_path,
    iteration_entry,
    metric_deltas,
    require_finished,
    resolve_run,
    run_story,
)
from archsmith.metrics import figure
from archsmith.tools.schemas import STOPPED_EARLY

__all__ = ["import_missing_runs", "register", "resolve_run_id"]

log = logging.getLogger(__name__)


@contextmanager
def _store(settings: Settings | None = None) -> Iterator[tuple[RunStore, Settings]]:
    """The run store, with every run directory it did not know imported."""
    settings = settings or Settings()
    with RunStore(settings.store_path) as store:
        import_missing_runs(store, settings)
        yield store, settings


def import_missing_runs(store: RunStore, settings: Settings) -> list[str]:
    """Import run directories the store does not know from their run.json and checkpoints.

    Runs made before the store existed, or after a damaged store was moved aside, so nothing a
    run recorded is lost to a missing row."""
    missing = unknown_runs(settings.home, store.run_ids())
    if not missing:
        return []
    # Only now the graph machinery: listing runs should not pay for importing LangGraph.
    from archsmith.agents.runs import load_meta, open_checkpointer, pending
    from archsmith.agents.session import run_row
    from archsmith.memory.recorder import RunRecorder

    imported = []
    for run_id in missing:
        directory = run_dir(settings.home, run_id)
        meta = load_meta(settings.home, run_id)
        if meta.settings.checkpoint_url:
            log.warning("run %s keeps its checkpoints in PostgreSQL; not imported", meta.run_id)
            continue
        with open_checkpointer(directory, None) as saver:
            _, state = pending(saver, meta.run_id)
        # One transaction: a run is imported whole or not at all, so a failure is retried later.
        with store.transaction(f"importing run {meta.run_id}"):
            store.upsert_run(run_row(meta, directory))
            RunRecorder(store, meta.run_id, directory).sync(dict(state or {}))
        imported.append(meta.run_id)
        log.info("imported run %s from %s", meta.run_id, directory)
    return imported


def resolve_run_id(settings: Settings, text: str) -> str:
    """The id of the run named by its id, a unique prefix of it, or ``latest`` (``resolve_run``):
    for a command that acts on a run without reading its row, such as ``resume``."""
    with _store(settings) as (store, _):
        return str(resolve_run(store, settings, text)["run_id"])


def run_target(settings: Settings, run_id: str) -> str | None:
    """The deployment target a run was started with, if any."""
    with _store(settings) as (store, _):
        target = (resolve_run(store, settings, run_id).get("settings") or {}).get("target")
    return str(target) if target else None


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "-"


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _status(run: dict[str, Any]) -> str:
    colour = {"running": "cyan", "finished": "green", "crashed": "red"}.get(run["status"], "yellow")
    return f"[{colour}]{run['status']}[/]"


#: Room for the reason beside the status in `runs`; `show` gives it whole.
_REASON_CHARS = 70


def _status_and_why(run: dict[str, Any]) -> str:
    """The status, and for a run that ended early (stopped, crashed) why, as `runs` lists it."""
    reason = str(run.get("stop_reason") or "")
    if run["status"] not in ("stopped", "crashed") or not reason:
        return _status(run)
    if len(reason) > _REASON_CHARS:
        reason = reason[: _REASON_CHARS - 3] + "..."
    return f"{_status(run)}: {escape(reason)}"


def runs_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Reclaim the space of failed or deleted runs: what killed processes left, and"
            " models no run refers to. What a run can still show, report, export or resume stays.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="With --prune: say what would go; remove nothing.")
    ] = False,
) -> None:
    """List every run: request, status, iterations, the best candidate, when and how long."""
    if dry_run and not prune:
        raise _fail(InputError("--dry-run goes with --prune"))
    if prune:
        _prune(dry_run=dry_run, as_json=as_json)
        return
    try:
        with _store() as (store, settings):
            runs = store.list_runs()
    except InputError as e:
        raise _fail(e) from e
    if as_json:
        out.print_json(json.dumps(runs, default=str))
        return
    if not runs:
        out.print('No runs yet. Start one: archsmith run "build a 1000-FPS digits classifier"')
        return
    table = Table(title=f"{len(runs)} runs in {settings.store_path}", title_justify="left")
    for col, justify in (
        ("run", "left"), ("request", "left"), ("status", "left"), ("iter.", "right"),
        ("best val acc", "right"), ("test acc", "right"), ("FPS", "right"), ("CM", "right"),
        ("workers", "right"), ("started", "left"),
        ("duration", "right"),
    ):  # fmt: skip
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in runs:
        table.add_row(
            r["run_id"],
            r["request"][:48],
            _status_and_why(r),
            f"{r['done']}/{r.get('max_iterations') or '?'}",
            figure(r.get("best_val_accuracy"), ".4f", missing="-"),
            figure(r.get("best_test_accuracy"), ".4f", missing="-"),
            figure(r.get("best_fps"), ",.0f", missing="-"),
            figure(r.get("best_cm"), ".4f", missing="-"),
            _workers(r.get("settings") or {}),
            _when(r["created_at"]),
            _span(r.get("duration_s")),
        )
    out.print(table)


def _prune(*, dry_run: bool, as_json: bool) -> None:
    from archsmith.home import human_bytes
    from archsmith.memory.views import prune_home

    try:
        with _store() as (store, settings):
            found = prune_home(store, settings, dry_run=dry_run)
    except InputError as e:
        raise _fail(e) from e
    if as_json:
        paths = [str(p) for p in found.paths]
        out.print_json(json.dumps({"dry_run": dry_run, "bytes": found.bytes, "paths": paths}))
        return
    for path in found.paths:
        out.print(f"  {path}", highlight=False, soft_wrap=True)
    verb = "would reclaim" if dry_run else "reclaimed"
    out.print(
        f"{verb.capitalize()} {human_bytes(found.bytes)} ({found.bytes:,} bytes) in"
        f" {len(found.paths)} director{'y' if len(found.paths) == 1 else 'ies'}.",
        highlight=False,
    )


def _workers(settings: dict[str, Any]) -> str:
    """How many candidates the run evaluated at once, and on which Ray cluster."""
    workers = int(settings.get("workers") or 1)
    address = settings.get("ray_address")
    if workers <= 1 and not address:
        return "1"
    return f"{workers} on Ray {address}" if address else f"{workers} on Ray"


def _where(entry: dict[str, Any]) -> str | None:
    """Where and when a candidate of a parallel round ran, and how its speed was measured."""
    if not entry.get("worker") and entry.get("round") is None:
        return None
    measured = entry.get("measurement") or {}
    started, finished = entry.get("started_at"), entry.get("finished_at")
    span = (
        f" from {_clock(started)} to {_clock(finished)}"
        if started is not None and finished is not None
        else ""
    )
    how = (
        f"; speed and inference energy measured {measured.get('speed_and_energy')}, training"
        f" energy {measured.get('training_energy')}"
        if measured
        else ""
    )
    return f"round {entry.get('round')}, on {entry.get('worker') or 'this process'}{span}{how}"


def _clock(ts: Any) -> str:
    return time.strftime("%H:%M:%S", time.localtime(float(ts)))


def _test_accuracy(entry: dict[str, Any]) -> str:
    """The held-out figure, or why there is none (measured once, when the run ends)."""
    test = entry.get("test")
    if not test:
        return "not measured (the run has not ended)"
    if not test.get("ok"):
        return f"not measured ({(test.get('error') or {}).get('message', 'failed')})"
    return figure(test.get("test_accuracy"))


def _header(story: dict[str, Any]) -> None:
    run = story["run"]
    lines = [
        f"[bold]{run['request']}[/]",
        f"status: {_status(run)}"
        + (f" ({escape(str(run['stop_reason']))})" if run.get("stop_reason") else ""),
        f"architect: {run['llm']}   planner: {run.get('planner') or '-'}   sandbox:"
        f" {run['sandbox']}   device: {run['device']}",
        f"started {_when(run['created_at'])}, took {_span(run.get('duration_s'))};"
        f" {len(story['iterations'])} of {run.get('max_iterations') or '?'} iterations;"
        f" {len(story['llm_calls'])} LLM calls, {len(story['tool_calls'])} tool calls",
    ]
    best = story.get("best")
    if best:
        m = best.get("metrics") or {}
        lines.append(
            f"best: iteration {best['iteration']} ({best['summary']}): test acc"
            f" {_test_accuracy(best)}, val acc {figure(m.get('val_accuracy'))},"
            f" {figure(m.get('fps'), ',.0f')} FPS, {figure(m.get('params'), ',')} params,"
            f" CM {figure(best.get('combined_metric'))}"
        )
        if best.get("limit_violations"):
            missed = "; ".join(best["limit_violations"])
            lines.append(f"[red]the best misses a hard limit: {missed}[/]")
    out.print(Panel("\n".join(lines), title=f"run {run['run_id']}", title_align="left"))
    for a in story["assumptions"]:
        out.print(f"  assumed: {a}", highlight=False)


def _overview(story: dict[str, Any]) -> None:
    table = Table(title="Iterations", title_justify="left")
    parallel = any(e.get("round") is not None for e in story["iterations"])
    columns = ["#", "status", "summary", "val acc", "FPS", "params", "CM", "instructions next"]
    for col in columns + (["round", "worker", "ran"] if parallel else []):
        table.add_column(col, overflow="fold")
    for e in story["iterations"]:
        m = e.get("metrics") or {}
        mark = " *" if e.get("is_best") else ""
        status = e["status"]
        val = figure(m.get("val_accuracy"), ".4f", missing="-")
        if status == "failed":
            status = f"[red]failed[/]: {(e.get('error') or {}).get('type')}"
        check = e.get("early_stop") or {}
        if status == STOPPED_EARLY and check:
            status = f"[yellow]stopped early[/] at epoch {check.get('epoch')}/{check.get('epochs')}"
            val = figure(check.get("val_accuracy"), ".4f", missing="-") + " (then)"
        table.add_row(
            f"{e['iteration']}{mark}",
            status,
            str(e.get("summary", ""))[:70],
            val,
            figure(m.get("fps"), ",.0f", missing="-"),
            figure(m.get("params"), ",", missing="-"),
            figure(e.get("combined_metric"), ".4f", missing="-"),
            " ".join(f"{i['code']}({i['weight']:g})" for i in e.get("instructions", [])),
            *(_parallel_cells(e) if parallel else []),
        )
    out.print(table)
    out.print("* became the best.  `archsmith show RUN --iteration N` tells one step's story.")


def _parallel_cells(e: dict[str, Any]) -> list[str]:
    started, finished = e.get("started_at"), e.get("finished_at")
    ran = f"{_clock(started)}-{_clock(finished)}" if started and finished else "-"
    return [str(e.get("round") or "-"), str(e.get("worker") or "-"), ran]


def _rules(entry: dict[str, Any], title: str) -> None:
    fired = entry.get("fired_rules") or []
    if not fired:
        out.print(f"{title}: no rule fired.")
        return
    table = Table(title=title, title_justify="left")
    for col in ("rule", "weight", "raises", "why"):
        table.add_column(col, overflow="fold")
    for r in fired:
        table.add_row(
            r["rule_id"],
            f"{r['weight']:g} ({r.get('weight_source', '')})",
            " ".join(r.get("instructions", [])),
            r.get("reason", ""),
        )
    out.print(table)
    kept = entry.get("instructions") or []
    if kept:
        out.print(
            "resolved instructions: "
            + ", ".join(f"{i['code']} {i['weight']:g} ({i['meaning']})" for i in kept),
            highlight=False,
        )
    for d in entry.get("dropped") or []:
        out.print(f"dropped: {d['code']} ({d['weight']:g}): {d['reason']}", highlight=False)


def _one_iteration(story: dict[str, Any], entry: dict[str, Any]) -> None:
    n = int(entry["iteration"])
    previous = next((e for e in story["iterations"] if int(e["iteration"]) == n - 1), None)
    out.rule(
        f"iteration {n}: {entry.get('summary', '')}" + ("  (best)" if entry["is_best"] else "")
    )
    out.print(f"status: {entry['status']}; {entry.get('seconds', 0):.1f} s", highlight=False)
    where = _where(entry)
    if where:
        out.print(f"ran in {where}", highlight=False)
    if previous is not None:
        _rules(previous, f"Why: the critic's verdict on iteration {n - 1}")
    else:
        out.print("Why: the first candidate, built from the spec alone.")
    if entry.get("applied"):
        out.print(f"applied by the architect: {', '.join(entry['applied'])}", highlight=False)
    for call in story["llm_calls"]:
        if call.get("iteration") == n:
            tokens = (
                f", {call['input_tokens']}+{call['output_tokens']} tokens"
                if call.get("input_tokens") is not None
                else ""
            )
            out.print(
                Panel(call["prompt"], title=f"{call['role']} prompt to {call['model']}",
                      title_align="left")
            )  # fmt: skip
            out.print(
                Panel(call["response"], title=f"reply ({call['latency_s']:.1f} s{tokens})",
                      title_align="left")
            )  # fmt: skip
    out.print(Syntax(entry.get("code", ""), "python", line_numbers=True, word_wrap=True))
    for fix in entry.get("fixes") or []:
        e = fix.get("error") or {}
        out.print(
            f"fix {fix['attempt']} after {fix['stage']}: {e.get('type')}: {e.get('message')}"
            + (f" (line {e['line']})" if e.get("line") else ""),
            highlight=False,
        )
    check = entry.get("early_stop")
    if check:
        out.print(
            f"{'[yellow]stopped early[/]' if check.get('stopped') else 'went on'} after the"
            f" check at epoch {check.get('epoch')} of {check.get('epochs')}"
            f" ({check.get('rule')}): validation"
            f" {figure(check.get('val_accuracy'), '.4f')}, training"
            f" {figure(check.get('train_accuracy'), '.4f')} then; {check.get('reason')}",
            highlight=False,
        )
    if entry["status"] == "failed":
        e = entry.get("error") or {}
        out.print(
            f"[red]failed[/] in {e.get('stage')}: {e.get('type')}: {e.get('message')}",
            highlight=False,
        )
    m = entry.get("metrics")
    if m:
        src = entry.get("energy_sources") or {}
        table = Table(title="Measured", title_justify="left")
        table.add_column("metric")
        table.add_column("value", justify="right")
        rows = [
            ("test accuracy (held out, measured once)", _test_accuracy(entry)),
            ("validation accuracy", figure(m.get("val_accuracy"), ".4f")),
            ("train accuracy", figure(m.get("train_accuracy"), ".4f")),
            ("FPS (batch 256)", figure(m.get("fps"), ",.0f")),
            ("latency, batch 1 (ms)", figure(m.get("latency_ms"), ".3f")),
            ("parameters", figure(m.get("params"), ",")),
            ("size (MB)", figure(m.get("model_size_mb"), ".3f")),
            (
                f"training energy ({src.get('train')})",
                figure(m.get("train_energy_kwh_pue"), ".3g"),
            ),
            (
                f"validation energy ({src.get('val')})",
                figure(m.get("val_energy_kwh_pue"), ".3g"),
            ),
            ("combined metric CM", figure(entry.get("combined_metric"), ".4f")),
        ]
        for row in rows:
            table.add_row(*row)
        out.print(table)
        _rules(entry, f"The critic on iteration {n}")
    calls = [c for c in story["tool_calls"] if c.get("iteration") == n]
    if calls:
        out.print(
            "tool calls: "
            + ", ".join(
                f"{c['tool']} {c['duration_s']:.1f} s {'ok' if c['ok'] else 'failed'}"
                for c in calls
            )
            + f" ({calls[0]['backend']} sandbox)",
            highlight=False,
        )


def show_cmd(
    run_id: Annotated[str, typer.Argument(help="Run id, a unique prefix of it, or 'latest'.")],
    iteration: Annotated[
        int | None, typer.Option("--iteration", "-i", min=1, help="Tell one step's story.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
) -> None:
    """The whole story of a run, or of one iteration: why, the prompt, the code, the metrics."""
    try:
        with _store() as (store, settings):
            run = resolve_run(store, settings, run_id)
            story = run_story(store, run["run_id"])
            entry = iteration_entry(story, iteration) if iteration is not None else None
    except InputError as e:
        raise _fail(e) from e
    if as_json:
        if entry is not None:
            n = entry["iteration"]
            data: dict[str, Any] = {
                "run_id": run["run_id"],
                "iteration": entry,
                "llm_calls": [c for c in story["llm_calls"] if c.get("iteration") == n],
                "tool_calls": [c for c in story["tool_calls"] if c.get("iteration") == n],
            }
        else:
            data = story
        out.print_json(json.dumps(data, default=str))
        return
    if entry is not None:
        _one_iteration(story, entry)
        return
    _header(story)
    if story["iterations"]:
        _overview(story)
    else:
        out.print("No iteration has finished yet.")


def diff_cmd(
    run_id: Annotated[str, typer.Argument(help="Run id, a unique prefix of it, or 'latest'.")],
    a: Annotated[int, typer.Argument(help="The earlier iteration.")],
    b: Annotated[int, typer.Argument(help="The later iteration.")],
) -> None:
    """The code diff between two iterations and how their metrics moved."""
    try:
        with _store() as (store, settings):
            run = resolve_run(store, settings, run_id)
            story = run_story(store, run["run_id"])
            ea, eb = iteration_entry(story, a), iteration_entry(story, b)
    except InputError as e:
        raise _fail(e) from e
    table = Table(title=f"run {run['run_id']}: iteration {a} -> {b}", title_justify="left")
    for col in ("metric", f"#{a}", f"#{b}", "change"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for label, va, vb, delta, better in metric_deltas(ea, eb):
        colour = {True: "green", False: "red", None: "white"}[better]
        change = "-" if delta is None else f"[{colour}]{delta:+.4g}[/]"
        table.add_row(label, figure(va, ".4g", missing="-"), figure(vb, ".4g", missing="-"), change)
    out.print(table)
    out.print(f"#{a}: {ea.get('summary', '')}\n#{b}: {eb.get('summary', '')}", highlight=False)
    text = code_diff(ea, eb)
    if text:
        out.print(Syntax(text, "diff", word_wrap=True))
    else:
        out.print("The two iterations have the same code.")


def report_cmd(
    run_id: Annotated[str, typer.Argument(help="Run id, a unique prefix of it, or 'latest'.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="HTML file (default: in the run's dir).")
    ] = None,
    allow_running: Annotated[
        bool, typer.Option("--allow-running", help="Report a run that is still going.")
    ] = False,
) -> None:
    """One self-contained HTML file: plots over iterations, Pareto fronts, one card per step."""
    from archsmith.report.html import ReportData, write_report

    started = time.perf_counter()
    try:
        with _store() as (store, settings):
            run = resolve_run(store, settings, run_id)
            require_finished(run, "a report", allow_running=allow_running)
            story = run_story(store, run["run_id"])
            path = output or default_report_path(run)
            data = ReportData(
                run={**run, "max_iterations": run.get("max_iterations")},
                spec=story["spec"],
                assumptions=story["assumptions"],
                iterations=story["iterations"],
                llm_calls=story["llm_calls"],
                tool_calls=story["tool_calls"],
            )
            written = write_report(data, path)
            store.add_artifact(run["run_id"], "report", written)
    except InputError as e:
        raise _fail(e) from e
    out.print(
        f"report of run {run['run_id']} ({len(story['iterations'])} iterations) written in"
        f" {time.perf_counter() - started:.2f} s:",
        highlight=False,
    )
    out.print(written.resolve().as_uri(), soft_wrap=True, highlight=False)


def export_cmd(
    run_id: Annotated[str, typer.Argument(help="Run id, a unique prefix of it, or 'latest'.")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="onnx, torchscript or pytorch.")
    ] = "onnx",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Directory (default: ./export-RUN).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty directory.")] = False,
    allow_running: Annotated[
        bool, typer.Option("--allow-running", help="Export the best so far of a running run.")
    ] = False,
    target: TargetOption = None,
) -> None:
    """The best model: code, safetensors weights, ONNX (checked) or TorchScript, a model card.

    With --target (the run's own when it had one), the exported file is measured on the target
    and checked against the request; exit code 4 when a hard limit is missed."""
    if fmt not in ("onnx", "torchscript", "pytorch"):
        raise _fail(InputError(f"--format must be onnx, torchscript or pytorch, not {fmt!r}"))
    if target is not None and fmt != "onnx":
        raise _fail(InputError("--target measures the ONNX file: use it with --format onnx"))
    code = export_run(
        run_id, fmt=fmt, output=output, force=force, allow_running=allow_running, target=target
    )
    if code:
        raise typer.Exit(code)


def export_run(
    run_id: str,
    *,
    fmt: str = "onnx",
    output: Path | None = None,
    force: bool = False,
    allow_running: bool = False,
    target: str | None = None,
) -> int:
    """Export a run's best (and accept it on its target); the exit code: 0, or 4 when the
    exported file misses a hard limit of the request on the target."""
    from archsmith.acceptance import Acceptance, accept
    from archsmith.export import export_model
    from archsmith.sandbox import SandboxError, get_sandbox
    from archsmith.targets import parse_target
    from archsmith.tools.runtime import ToolRuntime

    accepted: Acceptance | None = None
    try:
        with _store() as (store, settings):
            run = resolve_run(store, settings, run_id)
            require_finished(run, "an export", allow_running=allow_running)
            story = run_story(store, run["run_id"])
            best = _best_or_fail(story)
            run_settings = run.get("settings") or {}
            chosen = target or (run_settings.get("target") if fmt == "onnx" else None)
            on_target = parse_target(chosen) if chosen else None
            box = get_sandbox(
                run["sandbox"],
                image=settings.sandbox_image,
                trusted_code=str(run.get("llm") or "") == "offline",
                bwrap=settings.bwrap,
            )
            runtime = ToolRuntime(
                box, settings, device="cpu", data_dir=run_settings.get("data_dir")
            )
            where = output or Path.cwd() / f"export-{run['run_id']}"
            common: dict[str, Any] = {
                "run": {
                    **run,
                    "iterations_done": len(story["iterations"]),
                    "epochs": run_settings.get("epochs"),
                },
                "spec": story["spec"],
                "best": best,
                "out_dir": where,
                "overwrite": force,
                "max_val": run_settings.get("max_val"),
                "max_train": run_settings.get("max_train"),
            }
            status = f"exporting iteration {best['iteration']} ({fmt}) in the sandbox" + (
                f", then measuring it on {on_target}" if on_target else ""
            )
            with err.status(status + " ..."):
                if on_target is not None:
                    accepted = accept(runtime, target=on_target, **common)
                    result = accepted.export
                else:
                    result = export_model(runtime, fmt=fmt, **common)  # type: ignore[arg-type]
            store.add_artifact(run["run_id"], "export", result.out_dir, best["iteration"])
    except InputError as e:
        raise _fail(e) from e
    except SandboxError as e:
        err.print(f"[bold red]sandbox error:[/] {e}", highlight=False)
        raise typer.Exit(1) from e
    out.print(
        f"exported iteration {best['iteration']} of run {run['run_id']} in {result.seconds:.1f} s"
        f" to {result.out_dir}",
        soft_wrap=True,
        highlight=False,
    )
    for name in sorted(p.name for p in result.out_dir.iterdir()):
        out.print(f"  {name}", highlight=False)
    for name, check in result.check.items():
        if not isinstance(check, dict):
            continue
        agree = check.get("argmax_disagreements", 0)
        out.print(
            f"checked {name} against PyTorch on {check.get('samples')} validation samples:"
            f" max |difference| {check.get('max_abs_diff', 0):.2g},"
            + (" every prediction agrees" if not agree else f" {agree} predictions differ")
            + ("" if check.get("passed") else " [red](failed)[/]"),
            highlight=False,
        )
    if accepted is None:
        return 0
    show_acceptance(accepted)
    return EXIT_LIMIT_MISSED if accepted.hard_limit_missed else 0


def show_acceptance(accepted: Any) -> None:
    """The acceptance table: each request, what the exported file measured, met or not."""
    figures = accepted.figures
    where = (
        "this machine, not the deployment device"
        if accepted.measured_by == "this machine"
        else f"the device at {accepted.measured_by}"
    )
    table = Table(title=f"acceptance on {accepted.target}: {accepted.file}, measured on {where}")
    for column in ("request", "requested", "measured", "met"):
        table.add_column(column)
    for row in accepted.rows:
        met = "not measured" if row.met is None else ("yes" if row.met else "[bold red]no[/]")
        table.add_row(
            row.name + (" (hard limit)" if row.hard else ""), row.requested, row.measured, met
        )
    out.print(table)
    out.print(
        f"{figures['runtime']} {figures.get('runtime_version')}, {figures['threads']} thread(s),"
        f" {accepted.measured_on}; latency p90 {figures['latency_p90_ms']:.3f} ms,"
        f" {figures['fps']:,.0f} FPS at batch {figures['batch']}",
        highlight=False,
    )
    if accepted.hard_limit_missed:
        err.print("[bold red]a hard limit of the request is missed on the target[/]")


def _best_or_fail(story: dict[str, Any]) -> dict[str, Any]:
    best: dict[str, Any] | None = story["best"]
    if best is None:
        raise InputError(
            f"run {story['run']['run_id']} has no evaluated candidate to export"
            f" ({len(story['iterations'])} iterations, none succeeded)"
        )
    return best


def _check_stoppable(run: dict[str, Any], now: bool) -> None:
    if run["status"] != "running":
        hint = "; `archsmith resume` continues it" if run["status"] != "finished" else ""
        raise InputError(
            f"run {run['run_id']} is not running (status: {run['status']}); nothing to stop{hint}"
        )
    if run.get("alive") is None and now:
        raise InputError(
            f"run {run['run_id']} runs on host {run.get('host')}; --now works only there"
        )


def stop_cmd(
    run_id: Annotated[str, typer.Argument(help="Run id, a unique prefix of it, or 'latest'.")],
    now: Annotated[
        bool, typer.Option("--now", help="Interrupt the step in flight (Ctrl-C to the process).")
    ] = False,
) -> None:
    """Stop a run going in another terminal: after its current step, or --now."""
    try:
        with _store() as (store, settings):
            run = resolve_run(store, settings, run_id)
            _check_stoppable(run, now)
            store.request_stop(run["run_id"])
    except InputError as e:
        raise _fail(e) from e
    if now:
        os.kill(int(run["pid"]), signal.SIGINT)
        out.print(f"sent Ctrl-C to run {run['run_id']} (process {run['pid']})", highlight=False)
    else:
        out.print(
            f"asked run {run['run_id']} to stop after its current step; resume it later with"
            f" `archsmith resume {run['run_id']}`",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add the run-inspection commands to the ``archsmith`` command."""
    app.command("runs")(runs_cmd)
    app.command("show")(show_cmd)
    app.command("diff")(diff_cmd)
    app.command("report")(report_cmd)
    app.command("export")(export_cmd)
    app.command("stop")(stop_cmd)
