"""The run report: one self-contained HTML file a person can open offline, print or mail.

The page is a Jinja2 template (``report.html.j2``) rendered with autoescape on and
``StrictUndefined``: candidate code and LLM replies are untrusted text that may contain markup, and
a template that silently printed nothing for a renamed field would hide a broken report. So the
data is first normalised here into plain views whose every field exists, and the template only
lays them out. Plots come from :mod:`archsmith.report.svg`. A Content-Security-Policy in the page
forbids scripts and every external load, as a second line of defence behind escaping.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, StrictUndefined, Template
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, Field

from archsmith import __version__
from archsmith.energy import SOURCES, energy_scope
from archsmith.files import atomic_write_text
from archsmith.report import svg
from archsmith.report.svg import AxisSpec, Mark, Point, Series, Threshold
from archsmith.spec import TaskSpec
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


# -- formatting ------------------------------------------------------------------------------------


def _num(v: Any) -> float | None:
    """A finite float, or None for anything else (missing, text, NaN); booleans are not numbers."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def fmt_pct(v: Any) -> str:
    """A fraction as a percentage: 0.98051 -> '98.05%'."""
    f = _num(v)
    return "—" if f is None else f"{f * 100:.2f}%"


def fmt_num(v: Any, digits: int = 4) -> str:
    """A plain number with ``digits`` significant digits; booleans as words."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    f = _num(v)
    if f is None:
        return "—" if v is None else str(v)
    if 1e4 <= abs(f) < 1e15:  # '19,497' reads better than '1.95e+04'
        return f"{f:,.0f}"
    return f"{f:.{digits}g}"


def fmt_count(v: Any) -> str:
    """An integer with thousands separators: 23722 -> '23,722'."""
    f = _num(v)
    return "—" if f is None else f"{f:,.0f}"


def fmt_energy(v: Any) -> str:
    """Energy in kWh-PUE, in scientific notation because candidates span many decades."""
    f = _num(v)
    return "—" if f is None else f"{f:.3g} kWh-PUE"


def fmt_seconds(v: Any) -> str:
    """A duration for people: '14.8 s', '3 min 05 s', '2 h 04 min'."""
    f = _num(v)
    if f is None:
        return "—"
    if f < 60:
        return f"{f:.1f} s"
    m, s = divmod(round(f), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def fmt_when(v: Any) -> str:
    """A unix time in UTC, so the report reads the same wherever it is opened."""
    f = _num(v)
    if f is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(f))


def _source_words(source: Any) -> tuple[str, str]:
    """A table cell's few words (measured or estimated, and the scope), and how it was got."""
    info = SOURCES.get(str(source))
    if info is None:
        return f"source: {source}", ""
    if not info.measured:
        return "estimated", f"{info.how}, not measured"
    return f"measured ({str(source).upper()}), {info.scope}", info.how


def energy_source_label(source: Any) -> str:
    """A few words for a table cell: how the figure was got and what it covers."""
    if source is None:
        return "source not recorded"
    return _source_words(source)[0]


def fmt_energy_scoped(v: Any, source: Any) -> str:
    """An energy figure with its scope beside it ('GPU only', 'estimate'), where it stands alone."""
    text = fmt_energy(v)
    return text if _num(v) is None else f"{text} ({energy_scope(source)})"


def energy_source_note(sources: Mapping[str, Any]) -> str:
    """Say whether the energy figures were measured or estimated; a reader must know which."""
    parts = {}
    for phase in ("train", "val"):
        src = sources.get(phase)
        label, why = _source_words(src) if src is not None else (energy_source_label(src), "")
        parts[phase] = label + (f": {why}" if why else "")
    if parts["train"] == parts["val"]:
        return f"Energy figures (training and validation) are {parts['val']}."
    return f"Validation energy is {parts['val']}; training energy is {parts['train']}."


# -- views -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of a metrics table: the value, the user's target, and whether it was met."""

    label: str
    value: str
    target: str = ""
    state: str = ""  # 'met', 'missed' or '' (no target)
    note: str = ""


@dataclass(frozen=True)
class SpecRow:
    """One line of the task's thresholds table."""

    symbol: str
    name: str
    value: str
    priority: str
    description: str
    inactive: bool = False


