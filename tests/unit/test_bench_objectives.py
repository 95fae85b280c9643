"""Objectives on tabular spaces: scores, ranks, the TaskSpec each builds and the rules it fires."""

from __future__ import annotations

import math
import pickle
import statistics

import pytest

from archsmith.bench.base import Arch, Evaluator, Objective, Record, TabularSpace
from archsmith.bench.objectives import (
    AccuracyObjective,
    LatencyObjective,
    MFactorObjective,
    make_objective,
)
from archsmith.bench.spaces import NasBench201, NasBenchMacro, nb201_params
from archsmith.data.registry import REGISTRY
from archsmith.errors import InputError
from archsmith.metrics import m_factor
from archsmith.spec import TaskSpec
from archsmith.tools.rulebook_advice import advise


def small_macro() -> NasBenchMacro:
    """Four architectures: two tie for the best accuracy; the smallest is the worst."""
    return NasBenchMacro(
        {
            "cifar10": {
                (0,) * 8: Record(0.20, 400_000),
                (1,) * 8: Record(0.90, 1_000_000),
                (2,) * 8: Record(0.93, 3_000_000),
                (2,) * 7 + (1,): Record(0.93, 2_500_000),
            }
        }
    )


def small_nb201() -> NasBench201:
    """Four cells with CIFAR-10 latency on every device; fast ones are less accurate."""
    rows: dict[Arch, tuple[float, float]] = {
        (0,) * 6: (0.10, 1.0),
        (2,) * 6: (0.90, 10.0),
        (3,) * 6: (0.94, 40.0),
        (3, 3, 3, 2, 2, 2): (0.92, 20.0),
    }
    devices = ("pi4", "pixel3", "fpga", "eyeriss")
    records: dict[str, dict[Arch, Record]] = {d: {} for d in NasBench201.datasets}
    for arch, (acc, ms) in rows.items():
        timed = {d: ms * (i + 1) for i, d in enumerate(devices)}  # pi4 x1, pixel3 x2, ...
        records["cifar10"][arch] = Record(acc, nb201_params(arch, 10), latency_ms=timed)
        for dataset, k in (("cifar100", 100), ("imagenet16-120", 120)):
            records[dataset][arch] = Record(acc / 2, nb201_params(arch, k))
    return NasBench201(records)


def ranks_of(space: TabularSpace, objective: Objective) -> dict[Arch, int]:
    return Evaluator.rank_table(space, "cifar10", objective)


def fired(objective: Objective, record: Record) -> dict[str, float]:
    advice = advise(objective.metrics(record), objective.spec())
    return {rule.rule_id: rule.weight for rule in advice.fired_rules}


# -- accuracy -------------------------------------------------------------------------------------


def test_accuracy_ranks_share_ties() -> None:
    space = small_macro()
    objective = AccuracyObjective(space, "cifar10")
    ranks = ranks_of(space, objective)
    assert ranks == {(2,) * 8: 1, (2,) * 7 + (1,): 1, (1,) * 8: 3, (0,) * 8: 4}
    assert objective.best_accuracy == 0.93
    assert objective.feasible(space.record((0,) * 8, "cifar10"))


def test_accuracy_spec_and_rules() -> None:
    space = small_macro()
    objective = AccuracyObjective(space, "cifar10")
    spec = objective.spec()
    assert spec.val_accuracy_threshold == 1.0  # any gain: not the table's best, a hint
    assert spec.train_accuracy_threshold <= spec.val_accuracy_threshold
    assert spec.max_params is None
    assert spec.max_latency_ms is None
    poor = fired(objective, space.record((0,) * 8, "cifar10"))
    assert poor["val_accuracy_low"] == 1.0
    assert "underfitting" not in poor
    assert "overfitting" not in poor
    best = fired(objective, space.record((2,) * 8, "cifar10"))
    assert best["val_accuracy_low"] == 1.0  # the optimum looks like any other architecture


# -- m-factor -------------------------------------------------------------------------------------


def test_m_factor_scores_and_optimum() -> None:
    space = small_macro()
    objective = MFactorObjective(space, "cifar10")
    assert objective.min_params == 400_000
    rec = space.record((1,) * 8, "cifar10")
    assert objective.score(rec) == m_factor(0.90, 1_000_000, 400_000, 1.0)
    expected = max(space.all_archs(), key=lambda a: objective.score(space.record(a, "cifar10")))
    assert objective.optimum == expected
    assert ranks_of(space, objective)[expected] == 1
    assert objective.name == "m-factor"


def test_m_factor_spec_pushes_both_ways() -> None:
    space = small_macro()
    objective = MFactorObjective(space, "cifar10")
    records = [space.record(a, "cifar10") for a in space.all_archs()]
    spec = objective.spec()
    # No oracle: any gain in accuracy and the median size, not the optimum's accuracy or size.
    assert spec.val_accuracy_threshold == 1.0
    assert spec.max_params == statistics.median_low(r.params or 0 for r in records)
    assert spec.params_priority == 1.0
    big = fired(objective, space.record((2,) * 8, "cifar10"))
    assert big["params_over_limit"] == 1.0
    small = fired(objective, space.record((0,) * 8, "cifar10"))
    assert small["val_accuracy_low"] == 1.0
    assert "params_over_limit" not in small


