"""The contract between tabular search spaces, objectives, strategies and the benchmark runner.

A tabular benchmark replaces training with a lookup, so search strategies can be compared over
many seeds in seconds. An architecture is a tuple of choice indices, one per position (a layer of
NAS-Bench-Macro, an edge of the NAS-Bench-201 cell). The ``Evaluator`` is the only way a strategy
learns anything about an architecture: it counts the budget, keeps the trajectory, and turns the
table's row into the same ``EvaluationMetrics`` the agent's critic reads, so the rulebook and the
architects run unchanged on a benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from archsmith import judge
from archsmith.spec import TaskSpec
from archsmith.tools.schemas import EvaluationMetrics

__all__ = [
    "Arch",
    "BudgetExhausted",
    "Evaluation",
    "Evaluator",
    "Objective",
    "Record",
    "Strategy",
    "TabularSpace",
    "competition_ranks",
]

#: One choice index per position; ``space.choices[arch[i]]`` names the operation at position i.
Arch = tuple[int, ...]


@dataclass(frozen=True)
class Record:
    """What the table says about one architecture on one dataset."""

    accuracy: float  # test accuracy as a fraction in [0, 1] (mean over the table's seeds)
    params: int | None = None  # parameter count, when the benchmark gives or implies it
    flops: float | None = None  # FLOPs of one forward pass of one sample, when known
    latency_ms: dict[str, float] = field(default_factory=dict)  # device name -> measured latency


@runtime_checkable
class TabularSpace(Protocol):
    """A search space whose every architecture has been trained already."""

    name: str  # "nas-bench-macro", "nas-bench-201"
    positions: int  # 8 layers, 6 edges
    choices: tuple[str, ...]  # operation names, the same at every position
    datasets: tuple[str, ...]  # e.g. ("cifar10",) or ("cifar10", "cifar100", "imagenet16-120")
    devices: tuple[str, ...]  # devices with measured latency; () when none

    def size(self) -> int:
        """How many architectures the table holds (6,561; 15,625)."""
        ...

    def all_archs(self) -> Sequence[Arch]:
        """Every architecture of the space, in a fixed order."""
        ...

    def encode(self, arch: Arch) -> str:
        """The benchmark's own name for the architecture ('22212220', '|nor_conv_3x3~0|+...')."""
        ...

    def decode(self, text: str) -> Arch:
        """The inverse of ``encode``; a ValueError that says what is wrong otherwise."""
        ...

    def record(self, arch: Arch, dataset: str) -> Record:
        """The table's row for ``arch`` on ``dataset``."""
        ...


class Objective(Protocol):
    """What the search maximises, and how it looks to the rulebook critic."""

    name: str  # "accuracy", "m-factor", "latency:pi4<=20ms"

    @property
    def limits(self) -> judge.Limits:
        """The hard limits ``feasible`` checks (every field None: none): what a search may
        know of the constraint before it looks anything up."""
        ...

    def score(self, record: Record) -> float:
        """Higher is better; an infeasible architecture scores ``-inf``."""
        ...

    def feasible(self, record: Record) -> bool:
        """Whether the architecture meets the objective's hard limits, by the judge's rule
        (``archsmith.judge.meets_limits``); always True without any."""
        ...

    def spec(self) -> TaskSpec:
        """The TaskSpec whose thresholds and priorities make the rulebook chase this objective."""
        ...

    def metrics(self, record: Record) -> EvaluationMetrics:
        """The row as the metrics the critic reads (no training accuracy in a table: see doc)."""
        ...


def competition_ranks(scores: Sequence[float]) -> list[int]:
    """1 for the best score; ties share the better rank ("1224" ranking), -inf ranks last."""
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
    ranks = [0] * len(scores)
    previous: float | None = None
    current = 0
    for position, i in enumerate(order, start=1):
        if previous is None or scores[i] != previous:
            current = position
            previous = scores[i]
        ranks[i] = current
    return ranks


class BudgetExhausted(Exception):  # noqa: N818 - a signal to stop, not an error
    """The strategy asked for more evaluations than its budget."""


@dataclass(frozen=True)
class Evaluation:
    """One lookup as a strategy sees it, with where the architecture ranks in the whole space."""

    number: int  # 1-based evaluation count within this search
    arch: Arch
    record: Record
    score: float
    feasible: bool
    rank: int  # 1 = the best architecture of the space under this objective
    metrics: EvaluationMetrics


class Evaluator:
    """Looks architectures up, counts the budget, and keeps the trajectory of one search.

    Ranks are computed once per (space, dataset, objective) over the whole table and shared, so a
    strategy's best rank is exact. Every call costs one evaluation, a repeat included, as a real
    search would pay for training the same network twice.
    """

    def __init__(
        self,
        space: TabularSpace,
        dataset: str,
        objective: Objective,
        budget: int,
        ranks: dict[Arch, int] | None = None,
    ) -> None:
        if dataset not in space.datasets:
            raise ValueError(f"{space.name} has no dataset {dataset!r}; it has {space.datasets}")
        self.space = space
        self.dataset = dataset
        self.objective = objective
        self.budget = budget
        self.ranks = ranks if ranks is not None else self.rank_table(space, dataset, objective)
        self.history: list[Evaluation] = []

    @staticmethod
    def rank_table(space: TabularSpace, dataset: str, objective: Objective) -> dict[Arch, int]:
        """The rank of every architecture of the space under ``objective``."""
        archs = list(space.all_archs())
        scores = [objective.score(space.record(a, dataset)) for a in archs]
        return dict(zip(archs, competition_ranks(scores), strict=True))

    @property
    def remaining(self) -> int:
        """Evaluations left in the budget."""
        return self.budget - len(self.history)

    def evaluate(self, arch: Arch) -> Evaluation:
        """Look ``arch`` up; raises BudgetExhausted when the budget is spent."""
        if self.remaining <= 0:
            raise BudgetExhausted(f"the budget of {self.budget} evaluations is spent")
        arch = tuple(int(c) for c in arch)
        if len(arch) != self.space.positions or not all(
            0 <= c < len(self.space.choices) for c in arch
        ):
            raise ValueError(f"{arch} is not an architecture of {self.space.name}")
        record = self.space.record(arch, self.dataset)
        evaluation = Evaluation(
            number=len(self.history) + 1,
            arch=arch,
            record=record,
            score=self.objective.score(record),
            feasible=self.objective.feasible(record),
            rank=self.ranks[arch],
            metrics=self.objective.metrics(record),
        )
        self.history.append(evaluation)
        return evaluation

    def seen(self, arch: Arch) -> bool:
        """Whether ``arch`` was evaluated already in this search."""
        return any(e.arch == tuple(arch) for e in self.history)

    def best(self) -> Evaluation | None:
        """The best evaluation so far by the judge's rank (every limit met first, then the
        score; the earliest among equals)."""
        if not self.history:
            return None
        return max(self.history, key=lambda e: (judge.rank(e.feasible, e.score), -e.number))

    def best_rank_so_far(self) -> list[int]:
        """After each evaluation, the rank of the best architecture found so far."""
        out: list[int] = []
        best = math.inf
        for e in self.history:
            best = min(best, e.rank)
            out.append(int(best))
        return out


class Strategy(Protocol):
    """A search strategy: spends the evaluator's budget, seeded, and stops when it is spent."""

    name: str

    def search(self, evaluator: Evaluator, seed: int) -> None:
        """Call ``evaluator.evaluate`` until ``evaluator.remaining`` is 0."""
        ...