def _placement(entry: Mapping[str, Any]) -> str | None:
    """ "round 2 on host/node/worker, started 12:01:02; speed measured exclusive, ..."."""
    if entry.get("round") is None:
        return None
    measured = entry.get("measurement") or {}
    text = (
        f"round {entry.get('round')} on {entry.get('worker') or 'this process'},"
        f" started {fmt_when(entry.get('started_at'))}"
    )
    if measured:
        text += (
            f"; speed and inference energy measured {measured.get('speed_and_energy')},"
            f" training energy {measured.get('training_energy')}"
        )
    return text


@dataclass
class IterationView:
    """Everything one iteration's card shows, each field present (the template is strict)."""

    number: int
    status: str
    is_best: bool
    summary: str
    applied: list[str]
    seconds: str
    finished: str
    #: Where a candidate of a parallel round ran and how it was measured; None when serial.
    early_stop: str | None
    placement: str | None
    cm: str | None
    targets_met: bool | None
    metrics: list[Row]
    validation: list[Row]
    error: dict[str, str] | None
    fixes: list[dict[str, str]]
    fired: list[dict[str, Any]]
    instructions: list[dict[str, str]]
    dropped: list[dict[str, str]]
    code: str
    code_lines: int
    arch_json: str | None
    model_dir: str | None
    llm_calls: list[dict[str, str]] = field(default_factory=list)
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    val_accuracy: str = "—"
    fps: str = "—"
    params: str = "—"
    energy: str = "—"


def _iteration_number(entry: Mapping[str, Any], index: int) -> int:
    n = entry.get("iteration")
    return n if isinstance(n, int) and not isinstance(n, bool) else index + 1


def _metrics(entry: Mapping[str, Any]) -> dict[str, Any]:
    m = entry.get("metrics")
    return m if isinstance(m, dict) else {}


def _is_evaluated(entry: Mapping[str, Any]) -> bool:
    return entry.get("status") == "evaluated" and bool(_metrics(entry))


def best_index(iterations: Sequence[Mapping[str, Any]]) -> int | None:
    """The best candidate: the last one the critic flagged ``is_best`` (the run's final best).

    Histories without the flag fall back to the highest CM among evaluated candidates.
    """
    flagged = [i for i, e in enumerate(iterations) if e.get("is_best") is True]
    if flagged:
        return flagged[-1]
    scored = [
        (cm, i)
        for i, e in enumerate(iterations)
        if _is_evaluated(e) and (cm := _num(e.get("combined_metric"))) is not None
    ]
    return max(scored, key=lambda t: (t[0], -t[1]))[1] if scored else None


def _target(value: float | None, limit: float | None, *, at_least: bool) -> str:
    if value is None or limit is None:
        return ""
    ok = value >= limit if at_least else value <= limit
    return "met" if ok else "missed"


