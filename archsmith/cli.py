"""The ``archsmith`` command.

Exit codes: 0 success; 1 an unexpected failure (a bug: the traceback is kept) or a candidate that
failed (``evaluate``); 2 bad input (a file that is missing, not JSON, or invalid; the message says
which field and what range); 3 a run in which no candidate could be evaluated; 4 a run whose best
model misses a hard limit (``max_params``, ``max_latency_ms``, ``max_model_size_mb``); 5 a run
stopped because its LLM failed mid-run (an outage longer than ``--llm-outage-window``, a rejected
key or request: the reason is in ``archsmith show``) or could not be reached to resume it; 130 a
run interrupted by Ctrl-C. A run ending with 5 or 130 is saved: ``archsmith resume`` continues it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.logging import RichHandler
from rich.table import Table

from archsmith import __version__
from archsmith.cli_bench import register as register_bench_command
from archsmith.cli_common import (
    EXIT_BAD_INPUT,
    EXIT_LIMIT_MISSED,
    EXIT_LLM_UNAVAILABLE,
    EXIT_NO_CANDIDATE,
    SANDBOX_HELP,
    DatasetOption,
    ImageSizeOption,
    TargetOption,
    check_sandbox,
    err,
    out,
)
from archsmith.cli_common import fail as _fail
from archsmith.cli_runs import register as register_run_commands
from archsmith.cli_tools import register as register_tool_commands
from archsmith.config import DEFAULT_EARLY_STOP_MARGIN, DEFAULT_ITERATIONS, RunSettings, Settings
from archsmith.errors import InputError
from archsmith.metrics import figure
from archsmith.targets import target_from_request

__all__ = ["app", "main"]


log = logging.getLogger("archsmith")
app = typer.Typer(
    name="archsmith",
    help="Discover neural network architectures under edge constraints (LEMONADE).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"archsmith {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log debug detail to stderr.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Set up logging once for every command."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False)],
        force=True,
    )


register_tool_commands(app)


LLMTimeoutOption = Annotated[
    str | None,
    typer.Option(
        "--llm-timeout",
        help="How long one LLM request may wait for its reply: 120, 90s, 5m"
        " (default: $ARCHSMITH_LLM_TIMEOUT_S, else 120 s).",
    ),
]
LLMOutageWindowOption = Annotated[
    str | None,
    typer.Option(
        "--llm-outage-window",
        help="How long a failing LLM call is retried mid-run, each wait shown, before the run"
        " stops, resumable: 600, 10m, 1h (default: $ARCHSMITH_LLM_OUTAGE_WINDOW_S, else 10 min).",
    ),
]


def _seconds(text: str | None) -> float | None:
    """A duration flag in seconds, or None when it was not given."""
    from archsmith.agents.session import parse_duration

    return parse_duration(text) if text else None


def _llm_value(llm: str | None) -> str:
    from archsmith.llm.providers import default_llm, parse_llm

    value = llm or default_llm()
    parse_llm(value)
    return value


@app.command("plan")
def plan_cmd(
    request: Annotated[str, typer.Argument(help='What to build, e.g. "a 1000-FPS malaria model".')],
    as_json: Annotated[bool, typer.Option("--json", help="Print the TaskSpec as JSON.")] = False,
    llm: Annotated[
        str | None, typer.Option("--llm", help="offline, openai:MODEL or gemini:MODEL.")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="An OpenAI-compatible server's URL.")
    ] = None,
    llm_timeout: LLMTimeoutOption = None,
    dataset: DatasetOption = None,
    image_size: ImageSizeOption = None,
) -> None:
    """Show the TaskSpec a request becomes, every assumption made, and targets that clash.

    Your own data (``--dataset PATH`` or a path in the request) is prepared to read its shape.
    """
    from archsmith.agents.planning.front import plan
    from archsmith.llm.failures import LLMUnavailableError
    from archsmith.llm.providers import make_llm

    try:
        value = _llm_value(llm)
        timeout_s = RunSettings.from_env(llm_timeout_s=_seconds(llm_timeout)).llm_timeout_s
        chat = make_llm(value, base_url=base_url, timeout_s=timeout_s)
        result = plan(request, chat, dataset=dataset, image_size=image_size)
    except InputError as e:
        raise _fail(e) from e
    except LLMUnavailableError as e:
        err.print(f"[bold red]LLM unavailable:[/] {e}", highlight=False)
        raise typer.Exit(1) from e
    if as_json:
        out.print_json(result.spec.model_dump_json())
        return
    _render_plan(result.spec.model_dump(mode="json"), result.assumptions, result.source)
    _, read = target_from_request(request)
    if read is not None:
        out.print(f"target: {read}", highlight=False)


def _render_plan(spec: dict[str, Any], assumptions: list[str], source: str) -> None:
    """The spec, every assumption, and the targets that cannot be met together (before any work)."""
    from archsmith.agents.planning.build import plan_warnings
    from archsmith.spec import TaskSpec

    symbols = TaskSpec.symbols()
    table = Table(title=f"TaskSpec (planner: {source})", title_justify="left")
    table.add_column("field")
    table.add_column("paper")
    table.add_column("value", overflow="fold")
    for key, value in spec.items():
        table.add_row(key, symbols.get(key, ""), json.dumps(value))
    out.print(table)
    for a in assumptions:
        out.print(f"assumed: {a}", highlight=False)
    for warning in plan_warnings(TaskSpec.model_validate(spec)):
        out.print(f"[bold yellow]warning:[/] {warning}", highlight=False)


@app.command("run")
def run_cmd(
    request: Annotated[str, typer.Argument(help='What to build, e.g. "a 1000-FPS malaria model".')],
    iterations: Annotated[
        int | None,
        typer.Option(
            "--iterations", "-n", min=1, help=f"Candidates to try ({DEFAULT_ITERATIONS})."
        ),
    ] = None,
    budget: Annotated[
        str | None, typer.Option("--budget", help="Wall-clock budget: 600, 30m, 2h.")
    ] = None,
    llm: Annotated[
        str | None,
        typer.Option("--llm", help="offline, openai:MODEL or gemini:MODEL (default: by key)."),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="An OpenAI-compatible server's URL.")
    ] = None,
    sandbox: Annotated[str | None, typer.Option("--sandbox", help=SANDBOX_HELP)] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", min=1, help="Epochs per candidate (default: by dataset size)."),
    ] = None,
    patience: Annotated[
        int | None, typer.Option("--patience", min=1, help="Stop after N rounds without a gain.")
    ] = None,
    max_train: Annotated[int | None, typer.Option("--max-train", min=1)] = None,
    max_val: Annotated[int | None, typer.Option("--max-val", min=1)] = None,
    checkpoint_url: Annotated[
        str | None,
        typer.Option("--checkpoint-url", help="postgresql://... (default: SQLite in the run)."),
    ] = None,
    llm_timeout: LLMTimeoutOption = None,
    llm_outage_window: LLMOutageWindowOption = None,
    dataset: DatasetOption = None,
    image_size: ImageSizeOption = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Candidates proposed and evaluated at once, each job a Ray task (a local Ray"
            " cluster unless --ray-address); 1 (the default): one at a time, no Ray.",
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="An existing Ray cluster (host:port of its head, ray://host:10001, or auto)"
            " to run the jobs on.",
        ),
    ] = None,
    gpus_per_candidate: Annotated[
        float | None,
        typer.Option(
            "--gpus-per-candidate",
            min=0.0,
            help="GPUs per job on Ray; a fraction lets small models share one"
            " (default: 1 / workers with --device cuda).",
        ),
    ] = None,
    early_stop: Annotated[
        bool,
        typer.Option(
            "--early-stop",
            help="Check each candidate after a third of its epochs and stop it when even an"
            " optimistic bound on its final CM is below the best's (docs: early stopping).",
        ),
    ] = False,
    early_stop_margin: Annotated[
        float | None,
        typer.Option(
            "--early-stop-margin",
            min=0.0,
            max=1.0,
            help="Accuracy a stopped candidate is allowed to have gained beyond the best's"
            f" gain (fraction; {DEFAULT_EARLY_STOP_MARGIN:g}).",
        ),
    ] = None,
    target: TargetOption = None,
) -> None:
    """Discover a model for a request in plain words (the LEMONADE loop).

    The graph's planner plans the request; the plan is shown from its first step.
    """
    from archsmith.agents.session import IterationView, new_meta, parse_duration, start_run
    from archsmith.llm.failures import LLMUnavailableError
    from archsmith.llm.outage import span
    from archsmith.llm.providers import check_llm, describe_llm, make_llm
    from archsmith.sandbox import get_sandbox

    if sandbox is not None:
        check_sandbox(sandbox)
    settings = Settings()
    box = None
    try:
        run = RunSettings.from_env(
            llm=llm, base_url=base_url, sandbox=sandbox, device=device,
            data_dir=str(data_dir) if data_dir else None, epochs=epochs, iterations=iterations,
            budget_s=parse_duration(budget) if budget else None, patience=patience,
            max_train=max_train, max_val=max_val, llm_timeout_s=_seconds(llm_timeout),
            llm_outage_window_s=_seconds(llm_outage_window), workers=workers,
            ray_address=ray_address, gpus_per_candidate=gpus_per_candidate,
            early_stop=early_stop or None, early_stop_margin=early_stop_margin,
            checkpoint_url=checkpoint_url, target=target,
        )  # fmt: skip
        if run.target is None:
            found, read = target_from_request(request)
            if found is not None:
                run = run.replace(target=found)
                out.print(f"target: {read}", highlight=False)
        if run.ray_address:
            from archsmith.sandbox.ray_pool import check_address

            check_address(run.ray_address)
        meta = new_meta(request, run)
        run = meta.settings
        chat = make_llm(meta.llm, base_url=run.base_url, timeout_s=run.llm_timeout_s)
        # Before any work: code written by an LLM needs a sandbox that can start here. The run
        # uses this one.
        box = get_sandbox(
            run.sandbox,
            image=settings.sandbox_image,
            trusted_code=chat is None,
            bwrap=settings.bwrap,
            warm=settings.warm_sandbox,
        )
        if chat is not None:
            with err.status(f"checking {meta.llm} ..."):
                check_llm(chat)
    except InputError as e:
        _release(box)
        raise _fail(e) from e
    except LLMUnavailableError as e:
        _release(box)
        err.print(f"[bold red]LLM unavailable:[/] {e}", highlight=False)
        raise typer.Exit(1) from e
    except BaseException:
        _release(box)
        raise
    planning = err.status("planning ...")
    planned: list[bool] = []

    def show_plan(update: dict[str, Any]) -> None:
        """The run's header and its plan, from the planner's update (the graph's first step)."""
        planning.stop()
        planned.append(True)
        samples = update.get("train_samples")
        out.print(f"run [bold]{meta.run_id}[/]: {request}", highlight=False)
        out.print(
            f"architect: {describe_llm(meta.llm, base_url=run.base_url)}; sandbox: {run.sandbox};"
            f" device: {run.device}; {update['epochs']} epochs per candidate"
            + (f" (auto: {samples:,} training samples)" if samples is not None else "")
            + f"; up to {run.iterations} iterations"
            + (f" or {run.budget_s:g} s" if run.budget_s else "")
            + (
                f"; {run.workers} at a time on Ray ({run.ray_address or 'local cluster'})"
                if run.workers > 1 or run.ray_address
                else ""
            )
            + (f"; early stopping (margin {run.early_stop_margin:g})" if run.early_stop else "")
            + (
                f"; LLM timeout {span(run.llm_timeout_s)},"
                f" outage window {span(run.llm_outage_window_s)}"
                if chat is not None
                else ""
            )
        )
        _render_plan(update["spec"], update["assumptions"], update["planner"])

    planning.start()
    try:
        _execute(
            lambda: start_run(
                meta,
                settings,
                out,
                checkpoint_url=run.checkpoint_url,
                on_update=IterationView(out, on_plan=show_plan),
                llm=chat,
                sandbox=box,
                dataset=dataset,
                image_size=image_size,
            ),
            meta.run_id,
            settings,
            planned=lambda: bool(planned),
        )
    finally:
        planning.stop()


def _release(box: Any) -> None:
    """Stop the sandbox a run that did not start had built (its warm sandboxes, if any)."""
    if box is not None:
        from archsmith.sandbox import release

        release(box)


def _execute(
    start: Any, run_id: str, settings: Any, planned: Callable[[], bool] = lambda: True
) -> None:
    """Start (or resume) a run and say how it ended; ``planned`` tells whether it got past its
    plan: a new run that did not was discarded, so there is nothing to resume."""
    from archsmith.cli_runs import export_run, run_target
    from archsmith.device_client import DeviceError
    from archsmith.home import run_dir
    from archsmith.llm.failures import LLMUnavailableError
    from archsmith.sandbox import SandboxError

    try:
        state = start()
    except KeyboardInterrupt:
        if not planned():
            err.print("\ninterrupted while planning; nothing was saved")
        else:
            err.print(f"\ninterrupted; resume with: archsmith resume {run_id}")
        raise typer.Exit(130) from None
    except DeviceError as e:
        err.print(f"[bold red]device error:[/] {e}", highlight=False)
        if planned():
            err.print(f"the run is saved; once the device answers: archsmith resume {run_id}")
        raise typer.Exit(EXIT_BAD_INPUT) from e
    except InputError as e:
        raise _fail(e) from e
    except SandboxError as e:
        err.print(f"[bold red]sandbox error:[/] {e}", highlight=False)
        raise typer.Exit(1) from e
    except LLMUnavailableError as e:
        err.print(f"[bold red]LLM unavailable:[/] {e}", highlight=False)
        if not planned():
            raise typer.Exit(1) from e
        err.print(f"the run is saved; once the LLM answers again: archsmith resume {run_id}")
        raise typer.Exit(EXIT_LLM_UNAVAILABLE) from e
    best = state.get("best")
    directory = run_dir(settings.home, run_id)
    finished = bool(state.get("stop_reason"))
    if not finished:
        out.print(f"run {run_id} stopped on request; resume with: archsmith resume {run_id}")
    out.print(f"run directory: {directory}", soft_wrap=True)
    if best:
        m = best["metrics"]
        out.print(f"code: {directory / 'best_model.py'}", soft_wrap=True)
        if best.get("model_dir"):
            out.print(f"trained model (program): {best['model_dir']}", soft_wrap=True)
        out.print(
            f"best: iteration {best['iteration']} ({best['summary']}), test acc"
            f" {figure(best.get('test_accuracy'))} (held out, measured once), val acc"
            f" {figure(m.get('val_accuracy'))}, {figure(m.get('fps'), ',.0f')} FPS,"
            f" {figure(m.get('params'), ',')} params, CM {figure(best.get('combined_metric'))}",
            highlight=False,
        )
        target = run_target(settings, run_id) if finished else None
        if target is not None:
            # The files `export` writes, measured where they will run, against the request.
            out.print(f"acceptance: exporting the best and measuring it on {target}")
            code = export_run(run_id, output=directory / "export", force=True, target=target)
            if code:
                raise typer.Exit(code)
        if not best.get("feasible", True):
            missed = "; ".join(best.get("limit_violations") or [])
            err.print(
                f"[bold red]no candidate met every hard limit:[/] the best misses {missed}",
                highlight=False,
            )
            raise typer.Exit(EXIT_LIMIT_MISSED)
    elif finished:
        err.print(
            "[bold red]no candidate could be evaluated:[/] every one failed; `archsmith show"
            f" {run_id}` says why each did",
            highlight=False,
        )
        raise typer.Exit(EXIT_NO_CANDIDATE)


@app.command("resume")
def resume_cmd(
    run_id: Annotated[
        str, typer.Argument(help="The run to continue: its id, a unique prefix of it, or 'latest'.")
    ],
    checkpoint_url: Annotated[str | None, typer.Option("--checkpoint-url")] = None,
    llm_timeout: LLMTimeoutOption = None,
    llm_outage_window: LLMOutageWindowOption = None,
) -> None:
    """Continue a run stopped by Ctrl-C, a crash, kill -9 or an LLM outage, where it stopped.

    ``--llm-timeout`` and ``--llm-outage-window`` replace what the run was started with.
    """
    from archsmith.agents.session import resume_run
    from archsmith.cli_runs import resolve_run_id

    settings = Settings()
    try:
        timeout_s, window_s = _seconds(llm_timeout), _seconds(llm_outage_window)
        run_id = resolve_run_id(settings, run_id)
    except InputError as e:
        raise _fail(e) from e
    _execute(
        lambda: resume_run(
            run_id,
            settings,
            out,
            checkpoint_url=checkpoint_url,
            llm_timeout_s=timeout_s,
            llm_outage_window_s=window_s,
        ),
        run_id,
        settings,
    )


register_run_commands(app)
register_bench_command(app)


def main() -> None:
    """Entry point of the console script."""
    app()
