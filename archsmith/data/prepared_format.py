"""The prepared-dataset file: what the host writes once and the sandbox reads for every candidate.

The sandbox has only numpy and torch, so this module imports nothing but numpy and the standard
library (archsmith's ``InputError`` is used as the error base when it can be imported, a plain
``ValueError`` otherwise) and can be imported, or copied, on its own. One ``.npz`` holds
``x_train``, ``y_train``, ``x_val``, ``y_val``, ``x_test``, ``y_test`` and ``meta``, a JSON string;
images are uint8 channels-first (N, C, H, W), token sequences int64 (N, L), labels int64. Text
datasets add ``vocabulary`` (the word of each id from 2 on) so new text can be encoded the same way.

The test pair may be absent from a file, and then reads as empty: the candidate's training view
holds no test rows at all (not even an empty array), and a file made by hand for one job may have
none. ``meta["counts"]`` guards the rest: a file whose counts name test rows must hold them.
Format 1 had no test split; such a file is refused by its version, and ``prepare_dataset`` writes
a new one instead (the version is part of its cache key).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from archsmith.errors import InputError as _ErrorBase
else:
    try:
        from archsmith.errors import InputError as _ErrorBase
    except ImportError:  # inside the sandbox pydantic is absent; stay a ValueError there
        _ErrorBase = ValueError

__all__ = [
    "ARRAY_KEYS",
    "FORMAT_VERSION",
    "REQUIRED_KEYS",
    "SPLITS",
    "PreparedDataset",
    "PreparedDatasetError",
    "load_prepared",
    "read_meta",
    "save_prepared",
]

FORMAT_VERSION = 2
#: The splits, in order, and the arrays of each.
SPLITS = ("train", "val", "test")
ARRAY_KEYS = tuple(f"{xy}_{part}" for part in SPLITS for xy in ("x", "y"))
#: Arrays every file holds; the test pair may be absent (and then reads as empty).
REQUIRED_KEYS = ARRAY_KEYS[:4]
OPTIONAL_KEYS = ARRAY_KEYS[4:]
META_KEY = "meta"
VOCABULARY_KEY = "vocabulary"
_REQUIRED_META = ("name", "task", "input_shape", "num_classes", "class_names")
_TEXT_TASK = "text_classification"


class PreparedDatasetError(_ErrorBase):
    """A file is not a valid prepared dataset (corrupt, truncated, or some other npz)."""


@dataclass(frozen=True)
class PreparedDataset:
    """A prepared dataset's arrays (train, validation, test) and the fields of its ``meta``.

    ``x_test`` and ``y_test`` are empty, (0, *input_shape) and (0,), when the file holds no test
    split (the candidate's training view).
    """

    x_train: npt.NDArray[Any]
    y_train: npt.NDArray[np.int64]
    x_val: npt.NDArray[Any]
    y_val: npt.NDArray[np.int64]
    x_test: npt.NDArray[Any]
    y_test: npt.NDArray[np.int64]
    name: str
    task: str
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...]
    vocab_size: int | None = None
    vocabulary: tuple[str, ...] | None = None
    source: str | None = None
    seed: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _check(ok: bool, where: Path, problem: str) -> None:
    if not ok:
        raise PreparedDatasetError(
            f"{where} is not a valid archsmith prepared dataset: {problem}; "
            "prepare it again with prepare_dataset()"
        )


def _validate(arrays: dict[str, npt.NDArray[Any]], meta: dict[str, Any], where: Path) -> None:
    """The checks that let a trainer trust the file: keys, dtypes, shapes, label range."""
    for key in _REQUIRED_META:
        _check(key in meta, where, f"meta has no {key!r}")
    version = meta.get("format_version", FORMAT_VERSION)
    _check(version == FORMAT_VERSION, where, f"format_version {version!r} != {FORMAT_VERSION}")
    shape = meta["input_shape"]
    _check(
        isinstance(shape, list | tuple) and all(isinstance(d, int) and d > 0 for d in shape),
        where,
        f"meta input_shape {shape!r} is not a list of positive integers",
    )
    num_classes = meta["num_classes"]
    _check(isinstance(num_classes, int) and num_classes >= 1, where, "bad num_classes")
    names = meta["class_names"]
    _check(
        isinstance(names, list | tuple) and len(names) == num_classes,
        where,
        f"meta class_names must list {num_classes} names",
    )
    text = meta["task"] == _TEXT_TASK
    present = [k for k in OPTIONAL_KEYS if k in arrays]
    _check(len(present) != 1, where, f"{' and '.join(present)} without its pair")
    counts = meta.get("counts", {})
    _check(isinstance(counts, dict), where, "meta counts is not a JSON object")
    for part in SPLITS:
        if f"x_{part}" not in arrays:
            _check(not counts.get(part), where, f"meta counts {part} rows and the file has none")
            continue
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        _check(y.dtype == np.int64 and y.ndim == 1, where, f"y_{part} must be int64 (N,)")
        _check(len(x) == len(y), where, f"x_{part} has {len(x)} rows, y_{part} {len(y)}")
        _check(
            tuple(x.shape[1:]) == tuple(shape),
            where,
            f"x_{part} samples have shape {tuple(x.shape[1:])}, meta says {tuple(shape)}",
        )
        want = np.int64 if text else np.uint8
        _check(x.dtype == want, where, f"x_{part} is {x.dtype}, expected {np.dtype(want)}")
        if len(y):
            _check(
                int(y.min()) >= 0 and int(y.max()) < num_classes,
                where,
                f"y_{part} has labels outside 0..{num_classes - 1}",
            )
        if part in counts:
            _check(
                counts[part] == len(y),
                where,
                f"meta counts {counts[part]!r} {part} rows, the file holds {len(y)}",
            )


def _test_split(
    arrays: dict[str, npt.NDArray[Any]], input_shape: tuple[int, ...]
) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
    """The file's test split, or an empty one of the right dtype and shape when it has none."""
    if "x_test" in arrays:
        return arrays["x_test"], arrays["y_test"]
    x = np.empty((0, *input_shape), dtype=arrays["x_train"].dtype)
    return x, np.empty(0, dtype=np.int64)


def _read_archive(
    path: Path, members: tuple[str, ...] = (*ARRAY_KEYS, META_KEY, VOCABULARY_KEY)
) -> tuple[dict[str, npt.NDArray[Any]], set[str]]:
    """The archive's ``members`` (those it has), read eagerly so a damaged one fails here, not in
    training, and the names of all its members."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError as e:
        raise PreparedDatasetError(f"prepared dataset {path} does not exist") from e
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise PreparedDatasetError(f"cannot read {path} as an .npz archive: {e}") from e
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise PreparedDatasetError(f"{path} holds a single array, not an .npz archive")
    try:
        with loaded as archive:
            keys = set(archive.files)
            wanted = [k for k in members if k in keys]
            return {k: np.asarray(archive[k]) for k in wanted}, keys
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise PreparedDatasetError(f"{path} is damaged: {e}") from e


def _parse_meta(arrays: dict[str, npt.NDArray[Any]], keys: set[str], path: Path) -> dict[str, Any]:
    _check(META_KEY in keys, path, f"missing arrays ['{META_KEY}'] (it has {sorted(keys)})")
    try:
        meta = json.loads(str(arrays.pop(META_KEY)))
    except json.JSONDecodeError as e:
        raise PreparedDatasetError(f"{path}: meta is not valid JSON ({e.msg})") from e
    _check(isinstance(meta, dict), path, "meta is not a JSON object")
    return dict(meta)


def read_meta(path: Path) -> dict[str, Any]:
    """Only the ``meta`` of a prepared ``.npz`` (the arrays stay on disk): a cheap look at its
    format version and counts. Anything that is not one raises PreparedDatasetError."""
    path = Path(path)
    arrays, keys = _read_archive(path, (META_KEY,))
    return _parse_meta(arrays, keys, path)


def load_prepared(path: Path) -> PreparedDataset:
    """Read and check a prepared ``.npz``; anything that is not one raises PreparedDatasetError."""
    path = Path(path)
    arrays, keys = _read_archive(path)
    missing = [k for k in (*REQUIRED_KEYS, META_KEY) if k not in keys]
    _check(not missing, path, f"missing arrays {missing} (it has {sorted(keys)})")
    meta = _parse_meta(arrays, keys, path)
    vocab = arrays.pop(VOCABULARY_KEY, None)
    _validate(arrays, meta, path)
    vocab_size = meta.get("vocab_size")
    input_shape = tuple(int(d) for d in meta["input_shape"])
    x_test, y_test = _test_split(arrays, input_shape)
    return PreparedDataset(
        x_train=arrays["x_train"],
        y_train=arrays["y_train"],
        x_val=arrays["x_val"],
        y_val=arrays["y_val"],
        x_test=x_test,
        y_test=y_test,
        name=str(meta["name"]),
        task=str(meta["task"]),
        input_shape=input_shape,
        num_classes=int(meta["num_classes"]),
        class_names=tuple(str(c) for c in meta["class_names"]),
        vocab_size=int(vocab_size) if vocab_size is not None else None,
        vocabulary=tuple(str(w) for w in vocab.tolist()) if vocab is not None else None,
        source=meta.get("source"),
        seed=meta.get("seed"),
        meta=meta,
    )


def save_prepared(
    path: Path,
    arrays: dict[str, npt.NDArray[Any]],
    meta: dict[str, Any],
    vocabulary: list[str] | None = None,
) -> Path:
    """Check and write a prepared dataset atomically: readers see the old file or the whole new one.

    The data goes to a temporary file in the same folder, is flushed to disk, then renamed over
    ``path``; an interrupted write leaves no partial ``path`` behind. ``x_test`` and ``y_test``
    are written when given (both or neither).
    """
    path = Path(path)
    meta = {**meta, "format_version": FORMAT_VERSION}
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    _check(not missing, path, f"missing arrays {missing}")
    _validate(arrays, meta, path)
    payload: dict[str, npt.NDArray[Any]] = {k: arrays[k] for k in ARRAY_KEYS if k in arrays}
    payload[META_KEY] = np.array(json.dumps(meta, sort_keys=True))
    if vocabulary is not None:
        payload[VOCABULARY_KEY] = np.array(vocabulary, dtype=np.str_)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, allow_pickle=False, **payload)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); the sandbox may read it as another user.
        tmp.chmod(0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
