"""The LEMONADE expert system: the rulebook (Table 3), NNGES (Fig. 2) and RESOLVE_CONFLICT (Alg. 2).

The instructions and rules live in ``rulebook.json`` beside this module, as data: a rule is a list
of clauses comparing an evaluation metric with a TaskSpec threshold, the instructions it raises,
and the spec priority that weighs them. This module only interprets that data, deterministically:
the same metrics and spec always give the same instructions, in the same order.

Two choices the paper leaves open, made here:

* When several rules raise the same instruction, their weights add up (more evidence, more weight).
* Algorithm 2 sorts by weight; equal weights are ordered by the instruction's row in Table 3, so on
  a tie between conflicting partners the one listed first in Table 3 wins (an "add" beats its
  "reduce": ACL over RCL, AD over RD, AMK over RK, AR over RR, AMN over RN).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from archsmith.errors import InputError, load_json_model
from archsmith.spec import TaskSpec
from archsmith.tools.schemas import (
    ConditionResult,
    DroppedInstruction,
    EvaluationMetrics,
    FiredRule,
    NotEvaluatedRule,
    ResolvedInstruction,
)

__all__ = [
    "METRIC_NAMES",
    "Condition",
    "Instruction",
    "Resolution",
    "Rule",
    "Rulebook",
    "Target",
    "default_rulebook",
    "evaluate_rules",
    "load_rulebook",
    "resolve_conflicts",
]

#: Metrics a rule may test: the fields of EvaluationMetrics plus the derived ones.
METRIC_NAMES: frozenset[str] = frozenset(
    {
        "train_accuracy",
        "val_accuracy",
        "generalization_gap",
        "train_energy_kwh_pue",
        "val_energy_kwh_pue",
        "fps",
        "params",
        "latency_ms",
        "model_size_mb",
        "diverged",
    }
)
_BOOLEAN_METRICS = frozenset({"diverged"})


class Instruction(BaseModel):
    """A row of Table 3: an instruction the architect understands, and the one it contradicts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=r"^[A-Z]{2,4}$")
    meaning: str = Field(min_length=1)
    conflicts_with: str | None = None


class Condition(BaseModel):
    """One clause: ``metric op threshold`` for comparisons, or ``metric is_true/is_false``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str
    op: Literal["<", ">", "is_true", "is_false"]
    threshold: str | float | None = Field(
        default=None, description="A TaskSpec field name or a number; none for is_true/is_false."
    )

    @model_validator(mode="after")
    def _check(self) -> Condition:
        if self.metric not in METRIC_NAMES:
            raise ValueError(f"unknown metric {self.metric!r}; known: {sorted(METRIC_NAMES)}")
        boolean_op = self.op in ("is_true", "is_false")
        if boolean_op != (self.metric in _BOOLEAN_METRICS):
            raise ValueError(f"op {self.op!r} does not apply to metric {self.metric!r}")
        if boolean_op and self.threshold is not None:
            raise ValueError(f"op {self.op!r} takes no threshold")
        if not boolean_op:
            if self.threshold is None:
                raise ValueError(f"op {self.op!r} needs a threshold")
            if isinstance(self.threshold, str) and self.threshold not in TaskSpec.model_fields:
                raise ValueError(f"threshold {self.threshold!r} is not a TaskSpec field")
        return self


class Target(BaseModel):
    """One target of the spec: the figure, its threshold and priority fields, and which way it
    is met. The one table of targets: the card (``export``) and the report check figures
    against it, and the rules that fire on a miss must compare the same way (``Rulebook``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="In words, as a person reads it.")
    metric: str = Field(description="The measured figure (an EvaluationMetrics field).")
    threshold: str = Field(description="The TaskSpec field that sets it; None there: no target.")
    priority: str = Field(description="The TaskSpec field that weighs it.")
    direction: Literal[">=", "<="] = Field(description="How a figure meets the threshold.")

    @model_validator(mode="after")
    def _check(self) -> Target:
        if self.metric not in METRIC_NAMES or self.metric in _BOOLEAN_METRICS:
            raise ValueError(f"target metric {self.metric!r} is not a measured figure")
        for name in (self.threshold, self.priority):
            if name not in TaskSpec.model_fields:
                raise ValueError(f"{name!r} is not a TaskSpec field")
        return self

    @property
    def missed_op(self) -> Literal["<", ">"]:
        """The comparison that says the figure misses: what a rule firing on a miss tests."""
        return "<" if self.direction == ">=" else ">"

    def met(self, value: float, threshold: float) -> bool:
        """Whether ``value`` meets ``threshold`` in this target's direction."""
        return value >= threshold if self.direction == ">=" else value <= threshold


