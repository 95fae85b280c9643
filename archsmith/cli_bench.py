"""``archsmith bench``: compare search strategies on tabular NAS benchmarks, over many seeds.

Everything is checked before the first search (names, tables, the device, the LLM), so bad input
exits with code 2 in a second and writes nothing; results are written only once the grid is done.
"""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from archsmith.cli_common import err, out
from archsmith.cli_common import fail as _fail
from archsmith.errors import InputError, format_validation_error

__all__ = ["register"]

log = logging.getLogger(__name__)


def _seeds(text: str) -> int | list[int]:
    """``20`` (seeds 0-19) or ``0,5,7``."""
    try:
        if "," not in text:
            return int(text)
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as e:
        raise InputError(
            f"--seeds must be a count (20) or a comma-separated list (0,5,7), not {text!r}"
        ) from e


def _datasets(values: list[str] | None) -> dict[str, list[str]]:
    """``NAME[,NAME...]`` for every built-in benchmark, or ``BENCHMARK=NAME[,NAME...]`` for one;
    repeating a benchmark adds datasets."""
    from archsmith.bench.config import BENCHMARKS

    out: dict[str, list[str]] = {}
    for v in values or ():
        bench, sep, names = v.rpartition("=") if "=" in v else ("", "", v)
        datasets = [n.strip() for n in names.split(",") if n.strip()]
        if not datasets or (sep and not bench.strip()):
            raise InputError(f"--dataset must be NAME[,NAME] or BENCHMARK=NAME[,NAME], not {v!r}")
        for key in [bench.strip()] if sep else BENCHMARKS:
            out[key] = list(dict.fromkeys([*out.get(key, []), *datasets]))
    return out


def _llm(value: str | None) -> str | None:
    """The LLM the llm strategy uses, decided as ``archsmith run`` decides: by key unless named."""
    from archsmith.llm.providers import default_llm, parse_llm

    chosen = value or default_llm()
    provider, _ = parse_llm(chosen)
    return None if provider == "offline" else chosen


def _check_output(path: Path) -> None:
    """Refuse an output place that cannot be written before the grid runs, not after."""
    if path.exists() and not path.is_dir():
        raise InputError(f"output {path} exists and is not a directory; choose another with -o")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"cannot write under {existing}; choose a writable place with -o")


def _check_summary(page: Path) -> None:
    """Refuse a summary page that cannot be written, before the grid runs."""
    if page.exists() and not page.is_file():
        raise InputError(f"--summary {page} exists and is not a file")
    _check_output(page.parent)


class _Bar:
    """A progress bar over searches, started at the first report so errors print without it."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.progress is None:
            self.progress = Progress(
                TextColumn("searches"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=err,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("searches", total=total)
        self.progress.update(self.task, completed=done, total=total)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def bench_cmd(
    benchmark: Annotated[
        list[str] | None,
        typer.Option("--benchmark", "-b", help="macro or nb201; repeat for both (default: all)."),
    ] = None,
    objective: Annotated[
        list[str] | None,
        typer.Option(
            "--objective", "-O", help="accuracy, m-factor or latency; repeatable (default: all)."
        ),
    ] = None,
    strategy: Annotated[
        list[str] | None,
        typer.Option(
            "--strategy",
            "-s",
            help="rulebook, llm, random, evolution, tpe or rl; repeatable (default: all"
            " available; llm only with an LLM).",
        ),
    ] = None,
    seeds: Annotated[
        str, typer.Option("--seeds", help="Seeds per search: a count (0..N-1) or a list 0,5,7.")
    ] = "20",
    budget: Annotated[int, typer.Option("--budget", help="Table lookups per search.")] = 10,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset",
            help="NAME[,NAME] for every benchmark or BENCHMARK=NAME[,NAME] (default: every"
            " dataset of each benchmark).",
        ),
    ] = None,
    space: Annotated[
        list[Path] | None,
        typer.Option(
            "--space",
            help="A space file of your own tabular benchmark (docs/benchmarks.md); repeatable."
            " Without -b only these run.",
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="Device of the latency objective (default: pi4 on NB201,"
            " a space file's first device).",
        ),
    ] = None,
    max_latency_ms: Annotated[
        float | None,
        typer.Option("--max-latency-ms", help="The latency limit (default: the median)."),
    ] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="M-factor size penalty exponent.")] = 1.0,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", help="Worker processes (default: CPU count).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where the benchmark tables are.")
    ] = None,
    llm: Annotated[
        str | None,
        typer.Option("--llm", help="openai:MODEL or gemini:MODEL for the llm strategy (by key)."),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="An OpenAI-compatible server's URL.")
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where results are written.")
    ] = Path("bench-results"),
    summary: Annotated[
        Path | None,
        typer.Option(
            "--summary",
            help="Also write a one-page summary here (e.g. docs/benchmarks.md), keeping what is"
            " written by hand below its marker line.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print results.json to stdout instead of the table.")
    ] = False,
) -> None:
    """Compare search strategies on NAS-Bench-Macro, NAS-Bench-201 or your own table, over seeds."""
    from archsmith.bench.config import BenchConfig
    from archsmith.bench.output import (
        heading,
        render_tables,
        skipped_lines,
        write_outputs,
        write_summary,
    )
    from archsmith.bench.runner import run_bench
    from archsmith.llm.failures import LLMUnavailableError

    try:
        fields: dict[str, Any] = {
            "benchmarks": benchmark or None,
            "objectives": objective or None,
            "strategies": strategy or None,
            "seeds": _seeds(seeds),
            "budget": budget,
            "datasets": _datasets(dataset),
            "spaces": list(space or []),
            "device": device,
            "max_latency_ms": max_latency_ms,
            "alpha": alpha,
            "data_dir": data_dir,
            "llm": _llm(llm),
            "base_url": base_url,
        }
        if jobs is not None:
            fields["jobs"] = jobs
        try:
            config = BenchConfig(**fields)
        except ValidationError as e:
            raise InputError(
                "invalid benchmark options:\n" + format_validation_error(e, BenchConfig)
            ) from e
        _check_output(output)
        if summary is not None:
            _check_summary(summary)
    except InputError as e:
        raise _fail(e) from e

    bar = _Bar()
    try:
        result = run_bench(config, bar)
    except InputError as e:
        raise _fail(e) from e
    except LLMUnavailableError as e:
        err.print(f"[bold red]LLM unavailable:[/] {e}", highlight=False)
        raise typer.Exit(1) from e
    except KeyboardInterrupt:
        err.print("\ninterrupted; nothing written")
        raise typer.Exit(130) from None
    finally:
        bar.stop()

    try:
        paths = write_outputs(result, output)
        if summary is not None:
            shown = f"{result.command} -o {shlex.quote(str(output))}"
            paths.append(write_summary(result, summary, output, shown))
    except InputError as e:
        raise _fail(e) from e
    if as_json:
        typer.echo(result.model_dump_json(indent=2))  # plain: rich is slow on a megabyte
        for line in skipped_lines(result):
            err.print(line, highlight=False)
        err.print(f"wrote {', '.join(str(p) for p in paths)}", soft_wrap=True, highlight=False)
        return
    out.print(heading(result), highlight=False)
    for table in render_tables(result):
        out.print(table)
    for line in skipped_lines(result):
        out.print(line, highlight=False)
    out.print(f"{len(result.searches)} searches in {result.seconds:.1f} s; wrote:", highlight=False)
    for p in paths:
        out.print(f"  {p}", soft_wrap=True, highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``archsmith bench`` to the application."""
    app.command("bench")(bench_cmd)
