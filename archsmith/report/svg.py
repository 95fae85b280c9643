"""Plots as inline SVG, drawn in Python.

A report is mailed around and opened offline, so its plots cannot come from a JavaScript library or
a CDN: they are plain SVG elements written into the page, which also print sharply and carry their
tooltips in ``<title>`` elements. Every element gets a stable class and ``data-*`` attributes
(``class="point best"``, ``data-iteration="7"``, ``class="threshold"``) so tests can find what a
reader sees. Every text is escaped here; callers pass plain strings.

Axis scaling is defensive because real runs produce awkward data: one candidate, equal values,
zeros on a log axis, missing measurements.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from markupsafe import Markup, escape

from archsmith.metrics import pareto_front

__all__ = [
    "Axis",
    "AxisSpec",
    "Mark",
    "Point",
    "Series",
    "Threshold",
    "build_axis",
    "format_value",
    "line_chart",
    "no_data",
    "pareto_chart",
    "pareto_front",
    "usable",
]

Kind = Literal["pct", "count", "energy", "plain", "int"]

WIDTH = 640
HEIGHT = 400
LEFT = 74
RIGHT = 22
BOTTOM = 54
TITLE_Y = 22
LEGEND_Y = 44
LEGEND_ROW = 18
CHAR_W = 6.6  # average width of a 12 px sans-serif character, for laying out the legend


# -- data ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AxisSpec:
    """What an axis shows: its label (with the unit), how to format ticks, linear or log."""

    label: str
    kind: Kind = "plain"
    log: bool = False


@dataclass(frozen=True)
class Point:
    """One candidate in a scatter plot."""

    iteration: int
    x: float
    y: float
    tooltip: str
    best: bool = False


@dataclass(frozen=True)
class Series:
    """One line of a line chart: ``(x, y, tooltip)`` per point, drawn in order."""

    name: str
    key: str
    points: tuple[tuple[float, float, str], ...]


@dataclass(frozen=True)
class Threshold:
    """A user's target, drawn as a dashed line across the plot."""

    axis: Literal["x", "y"]
    value: float
    name: str
    label: str


@dataclass(frozen=True)
class Mark:
    """An iteration without metrics to plot (failed or diverged), marked on the x axis."""

    x: float
    kind: Literal["failed", "diverged"]
    tooltip: str


@dataclass(frozen=True)
class Axis:
    """A scaled axis: its range, its ticks and how to place a value on it."""

    spec: AxisSpec
    lo: float
    hi: float
    ticks: tuple[float, ...]
    step: float

    def frac(self, v: float) -> float:
        """Where ``v`` lies between ``lo`` (0) and ``hi`` (1)."""
        if self.spec.log:
            lo, hi, v = math.log10(self.lo), math.log10(self.hi), math.log10(max(v, self.lo))
        else:
            lo, hi = self.lo, self.hi
        return 0.5 if hi == lo else (v - lo) / (hi - lo)

    def tick_label(self, v: float) -> str:
        """A tick's text, as short as the tick spacing allows."""
        if self.spec.log:
            return _log_tick(v, self.spec.kind)
        return _linear_tick(v, self.step, self.spec.kind)


# -- scaling ---------------------------------------------------------------------------------------


def usable(v: float | None, *, log: bool = False) -> bool:
    """Whether ``v`` can be placed on an axis (finite, and positive on a log axis)."""
    if v is None or isinstance(v, bool) or not math.isfinite(v):
        return False
    return v > 0 if log else True


