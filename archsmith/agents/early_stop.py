"""Multi-fidelity evaluation: stop training a candidate that cannot beat the best.

The rule (``archsmith run --early-stop``) is a learning-curve bound checked once, after the
first ``fraction`` of the epochs (``ceil(epochs * fraction)``, one third by default: epoch 2 of 5,
17 of 50). At that epoch the candidate's exported model is scored by the measuring process, as a
final model is; the best was checked at the same epoch when it trained, so both curves are known
there. The bound assumes the candidate gains at most what the best gained from that epoch to the
end, plus a margin:

    T_ub = min(1, T_c(e) + max(0, T_best - T_best(e)) + margin), likewise V_ub,

and takes the rest as measured at the check: the paused program has the final one's graph, so its
FPS, latency and validation energy are the final figures (the run keeps them and does not time the
finished model again); the training energy is at least what was spent so far. CM_ub is Eq. 1 on
those. The candidate stops when CM_ub is below the best's CM and it cannot rank above the best
for feasibility either (the best meets every hard limit, or the candidate is already known to
break one: parameters and size from validation, latency from the check).

Every figure the rule reads is measured by the host or the measuring process, never reported by a
candidate's own process, so candidate code can neither keep itself alive nor get others stopped.
The margin is the rule's slack for curves that cross: a candidate learning faster late than the
best did can still be stopped when it would have overtaken the best by more than the margin.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from archsmith import judge
from archsmith.agents.records import BestCandidate, Validation
from archsmith.config import DEFAULT_EARLY_STOP_MARGIN
from archsmith.spec import TaskSpec
from archsmith.tools.schemas import STOPPED_EARLY
from archsmith.tools.train_model import EarlyCheck, Verdict

__all__ = ["STOPPED_EARLY", "CheckFigures", "EarlyStopRule", "early_check", "verdict"]


@dataclass(frozen=True)
class EarlyStopRule:
    """The rule's settings: where it checks (a fraction of the epochs) and its margin."""

    fraction: float = 1 / 3
    margin: float = DEFAULT_EARLY_STOP_MARGIN

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {self.fraction!r}")
        if not 0.0 <= self.margin <= 1.0:
            raise ValueError(f"margin must be in [0, 1], got {self.margin!r}")

    def epoch(self, epochs: int) -> int | None:
        """The epoch checked, or None when the schedule is too short to stop anything."""
        e = math.ceil(epochs * self.fraction)
        return e if 1 <= e < epochs else None

    def describe(self, epochs: int) -> str:
        e = self.epoch(epochs)
        where = f"after epoch {e} of {epochs}" if e is not None else "never (too few epochs)"
        return f"learning-curve bound, checked {where}, margin {self.margin:g}"


@dataclass(frozen=True)
class CheckFigures:
    """What was measured of the paused model; None where nothing was.

    Accuracies by the measuring process's ``score`` job; FPS, latency and validation energy by its
    ``speed`` job (the paused program has the final one's graph, so the same work per image);
    the training energy is what the host measured so far.
    """

    train_accuracy: float | None = None
    val_accuracy: float | None = None
    fps: float | None = None
    latency_ms: float | None = None
    val_energy_kwh_pue: float | None = None
    train_energy_kwh_pue: float | None = None
    problem: str | None = None