class Rule(BaseModel):
    """A NNGES rule: when every clause holds, raise ``instructions`` with weight ``weight``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = Field(min_length=1)
    when: tuple[Condition, ...] = Field(min_length=1)
    instructions: tuple[str, ...] = Field(min_length=1)
    weight: str | float = Field(description="A TaskSpec priority field, or a constant weight.")
    origin: Literal["paper", "archsmith", "user"] = Field(
        default="user",
        description="Whose rule it is, so nobody credits the paper with a design choice: 'paper'"
        " (LEMONADE states it: only training accuracy below TT_Acc), 'archsmith' (archsmith's"
        " design: the other rule sets, their weights, hard limits, divergence), 'user' (the"
        " default, for a rulebook of your own).",
    )

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if isinstance(self.weight, str) and self.weight not in TaskSpec.model_fields:
            raise ValueError(f"weight {self.weight!r} is not a TaskSpec field")
        if isinstance(self.weight, float) and not math.isfinite(self.weight):
            raise ValueError("a constant weight must be a finite number")
        if len(set(self.instructions)) != len(self.instructions):
            raise ValueError("instructions repeat")
        return self


class Rulebook(BaseModel):
    """The instructions of Table 3 and the rules of NNGES, validated as a whole."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    source: str = ""
    accumulate: Literal["sum"] = "sum"
    instructions: tuple[Instruction, ...] = Field(min_length=1)
    targets: tuple[Target, ...] = Field(
        default=(), description="The spec's targets; a rulebook of your own may leave them out."
    )
    rules: tuple[Rule, ...]

    @model_validator(mode="after")
    def _check(self) -> Rulebook:
        codes = [i.code for i in self.instructions]
        if len(set(codes)) != len(codes):
            raise ValueError("instruction codes repeat")
        by_code = {i.code: i for i in self.instructions}
        for ins in self.instructions:
            partner = ins.conflicts_with
            if partner is None:
                continue
            if partner not in by_code:
                raise ValueError(f"{ins.code} conflicts with unknown instruction {partner!r}")
            if partner == ins.code:
                raise ValueError(f"{ins.code} conflicts with itself")
            if by_code[partner].conflicts_with != ins.code:
                raise ValueError(
                    f"conflicts must be mutual: {ins.code} names {partner},"
                    f" but {partner} names {by_code[partner].conflicts_with}"
                )
        ids = [r.id for r in self.rules]
        if len(set(ids)) != len(ids):
            raise ValueError("rule ids repeat")
        for rule in self.rules:
            unknown = [c for c in rule.instructions if c not in by_code]
            if unknown:
                raise ValueError(f"rule {rule.id} raises unknown instructions {unknown}")
        self._check_targets()
        return self

    def _check_targets(self) -> None:
        """One target per metric, and a rule testing a target's threshold fires on its miss."""
        metrics = [t.metric for t in self.targets]
        if len(set(metrics)) != len(metrics):
            raise ValueError("a metric has more than one target")
        by_threshold = {t.threshold: t for t in self.targets}
        for rule in self.rules:
            for c in rule.when:
                target = by_threshold.get(c.threshold) if isinstance(c.threshold, str) else None
                if target is not None and (c.metric, c.op) != (target.metric, target.missed_op):
                    raise ValueError(
                        f"rule {rule.id} tests {c.metric} {c.op} {c.threshold}, but the target"
                        f" {target.name!r} is missed when {target.metric} {target.missed_op}"
                        f" {target.threshold}"
                    )

    def target(self, metric: str) -> Target | None:
        """The target on ``metric``, if the rulebook has one."""
        return next((t for t in self.targets if t.metric == metric), None)

    @property
    def by_code(self) -> dict[str, Instruction]:
        """Instructions keyed by their code."""
        return {i.code: i for i in self.instructions}

    @property
    def order(self) -> dict[str, int]:
        """Each instruction's row in Table 3, the tie-breaker of conflict resolution."""
        return {i.code: n for n, i in enumerate(self.instructions)}

    def conflict_pairs(self) -> list[tuple[str, str]]:
        """Each conflicting pair once, in Table 3 order of its first member."""
        pairs: list[tuple[str, str]] = []
        seen: set[str] = set()
        for ins in self.instructions:
            if ins.conflicts_with and ins.code not in seen:
                pairs.append((ins.code, ins.conflicts_with))
                seen.update((ins.code, ins.conflicts_with))
        return pairs


