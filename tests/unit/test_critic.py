"""The critic's decisions on scripted measurements: hard limits, the parent's advice, no zeros.

The critic reads only the state (the validation and evaluation of the candidate in flight), so
these tests hand it the state a run would and check what it decides.
"""

from __future__ import annotations

from typing import Any

import pytest

from archsmith.agents import nodes
from archsmith.agents.state import AgentState
from archsmith.spec import TaskSpec
from archsmith.tools.rulebook_advice import advise
from archsmith.tools.schemas import EvaluationMetrics

SPEC = TaskSpec(
    dataset="digits", input_shape=(1, 8, 8), num_classes=10, max_params=10, fps_priority=1.0
)


def _state(iteration: int, params: int, val: float, *, fps: float | None = 900.0,
           best: dict[str, Any] | None = None, diverged: bool = False) -> AgentState:  # fmt: skip
    train: dict[str, Any] = {
        "train_accuracy": None if diverged else min(1.0, val + 0.01),
        "val_accuracy": None if diverged else val,
        "train_energy_kwh_pue": 1e-6,
        "params": params,
        "size_mb": params * 4 / 1e6,
        "diverged": diverged,
        "model_dir": f"/models/{iteration}",
    }
    measure = None if fps is None else {"fps": fps, "val_energy_kwh_pue": 1e-8, "latency_ms": 0.5}
    return {
        "spec": SPEC.model_dump(mode="json"),
        "iteration": iteration,
        "max_iterations": 10,
        "candidate": {
            "code": f"# {iteration}",
            "summary": f"#{iteration}",
            "arch": None,
            "applied": [],
        },
        "validation": {"params": params, "size_mb": params * 4 / 1e6},
        "evaluation": {"train": train, "measure": measure},
        "history": [],
        "best": best,
    }


def critic(state: AgentState) -> dict[str, Any]:
    return nodes.critic(state, None)  # type: ignore[arg-type] # the critic reads no context


def test_a_model_within_the_limits_beats_any_model_past_them() -> None:
    big = critic(_state(1, params=44, val=0.95))
    assert big["best"]["iteration"] == 1  # nothing better yet: kept, but marked
    assert big["best"]["feasible"] is False
    assert big["best"]["limit_violations"] == ["params 44 > max_params 10"]
    (entry,) = big["history"]
    assert entry["limit_violations"] == ["params 44 > max_params 10"]
    assert "params_over_limit" in {r["rule_id"] for r in entry["fired_rules"]}

    small = critic(_state(2, params=8, val=0.40, best=big["best"]))
    assert small["best"]["iteration"] == 2, "a worse CM within the limit wins over a violation"
    assert small["best"]["feasible"] is True

    bigger_again = critic(_state(3, params=40, val=0.99, best=small["best"]))
    assert bigger_again["best"]["iteration"] == 2
    assert bigger_again["history"][0]["is_best"] is False

    better_small = critic(_state(4, params=9, val=0.60, best=small["best"]))
    assert better_small["best"]["iteration"] == 4


def test_the_next_round_is_advised_on_the_parent_not_on_the_loser() -> None:
    first = critic(_state(1, params=8, val=0.90))
    loser = critic(_state(2, params=44, val=0.10, best=first["best"]))
    parent = EvaluationMetrics.model_validate(first["best"]["metrics"])
    expected = [i.model_dump(mode="json") for i in advise(parent, SPEC).instructions]
    assert loser["instructions"] == expected
    # The loser's own diagnosis is kept in its history entry, where show and report read it.
    own = {i["code"] for i in loser["history"][0]["instructions"]}
    assert "RCL" in own or "RK" in own  # it was told to shrink; the parent was not
    assert loser["instructions"] != loser["history"][0]["instructions"]
    assert loser["history"][0]["next_parent"] == 1


def test_an_unmeasured_figure_is_absent_not_zero() -> None:
    out = critic(_state(1, params=8, val=0.0, fps=None, diverged=True))
    (entry,) = out["history"]
    assert entry["status"] == "diverged"
    metrics = entry["metrics"]
    assert metrics["fps"] is None
    assert metrics["val_accuracy"] is None
    assert metrics["val_energy_kwh_pue"] is None
    fired = {r["rule_id"] for r in entry["fired_rules"]}
    assert "fps_low" not in fired, "no rule fires on 'fps 0' for an FPS nobody measured"
    assert "training_diverged" in fired
    assert entry["combined_metric"] is None
    assert out["best"] is None
    assert out["stop_reason"] is None


