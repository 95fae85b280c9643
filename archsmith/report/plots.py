"""The run report's plots: progress per iteration and the Pareto views, as inline SVG."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from markupsafe import Markup

from archsmith.report import svg
from archsmith.report.formats import fmt_count, fmt_energy_scoped, fmt_pct, num
from archsmith.report.svg import AxisSpec, Mark, Point, Series, Threshold
from archsmith.report.views import (
    entry_metrics,
    error_view,
    is_evaluated,
    iteration_number,
    val_source,
)

__all__ = ["Figure", "pareto_plots", "progress_plots"]


@dataclass(frozen=True)
class Figure:
    """A plot and the sentence under it."""

    svg: Markup
    caption: str


def _tooltip(n: int, entry: Mapping[str, Any]) -> str:
    m = entry_metrics(entry)
    cm = num(entry.get("combined_metric"))
    parts = [
        f"Iteration {n}",
        f"val acc {fmt_pct(m.get('val_accuracy'))}",
        f"train acc {fmt_pct(m.get('train_accuracy'))}",
        f"{fmt_count(m.get('fps'))} FPS",
        fmt_energy_scoped(m.get("val_energy_kwh_pue"), val_source(entry)),
        f"{fmt_count(m.get('params'))} params",
    ]
    if cm is not None:
        parts.append(f"CM {cm:.4f}")
    return parts[0] + ": " + ", ".join(parts[1:])


def _pct(v: Any) -> float | None:
    f = num(v)
    return None if f is None else f * 100


def _wide(values: Sequence[float | None]) -> bool:
    """Whether positive values span enough decades that a log axis reads better."""
    pos = [v for v in values if v is not None and v > 0]
    return bool(pos) and max(pos) / min(pos) > 30


def progress_plots(
    iterations: Sequence[Mapping[str, Any]], spec: Mapping[str, Any], best: int | None
) -> list[Figure]:
    numbers = [iteration_number(e, i) for i, e in enumerate(iterations)]
    x_range = (min(numbers) - 0.5, max(numbers) + 0.5)
    it_axis = AxisSpec("Iteration", "int")
    evaluated = [(n, e) for n, e in zip(numbers, iterations, strict=True) if is_evaluated(e)]
    marks = []
    for n, e in zip(numbers, iterations, strict=True):
        if e.get("status") in ("failed", "diverged"):
            kind: Literal["failed", "diverged"] = (
                "failed" if e.get("status") == "failed" else "diverged"
            )
            err = error_view(e.get("error")) if e.get("error") else None
            why = f"{err['type']}: {err['message']}" if err else "training diverged"
            marks.append(Mark(float(n), kind, f"Iteration {n} {kind}: {why}"))
    tips = {n: _tooltip(n, e) for n, e in evaluated}
    best_n = numbers[best] if best is not None else None
    best_m = entry_metrics(iterations[best]) if best is not None else {}

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
                    series(
                        "validation", "val", lambda e: _pct(entry_metrics(e).get("val_accuracy"))
                    ),
                    series(
                        "training", "train", lambda e: _pct(entry_metrics(e).get("train_accuracy"))
                    ),
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
        cm = num(e.get("combined_metric"))
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
                    series("CM", "cm", lambda e: num(e.get("combined_metric"))),
                    Series("best so far", "best-so-far", tuple(running)),
                ],
                x_range=x_range,
                marks=marks,
                best=star(
                    num(iterations[best].get("combined_metric")) if best is not None else None
                ),
            ),
            "CM weighs accuracy, FPS and energy with the spec's W_A, W_F and W_E; the best"
            " candidate is the one with the highest CM.",
        )
    )
    fps_values = [num(entry_metrics(e).get("fps")) for _, e in evaluated]
    tf = num(spec.get("fps_threshold"))
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
                [series("FPS", "fps", lambda e: num(entry_metrics(e).get("fps")))],
                x_range=x_range,
                thresholds=[Threshold("y", tf, "TF", f"TF {tf:,.0f} FPS")]
                if tf is not None
                else [],
                marks=marks,
                best=star(num(best_m.get("fps"))),
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
                    series("training", "train-energy", lambda e: num(entry_metrics(e).get(_TE))),
                    series("validation", "val-energy", lambda e: num(entry_metrics(e).get(_VE))),
                ],
                x_range=x_range,
                thresholds=_energy_thresholds(spec),
                marks=marks,
                best=star(num(best_m.get(_VE))),
            ),
            "Energy to train each candidate (T_E) and to evaluate the validation set (V_E), in"
            " kWh-PUE; dashed lines are the budgets TT_E and TV_E.",
        )
    )
    return figures


_TE, _VE = "train_energy_kwh_pue", "val_energy_kwh_pue"


def _energy_thresholds(spec: Mapping[str, Any]) -> list[Threshold]:
    """TT_E and TV_E as lines; one line with both names when they are equal (the defaults)."""
    tte = num(spec.get("train_energy_threshold_kwh_pue"))
    tve = num(spec.get("val_energy_threshold_kwh_pue"))
    if tte is not None and tte == tve:
        return [Threshold("y", tte, "TT_E,TV_E", f"TT_E = TV_E {tte:.3g}")]
    lines = [Threshold("y", tte, "TT_E", f"TT_E {tte:.3g}")] if tte is not None else []
    return lines + ([Threshold("y", tve, "TV_E", f"TV_E {tve:.3g}")] if tve is not None else [])


def pareto_plots(
    iterations: Sequence[Mapping[str, Any]], spec: Mapping[str, Any], best: int | None
) -> list[Figure]:
    numbers = [iteration_number(e, i) for i, e in enumerate(iterations)]
    evaluated = [
        (i, n, e)
        for i, (n, e) in enumerate(zip(numbers, iterations, strict=True))
        if is_evaluated(e)
    ]
    skipped = len(iterations) - len(evaluated)
    tv = _pct(spec.get("val_accuracy_threshold"))
    acc_axis = AxisSpec("Validation accuracy (%)", "pct")
    acc_line = [Threshold("y", tv, "TV_Acc", f"TV_Acc {tv:g}%")] if tv is not None else []
    tf = num(spec.get("fps_threshold"))
    tve = num(spec.get("val_energy_threshold_kwh_pue"))
    mp = num(spec.get("max_params"))
    fps_values = [num(entry_metrics(e).get("fps")) for _, _, e in evaluated]
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
            m = entry_metrics(e)
            x, y = num(m.get(key)), _pct(m.get("val_accuracy"))
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