def load_rulebook(path: Path | None = None) -> Rulebook:
    """Load and validate a rulebook: the packaged one by default, or a user's file."""
    if path is None:
        return default_rulebook()
    return load_json_model(path, Rulebook, "rulebook")


@cache
def default_rulebook() -> Rulebook:
    """The rulebook shipped with archsmith (``archsmith/tools/rulebook.json``)."""
    text = resources.files("archsmith.tools").joinpath("rulebook.json").read_text("utf-8")
    return Rulebook.model_validate_json(text)


# -- NNGES ----------------------------------------------------------------------------------------


def _metric_value(metrics: EvaluationMetrics, name: str) -> float | bool | None:
    if name == "generalization_gap":
        return metrics.generalization_gap
    if name == "diverged":
        return metrics.is_diverged
    value = getattr(metrics, name)
    if value is None or isinstance(value, bool):
        return value
    return float(value)


#: How a clause that cannot be checked for want of a measurement says so.
_UNMEASURED = "was not measured"


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _check(
    cond: Condition, metrics: EvaluationMetrics, spec: TaskSpec, symbols: Mapping[str, str]
) -> ConditionResult | str | None:
    """Evaluate a clause: a result when it holds, None when it does not, a string when it cannot.

    An unset limit is checked before the metric: a rule on a limit the user did not set cannot
    fire, whether or not its metric was measured.
    """
    if isinstance(cond.threshold, str) and getattr(spec, cond.threshold) is None:
        return f"{cond.threshold} is not set in the spec"
    value = _metric_value(metrics, cond.metric)
    if value is None:
        return f"{cond.metric} {_UNMEASURED}"
    if cond.op in ("is_true", "is_false"):
        holds = bool(value) is (cond.op == "is_true")
        if not holds:
            return None
        return ConditionResult(
            metric=cond.metric,
            value=bool(value),
            op=cond.op,
            text=f"{cond.metric} is {'true' if value else 'false'}",
        )
    numeric = float(value)
    if isinstance(cond.threshold, str):
        raw = getattr(spec, cond.threshold)
        if raw is None:
            return f"{cond.threshold} is not set in the spec"
        threshold = float(raw)
        name: str | None = cond.threshold
        label = symbols.get(cond.threshold, cond.threshold)
    elif isinstance(cond.threshold, (int, float)):
        threshold = float(cond.threshold)
        name = None
        label = _fmt(threshold)
    else:  # Condition's validator rejects this; kept so a bad object cannot pass silently.
        raise InputError(f"clause on {cond.metric} with op {cond.op!r} has no threshold")
    holds = numeric < threshold if cond.op == "<" else numeric > threshold
    if not holds:
        return None
    margin = abs(numeric - threshold)
    how = "short by" if cond.op == "<" else "over by"
    text = f"{cond.metric} {_fmt(numeric)} {cond.op} {label}"
    if name is not None:
        text += f" {_fmt(threshold)}"
    text += f" ({how} {_fmt(margin)})"
    return ConditionResult(
        metric=cond.metric,
        value=numeric,
        op=cond.op,
        threshold_name=name,
        threshold_symbol=symbols.get(name) if name else None,
        threshold=threshold,
        margin=margin,
        text=text,
    )


def _reason(results: list[ConditionResult]) -> str:
    """Join the clauses that say why; guards such as "diverged is false" only say it may fire."""
    telling = [r.text for r in results if r.op != "is_false"] or [r.text for r in results]
    return " and ".join(telling)


