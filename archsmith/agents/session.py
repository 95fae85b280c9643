"""Starting and resuming runs from the command line, with a live view of every iteration."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from archsmith.agents.interfaces import Architect
from archsmith.agents.runs import (
    RunMeta,
    drive,
    initial_state,
    new_run_id,
    open_checkpointer,
    pending,
    redact_url,
    run_dir,
    save_meta,
    write_best,
)
from archsmith.agents.state import AgentContext, AgentState
from archsmith.config import Settings
from archsmith.errors import InputError
from archsmith.memory.recorder import RunRecorder, StopRequested
from archsmith.memory.store import RunStore, process_alive
from archsmith.sandbox import get_sandbox
from archsmith.tools.runtime import ToolRuntime

__all__ = [
    "IterationView",
    "auto_epochs",
    "parse_duration",
    "resume_run",
    "run_row",
    "start_run",
]

log = logging.getLogger(__name__)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d)?\s*$", re.I)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90', '90s', '30m', '2h', '1.5h' -> seconds; anything else is an InputError."""
    match = _DURATION.match(text)
    if not match:
        raise InputError(f"cannot read {text!r} as a duration; use e.g. 600, 30m, 2h or 1.5h")
    value = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if value <= 0:
        raise InputError(f"the duration {text!r} must be positive")
    return value


