"""The run report: one self-contained HTML file a person can open offline, print or mail.

The page is a Jinja2 template (``report.html.j2``) rendered with autoescape on and
``StrictUndefined``: candidate code and LLM replies are untrusted text that may contain markup, and
a template that silently printed nothing for a renamed field would hide a broken report. So the
data is first normalised into plain views whose every field exists (:mod:`archsmith.report.views`,
numbers written by :mod:`archsmith.report.formats`), and the template only lays them out. Plots
come from :mod:`archsmith.report.plots`, drawn by :mod:`archsmith.report.svg`. A
Content-Security-Policy in the page forbids scripts and every external load, as a second line of
defence behind escaping.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined, Template
from pydantic import BaseModel, ConfigDict, Field

from archsmith import __version__
from archsmith.files import atomic_write_text
from archsmith.report.formats import (
    energy_source_note,
    fmt_count,
    fmt_energy_scoped,
    fmt_pct,
    fmt_seconds,
    fmt_when,
    num,
)
from archsmith.report.plots import pareto_plots, progress_plots
from archsmith.report.views import (
    best_index,
    entry_metrics,
    is_evaluated,
    iteration_number,
    iteration_view,
    llm_call_view,
    spec_rows,
    task_line,
    tool_call_view,
)
from archsmith.tools.schemas import STOPPED_EARLY

__all__ = ["ReportData", "render_report", "write_report"]

log = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"


class ReportData(BaseModel):
    """Everything a report shows, as JSON data: the run, its spec, its history and its traces.

    ``iterations`` are the graph's history entries in iteration order (see
    ``archsmith.agents.nodes.critic`` and ``record_failure``); ``llm_calls`` and ``tool_calls``
    carry an ``iteration`` key that ties each to its card.
    """

    model_config = ConfigDict(extra="forbid")

    run: dict[str, Any]
    spec: dict[str, Any]
    assumptions: list[str] = Field(default_factory=list)
    iterations: list[dict[str, Any]]
    llm_calls: list[dict[str, Any]] = Field(default_factory=list)
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)


# -- the page --------------------------------------------------------------------------------------


def _by_iteration(
    calls: Sequence[Mapping[str, Any]], known: set[int]
) -> tuple[dict[int, list[Mapping[str, Any]]], list[Mapping[str, Any]]]:
    """Group calls by the iteration they belong to; calls outside every iteration go apart."""
    grouped: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    other: list[Mapping[str, Any]] = []
    for c in calls:
        n = c.get("iteration")
        if isinstance(n, int) and n in known:
            grouped[n].append(c)
        else:
            other.append(c)
    return grouped, other


def _test_pct(entry: Mapping[str, Any]) -> str:
    """The test split's accuracy, measured once at the run's end; the reason when there is none."""
    test = entry.get("test") or {}
    if not test:
        return "not measured"
    return fmt_pct(test.get("test_accuracy")) if test.get("ok") else "failed"


def _headline(entry: Mapping[str, Any] | None, number: int | None) -> dict[str, Any] | None:
    if entry is None or number is None:
        return None
    m = entry_metrics(entry)
    sources = entry.get("energy_sources") or {}
    cm = num(entry.get("combined_metric"))
    return {
        "iteration": number,
        "summary": str(entry.get("summary") or ""),
        "cards": [
            ("Test accuracy (held out)", _test_pct(entry), "test-accuracy"),
            ("Validation accuracy", fmt_pct(m.get("val_accuracy")), "val-accuracy"),
            ("Throughput", f"{fmt_count(m.get('fps'))} FPS", "fps"),
            ("Parameters", fmt_count(m.get("params")), "params"),
            (
                "Validation energy",
                fmt_energy_scoped(m.get("val_energy_kwh_pue"), sources.get("val")),
                "energy",
            ),
            ("CM", f"{cm:.4f}" if cm is not None else "—", "cm"),
        ],
        "energy_note": energy_source_note(sources),
        "targets_met": entry.get("targets_met") is True,
    }


def _context(data: ReportData) -> dict[str, Any]:
    run, spec, its = data.run, data.spec, data.iterations
    best = best_index(its)
    numbers = [iteration_number(e, i) for i, e in enumerate(its)]
    llm_by, llm_other = _by_iteration(data.llm_calls, set(numbers))
    tool_by, tool_other = _by_iteration(data.tool_calls, set(numbers))
    views = [
        iteration_view(
            e,
            i,
            spec,
            best=i == best,
            llm_calls=[llm_call_view(c) for c in llm_by.get(numbers[i], [])],
            tool_calls=[tool_call_view(c) for c in tool_by.get(numbers[i], [])],
        )
        for i, e in enumerate(its)
    ]
    counts = {
        s: sum(1 for e in its if e.get("status") == s)
        for s in ("evaluated", STOPPED_EARLY, "diverged", "failed")
    }
    has_evaluated = any(is_evaluated(e) for e in its)
    duration = num(run.get("duration_s"))
    if duration is None:
        duration_s = "—"
        spent = [s for e in its if (s := num(e.get("seconds"))) is not None]
        if spent:
            duration_s = f"{fmt_seconds(sum(spent))} (sum of iterations)"
    else:
        duration_s = fmt_seconds(duration)
    max_it = run.get("max_iterations")
    meta = [
        (
            "Status",
            str(run.get("status") or "unknown")
            + (f": {run['stop_reason']}" if run.get("stop_reason") else ""),
        ),
        ("Architect (LLM)", str(run.get("llm") or "—")),
        ("Planner", str(run.get("planner") or "—")),
        ("Sandbox", str(run.get("sandbox") or "—")),
        ("Device", str(run.get("device") or "—")),
        ("Training epochs", str(run.get("epochs") if run.get("epochs") is not None else "—")),
        (
            "Iterations",
            f"{len(its)}"
            + (f" of {max_it}" if max_it is not None else "")
            + f" ({counts['evaluated']} evaluated,"
            + (f" {counts[STOPPED_EARLY]} stopped early," if counts[STOPPED_EARLY] else "")
            + f" {counts['diverged']} diverged, {counts['failed']} failed)",
        ),
        ("Started", fmt_when(run.get("created_at"))),
        ("Last update", fmt_when(run.get("updated_at"))),
        ("Duration", duration_s),
    ]
    return {
        "run_id": str(run.get("run_id") or "unnamed run"),
        "request": str(run.get("request") or ""),
        "status": str(run.get("status") or "unknown"),
        "meta": meta,
        "headline": _headline(
            its[best] if best is not None else None, numbers[best] if best is not None else None
        ),
        "task_line": task_line(spec),
        "spec_rows": spec_rows(spec),
        "assumptions": [str(a) for a in data.assumptions],
        "progress": progress_plots(its, spec, best) if has_evaluated else [],
        "pareto": pareto_plots(its, spec, best) if has_evaluated else [],
        "has_evaluated": has_evaluated,
        "iterations": views,
        "other_llm_calls": [llm_call_view(c) for c in llm_other],
        "other_tool_calls": [tool_call_view(c) for c in tool_other],
        "version": __version__,
    }


@cache
def _template() -> Template:
    """The page template, read from the package with importlib.resources (works from a wheel)."""
    text = resources.files("archsmith.report").joinpath(TEMPLATE).read_text(encoding="utf-8")
    env = Environment(
        undefined=StrictUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.from_string(text)


def render_report(data: ReportData) -> str:
    """The report as one self-contained HTML page: inline CSS and SVG, no script, no fetch."""
    return _template().render(**_context(data))


def write_report(data: ReportData, path: Path) -> Path:
    """Write the report atomically; a full disk raises InputError and leaves no half file."""
    started = time.perf_counter()
    html = render_report(data)
    path = Path(path)
    atomic_write_text(path, html)
    log.info(
        "wrote report %s (%d iterations, %.0f kB) in %.2f s",
        path,
        len(data.iterations),
        len(html) / 1000,
        time.perf_counter() - started,
    )
    return path
