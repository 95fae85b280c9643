"""What every loader shares: the located source, the loaded arrays, and the search for files.

Loading happens in two steps so the cache can be checked cheaply: ``locate`` finds the files and
fingerprints them (path, size, mtime) without reading them, ``load`` reads them. A failed search
remembers every path it tried, so the error tells the user exactly where to put the files.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from archsmith.data.registry import DATA_DIR_ENV, DatasetInfo, DatasetUnavailableError
from archsmith.data.splits import SplitPlan, plan_splits, split_code
from archsmith.errors import InputError

__all__ = [
    "LoadedDataset",
    "Search",
    "Source",
    "check_seed",
    "checked_plan",
    "npz_splits",
    "read_npz",
    "resolve_options",
    "split_rows",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """Where a dataset's data comes from, found before anything is read.

    ``files`` lists what the loader will read (for a folder layout, every file in it), so the
    fingerprint changes when any of them changes; embedded sources have none and a fixed identity.
    ``content`` fingerprints the files' bytes instead of their size and mtime: a user's own data
    is edited in place, and an edit that keeps both (a tool that restores the mtime, two saves in
    one second) must still be prepared again. ``notes`` carries what locating found for the load
    to report (files it will not read).
    """

    layout: str
    path: Path | None
    files: tuple[Path, ...] = ()
    embedded_identity: str = ""
    content: bool = False
    notes: tuple[str, ...] = ()

    def identity(self) -> str:
        """A fingerprint of the source for the cache key: each file's path, and its size and
        mtime, or (``content``) its bytes."""
        if self.path is None:
            return f"{self.layout}:{self.embedded_identity}"
        digest = hashlib.sha256(f"{self.layout}:{self.path.resolve()}".encode())
        for f in self.files or (self.path,):
            name = f.relative_to(self.path)
            if self.content:
                digest.update(f"\n{name}|".encode())
                _hash_bytes(digest, f)
                continue
            st = f.stat()
            digest.update(f"\n{name}|{st.st_size}|{st.st_mtime_ns}".encode())
        return digest.hexdigest()

    def describe(self) -> str:
        return str(self.path) if self.path is not None else self.embedded_identity


#: Bytes read at a time when hashing a file's content: files are streamed, never held whole.
_CHUNK = 1 << 20


def _hash_bytes(digest: Any, path: Path) -> None:
    """Add ``path``'s length and bytes to ``digest``, streamed. An unreadable file adds its error
    instead: the load skips and reports it, and the key changes once it can be read."""
    try:
        with path.open("rb") as f:
            size = 0
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as e:
        digest.update(f"unreadable:{e.errno}".encode())
        return
    digest.update(f"|{size}".encode())


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset in memory: images uint8 (N, C, H, W) or token ids int64 (N, L), labels int64.

    ``splits`` says where each split came from (the source's own, or a seeded carve-out), so a
    report can state what its test figure was measured on.
    """

    x_train: npt.NDArray[Any]
    y_train: npt.NDArray[np.int64]
    x_val: npt.NDArray[Any]
    y_val: npt.NDArray[np.int64]
    x_test: npt.NDArray[Any]
    y_test: npt.NDArray[np.int64]
    class_names: tuple[str, ...]
    source: str
    splits: dict[str, str]
    vocabulary: list[str] | None = None
    extra_meta: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def vocab_size(self) -> int | None:
        """Ids a model must embed (padding 0 and out-of-vocabulary 1 included); None for images."""
        return None if self.vocabulary is None else len(self.vocabulary) + 2


def checked_plan(
    labels: npt.NDArray[np.int64],
    given: npt.NDArray[np.integer] | None,
    source: str,
    *,
    seed: int,
    names: Mapping[int, str] | None = None,
) -> SplitPlan:
    """``plan_splits`` for a loader: a bad split or one that leaves nothing to train on is the
    user's input error, named after the source."""
    try:
        plan = plan_splits(labels, given, seed=seed, names=names)
    except ValueError as e:
        raise InputError(f"{source}: {e}") from e
    if len(plan.train) == 0:
        raise InputError(f"{source}: no samples are left to train on after splitting")
    return plan


def split_rows(
    x: npt.NDArray[Any],
    y: npt.NDArray[np.integer],
    class_names: tuple[str, ...],
    source: str,
    *,
    seed: int,
    given: npt.NDArray[np.integer] | None = None,
    names: Mapping[int, str] | None = None,
) -> LoadedDataset:
    """Rows split into train, validation and test: the source's own splits where ``given`` has
    them, seeded stratified carve-outs for the rest (see ``plan_splits``)."""
    labels = np.asarray(y, dtype=np.int64)
    plan = checked_plan(labels, given, source, seed=seed, names=names)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = (
        (x[idx], labels[idx]) for idx in (plan.train, plan.val, plan.test)
    )
    return LoadedDataset(
        x_train, y_train, x_val, y_val, x_test, y_test, class_names, source, plan.origin
    )


