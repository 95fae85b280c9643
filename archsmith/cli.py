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
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.logging import RichHandler
from rich.table import Table

from archsmith import __version__
from archsmith.cli_bench import register as register_bench_command
from archsmith.cli_common import (
    EXIT_LIMIT_MISSED,
    EXIT_LLM_UNAVAILABLE,
    EXIT_NO_CANDIDATE,
    SANDBOX_HELP,
    check_sandbox,
    err,
    figure,
    out,
)
from archsmith.cli_common import fail as _fail
from archsmith.cli_runs import register as register_run_commands
from archsmith.errors import InputError, load_json_model
from archsmith.spec import load_spec
from archsmith.tools.rulebook import Rulebook, load_rulebook
from archsmith.tools.rulebook_advice import advise
from archsmith.tools.schemas import EvaluationMetrics, RulebookAdviceOutput

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


@app.command("advise")
def advise_cmd(
    metrics: Annotated[
        Path,
        typer.Option("--metrics", "-m", help="JSON file with one candidate's evaluation metrics."),
    ],
    spec: Annotated[
        Path, typer.Option("--spec", "-s", help="JSON file with the TaskSpec (thresholds etc.).")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the tool's output as JSON.")
    ] = False,
    rulebook: Annotated[
        Path | None,
        typer.Option("--rulebook", help="Use this rulebook JSON instead of the packaged one."),
    ] = None,
) -> None:
    """Run the rulebook critic on measured metrics: instructions for the next round, and CM."""
    try:
        task = load_spec(spec)
        measured = load_json_model(metrics, EvaluationMetrics, "metrics")
        book = load_rulebook(rulebook)
    except InputError as e:
        raise _fail(e) from e
    log.debug("advising on %s with spec %s", metrics, spec)
    result = advise(measured, task, book)
    if as_json:
        out.print_json(json.dumps(result.model_dump(mode="json")))
        return
    _render_advice(result, task.weight_accuracy, task.weight_fps, task.weight_energy)


def _render_advice(result: RulebookAdviceOutput, w_a: float, w_f: float, w_e: float) -> None:
    out.print(
        f"[bold]Combined metric CM = {figure(result.combined_metric)}[/]"
        f"  (W_A={w_a:g}, W_F={w_f:g}, W_E={w_e:g}; NF={figure(result.normalized_fps, '.4g')},"
        f" T_NE={figure(result.normalized_train_energy, '.4g')},"
        f" V_NE={figure(result.normalized_val_energy, '.4g')})"
    )
    out.print(f"Prioritised targets met: {'yes' if result.targets_met else 'no'}")

    fired = Table(title="Fired rules", title_justify="left")
    fired.add_column("rule", overflow="fold")
    fired.add_column("weight", overflow="fold")
    fired.add_column("raises")
    fired.add_column("why", overflow="fold", ratio=1)
    for rule in result.fired_rules:
        fired.add_row(
            rule.rule_id,
            f"{rule.weight:g} ({rule.weight_source})",
            " ".join(rule.instructions),
            rule.reason,
        )
    if result.fired_rules:
        out.print(fired)
    else:
        out.print("No rule fired.")

    kept = Table(title="Instructions for the next round", title_justify="left")
    kept.add_column("#", justify="right")
    kept.add_column("code")
    kept.add_column("meaning")
    kept.add_column("weight", justify="right")
    kept.add_column("raised by")
    for n, ins in enumerate(result.instructions, start=1):
        kept.add_row(str(n), ins.code, ins.meaning, f"{ins.weight:g}", ", ".join(ins.raised_by))
    if result.instructions:
        out.print(kept)
    else:
        out.print("No instruction: keep the architecture as it is.")

    lost = [d for d in result.dropped if d.lost_to is not None]
    if lost:
        dropped = Table(title="Dropped by conflict resolution", title_justify="left")
        dropped.add_column("code")
        dropped.add_column("weight", justify="right")
        dropped.add_column("reason")
        for d in lost:
            dropped.add_row(d.code, f"{d.weight:g}", d.reason)
        out.print(dropped)
    unweighted = [d.code for d in result.dropped if d.lost_to is None]
    if unweighted:
        out.print(
            f"Raised with weight 0 (their priority is 0), not passed on: {' '.join(unweighted)}"
        )
    for s in result.not_evaluated:
        out.print(f"[dim]not checked: {s.rule_id} ({s.reason})[/]")