def _metric_rows(entry: Mapping[str, Any], spec: Mapping[str, Any]) -> list[Row]:
    m = _metrics(entry)
    if not m:
        return []
    sources = entry.get("energy_sources") or {}
    va, ta = _num(m.get("val_accuracy")), _num(m.get("train_accuracy"))
    fps, params = _num(m.get("fps")), _num(m.get("params"))
    lat, size = _num(m.get("latency_ms")), _num(m.get("model_size_mb"))
    te, ve = _num(m.get("train_energy_kwh_pue")), _num(m.get("val_energy_kwh_pue"))
    tv, tt = _num(spec.get("val_accuracy_threshold")), _num(spec.get("train_accuracy_threshold"))
    tf = _num(spec.get("fps_threshold"))
    tte = _num(spec.get("train_energy_threshold_kwh_pue"))
    tve = _num(spec.get("val_energy_threshold_kwh_pue"))
    mp, ml = _num(spec.get("max_params")), _num(spec.get("max_latency_ms"))
    ms = _num(spec.get("max_model_size_mb"))
    gap = va is not None and ta is not None
    rows = [
        Row(
            "Validation accuracy (V_Acc)",
            fmt_pct(va),
            _ge(fmt_pct(tv), "TV_Acc", tv),
            _target(va, tv, at_least=True),
        ),
        Row(
            "Training accuracy (T_Acc)",
            fmt_pct(ta),
            _ge(fmt_pct(tt), "TT_Acc", tt),
            _target(ta, tt, at_least=True),
        ),
        Row(
            "Generalisation gap (T_Acc - V_Acc)",
            f"{((ta or 0.0) - (va or 0.0)) * 100:.2f} points" if gap else "—",
        ),
        Row(
            "Throughput (F)",
            f"{fmt_count(fps)} FPS" if fps is not None else "—",
            _ge(f"{fmt_count(tf)} FPS", "TF", tf),
            _target(fps, tf, at_least=True),
        ),
        Row(
            "Latency, batch 1",
            f"{lat:.3g} ms" if lat is not None else "—",
            _le(f"{fmt_num(ml)} ms", "max", ml),
            _target(lat, ml, at_least=False),
        ),
        Row(
            "Parameters (P)",
            fmt_count(params),
            _le(fmt_count(mp), "max", mp),
            _target(params, mp, at_least=False),
        ),
        Row(
            "Model size",
            f"{size:.3g} MB" if size is not None else "—",
            _le(f"{fmt_num(ms)} MB", "max", ms),
            _target(size, ms, at_least=False),
        ),
        Row(
            "Training energy (T_E)",
            fmt_energy(te),
            _le(fmt_energy(tte), "TT_E", tte),
            _target(te, tte, at_least=False),
            energy_source_label(sources.get("train")),
        ),
        Row(
            "Validation energy (V_E)",
            fmt_energy(ve),
            _le(fmt_energy(tve), "TV_E", tve),
            _target(ve, tve, at_least=False),
            energy_source_label(sources.get("val")),
        ),
    ]
    if m.get("diverged"):
        rows.append(Row("Diverged", "yes: training saw a non-finite loss", state="missed"))
    return rows


def _ge(text: str, symbol: str, limit: float | None) -> str:
    return "" if limit is None else f"≥ {text} ({symbol})"


def _le(text: str, symbol: str, limit: float | None) -> str:
    return "" if limit is None else f"≤ {text} ({symbol})"


def _validation_rows(entry: Mapping[str, Any]) -> list[Row]:
    v = entry.get("validation")
    if not isinstance(v, dict):
        return []
    shape = v.get("output_shape")
    return [
        Row("Output shape", "x".join(str(d) for d in shape) if isinstance(shape, list) else "—"),
        Row("Parameters", fmt_count(v.get("params"))),
        Row("Trainable parameters", fmt_count(v.get("trainable_params"))),
        Row("Size", f"{fmt_num(v.get('size_mb'))} MB"),
        Row("FLOPs per sample", fmt_count(v.get("flops_per_sample"))),
    ]


def _error(e: Any) -> dict[str, str]:
    e = e if isinstance(e, dict) else {}
    line = e.get("line")
    return {
        "type": str(e.get("type") or "Error"),
        "message": str(e.get("message") or "no message recorded"),
        "line": str(line) if line is not None else "",
        "stage": str(e.get("stage") or ""),
    }


def _fixes(entry: Mapping[str, Any]) -> list[dict[str, str]]:
    out = []
    for i, fix in enumerate(entry.get("fixes") or []):
        if not isinstance(fix, dict):
            continue
        err = _error(fix.get("error"))
        out.append(
            {**err, "attempt": str(fix.get("attempt", i + 1)), "stage": str(fix.get("stage") or "")}
        )
    return out


def _condition(c: Mapping[str, Any]) -> dict[str, str]:
    symbol = c.get("threshold_symbol") or c.get("threshold_name") or ""
    threshold, margin, op = c.get("threshold"), c.get("margin"), str(c.get("op", ""))
    side = {"<": "below", ">": "above"}.get(op, "past")
    return {
        "metric": str(c.get("metric", "")),
        "value": fmt_num(c.get("value"), 6),
        "op": op.replace("is_true", "is true").replace("is_false", "is false"),
        "threshold": f"{symbol} {fmt_num(threshold, 6)}".strip() if threshold is not None else "",
        "margin": f"{fmt_num(margin, 4)} {side}" if margin is not None else "",
        "text": str(c.get("text", "")),
    }


