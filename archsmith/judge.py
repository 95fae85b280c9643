"""The judge: how candidates are judged, in one place, as pure functions (data in, data out).

The critic, parallel rounds, early stopping, the offline architect, the bench's tabular search and
its objectives all decide the same few things; each decision is written here once, so a change
to how candidates compare cannot leave one caller behind:

* the spec-weighted CM (Eq. 1 with the spec's weights and thresholds), and when it is unknown;
* the hard limits a model breaks, and so whether it is feasible;
* ranking: every hard limit met first, then CM (or a bench objective's score);
* the parent a search edits: the best feasible candidate, else the latest;
* the targets a search's surrogate predicts: qualities read optimistically, costs at their mean;
* why a run stops.

Callers adapt their own types (history entries, bench evaluations) to these functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from archsmith.metrics import combined_metric as eq1_combined_metric
from archsmith.spec import BYTES_PER_PARAM, TaskSpec

__all__ = [
    "ACCURACY_SCALE",
    "HardLimits",
    "Limits",
    "Rank",
    "Target",
    "accuracy_target",
    "combined_metric",
    "estimated_size_mb",
    "limit_violations",
    "measured_combined_metric",
    "meets_limits",
    "outranks",
    "parent",
    "rank",
    "stop_reason",
    "targets",
]

T = TypeVar("T")

#: How candidates compare: (meets every hard limit, CM or the objective's score); more is better.
Rank = tuple[bool, float]

#: How close to 0 or 1 a fraction is taken before its logit.
_EPS = 1e-4
#: The smallest scale a cost target gets, so a cost measured as 0 everywhere still has a unit.
_MIN_COST_SCALE = 1e-12

_Values = NDArray[np.float64]


# -- the spec-weighted CM -------------------------------------------------------------------------


def combined_metric(
    spec: TaskSpec,
    train_accuracy: float,
    val_accuracy: float,
    fps: float,
    train_energy_kwh_pue: float,
    val_energy_kwh_pue: float,
) -> float:
    """CM (Eq. 1) with the spec's weights and thresholds: one formula for every caller."""
    return eq1_combined_metric(
        train_accuracy,
        val_accuracy,
        fps,
        train_energy_kwh_pue,
        val_energy_kwh_pue,
        weight_accuracy=spec.weight_accuracy,
        weight_fps=spec.weight_fps,
        weight_energy=spec.weight_energy,
        fps_threshold=spec.fps_threshold,
        train_energy_threshold_kwh_pue=spec.train_energy_threshold_kwh_pue,
        val_energy_threshold_kwh_pue=spec.val_energy_threshold_kwh_pue,
    )


def measured_combined_metric(
    spec: TaskSpec,
    *,
    train_accuracy: float | None,
    val_accuracy: float | None,
    fps: float | None,
    train_energy_kwh_pue: float | None,
    val_energy_kwh_pue: float | None,
) -> float | None:
    """CM of what was measured; None when a figure a positive weight needs was not.

    With W_F > 0 an unmeasured FPS leaves CM unknown (not the CM of a model with 0 FPS), and
    likewise accuracy for W_A and energy for W_E: an unknown figure must not rank a candidate.
    """
    needed = [
        (spec.weight_accuracy, (train_accuracy, val_accuracy)),
        (spec.weight_fps, (fps,)),
        (spec.weight_energy, (train_energy_kwh_pue, val_energy_kwh_pue)),
    ]
    if not all(w == 0.0 or all(v is not None for v in values) for w, values in needed):
        return None
    return combined_metric(
        spec,
        train_accuracy or 0.0,
        val_accuracy or 0.0,
        fps or 0.0,
        train_energy_kwh_pue or 0.0,
        val_energy_kwh_pue or 0.0,
    )


# -- hard limits and feasibility -----------------------------------------------------------------


class Limits(Protocol):
    """The hard limits a model must meet: a TaskSpec, or a bench objective's ``HardLimits``."""

    @property
    def max_params(self) -> float | None: ...

    @property
    def max_latency_ms(self) -> float | None: ...

    @property
    def max_model_size_mb(self) -> float | None: ...


@dataclass(frozen=True)
class HardLimits:
    """Hard limits without the rest of a spec (a bench objective's constraint); None: no limit."""

    max_params: float | None = None
    max_latency_ms: float | None = None
    max_model_size_mb: float | None = None


def limit_violations(
    limits: Limits,
    params: float | None,
    latency_ms: float | None,
    model_size_mb: float | None,
) -> list[str]:
    """The hard limits a model breaks, each as one line; an unmeasured figure breaks none.

    One rule for the agent's critic, early stopping, the offline architect and the bench: a
    model past a limit is never preferred to one within all of them, whatever its accuracy.
    """
    checks = (
        ("params", params, limits.max_params, "max_params"),
        ("latency_ms", latency_ms, limits.max_latency_ms, "max_latency_ms"),
        ("model_size_mb", model_size_mb, limits.max_model_size_mb, "max_model_size_mb"),
    )
    return [
        f"{name} {value:g} > {limit_name} {limit:g}"
        for name, value, limit, limit_name in checks
        if value is not None and limit is not None and value > limit
    ]


