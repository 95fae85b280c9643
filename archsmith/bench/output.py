"""What a benchmark run leaves behind: a terminal table, ``results.json``, ``results.md``, plots,
and optionally a one-page summary (``docs/benchmarks.md``) whose hand-written tail is kept.

``results.json`` holds everything (configuration, every search, the aggregates) so any other
table can be derived later without rerunning; it carries a ``format`` number so readers can tell
when its meaning changes (``archsmith.bench.results.FORMAT``). The markdown repeats the command
that produced it, because a table without its command cannot be reproduced or trusted. The plots
are standalone SVG files (styles inside, nothing fetched), so they open anywhere and can be linked
from the markdown.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from rich.table import Table

from archsmith.bench.results import Aggregate, BenchResult
from archsmith.files import atomic_write_text
from archsmith.report.svg import AxisSpec, build_axis

__all__ = [
    "KEEP_MARKER",
    "best_so_far_svg",
    "cells",
    "heading",
    "markdown",
    "plot_name",
    "render_tables",
    "skipped_lines",
    "summary_markdown",
    "write_outputs",
    "write_summary",
]

log = logging.getLogger(__name__)

_Scale = Callable[[float], float]

QUARTILES_NOTE = (
    "Median and interquartile range (25th-75th percentile, numpy's default linear"
    " interpolation) over seeds; the mean is given too, as published results quote means."
)

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")


# -- formatting ----------------------------------------------------------------------------------


def _num(v: float) -> str:
    """A rank statistic: an integer as such, a quartile between two ranks with its fraction."""
    return f"{v:,.2f}".rstrip("0").rstrip(".")


def _rank_cell(a: Aggregate) -> str:
    return f"{_num(a.best_rank_median)} [{_num(a.best_rank_q25)}-{_num(a.best_rank_q75)}]"


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def _m_factor(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _feasible(a: Aggregate) -> str:
    return f"{round(a.feasible_fraction * a.seeds)}/{a.seeds}"


def cells(result: BenchResult) -> list[tuple[str, str, str, list[Aggregate]]]:
    """(benchmark, dataset, objective, its aggregates) in the grid's order."""
    out: dict[tuple[str, str, str], list[Aggregate]] = {}
    for a in result.aggregates:
        out.setdefault((a.benchmark, a.dataset, a.objective), []).append(a)
    return [(b, d, o, group) for (b, d, o), group in out.items()]


def _winners(group: Sequence[Aggregate]) -> set[str]:
    """The strategies with the best (lowest) median rank, the mean breaking ties."""
    best = min((a.best_rank_median, a.best_rank_mean) for a in group)
    return {a.strategy for a in group if (a.best_rank_median, a.best_rank_mean) == best}


def _space(result: BenchResult, benchmark: str) -> str:
    return next((b.space for b in result.benchmarks if b.benchmark == benchmark), benchmark)


def skipped_lines(result: BenchResult) -> list[str]:
    """One sentence per part of the grid that did not run."""
    lines: list[str] = []
    for s in result.skipped:
        where = f" on {s.benchmark}" if s.benchmark else ""
        where += f" {s.dataset}" if s.dataset else ""
        lines.append(f"{s.kind} {s.name}{where} not run: {s.reason}")
    return lines


# -- terminal ------------------------------------------------------------------------------------


def heading(result: BenchResult) -> str:
    """What every table's numbers are: one line above the tables."""
    seeds = len(result.config.seed_list)
    return (
        f"Best rank after {result.config.budget} evaluations over {seeds} seeds: median"
        " [25th-75th percentile] and mean; 1 = the best architecture of the space. Accuracy and"
        " M-factor: medians of the best found; feasible: seeds whose best meets the constraint."
    )


