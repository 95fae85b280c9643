"""Seeded, stratified splits and subsamples: the train, validation and test splits of a dataset.

Every dataset has three splits: train (the candidate trains on it), validation (the critic and
every selection read it) and test (read once at the end, never for a decision), so the figure a
user is shown was not also the one the search optimised. The source's own splits are used where
it has them; what it lacks is carved out, seeded and stratified: the test split first
(``TEST_FRACTION`` of what the source offers for training), then validation from the rest with the
paper's 8:2. A small subsample must keep the class balance too, or a quick search would tune
models to a skewed dataset. Class quotas use the largest-remainder method in integer arithmetic,
so counts are exact and the same seed gives the same indices everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "SPLIT_CODES",
    "SPLIT_NAMES",
    "TEST",
    "TEST_FRACTION",
    "TRAIN",
    "VAL",
    "VAL_FRACTION",
    "Seed",
    "SplitPlan",
    "class_quotas",
    "plan_splits",
    "split_code",
    "stratified_split",
    "stratified_subsample",
]

#: The paper's validation share: an 8:2 train/validation split.
VAL_FRACTION = 0.2
#: The test share carved out of a source that has no test split of its own (before the 8:2).
TEST_FRACTION = 0.2

#: Codes for the split a source assigns to each row.
TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "val", "test")
#: The names sources give their splits (folder names, npz ``split_names``), folded to lower case.
SPLIT_CODES: Mapping[str, int] = {
    "train": TRAIN,
    "training": TRAIN,
    "val": VAL,
    "valid": VAL,
    "validation": VAL,
    "test": TEST,
    "testing": TEST,
}
#: Stream of the test carve-out, so it is independent of the validation carve-out's draw.
_TEST_STREAM = 3

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


def split_code(name: str) -> int | None:
    """The split a source's name for it means (``"Validation"`` is VAL); None if it is no split."""
    return SPLIT_CODES.get(name.strip().lower())


@dataclass(frozen=True)
class SplitPlan:
    """Row indices of the three splits, and how each split came about, in words for the report."""

    train: IndexArray
    val: IndexArray
    test: IndexArray
    origin: dict[str, str]


def _percent(fraction: float) -> str:
    return f"{round(fraction * 100)} %"


def _own(name: str, given: Mapping[int, str], code: int) -> str:
    return given.get(code, f"the source's own {name} split")


def plan_splits(
    labels: npt.NDArray[np.integer],
    given: npt.NDArray[np.integer] | None = None,
    *,
    seed: int,
    names: Mapping[int, str] | None = None,
) -> SplitPlan:
    """Train, validation and test indices: the source's own splits, the missing ones carved out.

    ``given`` holds each row's split code (TRAIN, VAL, TEST) as the source assigned it, or is None
    when the source has no splits. A missing test split is a seeded, stratified ``TEST_FRACTION``
    of the source's training rows; a missing validation split is then the paper's 8:2 of what is
    left of them. The source's own splits keep their row order; carved ones come back shuffled
    (so a prefix stays balanced). ``names`` overrides the words for a given split (e.g. which file
    it came from).
    """
    labels = np.asarray(labels)
    words = dict(names or {})
    if given is None:
        codes = np.full(len(labels), TRAIN, dtype=np.int64)
        pool = "the pooled data"
    else:
        codes = np.asarray(given).astype(np.int64).ravel()
        if len(codes) != len(labels):
            raise ValueError(f"{len(codes)} split codes for {len(labels)} rows")
        unknown = sorted(set(np.unique(codes).tolist()) - {TRAIN, VAL, TEST})
        if unknown:
            raise ValueError(f"unknown split codes {unknown}; expected {TRAIN}, {VAL} or {TEST}")
        pool = _own("training", words, TRAIN)
    train = np.flatnonzero(codes == TRAIN).astype(np.int64)
    val = np.flatnonzero(codes == VAL).astype(np.int64)
    test = np.flatnonzero(codes == TEST).astype(np.int64)
    origin = {
        "train": pool,
        "val": _own("validation", words, VAL),
        "test": _own("test", words, TEST),
    }
    cut: list[str] = []
    if len(test) == 0:
        keep, carved = stratified_split(
            labels[train], seed=(seed, _TEST_STREAM), val_fraction=TEST_FRACTION
        )
        train, test = train[keep], train[carved]
        origin["test"] = f"a seeded stratified {_percent(TEST_FRACTION)} carve-out of {pool}"
        cut.append("test")
    if len(val) == 0:
        keep, carved = stratified_split(labels[train], seed=seed)
        train, val = train[keep], train[carved]
        rest = f"{pool}, after the test carve-out" if cut else pool
        origin["val"] = f"a seeded stratified {_percent(VAL_FRACTION)} of {rest}, the paper's 8:2"
        cut.append("validation")
    if cut:
        origin["train"] = (
            f"{pool}, less the {' and '.join(cut)} carve-out{'s' if len(cut) > 1 else ''}"
        )
    return SplitPlan(train, val, test, origin)