def test_m_factor_alpha() -> None:
    space = small_macro()
    accuracy_only = MFactorObjective(space, "cifar10", alpha=0.0)
    assert accuracy_only.name == "m-factor(alpha=0)"
    for arch in space.all_archs():
        record = space.record(arch, "cifar10")
        assert accuracy_only.score(record) == pytest.approx(record.accuracy)
    size_first = MFactorObjective(space, "cifar10", alpha=4.0)
    assert size_first.name == "m-factor(alpha=4)"
    assert size_first.spec().max_params is not None
    with pytest.raises(InputError, match="alpha must be"):
        MFactorObjective(space, "cifar10", alpha=-1.0)
    with pytest.raises(InputError, match="alpha must be"):
        MFactorObjective(space, "cifar10", alpha=math.nan)


def test_m_factor_needs_params() -> None:
    space = NasBenchMacro({"cifar10": {(0,) * 8: Record(0.5), (1,) * 8: Record(0.6, 10)}})
    with pytest.raises(InputError, match=r"needs parameter counts.*00000000"):
        MFactorObjective(space, "cifar10")


def test_m_factor_real_macro(macro: NasBenchMacro) -> None:
    objective = MFactorObjective(macro, "cifar10")
    assert objective.min_params == macro.record(macro.decode("00000000"), "cifar10").params
    ranks = ranks_of(macro, objective)
    assert ranks[objective.optimum] == 1
    best = macro.record(objective.optimum, "cifar10")
    # The trade-off picks a small network: far fewer parameters than the accuracy optimum.
    top = macro.record(macro.decode("22212220"), "cifar10")
    assert best.params is not None
    assert top.params is not None
    assert best.params < top.params / 2
    assert fired(objective, top)["params_over_limit"] == 1.0


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "imagenet16-120"])
def test_m_factor_real_nb201(nb201: NasBench201, dataset: str) -> None:
    objective = MFactorObjective(nb201, dataset)
    k = REGISTRY[dataset].num_classes
    assert objective.min_params == nb201_params((0,) * 6, k)
    ranks = Evaluator.rank_table(nb201, dataset, objective)
    assert ranks[objective.optimum] == 1
    assert objective.spec().num_classes == k
    assert fired(objective, nb201.record((3,) * 6, dataset))["params_over_limit"] == 1.0


# -- latency --------------------------------------------------------------------------------------


def test_latency_infeasible_is_minus_inf_and_last() -> None:
    space = small_nb201()
    objective = LatencyObjective(space, "cifar10", "pi4", max_latency_ms=20.0)
    assert objective.name == "latency:pi4<=20ms"
    slow = space.record((3,) * 6, "cifar10")
    assert not objective.feasible(slow)
    assert objective.score(slow) == -math.inf
    ranks = ranks_of(space, objective)
    assert ranks == {(3, 3, 3, 2, 2, 2): 1, (2,) * 6: 2, (0,) * 6: 3, (3,) * 6: 4}
    assert objective.best_feasible_accuracy == 0.92


def test_latency_spec_and_rules() -> None:
    space = small_nb201()
    objective = LatencyObjective(space, "cifar10", "fpga", max_latency_ms=60.0)
    spec = objective.spec()
    assert (spec.max_latency_ms, spec.latency_priority) == (60.0, 1.0)
    assert spec.val_accuracy_threshold == 1.0
    slow = space.record((3,) * 6, "cifar10")  # 40 ms x 3 on the fpga
    rules = fired(objective, slow)
    assert rules["latency_over_limit"] == 1.0
    assert rules["val_accuracy_low"] == 1.0
    metrics = objective.metrics(slow)
    assert metrics.latency_ms == 120.0
    assert metrics.fps == pytest.approx(1000.0 / 120.0)
    assert metrics.params == slow.params
    best = fired(objective, space.record((3, 3, 3, 2, 2, 2), "cifar10"))
    assert "latency_over_limit" not in best


def test_latency_default_limit_is_the_median() -> None:
    space = small_nb201()
    objective = LatencyObjective(space, "cifar10", "pixel3")
    latencies = [space.record(a, "cifar10").latency_ms["pixel3"] for a in space.all_archs()]
    assert objective.max_latency_ms == statistics.median_low(latencies) == 20.0
    assert objective.name == "latency:pixel3<=20ms"
    assert objective.feasible_count == 2


