"""Prepare a dataset once on the host into the ``.npz`` the sandbox trains from.

The cache key hashes everything that changes the arrays (the dataset, its files' identity, the
seed, the subsample sizes, the options and the file format), so a second call with the same inputs
returns the existing file without reading the source, and a changed file or option gives a new one.
A path instead of a registry name prepares the user's own data the same way; its files' identity
is their bytes (hashed, streamed), so an edit is seen whatever it does to sizes and mtimes.
The file holds all three splits; ``meta["splits"]`` says where each came from and
``meta["counts"]`` how many samples (per class) each has. ``max_train`` and ``max_val`` cut their
split to a stratified subsample; the test split is always whole, so the final figure a user reads
is measured on all of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from archsmith.data.common import LoadedDataset, check_seed
from archsmith.data.loaders import locate
from archsmith.data.prepared_format import (
    FORMAT_VERSION,
    PreparedDataset,
    PreparedDatasetError,
    load_prepared,
    read_meta,
    save_prepared,
)
from archsmith.data.splits import stratified_subsample
from archsmith.errors import InputError

__all__ = ["PreparedDataset", "cache_key", "load_prepared", "prepare_dataset", "train_view"]

logger = logging.getLogger(__name__)

#: Bump when a loader's output changes for the same files, so stale prepared files are not reused.
#: 2: every dataset has a test split (CIFAR's test batch moved from validation to test).
LOADERS_VERSION = 2


def cache_key(payload: dict[str, Any]) -> str:
    """A short, stable hash of JSON-serialisable inputs."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _is_current(path: Path) -> bool:
    """Whether a cached file can be reused: readable and in this format (an older one, say
    format 1 with no test split, is prepared again rather than misread)."""
    try:
        version = read_meta(path).get("format_version")
    except PreparedDatasetError as e:
        logger.warning("preparing %s again: %s", path, e)
        return False
    if version != FORMAT_VERSION:
        logger.warning("preparing %s again: format %r, now %d", path, version, FORMAT_VERSION)
        return False
    return True


def _check_limit(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InputError(f"{name} must be a positive integer or None, got {value!r}")


def _subsample(
    loaded: LoadedDataset, max_train: int | None, max_val: int | None, seed: int
) -> LoadedDataset:
    """Cut the training and validation splits to their limits, keeping the class proportions.

    The test split stays whole. A cut split's origin says so, for the report.
    """
    splits = dict(loaded.splits)

    def cut(
        part: str, x: npt.NDArray[Any], y: npt.NDArray[np.int64], limit: int | None, stream: int
    ) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
        if limit is None or limit >= len(y):
            return x, y
        keep = stratified_subsample(y, limit, seed=(seed, stream))
        splits[part] = f"{splits[part]}; a seeded stratified subsample of {limit} of its {len(y)}"
        return x[keep], y[keep]

    x_train, y_train = cut("train", loaded.x_train, loaded.y_train, max_train, 1)
    x_val, y_val = cut("val", loaded.x_val, loaded.y_val, max_val, 2)
    return replace(
        loaded, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, splits=splits
    )


def _counts(
    parts: dict[str, npt.NDArray[np.int64]], num_classes: int
) -> dict[str, int | list[int]]:
    """Samples per split and per class in each: ``train``, ``train_per_class``, ``val``, ..."""
    counts: dict[str, int | list[int]] = {}
    for part, y in parts.items():
        counts[part] = len(y)
        counts[f"{part}_per_class"] = np.bincount(y, minlength=num_classes).tolist()
    return counts


def prepare_dataset(
    name: str,
    data_dir: Path | None,
    cache_dir: Path,
    *,
    seed: int = 0,
    max_train: int | None = None,
    max_val: int | None = None,
    **options: Any,
) -> Path:
    """Load ``name``, subsample it if asked, and write ``<cache_dir>/<name>-<key>.npz`` atomically.

    ``name`` is a registry name or the path of the user's own data (``archsmith.data.user``;
    the file is then ``user-<folder or file name>-<key>.npz``). Returns the path of the prepared
    file; when it already exists for the same inputs it is returned as it is, without reading
    the source again.
    """
    check_seed(seed)
    _check_limit("max_train", max_train)
    _check_limit("max_val", max_val)
    found = locate(name, data_dir, **options)
    source, full = found.source, found.options
    key = cache_key(
        {
            "name": found.name,
            "format": FORMAT_VERSION,
            "loaders": LOADERS_VERSION,
            "source": source.identity(),
            "seed": seed,
            "max_train": max_train,
            "max_val": max_val,
            "options": full,
            **found.key,
        }
    )
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{found.label}-{key}.npz"
    if path.is_file() and _is_current(path):
        logger.info("dataset %s already prepared: %s", found.name, path)
        return path
    started = time.perf_counter()
    loaded = found.load(source, seed, full)
    loaded = _subsample(loaded, max_train, max_val, seed)
    meta: dict[str, Any] = {
        "name": found.name,
        "task": found.task.value,
        "input_shape": list(loaded.input_shape),
        "num_classes": loaded.num_classes,
        "class_names": list(loaded.class_names),
        "vocab_size": loaded.vocab_size,
        "source": loaded.source,
        "source_layout": source.layout,
        "seed": seed,
        "max_train": max_train,
        "max_val": max_val,
        "options": full,
        "splits": loaded.splits,
        "counts": _counts(
            {"train": loaded.y_train, "val": loaded.y_val, "test": loaded.y_test},
            loaded.num_classes,
        ),
        **loaded.extra_meta,
    }
    arrays = {
        "x_train": loaded.x_train,
        "y_train": loaded.y_train.astype(np.int64),
        "x_val": loaded.x_val,
        "y_val": loaded.y_val.astype(np.int64),
        "x_test": loaded.x_test,
        "y_test": loaded.y_test.astype(np.int64),
    }
    save_prepared(path, arrays, meta, loaded.vocabulary)
    logger.info(
        "prepared %s in %.1f s: %d train, %d validation, %d test -> %s",
        found.name,
        time.perf_counter() - started,
        len(loaded.y_train),
        len(loaded.y_val),
        len(loaded.y_test),
        path,
    )
    return path


def train_view(path: Path) -> Path:
    """The candidate's copy of a prepared dataset: the training split, with no other split at all.

    Candidate code runs in a process that is given this file only, so validation and test labels
    never enter it: the validation arrays are empty and the test arrays are not in the file at all
    (reading it gives empty ones). Written once next to ``path`` (``NAME-KEY.train.npz``) and
    reused; the prepared file's name is a hash of its inputs, so the view's is too.
    """
    view = path.with_name(f"{path.stem}.train.npz")
    if view.is_file() and _is_current(view):
        return view
    data = load_prepared(path)
    dropped = ("counts", "format_version", "splits")
    meta = {k: v for k, v in data.meta.items() if k not in dropped}
    meta["view"] = "train"
    if "splits" in data.meta:
        meta["splits"] = {"train": data.meta["splits"]["train"]}
    meta["counts"] = _counts({"train": data.y_train}, data.num_classes)
    arrays = {
        "x_train": data.x_train,
        "y_train": data.y_train,
        "x_val": data.x_val[:0],
        "y_val": data.y_val[:0],
    }
    save_prepared(view, arrays, meta, list(data.vocabulary) if data.vocabulary else None)
    logger.info("wrote the training-split view %s", view)
    return view
