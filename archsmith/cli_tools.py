"""The commands that use one tool on the user's files: ``advise``, ``rules``, ``datasets`` and
``evaluate`` (one model file through the candidate pipeline the agent runs)."""

from __future__ import annotations

import json
import logging
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from archsmith.cli_common import (
    OWN_DATA,
    SANDBOX_HELP,
    ImageSizeOption,
    TargetOption,
    check_sandbox,
    err,
    out,
)
from archsmith.cli_common import fail as _fail
from archsmith.config import DEFAULT_EPOCHS
from archsmith.errors import InputError, load_json_model
from archsmith.metrics import figure
from archsmith.spec import TaskSpec, load_spec
from archsmith.tools.rulebook import Rulebook, load_rulebook
from archsmith.tools.rulebook_advice import advise
from archsmith.tools.schemas import EvaluationMetrics, RulebookAdviceOutput

if TYPE_CHECKING:
    from archsmith.agents.state import AgentContext, Candidate

__all__ = ["register"]

log = logging.getLogger("archsmith")


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


def datasets_cmd(
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Where dataset files are (else $ARCHSMITH_DATA_DIR)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the datasets archsmith knows, whether each is available here, and its splits."""
    from archsmith.data.loaders import locate_dataset
    from archsmith.data.registry import REGISTRY, DatasetUnavailableError

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


def evaluate_cmd(
    model_file: Annotated[
        Path, typer.Argument(help="A Python file defining build_model(input_shape, num_classes).")
    ],
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help=f"Dataset name or alias, or {OWN_DATA}.")
    ] = "digits",
    image_size: ImageSizeOption = None,
    epochs: Annotated[
        int, typer.Option("--epochs", min=1, help="Training epochs.")
    ] = DEFAULT_EPOCHS,
    budget: Annotated[
        float | None,
        typer.Option("--budget", min=1, help="Time limit for checking and training (seconds)."),
    ] = None,
    sandbox: Annotated[str | None, typer.Option("--sandbox", help=SANDBOX_HELP)] = None,
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
    target: TargetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every tool's output as JSON.")] = (
        False
    ),
) -> None:
    """Measure one model file the way the agent measures candidates, in the sandbox."""
    from archsmith.agents.state import AgentContext
    from archsmith.config import RunSettings, Settings
    from archsmith.data.user import dataset_argument
    from archsmith.sandbox import SandboxError, get_sandbox, release
    from archsmith.tools.runtime import ToolRuntime

    if sandbox is not None:
        check_sandbox(sandbox)
    try:
        code = model_file.read_text(encoding="utf-8")
    except OSError as e:
        raise _fail(InputError(f"cannot read model file {model_file}: {e.strerror}")) from e
    settings = Settings()
    try:
        run = RunSettings.from_env(
            sandbox=sandbox, device=device, data_dir=str(data_dir) if data_dir else None,
            epochs=epochs, budget_s=budget, max_train=max_train, target=target,
        )  # fmt: skip
        dataset = dataset_argument(dataset, image_size=image_size)
        with ExitStack() as ends:
            box = get_sandbox(
                run.sandbox,
                image=settings.sandbox_image,
                bwrap=settings.bwrap,
                warm=settings.warm_sandbox,
            )
            ends.callback(release, box)  # its warm sandboxes
            runtime = ToolRuntime(box, settings, device=run.device, data_dir=run.data_dir)
            ends.callback(runtime.release)  # the program it validated, as a run's end does
            with err.status(f"preparing {dataset} ..."):
                data = runtime.prepare(dataset, max_train=run.max_train)
            spec = TaskSpec(
                dataset=dataset,
                task=data.meta["task"],
                input_shape=tuple(int(d) for d in data.meta["input_shape"]),
                num_classes=int(data.meta["num_classes"]),
            )
            context = AgentContext(tools=runtime, settings=run)
            report = _evaluate(context, spec, code, seed, show=not as_json)
    except InputError as e:  # an unknown dataset, data that cannot be used, no sandbox here
        raise _fail(e) from e
    except SandboxError as e:
        err.print(f"[bold red]sandbox error:[/] {e}", highlight=False)
        raise typer.Exit(1) from e
    failed = next((v for v in report.values() if not v.get("ok")), None)
    target_figures = (report.get("measure_energy") or {}).get("target")
    if as_json:
        # The target's figures also at the top: `--json | jq .target` is how a user reads them.
        out.print_json(
            json.dumps({**report, "target": target_figures} if target_figures else report)
        )
    if failed is not None:
        error = failed.get("error") or {}
        line = f" (line {error.get('line')})" if error.get("line") else ""
        err.print(
            f"[bold red]candidate failed:[/] {error.get('type')}{line}: {error.get('message')}"
        )
        raise typer.Exit(1)


def _evaluate(
    context: AgentContext, spec: TaskSpec, code: str, seed: int, *, show: bool
) -> dict[str, dict[str, Any]]:
    """The candidate pipeline on the file: check_shapes, count_params, train_model,
    measure_energy, stopping at the first failure; each tool's output, by tool name."""
    from archsmith.agents.pipeline import PipelineInput, pipeline

    candidate: Candidate = {"code": code, "summary": "", "arch": None, "applied": []}
    state: PipelineInput = {
        "spec": spec.model_dump(mode="json"),
        # The pipeline seeds training with the iteration number.
        "iteration": seed,
        "iteration_started": time.time(),
        "candidate": candidate,
        "fix_attempts": 0,
        # No architect to repair it: the file is measured as it is, up to its first failure.
        "max_fix_attempts": 0,
        "fixes": [],
        "budget_s": context.settings.budget_s,
        "elapsed_s": 0.0,
    }
    report: dict[str, dict[str, Any]] = {}
    with err.status("check_shapes, count_params ...") as status:
        for chunk in pipeline.stream(state, context=context, stream_mode="updates"):
            for update in chunk.values():
                report.update(update.get("reports") or {})
                if update.get("validation") and "train_model" not in report:
                    _show_size(report["count_params"])
                    status.update(
                        f"train_model, measure_energy: {context.epochs} epochs on {spec.dataset}"
                        f" ({context.tools.device}) ..."
                    )
    train = report.get("train_model")
    if train is None or not train.get("ok"):
        return report
    for h in train["history"]:
        loss = "nan" if h["train_loss"] is None else f"{h['train_loss']:.4f}"
        err.print(
            f"  epoch {h['epoch']}: on its training batches loss {loss},"
            f" acc {h['train_accuracy']:.4f} ({h['seconds']:.1f} s; the candidate's own account)"
        )
    if show and "measure_energy" in report:
        _show_figures(spec.dataset, context.tools.sandbox.name, train, report["measure_energy"])
        if report["measure_energy"].get("target"):
            show_target(report["measure_energy"]["target"])
    return report


def show_target(figures: dict[str, Any]) -> None:
    """The figures measured on a deployment target, and where they were measured."""
    table = Table(title=f"on target {figures['target']} ({figures['measured_by']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("how")
    table.add_row(
        "throughput",
        f"{figures['fps']:,.0f} FPS",
        f"batch {figures['batch']}, {figures['threads']} thread(s)",
    )
    table.add_row(
        "latency, batch 1",
        f"{figures['latency_ms']:.3f} ms",
        f"p50 of {figures.get('latency_repeats')}; p90 {figures['latency_p90_ms']:.3f} ms",
    )
    table.add_row("model file", f"{figures['size_mb']:.3f} MB", str(figures["precision"]))
    if figures.get("peak_memory_mb") is not None:
        table.add_row("peak memory", f"{figures['peak_memory_mb']:,.0f} MiB", "measuring process")
    table.add_row("validation accuracy", f"{figures['val_accuracy']:.4f}", figures["runtime"])
    out.print(table)
    out.print(
        f"measured with {figures['runtime']} {figures.get('runtime_version')} on"
        f" {figures['machine']}",
        highlight=False,
    )


def device_agent_cmd(
    write: Annotated[
        Path, typer.Option("--write", "-o", help="Where to write the agent's single file.")
    ] = Path("archsmith_device_agent.py"),
) -> None:
    """Write the measuring agent to copy to a deployment device (it needs Python 3.9+, numpy and
    the runtime there; `python3 FILE --help` says how to start it with a token)."""
    from archsmith.device_agent import agent_source

    if write.exists():
        raise _fail(InputError(f"{write} exists; remove it or choose another --write path"))
    write.write_text(agent_source(), encoding="utf-8")
    out.print(f"wrote {write}; on the device: python3 {write.name} --port 8765 --token-file TOKEN")
    out.print(
        "then here: --target onnxruntime:device=http://DEVICE:8765 with ARCHSMITH_DEVICE_TOKEN set"
    )


def targets_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List the deployment targets, which are installed here, and what each needs."""
    from archsmith.targets import RUNTIMES, installed_version

    rows: list[dict[str, Any]] = [
        {
            "runtime": info.name,
            "installed": installed_version(info),
            "precisions": list(info.precisions),
            "artifact": info.artifact,
            "needs": info.needs,
        }
        for info in RUNTIMES.values()
    ]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="deployment targets (--target RUNTIME[:threads=N,batch=N,precision=P])")
    for column in ("runtime", "installed here", "precisions", "model file", "needs"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["runtime"]),
            str(row["installed"] or "no"),
            ", ".join(row["precisions"]),
            str(row["artifact"]),
            escape(str(row["needs"])),
        )
    out.print(table)


def _show_size(params: dict[str, Any]) -> None:
    err.print(
        f"model: {params['params']:,} parameters, {params['size_mb']:.3f} MB,"
        f" {params['flops_per_sample']:,} FLOPs per sample"
    )


def _show_figures(
    dataset: str, sandbox: str, trained: dict[str, Any], measured: dict[str, Any]
) -> None:
    """The evaluated file's figures, and where its trained program is."""
    table = Table(title=f"{dataset}: measured in the {sandbox} sandbox")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("source")
    table.add_row("train accuracy (T_Acc)", f"{trained['train_accuracy']:.4f}", "eval mode")
    table.add_row("validation accuracy (V_Acc)", f"{trained['val_accuracy']:.4f}", "")
    table.add_row(
        "training energy (T_E)",
        f"{trained['train_energy_kwh_pue']:.3g} kWh-PUE",
        str(trained["train_energy_source"]),
    )
    if measured["ok"]:
        table.add_row("throughput", f"{measured['fps']:,.0f} FPS", f"batch {256}")
        table.add_row("latency, batch 1", f"{measured['latency_ms']:.3f} ms", "median")
        table.add_row(
            "validation energy (V_E)",
            f"{measured['val_energy_kwh_pue']:.3g} kWh-PUE",
            str(measured["val_energy_source"]),
        )
        table.add_row(
            "energy per image",
            f"{measured['energy_per_image_j']:.3g} J",
            str(measured["val_energy_source"]),
        )
    out.print(table)
    out.print(f"trained model (program): {trained['model_dir']}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the one-tool commands to the ``archsmith`` command."""
    app.command("advise")(advise_cmd)
    app.command("rules")(rules_cmd)
    app.command("datasets")(datasets_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("targets")(targets_cmd)
    app.command("device-agent")(device_agent_cmd)
