"""Which candidate to try next: the rulebook proposes and explains, the objective decides.

Both the bench's ``rulebook`` strategy and the agent's offline architect run the same loop:

1. take the parent: the best candidate so far by the objective (feasible ones first);
2. ask the rulebook for advice on the *parent's* metrics, the candidate being edited, so the
   instructions describe what is edited (``Advice``);
3. turn instructions into candidate edits (the caller's business: a table's capacity order, or
   the architect's description), each labelled with the instructions it enacts;
4. ``choose`` one: every candidate is scored by the objective on metrics a surrogate predicts
   from what has been evaluated, optimistic on quality (accuracy) and expected on costs (size,
   latency); a candidate whose best possible score cannot beat the incumbent ranks last, so the
   limits tighten as the search learns what the costs are. The pick is the best of a seeded,
   rule-weighted sample (heavier instructions are more likely to be in it), unless nothing in
   the sample is predicted feasible and promising; then it is the best of all.

The rules' weights enter twice: in the sample and as a small bonus per unit of weight, which
breaks ties the surrogate cannot (at the start every unseen edit looks alike). Nothing here reads
anything about a candidate but its features and what the caller knows exactly (such as a
description's parameter count).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from archsmith.judge import Target
from archsmith.search.surrogate import Matrix, fit_linear
from archsmith.tools.schemas import RulebookAdviceOutput

__all__ = [
    "Advice",
    "Candidate",
    "Choice",
    "Knobs",
    "Move",
    "Observation",
    "choose",
    "weighted_sample",
]

A = TypeVar("A")

#: Fewest candidates a rule-weighted sample keeps, so a small neighbourhood is not thinned out.
MIN_SAMPLE = 4


@dataclass(frozen=True)
class Move:
    """One instruction applied once: its code and the edit in words."""

    code: str
    edit: str
    position: int | None = None


@dataclass(frozen=True)
class Candidate(Generic[A]):
    """An unseen architecture one or more moves from the parent."""

    arch: A
    moves: tuple[Move, ...]
    features: Matrix
    known: Mapping[str, float] = field(default_factory=dict)  # metrics exact before evaluating


@dataclass(frozen=True)
class Observation:
    """An evaluated architecture as the surrogate sees it."""

    features: Matrix
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class Knobs:
    """The search's settings. Chosen on NAS-Bench-201 CIFAR-10 (docs/benchmarks.md)."""

    beta: float = 2.0  # optimism: posterior sds added to a quality's mean
    bonus: float = 0.01  # score added per unit of rule weight (breaks the surrogate's ties)
    sample: float = 0.5  # share of the candidates considered per step, drawn by rule weight
    base: float = 1.0  # sampling weight of a candidate no rule asked for (advised: base + weight)
    noise: float = 0.1  # observation noise, in units of each target's scale
    prune: bool = True  # rank last what cannot beat the incumbent even at its best


class Advice:
    """The rulebook's advice on the parent, as weights and explanations per instruction."""

    def __init__(
        self,
        weights: Mapping[str, float],
        rules: Mapping[str, Sequence[str]] | None = None,
        dropped: Mapping[str, str] | None = None,
    ) -> None:
        self.weights = dict(weights)
        self.rules = {k: list(v) for k, v in (rules or {}).items()}
        self.dropped = dict(dropped or {})

    @classmethod
    def from_output(cls, out: RulebookAdviceOutput) -> Advice:
        """From ``advise()``: kept instructions with their weights and rules, heaviest rule
        first, and why each dropped one was dropped."""
        return cls.from_instructions(
            (
                {"code": i.code, "weight": i.weight, "raised_by": i.raised_by}
                for i in out.instructions
            ),
            ({"rule_id": r.rule_id, "weight": r.weight} for r in out.fired_rules),
            ({"code": d.code, "reason": d.reason} for d in out.dropped),
        )

    @classmethod
    def from_instructions(
        cls,
        instructions: Iterable[Mapping[str, Any]],
        fired_rules: Iterable[Mapping[str, Any]] = (),
        dropped: Iterable[Mapping[str, Any]] = (),
    ) -> Advice:
        """From resolved instructions as the graph carries them (``code``, ``weight``,
        ``raised_by``), with the critic's record of the same advice where it is at hand: its
        ``fired_rules`` put each instruction's heaviest rule first, its ``dropped`` say why."""
        rule_weight = {str(r["rule_id"]): float(r["weight"]) for r in fired_rules}
        weights: dict[str, float] = {}
        rules: dict[str, list[str]] = {}
        for item in instructions:
            weight = float(item.get("weight", 0.0))
            if weight > 0.0:
                code = str(item["code"])
                weights[code] = weights.get(code, 0.0) + weight
                rules.setdefault(code, []).extend(str(r) for r in item.get("raised_by", []))
        ordered = {c: sorted(r, key=lambda r: -rule_weight.get(r, 0.0)) for c, r in rules.items()}
        return cls(weights, ordered, {str(d["code"]): str(d["reason"]) for d in dropped})

    def ranked(self) -> list[str]:
        """Advised codes, heaviest first."""
        return sorted(self.weights, key=lambda c: -self.weights[c])

    def weight(self, moves: Sequence[Move]) -> float:
        """A candidate's rule weight: the mean over its moves (an unadvised move weighs 0)."""
        if not moves:
            return 0.0
        return sum(self.weights.get(m.code, 0.0) for m in moves) / len(moves)

    def explain(self, move: Move) -> dict[str, Any]:
        """Which rules raised the move's instruction, or why none did."""
        out: dict[str, Any] = {
            "instruction": move.code,
            "edit": move.edit,
            "position": move.position,
            "weight": self.weights.get(move.code, 0.0),
            "rules": self.rules.get(move.code, []),
        }
        if move.code not in self.weights:
            out["why"] = self.dropped.get(move.code, "no rule raised it: explored")
        return out