def meets_limits(
    limits: Limits,
    *,
    params: float | None = None,
    latency_ms: float | None = None,
    model_size_mb: float | None = None,
) -> bool:
    """Whether a model is feasible: it breaks none of ``limits`` (``limit_violations``)."""
    return not limit_violations(limits, params, latency_ms, model_size_mb)


def estimated_size_mb(params: float) -> float:
    """A model's size before it is measured: its parameters as a float32 checkpoint, in MB."""
    return params * BYTES_PER_PARAM / 1e6


# -- ranking and the parent ----------------------------------------------------------------------


def rank(feasible: bool, score: float) -> Rank:
    """How candidates compare: every hard limit met first, then CM (or the objective's score)."""
    return feasible, score


def outranks(challenger: Rank, holder: Rank | None) -> bool:
    """Whether ``challenger`` takes the place of ``holder`` (None: the place is empty).

    Strictly: among equals the earlier one keeps its place.
    """
    return holder is None or challenger > holder


def parent(items: Sequence[T], rank_of: Callable[[T], Rank]) -> T | None:
    """What a search edits next: the best item that meets every limit with a finite score (the
    earliest among equals), else the latest item; None when there are none.

    Falling back on the latest rather than the least bad keeps a search that has not found a
    feasible candidate yet moving instead of editing one infeasible model over and over.
    """
    feasible = [
        (-i, r[1], item)
        for i, item in enumerate(items)
        if (r := rank_of(item))[0] and math.isfinite(r[1])
    ]
    if feasible:
        return max(feasible, key=lambda f: (f[1], f[0]))[2]
    return items[-1] if items else None


# -- the targets a search predicts ----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A metric a search's surrogate predicts, and how the search reads its prediction.

    A quality (``optimistic``) is read at mean + beta * sd, since an untried edit may be better
    than it looks; a cost at its mean. ``best_possible`` is the bound pruning assumes for a
    quality (accuracy: 1); ``floor``/``ceiling`` clip predictions to values that can occur.
    """

    name: str
    scale: float
    optimistic: bool = False
    best_possible: float | None = None
    floor: float | None = None
    ceiling: float | None = None
    logit: bool = False  # model a fraction on the logit scale, where edits act about evenly

    def clip(self, values: _Values) -> _Values:
        low = -np.inf if self.floor is None else self.floor
        high = np.inf if self.ceiling is None else self.ceiling
        return np.clip(values, low, high)

    def forward(self, values: _Values) -> _Values:
        """The target on the scale the surrogate fits."""
        if not self.logit:
            return values
        p = np.clip(values, _EPS, 1.0 - _EPS)
        return np.asarray(np.log(p / (1.0 - p)), dtype=float)

    def back(self, values: _Values) -> _Values:
        """A fitted value back in the target's units."""
        if not self.logit:
            return values
        return np.asarray(1.0 / (1.0 + np.exp(-values)), dtype=float)


#: The unit of an accuracy model's prior, on the logit scale: near 90 % accuracy an edit worth
#: this much moves accuracy by about two points, near 50 % by about six.
ACCURACY_SCALE = 0.25


def accuracy_target(name: str) -> Target:
    """An accuracy (a fraction) as a quality, fitted on the logit scale, at best 1."""
    return Target(
        name, ACCURACY_SCALE, optimistic=True, best_possible=1.0, floor=0.0, ceiling=1.0, logit=True
    )


def targets(
    observed: Sequence[Mapping[str, float]],
    *,
    qualities: Sequence[str],
    costs: Sequence[str],
    fixed: Sequence[Target] = (),
    floor_at_least_seen: Collection[str] = (),
) -> list[Target]:
    """Accuracies (``qualities``) as qualities; then ``fixed`` targets as given; then each cost
    that was observed at all, read at its expected value in units of its mean, never below 0.

    A cost in ``floor_at_least_seen`` is never predicted below its smallest observed value:
    smaller than that is unknown (and the M-factor needs a size no smaller than the space's
    smallest).
    """
    out = [accuracy_target(name) for name in qualities]
    out.extend(fixed)
    for name in costs:
        values = [m[name] for m in observed if name in m]
        if values:
            floor = float(min(values)) if name in floor_at_least_seen else 0.0
            out.append(Target(name, max(float(np.mean(values)), _MIN_COST_SCALE), floor=floor))
    return out


# -- why a run stops ------------------------------------------------------------------------------


def stop_reason(
    *,
    iteration: int,
    max_iterations: int,
    elapsed_s: float,
    budget_s: float | None,
    stale: int,
    patience: int | None,
    targets_met: bool = False,
) -> str | None:
    """Why the run stops after this iteration (the first reason that holds), or None to go on.

    ``stale`` counts the iterations since the best last improved; ``targets_met`` is the critic's
    "every prioritised target is met" for a feasible, non-diverged candidate.
    """
    if iteration >= max_iterations:
        return f"reached {max_iterations} iterations"
    if budget_s is not None and elapsed_s >= budget_s:
        return f"time budget of {budget_s:g} s spent ({elapsed_s:.0f} s)"
    if patience is not None and stale >= patience:
        return f"no better candidate in {stale} iterations (patience {patience})"
    if targets_met:
        return "every prioritised target is met"
    return None
