"""Prepare a dataset once on the host into the ``.npz`` the sandbox trains from.

The cache key hashes everything that changes the arrays (the dataset, its files' identity, the
seed, the subsample sizes and the options), so a second call with the same inputs returns the
existing file without reading the source, and a changed file or option gives a new one.
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
from archsmith.data.loaders import LOADERS, locate_dataset
from archsmith.data.prepared_format import (
    FORMAT_VERSION,
    PreparedDataset,
    load_prepared,
    save_prepared,
)
from archsmith.data.splits import stratified_subsample
from archsmith.errors import InputError

__all__ = ["PreparedDataset", "cache_key", "load_prepared", "prepare_dataset", "train_view"]

logger = logging.getLogger(__name__)

#: Bump when a loader's output changes for the same files, so stale prepared files are not reused.
LOADERS_VERSION = 1


def cache_key(payload: dict[str, Any]) -> str:
    """A short, stable hash of JSON-serialisable inputs."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _check_limit(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InputError(f"{name} must be a positive integer or None, got {value!r}")


def _subsample(
    loaded: LoadedDataset, max_train: int | None, max_val: int | None, seed: int
) -> LoadedDataset:
    """Cut each part to its limit, keeping the class proportions."""

    def cut(
        x: npt.NDArray[Any], y: npt.NDArray[np.int64], limit: int | None, stream: int
    ) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
        if limit is None or limit >= len(y):
            return x, y
        keep = stratified_subsample(y, limit, seed=(seed, stream))
        return x[keep], y[keep]

    x_train, y_train = cut(loaded.x_train, loaded.y_train, max_train, 1)
    x_val, y_val = cut(loaded.x_val, loaded.y_val, max_val, 2)
    return replace(loaded, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)


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

    Returns the path of the prepared file; when it already exists for the same inputs it is
    returned as it is, without reading the source again.
    """
    check_seed(seed)
    _check_limit("max_train", max_train)
    _check_limit("max_val", max_val)
    info, source, full = locate_dataset(name, data_dir, **options)
    key = cache_key(
        {
            "name": info.name,
            "format": FORMAT_VERSION,
            "loaders": LOADERS_VERSION,
            "source": source.identity(),
            "seed": seed,
            "max_train": max_train,
            "max_val": max_val,
            "options": full,
        }
    )
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{info.name}-{key}.npz"
    if path.is_file():
        logger.info("dataset %s already prepared: %s", info.name, path)
        return path
    started = time.perf_counter()
    loaded = LOADERS[info.name].load(source, seed, full)
    loaded = _subsample(loaded, max_train, max_val, seed)
    meta: dict[str, Any] = {
        "name": info.name,
        "task": info.task.value,
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
        "counts": {
            "train": len(loaded.y_train),
            "val": len(loaded.y_val),
            "train_per_class": np.bincount(loaded.y_train, minlength=loaded.num_classes).tolist(),
            "val_per_class": np.bincount(loaded.y_val, minlength=loaded.num_classes).tolist(),
        },
        **loaded.extra_meta,
    }
    arrays = {
        "x_train": loaded.x_train,
        "y_train": loaded.y_train.astype(np.int64),
        "x_val": loaded.x_val,
        "y_val": loaded.y_val.astype(np.int64),
    }
    save_prepared(path, arrays, meta, loaded.vocabulary)
    logger.info(
        "prepared %s in %.1f s: %d train, %d validation -> %s",
        info.name,
        time.perf_counter() - started,
        len(loaded.y_train),
        len(loaded.y_val),
        path,
    )
    return path


def train_view(path: Path) -> Path:
    """The candidate's copy of a prepared dataset: the training split, with no other split at all.

    Candidate code runs in a process that is given this file only, so validation (and test)
    labels never enter it. Written once next to ``path`` (``NAME-KEY.train.npz``) and reused; the
    prepared file's name is a hash of its inputs, so the view's is too.
    """
    view = path.with_name(f"{path.stem}.train.npz")
    if view.is_file():
        return view
    data = load_prepared(path)
    meta = {k: v for k, v in data.meta.items() if k not in ("counts", "format_version")}
    meta["view"] = "train"
    meta["counts"] = {
        "train": len(data.y_train),
        "train_per_class": np.bincount(data.y_train, minlength=data.num_classes).tolist(),
    }
    arrays = {
        "x_train": data.x_train,
        "y_train": data.y_train,
        "x_val": data.x_val[:0],
        "y_val": data.y_val[:0],
    }
    save_prepared(view, arrays, meta, list(data.vocabulary) if data.vocabulary else None)
    logger.info("wrote the training-split view %s", view)
    return view
