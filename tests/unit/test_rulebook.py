"""The rulebook: Table 3, every NNGES rule, every conflict pair, the data file's checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from archsmith.errors import InputError
from archsmith.spec import TaskSpec
from archsmith.tools.rulebook import (
    Rulebook,
    default_rulebook,
    evaluate_rules,
    load_rulebook,
    resolve_conflicts,
)
from archsmith.tools.schemas import EvaluationMetrics

# Table 3 of the LEMONADE paper, row by row.
TABLE3 = [
    ("ACL", "Add convolutional layer", "RCL"),
    ("ASC", "Add skip connection", "RSC"),
    ("ADL", "Add dense layer", "RDL"),
    ("RCL", "Reduce convolutional layer", "ACL"),
    ("RSC", "Reduce skip connection", "ASC"),
    ("RDL", "Reduce dense layer", "ADL"),
    ("AD", "Add dropout layer", "RD"),
    ("AMK", "Add more kernel", "RK"),
    ("AWI", "Add weight initializer", None),
    ("AR", "Add regularization", "RR"),
    ("RK", "Reduce number of kernel", "AMK"),
    ("RD", "Reduce dropout layer", "AD"),
    ("AMN", "Add more neurons", "RN"),
    ("RN", "Reduce neurons", "AMN"),
    ("RR", "Reduce regularization", "AR"),
]
PAIRS = [("ACL", "RCL"), ("ASC", "RSC"), ("ADL", "RDL"), ("AD", "RD"), ("AMK", "RK"),
         ("AR", "RR"), ("AMN", "RN")]  # fmt: skip

# Metrics that meet every paper default target: no rule fires.
GOOD: dict[str, Any] = {
    "train_accuracy": 0.995,
    "val_accuracy": 0.991,
    "train_energy_kwh_pue": 1e-4,
    "val_energy_kwh_pue": 1e-5,
    "fps": 20_000.0,
    "params": 50_000,
    "latency_ms": 0.5,
    "model_size_mb": 0.2,
}
SPEC: dict[str, Any] = {"dataset": "cifar10", "input_shape": [3, 32, 32], "num_classes": 10}
ALL_PRIORITIES: dict[str, Any] = {
    "train_accuracy_priority": 0.3,
    "val_accuracy_priority": 0.9,
    "fps_priority": 0.6,
    "train_energy_priority": 0.4,
    "val_energy_priority": 0.5,
    "params_priority": 0.8,
    "latency_priority": 0.7,
    "model_size_priority": 0.2,
}
LIMITS: dict[str, Any] = {"max_params": 100_000, "max_latency_ms": 1.0, "max_model_size_mb": 0.5}


def run(metrics: dict[str, Any], spec: dict[str, Any] | None = None) -> tuple[Any, ...]:
    m = EvaluationMetrics.model_validate({**GOOD, **metrics})
    s = TaskSpec.model_validate({**SPEC, **ALL_PRIORITIES, **LIMITS, **(spec or {})})
    return evaluate_rules(m, s)


def test_table3_instructions_meanings_and_conflicts() -> None:
    book = default_rulebook()
    assert [(i.code, i.meaning, i.conflicts_with) for i in book.instructions] == TABLE3
    assert book.conflict_pairs() == PAIRS


def test_every_instruction_is_raised_by_some_rule() -> None:
    book = default_rulebook()
    raised = {code for rule in book.rules for code in rule.instructions}
    assert raised == {code for code, _, _ in TABLE3}


def test_nothing_fires_when_every_target_is_met() -> None:
    fired, weights, skipped = run({})
    assert fired == []
    assert weights == {}
    assert skipped == []


# (rule, metrics that fire it, the clause text expected in the reason, weight with ALL_PRIORITIES)
RULE_CASES = [
    ("train_accuracy_low", {"train_accuracy": 0.9, "val_accuracy": 0.85},
     "train_accuracy 0.9 < TT_Acc 0.99 (short by 0.09)", 0.3),
    ("val_accuracy_low", {"val_accuracy": 0.95},
     "val_accuracy 0.95 < TV_Acc 0.99 (short by 0.04)", 0.9),
    ("overfitting", {"train_accuracy": 0.999, "val_accuracy": 0.8},
     "generalization_gap 0.199 > OT 0.1 (over by 0.099)", 0.9),
    ("underfitting", {"train_accuracy": 0.7, "val_accuracy": 0.69},
     "generalization_gap 0.01 < UT 0.05 (short by 0.04)", 0.9),
    ("fps_low", {"fps": 157.0}, "fps 157 < TF 14000 (short by 13843)", 0.6),
    ("train_energy_high", {"train_energy_kwh_pue": 0.004},
     "train_energy_kwh_pue 0.004 > TT_E 0.001 (over by 0.003)", 0.4),
    ("val_energy_high", {"val_energy_kwh_pue": 0.0015},
     "val_energy_kwh_pue 0.0015 > TV_E 0.001 (over by 0.0005)", 0.5),
    ("params_over_limit", {"params": 150_000},
     "params 150000 > max_params 100000 (over by 50000)", 0.8),
    ("latency_over_limit", {"latency_ms": 2.5},
     "latency_ms 2.5 > max_latency_ms 1 (over by 1.5)", 0.7),
    ("model_size_over_limit", {"model_size_mb": 0.75},
     "model_size_mb 0.75 > max_model_size_mb 0.5 (over by 0.25)", 0.2),
    ("training_diverged", {"diverged": True}, "diverged is true", 1.0),
]  # fmt: skip


@pytest.mark.parametrize(("rule_id", "metrics", "clause", "weight"), RULE_CASES)
def test_each_rule_fires_with_its_reason_and_weight(
    rule_id: str, metrics: dict[str, Any], clause: str, weight: float
) -> None:
    fired, weights, _ = run(metrics)
    by_id = {f.rule_id: f for f in fired}
    assert rule_id in by_id, [f.rule_id for f in fired]
    rule = by_id[rule_id]
    assert clause in rule.reason
    assert rule.weight == pytest.approx(weight)
    expected = next(r for r in default_rulebook().rules if r.id == rule_id)
    assert rule.instructions == list(expected.instructions)
    for code in rule.instructions:
        assert weights[code] >= weight - 1e-12
    numeric = [c for c in rule.conditions if c.threshold is not None]
    for c in numeric:
        assert c.margin is not None
        assert c.margin >= 0
        assert c.threshold_name is not None


def test_every_rule_has_a_firing_case() -> None:
    assert {case[0] for case in RULE_CASES} == {r.id for r in default_rulebook().rules}


@pytest.mark.parametrize(
    ("rule_id", "metrics"),
    [
        ("train_accuracy_low", {"train_accuracy": 0.99, "val_accuracy": 0.99}),
        ("val_accuracy_low", {"val_accuracy": 0.99}),
        ("overfitting", {"train_accuracy": 0.995, "val_accuracy": 0.895}),
        ("underfitting", {"train_accuracy": 0.995, "val_accuracy": 0.994}),
        ("underfitting", {"train_accuracy": 0.9, "val_accuracy": 0.8}),
        ("fps_low", {"fps": 14_000.0}),
        ("train_energy_high", {"train_energy_kwh_pue": 1e-3}),
        ("val_energy_high", {"val_energy_kwh_pue": 1e-3}),
        ("params_over_limit", {"params": 100_000}),
        ("latency_over_limit", {"latency_ms": 1.0}),
        ("model_size_over_limit", {"model_size_mb": 0.5}),
    ],
)
def test_rules_do_not_fire_at_or_inside_the_threshold(
    rule_id: str, metrics: dict[str, Any]
) -> None:
    fired, _, _ = run(metrics)
    assert rule_id not in {f.rule_id for f in fired}


def test_the_papers_worked_example() -> None:
    # T_Acc < TT_Acc: ACL, AMK, ADL and ASC receive the priority PT_Acc.
    m = EvaluationMetrics.model_validate({**GOOD, "train_accuracy": 0.9, "val_accuracy": 0.85})
    spec = TaskSpec.model_validate(
        {**SPEC, "train_accuracy_priority": 0.7, "val_accuracy_priority": 0.0}
    )
    fired, weights, _ = evaluate_rules(m, spec)
    first = fired[0]
    assert first.rule_id == "train_accuracy_low"
    assert first.weight_source == "PT_Acc"
    for code in ("ACL", "AMK", "ADL", "ASC"):
        assert weights[code] == pytest.approx(0.7)
    kept = resolve_conflicts(weights).weights()
    assert kept == {"ACL": 0.7, "ASC": 0.7, "ADL": 0.7, "AMK": 0.7}


def test_weights_of_several_rules_add_up() -> None:
    # val_accuracy_low (PV_Acc 0.9) and underfitting (PV_Acc 0.9) both raise AMK; so does
    # train_accuracy_low (PT_Acc 0.3).
    _, weights, _ = run({"train_accuracy": 0.7, "val_accuracy": 0.69})
    assert weights["AMK"] == pytest.approx(0.3 + 0.9 + 0.9)


def test_priority_zero_fires_but_weighs_nothing() -> None:
    fired, weights, _ = run({"fps": 100.0}, {"fps_priority": 0.0})
    (rule,) = [f for f in fired if f.rule_id == "fps_low"]
    assert rule.weight == 0.0
    assert resolve_conflicts(weights).kept == []


@pytest.mark.parametrize(
    "metrics",
    [
        {"diverged": True},
        {"train_loss": float("nan")},
        {"val_loss": float("inf")},
        {"train_loss": float("-inf")},
    ],
)
def test_divergence_is_detected_and_silences_accuracy_rules(metrics: dict[str, Any]) -> None:
    fired, weights, _ = run({"train_accuracy": 0.1, "val_accuracy": 0.1, **metrics})
    ids = {f.rule_id for f in fired}
    assert "training_diverged" in ids
    assert not ids & {"train_accuracy_low", "val_accuracy_low", "overfitting", "underfitting"}
    assert weights == {"AWI": 1.0, "ASC": 1.0, "RCL": 1.0}


def test_finite_losses_are_not_divergence() -> None:
    fired, _, _ = run({"train_loss": 0.3, "val_loss": 12.0})
    assert fired == []


def test_unset_limits_and_unmeasured_metrics_are_reported_not_checked() -> None:
    m = EvaluationMetrics.model_validate({**GOOD, "latency_ms": None, "params": 10**9})
    spec = TaskSpec.model_validate({**SPEC, "max_latency_ms": 1.0})
    fired, _, skipped = evaluate_rules(m, spec)
    reasons = {s.rule_id: s.reason for s in skipped}
    assert reasons == {
        "params_over_limit": "max_params is not set in the spec",
        "latency_over_limit": "latency_ms was not measured",
        "model_size_over_limit": "max_model_size_mb is not set in the spec",
    }
    assert "params_over_limit" not in {f.rule_id for f in fired}


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_each_conflict_pair_keeps_the_heavier(a: str, b: str) -> None:
    for heavy, light in ((a, b), (b, a)):
        res = resolve_conflicts({heavy: 0.6, light: 0.4})
        assert res.weights() == {heavy: 0.6}
        (dropped,) = res.dropped
        assert dropped.code == light
        assert dropped.lost_to == heavy
        assert "weighs more" in dropped.reason


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_ties_go_to_the_instruction_listed_first_in_table3(a: str, b: str) -> None:
    for weights in ({a: 0.5, b: 0.5}, {b: 0.5, a: 0.5}):
        res = resolve_conflicts(weights)
        assert res.weights() == {a: 0.5}
        assert res.dropped[0].lost_to == a
        assert "earlier in Table 3" in res.dropped[0].reason


def test_resolution_matches_algorithm2_on_a_mixed_case() -> None:
    # The paper's own example (ADL 0.5 vs RDL 0.4) among other instructions.
    res = resolve_conflicts(
        {"ADL": 0.5, "RDL": 0.4, "AWI": 0.2, "AD": 0.0, "RD": -0.3, "RK": 0.9, "AMK": 0.9}
    )
    assert list(res.weights().items()) == [("AMK", 0.9), ("ADL", 0.5), ("AWI", 0.2)]
    assert {d.code: d.reason for d in res.dropped} == {
        "RK": "conflicts with AMK, equal weight (0.9), earlier in Table 3",
        "RDL": "conflicts with ADL, which weighs more (0.5)",
        "AD": "weight <= 0",
        "RD": "weight <= 0",
    }


def test_resolution_rejects_unknown_codes_and_nan() -> None:
    with pytest.raises(ValueError, match="unknown instruction 'XYZ'"):
        resolve_conflicts({"XYZ": 1.0})
    with pytest.raises(ValueError, match="finite"):
        resolve_conflicts({"ACL": float("nan")})


# -- the data file --------------------------------------------------------------------------------


def _book_data() -> dict[str, Any]:
    return json.loads(default_rulebook().model_dump_json())


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "rulebook.json"
    path.write_text(json.dumps(data))
    return path


def test_packaged_rulebook_round_trips_through_a_file(tmp_path: Path) -> None:
    assert load_rulebook(_write(tmp_path, _book_data())) == default_rulebook()
    assert load_rulebook() is default_rulebook()


def test_a_users_rulebook_changes_the_advice(tmp_path: Path) -> None:
    data = _book_data()
    data["rules"] = [
        {
            "id": "slow",
            "description": "Too slow for the device.",
            "when": [{"metric": "fps", "op": "<", "threshold": 1000.0}],
            "instructions": ["RK"],
            "weight": 0.25,
        }
    ]
    book = load_rulebook(_write(tmp_path, data))
    m = EvaluationMetrics.model_validate({**GOOD, "fps": 10.0})
    fired, weights, _ = evaluate_rules(m, TaskSpec.model_validate(SPEC), book)
    assert weights == {"RK": 0.25}
    assert fired[0].reason == "fps 10 < 1000 (short by 990)"
    assert fired[0].weight_source == "constant"


def _mutate_conflict(d: dict[str, Any]) -> None:
    d["instructions"][0]["conflicts_with"] = "RSC"


def _mutate_self_conflict(d: dict[str, Any]) -> None:
    d["instructions"][8]["conflicts_with"] = "AWI"


def _mutate_unknown_instruction(d: dict[str, Any]) -> None:
    d["rules"][0]["instructions"].append("XYZ")


def _mutate_unknown_metric(d: dict[str, Any]) -> None:
    d["rules"][0]["when"][0]["metric"] = "accuracy"


def _mutate_unknown_threshold(d: dict[str, Any]) -> None:
    d["rules"][0]["when"][0]["threshold"] = "train_acc_threshold"


def _mutate_unknown_weight(d: dict[str, Any]) -> None:
    d["rules"][0]["weight"] = "train_priority"


def _mutate_bool_op_on_number(d: dict[str, Any]) -> None:
    d["rules"][0]["when"][0] = {"metric": "fps", "op": "is_true"}


def _mutate_missing_threshold(d: dict[str, Any]) -> None:
    d["rules"][0]["when"][0].pop("threshold")


def _mutate_duplicate_rule(d: dict[str, Any]) -> None:
    d["rules"].append(d["rules"][0])


def _mutate_extra_key(d: dict[str, Any]) -> None:
    d["rules"][0]["priority"] = 1


def _mutate_rule_against_its_target(d: dict[str, Any]) -> None:
    fps = next(r for r in d["rules"] if r["id"] == "fps_low")
    fps["when"][0]["op"] = ">"


def _mutate_two_targets_on_one_metric(d: dict[str, Any]) -> None:
    d["targets"].append({**d["targets"][0], "name": "again"})


def _mutate_target_on_a_flag(d: dict[str, Any]) -> None:
    d["targets"][0]["metric"] = "diverged"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_mutate_conflict, "conflicts must be mutual: ACL names RSC"),
        (_mutate_self_conflict, "AWI conflicts with itself"),
        (_mutate_unknown_instruction, "raises unknown instructions ['XYZ']"),
        (_mutate_unknown_metric, "unknown metric 'accuracy'"),
        (_mutate_unknown_threshold, "threshold 'train_acc_threshold' is not a TaskSpec field"),
        (_mutate_unknown_weight, "weight 'train_priority' is not a TaskSpec field"),
        (_mutate_bool_op_on_number, "op 'is_true' does not apply to metric 'fps'"),
        (_mutate_missing_threshold, "op '<' needs a threshold"),
        (_mutate_duplicate_rule, "rule ids repeat"),
        (_mutate_extra_key, "rules.0.priority: unknown field"),
        (_mutate_rule_against_its_target, "but the target 'inference throughput' is missed"),
        (_mutate_two_targets_on_one_metric, "a metric has more than one target"),
        (_mutate_target_on_a_flag, "target metric 'diverged' is not a measured figure"),
    ],
)
def test_invalid_rulebooks_are_rejected_with_a_reason(
    tmp_path: Path, mutate: Any, message: str
) -> None:
    data = _book_data()
    mutate(data)
    with pytest.raises(InputError) as info:
        load_rulebook(_write(tmp_path, data))
    assert message in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_rulebook_model_is_the_schema_of_the_data_file() -> None:
    # The JSON beside the module validates as-is: no field the model does not know.
    text = Path(__file__).resolve().parents[2].joinpath("archsmith/tools/rulebook.json").read_text()
    assert Rulebook.model_validate_json(text) == default_rulebook()


# -- whose rule is it ----------------------------------------------------------------------------


def test_each_packaged_rule_says_whether_it_is_the_papers_or_archsmiths() -> None:
    """The paper states one rule (training accuracy below TT_Acc); the rest are archsmith's."""
    path = Path(__file__).resolve().parents[2] / "archsmith/tools/rulebook.json"
    raw = json.loads(path.read_text())
    assert all("origin" in rule for rule in raw["rules"]), "every packaged rule states its origin"
    origins = {r.id: r.origin for r in default_rulebook().rules}
    assert {rid for rid, o in origins.items() if o == "paper"} == {"train_accuracy_low"}
    assert set(origins.values()) == {"paper", "archsmith"}


