"""The early-stopping rule: stops only what cannot rank above the best, says why, with figures."""

from __future__ import annotations

from typing import Any

import pytest

from archsmith.agents.early_stop import CheckFigures, EarlyStopRule, early_check, verdict
from archsmith.spec import TaskSpec

RULE = EarlyStopRule(margin=0.02)


def spec(**over: Any) -> TaskSpec:
    return TaskSpec(dataset="digits", input_shape=[1, 8, 8], num_classes=10, **over)


def best(**over: Any) -> dict[str, Any]:
    # Final T 0.96 / V 0.94; at epoch 2 of 6 it had T 0.80 / V 0.78: it gained 0.16 after.
    found: dict[str, Any] = {
        "iteration": 3,
        "metrics": {"train_accuracy": 0.96, "val_accuracy": 0.94},
        "combined_metric": 1.90,
        "feasible": True,
        "early_stop": {"epoch": 2, "epochs": 6, "train_accuracy": 0.80, "val_accuracy": 0.78},
    }
    found.update(over)
    return found


def check(
    t: float | None, v: float | None, found: dict[str, Any] | None = None, **kw: Any
) -> tuple[bool, str, dict[str, float] | None]:
    s = kw.pop("spec", spec())
    figures = CheckFigures(t, v, **kw.pop("measured", {}))
    out = verdict(RULE, s, best() if found is None else found, kw.get("validation"), 2, 6, figures)
    assert (out.train_accuracy, out.val_accuracy) == (t, v)  # the record keeps what it read
    return out.stop, out.reason, out.bound


def test_where_it_checks() -> None:
    assert RULE.epoch(6) == 2
    assert RULE.epoch(5) == 2
    assert RULE.epoch(50) == 17
    assert RULE.epoch(2) == 1
    assert RULE.epoch(1) is None  # nothing left to save
    assert "epoch 17 of 50" in RULE.describe(50)
    assert early_check(RULE, spec(), None, None, 1, lambda _: CheckFigures()) is None
    with pytest.raises(ValueError, match="fraction"):
        EarlyStopRule(fraction=1.0)
    with pytest.raises(ValueError, match="margin"):
        EarlyStopRule(margin=-0.1)


def test_a_candidate_far_behind_the_best_at_the_check_is_stopped_with_the_figures() -> None:
    # Bound: T <= 0.60 + 0.16 + 0.02 = 0.78, V <= 0.58 + 0.16 + 0.02 = 0.76: CM <= 1.54 < 1.90.
    stop, reason, bound = check(0.60, 0.58)
    assert stop
    assert bound is not None
    assert bound["train_accuracy_bound"] == pytest.approx(0.78)
    assert bound["val_accuracy_bound"] == pytest.approx(0.76)
    assert bound["combined_metric_bound"] == pytest.approx(1.54)
    assert bound["best_combined_metric"] == pytest.approx(1.90)
    assert "below the best's 1.9000 (iteration 3)" in reason


def test_a_candidate_that_could_still_overtake_goes_on() -> None:
    # Level with the best at the check: its bound is the best's CM plus twice the margin.
    stop, reason, bound = check(0.80, 0.78)
    assert not stop
    assert bound is not None
    assert bound["combined_metric_bound"] == pytest.approx(1.94)
    assert "may still reach" in reason
    # Just inside the margin: 0.79 + 0.16 + 0.02 = 0.97 and 0.77 + 0.18 = 0.95 -> 1.92 > 1.90.
    assert not check(0.79, 0.77)[0]
    # Just outside: 0.77 + 0.18 = 0.95, 0.75 + 0.18 = 0.93: 1.88 < 1.90.
    assert check(0.77, 0.75)[0]


def test_no_best_or_no_comparable_curve_means_no_stop() -> None:
    assert verdict(RULE, spec(), None, None, 2, 6, CheckFigures(0.1, 0.1)).stop is False
    problem = CheckFigures(problem="measuring the paused model failed (boom)")
    out = verdict(RULE, spec(), best(), None, 2, 6, problem)
    assert not out.stop
    assert out.reason == "not checked: measuring the paused model failed (boom)"
    assert not check(0.1, 0.1, best(early_stop=None))[0]
    other = best(early_stop={"epoch": 3, "epochs": 9, "train_accuracy": 0.8, "val_accuracy": 0.8})
    stop, reason, _ = check(0.1, 0.1, other)
    assert not stop
    assert "not measured at epoch 2 of 6" in reason
    assert not check(None, 0.1)[0]  # the check's figure is missing
    assert not check(0.1, 0.1, best(combined_metric=None))[0]


def test_fps_and_energy_are_taken_as_measured_at_the_check_else_at_their_best() -> None:
    s = spec(weight_fps=0.2, weight_energy=0.1, fps_threshold=1000.0)
    # Unmeasured: FPS counts as the target met (W_F * 1), energy as zero.
    stop, _, bound = check(0.80, 0.78, best(combined_metric=1.95), spec=s)
    assert bound is not None
    assert bound["combined_metric_bound"] == pytest.approx(1.94 + 0.2)
    assert not stop
    # Measured on the paused program (the final graph): 500 FPS is half the target, and the
    # energies (at their budgets: r / (1 + r) = 0.5 each) count against it.
    measured = {
        "fps": 500.0,
        "val_energy_kwh_pue": s.val_energy_threshold_kwh_pue,
        "train_energy_kwh_pue": s.train_energy_threshold_kwh_pue,
    }
    stop, reason, bound = check(0.80, 0.78, best(combined_metric=1.95), spec=s, measured=measured)
    assert bound is not None
    assert bound["combined_metric_bound"] == pytest.approx(1.94 + 0.2 * 0.5 - 0.1 * (0.5 + 0.5))
    assert stop
    assert "500 FPS" in reason


def test_hard_limits_decide_before_cm() -> None:
    s = spec(max_params=1_000)
    # The best meets every limit and this candidate is already too big: stopped, whatever it learns.
    stop, reason, _ = check(0.99, 0.99, spec=s, validation={"params": 5_000})
    assert stop
    assert "params 5000 > max_params 1000" in reason
    # The best breaks a limit; this candidate may meet them all: it ranks above, so it goes on.
    infeasible = best(feasible=False)
    stop, reason, _ = check(0.10, 0.10, infeasible, spec=s, validation={"params": 500})
    assert not stop
    assert "may meet them all" in reason
    # Both break a limit: CM decides.
    assert check(0.10, 0.10, infeasible, spec=s, validation={"params": 5_000})[0]
    # Latency is known at the check (timed on the paused program).
    slow = spec(max_latency_ms=2.0)
    stop, reason, _ = check(0.99, 0.99, spec=slow, measured={"latency_ms": 3.5})
    assert stop
    assert "latency_ms 3.5 > max_latency_ms 2" in reason


def test_a_best_that_gained_nothing_after_the_check_still_leaves_the_margin() -> None:
    # A flat curve (or one that fell) never gives a negative allowance.
    flat = best(early_stop={"epoch": 2, "epochs": 6, "train_accuracy": 0.99, "val_accuracy": 0.99})
    _, _, bound = check(0.93, 0.91, flat)
    assert bound is not None
    assert bound["train_accuracy_bound"] == pytest.approx(0.95)
    assert bound["val_accuracy_bound"] == pytest.approx(0.93)
