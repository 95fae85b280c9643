"""Pydantic inputs and outputs of the typed tools; units are in the field names.

These models are the contract between the graph's nodes, the tools and the run store, so they are
strict (unknown fields are errors) and JSON-serialisable (a checkpointer stores them as data).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from archsmith.spec import TaskSpec

__all__ = [
    "ConditionResult",
    "DroppedInstruction",
    "EvaluationMetrics",
    "FiredRule",
    "NotEvaluatedRule",
    "ResolvedInstruction",
    "RulebookAdviceInput",
    "RulebookAdviceOutput",
]

_Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
_NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class EvaluationMetrics(BaseModel):
    """The evaluation-based parameters of the paper's Table 2 for one trained candidate.

    Losses may be NaN or infinite: that is how a diverged run reports itself, and the rulebook
    treats it as divergence.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    train_accuracy: _Fraction = Field(description="T_Acc: training accuracy, a fraction in [0, 1].")
    val_accuracy: _Fraction = Field(description="V_Acc: validation accuracy, a fraction in [0, 1].")
    train_energy_kwh_pue: _NonNegative = Field(
        description="T_E: energy spent training the candidate, in kWh-PUE (>= 0)."
    )
    val_energy_kwh_pue: _NonNegative = Field(
        description="V_E: energy spent evaluating the validation set, in kWh-PUE (>= 0)."
    )
    fps: _NonNegative = Field(description="F: inference throughput, in frames per second (>= 0).")
    params: int = Field(ge=0, description="P: number of parameters of the candidate (>= 0).")
    latency_ms: _NonNegative | None = Field(
        default=None, description="Batch-1 inference latency in milliseconds (>= 0), if measured."
    )
    model_size_mb: _NonNegative | None = Field(
        default=None, description="Size of the saved weights in megabytes (>= 0), if measured."
    )
    diverged: bool = Field(
        default=False, description="Whether training diverged (the trainer saw a non-finite loss)."
    )
    train_loss: float | None = Field(
        default=None, description="Final training loss, if known; NaN or infinity means diverged."
    )
    val_loss: float | None = Field(
        default=None, description="Final validation loss, if known; NaN or infinity means diverged."
    )

    @property
    def generalization_gap(self) -> float:
        """Training minus validation accuracy: above OT is overfitting, below UT underfitting."""
        return self.train_accuracy - self.val_accuracy

    @property
    def is_diverged(self) -> bool:
        """True when the trainer said so or a reported loss is not a finite number."""
        losses = (self.train_loss, self.val_loss)
        return self.diverged or any(x is not None and not math.isfinite(x) for x in losses)


class ConditionResult(BaseModel):
    """One clause of a rule, as evaluated: which metric, which threshold, by how much."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    value: float | bool
    op: Literal["<", ">", "is_true", "is_false"]
    threshold_name: str | None = None
    threshold_symbol: str | None = None
    threshold: float | None = None
    margin: float | None = Field(
        default=None, description="How far the metric is past the threshold (always >= 0)."
    )
    text: str = Field(description="The clause in words, e.g. 'val_accuracy 0.85 < TV_Acc 0.99'.")


class FiredRule(BaseModel):
    """A rule whose conditions all held, with the weight it gave its instructions and why."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str
    description: str
    instructions: list[str]
    weight: float = Field(description="The priority the rule's instructions received.")
    weight_source: str = Field(
        description="Where the weight came from: the paper's symbol (PT_Acc), a spec field, or"
        " 'constant'."
    )
    conditions: list[ConditionResult]
    reason: str = Field(description="One readable line: every clause joined with 'and'.")


class NotEvaluatedRule(BaseModel):
    """A rule that could not be checked, e.g. a limit the spec does not set."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str
    reason: str


class ResolvedInstruction(BaseModel):
    """An instruction kept by conflict resolution, for the architect to apply."""

    model_config = ConfigDict(extra="forbid")

    code: str
    meaning: str
    weight: float = Field(gt=0.0)
    raised_by: list[str] = Field(description="Ids of the rules that raised it.")


class DroppedInstruction(BaseModel):
    """An instruction that was raised but not kept, and why (weight <= 0 or a heavier partner)."""

    model_config = ConfigDict(extra="forbid")

    code: str
    meaning: str
    weight: float
    raised_by: list[str]
    reason: str
    lost_to: str | None = Field(default=None, description="The conflicting partner that was kept.")


class RulebookAdviceInput(BaseModel):
    """Input of ``rulebook_advice``: one candidate's measured metrics and the user's TaskSpec."""

    model_config = ConfigDict(extra="forbid")

    metrics: EvaluationMetrics
    spec: TaskSpec


class RulebookAdviceOutput(BaseModel):
    """Output of ``rulebook_advice``: what to change next, why, and how good this candidate is."""

    model_config = ConfigDict(extra="forbid")

    instructions: list[ResolvedInstruction] = Field(
        description="Resolved instructions, heaviest first (Algorithm 2's output)."
    )
    dropped: list[DroppedInstruction]
    fired_rules: list[FiredRule]
    not_evaluated: list[NotEvaluatedRule]
    combined_metric: float = Field(description="CM of Eq. 1 for this candidate.")
    normalized_fps: float = Field(description="NF used in CM.")
    normalized_train_energy: float = Field(description="T_NE used in CM.")
    normalized_val_energy: float = Field(description="V_NE used in CM.")
    targets_met: bool = Field(
        description="True when no rule with a positive weight fired: all prioritised targets met."
    )