def render_tables(result: BenchResult) -> list[Table]:
    """One small table per (benchmark, objective), so it stays readable in 80 columns; the
    lowest median rank in bold."""
    tables: list[Table] = []
    for benchmark, _, _, group in cells(result):
        first = group[0]
        table = Table(
            title=(
                f"{_space(result, benchmark)}, {first.dataset}, {first.objective_label}"
                f" ({first.space_size:,} architectures)"
            ),
            title_justify="left",
        )
        table.add_column("strategy", no_wrap=True)
        table.add_column("best rank", justify="right", overflow="fold")
        for col in ("mean", "acc.", "M-factor", "feasible"):
            table.add_column(col, justify="right", no_wrap=True)
        winners = _winners(group)
        for a in group:
            table.add_row(
                a.strategy,
                _rank_cell(a),
                _num(a.best_rank_mean),
                _pct(a.best_accuracy_median),
                _m_factor(a.m_factor_median),
                _feasible(a),
                style="bold" if a.strategy in winners and len(group) > 1 else None,
            )
        tables.append(table)
    return tables


# -- markdown ------------------------------------------------------------------------------------


def plot_name(benchmark: str, dataset: str, objective: str) -> str:
    """The file name of one (benchmark, dataset, objective)'s best-so-far plot."""
    return f"best_so_far_{benchmark}_{dataset}_{objective}.svg"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(result: BenchResult) -> str:
    """Markdown tables per (benchmark, objective), with the command that produced them."""
    config = result.config
    lines = [
        "# archsmith bench results",
        "",
        "Produced by:",
        "",
        "```sh",
        result.command,
        "```",
        "",
        f"Each search had a budget of {config.budget} table lookups; every strategy ran with"
        f" seeds {_seed_text(config.seed_list)}. A rank counts over the whole space: 1 is the best"
        f" architecture there is under the objective. {QUARTILES_NOTE} Accuracy and M-factor are"
        " the medians over seeds of the best architecture's; *meets constraint* counts the seeds"
        " whose best architecture satisfies the objective's constraint. Bold: the lowest median"
        " rank (mean breaking ties).",
        "",
        f"archsmith {result.archsmith_version}; {len(result.searches)} searches in"
        f" {result.seconds:.1f} s.",
    ]
    for benchmark, dataset, objective, group in cells(result):
        first = group[0]
        lines += [
            "",
            f"## {_md(_space(result, benchmark))} on {first.dataset}: {_md(first.objective_label)}",
            "",
            f"{first.space_size:,} architectures.",
            "",
            "| strategy | best rank, median [IQR] | mean rank | best rank, range | accuracy |"
            " M-factor | meets constraint |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        winners = _winners(group)
        for a in group:
            bold = "**" if a.strategy in winners and len(group) > 1 else ""
            lines.append(
                f"| {bold}{_md(a.strategy)}{bold} | {bold}{_rank_cell(a)}{bold} |"
                f" {_num(a.best_rank_mean)} | {_num(a.best_rank_min)}-{_num(a.best_rank_max)} |"
                f" {_pct(a.best_accuracy_median)} | {_m_factor(a.m_factor_median)} |"
                f" {_feasible(a)} |"
            )
        lines += ["", f"![best rank so far]({plot_name(benchmark, dataset, objective)})"]
    notes = skipped_lines(result)
    if notes:
        lines += ["", "## Not run", "", *(f"- {_md(n)}" for n in notes)]
    return "\n".join(lines) + "\n"


def _seed_text(seeds: Sequence[int]) -> str:
    if seeds == list(range(len(seeds))) and len(seeds) > 2:
        return f"0-{len(seeds) - 1}"
    return ", ".join(map(str, seeds))


# -- SVG -----------------------------------------------------------------------------------------

WIDTH = 720
HEIGHT = 440
LEFT = 74
RIGHT = 22
BOTTOM = 54
TITLE_Y = 22
LEGEND_Y = 44
LEGEND_ROW = 18
CHAR_W = 6.6

_STYLE = """
text { font: 12px sans-serif; fill: #222; }
.plot-title { font-size: 14px; font-weight: bold; }
.plot-area { fill: #fff; stroke: #888; }
.grid { stroke: #e4e4e4; }
.tick { font-size: 11px; fill: #555; }
.iqr { stroke: none; fill-opacity: 0.16; }
.median { fill: none; stroke-width: 2; }
.marker { stroke: #fff; stroke-width: 1; }
"""


def _f(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _el(tag: str, attrs: dict[str, object], *children: str) -> str:
    text = "".join(
        f" {k}={quoteattr(_f(v) if isinstance(v, float) else str(v))}" for k, v in attrs.items()
    )
    return f"<{tag}{text}>{''.join(children)}</{tag}>" if children else f"<{tag}{text}/>"


def _legend(names: Sequence[str], colours: dict[str, str]) -> tuple[str, int]:
    """Legend items left to right, wrapping at the plot's width; also how many rows it took."""
    items: list[str] = []
    x, row = float(LEFT), 0
    for name in names:
        w = 30 + len(name) * CHAR_W + 16
        if x > LEFT and x + w > WIDTH - RIGHT:
            x, row = float(LEFT), row + 1
        y = LEGEND_Y + row * LEGEND_ROW
        c = colours[name]
        items.append(
            _el(
                "g",
                {"class": "legend-item", "data-strategy": name},
                _el(
                    "rect",
                    {
                        "x": x,
                        "y": y - 10.0,
                        "width": 24,
                        "height": 12,
                        "fill": c,
                        "fill-opacity": 0.16,
                    },
                ),
                _el(
                    "line",
                    {
                        "x1": x,
                        "y1": y - 4.0,
                        "x2": x + 24,
                        "y2": y - 4.0,
                        "stroke": c,
                        "stroke-width": 2,
                    },
                ),
                _el("text", {"x": x + 30, "y": y}, escape(name)),
            )
        )
        x += w
    return _el("g", {"class": "legend"}, *items), row + 1


def best_so_far_svg(result: BenchResult, benchmark: str, dataset: str, objective: str) -> str:
    """Best rank so far against evaluations: a median line and an IQR band per strategy.

    The y axis is logarithmic because ranks span four orders of magnitude and the interesting
    differences are near rank 1.
    """
    group = next(g for b, d, o, g in cells(result) if (b, d, o) == (benchmark, dataset, objective))
    first = group[0]
    budget = first.budget
    title = f"{_space(result, benchmark)}, {first.dataset}, {first.objective_label}"
    x_label = f"evaluations (median line, 25th-75th percentile band over {first.seeds} seeds)"
    colours = {a.strategy: PALETTE[i % len(PALETTE)] for i, a in enumerate(group)}
    legend, rows = _legend([a.strategy for a in group], colours)
    top = LEGEND_Y + (rows - 1) * LEGEND_ROW + 16
    bottom = HEIGHT - BOTTOM
    values = [v for a in group for v in (*a.curve_q25, *a.curve_q75, *a.curve_median)]
    xa = build_axis([], AxisSpec(x_label, "int"), bounds=(1, budget), integer=True, target_ticks=10)
    ya = build_axis(values, AxisSpec("best rank so far (log scale; 1 = best)", "int", log=True))

    def px(v: float) -> float:
        return LEFT + xa.frac(v) * (WIDTH - LEFT - RIGHT)

    def py(v: float) -> float:
        return bottom - ya.frac(v) * (bottom - top)

    body: list[str] = [
        _el(
            "rect",
            {
                "class": "plot-area",
                "x": LEFT,
                "y": float(top),
                "width": WIDTH - LEFT - RIGHT,
                "height": float(bottom - top),
            },
        ),
    ]
    for t in xa.ticks:
        body.append(
            _el(
                "line",
                {"class": "grid", "x1": px(t), "y1": float(top), "x2": px(t), "y2": float(bottom)},
            )
        )
        body.append(
            _el(
                "text",
                {
                    "class": "tick x-tick",
                    "x": px(t),
                    "y": float(bottom + 16),
                    "text-anchor": "middle",
                },
                escape(xa.tick_label(t)),
            )
        )
    for t in ya.ticks:
        body.append(
            _el(
                "line",
                {
                    "class": "grid",
                    "x1": float(LEFT),
                    "y1": py(t),
                    "x2": float(WIDTH - RIGHT),
                    "y2": py(t),
                },
            )
        )
        body.append(
            _el(
                "text",
                {
                    "class": "tick y-tick",
                    "x": float(LEFT - 6),
                    "y": py(t) + 4,
                    "text-anchor": "end",
                },
                escape(ya.tick_label(t)),
            )
        )
    cy = (top + bottom) / 2
    body.append(
        _el(
            "text",
            {
                "class": "axis-label x-label",
                "x": LEFT + (WIDTH - LEFT - RIGHT) / 2,
                "y": float(HEIGHT - 12),
                "text-anchor": "middle",
            },
            escape(x_label),
        )
    )
    body.append(
        _el(
            "text",
            {
                "class": "axis-label y-label",
                "x": 16.0,
                "y": cy,
                "text-anchor": "middle",
                "transform": f"rotate(-90 16 {_f(cy)})",
            },
            escape(ya.spec.label),
        )
    )
    for a in group:
        body.append(_strategy(a, colours[a.strategy], px, py))
    return (
        _el(
            "svg",
            {
                "xmlns": "http://www.w3.org/2000/svg",
                "class": "plot best-so-far",
                "data-benchmark": benchmark,
                "data-dataset": dataset,
                "data-objective": objective,
                "viewBox": f"0 0 {WIDTH} {HEIGHT}",
                "width": WIDTH,
                "height": HEIGHT,
                "role": "img",
                "aria-label": title,
            },
            _el("title", {}, escape(title)),
            _el("style", {}, _STYLE),
            _el(
                "text",
                {"class": "plot-title", "x": float(LEFT), "y": float(TITLE_Y)},
                escape(title),
            ),
            legend,
            *body,
        )
        + "\n"
    )


def _strategy(a: Aggregate, colour: str, px: _Scale, py: _Scale) -> str:
    """One strategy: its IQR band (a polygon), its median line (the group's only path), markers."""
    xs = range(1, len(a.curve_median) + 1)
    band = [(px(x), py(v)) for x, v in zip(xs, a.curve_q75, strict=True)] + [
        (px(x), py(v)) for x, v in reversed(list(zip(xs, a.curve_q25, strict=True)))
    ]
    line = "M" + " L".join(
        f"{_f(px(x))},{_f(py(v))}" for x, v in zip(xs, a.curve_median, strict=True)
    )
    markers = [
        _el(
            "circle",
            {
                "class": "marker",
                "cx": px(x),
                "cy": py(m),
                "r": 3.0,
                "fill": colour,
                "data-evaluation": x,
            },
            _el(
                "title",
                {},
                escape(
                    f"{a.strategy}, evaluation {x}: median rank {_num(m)}"
                    f" [IQR {_num(lo)}-{_num(hi)}]"
                ),
            ),
        )
        for x, m, lo, hi in zip(xs, a.curve_median, a.curve_q25, a.curve_q75, strict=True)
    ]
    return _el(
        "g",
        {"class": "strategy", "data-strategy": a.strategy},
        _el(
            "polygon",
            {
                "class": "iqr",
                "fill": colour,
                "points": " ".join(f"{_f(x)},{_f(y)}" for x, y in band),
            },
        ),
        _el("path", {"class": "median", "stroke": colour, "d": line}),
        *markers,
    )


# -- files ---------------------------------------------------------------------------------------


def write_outputs(result: BenchResult, out_dir: Path) -> list[Path]:
    """Write the plots, ``results.md`` and, last, ``results.json``, each atomically; the paths."""
    written: list[Path] = []

    def put(name: str, text: str) -> None:
        path = Path(out_dir) / name
        atomic_write_text(path, text)
        written.append(path)
        log.debug("wrote %s", path)

    for benchmark, dataset, objective, _ in cells(result):
        put(
            plot_name(benchmark, dataset, objective),
            best_so_far_svg(result, benchmark, dataset, objective),
        )
    put("results.md", markdown(result))
    put("results.json", result.model_dump_json(indent=2) + "\n")
    return written


# -- the summary page ----------------------------------------------------------------------------

#: Everything after this line in a summary page is kept when the page is written again.
KEEP_MARKER = "<!-- Written by hand below this line; `archsmith bench --summary` keeps it. -->"

_SPACE_TITLES = {"nas-bench-macro": "Macro", "nas-bench-201": "NB201"}


def _cell_title(result: BenchResult, a: Aggregate) -> str:
    space = _space(result, a.benchmark)
    return f"{_SPACE_TITLES.get(space, space)} {a.dataset}, {a.objective_label}"


def _stat_cell(a: Aggregate, bold: bool) -> str:
    b = "**" if bold else ""
    iqr = f"[{_num(a.best_rank_q25)}-{_num(a.best_rank_q75)}]"
    return f"{b}{_num(a.best_rank_median)}{b} {iqr} ({_num(a.best_rank_mean)})"


def summary_markdown(result: BenchResult, plots: str, command: str, kept: str = "") -> str:
    """One page over every cell: best rank median [IQR] (mean) per strategy, the rulebook
    against the best baseline, and the plots (``plots``: their folder, relative to the page);
    ``command`` is the command line shown, ``kept`` the hand-written part after ``KEEP_MARKER``."""
    config = result.config
    strategies = list(result.strategies)
    groups = cells(result)
    lines = [
        "# Search quality on tabular NAS benchmarks",
        "",
        "Every number and plot above the hand-written part of this page comes from one command"
        f" (archsmith {result.archsmith_version}; {len(result.searches):,} searches in"
        f" {result.seconds:.0f} s):",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Each search has {config.budget} table lookups; each strategy ran with seeds"
        f" {_seed_text(config.seed_list)}. The best rank counts over the whole space (1 is the"
        f" best architecture there is under the objective). {QUARTILES_NOTE} Cells: median"
        " [25th-75th percentile] (mean); bold is the lowest median (mean breaking ties).",
        "",
        "## Best rank after the budget",
        "",
        "| benchmark, dataset, objective | size | " + " | ".join(strategies) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in strategies) + " |",
    ]
    for _, _, _, group in groups:
        by = {a.strategy: a for a in group}
        winners = _winners(group)
        row = [_md(_cell_title(result, group[0])), f"{group[0].space_size:,}"]
        row += [
            _stat_cell(by[s], s in winners and len(group) > 1) if s in by else "-"
            for s in strategies
        ]
        lines.append("| " + " | ".join(row) + " |")
    if "rulebook" in strategies:
        lines += [
            "",
            "## The rulebook against the best baseline",
            "",
            "The best baseline is the other strategy with the lowest median in that cell. Ranks:"
            " median (mean); accuracy: the mean over seeds of the best architecture's test"
            " accuracy, as GENIUS and RoBoT report it.",
            "",
            "| benchmark, dataset, objective | rulebook rank | its accuracy | best baseline rank |"
            " its accuracy |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for _, _, _, group in groups:
            rule = next((a for a in group if a.strategy == "rulebook"), None)
            others = [a for a in group if a.strategy != "rulebook"]
            if rule is None or not others:
                continue
            top = min(others, key=lambda a: (a.best_rank_median, a.best_rank_mean))
            lines.append(
                f"| {_md(_cell_title(result, rule))} | {_num(rule.best_rank_median)}"
                f" ({_num(rule.best_rank_mean)}) | {_pct(rule.best_accuracy_mean)} |"
                f" {_md(top.strategy)} {_num(top.best_rank_median)} ({_num(top.best_rank_mean)}) |"
                f" {_pct(top.best_accuracy_mean)} |"
            )
    lines += ["", "## Best rank against evaluations", ""]
    for benchmark, dataset, objective, group in groups:
        name = plot_name(benchmark, dataset, objective)
        lines.append(f"![{_md(_cell_title(result, group[0]))}]({plots}/{name})")
    notes = skipped_lines(result)
    if notes:
        lines += ["", "## Not run", "", *(f"- {_md(n)}" for n in notes)]
    lines += ["", KEEP_MARKER]
    text = "\n".join(lines) + "\n"
    return text + kept.lstrip("\n") if kept else text


def write_summary(result: BenchResult, page: Path, out_dir: Path, command: str) -> Path:
    """Write the summary page, keeping what follows ``KEEP_MARKER`` in the page already there."""
    page = Path(page)
    kept = ""
    if page.is_file():
        old = page.read_text(encoding="utf-8")
        if KEEP_MARKER in old:
            kept = old.split(KEEP_MARKER, 1)[1]
    rel = os.path.relpath(Path(out_dir).resolve(), page.resolve().parent)
    text = summary_markdown(result, Path(rel).as_posix(), f"{command} --summary {page}", kept)
    atomic_write_text(page, text)
    log.debug("wrote %s", page)
    return page