def evaluate_rules(
    metrics: EvaluationMetrics, spec: TaskSpec, rulebook: Rulebook | None = None
) -> tuple[list[FiredRule], dict[str, float], list[NotEvaluatedRule]]:
    """NNGES: check every rule in order; sum the weights of the instructions fired rules raise.

    Returns the fired rules (each with the clauses that held and how far past their thresholds),
    the instruction weights, and the rules that could not be checked (an unset limit or an
    unmeasured metric). A fired rule with priority 0 is still reported: a person reading the trace
    sees the miss even though it carries no weight.
    """
    book = rulebook or default_rulebook()
    symbols = TaskSpec.symbols()
    fired: list[FiredRule] = []
    skipped: list[NotEvaluatedRule] = []
    weights: dict[str, float] = {}
    for rule in book.rules:
        results: list[ConditionResult] = []
        blocked: str | None = None
        unmeasured = False
        for cond in rule.when:
            outcome = _check(cond, metrics, spec, symbols)
            if isinstance(outcome, str):
                blocked = outcome
                unmeasured = outcome.endswith(_UNMEASURED)
                break
            if outcome is None:
                break
            results.append(outcome)
        if isinstance(rule.weight, str):
            weight = float(getattr(spec, rule.weight))
            source = symbols.get(rule.weight, rule.weight)
        else:
            weight = float(rule.weight)
            source = "constant"
        if blocked is not None:
            # Only a rule that would count (a positive weight) leaves its target unknown.
            skipped.append(
                NotEvaluatedRule(
                    rule_id=rule.id, reason=blocked, unmeasured=unmeasured and weight > 0.0
                )
            )
            continue
        if len(results) != len(rule.when):
            continue
        for code in rule.instructions:
            weights[code] = weights.get(code, 0.0) + weight
        fired.append(
            FiredRule(
                rule_id=rule.id,
                description=rule.description,
                instructions=list(rule.instructions),
                weight=weight,
                weight_source=source,
                conditions=results,
                reason=_reason(results),
            )
        )
    return fired, weights, skipped


# -- RESOLVE_CONFLICT -----------------------------------------------------------------------------


class Resolution(BaseModel):
    """Algorithm 2's result: the kept instructions heaviest first, and what was dropped and why."""

    model_config = ConfigDict(extra="forbid")

    kept: list[ResolvedInstruction]
    dropped: list[DroppedInstruction]

    def weights(self) -> dict[str, float]:
        """The kept instructions as ``{code: weight}``, in order."""
        return {i.code: i.weight for i in self.kept}


def _lost_reason(winner: str, winner_weight: float, weight: float) -> str:
    if winner_weight > weight:
        return f"conflicts with {winner}, which weighs more ({_fmt(winner_weight)})"
    return f"conflicts with {winner}, equal weight ({_fmt(winner_weight)}), earlier in Table 3"


def resolve_conflicts(
    weights: Mapping[str, float],
    rulebook: Rulebook | None = None,
    raised_by: Mapping[str, list[str]] | None = None,
) -> Resolution:
    """Algorithm 2: sort by weight, keep positive weights, drop the partner of each kept one.

    Walking the instructions heaviest first (ties in Table 3 order), an instruction is kept when
    its weight is > 0 and its conflicting partner has not been kept already; keeping it drops the
    partner.
    The result never holds both partners of a pair, never holds a weight <= 0, and is a fixed point:
    resolving it again changes nothing.
    """
    book = rulebook or default_rulebook()
    by_code = book.by_code
    order = book.order
    for code, w in weights.items():
        if code not in by_code:
            raise ValueError(f"unknown instruction {code!r}; known: {sorted(by_code)}")
        if not math.isfinite(w):
            raise ValueError(f"weight of {code} must be a finite number, got {w!r}")
    sources = raised_by or {}
    ranked = sorted(weights.items(), key=lambda kv: (-kv[1], order[kv[0]]))
    kept: list[ResolvedInstruction] = []
    dropped: list[DroppedInstruction] = []
    lost_to: dict[str, str] = {}
    for code, w in ranked:
        ins = by_code[code]
        src = list(sources.get(code, []))
        if w <= 0.0:
            dropped.append(
                DroppedInstruction(
                    code=code, meaning=ins.meaning, weight=w, raised_by=src, reason="weight <= 0"
                )
            )
            continue
        if code in lost_to:
            winner = lost_to[code]
            dropped.append(
                DroppedInstruction(
                    code=code,
                    meaning=ins.meaning,
                    weight=w,
                    raised_by=src,
                    reason=_lost_reason(winner, weights[winner], w),
                    lost_to=winner,
                )
            )
            continue
        kept.append(ResolvedInstruction(code=code, meaning=ins.meaning, weight=w, raised_by=src))
        if ins.conflicts_with is not None:
            lost_to.setdefault(ins.conflicts_with, code)
    return Resolution(kept=kept, dropped=dropped)