class Search:
    """Looks for a dataset's files under the data folder and records every path it tried."""

    def __init__(self, info: DatasetInfo, data_dir: Path | None) -> None:
        self.info = info
        self.data_dir = data_dir
        self.looked: list[str] = []

    def note(self, path: Path, why: str) -> None:
        line = f"{path} ({why})"
        if line not in self.looked:
            self.looked.append(line)

    def file(self, relative: str) -> Path | None:
        """``<data_dir>/<relative>`` when it is a file; the miss is remembered."""
        if self.data_dir is None:
            return None
        path = self.data_dir / relative
        if path.is_file():
            return path
        self.note(path, "exists but is not a file" if path.exists() else "absent")
        return None

    def folder(self, relative: str) -> Path | None:
        """``<data_dir>/<relative>`` when it is a directory; the miss is remembered."""
        if self.data_dir is None:
            return None
        path = self.data_dir / relative
        if path.is_dir():
            return path
        self.note(path, "exists but is not a folder" if path.exists() else "absent")
        return None

    def unavailable(self) -> DatasetUnavailableError:
        """The error for a failed search: paths tried, where to point it, how to get the files."""
        name = self.info.name
        where = (
            f"Point --data-dir or the {DATA_DIR_ENV} environment variable at the folder that holds "
            "the files."
        )
        if self.data_dir is None:
            head = f"dataset {name!r} needs files and no data folder was given. {where}"
        elif not self.data_dir.is_dir():
            head = (
                f"dataset {name!r}: the data folder {self.data_dir} does not exist "
                f"(from --data-dir or {DATA_DIR_ENV}). {where}"
            )
        else:
            tried = "\n".join(f"  {line}" for line in self.looked)
            head = f"dataset {name!r} was not found. Looked in:\n{tried}\n{where}"
        logger.debug("dataset %s unavailable; looked in %s", name, self.looked)
        return DatasetUnavailableError(f"{head}\nHow to get it: {self.info.how_to_get}")


def check_seed(seed: int) -> None:
    """Seeds are non-negative integers (numpy's generators refuse negative ones)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")


def resolve_options(
    info: DatasetInfo, defaults: Mapping[str, int], given: Mapping[str, Any]
) -> dict[str, int]:
    """Fill in defaults and reject unknown or non-positive options, so the cache key is stable."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        allowed = ", ".join(sorted(defaults)) or "none"
        raise InputError(
            f"dataset {info.name!r} has no option(s) {', '.join(unknown)}; it accepts: {allowed}"
        )
    options = dict(defaults)
    for key, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(
                f"dataset {info.name!r}: option {key} must be a positive integer, got {value!r}"
            )
        options[key] = value
    return options


def read_npz(path: Path, required: tuple[str, ...]) -> dict[str, npt.NDArray[Any]]:
    """The arrays of a user's ``.npz``, read eagerly; a damaged or foreign file says so."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: np.asarray(archive[k]) for k in archive.files}
    except (OSError, ValueError, EOFError, TypeError, zipfile.BadZipFile) as e:
        raise InputError(f"cannot read {path} as an .npz archive: {e}") from e
    missing = [k for k in required if k not in arrays]
    if missing:
        raise InputError(
            f"{path} lacks the arrays {', '.join(missing)} "
            f"(it has {', '.join(sorted(arrays)) or 'none'})"
        )
    return arrays


def npz_splits(
    path: Path, arrays: dict[str, npt.NDArray[Any]], rows: int
) -> npt.NDArray[np.int64] | None:
    """The npz's own ``split`` (codes named by ``split_names``) as TRAIN/VAL/TEST codes, or None."""
    if "split" not in arrays:
        return None
    if "split_names" not in arrays:
        raise InputError(f"{path}: has a split array but no split_names to say what its codes mean")
    names = [str(n) for n in arrays["split_names"].ravel()]
    codes = [split_code(n) for n in names]
    if None in codes:
        raise InputError(f"{path}: split_names {names} must each be train, validation or test")
    split = arrays["split"].ravel()
    if split.dtype.kind not in "iu" or len(split) != rows:
        raise InputError(f"{path}: split must hold one integer code per image ({rows})")
    if len(split) and (split.min() < 0 or split.max() >= len(names)):
        raise InputError(f"{path}: split codes must lie in 0..{len(names) - 1}")
    return np.array(codes, dtype=np.int64)[split.astype(np.int64)]
