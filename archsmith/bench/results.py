"""What a benchmark grid produces: every search, the aggregates over seeds, and the skipped parts.

These models are ``results.json``; `aggregate` turns the searches into the per-strategy
statistics the tables and plots show.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from archsmith import __version__
from archsmith.bench.config import BenchConfig

__all__ = [
    "FORMAT",
    "Aggregate",
    "BenchResult",
    "BenchmarkInfo",
    "SearchResult",
    "Skipped",
    "aggregate",
]

FORMAT: Final = 2
"""Version of ``results.json``; raised when a field changes meaning or disappears.

2: a benchmark may be searched on several datasets (``config.datasets`` maps a benchmark to a list,
aggregates and plots are per benchmark, dataset and objective, ``BenchmarkInfo.datasets``); user
spaces (``config.spaces``); ``config.device`` may be null (each space's first device); skipped
entries carry their dataset; aggregates add ``best_accuracy_mean``."""


class SearchResult(BaseModel):
    """One search: a strategy with one seed on one (benchmark, dataset, objective)."""

    model_config = ConfigDict(extra="forbid")

    strategy: str
    benchmark: str
    dataset: str
    objective: str = Field(description="The objective's key: accuracy, m-factor or latency.")
    objective_label: str = Field(description="The objective's own name, e.g. latency:pi4<=20ms.")
    seed: int
    evaluations: int = Field(description="Lookups made, repeats included (the budget if spent).")
    best_arch: str = Field(description="The best architecture found, in the benchmark's notation.")
    best_rank: int = Field(description="Its rank in the whole space; 1 is the best there is.")
    best_accuracy: float = Field(description="Its test accuracy, a fraction in [0, 1].")
    best_score: float | None = Field(description="Its objective score; None when infeasible.")
    best_m_factor: float | None = Field(description="Its M-factor, whatever the objective.")
    feasible: bool = Field(description="Whether it meets the objective's constraint.")
    best_rank_so_far: list[int] = Field(description="After each evaluation, the best rank yet.")
    trace: list[dict[str, Any]] = Field(
        default_factory=list, description="The strategy's account of each candidate, if any."
    )
    llm_calls: list[dict[str, Any]] = Field(default_factory=list)
    seconds: float = Field(description="Wall time of the search; the only field that varies.")


class Aggregate(BaseModel):
    """A strategy on one (benchmark, objective), over every seed.

    Quartiles use numpy's default (linear interpolation between order statistics).
    """

    model_config = ConfigDict(extra="forbid")

    benchmark: str
    dataset: str
    objective: str
    objective_label: str
    strategy: str
    seeds: int
    budget: int
    space_size: int
    best_rank_median: float
    best_rank_q25: float
    best_rank_q75: float
    best_rank_mean: float = Field(description="The anchors (papers) quote means, so it is kept.")
    best_rank_min: int
    best_rank_max: int
    best_accuracy_median: float
    best_accuracy_mean: float = Field(description="GENIUS and RoBoT report mean accuracies.")
    m_factor_median: float | None
    feasible_fraction: float = Field(description="Share of seeds whose best meets the constraint.")
    curve_median: list[float] = Field(description="Median best rank so far after each evaluation.")
    curve_q25: list[float]
    curve_q75: list[float]


class Skipped(BaseModel):
    """Part of the default grid that did not run, and why."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["benchmark", "objective", "strategy"]
    name: str
    benchmark: str | None = None
    dataset: str | None = None
    reason: str


class BenchmarkInfo(BaseModel):
    """A benchmark as searched: which space and datasets, its size and devices."""

    model_config = ConfigDict(extra="forbid")

    benchmark: str
    space: str
    datasets: list[str]
    size: int
    devices: list[str]
    source: str | None = Field(default=None, description="The space file of a user's space.")


class BenchResult(BaseModel):
    """Everything ``results.json`` holds: the configuration, every search, the aggregates."""

    model_config = ConfigDict(extra="forbid")

    format: int = FORMAT
    archsmith_version: str = __version__
    command: str
    config: BenchConfig
    quartiles: str = "numpy.percentile, linear interpolation (numpy's default)"
    benchmarks: list[BenchmarkInfo]
    strategies: list[str]
    skipped: list[Skipped]
    aggregates: list[Aggregate]
    searches: list[SearchResult]
    seconds: float


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    q25, q50, q75 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return float(q25), float(q50), float(q75)


def aggregate(
    searches: Sequence[SearchResult], sizes: dict[str, int], budget: int
) -> list[Aggregate]:
    """Per (benchmark, dataset, objective, strategy), in the order the searches come: ranks,
    accuracy, M-factor and feasibility over seeds, and the best-so-far curve's median and quartiles.

    A search that stopped early keeps its last best rank for the evaluations it did not make, as
    a best-so-far curve would.
    """
    groups: dict[tuple[str, str, str, str], list[SearchResult]] = {}
    for s in searches:
        groups.setdefault((s.benchmark, s.dataset, s.objective, s.strategy), []).append(s)
    out: list[Aggregate] = []
    for (bench, _, key, strategy), group in groups.items():
        ranks = [float(s.best_rank) for s in group]
        q25, median, q75 = _quartiles(ranks)
        curves = np.asarray([_pad(s.best_rank_so_far, budget) for s in group], dtype=float).reshape(
            len(group), budget
        )
        c25, c50, c75 = np.percentile(curves, [25, 50, 75], axis=0)
        m_factors = [s.best_m_factor for s in group if s.best_m_factor is not None]
        out.append(
            Aggregate(
                benchmark=bench,
                dataset=group[0].dataset,
                objective=key,
                objective_label=group[0].objective_label,
                strategy=strategy,
                seeds=len(group),
                budget=budget,
                space_size=sizes[bench],
                best_rank_median=median,
                best_rank_q25=q25,
                best_rank_q75=q75,
                best_rank_mean=float(np.mean(ranks)),
                best_rank_min=min(s.best_rank for s in group),
                best_rank_max=max(s.best_rank for s in group),
                best_accuracy_median=float(np.median([s.best_accuracy for s in group])),
                best_accuracy_mean=float(np.mean([s.best_accuracy for s in group])),
                m_factor_median=float(np.median(m_factors)) if m_factors else None,
                feasible_fraction=sum(s.feasible for s in group) / len(group),
                curve_median=[float(v) for v in c50],
                curve_q25=[float(v) for v in c25],
                curve_q75=[float(v) for v in c75],
            )
        )
    return out


def _pad(curve: Sequence[int], budget: int) -> list[int]:
    if not curve:
        raise ValueError("a search without evaluations has no best-so-far curve")
    return [*curve[:budget], *[curve[-1]] * (budget - len(curve))]