@app.command("rules")
def rules_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print the rulebook as JSON.")] = False,
    rulebook: Annotated[
        Path | None, typer.Option("--rulebook", help="Show this rulebook instead.")
    ] = None,
) -> None:
    """Show the rulebook: Table 3's instructions and the rules that raise them."""
    try:
        book = load_rulebook(rulebook)
    except InputError as e:
        raise _fail(e) from e
    if as_json:
        out.print_json(book.model_dump_json())
        return
    _render_rulebook(book)


def _render_rulebook(book: Rulebook) -> None:
    ins = Table(title="Instructions (Table 3)", title_justify="left")
    ins.add_column("code")
    ins.add_column("meaning")
    ins.add_column("conflicts with")
    for i in book.instructions:
        ins.add_row(i.code, i.meaning, i.conflicts_with or "-")
    out.print(ins)
    rules = Table(title="Rules (NNGES)", title_justify="left")
    rules.add_column("rule")
    rules.add_column("origin")
    rules.add_column("when")
    rules.add_column("raises")
    rules.add_column("weight")
    for r in book.rules:
        when = " and ".join(
            f"{c.metric} {c.op} {c.threshold}" if c.threshold is not None else f"{c.metric} {c.op}"
            for c in r.when
        )
        rules.add_row(r.id, r.origin, when, " ".join(r.instructions), str(r.weight))
    out.print(rules)
    out.print(
        "origin: paper = the LEMONADE paper states the rule (its text gives only the training-"
        "accuracy rule); archsmith = archsmith's design, clauses and weights alike.",
        highlight=False,
    )