def auto_epochs(train_samples: int, batch_size: int = 128, min_steps: int = 500) -> int:
    """Epochs per candidate when the user gives none: enough optimiser steps to compare models.

    Five epochs of a small set (digits: 12 steps each) barely move a model, so small datasets get
    more epochs, up to 50; large ones keep the floor of 5.
    """
    steps = max(1, -(-train_samples // batch_size))
    return min(50, max(5, -(-min_steps // steps)))


class IterationView:
    """Prints one line per finished iteration: what was tried, how it did, the best so far."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.best_cm: float | None = None

    def __call__(self, node: str, update: dict[str, Any]) -> None:
        if node in ("critic", "record_failure"):
            for entry in update.get("history", []):
                self._line(entry, update.get("best"))
            if update.get("stop_reason"):
                self.console.print(f"[bold]stopping:[/] {update['stop_reason']}")
        elif node == "code_fixer":
            fixes = update.get("fixes") or [{}]
            err = fixes[-1].get("error") or {}
            self.console.print(
                f"   [yellow]fix {update.get('fix_attempts')}[/] after {fixes[-1].get('stage')}:"
                f" {err.get('type')}: {str(err.get('message'))[:100]}",
                highlight=False,
            )

    def _line(self, entry: dict[str, Any], best: dict[str, Any] | None) -> None:
        it = entry.get("iteration")
        summary = str(entry.get("summary", ""))[:60]
        if entry.get("status") == "failed":
            err = entry.get("error") or {}
            self.console.print(
                f"[bold]{it:>3}[/] [red]failed[/] {summary}  {err.get('type')}:"
                f" {str(err.get('message'))[:80]}",
                highlight=False,
            )
            return
        m = entry.get("metrics") or {}
        mark = "[green]*[/]" if entry.get("is_best") else " "
        best_text = ""
        if best:
            best_text = f"  best #{best['iteration']} CM {best['combined_metric']:.4f}"
        self.console.print(
            f"[bold]{it:>3}[/]{mark}{summary:<60} val {m.get('val_accuracy', 0):.4f}"
            f"  train {m.get('train_accuracy', 0):.4f}  {m.get('fps', 0):>9,.0f} FPS"
            f"  {m.get('val_energy_kwh_pue', 0):.2e} kWh-PUE"
            f"  CM {entry.get('combined_metric', 0):.4f}"
            f"{best_text}  ({entry.get('seconds', 0):.0f} s)",
            highlight=False,
        )


def _architect(llm_value: str, llm: Any, seed: int) -> Architect:
    if llm is None:
        from archsmith.agents.offline_architect import OfflineArchitect

        return OfflineArchitect(seed=seed)
    from archsmith.agents.llm_architect import LLMArchitect

    return LLMArchitect(llm, model_name=llm_value.partition(":")[2] or llm_value)


def _context(
    meta: RunMeta, settings: Settings, llm: Any, recorder: RunRecorder | None = None
) -> AgentContext:
    sandbox = get_sandbox(
        meta.sandbox,  # type: ignore[arg-type]
        image=settings.sandbox_image,
        trusted_code=llm is None,
        bwrap=settings.bwrap,
    )
    tools = ToolRuntime(sandbox, settings, device=meta.device)
    if recorder is not None:
        tools.on_call = recorder.on_tool_call
    return AgentContext(
        tools=tools,
        architect=_architect(meta.llm, llm, seed=0),
        llm=llm,
        epochs=meta.epochs,
        max_fix_attempts=meta.max_fix_attempts,
        max_train=meta.max_train,
        max_val=meta.max_val,
    )


def _make_llm(meta: RunMeta) -> Any:
    from archsmith.agents.llm import check_llm, make_llm

    llm = make_llm(meta.llm, base_url=meta.base_url)
    if llm is not None:
        check_llm(llm)
    return llm


def start_run(
    meta: RunMeta,
    settings: Settings,
    spec: dict[str, Any],
    assumptions: list[str],
    planner_source: str,
    console: Console,
    checkpoint_url: str | None = None,
    on_update: Callable[[str, dict[str, Any]], None] | None = None,
    llm: Any = None,
    planner_calls: list[dict[str, Any]] | None = None,
) -> AgentState:
    """Create the run's directory and drive a new run to its end (or to Ctrl-C).

    ``llm`` is the chat model the caller already checked; without it one is made from the meta.
    ``planner_calls`` are the LLM calls that planned the spec, kept with the run's trace.
    """
    if llm is None:
        llm = _make_llm(meta)
    directory = run_dir(settings.home, meta.run_id)
    meta.checkpoint_url = redact_url(checkpoint_url) if checkpoint_url else None
    meta.status, meta.pid = "running", os.getpid()
    save_meta(directory, meta)
    initial = initial_state(
        meta.request,
        spec,
        iterations=meta.iterations,
        assumptions=assumptions,
        planner=planner_source,
        max_fix_attempts=meta.max_fix_attempts,
        budget_s=meta.budget_s,
        patience=meta.patience,
    )
    initial["llm_calls"] = list(planner_calls or [])
    with RunStore(settings.store_path) as store:
        store.upsert_run(run_row(meta, directory))
        recorder = RunRecorder(store, meta.run_id, directory)
        recorder.sync(dict(initial))
        return _drive(
            meta, settings, llm, directory, checkpoint_url, initial, console, on_update, recorder
        )


def run_row(meta: RunMeta, directory: Path) -> dict[str, Any]:
    """The run store's row for a run's metadata."""
    return {
        "run_id": meta.run_id,
        "request": meta.request,
        "status": meta.status,
        "stop_reason": meta.stop_reason,
        "llm": meta.llm,
        "base_url": meta.base_url,
        "sandbox": meta.sandbox,
        "device": meta.device,
        "settings": meta.model_dump(mode="json"),
        "directory": str(directory),
        "max_iterations": meta.iterations,
        "pid": meta.pid,
        "created_at": meta.created_at,
    }


def resume_run(
    run_id: str,
    settings: Settings,
    console: Console,
    checkpoint_url: str | None = None,
    on_update: Callable[[str, dict[str, Any]], None] | None = None,
) -> AgentState:
    """Continue a run from its last completed step."""
    from archsmith.agents.runs import load_meta

    meta = load_meta(settings.home, run_id)
    if meta.status == "running" and meta.pid != os.getpid() and process_alive(meta.pid, None):
        raise InputError(
            f"run {run_id} is still going (process {meta.pid}); watch it with `archsmith show"
            f" {run_id}` or stop it with `archsmith stop {run_id}` before resuming"
        )
    if meta.data_dir and settings.data_dir is None:
        settings = settings.model_copy(update={"data_dir": Path(meta.data_dir)})
    if meta.checkpoint_url and "***" in meta.checkpoint_url and not checkpoint_url:
        raise InputError(
            f"run {run_id} keeps its checkpoints in PostgreSQL ({meta.checkpoint_url}); pass"
            " --checkpoint-url with the password to resume it"
        )
    url = checkpoint_url or meta.checkpoint_url
    directory = run_dir(settings.home, run_id)
    with open_checkpointer(directory, url) as saver:
        left, state = pending(saver, run_id)
    if not state:
        raise InputError(f"run {run_id} has no checkpoint to resume from")
    if not left:
        console.print(f"run {run_id} already finished: {state.get('stop_reason')}")
        return state
    llm = _make_llm(meta)
    meta.status, meta.pid = "running", os.getpid()
    save_meta(directory, meta)
    console.print(
        f"resuming run [bold]{run_id}[/] after iteration {state.get('iteration', 0)}"
        f" ({len(state.get('history', []))} iterations recorded)"
    )
    with RunStore(settings.store_path) as store:
        store.upsert_run(run_row(meta, directory))
        recorder = RunRecorder(store, run_id, directory)
        # Rows a crash kept from the store (the checkpoint was written, the store not yet).
        recorder.sync(dict(state))
        return _drive(meta, settings, llm, directory, url, None, console, on_update, recorder)


def _drive(
    meta: RunMeta,
    settings: Settings,
    llm: Any,
    directory: Path,
    url: str | None,
    initial: AgentState | None,
    console: Console,
    on_update: Callable[[str, dict[str, Any]], None] | None,
    recorder: RunRecorder,
) -> AgentState:
    view = on_update or IterationView(console)

    def record_then_show(node: str, update: dict[str, Any]) -> None:
        recorder.on_update(node, update)
        view(node, update)

    store = recorder.store
    store.set_status(meta.run_id, "running", pid=os.getpid())
    context = _context(meta, settings, llm, recorder)
    try:
        with open_checkpointer(directory, url) as saver:
            try:
                state = drive(saver, meta.run_id, context, initial, record_then_show)
            except StopRequested:
                log.info("run %s stopped on request", meta.run_id)
                _, state = pending(saver, meta.run_id)
                meta.stop_reason = "stopped by `archsmith stop`; resume to go on"
                console.print(f"[bold]stopping:[/] {meta.stop_reason}")
    except KeyboardInterrupt:
        _end(meta, directory, store, "interrupted", "interrupted (Ctrl-C)", failing=True)
        raise
    except BaseException:
        _end(meta, directory, store, "crashed", None, failing=True)
        raise
    if state.get("stop_reason"):
        _end(meta, directory, store, "finished", state.get("stop_reason"))
    else:
        _end(meta, directory, store, "stopped", meta.stop_reason)
    best = write_best(directory, state)
    if best is not None:
        store.add_artifact(
            meta.run_id, "best_code", best, iteration=(state.get("best") or {}).get("iteration")
        )
    return state


def _end(
    meta: RunMeta,
    directory: Path,
    store: RunStore,
    status: str,
    reason: str | None,
    *,
    failing: bool = False,
) -> None:
    """Record how the run ended in run.json and the store.

    When the run is already failing (``failing``) the store may itself be the cause (a full
    disk): its error is logged and the original exception goes on, since that one matters more.
    """
    meta.status = status
    meta.stop_reason = reason
    save_meta(directory, meta)
    if not failing:
        store.set_status(meta.run_id, status, reason)
        return
    try:
        store.set_status(meta.run_id, status, reason)
    except InputError:
        log.exception("could not record the end of run %s in the store", meta.run_id)


def new_meta(
    request: str,
    llm_value: str,
    *,
    base_url: str | None,
    sandbox: str,
    device: str,
    data_dir: Path | None,
    epochs: int,
    iterations: int,
    budget_s: float | None,
    patience: int | None,
    max_train: int | None,
    max_val: int | None,
) -> RunMeta:
    """A fresh run's metadata."""
    return RunMeta(
        run_id=new_run_id(),
        request=request,
        llm=llm_value,
        base_url=base_url,
        sandbox=sandbox,
        device=device,
        data_dir=str(data_dir) if data_dir else None,
        epochs=epochs,
        iterations=iterations,
        budget_s=budget_s,
        patience=patience,
        max_train=max_train,
        max_val=max_val,
    )
