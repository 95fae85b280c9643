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
from archsmith.sandbox import get_sandbox
from archsmith.tools.runtime import ToolRuntime

__all__ = ["IterationView", "auto_epochs", "parse_duration", "resume_run", "start_run"]

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


def _context(meta: RunMeta, settings: Settings, llm: Any) -> AgentContext:
    sandbox = get_sandbox(meta.sandbox, image=settings.sandbox_image)  # type: ignore[arg-type]
    tools = ToolRuntime(sandbox, settings, device=meta.device)
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
) -> AgentState:
    """Create the run's directory and drive a new run to its end (or to Ctrl-C).

    ``llm`` is the chat model the caller already checked; without it one is made from the meta.
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
    return _drive(meta, settings, llm, directory, checkpoint_url, initial, console, on_update)


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
    return _drive(meta, settings, llm, directory, url, None, console, on_update)


def _drive(
    meta: RunMeta,
    settings: Settings,
    llm: Any,
    directory: Path,
    url: str | None,
    initial: AgentState | None,
    console: Console,
    on_update: Callable[[str, dict[str, Any]], None] | None,
) -> AgentState:
    view = on_update or IterationView(console)
    try:
        with open_checkpointer(directory, url) as saver:
            state = drive(saver, meta.run_id, _context(meta, settings, llm), initial, view)
    except KeyboardInterrupt:
        meta.status = "interrupted"
        save_meta(directory, meta)
        raise
    except BaseException:
        meta.status = "crashed"
        save_meta(directory, meta)
        raise
    meta.status = "finished" if state.get("stop_reason") else "stopped"
    meta.stop_reason = state.get("stop_reason")
    save_meta(directory, meta)
    write_best(directory, state)
    return state


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
