"""What the run report shows of each iteration and of the task, as plain values for the template."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from archsmith.report.formats import (
    energy_source_label,
    fmt_count,
    fmt_energy,
    fmt_energy_scoped,
    fmt_num,
    fmt_pct,
    fmt_seconds,
    fmt_when,
    num,
)
from archsmith.spec import TaskSpec
from archsmith.tools.rulebook import default_rulebook

__all__ = [
    "IterationView",
    "Row",
    "SpecRow",
    "best_index",
    "entry_metrics",
    "error_view",
    "is_evaluated",
    "iteration_number",
    "iteration_view",
    "llm_call_view",
    "spec_rows",
    "task_line",
    "tool_call_view",
    "val_source",
]


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


def iteration_number(entry: Mapping[str, Any], index: int) -> int:
    n = entry.get("iteration")
    return n if isinstance(n, int) and not isinstance(n, bool) else index + 1


def entry_metrics(entry: Mapping[str, Any]) -> dict[str, Any]:
    m = entry.get("metrics")
    return m if isinstance(m, dict) else {}


def is_evaluated(entry: Mapping[str, Any]) -> bool:
    return entry.get("status") == "evaluated" and bool(entry_metrics(entry))


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
        if is_evaluated(e) and (cm := num(e.get("combined_metric"))) is not None
    ]
    return max(scored, key=lambda t: (t[0], -t[1]))[1] if scored else None


def _against_target(
    metric: str, value: float | None, spec: Mapping[str, Any], fmt: Callable[[float], str]
) -> tuple[str, str]:
    """The row's target ('≥ 99.00% (TV_Acc)') and 'met', 'missed' or '' for the figure, from the
    rulebook's target on ``metric`` (the one table of targets); empty where the spec sets none."""
    target = default_rulebook().target(metric)
    limit = num(spec.get(target.threshold)) if target is not None else None
    if target is None or limit is None:
        return "", ""
    sign = "≥" if target.direction == ">=" else "≤"
    symbol = TaskSpec.symbols().get(target.threshold, "max")
    state = "" if value is None else ("met" if target.met(value, limit) else "missed")
    return f"{sign} {fmt(limit)} ({symbol})", state


def _metric_rows(entry: Mapping[str, Any], spec: Mapping[str, Any]) -> list[Row]:
    m = entry_metrics(entry)
    if not m:
        return []
    sources = entry.get("energy_sources") or {}
    va, ta = num(m.get("val_accuracy")), num(m.get("train_accuracy"))
    fps, params = num(m.get("fps")), num(m.get("params"))
    lat, size = num(m.get("latency_ms")), num(m.get("model_size_mb"))
    te, ve = num(m.get("train_energy_kwh_pue")), num(m.get("val_energy_kwh_pue"))
    gap = va is not None and ta is not None
    rows = [
        Row(
            "Validation accuracy (V_Acc)",
            fmt_pct(va),
            *_against_target("val_accuracy", va, spec, fmt_pct),
        ),
        Row(
            "Training accuracy (T_Acc)",
            fmt_pct(ta),
            *_against_target("train_accuracy", ta, spec, fmt_pct),
        ),
        Row(
            "Generalisation gap (T_Acc - V_Acc)",
            f"{((ta or 0.0) - (va or 0.0)) * 100:.2f} points" if gap else "—",
        ),
        Row(
            "Throughput (F)",
            f"{fmt_count(fps)} FPS" if fps is not None else "—",
            *_against_target("fps", fps, spec, lambda v: f"{fmt_count(v)} FPS"),
        ),
        Row(
            "Latency, batch 1",
            f"{lat:.3g} ms" if lat is not None else "—",
            *_against_target("latency_ms", lat, spec, lambda v: f"{fmt_num(v)} ms"),
        ),
        Row(
            "Parameters (P)",
            fmt_count(params),
            *_against_target("params", params, spec, fmt_count),
        ),
        Row(
            "Model size",
            f"{size:.3g} MB" if size is not None else "—",
            *_against_target("model_size_mb", size, spec, lambda v: f"{fmt_num(v)} MB"),
        ),
        Row(
            "Training energy (T_E)",
            fmt_energy(te),
            *_against_target("train_energy_kwh_pue", te, spec, fmt_energy),
            energy_source_label(sources.get("train")),
        ),
        Row(
            "Validation energy (V_E)",
            fmt_energy(ve),
            *_against_target("val_energy_kwh_pue", ve, spec, fmt_energy),
            energy_source_label(sources.get("val")),
        ),
    ]
    if m.get("diverged"):
        rows.append(Row("Diverged", "yes: training saw a non-finite loss", state="missed"))
    return rows


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


