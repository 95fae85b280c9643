"""Starting and resuming runs from the command line, with a live view of every iteration."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console

from archsmith.agents.interfaces import Architect
from archsmith.agents.pipeline import PIPELINE
from archsmith.agents.runs import (
    RunMeta,
    drive,
    initial_state,
    new_run_id,
    open_checkpointer,
    pending,
    redact_url,
    save_meta,
    write_best,
)
from archsmith.agents.state import AgentContext, AgentState
from archsmith.config import RunSettings, Settings, resolve_device
from archsmith.errors import InputError
from archsmith.home import run_dir, sweep
from archsmith.memory.recorder import RunRecorder, StopRequested
from archsmith.memory.store import RunStore, process_alive
from archsmith.metrics import figure
from archsmith.sandbox import get_sandbox, release
from archsmith.sandbox.base import Sandbox
from archsmith.tools.runtime import ToolRuntime

__all__ = [
    "LLM_STOP_PREFIX",
    "IterationView",
    "make_checked_llm",
    "parse_duration",
    "resume_run",
    "run_context",
    "run_row",
    "start_run",
]

log = logging.getLogger(__name__)
#: How the stop reason of a run that the LLM failed begins, in run.json, the store and `runs`.
LLM_STOP_PREFIX = "LLM unavailable: "
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


class IterationView:
    """Prints one line per finished iteration: what was tried, how it did, the best so far;
    ``on_plan`` is told the planner's update (the CLI shows the plan from it)."""

    def __init__(
        self, console: Console, on_plan: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.console = console
        self.on_plan = on_plan
        self.best_cm: float | None = None

    def __call__(self, node: str, update: dict[str, Any]) -> None:
        if node == "planner":
            if self.on_plan is not None:
                self.on_plan(update)
        elif node == "candidate":
            for key, found in (update.get("round_results") or {}).items():
                workers = ", ".join((found.get("placement") or {}).get("workers") or [])
                took = float(found.get("finished_at", 0)) - float(found.get("started_at", 0))
                self.console.print(
                    f"    [dim]#{key} done in {took:.0f} s on {workers or 'this process'};"
                    " judged with its round[/]",
                    highlight=False,
                )
        elif node in ("critic", "record_failure", "critic_round"):
            for entry in update.get("history", []):
                self._line(entry, update.get("best"))
            if update.get("stop_reason"):
                self.console.print(f"[bold]stopping:[/] {update['stop_reason']}")
        elif node == PIPELINE:
            for fix in update.get("fixes") or []:
                err = fix.get("error") or {}
                self.console.print(
                    f"   [yellow]fix {fix.get('attempt')}[/] after {fix.get('stage')}:"
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
            best_text = f"  best #{best['iteration']} CM {figure(best.get('combined_metric'))}"
        limits = entry.get("limit_violations") or []
        self.console.print(
            f"[bold]{it:>3}[/]{mark}{summary:<60} val {figure(m.get('val_accuracy'))}"
            f"  train {figure(m.get('train_accuracy'))}  {figure(m.get('fps'), '>9,.0f')} FPS"
            f"  {figure(m.get('val_energy_kwh_pue'), '.2e')} kWh-PUE"
            f"  CM {figure(entry.get('combined_metric'))}"
            + (f"  [red]over a limit: {'; '.join(limits)}[/]" if limits else "")
            + f"{best_text}  ({entry.get('seconds', 0):.0f} s)",
            highlight=False,
        )


def _architect(meta: RunMeta) -> Architect:
    from archsmith.llm.outage import OutagePolicy
    from archsmith.llm.providers import make_llm, parse_llm

    provider, model = parse_llm(meta.llm)
    run = meta.settings
    if provider == "offline":
        from archsmith.agents.offline.architect import OfflineArchitect

        return OfflineArchitect(seed=0)
    from archsmith.agents.llm_architect import LLMArchitect

    # The architect's client retries nothing itself: call_through_outage retries every failure
    # and logs each with its wait, where the SDK's own retries would hide a timeout for minutes.
    chat = make_llm(meta.llm, base_url=run.base_url, timeout_s=run.llm_timeout_s, max_retries=0)
    if chat is None:
        raise InputError(f"run {meta.run_id}: the LLM {meta.llm!r} made no chat model")
    outage = OutagePolicy.from_env(run.llm_outage_window_s)
    return LLMArchitect(chat, model_name=model or meta.llm, outage=outage)


def run_context(
    meta: RunMeta,
    settings: Settings,
    llm: Any,
    recorder: RunRecorder | None = None,
    sandbox: Sandbox | None = None,
) -> AgentContext:
    """The run's collaborators: its sandbox (``sandbox``, the one the caller built and checked,
    else one built here), tools, architect and LLM; rebuilt on resume."""
    run = meta.settings
    if sandbox is None:
        sandbox = get_sandbox(
            run.sandbox,
            image=settings.sandbox_image,
            trusted_code=llm is None,
            bwrap=settings.bwrap,
            warm=settings.warm_sandbox,
        )
    tools = ToolRuntime(sandbox, settings, device=run.device, data_dir=run.data_dir)
    if recorder is not None:
        tools.on_call = recorder.on_tool_call
    return AgentContext(
        tools=tools,
        settings=run,
        architect=_architect(meta),
        on_candidate=recorder.on_candidate if recorder is not None else None,
        llm=llm,
    )


def make_checked_llm(meta: RunMeta) -> Any:
    """The run's chat model, checked to answer (None offline)."""
    from archsmith.llm.providers import check_llm, make_llm

    run = meta.settings
    llm = make_llm(meta.llm, base_url=run.base_url, timeout_s=run.llm_timeout_s)
    if llm is not None:
        check_llm(llm)
    return llm


def start_run(
    meta: RunMeta,
    settings: Settings,
    console: Console,
    checkpoint_url: str | None = None,
    on_update: Callable[[str, dict[str, Any]], None] | None = None,
    llm: Any = None,
    sandbox: Sandbox | None = None,
    *,
    dataset: str | None = None,
    image_size: int | None = None,
) -> AgentState:
    """Create the run's directory and drive a new run, from the graph's planner, to its end (or
    to Ctrl-C).

    ``llm`` is the chat model the caller already checked; without it one is made from the meta.
    ``sandbox`` is the one the caller built (and so checked); without it one is built.
    ``dataset`` and ``image_size`` (``--dataset``, ``--image-size``) go to the planner with the
    request. The run enters the store once it is planned: a request that cannot be planned (an
    unknown dataset, impossible limits) leaves no run behind, its directory removed.
    """
    if llm is None:
        llm = make_checked_llm(meta)
    directory = run_dir(settings.home, meta.run_id)
    meta.settings = meta.settings.replace(
        checkpoint_url=redact_url(checkpoint_url) if checkpoint_url else None
    )
    meta.status, meta.pid = "running", os.getpid()
    save_meta(directory, meta)
    initial = initial_state(meta.request, dataset=dataset, image_size=image_size)
    with RunStore(settings.store_path) as store:
        recorder = RunRecorder(store, meta.run_id, directory)
        return _drive(
            meta,
            settings,
            llm,
            directory,
            checkpoint_url,
            initial,
            console,
            on_update,
            recorder,
            sandbox,
        )


def run_row(meta: RunMeta, directory: Path) -> dict[str, Any]:
    """The run store's row for a run's metadata."""
    return {
        "run_id": meta.run_id,
        "request": meta.request,
        "status": meta.status,
        "stop_reason": meta.stop_reason,
        "llm": meta.llm,
        "base_url": meta.settings.base_url,
        "sandbox": meta.settings.sandbox,
        "device": meta.settings.device,
        "settings": meta.settings.as_dict(),
        "directory": str(directory),
        "max_iterations": meta.settings.iterations,
        "pid": meta.pid,
        "created_at": meta.created_at,
    }


def resume_run(
    run_id: str,
    settings: Settings,
    console: Console,
    checkpoint_url: str | None = None,
    on_update: Callable[[str, dict[str, Any]], None] | None = None,
    *,
    llm_timeout_s: float | None = None,
    llm_outage_window_s: float | None = None,
) -> AgentState:
    """Continue a run from its last completed step.

    ``llm_timeout_s`` and ``llm_outage_window_s`` replace what the run was started with (a run
    stopped by an outage may deserve a longer window); None keeps it.
    """
    from archsmith.agents.runs import load_meta

    meta = load_meta(settings.home, run_id)
    changes = {"llm_timeout_s": llm_timeout_s, "llm_outage_window_s": llm_outage_window_s}
    meta.settings = meta.settings.replace(**{k: v for k, v in changes.items() if v is not None})
    if meta.status == "running" and meta.pid != os.getpid() and process_alive(meta.pid, None):
        raise InputError(
            f"run {run_id} is still going (process {meta.pid}); watch it with `archsmith show"
            f" {run_id}` or stop it with `archsmith stop {run_id}` before resuming"
        )
    kept_url = meta.settings.checkpoint_url
    if kept_url and "***" in kept_url and not checkpoint_url:
        raise InputError(
            f"run {run_id} keeps its checkpoints in PostgreSQL ({kept_url}); pass"
            " --checkpoint-url with the password to resume it"
        )
    url = checkpoint_url or kept_url
    directory = run_dir(settings.home, run_id)
    with open_checkpointer(directory, url) as saver:
        left, state = pending(saver, run_id)
    if not state:
        raise InputError(f"run {run_id} has no checkpoint to resume from")
    if meta.settings.epochs is None and state.get("epochs"):
        # Planned, and killed before run.json said so: the checkpoint has the planner's choice.
        meta.settings = meta.settings.replace(epochs=int(state["epochs"]))
    if not left:
        console.print(f"run {run_id} already finished: {state.get('stop_reason')}")
        return state
    llm = make_checked_llm(meta)
    meta.status, meta.pid, meta.stop_reason = "running", os.getpid(), None
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
    sandbox: Sandbox | None = None,
) -> AgentState:
    """Drive the graph (a new run with ``initial``, else a resumed one) and record how it ended.

    A new run that fails before its planner's update (bad input, the planner's LLM, Ctrl-C) is
    discarded (`_discard`): it has no plan to resume from.
    """
    view = on_update or IterationView(console)
    store = recorder.store
    unplanned = initial is not None

    def record_then_show(node: str, update: dict[str, Any]) -> None:
        nonlocal unplanned
        if node == "planner":
            _planned(meta, directory, store, update)
            unplanned = False
        recorder.on_update(node, update)
        view(node, update)

    store.set_status(meta.run_id, "running", pid=os.getpid())
    sweep(settings.home)  # what processes killed mid-job left (their jobs, held state)
    context = run_context(meta, settings, llm, recorder, sandbox)
    try:
        with ExitStack() as cluster, open_checkpointer(directory, url) as saver:
            cluster.callback(context.tools.release)  # the run's validated programs
            cluster.callback(release, context.tools.sandbox)
            if meta.settings.workers > 1 or meta.settings.ray_address:
                _on_ray(cluster, meta, settings, directory, context, trusted=llm is None)
            try:
                state = drive(saver, meta.run_id, context, initial, record_then_show)
            except StopRequested:
                log.info("run %s stopped on request", meta.run_id)
                _, state = pending(saver, meta.run_id)
                meta.stop_reason = "stopped by `archsmith stop`; resume to go on"
                console.print(f"[bold]stopping:[/] {meta.stop_reason}")
    except BaseException as e:
        if unplanned:
            _discard(meta.run_id, directory, url)
        else:
            _failed(meta, directory, recorder, e)
        raise
    if state.get("stop_reason"):
        _end(meta, directory, store, "finished", state.get("stop_reason"))
    else:
        _end(meta, directory, store, "stopped", meta.stop_reason)
    best = write_best(directory, state)
    if best is not None:
        judged = state.get("best")
        iteration = judged["iteration"] if judged else None
        store.add_artifact(meta.run_id, "best_code", best, iteration=iteration)
    return state


def _planned(meta: RunMeta, directory: Path, store: RunStore, update: dict[str, Any]) -> None:
    """The planner's update arrived: record the epochs it settled and enter the run in the store
    (a new run has no row until then; a resumed one gets its row again)."""
    if update.get("epochs") is not None:
        meta.settings = meta.settings.replace(epochs=int(update["epochs"]))
    save_meta(directory, meta)
    store.upsert_run(run_row(meta, directory))


def _discard(run_id: str, directory: Path, url: str | None) -> None:
    """Remove a new run that ended before its plan: its directory and its PostgreSQL
    checkpoints. Called while an exception is on its way out: a failure here is logged, and the
    exception that ended the run goes on."""
    try:
        if url:
            with open_checkpointer(directory, url) as saver:
                saver.delete_thread(run_id)
        shutil.rmtree(directory)
        _remove_if_empty(directory.parent)
    except (OSError, InputError):
        log.exception("could not remove run %s, which ended before its plan", run_id)


def _remove_if_empty(folder: Path) -> None:
    """The runs folder, when the discarded run was all it held: a refused first request leaves no
    trace in the home. Another run's folder keeps it (the kernel refuses to remove it)."""
    try:
        folder.rmdir()
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise


def _failed(meta: RunMeta, directory: Path, recorder: RunRecorder, e: BaseException) -> None:
    """Record how a run that raised ``e`` ended: interrupted, stopped by its LLM, or crashed."""
    from archsmith.llm.failures import LLMOutageError

    if isinstance(e, KeyboardInterrupt):
        # The job in flight was stopped with the run (runs.drive) and its step not recorded.
        during = f" in iteration {recorder.iteration}" if recorder.iteration else ""
        reason = (
            f"interrupted (Ctrl-C or `archsmith stop --now`){during};"
            f" `archsmith resume {meta.run_id}` redoes the step it was in"
        )
        _end(meta, directory, recorder.store, "interrupted", reason, failing=True)
    elif isinstance(e, LLMOutageError):
        # Like any other fault: the step in flight is redone on resume, nothing is lost.
        reason = f"{LLM_STOP_PREFIX}{e}; resume with `archsmith resume {meta.run_id}`"
        log.info("run %s stopped: %s", meta.run_id, reason)
        _end(meta, directory, recorder.store, "stopped", reason, failing=True)
    else:
        _end(meta, directory, recorder.store, "crashed", None, failing=True)


def _on_ray(
    stack: ExitStack,
    meta: RunMeta,
    settings: Settings,
    directory: Path,
    context: AgentContext,
    *,
    trusted: bool,
) -> None:
    """Send the run's sandbox jobs to Ray: the cluster at the settings' ``ray_address``, or a
    local one started now and stopped with ``stack``.

    A local cluster left by this run's killed process (``kill -9``) is cleaned up first.
    """
    from archsmith.sandbox.ray_pool import (
        RaySandbox,
        SandboxSpec,
        open_cluster,
        reap_local_cluster,
    )

    run = meta.settings
    reap_local_cluster(meta.ray_session_dir)
    info = stack.enter_context(open_cluster(run.ray_address, workers=run.workers))
    meta.ray_session_dir = info.session_dir if info.local else None
    save_meta(directory, meta)
    gpus = run.gpus_per_candidate
    if gpus is None:
        gpus = 1.0 / run.workers if run.device.startswith("cuda") else 0.0
    context.tools.sandbox = RaySandbox(
        SandboxSpec(
            backend=run.sandbox,
            image=settings.sandbox_image,
            trusted_code=trusted,
            bwrap=settings.bwrap,
            warm=settings.warm_sandbox,
        ),
        num_cpus=1.0,
        num_gpus=gpus,
    )


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


def new_meta(request: str, settings: RunSettings) -> RunMeta:
    """A fresh run's record, its settings settled: the LLM (by the key that is set when none is
    named) and the device (``auto`` resolved) are recorded as the run uses them. Epochs left
    unset are chosen by the planner from the dataset's size."""
    from archsmith.llm.providers import default_llm

    settled = settings.replace(
        llm=settings.llm or default_llm(), device=resolve_device(settings.device)
    )
    return RunMeta(run_id=new_run_id(), request=request, settings=settled)
