"""The shared search on a tabular space: what the bench's ``rulebook`` strategy runs.

A table's architecture is one choice per position, so the candidates are every unseen
architecture within ``radius`` positions of the parent (1: one move per step, which beat 2 on
the tuning benchmark), each move labelled by the instruction it enacts (``CapacityMoves``); one
position further when none of them is predicted feasible and able to beat the best.

Under a hard limit (the objective's ``limits``: a latency or size budget), the candidates also
include every *exchange*: two positions of the parent swap their choices, a layer moving to
where another choice was. A one-position edit there either adds cost, which the best
architectures under a limit cannot afford (they spend the budget), or removes capacity; an
exchange keeps the choices, so what they cost (the surrogate's per-choice counts) stays put,
and changes only where each acts. Without a hard limit the cost is free (accuracy) or part of
the score (M-factor), and a one-position edit is the move that trades it, so exchanges are not
offered there (on NAS-Bench-201 ImageNet16-120's M-factor they cost the median 369.5 -> 548).

The surrogate's features are the count of each choice, the one-hot choice at each position, and
the total capacity rank: the first generalises across positions
("3x3 convolutions cost this much"), the second learns where a choice matters, the third carries
the capacity order the space declares.

It starts where the objective points: at the largest architecture (the top of the capacity order
everywhere) when only accuracy counts, at the smallest that still passes its input on (the skip
or identity role everywhere, else the least capacity) when the spec sets a size or latency limit.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from archsmith import judge
from archsmith.bench.base import Arch, Evaluator, Record, TabularSpace
from archsmith.bench.sampling import random_unseen, spend_rest
from archsmith.errors import InputError
from archsmith.search.moves import CapacityMoves, Role, capacity_moves
from archsmith.search.policy import (
    Advice,
    Candidate,
    Choice,
    Knobs,
    Move,
    Observation,
    choose,
)
from archsmith.search.surrogate import Matrix
from archsmith.spec import TaskSpec
from archsmith.tools.rulebook import Rulebook
from archsmith.tools.rulebook_advice import advise

__all__ = [
    "GuidedTabularSearch",
    "TabularFeatures",
    "exchanges",
    "has_hard_limit",
    "space_moves",
    "start_arch",
]

logger = logging.getLogger(__name__)

Start = Literal["objective", "middle"]


def space_moves(space: TabularSpace) -> CapacityMoves:
    """The space's declared capacity order and roles (``capacity``, ``roles`` attributes), else
    its choices as listed with no roles."""
    capacity: Sequence[int] | None = getattr(space, "capacity", None)
    roles: Mapping[int, Role] | None = getattr(space, "roles", None)
    return capacity_moves(space.choices, capacity, roles)


def has_hard_limit(limits: judge.Limits) -> bool:
    """Whether ``limits`` set any hard limit (a candidate past it is infeasible)."""
    return any(
        v is not None for v in (limits.max_params, limits.max_latency_ms, limits.max_model_size_mb)
    )


def exchanges(arch: Arch) -> list[tuple[Arch, tuple[int, int]]]:
    """Every architecture made by swapping the choices of two positions of ``arch`` that hold
    different choices, with the two positions: the same choices (so about the same cost where a
    cost is a sum over choices), each in the other's place."""
    out: list[tuple[Arch, tuple[int, int]]] = []
    for i, j in itertools.combinations(range(len(arch)), 2):
        if arch[i] != arch[j]:
            swapped = list(arch)
            swapped[i], swapped[j] = arch[j], arch[i]
            out.append((tuple(swapped), (i, j)))
    return out