def test_a_users_rule_is_the_users_and_an_unknown_origin_is_refused(tmp_path: Path) -> None:
    data = _book_data()
    del data["rules"][1]["origin"]
    assert load_rulebook(_write(tmp_path, data)).rules[1].origin == "user"
    data["rules"][0]["origin"] = "folklore"
    with pytest.raises(InputError, match=r"rules\.0\.origin"):
        load_rulebook(_write(tmp_path, data))


def test_archsmith_rules_shows_each_rules_origin() -> None:
    from typer.testing import CliRunner

    from archsmith.cli import app

    result = CliRunner().invoke(app, ["rules"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    assert "│ paper " in rows["train_accuracy_low"]
    assert "│ archsmith " in rows["val_accuracy_low"]
    assert "origin: paper = the LEMONADE paper states the rule" in result.output


# -- the table of targets ------------------------------------------------------------------------


def test_the_packaged_targets_cover_every_threshold_with_a_priority() -> None:
    """One table of targets: each spec threshold that has a priority is in it, once."""
    book = default_rulebook()
    assert [(t.metric, t.direction) for t in book.targets] == [
        ("val_accuracy", ">="),
        ("train_accuracy", ">="),
        ("fps", ">="),
        ("train_energy_kwh_pue", "<="),
        ("val_energy_kwh_pue", "<="),
        ("params", "<="),
        ("latency_ms", "<="),
        ("model_size_mb", "<="),
    ]
    priorities = {name for name in TaskSpec.model_fields if name.endswith("_priority")}
    assert {t.priority for t in book.targets} == priorities
    fps = book.target("fps")
    assert fps is not None
    assert fps.met(1000.0, 1000.0)
    assert not fps.met(999.0, 1000.0)
    params = book.target("params")
    assert params is not None
    assert params.met(100.0, 100.0)
    assert not params.met(101.0, 100.0)
    assert book.target("generalization_gap") is None


def test_a_users_rulebook_may_leave_the_targets_out(tmp_path: Path) -> None:
    data = _book_data()
    del data["targets"]
    assert load_rulebook(_write(tmp_path, data)).targets == ()
