"""The ``archsmith`` command.

Exit codes: 0 success, 2 bad input (a file that is missing, not JSON, or invalid; the message says
which field and what range), 1 an unexpected failure (a bug: the traceback is kept).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from archsmith import __version__
from archsmith.errors import InputError, load_json_model
from archsmith.spec import load_spec
from archsmith.tools.rulebook import Rulebook, load_rulebook
from archsmith.tools.rulebook_advice import advise
from archsmith.tools.schemas import EvaluationMetrics, RulebookAdviceOutput

__all__ = ["app", "main"]

EXIT_BAD_INPUT = 2

log = logging.getLogger("archsmith")
app = typer.Typer(
    name="archsmith",
    help="Discover neural network architectures under edge constraints (LEMONADE).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)


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


def _fail(e: InputError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {e}", markup=True, highlight=False)
    return typer.Exit(EXIT_BAD_INPUT)


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
        f"[bold]Combined metric CM = {result.combined_metric:.4f}[/]"
        f"  (W_A={w_a:g}, W_F={w_f:g}, W_E={w_e:g}; NF={result.normalized_fps:.4g},"
        f" T_NE={result.normalized_train_energy:.4g}, V_NE={result.normalized_val_energy:.4g})"
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
    rules.add_column("when")
    rules.add_column("raises")
    rules.add_column("weight")
    for r in book.rules:
        when = " and ".join(
            f"{c.metric} {c.op} {c.threshold}" if c.threshold is not None else f"{c.metric} {c.op}"
            for c in r.when
        )
        rules.add_row(r.id, when, " ".join(r.instructions), str(r.weight))
    out.print(rules)


def main() -> None:
    """Entry point of the console script."""
    app()