def test_latency_errors() -> None:
    space = small_nb201()
    with pytest.raises(InputError, match=r"no latency for device 'gpu'.*pi4, pixel3, fpga"):
        LatencyObjective(space, "cifar10", "gpu")
    with pytest.raises(InputError, match=r"no pi4 latency on cifar100.*measured for cifar10"):
        LatencyObjective(space, "cifar100", "pi4")
    with pytest.raises(InputError, match=r"within 0\.5 ms.*fastest takes 1 ms"):
        LatencyObjective(space, "cifar10", "pi4", max_latency_ms=0.5)
    with pytest.raises(InputError, match="max_latency_ms must be"):
        LatencyObjective(space, "cifar10", "pi4", max_latency_ms=-1.0)
    with pytest.raises(InputError, match="nas-bench-macro has no measured latency"):
        LatencyObjective(small_macro(), "cifar10", "pi4")


def test_latency_real_nb201(nb201: NasBench201) -> None:
    for device in nb201.devices:
        objective = LatencyObjective(nb201, "cifar10", device)
        assert objective.feasible_count >= nb201.size() // 2
        ranks = ranks_of(nb201, objective)
        infeasible = [
            r for a, r in ranks.items() if not objective.feasible(nb201.record(a, "cifar10"))
        ]
        assert set(infeasible) == {objective.feasible_count + 1}


# -- every objective ------------------------------------------------------------------------------


def test_unknown_dataset() -> None:
    with pytest.raises(InputError, match="no dataset 'cifar100'; choose one of cifar10"):
        AccuracyObjective(small_macro(), "cifar100")


@pytest.mark.parametrize(
    ("name", "kwargs", "cls"),
    [
        ("accuracy", {}, AccuracyObjective),
        ("M-Factor", {"alpha": 2.0}, MFactorObjective),
        ("m_factor", {}, MFactorObjective),
        ("latency", {"device": "pi4"}, LatencyObjective),
        ("latency", {"device": "eyeriss", "max_latency_ms": 100.0}, LatencyObjective),
    ],
)
def test_make_objective(name: str, kwargs: dict[str, object], cls: type) -> None:
    objective = make_objective(name, small_nb201(), "cifar10", **kwargs)  # type: ignore[arg-type]
    assert isinstance(objective, cls)
    copy = pickle.loads(pickle.dumps(objective))
    record = small_nb201().record((2,) * 6, "cifar10")
    assert copy.score(record) == objective.score(record)
    assert copy.name == objective.name


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("speed", {}, "unknown objective 'speed'; known: accuracy, m-factor, latency"),
        ("accuracy", {"device": "pi4"}, "latency objective only"),
        ("m-factor", {"max_latency_ms": 3.0}, "latency objective only"),
        ("accuracy", {"alpha": 2.0}, "m-factor objective only"),
        ("latency", {}, "needs a device; known devices: pi4, pixel3, fpga, eyeriss"),
    ],
)
def test_make_objective_errors(name: str, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        make_objective(name, small_nb201(), "cifar10", **kwargs)  # type: ignore[arg-type]


def real_objectives(
    macro: NasBenchMacro, nb201: NasBench201
) -> list[tuple[TabularSpace, str, Objective]]:
    out: list[tuple[TabularSpace, str, Objective]] = [
        (macro, "cifar10", AccuracyObjective(macro, "cifar10")),
        (macro, "cifar10", MFactorObjective(macro, "cifar10")),
        (macro, "cifar10", MFactorObjective(macro, "cifar10", alpha=3.0)),
    ]
    for dataset in nb201.datasets:
        out += [
            (nb201, dataset, AccuracyObjective(nb201, dataset)),
            (nb201, dataset, MFactorObjective(nb201, dataset)),
        ]
    out += [(nb201, "cifar10", LatencyObjective(nb201, "cifar10", d)) for d in nb201.devices]
    return out


def test_real_specs_give_no_hint_of_the_optimum(macro: NasBenchMacro, nb201: NasBench201) -> None:
    """On the real tables, the rules fire alike on the optimum and on the worst architecture:
    the targets are any gain in accuracy and a user's kind of limit, so the advice cannot tell
    the search that it has found the best."""
    for space, dataset, objective in real_objectives(macro, nb201):
        spec = objective.spec()
        info = REGISTRY[dataset]
        assert (spec.dataset, spec.num_classes) == (info.name, info.num_classes)
        assert spec.input_shape == info.input_shape
        assert TaskSpec.model_validate(spec.model_dump()) == spec
        assert spec.fps_priority == spec.train_energy_priority == spec.val_energy_priority == 0.0
        assert spec.val_accuracy_threshold == spec.train_accuracy_threshold == 1.0
        ranks = Evaluator.rank_table(space, dataset, objective)
        best = min(ranks, key=lambda a: (ranks[a], a))
        advice = advise(objective.metrics(space.record(best, dataset)), spec)
        assert not advice.targets_met, objective.name
        assert "val_accuracy_low" in {r.rule_id for r in advice.fired_rules}


def test_gap_rules_never_fire(macro: NasBenchMacro) -> None:
    objective = AccuracyObjective(macro, "cifar10")
    for arch in macro.all_archs()[::97]:
        rules = fired(objective, macro.record(arch, "cifar10"))
        assert "overfitting" not in rules
        assert "underfitting" not in rules
        assert rules.get("train_accuracy_low", 0.0) == 0.0  # reported, weightless (PT_Acc = 0)