def _fired(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for r in entry.get("fired_rules") or []:
        if not isinstance(r, dict):
            continue
        weight = _num(r.get("weight"))
        out.append(
            {
                "rule_id": str(r.get("rule_id") or r.get("rule") or "?"),
                "description": str(r.get("description") or ""),
                "weight": fmt_num(r.get("weight") if "weight" in r else r.get("priority")),
                "weight_source": str(r.get("weight_source") or ""),
                "inactive": weight is not None and weight <= 0,
                "instructions": [str(i) for i in r.get("instructions") or []],
                "reason": str(r.get("reason") or ""),
                "conditions": [
                    _condition(c) for c in r.get("conditions") or [] if isinstance(c, dict)
                ],
            }
        )
    return out


def _instructions(items: Any, *, dropped: bool) -> list[dict[str, str]]:
    out = []
    for d in items or []:
        if not isinstance(d, dict):
            continue
        row = {
            "code": str(d.get("code", "?")),
            "meaning": str(d.get("meaning") or d.get("description") or ""),
            "weight": fmt_num(d.get("weight")),
            "raised_by": ", ".join(str(r) for r in d.get("raised_by") or []),
        }
        if dropped:
            row["reason"] = str(d.get("reason") or "")
            lost_to = str(d.get("lost_to") or "")
            # the rulebook's reason usually names the winner already; say it once
            row["lost_to"] = "" if lost_to in row["reason"] else lost_to
        out.append(row)
    return out


def _llm_call(c: Mapping[str, Any]) -> dict[str, str]:
    tokens = [
        f"{label} {fmt_count(c.get(key))}"
        for key, label in (("input_tokens", "in"), ("output_tokens", "out"))
        if c.get(key) is not None
    ]
    return {
        "role": str(c.get("role") or "llm"),
        "model": str(c.get("model") or "?"),
        "latency": fmt_seconds(c.get("latency_s")),
        "tokens": " / ".join(tokens) or "—",
        "prompt": str(c.get("prompt") or ""),
        "response": str(c.get("response") or ""),
    }


def _tool_call(c: Mapping[str, Any]) -> dict[str, str]:
    args = c.get("args")
    shown: Any = args
    if isinstance(args, dict) and isinstance(args.get("code"), str):
        shown = {**args, "code": f"<{len(args['code'])} characters of candidate code>"}
    ok = c.get("ok")
    error = _error(c.get("error")) if c.get("error") else None
    return {
        "tool": str(c.get("tool") or "?"),
        "ok": "ok" if ok is True else ("failed" if ok is False else "—"),
        "state": "met" if ok is True else ("missed" if ok is False else ""),
        "duration": fmt_seconds(c.get("duration_s")),
        "backend": str(c.get("backend") or "—"),
        "error": f"{error['type']}: {error['message']}" if error else "",
        "args": json.dumps(shown, indent=2, sort_keys=True, default=str) if shown else "",
    }


def _iteration_view(
    entry: Mapping[str, Any],
    index: int,
    spec: Mapping[str, Any],
    *,
    best: bool,
    llm_calls: list[dict[str, str]],
    tool_calls: list[dict[str, str]],
) -> IterationView:
    m = _metrics(entry)
    status = str(entry.get("status") or "unknown")
    code = str(entry.get("code") or "")
    arch = entry.get("arch")
    cm = _num(entry.get("combined_metric"))
    targets = entry.get("targets_met")
    return IterationView(
        number=_iteration_number(entry, index),
        status=status,
        is_best=best,
        summary=str(entry.get("summary") or ""),
        applied=[str(a) for a in entry.get("applied") or []],
        seconds=fmt_seconds(entry.get("seconds")),
        finished=fmt_when(entry.get("finished_at")),
        placement=_placement(entry),
        early_stop=_early_stop(entry.get("early_stop")),
        cm=f"{cm:.4f}" if cm is not None else None,
        targets_met=targets if isinstance(targets, bool) else None,
        metrics=_metric_rows(entry, spec),
        validation=_validation_rows(entry),
        error=_error(entry["error"]) if entry.get("error") else None,
        fixes=_fixes(entry),
        fired=_fired(entry),
        instructions=_instructions(entry.get("instructions"), dropped=False),
        dropped=_instructions(entry.get("dropped"), dropped=True),
        code=code,
        code_lines=code.count("\n") + (1 if code and not code.endswith("\n") else 0),
        arch_json=json.dumps(arch, indent=2, sort_keys=True) if arch else None,
        model_dir=str(entry["model_dir"]) if entry.get("model_dir") else None,
        llm_calls=llm_calls,
        tool_calls=tool_calls,
        val_accuracy=fmt_pct(m.get("val_accuracy")),
        fps=fmt_count(m.get("fps")),
        params=fmt_count(m.get("params")),
        energy=fmt_energy_scoped(m.get("val_energy_kwh_pue"), _val_source(entry)),
    )


def _early_stop(check: Any) -> str | None:
    """The early-stopping check in one sentence: when, the figures then, and the verdict."""
    if not isinstance(check, dict):
        return None
    verdict = "Stopped early" if check.get("stopped") else "Went on"
    return (
        f"{verdict} after the check at epoch {check.get('epoch')} of {check.get('epochs')}"
        f" (validation {fmt_pct(check.get('val_accuracy'))}, training"
        f" {fmt_pct(check.get('train_accuracy'))} then): {check.get('reason')}."
        f" Rule: {check.get('rule')}."
    )


# -- the task --------------------------------------------------------------------------------------

#: (threshold field, its kind, priority field) in the order a reader thinks of them.
_SPEC_ROWS: tuple[tuple[str, str, str | None], ...] = (
    ("val_accuracy_threshold", "pct", "val_accuracy_priority"),
    ("train_accuracy_threshold", "pct", "train_accuracy_priority"),
    ("fps_threshold", "fps", "fps_priority"),
    ("val_energy_threshold_kwh_pue", "energy", "val_energy_priority"),
    ("train_energy_threshold_kwh_pue", "energy", "train_energy_priority"),
    ("overfit_threshold", "points", None),
    ("underfit_threshold", "points", None),
    ("max_params", "count", "params_priority"),
    ("max_latency_ms", "ms", "latency_priority"),
    ("max_model_size_mb", "mb", "model_size_priority"),
    ("weight_accuracy", "num", None),
    ("weight_energy", "num", None),
    ("weight_fps", "num", None),
)

_SPEC_FORMAT: dict[str, Callable[[Any], str]] = {
    "pct": fmt_pct,
    "fps": lambda v: f"{fmt_count(v)} FPS",
    "energy": fmt_energy,
    "points": lambda v: f"{v * 100:g} points" if _num(v) is not None else "—",
    "count": fmt_count,
    "ms": lambda v: f"{fmt_num(v)} ms",
    "mb": lambda v: f"{fmt_num(v)} MB",
    "num": fmt_num,
}


def _spec_rows(spec: Mapping[str, Any]) -> list[SpecRow]:
    symbols = TaskSpec.symbols()
    fields = TaskSpec.model_fields
    rows = []
    for name, kind, prio in _SPEC_ROWS:
        if name not in spec:
            continue
        value = spec[name]
        desc = fields[name].description or "" if name in fields else ""
        priority = ""
        inactive = value is None
        if prio is not None and prio in spec:
            p = _num(spec[prio])
            priority = f"{symbols.get(prio, prio)} = {fmt_num(p)}"
            inactive = inactive or p == 0
        rows.append(
            SpecRow(
                symbol=symbols.get(name, ""),
                name=name,
                value="not set" if value is None else _SPEC_FORMAT[kind](value),
                priority=priority,
                description=desc,
                inactive=inactive,
            )
        )
    return rows


def _task_line(spec: Mapping[str, Any]) -> str:
    shape = spec.get("input_shape")
    shape_s = "x".join(str(d) for d in shape) if isinstance(shape, list | tuple) else "?"
    task = str(spec.get("task") or "?").replace("_", " ")
    classes = spec.get("num_classes", "?")
    return f"{spec.get('dataset', '?')}: {task}, input {shape_s}, {classes} classes"


# -- plots -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """A plot and the sentence under it."""

    svg: Markup
    caption: str


def _val_source(entry: Mapping[str, Any]) -> Any:
    """Where the entry's validation energy came from (nvml, rapl, estimate), if recorded."""
    return (entry.get("energy_sources") or {}).get("val")


def _tooltip(n: int, entry: Mapping[str, Any]) -> str:
    m = _metrics(entry)
    cm = _num(entry.get("combined_metric"))
    parts = [
        f"Iteration {n}",
        f"val acc {fmt_pct(m.get('val_accuracy'))}",
        f"train acc {fmt_pct(m.get('train_accuracy'))}",
        f"{fmt_count(m.get('fps'))} FPS",
        fmt_energy_scoped(m.get("val_energy_kwh_pue"), _val_source(entry)),
        f"{fmt_count(m.get('params'))} params",
    ]
    if cm is not None:
        parts.append(f"CM {cm:.4f}")
    return parts[0] + ": " + ", ".join(parts[1:])


def _pct(v: Any) -> float | None:
    f = _num(v)
    return None if f is None else f * 100


def _wide(values: Sequence[float | None]) -> bool:
    """Whether positive values span enough decades that a log axis reads better."""
    pos = [v for v in values if v is not None and v > 0]
    return bool(pos) and max(pos) / min(pos) > 30


def _progress_plots(
    iterations: Sequence[Mapping[str, Any]], spec: Mapping[str, Any], best: int | None
) -> list[Figure]:
    numbers = [_iteration_number(e, i) for i, e in enumerate(iterations)]
    x_range = (min(numbers) - 0.5, max(numbers) + 0.5)
    it_axis = AxisSpec("Iteration", "int")
    evaluated = [(n, e) for n, e in zip(numbers, iterations, strict=True) if _is_evaluated(e)]
    marks = []
    for n, e in zip(numbers, iterations, strict=True):
        if e.get("status") in ("failed", "diverged"):
            kind: Literal["failed", "diverged"] = (
                "failed" if e.get("status") == "failed" else "diverged"
            )
            err = _error(e.get("error")) if e.get("error") else None
            why = f"{err['type']}: {err['message']}" if err else "training diverged"
            marks.append(Mark(float(n), kind, f"Iteration {n} {kind}: {why}"))
    tips = {n: _tooltip(n, e) for n, e in evaluated}
    best_n = numbers[best] if best is not None else None
    best_m = _metrics(iterations[best]) if best is not None else {}

    def series(name: str, key: str, get: Callable[[Mapping[str, Any]], float | None]) -> Series:
        pts = tuple((float(n), v, tips[n]) for n, e in evaluated if (v := get(e)) is not None)
        return Series(name, key, pts)

    def star(v: float | None) -> tuple[float, float, str] | None:
        if best_n is None or v is None:
            return None
        return (float(best_n), v, tips.get(best_n, f"Iteration {best_n} (best)"))

    tv = _pct(spec.get("val_accuracy_threshold"))
    figures = [
        Figure(
            svg.line_chart(
                "accuracy",
                "Accuracy per iteration",
                it_axis,
                AxisSpec("Accuracy (%)", "pct"),
                [
                    series("validation", "val", lambda e: _pct(_metrics(e).get("val_accuracy"))),
                    series("training", "train", lambda e: _pct(_metrics(e).get("train_accuracy"))),
                ],
                x_range=x_range,
                thresholds=[Threshold("y", tv, "TV_Acc", f"TV_Acc {tv:g}%")]
                if tv is not None
                else [],
                marks=marks,
                best=star(_pct(best_m.get("val_accuracy"))),
            ),
            "Validation and training accuracy of each evaluated candidate; the dashed line is the"
            " validation target TV_Acc.",
        ),
    ]
    cm_best: list[float] = []
    running: list[tuple[float, float, str]] = []
    for n, e in evaluated:
        cm = _num(e.get("combined_metric"))
        if cm is not None:
            cm_best.append(max(cm, cm_best[-1]) if cm_best else cm)
            running.append(
                (float(n), cm_best[-1], f"Best CM after iteration {n}: {cm_best[-1]:.4f}")
            )
    figures.append(
        Figure(
            svg.line_chart(
                "cm",
                "Combined metric CM per iteration",
                it_axis,
                AxisSpec("CM (Eq. 1, unitless)", "plain"),
                [
                    series("CM", "cm", lambda e: _num(e.get("combined_metric"))),
                    Series("best so far", "best-so-far", tuple(running)),
                ],
                x_range=x_range,
                marks=marks,
                best=star(
                    _num(iterations[best].get("combined_metric")) if best is not None else None
                ),
            ),
            "CM weighs accuracy, FPS and energy with the spec's W_A, W_F and W_E; the best"
            " candidate is the one with the highest CM.",
        )
    )
    fps_values = [_num(_metrics(e).get("fps")) for _, e in evaluated]
    tf = _num(spec.get("fps_threshold"))
    log_fps = _wide([*fps_values, tf])
    figures.append(
        Figure(
            svg.line_chart(
                "fps",
                "Inference throughput per iteration",
                it_axis,
                AxisSpec(
                    "Throughput (FPS" + (", log scale)" if log_fps else ")"), "count", log_fps
                ),
                [series("FPS", "fps", lambda e: _num(_metrics(e).get("fps")))],
                x_range=x_range,
                thresholds=[Threshold("y", tf, "TF", f"TF {tf:,.0f} FPS")]
                if tf is not None
                else [],
                marks=marks,
                best=star(_num(best_m.get("fps"))),
            ),
            "Frames per second of each evaluated candidate; the dashed line is the FPS target TF.",
        )
    )
    figures.append(
        Figure(
            svg.line_chart(
                "energy",
                "Energy per iteration",
                it_axis,
                AxisSpec("Energy (kWh-PUE, log scale)", "energy", True),
                [
                    series("training", "train-energy", lambda e: _num(_metrics(e).get(_TE))),
                    series("validation", "val-energy", lambda e: _num(_metrics(e).get(_VE))),
                ],
                x_range=x_range,
                thresholds=_energy_thresholds(spec),
                marks=marks,
                best=star(_num(best_m.get(_VE))),
            ),
            "Energy to train each candidate (T_E) and to evaluate the validation set (V_E), in"
            " kWh-PUE; dashed lines are the budgets TT_E and TV_E.",
        )
    )
    return figures


_TE, _VE = "train_energy_kwh_pue", "val_energy_kwh_pue"


def _energy_thresholds(spec: Mapping[str, Any]) -> list[Threshold]:
    """TT_E and TV_E as lines; one line with both names when they are equal (the defaults)."""
    tte = _num(spec.get("train_energy_threshold_kwh_pue"))
    tve = _num(spec.get("val_energy_threshold_kwh_pue"))
    if tte is not None and tte == tve:
        return [Threshold("y", tte, "TT_E,TV_E", f"TT_E = TV_E {tte:.3g}")]
    lines = [Threshold("y", tte, "TT_E", f"TT_E {tte:.3g}")] if tte is not None else []
    return lines + ([Threshold("y", tve, "TV_E", f"TV_E {tve:.3g}")] if tve is not None else [])


def _pareto_plots(
    iterations: Sequence[Mapping[str, Any]], spec: Mapping[str, Any], best: int | None
) -> list[Figure]:
    numbers = [_iteration_number(e, i) for i, e in enumerate(iterations)]
    evaluated = [
        (i, n, e)
        for i, (n, e) in enumerate(zip(numbers, iterations, strict=True))
        if _is_evaluated(e)
    ]
    skipped = len(iterations) - len(evaluated)
    tv = _pct(spec.get("val_accuracy_threshold"))
    acc_axis = AxisSpec("Validation accuracy (%)", "pct")
    acc_line = [Threshold("y", tv, "TV_Acc", f"TV_Acc {tv:g}%")] if tv is not None else []
    tf = _num(spec.get("fps_threshold"))
    tve = _num(spec.get("val_energy_threshold_kwh_pue"))
    mp = _num(spec.get("max_params"))
    fps_values = [_num(_metrics(e).get("fps")) for _, _, e in evaluated]
    log_fps = _wide([*fps_values, tf])
    plots: list[tuple[str, str, str, AxisSpec, bool, list[Threshold]]] = [
        (
            "pareto-fps",
            "Accuracy vs throughput",
            "fps",
            AxisSpec("Throughput (FPS" + (", log scale)" if log_fps else ")"), "count", log_fps),
            True,
            [Threshold("x", tf, "TF", f"TF {tf:,.0f} FPS")] if tf is not None else [],
        ),
        (
            "pareto-energy",
            "Accuracy vs validation energy",
            "val_energy_kwh_pue",
            AxisSpec("Validation energy (kWh-PUE, log scale)", "energy", True),
            False,
            [Threshold("x", tve, "TV_E", f"TV_E {tve:.3g}")] if tve is not None else [],
        ),
        (
            "pareto-params",
            "Accuracy vs parameters",
            "params",
            AxisSpec("Parameters (count, log scale)", "count", True),
            False,
            [Threshold("x", mp, "max_params", f"max {mp:,.0f}")] if mp is not None else [],
        ),
    ]
    figures = []
    for plot_id, title, key, x_axis, more_is_better, x_lines in plots:
        points = []
        for i, n, e in evaluated:
            m = _metrics(e)
            x, y = _num(m.get(key)), _pct(m.get("val_accuracy"))
            if x is None or y is None or not svg.usable(x, log=x_axis.log):
                continue
            points.append(Point(n, x, y, _tooltip(n, e), i == best))
        front = svg.pareto_front([(p.x, p.y) for p in points], maximize=(more_is_better, True))
        left_out = len(evaluated) - len(points)
        front_list = ", ".join(str(n) for n in sorted(points[j].iteration for j in front))
        caption = (
            f"{len(points)} evaluated candidate{'s' if len(points) != 1 else ''};"
            f" the Pareto front (no candidate beats it on both axes) is iteration"
            f"{'s' if len(front) != 1 else ''} {front_list}."
            if points
            else "No candidate has both values measured."
        )
        if left_out:
            caption += f" {left_out} without a usable value left out."
        if skipped:
            caption += (
                f" {skipped} failed or diverged iteration{'s' if skipped != 1 else ''} not shown."
            )
        figures.append(
            Figure(
                svg.pareto_chart(
                    plot_id,
                    title,
                    x_axis,
                    acc_axis,
                    points,
                    maximize=(more_is_better, True),
                    thresholds=[*x_lines, *acc_line],
                ),
                caption,
            )
        )
    return figures


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
    m = _metrics(entry)
    sources = entry.get("energy_sources") or {}
    cm = _num(entry.get("combined_metric"))
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
    numbers = [_iteration_number(e, i) for i, e in enumerate(its)]
    llm_by, llm_other = _by_iteration(data.llm_calls, set(numbers))
    tool_by, tool_other = _by_iteration(data.tool_calls, set(numbers))
    views = [
        _iteration_view(
            e,
            i,
            spec,
            best=i == best,
            llm_calls=[_llm_call(c) for c in llm_by.get(numbers[i], [])],
            tool_calls=[_tool_call(c) for c in tool_by.get(numbers[i], [])],
        )
        for i, e in enumerate(its)
    ]
    counts = {
        s: sum(1 for e in its if e.get("status") == s)
        for s in ("evaluated", STOPPED_EARLY, "diverged", "failed")
    }
    has_evaluated = any(_is_evaluated(e) for e in its)
    duration = _num(run.get("duration_s"))
    if duration is None:
        duration_s = "—"
        spent = [s for e in its if (s := _num(e.get("seconds"))) is not None]
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
        "task_line": _task_line(spec),
        "spec_rows": _spec_rows(spec),
        "assumptions": [str(a) for a in data.assumptions],
        "progress": _progress_plots(its, spec, best) if has_evaluated else [],
        "pareto": _pareto_plots(its, spec, best) if has_evaluated else [],
        "has_evaluated": has_evaluated,
        "iterations": views,
        "other_llm_calls": [_llm_call(c) for c in llm_other],
        "other_tool_calls": [_tool_call(c) for c in tool_other],
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