def _nice_step(span: float, target: int, *, integer: bool) -> float:
    raw = span / max(target, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = 10.0 * mag
    for m in (1.0, 2.0, 5.0, 10.0) if integer else (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= m * mag * (1 + 1e-9):
            step = m * mag
            break
    if integer:
        step = max(1.0, math.ceil(step))
    return step


def _clean(v: float) -> float:
    """Drop the float noise of ``k * step`` (0.30000000000000004 becomes 0.3)."""
    return float(f"{v:.12g}")


def build_axis(
    values: Iterable[float | None],
    spec: AxisSpec,
    *,
    include: Iterable[float] = (),
    bounds: tuple[float, float] | None = None,
    integer: bool = False,
    target_ticks: int = 5,
) -> Axis:
    """Scale an axis to ``values`` and ``include`` (thresholds to keep in view).

    ``bounds`` fixes the range instead (the iteration axis). Degenerate inputs get a sensible range:
    nothing at all, a single value, only zeros, or only non-positive values on a log axis.
    """
    vals = [v for v in (*values, *include) if v is not None and usable(v, log=spec.log)]
    if spec.log:
        return _log_axis(vals, spec, bounds)
    if bounds is not None:
        lo, hi = bounds
        step = _nice_step(hi - lo if hi > lo else 1.0, target_ticks, integer=integer)
        first = math.ceil(lo / step - 1e-9) * step
        ticks = tuple(_clean(first + i * step) for i in range(int((hi - first) / step + 1e-9) + 1))
        return Axis(spec, lo, hi, ticks, step)
    if not vals:
        vals = [0.0, 1.0]
    lo, hi = min(vals), max(vals)
    if hi - lo <= 1e-9 * max(abs(lo), abs(hi)):  # equal up to float noise: one value
        hi = lo
    if hi == lo:
        pad = abs(lo) * 0.1 if lo != 0 else 1.0
        lo, hi = (lo - pad, hi + pad) if lo != 0 else (0.0, 1.0)
        if min(vals) >= 0:
            lo = max(lo, 0.0)
    step = _nice_step(hi - lo, target_ticks, integer=integer)
    lo_t = math.floor(lo / step + 1e-9) * step
    hi_t = math.ceil(hi / step - 1e-9) * step
    n = round((hi_t - lo_t) / step)
    ticks = tuple(_clean(lo_t + i * step) for i in range(n + 1))
    return Axis(spec, _clean(lo_t), _clean(hi_t), ticks, step)


def _log_axis(vals: list[float], spec: AxisSpec, bounds: tuple[float, float] | None) -> Axis:
    if bounds is not None:
        lo_e, hi_e = math.floor(math.log10(bounds[0])), math.ceil(math.log10(bounds[1]))
    elif not vals:
        lo_e, hi_e = 0, 1
    else:
        lo_e = math.floor(math.log10(min(vals)) + 1e-9)
        hi_e = math.ceil(math.log10(max(vals)) - 1e-9)
    hi_e = max(hi_e, lo_e + 1)
    decades = hi_e - lo_e
    every = max(1, math.ceil(decades / 7))
    ticks = [10.0**e for e in range(lo_e, hi_e + 1) if (e - lo_e) % every == 0]
    if decades <= 2:
        subs = (_clean(m * 10.0**e) for e in range(lo_e, hi_e) for m in (1.0, 2.0, 5.0))
        ticks = [*sorted(subs), 10.0**hi_e]
    return Axis(spec, 10.0**lo_e, 10.0**hi_e, tuple(ticks), float(every))


# -- formatting ------------------------------------------------------------------------------------

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _si(v: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def _log_tick(v: float, kind: Kind) -> str:
    if kind in ("count", "int"):
        return _si(v)
    exp = math.floor(math.log10(v) + 1e-9)
    mant = round(v / 10.0**exp)
    power = "10" + str(exp).translate(_SUPERSCRIPT)
    if kind == "pct":
        return f"{v:g}%"
    return power if mant == 1 else f"{mant}·{power}"


def _linear_tick(v: float, step: float, kind: Kind) -> str:
    if kind == "count" and abs(v) >= 1000:
        return _si(v)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    if step > 0 and not math.isclose(step * 10**decimals % 1, 0, abs_tol=1e-6):
        decimals += 1
    text = f"{v:,.{decimals}f}" if kind in ("count", "int") else f"{v:.{decimals}f}"
    if text.startswith("-") and float(text.replace(",", "")) == 0:
        text = text[1:]
    return text + ("%" if kind == "pct" else "")


def format_value(v: float | None, kind: Kind) -> str:
    """A value for reading (tooltips, tables), with the precision a person wants."""
    if v is None or isinstance(v, bool):
        return "—" if v is None else str(v).lower()
    if not math.isfinite(v):
        return str(v)
    if kind == "pct":
        return f"{v:.2f}%"
    if kind in ("count", "int"):
        return f"{v:,.0f}"
    if kind == "energy":
        return f"{v:.3g} kWh-PUE"
    return f"{v:.4g}"


# -- SVG building ----------------------------------------------------------------------------------


def _n(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _el(tag: str, attrs: Mapping[str, object] | None = None, *children: str) -> Markup:
    """``<tag attrs>children</tag>``; attribute values and plain-string children are escaped."""
    parts = [f"<{tag}"]
    for k, v in (attrs or {}).items():
        if v is None or v is False:
            continue
        value = _n(v) if isinstance(v, float) else str(v)
        parts.append(f' {k}="{escape(value)}"')
    if not children:
        return Markup("".join(parts) + "/>")
    body = "".join(str(escape(c)) for c in children)
    return Markup("".join(parts) + ">" + body + f"</{tag}>")


def _title(text: str) -> Markup:
    return _el("title", None, text)


def _star(cx: float, cy: float, r: float) -> str:
    pts = []
    for i in range(10):
        rad = r if i % 2 == 0 else r * 0.45
        a = math.pi / 2 + i * math.pi / 5
        pts.append(f"{_n(cx + rad * math.cos(a))},{_n(cy - rad * math.sin(a))}")
    return "M" + " L".join(pts) + " Z"


def _cross(cx: float, cy: float, r: float) -> str:
    return (
        f"M{_n(cx - r)},{_n(cy - r)} L{_n(cx + r)},{_n(cy + r)}"
        f" M{_n(cx - r)},{_n(cy + r)} L{_n(cx + r)},{_n(cy - r)}"
    )


@dataclass(frozen=True)
class _Frame:
    """Pixel geometry of one plot; ``top`` depends on how many legend rows there are."""

    x: Axis
    y: Axis
    top: float

    @property
    def bottom(self) -> float:
        return HEIGHT - BOTTOM

    def px(self, v: float) -> float:
        return LEFT + self.x.frac(v) * (WIDTH - LEFT - RIGHT)

    def py(self, v: float) -> float:
        return self.bottom - self.y.frac(v) * (self.bottom - self.top)


def _legend_rows(items: Sequence[tuple[str, str]]) -> list[list[tuple[str, str, float]]]:
    """Lay legend items out left to right, wrapping to a new row when the plot's width is used."""
    rows: list[list[tuple[str, str, float]]] = [[]]
    x: float = LEFT
    for swatch, label in items:
        w = 22 + len(label) * CHAR_W + 16
        if rows[-1] and x + w > WIDTH - RIGHT:
            rows.append([])
            x = LEFT
        rows[-1].append((swatch, label, x))
        x += w
    return rows


def _legend(rows: list[list[tuple[str, str, float]]]) -> Markup:
    out: list[str] = []
    for r, row in enumerate(rows):
        y = LEGEND_Y + r * LEGEND_ROW
        for swatch, label, x in row:
            out.append(
                _el(
                    "g",
                    {"class": "legend-item", "data-swatch": swatch},
                    _swatch(swatch, x + 9, y - 4),
                    _el("text", {"x": x + 22, "y": y}, label),
                )
            )
    return Markup(_el("g", {"class": "legend"}, *out))


def _swatch(kind: str, cx: float, cy: float) -> Markup:
    """A legend's sample of a mark; its classes (``sw-*``) differ from the data's on purpose."""
    if kind == "best":
        return _el("path", {"class": "sw-best", "d": _star(cx, cy, 7)})
    if kind in ("threshold", "front"):
        return _el("line", {"class": f"sw-{kind}", "x1": cx - 9, "y1": cy, "x2": cx + 9, "y2": cy})
    if kind in ("failed", "diverged"):
        return _el("path", {"class": f"sw-{kind}", "d": _cross(cx, cy, 4.5)})
    if kind.startswith("series-"):
        return Markup(
            _el(
                "line", {"class": f"sw-line {kind}", "x1": cx - 9, "y1": cy, "x2": cx + 9, "y2": cy}
            )
            + _el("circle", {"class": f"sw-dot {kind}", "cx": cx, "cy": cy, "r": 3})
        )
    return _el("circle", {"class": "sw-point", "cx": cx, "cy": cy, "r": 4})


def _axes(f: _Frame) -> Markup:
    out: list[str] = [
        _el(
            "rect",
            {
                "class": "plot-area",
                "x": LEFT,
                "y": f.top,
                "width": WIDTH - LEFT - RIGHT,
                "height": f.bottom - f.top,
            },
        )
    ]
    for t in f.x.ticks:
        x = f.px(t)
        out.append(_el("line", {"class": "grid", "x1": x, "y1": f.top, "x2": x, "y2": f.bottom}))
        out.append(
            _el(
                "text",
                {"class": "tick x-tick", "x": x, "y": f.bottom + 16, "text-anchor": "middle"},
                f.x.tick_label(t),
            )
        )
    for t in f.y.ticks:
        y = f.py(t)
        out.append(
            _el("line", {"class": "grid", "x1": LEFT, "y1": y, "x2": WIDTH - RIGHT, "y2": y})
        )
        out.append(
            _el(
                "text",
                {"class": "tick y-tick", "x": LEFT - 6, "y": y + 4, "text-anchor": "end"},
                f.y.tick_label(t),
            )
        )
    out.append(
        _el(
            "text",
            {
                "class": "axis-label x-label",
                "x": LEFT + (WIDTH - LEFT - RIGHT) / 2,
                "y": HEIGHT - 12,
                "text-anchor": "middle",
            },
            f.x.spec.label,
        )
    )
    cy = (f.top + f.bottom) / 2
    out.append(
        _el(
            "text",
            {
                "class": "axis-label y-label",
                "x": 16,
                "y": cy,
                "text-anchor": "middle",
                "transform": f"rotate(-90 16 {_n(cy)})",
            },
            f.y.spec.label,
        )
    )
    return Markup("".join(out))


def _thresholds(f: _Frame, thresholds: Sequence[Threshold]) -> Markup:
    out: list[str] = []
    for t in thresholds:
        attrs = {"class": "threshold", "data-threshold": t.name, "data-value": f"{t.value:g}"}
        if t.axis == "y":
            y = f.py(t.value)
            line = _el("line", {**attrs, "x1": LEFT, "y1": y, "x2": WIDTH - RIGHT, "y2": y})
            label = _el(
                "text",
                {
                    "class": "threshold-label",
                    "x": LEFT + 6,
                    "y": y - 5 if y - 16 > f.top else y + 14,
                },
                t.label,
            )
        else:
            x = f.px(t.value)
            line = _el("line", {**attrs, "x1": x, "y1": f.top, "x2": x, "y2": f.bottom})
            lx = x - 5 if x - 16 > LEFT else x + 13
            label = _el(
                "text",
                {
                    "class": "threshold-label",
                    "x": lx,
                    "y": f.bottom - 6,
                    "transform": f"rotate(-90 {_n(lx)} {_n(f.bottom - 6)})",
                },
                t.label,
            )
        out.append(_el("g", {"class": "threshold-group"}, _title(t.label), line, label))
    return Markup("".join(out))


def _svg(
    plot_id: str, kind: str, title: str, legend: Sequence[tuple[str, str]], *body: str
) -> Markup:
    return _el(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "class": f"plot {kind}",
            "data-plot": plot_id,
            "id": f"plot-{plot_id}",
            "viewBox": f"0 0 {WIDTH} {HEIGHT}",
            "role": "img",
            "aria-label": title,
        },
        _el("text", {"class": "plot-title", "x": LEFT, "y": TITLE_Y}, title),
        _legend(_legend_rows(legend)),
        *body,
    )


def _top(legend: Sequence[tuple[str, str]]) -> float:
    return LEGEND_Y + (len(_legend_rows(legend)) - 1) * LEGEND_ROW + 16


def no_data(plot_id: str, message: str) -> Markup:
    """What stands in a plot's place when there is nothing to draw: a sentence, not empty axes."""
    return _el("p", {"class": "no-data", "data-plot": plot_id}, message)


# -- charts ----------------------------------------------------------------------------------------


def pareto_chart(
    plot_id: str,
    title: str,
    x: AxisSpec,
    y: AxisSpec,
    points: Sequence[Point],
    *,
    maximize: tuple[bool, bool],
    thresholds: Sequence[Threshold] = (),
    x_kind: Kind | None = None,
) -> Markup:
    """Every candidate as a point, the non-dominated front joined, the best starred, targets dashed.

    Points that cannot be placed (missing, or not positive on a log axis) are left out; the caller
    says so in the caption.
    """
    pts = [p for p in points if usable(p.x, log=x.log) and usable(p.y, log=y.log)]
    if not pts:
        return no_data(plot_id, f"{title}: no candidate has values to plot.")
    fx = build_axis([p.x for p in pts], x, include=[t.value for t in thresholds if t.axis == "x"])
    fy = build_axis([p.y for p in pts], y, include=[t.value for t in thresholds if t.axis == "y"])
    legend = [("point", "candidate"), ("front", "Pareto front"), ("best", "best (CM)")]
    if thresholds:
        legend.append(("threshold", "target"))
    f = _Frame(fx, fy, _top(legend))
    front = pareto_front([(p.x, p.y) for p in pts], maximize=maximize)
    on_front = set(front)
    line = " ".join(f"{_n(f.px(pts[i].x))},{_n(f.py(pts[i].y))}" for i in front)
    body: list[str] = [_axes(f), _thresholds(f, thresholds)]
    body.append(_el("polyline", {"class": "front-line", "points": line}))
    marks: list[str] = []
    best: list[str] = []
    for i, p in enumerate(pts):
        cx, cy = f.px(p.x), f.py(p.y)
        cls = "point" + (" front" if i in on_front else "")
        attrs = {"data-iteration": p.iteration, "data-x": f"{p.x:g}", "data-y": f"{p.y:g}"}
        if p.best:
            best.append(
                _el(
                    "path",
                    {"class": cls + " best", **attrs, "d": _star(cx, cy, 9)},
                    _title(p.tooltip),
                )
            )
        else:
            marks.append(
                _el(
                    "circle",
                    {"class": cls, **attrs, "cx": cx, "cy": cy, "r": 4.5},
                    _title(p.tooltip),
                )
            )
    body.append(_el("g", {"class": "points"}, *marks, *best))
    return _svg(plot_id, "pareto", title, legend, *body)


def line_chart(
    plot_id: str,
    title: str,
    x: AxisSpec,
    y: AxisSpec,
    series: Sequence[Series],
    *,
    x_range: tuple[float, float],
    thresholds: Sequence[Threshold] = (),
    marks: Sequence[Mark] = (),
    best: tuple[float, float, str] | None = None,
) -> Markup:
    """Metrics over iterations: one line per series, failures marked on the x axis, best starred."""
    values = [v for s in series for _, v, _ in s.points]
    fx = build_axis([], x, bounds=x_range, integer=True, target_ticks=10)
    fy = build_axis(values, y, include=[t.value for t in thresholds if t.axis == "y"])
    legend = [(f"series-{s.key}", s.name) for s in series]
    if best is not None:
        legend.append(("best", "best (CM)"))
    if thresholds:
        legend.append(("threshold", "target"))
    for kind in ("failed", "diverged"):
        if any(m.kind == kind for m in marks):
            legend.append((kind, kind))
    f = _Frame(fx, fy, _top(legend))
    body: list[str] = [_axes(f), _thresholds(f, thresholds)]
    for m in marks:
        cx = f.px(m.x)
        body.append(
            _el(
                "g",
                {"class": f"mark {m.kind}", "data-iteration": f"{m.x:g}"},
                _title(m.tooltip),
                _el(
                    "rect",
                    {
                        "class": "mark-band",
                        "x": cx - 3,
                        "y": f.top,
                        "width": 6.0,
                        "height": f.bottom - f.top,
                    },
                ),
                _el("path", {"d": _cross(cx, f.bottom - 8, 4.5)}),
            )
        )
    for s in series:
        pts = [(px, py, tip) for px, py, tip in s.points if usable(py, log=y.log)]
        coords = " ".join(f"{_n(f.px(px))},{_n(f.py(py))}" for px, py, _ in pts)
        dots = [
            _el(
                "circle",
                {
                    "class": f"marker series-{s.key}",
                    "data-iteration": f"{px:g}",
                    "cx": f.px(px),
                    "cy": f.py(py),
                    "r": 3.5,
                },
                _title(tip),
            )
            for px, py, tip in pts
        ]
        body.append(
            _el(
                "g",
                {"class": "series-group", "data-series": s.key},
                _el("polyline", {"class": f"series series-{s.key}", "points": coords}),
                *dots,
            )
        )
    if best is not None and usable(best[1], log=y.log):
        bx, by, tip = best
        body.append(
            _el(
                "path",
                {
                    "class": "point best",
                    "data-iteration": f"{bx:g}",
                    "d": _star(f.px(bx), f.py(by), 9),
                },
                _title(tip),
            )
        )
    return _svg(plot_id, "line", title, legend, *body)