def start_arch(
    moves: CapacityMoves, spec: TaskSpec, positions: int, start: Start = "objective"
) -> Arch:
    """The objective's starting point (see the module docstring); ``start="middle"`` is the
    earlier strategy's, the middle of the capacity order everywhere, kept for comparison."""
    if start == "middle":
        return (moves.capacity[len(moves.capacity) // 2],) * positions
    limited = any(
        v is not None for v in (spec.max_params, spec.max_latency_ms, spec.max_model_size_mb)
    )
    if not limited:
        return (moves.highest(),) * positions
    for role in ("skip", "identity"):
        choice = moves.role_choice(role)
        if choice is not None:
            return (choice,) * positions
    return (moves.lowest(),) * positions


class TabularFeatures:
    """Choice counts, one-hot choice per position, and the capacity rank's sum (scaled to 0-1)."""

    def __init__(
        self, positions: int, moves: CapacityMoves, *, tau_choice: float, tau_position: float
    ) -> None:
        self.positions = positions
        self.n = len(moves.choices)
        rank = moves.rank
        self.level = np.asarray([rank[c] / (self.n - 1) for c in range(self.n)], dtype=float)
        self.prior_sd: Matrix = np.asarray(
            [tau_choice] * self.n + [tau_position] * (positions * self.n) + [tau_choice],
            dtype=float,
        )

    def __call__(self, archs: Sequence[Arch]) -> Matrix:
        """One row per architecture."""
        a = np.asarray(archs, dtype=int).reshape(len(archs), self.positions)
        rows = np.arange(len(a))
        counts = np.zeros((len(a), self.n))
        onehot = np.zeros((len(a), self.positions * self.n))
        for i in range(self.positions):
            np.add.at(counts, (rows, a[:, i]), 1.0)
            onehot[rows, i * self.n + a[:, i]] = 1.0
        capacity = self.level[a].sum(axis=1, keepdims=True)
        return np.hstack([counts, onehot, capacity])


def _metrics(record: Record) -> dict[str, float]:
    """What the surrogate models of a row: accuracy, parameters, latency per device."""
    out = {"accuracy": record.accuracy}
    if record.params is not None:
        out["params"] = float(record.params)
    out.update({f"latency:{d}": v for d, v in record.latency_ms.items()})
    return out


def _record(metrics: Mapping[str, float]) -> Record:
    params = metrics.get("params")
    return Record(
        accuracy=metrics["accuracy"],
        params=None if params is None else round(params),
        latency_ms={k.split(":", 1)[1]: v for k, v in metrics.items() if k.startswith("latency:")},
    )


class GuidedTabularSearch:
    """Rulebook moves, chosen by the objective with a surrogate; one evaluation per step.

    ``trace`` has one JSON-ready dict per evaluation of the latest search, aligned with
    ``evaluator.history``: ``number``, ``arch``, ``from_arch`` (the parent, encoded), ``source``
    ("start", "rulebook" when every move was advised, "explore" when some was not, "random" when
    the parent had no unseen neighbour), ``instruction`` (the codes, "+"-joined), ``rule`` (the
    heaviest rule behind the first advised move), ``weight``, ``moves`` (per move: instruction,
    edit, position, weight, rules, and why when no rule raised it), ``predicted`` (the
    objective on the optimistic prediction), ``promising``, ``considered``. An exchange is a
    step of two moves, each putting the other position's choice in place.

    ``exchange=False`` never offers exchanges, even under a hard limit (for comparison).
    """

    def __init__(
        self,
        *,
        knobs: Knobs | None = None,
        radius: int = 1,
        exchange: bool = True,
        tau_choice: float = 1.0,
        tau_position: float = 0.5,
        moves: CapacityMoves | None = None,
        rulebook: Rulebook | None = None,
        start: Start = "objective",
    ) -> None:
        if radius < 1:
            raise InputError(f"rulebook radius must be 1 or more, got {radius}")
        if start not in ("objective", "middle"):
            raise InputError(f"rulebook start must be 'objective' or 'middle', got {start!r}")
        self.knobs = knobs or Knobs()
        self.radius = radius
        self.exchange = exchange
        self.tau_choice = tau_choice
        self.tau_position = tau_position
        self.moves = moves
        self.rulebook = rulebook
        self.start = start
        self.trace: list[dict[str, Any]] = []

    def search(self, evaluator: Evaluator, seed: int) -> None:
        """Evaluate the start, then one chosen candidate per evaluation until spent."""
        self.trace = []
        space = evaluator.space
        moves = self.moves or space_moves(space)
        spec = evaluator.objective.spec()
        features = TabularFeatures(
            space.positions, moves, tau_choice=self.tau_choice, tau_position=self.tau_position
        )
        rng = random.Random(seed)
        exchange = self.exchange and has_hard_limit(evaluator.objective.limits)
        seen: set[Arch] = set()
        arch = start_arch(moves, spec, space.positions, self.start)
        entry: dict[str, Any] = {"source": "start", "from_arch": None}
        while evaluator.remaining > 0:
            seen.add(arch)
            evaluation = evaluator.evaluate(arch)
            self.trace.append({"number": evaluation.number, "arch": space.encode(arch), **entry})
            if evaluator.remaining == 0:
                break
            parent = judge.parent(evaluator.history, lambda e: judge.rank(e.feasible, e.score))
            if parent is None:  # not reached: the start was just evaluated
                break
            out = advise(parent.metrics, spec, self.rulebook)
            advice = Advice.from_output(out)
            chosen = self._choose(
                evaluator, parent.arch, moves, seen, features, advice, rng, exchange=exchange
            )
            if chosen is None:
                other = random_unseen(space, rng, seen)
                if other is None:
                    break
                arch, entry = (
                    other,
                    {
                        "source": "random",
                        "from_arch": None,
                        "reason": "every architecture near the parent was seen",
                    },
                )
                continue
            arch = chosen.candidate.arch
            explained = [advice.explain(m) for m in chosen.candidate.moves]
            advised = [m for m in explained if m["weight"] > 0.0]
            entry = {
                "source": "rulebook" if len(advised) == len(explained) else "explore",
                "from_arch": space.encode(parent.arch),
                "instruction": "+".join(m["instruction"] for m in explained),
                "rule": advised[0]["rules"][0] if advised and advised[0]["rules"] else None,
                "weight": chosen.weight,
                "moves": explained,
                "predicted": chosen.predicted if math.isfinite(chosen.predicted) else None,
                "promising": chosen.promising,
                "considered": chosen.considered,
            }
            logger.debug("rulebook step %d: %s", evaluation.number + 1, entry)
        spend_rest(evaluator, rng, "rulebook")

    def _choose(
        self,
        evaluator: Evaluator,
        parent: Arch,
        moves: CapacityMoves,
        seen: set[Arch],
        features: TabularFeatures,
        advice: Advice,
        rng: random.Random,
        *,
        exchange: bool,
    ) -> Choice[Arch] | None:
        """The choice among the unseen architectures within ``radius`` of the parent (and its
        exchanges, with ``exchange``); one position further when none of them is predicted
        feasible and able to beat the best. None when nothing is unseen that near."""
        history = evaluator.history
        observations = [Observation(features([e.arch])[0], _metrics(e.record)) for e in history]
        devices = set.intersection(*(set(e.record.latency_ms) for e in history))
        targets = judge.targets(
            [o.metrics for o in observations],
            qualities=["accuracy"],
            costs=["params", *(f"latency:{d}" for d in sorted(devices))],
            floor_at_least_seen={"params"},
        )
        incumbent = max((e.score for e in history if e.feasible), default=-math.inf)
        chosen: Choice[Arch] | None = None
        for radius in (self.radius, self.radius + 1):
            candidates = self._candidates(parent, moves, seen, features, radius, exchange)
            if not candidates:
                continue
            chosen = choose(
                candidates,
                observations,
                targets,
                lambda m: evaluator.objective.score(_record(m)),
                incumbent=incumbent,
                advice=advice,
                prior_sd=features.prior_sd,
                knobs=self.knobs,
                rng=rng,
            )
            if chosen.promising and math.isfinite(chosen.predicted):
                break
        return chosen

    def _candidates(
        self,
        parent: Arch,
        moves: CapacityMoves,
        seen: set[Arch],
        features: TabularFeatures,
        radius: int,
        exchange: bool = False,
    ) -> list[Candidate[Arch]]:
        """Every unseen architecture within ``radius`` positions of ``parent``, and with
        ``exchange`` every unseen exchange of two of its positions (``exchanges``), labelled."""
        n = len(moves.choices)
        found: list[tuple[Arch, tuple[Move, ...]]] = []
        for r in range(1, min(radius, len(parent)) + 1):
            for where in itertools.combinations(range(len(parent)), r):
                options = [[c for c in range(n) if c != parent[i]] for i in where]
                for values in itertools.product(*options):
                    arch = list(parent)
                    for i, c in zip(where, values, strict=True):
                        arch[i] = c
                    key = tuple(arch)
                    if key in seen:
                        continue
                    labels = tuple(
                        Move(moves.instruction(parent[i], c), moves.edit(parent[i], c), i)
                        for i, c in zip(where, values, strict=True)
                    )
                    found.append((key, labels))
        if exchange:
            near = seen | {a for a, _ in found}
            for key, (i, j) in exchanges(parent):
                if key not in near:
                    labels = tuple(
                        Move(moves.instruction(parent[p], key[p]), moves.edit(parent[p], key[p]), p)
                        for p in (i, j)
                    )
                    found.append((key, labels))
        if not found:
            return []
        rows = features([a for a, _ in found])
        return [Candidate(a, labels, rows[j]) for j, (a, labels) in enumerate(found)]
