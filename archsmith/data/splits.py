"""Seeded, stratified splits and subsamples.

The paper splits every dataset 8:2 into training and validation over all its images, and a small
subsample must keep the class balance or a quick search would tune models to a skewed dataset.
Class quotas use the largest-remainder method in integer arithmetic, so counts are exact
(27,558 images give 5,512 for validation) and the same seed gives the same indices everywhere.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["VAL_FRACTION", "Seed", "class_quotas", "stratified_split", "stratified_subsample"]

#: The paper's validation share: an 8:2 train/validation split.
VAL_FRACTION = 0.2

IndexArray = npt.NDArray[np.int64]
#: A seed, or a seed with stream numbers, so one user seed can drive independent draws.
Seed = int | tuple[int, ...]


def class_quotas(counts: npt.NDArray[np.int64], total: int) -> npt.NDArray[np.int64]:
    """Split ``total`` over classes in proportion to ``counts``; the quotas sum to ``total``."""
    n = int(counts.sum())
    if not 0 <= total <= n:
        raise ValueError(f"cannot take {total} of {n} samples")
    if n == 0:
        return np.zeros_like(counts)
    scaled = counts.astype(np.int64) * total
    quotas = scaled // n
    remainders = scaled % n
    missing = total - int(quotas.sum())
    # Largest remainder first; ties go to the lower class index so the result is deterministic.
    order = np.lexsort((np.arange(len(counts)), -remainders))
    quotas[order[:missing]] += 1
    return quotas


def _per_class(labels: npt.NDArray[np.integer]) -> tuple[list[IndexArray], npt.NDArray[np.int64]]:
    classes = np.unique(labels)
    members = [np.flatnonzero(labels == c).astype(np.int64) for c in classes]
    counts = np.array([len(m) for m in members], dtype=np.int64)
    return members, counts


def stratified_split(
    labels: npt.NDArray[np.integer], *, seed: Seed, val_fraction: float = VAL_FRACTION
) -> tuple[IndexArray, IndexArray]:
    """Indices of a training and a validation part, each class split in the same proportion.

    Both index arrays come back shuffled (not grouped by class), so a prefix is still balanced.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    members, counts = _per_class(labels)
    quotas = class_quotas(counts, round(len(labels) * val_fraction))
    train: list[IndexArray] = []
    val: list[IndexArray] = []
    for idx, k in zip(members, quotas, strict=True):
        shuffled = rng.permutation(idx)
        val.append(shuffled[:k])
        train.append(shuffled[k:])
    empty = np.empty(0, dtype=np.int64)
    train_idx = rng.permutation(np.concatenate(train)) if train else empty
    val_idx = rng.permutation(np.concatenate(val)) if val else empty
    return train_idx.astype(np.int64), val_idx.astype(np.int64)


def stratified_subsample(labels: npt.NDArray[np.integer], n: int, *, seed: Seed) -> IndexArray:
    """Indices of ``n`` samples with the classes in their original proportions (all if fewer)."""
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    members, counts = _per_class(labels)
    quotas = class_quotas(counts, n)
    picked = [rng.permutation(idx)[:k] for idx, k in zip(members, quotas, strict=True)]
    return np.sort(np.concatenate(picked)).astype(np.int64)
