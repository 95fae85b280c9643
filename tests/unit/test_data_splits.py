"""Splits and subsamples: exact class quotas, stratified, the same for the same seed, and the three
splits (train, validation, test) with the source's own where it has them."""

from __future__ import annotations

import numpy as np
import pytest

from archsmith.data.splits import (
    TEST,
    TRAIN,
    VAL,
    SplitPlan,
    class_quotas,
    plan_splits,
    split_code,
    stratified_split,
    stratified_subsample,
)


def test_quotas_are_exact_and_proportional() -> None:
    counts = np.array([13779, 13779])
    assert class_quotas(counts, 5512).tolist() == [2756, 2756]
    quotas = class_quotas(np.array([5, 3, 2]), 3)
    assert quotas.sum() == 3
    assert quotas.tolist() == [1, 1, 1]  # 1.5, 0.9, 0.6: floors 1, 0, 0; remainders .5 < .6 < .9
    assert class_quotas(np.array([4, 4]), 0).tolist() == [0, 0]
    with pytest.raises(ValueError, match="cannot take"):
        class_quotas(np.array([1, 1]), 3)


def test_split_is_eight_to_two_stratified_and_disjoint() -> None:
    labels = np.repeat(np.arange(3), [500, 300, 200])
    train, val = stratified_split(labels, seed=0)
    assert len(val) == 200
    assert len(train) == 800
    assert np.bincount(labels[val]).tolist() == [100, 60, 40]
    assert np.bincount(labels[train]).tolist() == [400, 240, 160]
    assert not set(train.tolist()) & set(val.tolist())
    assert sorted([*train.tolist(), *val.tolist()]) == list(range(1000))
    # Shuffled, not grouped by class, so a prefix stays balanced.
    assert len(set(labels[val[:30]].tolist())) == 3


def test_split_is_deterministic_by_seed() -> None:
    labels = np.arange(100) % 4
    a = stratified_split(labels, seed=7)
    b = stratified_split(labels, seed=7)
    c = stratified_split(labels, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])


def test_split_rejects_a_bad_fraction() -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(np.zeros(10, dtype=np.int64), seed=0, val_fraction=1.0)


def test_subsample_keeps_class_proportions() -> None:
    labels = np.repeat(np.arange(2), [900, 100])
    keep = stratified_subsample(labels, 50, seed=3)
    assert len(keep) == 50
    assert len(set(keep.tolist())) == 50
    assert np.bincount(labels[keep]).tolist() == [45, 5]
    assert np.array_equal(keep, stratified_subsample(labels, 50, seed=3))
    assert len(stratified_subsample(labels, 5000, seed=3)) == 1000


# --- the three splits ---------------------------------------------------------------------------


def _disjoint_cover(plan: SplitPlan, n: int) -> None:
    parts = [set(p.tolist()) for p in (plan.train, plan.val, plan.test)]
    assert sum(len(p) for p in parts) == n
    assert set().union(*parts) == set(range(n))


def test_no_source_splits_carve_test_first_then_eight_to_two() -> None:
    labels = np.repeat(np.arange(2), [600, 400])
    plan = plan_splits(labels, seed=0)
    _disjoint_cover(plan, 1000)
    assert np.bincount(labels[plan.test]).tolist() == [120, 80]  # 20 % of each class
    assert np.bincount(labels[plan.val]).tolist() == [96, 64]  # 20 % of the remaining 800
    assert np.bincount(labels[plan.train]).tolist() == [384, 256]
    assert plan.origin["test"] == "a seeded stratified 20 % carve-out of the pooled data"
    assert "after the test carve-out" in plan.origin["val"]
    assert "8:2" in plan.origin["val"]


def test_three_way_split_is_reproducible_by_seed() -> None:
    labels = np.arange(300) % 3
    a, b, c = (plan_splits(labels, seed=s) for s in (4, 4, 5))
    for part in ("train", "val", "test"):
        assert np.array_equal(getattr(a, part), getattr(b, part))
    assert not np.array_equal(a.test, c.test)
    # The test draw has its own stream: it is not the validation draw of the same seed.
    assert not np.array_equal(np.sort(a.test), np.sort(stratified_split(labels, seed=4)[1]))


def test_the_sources_test_split_is_kept_and_validation_carved_from_train() -> None:
    labels = np.arange(150) % 3
    given = np.where(np.arange(150) >= 120, TEST, TRAIN)
    plan = plan_splits(labels, given, seed=1, names={TEST: "the test file"})
    _disjoint_cover(plan, 150)
    assert plan.test.tolist() == list(range(120, 150))  # exactly the source's, in its order
    assert len(plan.val) == 24
    assert np.bincount(labels[plan.val]).tolist() == [8, 8, 8]
    assert (plan.train < 120).all()
    assert (plan.val < 120).all()
    assert plan.origin["test"] == "the test file"
    assert plan.origin["train"] == "the source's own training split, less the validation carve-out"


def test_all_three_given_are_used_as_they_are() -> None:
    given = np.array([TRAIN, VAL, TEST, TRAIN, TEST, VAL, TRAIN])
    plan = plan_splits(np.zeros(7, np.int64), given, seed=0)
    assert plan.train.tolist() == [0, 3, 6]
    assert plan.val.tolist() == [1, 5]
    assert plan.test.tolist() == [2, 4]
    assert plan.origin == {
        "train": "the source's own training split",
        "val": "the source's own validation split",
        "test": "the source's own test split",
    }


def test_a_given_validation_split_without_test_carves_test_from_train_only() -> None:
    labels = np.arange(100) % 2
    given = np.where(np.arange(100) < 80, TRAIN, VAL)
    plan = plan_splits(labels, given, seed=0)
    assert plan.val.tolist() == list(range(80, 100))
    assert len(plan.test) == 16
    assert (plan.test < 80).all()
    assert np.bincount(labels[plan.test]).tolist() == [8, 8]


def test_bad_split_codes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown split codes"):
        plan_splits(np.zeros(3, np.int64), np.array([0, 1, 7]), seed=0)
    with pytest.raises(ValueError, match="2 split codes for 3 rows"):
        plan_splits(np.zeros(3, np.int64), np.array([0, 1]), seed=0)


def test_split_names_of_sources() -> None:
    assert split_code("Validation") == VAL
    assert split_code(" test ") == TEST
    assert split_code("training") == TRAIN
    assert split_code("Parasitized") is None
