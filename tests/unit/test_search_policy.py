"""The surrogate and the choice both the bench and the offline architect make."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping

import numpy as np
import pytest

from archsmith.judge import Target, accuracy_target
from archsmith.search.policy import (
    Advice,
    Candidate,
    Knobs,
    Move,
    Observation,
    choose,
    weighted_sample,
)
from archsmith.search.surrogate import fit_linear
from archsmith.spec import TaskSpec
from archsmith.tools.rulebook_advice import advise
from archsmith.tools.schemas import EvaluationMetrics

# -- the surrogate --------------------------------------------------------------------------------


def test_a_linear_target_is_recovered_and_certain_where_observed() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(30, 4)).astype(float)
    w = np.array([0.3, -0.2, 0.1, 0.0])
    y = 5.0 + x @ w
    posterior = fit_linear(x, y, np.full(4, 1.0), noise_sd=0.01, scale=1.0)
    mu, sd = posterior.predict(x)
    assert np.allclose(mu, y, atol=0.01)
    assert np.all(sd < 0.01)


def test_one_observation_predicts_itself_and_doubt_grows_with_distance() -> None:
    x = np.array([[1.0, 0.0, 0.0]])
    posterior = fit_linear(x, np.array([0.7]), np.full(3, 0.5), noise_sd=0.1, scale=0.1)
    near, far = np.array([[1.0, 1.0, 0.0]]), np.array([[0.0, 1.0, 1.0]])
    mu, sd = posterior.predict(np.vstack([x, near, far]))
    assert np.allclose(mu, 0.7)
    assert sd[0] == pytest.approx(0.0)
    assert 0.0 < sd[1] < sd[2]


def test_fit_refuses_mismatched_shapes_and_non_positive_scales() -> None:
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="shapes"):
        fit_linear(x, np.zeros(3), np.ones(3), noise_sd=0.1, scale=1.0)
    with pytest.raises(ValueError, match="> 0"):
        fit_linear(x, np.zeros(2), np.ones(3), noise_sd=0.0, scale=1.0)


def test_a_logit_target_never_predicts_past_one() -> None:
    target = accuracy_target("accuracy")
    values = np.array([0.2, 0.9, 0.999])
    assert np.allclose(target.back(target.forward(values)), values)
    assert float(target.back(np.array([50.0]))[0]) <= 1.0


# -- sampling -------------------------------------------------------------------------------------


def test_weighted_sample_is_distinct_ordered_and_prefers_weight() -> None:
    rng = random.Random(0)
    counts: Counter[int] = Counter()
    for _ in range(2000):
        picked = weighted_sample([1.0, 1.0, 1.0, 5.0], 2, rng)
        assert picked == sorted(set(picked))
        assert len(picked) == 2
        counts.update(picked)
    assert counts[3] > max(counts[0], counts[1], counts[2])
    assert weighted_sample([1.0, 2.0], 5, rng) == [0, 1]


# -- advice ---------------------------------------------------------------------------------------

SPEC = TaskSpec(dataset="cifar10", input_shape=(3, 32, 32), num_classes=10, max_params=1_000)


def metrics(val: float, params: int) -> EvaluationMetrics:
    return EvaluationMetrics(
        train_accuracy=val,
        val_accuracy=val,
        train_energy_kwh_pue=0.0,
        val_energy_kwh_pue=0.0,
        fps=100.0,
        params=params,
    )


def test_advice_keeps_weights_rules_and_why_dropped() -> None:
    advice = Advice.from_output(advise(metrics(0.5, 5_000), SPEC))
    assert advice.weights["ACL"] > 0.0
    assert advice.rules["ACL"][0] == "val_accuracy_low"
    assert advice.rules["RDL"][0] == "params_over_limit"  # heaviest first (fps_low weighs 0)
    assert "conflicts with" in advice.dropped["RCL"]  # lost to ACL
    assert "conflicts with AMK" in advice.dropped["RK"]
    explained = advice.explain(Move("RCL", "a -> b", 2))
    assert explained["weight"] == 0.0
    assert explained["why"] == advice.dropped["RCL"]
    assert advice.explain(Move("AWI", "x"))["rules"] == ["val_accuracy_low"]


def test_advice_from_the_graphs_instructions() -> None:
    advice = Advice.from_instructions(
        [
            {"code": "ACL", "weight": 2.0, "raised_by": ["val_accuracy_low"]},
            {"code": "RK", "weight": 0.0},
        ]
    )
    assert advice.weights == {"ACL": 2.0}
    assert advice.ranked() == ["ACL"]
    assert advice.weight((Move("ACL", ""), Move("RK", ""))) == 1.0


# -- choosing -------------------------------------------------------------------------------------


def candidate(i: int, code: str, cost: float | None = None) -> Candidate[int]:
    features = np.zeros(4)
    features[i] = 1.0
    known = {"cost": cost} if cost is not None else {}
    return Candidate(i, (Move(code, f"edit {i}", i),), features, known)


def score(m: Mapping[str, float]) -> float:
    if m.get("cost", 0.0) > 10.0:
        return -math.inf
    return m.get("accuracy", 0.0)


OBSERVED = [Observation(np.zeros(4), {"accuracy": 0.6})]
TARGETS = [accuracy_target("accuracy"), Target("cost", 1.0)]
PRIOR = np.full(4, 0.5)


def test_rule_weight_breaks_the_tie_of_equally_promising_candidates() -> None:
    candidates = [candidate(i, code) for i, code in enumerate(("RK", "ACL", "RCL", "AMK"))]
    advice = Advice({"ACL": 1.0})
    for seed in range(10):
        chosen = choose(
            candidates, OBSERVED, TARGETS, score, incumbent=0.6, advice=advice,
            prior_sd=PRIOR, knobs=Knobs(sample=1.0), rng=random.Random(seed),
        )  # fmt: skip
        assert chosen.candidate.arch == 1
        assert chosen.weight == 1.0
        assert chosen.promising


def test_the_objective_beats_the_rules_when_the_surrogate_knows() -> None:
    """Observations say edit 1 hurts and edit 2 helps: the advised edit 1 loses."""
    observed = [
        Observation(np.zeros(4), {"accuracy": 0.6}),
        Observation(np.array([0.0, 1.0, 0.0, 0.0]), {"accuracy": 0.4}),
        Observation(np.array([0.0, 0.0, 1.0, 0.0]), {"accuracy": 0.8}),
    ]
    both = Candidate(9, (Move("RK", ""),), np.array([0.0, 1.0, 1.0, 0.0]))
    near_good = Candidate(8, (Move("RCL", ""),), np.array([0.0, 0.0, 1.0, 1.0]))
    chosen = choose(
        [both, near_good], observed, TARGETS, score, incumbent=0.8, advice=Advice({"RK": 1.0}),
        prior_sd=PRIOR, knobs=Knobs(sample=1.0), rng=random.Random(0),
    )  # fmt: skip
    assert chosen.candidate.arch == 8


def test_a_candidate_past_a_limit_is_taken_only_when_nothing_else_is_left() -> None:
    heavy = candidate(0, "ACL", cost=20.0)
    light = candidate(1, "RK", cost=5.0)
    advice = Advice({"ACL": 5.0})
    for seed in range(10):
        chosen = choose(
            [heavy, light], OBSERVED, TARGETS, score, incumbent=0.6, advice=advice,
            prior_sd=PRIOR, knobs=Knobs(), rng=random.Random(seed),
        )  # fmt: skip
        assert chosen.candidate.arch == 1
    alone = choose(
        [heavy], OBSERVED, TARGETS, score, incumbent=0.6, advice=advice,
        prior_sd=PRIOR, knobs=Knobs(), rng=random.Random(0),
    )  # fmt: skip
    assert alone.candidate.arch == 0
    assert not alone.promising
    assert alone.predicted == -math.inf


def test_choose_needs_a_candidate() -> None:
    with pytest.raises(ValueError, match="at least one"):
        choose(
            [], OBSERVED, TARGETS, score, incumbent=0.0, advice=Advice({}),
            prior_sd=PRIOR, knobs=Knobs(), rng=random.Random(0),
        )  # fmt: skip