def error_view(e: Any) -> dict[str, str]:
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
        err = error_view(fix.get("error"))
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
        weight = num(r.get("weight"))
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


def llm_call_view(c: Mapping[str, Any]) -> dict[str, str]:
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


def tool_call_view(c: Mapping[str, Any]) -> dict[str, str]:
    args = c.get("args")
    shown: Any = args
    if isinstance(args, dict) and isinstance(args.get("code"), str):
        shown = {**args, "code": f"<{len(args['code'])} characters of candidate code>"}
    ok = c.get("ok")
    error = error_view(c.get("error")) if c.get("error") else None
    return {
        "tool": str(c.get("tool") or "?"),
        "ok": "ok" if ok is True else ("failed" if ok is False else "—"),
        "state": "met" if ok is True else ("missed" if ok is False else ""),
        "duration": fmt_seconds(c.get("duration_s")),
        "backend": str(c.get("backend") or "—"),
        "error": f"{error['type']}: {error['message']}" if error else "",
        "args": json.dumps(shown, indent=2, sort_keys=True, default=str) if shown else "",
    }


def iteration_view(
    entry: Mapping[str, Any],
    index: int,
    spec: Mapping[str, Any],
    *,
    best: bool,
    llm_calls: list[dict[str, str]],
    tool_calls: list[dict[str, str]],
) -> IterationView:
    m = entry_metrics(entry)
    status = str(entry.get("status") or "unknown")
    code = str(entry.get("code") or "")
    arch = entry.get("arch")
    cm = num(entry.get("combined_metric"))
    targets = entry.get("targets_met")
    return IterationView(
        number=iteration_number(entry, index),
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
        error=error_view(entry["error"]) if entry.get("error") else None,
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
        energy=fmt_energy_scoped(m.get("val_energy_kwh_pue"), val_source(entry)),
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

#: (spec field, how its value reads) in the order a reader thinks of them; a target's priority
#: comes from the rulebook's table of targets.
_SPEC_ROWS: tuple[tuple[str, str], ...] = (
    ("val_accuracy_threshold", "pct"),
    ("train_accuracy_threshold", "pct"),
    ("fps_threshold", "fps"),
    ("val_energy_threshold_kwh_pue", "energy"),
    ("train_energy_threshold_kwh_pue", "energy"),
    ("overfit_threshold", "points"),
    ("underfit_threshold", "points"),
    ("max_params", "count"),
    ("max_latency_ms", "ms"),
    ("max_model_size_mb", "mb"),
    ("weight_accuracy", "num"),
    ("weight_energy", "num"),
    ("weight_fps", "num"),
)

_SPEC_FORMAT: dict[str, Callable[[Any], str]] = {
    "pct": fmt_pct,
    "fps": lambda v: f"{fmt_count(v)} FPS",
    "energy": fmt_energy,
    "points": lambda v: f"{v * 100:g} points" if num(v) is not None else "—",
    "count": fmt_count,
    "ms": lambda v: f"{fmt_num(v)} ms",
    "mb": lambda v: f"{fmt_num(v)} MB",
    "num": fmt_num,
}


def spec_rows(spec: Mapping[str, Any]) -> list[SpecRow]:
    symbols = TaskSpec.symbols()
    fields = TaskSpec.model_fields
    priorities = {t.threshold: t.priority for t in default_rulebook().targets}
    rows = []
    for name, kind in _SPEC_ROWS:
        if name not in spec:
            continue
        prio = priorities.get(name)
        value = spec[name]
        desc = fields[name].description or "" if name in fields else ""
        priority = ""
        inactive = value is None
        if prio is not None and prio in spec:
            p = num(spec[prio])
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


def task_line(spec: Mapping[str, Any]) -> str:
    shape = spec.get("input_shape")
    shape_s = "x".join(str(d) for d in shape) if isinstance(shape, list | tuple) else "?"
    task = str(spec.get("task") or "?").replace("_", " ")
    classes = spec.get("num_classes", "?")
    return f"{spec.get('dataset', '?')}: {task}, input {shape_s}, {classes} classes"


def val_source(entry: Mapping[str, Any]) -> Any:
    """Where the entry's validation energy came from (nvml, rapl, estimate), if recorded."""
    return (entry.get("energy_sources") or {}).get("val")