@dataclass(frozen=True)
class Choice(Generic[A]):
    """The chosen candidate and what the search expected of it."""

    candidate: Candidate[A]
    predicted: float  # the objective on the optimistic prediction
    weight: float  # its rule weight
    promising: bool  # False when even its best possible score could not beat the incumbent
    considered: int  # candidates in the rule-weighted sample


def weighted_sample(weights: Sequence[float], k: int, rng: random.Random) -> list[int]:
    """``k`` distinct indices drawn with probability proportional to ``weights`` (> 0), in their
    original order (Efraimidis and Spirakis' keys: one uniform draw per item)."""
    if k >= len(weights):
        return list(range(len(weights)))
    keys = [rng.random() ** (1.0 / w) for w in weights]
    top = sorted(range(len(weights)), key=lambda i: -keys[i])[:k]
    return sorted(top)


def _predict(
    targets: Sequence[Target],
    observations: Sequence[Observation],
    candidates: Sequence[Candidate[A]],
    prior_sd: Matrix,
    knobs: Knobs,
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Per candidate: the metrics read optimistically, and read at their bound for pruning."""
    x = np.vstack([c.features for c in candidates])
    optimistic: list[dict[str, float]] = [dict(c.known) for c in candidates]
    bound: list[dict[str, float]] = [dict(c.known) for c in candidates]
    for target in targets:
        seen = [o for o in observations if target.name in o.metrics]
        if not seen:
            continue
        y = target.forward(np.asarray([o.metrics[target.name] for o in seen], dtype=float))
        posterior = fit_linear(
            np.vstack([o.features for o in seen]),
            y,
            prior_sd,
            noise_sd=knobs.noise,
            scale=target.scale,
        )
        mu, sd = posterior.predict(x)
        read = target.clip(target.back(mu + knobs.beta * sd if target.optimistic else mu))
        at_best = (
            np.full_like(mu, target.best_possible)
            if target.optimistic and target.best_possible is not None
            else read
        )
        for i, c in enumerate(candidates):
            if target.name not in c.known:
                optimistic[i][target.name] = float(read[i])
                bound[i][target.name] = float(at_best[i])
    return optimistic, bound


def choose(
    candidates: Sequence[Candidate[A]],
    observations: Sequence[Observation],
    targets: Sequence[Target],
    score: Callable[[Mapping[str, float]], float],
    *,
    incumbent: float,
    advice: Advice,
    prior_sd: Matrix,
    knobs: Knobs,
    rng: random.Random,
) -> Choice[A]:
    """The candidate to evaluate next (see the module docstring); ``candidates`` must be unseen.

    ``score`` maps predicted metrics to the objective (``-inf`` when infeasible); ``incumbent``
    is the best score so far (``-inf`` when nothing feasible was found).
    """
    if not candidates:
        raise ValueError("choose needs at least one candidate")
    weights = [advice.weight(c.moves) for c in candidates]
    k = max(MIN_SAMPLE, round(knobs.sample * len(candidates)))
    picked = set(weighted_sample([knobs.base + w for w in weights], k, rng))
    optimistic, bound = _predict(targets, observations, candidates, prior_sd, knobs)
    ranked: list[tuple[tuple[bool, bool, float, float], int, float, bool]] = []
    for i in range(len(candidates)):
        value = score(optimistic[i])
        promising = not (knobs.prune and math.isfinite(incumbent) and score(bound[i]) <= incumbent)
        key = (promising, math.isfinite(value), value + knobs.bonus * weights[i], rng.random())
        ranked.append((key, i, value, promising))
    in_sample = max(r for r in ranked if r[1] in picked)
    best = in_sample if in_sample[0][:2] == (True, True) else max(ranked)
    _, i, value, promising = best
    return Choice(candidates[i], value, weights[i], promising, len(picked))
