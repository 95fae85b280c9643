"""How the run report writes numbers, times and energy figures for a person."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from archsmith.energy import SOURCES, energy_scope

__all__ = [
    "energy_source_label",
    "energy_source_note",
    "fmt_count",
    "fmt_energy",
    "fmt_energy_scoped",
    "fmt_num",
    "fmt_pct",
    "fmt_seconds",
    "fmt_when",
    "num",
]


def num(v: Any) -> float | None:
    """A finite float, or None for anything else (missing, text, NaN); booleans are not numbers."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def fmt_pct(v: Any) -> str:
    """A fraction as a percentage: 0.98051 -> '98.05%'."""
    f = num(v)
    return "—" if f is None else f"{f * 100:.2f}%"


def fmt_num(v: Any, digits: int = 4) -> str:
    """A plain number with ``digits`` significant digits; booleans as words."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    f = num(v)
    if f is None:
        return "—" if v is None else str(v)
    if 1e4 <= abs(f) < 1e15:  # '19,497' reads better than '1.95e+04'
        return f"{f:,.0f}"
    return f"{f:.{digits}g}"


def fmt_count(v: Any) -> str:
    """An integer with thousands separators: 23722 -> '23,722'."""
    f = num(v)
    return "—" if f is None else f"{f:,.0f}"


def fmt_energy(v: Any) -> str:
    """Energy in kWh-PUE, in scientific notation because candidates span many decades."""
    f = num(v)
    return "—" if f is None else f"{f:.3g} kWh-PUE"


def fmt_seconds(v: Any) -> str:
    """A duration for people: '14.8 s', '3 min 05 s', '2 h 04 min'."""
    f = num(v)
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
    f = num(v)
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
    return text if num(v) is None else f"{text} ({energy_scope(source)})"


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
