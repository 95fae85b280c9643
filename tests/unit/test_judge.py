"""The judge: each decision about candidates, written once, checked here on plain data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from archsmith import judge
from archsmith.metrics import combined_metric
from archsmith.search.policy import Advice
from archsmith.spec import BYTES_PER_PARAM, TaskSpec
from archsmith.tools.rulebook_advice import advise
from archsmith.tools.schemas import EvaluationMetrics

SPEC = TaskSpec(
    dataset="digits",
    input_shape=(1, 8, 8),
    num_classes=10,
    weight_accuracy=0.5,
    weight_fps=0.3,
    weight_energy=0.2,
    fps_threshold=1000.0,
    train_energy_threshold_kwh_pue=1e-4,
    val_energy_threshold_kwh_pue=1e-6,
)
LIMITED = TaskSpec(
    dataset="digits", input_shape=(1, 8, 8), num_classes=10,
    max_params=3000, max_latency_ms=3.0, max_model_size_mb=0.01,
)  # fmt: skip


# -- the spec-weighted CM -------------------------------------------------------------------------


def test_cm_is_eq1_with_the_specs_weights_and_thresholds() -> None:
    got = judge.combined_metric(SPEC, 0.9, 0.8, 500.0, 2e-4, 1e-6)
    assert got == combined_metric(
        0.9, 0.8, 500.0, 2e-4, 1e-6,
        weight_accuracy=0.5, weight_fps=0.3, weight_energy=0.2, fps_threshold=1000.0,
        train_energy_threshold_kwh_pue=1e-4, val_energy_threshold_kwh_pue=1e-6,
    )  # fmt: skip
    assert got == pytest.approx(0.5 * 1.7 + 0.3 * 0.5 - 0.2 * (2 / 3 + 1 / 2))


@pytest.mark.parametrize("missing", ["fps", "val_accuracy", "train_energy_kwh_pue"])
def test_cm_is_unknown_when_a_weighted_figure_was_not_measured(missing: str) -> None:
    figures: dict[str, float | None] = {
        "train_accuracy": 0.9,
        "val_accuracy": 0.8,
        "fps": 500.0,
        "train_energy_kwh_pue": 2e-4,
        "val_energy_kwh_pue": 1e-6,
    }
    assert judge.measured_combined_metric(SPEC, **figures) == judge.combined_metric(
        SPEC, 0.9, 0.8, 500.0, 2e-4, 1e-6
    )
    figures[missing] = None
    assert judge.measured_combined_metric(SPEC, **figures) is None
    accuracy_only = SPEC.model_copy(update={"weight_fps": 0.0, "weight_energy": 0.0})
    known = judge.measured_combined_metric(accuracy_only, **figures)
    assert (known is None) is (missing == "val_accuracy")


def test_the_critics_cm_is_the_judges() -> None:
    metrics = EvaluationMetrics(
        train_accuracy=0.9,
        val_accuracy=0.8,
        fps=500.0,
        train_energy_kwh_pue=2e-4,
        val_energy_kwh_pue=1e-6,
        params=100,
    )
    assert advise(metrics, SPEC).combined_metric == judge.combined_metric(
        SPEC, 0.9, 0.8, 500.0, 2e-4, 1e-6
    )


# -- limits and feasibility -----------------------------------------------------------------------


def test_limit_violations_say_which_limit_and_by_how_much() -> None:
    assert judge.limit_violations(LIMITED, 2999, 2.9, 0.009) == []
    assert judge.limit_violations(LIMITED, 3001, 3.5, None) == [
        "params 3001 > max_params 3000",
        "latency_ms 3.5 > max_latency_ms 3",
    ]
    assert judge.limit_violations(LIMITED, None, None, None) == []  # unmeasured breaks no limit
    assert judge.limit_violations(LIMITED, 3000, 3.0, 0.01) == []  # at the limit is within it


def test_a_bench_objectives_limits_follow_the_same_rule() -> None:
    latency = judge.HardLimits(max_latency_ms=20.0)
    assert judge.meets_limits(latency, latency_ms=20.0)
    assert not judge.meets_limits(latency, latency_ms=20.5)
    assert judge.meets_limits(latency, params=10**9)  # no parameter limit
    assert judge.meets_limits(judge.HardLimits(), params=10**9, latency_ms=1e9)
    assert judge.limit_violations(latency, None, 20.5, None) == judge.limit_violations(
        TaskSpec(dataset="d", input_shape=(1, 8, 8), num_classes=10, max_latency_ms=20.0),
        None,
        20.5,
        None,
    )


def test_a_size_before_measuring_is_a_float32_checkpoints() -> None:
    assert BYTES_PER_PARAM == 4
    assert judge.estimated_size_mb(250_000) == 1.0
    assert judge.limit_violations(LIMITED, None, None, judge.estimated_size_mb(2600)) == [
        "model_size_mb 0.0104 > max_model_size_mb 0.01"
    ]


# -- ranking and the parent -----------------------------------------------------------------------


def test_every_limit_met_ranks_first_then_the_score() -> None:
    assert judge.outranks(judge.rank(True, 0.1), judge.rank(False, 1.9))
    assert not judge.outranks(judge.rank(False, 1.9), judge.rank(True, 0.1))
    assert judge.outranks(judge.rank(True, 0.6), judge.rank(True, 0.5))
    assert judge.outranks(judge.rank(False, 0.6), judge.rank(False, 0.5))
    assert not judge.outranks(judge.rank(True, 0.5), judge.rank(True, 0.5)), "the earlier stays"
    assert judge.outranks(judge.rank(False, -math.inf), None), "anything takes an empty place"


def test_the_parent_is_the_best_feasible_the_earliest_among_equals() -> None:
    items = [("a", False, 0.9), ("b", True, 0.5), ("c", True, 0.7), ("d", True, 0.7)]
    assert judge.parent(items, lambda i: judge.rank(i[1], i[2])) == ("c", True, 0.7)


def test_an_infinite_score_is_not_a_parent_and_without_one_the_latest_is() -> None:
    items = [("a", True, -math.inf), ("b", False, 0.9), ("c", False, 0.1)]
    assert judge.parent(items, lambda i: judge.rank(i[1], i[2])) == ("c", False, 0.1)
    assert judge.parent([], lambda i: judge.rank(True, 0.0)) is None


# -- the targets ----------------------------------------------------------------------------------


def test_targets_are_qualities_then_fixed_then_the_costs_observed() -> None:
    observed = [
        {"accuracy": 0.5, "params": 100.0, "latency": 2.0},
        {"accuracy": 0.6, "params": 300.0},
    ]
    targets = judge.targets(
        observed,
        qualities=["accuracy"],
        fixed=[judge.Target("log_fps", 1.0)],
        costs=["params", "latency", "energy"],
        floor_at_least_seen={"params"},
    )
    assert [t.name for t in targets] == ["accuracy", "log_fps", "params", "latency"]
    accuracy, log_fps, params, latency = targets
    assert accuracy == judge.accuracy_target("accuracy")
    assert accuracy.optimistic
    assert accuracy.logit
    assert accuracy.best_possible == 1.0
    assert log_fps == judge.Target("log_fps", 1.0)
    assert (params.scale, params.floor, params.optimistic) == (200.0, 100.0, False)
    assert (latency.scale, latency.floor) == (2.0, 0.0)  # from the one row that has it


def test_a_cost_measured_as_zero_still_has_a_unit() -> None:
    (energy,) = judge.targets([{"e": 0.0}], qualities=[], costs=["e"])
    assert energy.scale > 0.0


def test_an_accuracy_target_reads_on_the_logit_scale_and_back() -> None:
    target = judge.accuracy_target("accuracy")
    values = np.asarray([0.1, 0.5, 0.9])
    assert np.allclose(target.back(target.forward(values)), values)
    assert target.clip(np.asarray([-0.5, 1.5])).tolist() == [0.0, 1.0]


# -- the advice the critic hands on ---------------------------------------------------------------


def test_the_critics_record_gives_the_advice_advise_gives() -> None:
    """The architect reads the critic's instructions and its record of the fired rules; that is
    the same Advice as one computed again from the metrics, rules heaviest first."""
    spec = SPEC.model_copy(update={"train_accuracy_priority": 0.5})
    out = advise(
        EvaluationMetrics(
            train_accuracy=0.5,
            val_accuracy=0.5,
            fps=100.0,
            train_energy_kwh_pue=0.0,
            val_energy_kwh_pue=0.0,
            params=100,
        ),
        spec,
    )
    recorded = Advice.from_instructions(
        [i.model_dump(mode="json") for i in out.instructions],
        [r.model_dump(mode="json") for r in out.fired_rules],
        [d.model_dump(mode="json") for d in out.dropped],
    )
    computed = Advice.from_output(out)
    assert recorded.weights == computed.weights
    assert recorded.rules == computed.rules
    assert recorded.dropped == computed.dropped
    assert recorded.rules["ACL"] == ["val_accuracy_low", "train_accuracy_low"]
    bare = Advice.from_instructions([i.model_dump(mode="json") for i in out.instructions])
    assert bare.rules["ACL"] == ["train_accuracy_low", "val_accuracy_low"], "as raised"


# -- why a run stops ------------------------------------------------------------------------------


def _stop(**changes: object) -> str | None:
    values: dict[str, object] = {
        "iteration": 3,
        "max_iterations": 10,
        "elapsed_s": 50.0,
        "budget_s": 100.0,
        "stale": 1,
        "patience": 3,
        "targets_met": False,
    }
    values.update(changes)
    return judge.stop_reason(**values)  # type: ignore[arg-type]


def test_a_run_stops_for_the_first_reason_that_holds() -> None:
    assert _stop() is None
    assert _stop(iteration=10) == "reached 10 iterations"
    assert _stop(elapsed_s=100.4) == "time budget of 100 s spent (100 s)"
    assert _stop(stale=3) == "no better candidate in 3 iterations (patience 3)"
    assert _stop(targets_met=True) == "every prioritised target is met"
    everything = {"iteration": 10, "elapsed_s": 200.0, "stale": 5, "targets_met": True}
    assert _stop(**everything) == "reached 10 iterations"
    assert _stop(**{**everything, "iteration": 1}).startswith("time budget")  # type: ignore[union-attr]
    assert _stop(budget_s=None, patience=None, elapsed_s=1e9, stale=99) is None