@pytest.mark.parametrize(
    ("weights", "missing", "cm_known"),
    [
        ({"weight_accuracy": 1.0, "weight_fps": 0.0}, "fps", True),
        ({"weight_accuracy": 0.8, "weight_fps": 0.2}, "fps", False),
        ({"weight_accuracy": 1.0, "weight_fps": 0.0}, "val_accuracy", False),
        ({"weight_accuracy": 0.5, "weight_energy": 0.5}, "val_energy_kwh_pue", False),
    ],
)
def test_cm_is_computed_only_from_what_was_measured(
    weights: dict[str, float], missing: str, cm_known: bool
) -> None:
    spec = TaskSpec(dataset="digits", input_shape=(1, 8, 8), num_classes=10, **weights)
    values: dict[str, Any] = {
        "train_accuracy": 0.9,
        "val_accuracy": 0.8,
        "train_energy_kwh_pue": 1e-6,
        "val_energy_kwh_pue": 1e-8,
        "fps": 900.0,
        "params": 100,
        missing: None,
    }
    result = advise(EvaluationMetrics.model_validate(values), spec)
    assert (result.combined_metric is not None) is cm_known
    if missing == "val_accuracy":
        assert result.targets_met is False, "an unmeasured accuracy is not a met target"


def test_the_pareto_fronts_are_the_reports() -> None:
    history = [
        {"iteration": 1, "status": "evaluated",
         "metrics": {"val_accuracy": 0.9, "fps": 100.0, "val_energy_kwh_pue": 1e-6, "params": 50}},
        {"iteration": 2, "status": "evaluated",
         "metrics": {"val_accuracy": 0.8, "fps": 900.0, "val_energy_kwh_pue": 1e-7, "params": 10}},
        {"iteration": 3, "status": "evaluated",
         "metrics": {"val_accuracy": 0.7, "fps": 50.0, "val_energy_kwh_pue": 1e-5, "params": 99}},
        {"iteration": 4, "status": "failed", "metrics": None},
    ]  # fmt: skip
    assert nodes._front_members(history) == [1, 2]


def test_a_candidate_stopped_early_is_recorded_and_changes_nothing_else() -> None:
    first = critic(_state(1, params=8, val=0.90))
    record = {
        "epoch": 2,
        "epochs": 6,
        "train_accuracy": 0.41,
        "val_accuracy": 0.40,
        "stopped": True,
        "rule": "learning-curve bound, checked after epoch 2 of 6, margin 0.02",
        "reason": "at best CM 1.1 at the end, below the best's 1.81 (iteration 1)",
        "bound": {"combined_metric_bound": 1.1, "best_combined_metric": 1.81},
    }
    state = _state(2, params=44, val=0.0, best=first["best"])
    state["instructions"] = first["instructions"]
    state["stale_iterations"] = 0
    # What train_model returns for it: its account and energy, no measured figure, no model.
    state["evaluation"] = {
        "train": {"early_stop": record, "train_energy_kwh_pue": 1e-7, "model_dir": None},
        "measure": None,
    }
    out = critic(state)
    (entry,) = out["history"]
    assert entry["status"] == "stopped early"
    assert entry["early_stop"] == record
    assert entry["combined_metric"] is None
    assert entry["is_best"] is False
    assert entry["model_dir"] is None
    # Its validation figures are known: the hard limit it breaks is on record.
    assert entry["limit_violations"] == ["params 44 > max_params 10"]
    assert entry["metrics"]["val_accuracy"] is None
    assert entry["metrics"]["params"] == 44
    assert entry["next_parent"] == 1
    # The best, its advice and the run's patience count go on as for any candidate that lost.
    assert out["best"] == first["best"]
    assert out["instructions"] == first["instructions"]
    assert out["stale_iterations"] == 1
    assert out["stop_reason"] is None