def verdict(
    rule: EarlyStopRule,
    spec: TaskSpec,
    best: BestCandidate | None,
    validation: Validation | None,
    epoch: int,
    epochs: int,
    figures: CheckFigures,
) -> Verdict:
    """Stop or go on, for a candidate measured at ``epoch`` of ``epochs`` against ``best``."""

    def say(stop: bool, reason: str, bound: dict[str, float] | None = None) -> Verdict:
        return Verdict(stop, reason, bound, figures.train_accuracy, figures.val_accuracy)

    if figures.problem is not None:
        return say(False, f"not checked: {figures.problem}")
    if best is None:
        return say(False, "no best yet to compare with")
    params = validation.get("params") if validation else None
    size = validation.get("size_mb") if validation else None
    violations = judge.limit_violations(
        spec,
        int(params) if params is not None else None,
        figures.latency_ms,
        float(size) if size else None,
    )
    feasible, best_feasible = not violations, bool(best.get("feasible", True))
    # Feasibility ranks first: whatever CM either reaches, can this candidate rank above the best?
    if not judge.outranks(judge.rank(feasible, math.inf), judge.rank(best_feasible, -math.inf)):
        return say(
            True,
            f"it breaks a hard limit ({'; '.join(violations)}) that the best (iteration"
            f" {best.get('iteration')}) meets, so it cannot rank above the best",
        )
    curve = best.get("early_stop") or {}
    metrics = best.get("metrics") or {}
    best_cm = best.get("combined_metric")
    at_check = (curve.get("train_accuracy"), curve.get("val_accuracy"))
    final = (metrics.get("train_accuracy"), metrics.get("val_accuracy"))
    if curve.get("epoch") != epoch or curve.get("epochs") != epochs:
        return say(False, f"the best was not measured at epoch {epoch} of {epochs}")
    t_c, v_c = figures.train_accuracy, figures.val_accuracy
    if best_cm is None or None in (*at_check, *final) or t_c is None or v_c is None:
        return say(False, "a figure the bound needs was not measured")
    if judge.outranks(judge.rank(feasible, -math.inf), judge.rank(best_feasible, math.inf)):
        return say(False, "the best breaks a hard limit; this candidate may meet them all")
    t_b, v_b = (float(f) for f in at_check if f is not None)
    t_final, v_final = (float(f) for f in final if f is not None)
    t_ub = min(1.0, t_c + max(0.0, t_final - t_b) + rule.margin)
    v_ub = min(1.0, v_c + max(0.0, v_final - v_b) + rule.margin)
    cm_ub = judge.combined_metric(
        spec,
        t_ub,
        v_ub,
        figures.fps if figures.fps is not None else spec.fps_threshold,
        figures.train_energy_kwh_pue or 0.0,  # what training has spent so far: a lower bound
        figures.val_energy_kwh_pue or 0.0,
    )
    bound = {
        "train_accuracy_bound": t_ub,
        "val_accuracy_bound": v_ub,
        "combined_metric_bound": cm_ub,
        "best_combined_metric": float(best_cm),
    }
    at = f"at epoch {epoch}: validation {v_c:.4f}, training {t_c:.4f}" + (
        f", {figures.fps:,.0f} FPS" if figures.fps is not None else ""
    )
    # Both sides of the limits alike here, so CM decides: does the best outrank the bound?
    if judge.outranks(judge.rank(best_feasible, float(best_cm)), judge.rank(feasible, cm_ub)):
        return say(
            True,
            f"{at}; at best CM {cm_ub:.4f} at the end (validation at most {v_ub:.4f}), below the"
            f" best's {float(best_cm):.4f} (iteration {best.get('iteration')})",
            bound,
        )
    return say(
        False,
        f"{at}; it may still reach CM {cm_ub:.4f}, the best has {float(best_cm):.4f}",
        bound,
    )


def early_check(
    rule: EarlyStopRule,
    spec: TaskSpec,
    best: BestCandidate | None,
    validation: Validation | None,
    epochs: int,
    measure: Callable[[Path], CheckFigures],
) -> EarlyCheck | None:
    """The check ``train_model`` makes for one candidate, or None when there is none to make.

    ``measure(model_dir)`` measures the paused program (``nodes.evaluate`` scores it and times it
    with the measuring process).
    """
    epoch = rule.epoch(epochs)
    if epoch is None:
        return None

    def decide(model_dir: Path, train_energy_kwh_pue: float) -> Verdict:
        figures = replace(measure(model_dir), train_energy_kwh_pue=train_energy_kwh_pue)
        return verdict(rule, spec, best, validation, epoch, epochs, figures)

    return EarlyCheck(epoch=epoch, rule=rule.describe(epochs), decide=decide)
