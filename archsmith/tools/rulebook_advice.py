"""The ``rulebook_advice`` tool: measured metrics + TaskSpec -> next instructions, reasons and CM.

This is the critic's only instrument and it is deterministic: no LLM is involved, so the same
metrics always produce the same advice, which is what makes a run reproducible and auditable.
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import StructuredTool

from archsmith import judge
from archsmith.metrics import normalized_energy, normalized_fps
from archsmith.spec import TaskSpec
from archsmith.tools.rulebook import Rulebook, evaluate_rules, resolve_conflicts
from archsmith.tools.schemas import EvaluationMetrics, RulebookAdviceInput, RulebookAdviceOutput

__all__ = ["advise", "rulebook_advice", "rulebook_advice_tool"]


def advise(
    metrics: EvaluationMetrics, spec: TaskSpec, rulebook: Rulebook | None = None
) -> RulebookAdviceOutput:
    """Run NNGES, resolve conflicts (Algorithm 2) and compute CM (Eq. 1) for one candidate.

    CM needs every figure its weights use: with W_F > 0 an unmeasured FPS leaves it None (not the
    CM of a model with 0 FPS), and likewise accuracy for W_A and energy for W_E.
    """
    fired, weights, skipped = evaluate_rules(metrics, spec, rulebook)
    raised_by: dict[str, list[str]] = {}
    for rule in fired:
        for code in rule.instructions:
            raised_by.setdefault(code, []).append(rule.rule_id)
    resolution = resolve_conflicts(weights, rulebook, raised_by)
    m = metrics
    nf = None if m.fps is None else normalized_fps(m.fps, spec.fps_threshold)
    t_ne = (
        None
        if m.train_energy_kwh_pue is None
        else normalized_energy(m.train_energy_kwh_pue, spec.train_energy_threshold_kwh_pue)
    )
    v_ne = (
        None
        if m.val_energy_kwh_pue is None
        else normalized_energy(m.val_energy_kwh_pue, spec.val_energy_threshold_kwh_pue)
    )
    cm = judge.measured_combined_metric(
        spec,
        train_accuracy=m.train_accuracy,
        val_accuracy=m.val_accuracy,
        fps=m.fps,
        train_energy_kwh_pue=m.train_energy_kwh_pue,
        val_energy_kwh_pue=m.val_energy_kwh_pue,
    )
    return RulebookAdviceOutput(
        instructions=resolution.kept,
        dropped=resolution.dropped,
        fired_rules=fired,
        not_evaluated=skipped,
        combined_metric=cm,
        normalized_fps=nf,
        normalized_train_energy=t_ne,
        normalized_val_energy=v_ne,
        limit_violations=judge.limit_violations(spec, m.params, m.latency_ms, m.model_size_mb),
        # A target whose metric was not measured is not met: it is unknown.
        targets_met=not any(rule.weight > 0.0 for rule in fired)
        and not any(s.unmeasured for s in skipped),
    )


def rulebook_advice(metrics: EvaluationMetrics, spec: TaskSpec) -> dict[str, Any]:
    """Turn one candidate's measured metrics into the next round's instructions.

    Fires the rulebook's rules against the user's thresholds, resolves conflicting instructions
    (the heavier of a pair wins), and computes the combined metric CM. Returns the resolved
    instructions heaviest first, the fired rules with their reasons, and CM.
    """
    return advise(metrics, spec).model_dump(mode="json")


rulebook_advice_tool: StructuredTool = StructuredTool.from_function(
    func=rulebook_advice,
    name="rulebook_advice",
    args_schema=RulebookAdviceInput,
    description=(rulebook_advice.__doc__ or "").strip(),
)