@app.command("datasets")
def datasets_cmd(
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Where dataset files are (else $ARCHSMITH_DATA_DIR)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the datasets archsmith knows, whether each is available here, and its splits."""
    from archsmith.data import REGISTRY, DatasetUnavailableError, locate_dataset

    rows: list[dict[str, object]] = []
    for info in REGISTRY.values():
        try:
            _, source, _ = locate_dataset(info.name, data_dir)
            where, available = source.describe(), True
        except DatasetUnavailableError as e:
            where, available = str(e).splitlines()[0], False
        rows.append(
            {
                "name": info.name,
                "aliases": list(info.aliases),
                "task": info.task.value,
                "input_shape": list(info.input_shape),
                "num_classes": info.num_classes,
                "available": available,
                "source": where,
                "splits": info.splits,
            }
        )
    if as_json:
        out.print_json(json.dumps(rows))
        return
    info_shapes = {name: info.input_shape for name, info in REGISTRY.items()}
    table = Table(title="Datasets", title_justify="left")
    columns = ("name", "task", "shape", "classes", "available", "source / how to get it", "splits")
    for col in columns:
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            str(r["name"]),
            str(r["task"]),
            "x".join(str(d) for d in info_shapes[str(r["name"])]),
            str(r["num_classes"]),
            "yes" if r["available"] else "no",
            str(r["source"]),
            str(r["splits"]),
        )
    out.print(table)


#: Where --dataset and --image-size are explained, the same on plan, run and evaluate.
_OWN_DATA = (
    "the path of your own data (a folder of class folders of images, an .npz of images and"
    " labels, a .csv or .jsonl of text and label)"
)
DatasetOption = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        "-d",
        help=f"A registry name or {_OWN_DATA}; without it the request names the data.",
    ),
]
ImageSizeOption = Annotated[
    int | None,
    typer.Option(
        "--image-size",
        min=1,
        max=1024,
        help="Bring your own images to N x N pixels (default: chosen from the data, the median"
        " shorter side capped at 32; the plan says which).",
    ),
]


@app.command("evaluate")
def evaluate_cmd(
    model_file: Annotated[
        Path, typer.Argument(help="A Python file defining build_model(input_shape, num_classes).")
    ],
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help=f"Dataset name or alias, or {_OWN_DATA}.")
    ] = "digits",
    image_size: ImageSizeOption = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Training epochs.")] = 5,
    budget: Annotated[
        float | None, typer.Option("--budget", min=1, help="Training time limit (seconds).")
    ] = None,
    sandbox: Annotated[str, typer.Option("--sandbox", help=SANDBOX_HELP)] = "local",
    device: Annotated[
        str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where dataset files are.")
    ] = None,
    max_train: Annotated[
        int | None, typer.Option("--max-train", min=1, help="Use at most this many samples.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print every tool's output as JSON.")] = (
        False
    ),
) -> None:
    """Measure one model file the way the agent measures candidates, in the sandbox."""
    from archsmith.config import Settings
    from archsmith.data.user import dataset_argument
    from archsmith.sandbox import SandboxError, get_sandbox
    from archsmith.tools.runtime import ToolRuntime

    check_sandbox(sandbox)
    try:
        code = model_file.read_text(encoding="utf-8")
    except OSError as e:
        raise _fail(InputError(f"cannot read model file {model_file}: {e.strerror}")) from e
    overrides: dict[str, object] = {"sandbox": sandbox}
    if device:
        overrides["device"] = device
    if data_dir:
        overrides["data_dir"] = data_dir
    settings = Settings(**overrides)  # type: ignore[arg-type]
    try:
        dataset = dataset_argument(dataset, image_size=image_size)
        box = get_sandbox(
            settings.sandbox,
            image=settings.sandbox_image,
            bwrap=settings.bwrap,
            warm=settings.warm_sandbox,
        )
        runtime = ToolRuntime(box, settings)
        with err.status(f"preparing {dataset} ..."):
            data = runtime.prepare(dataset, max_train=max_train)
        runtime.expect_data(data)
        report = _evaluate(
            runtime, code, dataset, data.meta, epochs, budget, max_train, seed, show=not as_json
        )
    except InputError as e:  # an unknown dataset, data that cannot be used, no sandbox here
        raise _fail(e) from e
    except SandboxError as e:
        err.print(f"[bold red]sandbox error:[/] {e}", highlight=False)
        raise typer.Exit(1) from e
    if as_json:
        out.print_json(json.dumps(report))
    failed = next((v for v in report.values() if not v.get("ok")), None)
    if failed is not None:
        error = failed.get("error") or {}
        line = f" (line {error.get('line')})" if error.get("line") else ""
        err.print(
            f"[bold red]candidate failed:[/] {error.get('type')}{line}: {error.get('message')}"
        )
        raise typer.Exit(1)


def _evaluate(
    runtime: Any,
    code: str,
    dataset: str,
    meta: dict[str, Any],
    epochs: int,
    budget: float | None,
    max_train: int | None,
    seed: int,
    *,
    show: bool,
) -> dict[str, dict[str, Any]]:
    """check_shapes, count_params, train_model, measure_energy; stop at the first failure."""
    from archsmith.tools.check_shapes import check_shapes
    from archsmith.tools.count_params import count_params
    from archsmith.tools.measure_energy import measure_energy, timed_is_scored
    from archsmith.tools.schemas import (
        CandidateInput,
        CheckShapesInput,
        MeasureEnergyInput,
        TrainModelInput,
    )
    from archsmith.tools.train_model import train_model

    base = {
        "code": code,
        "input_shape": list(meta["input_shape"]),
        "num_classes": int(meta["num_classes"]),
        "task": meta["task"],
        "vocab_size": meta.get("vocab_size"),
    }
    report: dict[str, dict[str, Any]] = {}
    with err.status("check_shapes ..."):
        shapes = check_shapes(runtime, CheckShapesInput(**base))
    report["check_shapes"] = shapes.model_dump(mode="json")
    if not shapes.ok:
        return report
    with err.status("count_params ..."):
        params = count_params(runtime, CandidateInput(**base))
    report["count_params"] = params.model_dump(mode="json")
    if not params.ok:
        return report
    err.print(
        f"model: {params.params:,} parameters, {params.size_mb:.3f} MB,"
        f" {params.flops_per_sample:,} FLOPs per sample"
    )
    with err.status(f"train_model: {epochs} epochs on {dataset} ({runtime.device}) ..."):
        trained = train_model(
            runtime,
            TrainModelInput(
                **base,
                dataset=dataset,
                epochs=epochs,
                time_budget_s=budget,
                max_train=max_train,
                seed=seed,
            ),
        )
    report["train_model"] = trained.model_dump(mode="json")
    if not trained.ok:
        return report
    for h in trained.history:
        loss = "nan" if h.train_loss is None else f"{h.train_loss:.4f}"
        err.print(
            f"  epoch {h.epoch}: on its training batches loss {loss}, acc {h.train_accuracy:.4f}"
            f" ({h.seconds:.1f} s; the candidate's own account)"
        )
    if trained.model_dir is None:
        return report
    with err.status("measure_energy ..."):
        shape_args = {k: v for k, v in base.items() if k != "code"}
        measured = measure_energy(
            runtime,
            MeasureEnergyInput(**shape_args, dataset=dataset, model_dir=trained.model_dir),
        )
    measured = timed_is_scored(measured, trained.val_accuracy, trained.val_samples)
    report["measure_energy"] = measured.model_dump(mode="json")
    if not show:
        return report
    table = Table(title=f"{dataset}: measured in the {runtime.sandbox.name} sandbox")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("source")
    table.add_row("train accuracy (T_Acc)", f"{trained.train_accuracy:.4f}", "eval mode")
    table.add_row("validation accuracy (V_Acc)", f"{trained.val_accuracy:.4f}", "")
    table.add_row(
        "training energy (T_E)",
        f"{trained.train_energy_kwh_pue:.3g} kWh-PUE",
        str(trained.train_energy_source),
    )
    if measured.ok:
        table.add_row("throughput", f"{measured.fps:,.0f} FPS", f"batch {256}")
        table.add_row("latency, batch 1", f"{measured.latency_ms:.3f} ms", "median")
        table.add_row(
            "validation energy (V_E)",
            f"{measured.val_energy_kwh_pue:.3g} kWh-PUE",
            str(measured.val_energy_source),
        )
        table.add_row(
            "energy per image",
            f"{measured.energy_per_image_j:.3g} J",
            str(measured.val_energy_source),
        )
    out.print(table)
    out.print(f"trained model (program): {trained.model_dir}", soft_wrap=True)
    return report


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
    from archsmith.agents.llm import default_llm, parse_llm

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
    from archsmith.agents.llm import LLMUnavailableError, make_llm
    from archsmith.agents.planner import plan
    from archsmith.config import Settings

    try:
        value = _llm_value(llm)
        timeout_s = _seconds(llm_timeout) or Settings().llm_timeout_s
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


def _render_plan(spec: dict[str, Any], assumptions: list[str], source: str) -> None:
    """The spec, every assumption, and the targets that cannot be met together (before any work)."""
    from archsmith.agents.planner import plan_warnings
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
    iterations: Annotated[int, typer.Option("--iterations", "-n", min=1)] = 10,
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
    sandbox: Annotated[str, typer.Option("--sandbox", help=SANDBOX_HELP)] = "local",
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
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Candidates proposed and evaluated at once, each job a Ray task (a local Ray"
            " cluster unless --ray-address); 1: one at a time, no Ray.",
        ),
    ] = 1,
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
        float,
        typer.Option(
            "--early-stop-margin",
            min=0.0,
            max=1.0,
            help="Accuracy a stopped candidate is allowed to have gained beyond the best's"
            " gain (fraction).",
        ),
    ] = 0.02,
) -> None:
    """Discover a model for a request in plain words (the LEMONADE loop)."""
    from archsmith.agents.llm import (
        LLMUnavailableError,
        check_llm,
        describe_llm,
        make_llm,
        span,
    )
    from archsmith.agents.planner import plan
    from archsmith.agents.session import auto_epochs, new_meta, parse_duration, start_run
    from archsmith.config import Settings
    from archsmith.data import prepare_dataset
    from archsmith.data.prepared_format import read_meta
    from archsmith.sandbox import get_sandbox

    check_sandbox(sandbox)
    try:
        if ray_address:
            from archsmith.sandbox.ray_pool import check_address

            check_address(ray_address)
        value = _llm_value(llm)
        budget_s = parse_duration(budget) if budget else None
        defaults = Settings()
        timeout_s = _seconds(llm_timeout) or defaults.llm_timeout_s
        window_s = _seconds(llm_outage_window) or defaults.llm_outage_window_s
        chat = make_llm(value, base_url=base_url, timeout_s=timeout_s)
        # Before any work: code written by an LLM needs a sandbox that can start here.
        get_sandbox(
            sandbox,  # type: ignore[arg-type]
            trusted_code=chat is None,
            bwrap=Settings().bwrap,
        )
        if chat is not None:
            with err.status(f"checking {value} ..."):
                check_llm(chat)
        planned = plan(request, chat, dataset=dataset, image_size=image_size)
        overrides: dict[str, Any] = {"sandbox": sandbox}
        if device:
            overrides["device"] = device
        if data_dir:
            overrides["data_dir"] = data_dir
        settings = Settings(**overrides)
        spec = planned.spec
        # Fail now, not after the first candidate, when the data is not there.
        with err.status(f"preparing {spec.dataset} ..."):
            prepared = prepare_dataset(
                spec.dataset, settings.data_dir, settings.cache_dir,
                max_train=max_train, max_val=max_val,
            )  # fmt: skip
        train_samples = int(read_meta(prepared)["counts"]["train"])
        if max_train is not None:
            train_samples = min(train_samples, max_train)
    except InputError as e:
        raise _fail(e) from e
    except LLMUnavailableError as e:
        err.print(f"[bold red]LLM unavailable:[/] {e}", highlight=False)
        raise typer.Exit(1) from e
    chosen_epochs = epochs if epochs is not None else auto_epochs(train_samples)
    meta = new_meta(
        request, value, base_url=base_url, sandbox=sandbox,
        device=settings.resolve_device(), data_dir=settings.data_dir, epochs=chosen_epochs,
        iterations=iterations, budget_s=budget_s, patience=patience, max_train=max_train,
        max_val=max_val, llm_timeout_s=timeout_s, llm_outage_window_s=window_s,
        workers=workers, ray_address=ray_address, gpus_per_candidate=gpus_per_candidate,
        early_stop=early_stop, early_stop_margin=early_stop_margin,
    )  # fmt: skip
    out.print(f"run [bold]{meta.run_id}[/]: {request}", highlight=False)
    out.print(
        f"architect: {describe_llm(value, base_url=base_url)}; sandbox: {sandbox};"
        f" device: {meta.device}; {meta.epochs} epochs per candidate"
        + ("" if epochs is not None else f" (auto: {train_samples:,} training samples)")
        + f"; up to {iterations} iterations"
        + (f" or {budget_s:g} s" if budget_s else "")
        + (
            f"; {workers} at a time on Ray ({ray_address or 'local cluster'})"
            if workers > 1 or ray_address
            else ""
        )
        + (f"; early stopping (margin {early_stop_margin:g})" if early_stop else "")
        + (
            f"; LLM timeout {span(timeout_s)}, outage window {span(window_s)}"
            if chat is not None
            else ""
        )
    )
    _render_plan(planned.spec.model_dump(mode="json"), planned.assumptions, planned.source)
    _execute(
        lambda: start_run(
            meta,
            settings,
            planned.spec.model_dump(mode="json"),
            planned.assumptions,
            planned.source,
            out,
            checkpoint_url=checkpoint_url,
            llm=chat,
            planner_calls=[
                {**c.model_dump(mode="json"), "iteration": 0, "role": "planner"}
                for c in planned.llm_calls
            ],
        ),
        meta.run_id,
        settings,
    )


def _execute(start: Any, run_id: str, settings: Any) -> None:
    from archsmith.agents.llm import LLMUnavailableError
    from archsmith.agents.runs import run_dir
    from archsmith.sandbox import SandboxError

    try:
        state = start()
    except KeyboardInterrupt:
        err.print(f"\ninterrupted; resume with: archsmith resume {run_id}")
        raise typer.Exit(130) from None
    except InputError as e:
        raise _fail(e) from e
    except SandboxError as e:
        err.print(f"[bold red]sandbox error:[/] {e}", highlight=False)
        raise typer.Exit(1) from e
    except LLMUnavailableError as e:
        err.print(f"[bold red]LLM unavailable:[/] {e}", highlight=False)
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
    run_id: Annotated[str, typer.Argument(help="The run to continue.")],
    checkpoint_url: Annotated[str | None, typer.Option("--checkpoint-url")] = None,
    llm_timeout: LLMTimeoutOption = None,
    llm_outage_window: LLMOutageWindowOption = None,
) -> None:
    """Continue a run stopped by Ctrl-C, a crash, kill -9 or an LLM outage, where it stopped.

    ``--llm-timeout`` and ``--llm-outage-window`` replace what the run was started with.
    """
    from archsmith.agents.session import resume_run
    from archsmith.config import Settings

    settings = Settings()
    try:
        timeout_s, window_s = _seconds(llm_timeout), _seconds(llm_outage_window)
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
