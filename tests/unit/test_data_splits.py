"""Splits and subsamples: exact class quotas, stratified, and the same for the same seed."""

from __future__ import annotations

import numpy as np
import pytest

from archsmith.data.splits import class_quotas, stratified_split, stratified_subsample


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
