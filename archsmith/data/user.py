"""A user's own data, named by its path: what the path is, and the checks every kind shares.

Three kinds are read (``user_images``, ``user_text``): a folder of class folders of images, an
``.npz`` of ``images`` and ``labels``, and a CSV or JSONL of ``text`` and ``label``. A dataset
string is a registry name or a path; a path is recorded absolute (a run resumed from another
folder finds the same data), with the one option that changes its arrays, ``--image-size``,
written after it as ``?image_size=N`` so the string alone prepares the same file wherever it is
passed (a TaskSpec, a tool call). The prepared file is keyed by the data's bytes (``Source``'s
``content``), so an edited file is prepared again whatever its mtime.

Every kind refuses, before any work, data a search cannot use: one class, a class with fewer
than ``MIN_PER_CLASS`` examples (when the splits are carved out) or none in the training split,
labels of mixed types. Files or rows it cannot read are skipped, counted and named in a warning.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from archsmith.data.registry import DatasetNotFoundError, resolve_dataset
from archsmith.data.splits import TEST, TEST_FRACTION, TRAIN, VAL, VAL_FRACTION
from archsmith.errors import InputError
from archsmith.spec import TaskKind

__all__ = [
    "MIN_PER_CLASS",
    "USER_FORMAT",
    "DatasetRef",
    "Layout",
    "check_classes",
    "class_ids",
    "dataset_argument",
    "few",
    "looks_like_path",
    "parse_reference",
    "report_skipped",
    "user_meta",
]

logger = logging.getLogger(__name__)

Layout = Literal["image-folder", "image-npz", "text-csv", "text-jsonl"]

#: Bump when reading a user's files gives other arrays for the same bytes (part of the cache key).
USER_FORMAT = 1
#: Examples a class needs when the test and validation splits are carved out of the data: with
#: 10, the stratified 20 % test carve-out and then the 8:2 validation split give every class at
#: least one example in each split, whatever the other classes' sizes (tests check this).
MIN_PER_CLASS = 10
_OPTION = "image_size"
_SUFFIXES: dict[str, Layout] = {
    ".npz": "image-npz",
    ".csv": "text-csv",
    ".tsv": "text-csv",
    ".jsonl": "text-jsonl",
    ".ndjson": "text-jsonl",
}
_KINDS = "a folder of class folders of images, an .npz of images and labels, or a .csv or .jsonl"


def data_suffix(name: str) -> str | None:
    """The data suffix a file name ends with (``.csv``, ``.jsonl``, ...; ``.gz`` after it too)."""
    lowered = name.lower().removesuffix(".gz")
    return next((s for s in _SUFFIXES if lowered.endswith(s)), None)


def looks_like_path(name: str) -> bool:
    """Whether a dataset string is a path, not a registry name: registry names have no slash,
    do not start with ``.`` or ``~`` and end in no data suffix."""
    text = name.strip()
    return (
        "/" in text
        or os.sep in text
        or text.startswith((".", "~"))
        or data_suffix(text) is not None
    )


@dataclass(frozen=True)
class DatasetRef:
    """A user's dataset: its absolute path, what kind of data it is, and the image size asked."""

    path: Path
    layout: Layout
    image_size: int | None = None

    def __str__(self) -> str:
        """The dataset string a TaskSpec records: the path, and the size when one was asked."""
        return str(self.path) + (f"?{_OPTION}={self.image_size}" if self.image_size else "")

    @property
    def task(self) -> TaskKind:
        if self.layout.startswith("text"):
            return TaskKind.TEXT_CLASSIFICATION
        return TaskKind.IMAGE_CLASSIFICATION

    @property
    def label(self) -> str:
        """A short, file-name-safe name for the prepared file (its key makes it unique)."""
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", self.path.name).strip("._") or "data"
        return f"user-{stem[:40]}"

    def options(self) -> dict[str, int]:
        return {_OPTION: self.image_size} if self.image_size else {}


def _split_option(text: str) -> tuple[str, int | None]:
    """``PATH?image_size=N`` as the path and N; a path that exists as written is taken whole."""
    path, sep, query = text.rpartition("?")
    if not sep or Path(text).expanduser().exists():
        return text, None
    key, eq, value = query.partition("=")
    if key != _OPTION or not eq or not value.isdigit():
        raise InputError(
            f"dataset {text!r}: {query!r} is not an option of your own data; the one option is"
            f" ?{_OPTION}=N (what --image-size N writes)"
        )
    return path, int(value)


def _layout(path: Path, written: str) -> Layout:
    if path.is_dir():
        return "image-folder"
    suffix = data_suffix(path.name)
    if suffix is None or not path.is_file():
        raise InputError(
            f"dataset {written!r} ({path}) is not a kind of data archsmith reads; give {_KINDS}"
            " (text and label columns)"
        )
    return _SUFFIXES[suffix]


def parse_reference(
    text: str, *, image_size: int | None = None, base: Path | None = None
) -> DatasetRef:
    """The user's dataset a path names; relative paths are taken from ``base`` (else the current
    folder). A path that is not there, or not a kind archsmith reads, is an InputError."""
    written = text.strip()
    raw, given_size = _split_option(written)
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    if not path.exists():
        raise InputError(
            f"dataset {written!r}: there is no file or folder {path}; give the path of {_KINDS}"
        )
    layout = _layout(path, written)
    if image_size is not None and given_size is not None and image_size != given_size:
        raise InputError(
            f"dataset {written!r} asks for {_OPTION}={given_size} and --image-size for"
            f" {image_size}; give one"
        )
    size = image_size if image_size is not None else given_size
    if size is not None:
        if layout.startswith("text"):
            raise InputError(f"--image-size applies to images; {path} is text ({layout})")
        if size < 1:
            raise InputError(f"--image-size must be a positive number of pixels, not {size}")
    return DatasetRef(path.resolve(), layout, size)


def dataset_argument(value: str, *, image_size: int | None = None) -> str:
    """The dataset string for a ``--dataset`` value: a registry name as the registry spells it,
    or a path as ``parse_reference`` records it (a name the registry lacks that exists as a
    folder or file is a path too)."""
    if looks_like_path(value):
        return str(parse_reference(value, image_size=image_size))
    try:
        info = resolve_dataset(value)
    except DatasetNotFoundError as e:
        if Path(value).expanduser().exists():
            return str(parse_reference(value, image_size=image_size))
        raise DatasetNotFoundError(
            f"{e}\nOr give the path of your own data: {_KINDS} (text and label columns)."
        ) from e
    if image_size is not None:
        raise InputError(
            f"--image-size applies to your own image data; {info.name} has a fixed input shape"
            f" {list(info.input_shape)}"
        )
    return info.name


def few(names: Sequence[str], limit: int = 5) -> str:
    """The first ``limit`` names, and how many more: a message stays short for 10,000 files."""
    shown = ", ".join(names[:limit])
    rest = len(names) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown


def report_skipped(where: str, what: str, skipped: Sequence[tuple[str, str]]) -> str | None:
    """The warning for the ``skipped`` (name, why) pairs, a few of them named; None for none."""
    if not skipped:
        return None
    n = len(skipped)
    named = few([f"{name} ({why})" for name, why in skipped])
    return f"{where}: skipped {n} {what}{'s' if n != 1 else ''} that could not be read: {named}"


def user_meta(
    notes: Sequence[str | None], warnings: Sequence[str], skipped: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """What a user's prepared file records besides its arrays: ``assumptions`` (what was chosen
    from the data, then every warning) for the planner to print, and the ``skipped`` files or
    rows. The warnings are logged here, once per preparation (a cached file is not read again)."""
    for warning in warnings:
        logger.warning("%s", warning)
    return {
        "assumptions": [n for n in notes if n] + list(warnings),
        "skipped": {
            "count": len(skipped),
            "examples": [f"{name} ({why})" for name, why in skipped[:5]],
        },
    }


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def class_ids(
    values: Sequence[int] | Sequence[str], where: str
) -> tuple[npt.NDArray[np.int64], tuple[str, ...]]:
    """Labels as class ids 0..K-1 and the class names, sorted (numbers as numbers: 2 before 10)."""
    if not values:
        raise InputError(f"{where} holds no labelled examples")
    classes = sorted(set(values))  # type: ignore[type-var]
    index = {c: i for i, c in enumerate(classes)}
    ids = np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))
    return ids, tuple(str(c) for c in classes)


def check_classes(
    labels: npt.NDArray[np.int64],
    class_names: Sequence[str],
    given: npt.NDArray[np.int64] | None,
    where: str,
    *,
    fix: str,
    unreadable: Sequence[int] = (),
) -> list[str]:
    """Refuse classes a search cannot learn and measure; the warnings for what it still can.

    Two classes at least. When a split is carved out (the data brings no split, or not all
    three), every class needs ``MIN_PER_CLASS`` examples in the rows it is carved from; with all
    three of the data's own splits, one training example. A class missing from the data's own
    validation or test split is a warning: its accuracy there is simply not measured.
    ``unreadable`` counts each class's skipped files, so the message says why a class is short.
    """
    k = len(class_names)
    if k < 2:
        only = f" ({class_names[0]!r})" if k else ""
        raise InputError(
            f"{where}: only one class{only}; a classifier needs at least two. {fix}"
            if k
            else f"{where} holds no classes. {fix}"
        )
    carved = given is None or not ((given == VAL).any() and (given == TEST).any())
    pool = labels if given is None else labels[given == TRAIN]
    counts = np.bincount(pool, minlength=k)
    need = MIN_PER_CLASS if carved else 1
    short = [i for i in range(k) if counts[i] < need]
    if short:
        listed = few(
            [
                f"{class_names[i]!r} has {counts[i]}"
                + (f" ({unreadable[i]} more unreadable)" if unreadable and unreadable[i] else "")
                for i in short
            ],
            limit=10,
        )
        why = (
            f"so that the {round(TEST_FRACTION * 100)} % test carve-out and the"
            f" {round((1 - VAL_FRACTION) * 10)}:{round(VAL_FRACTION * 10)} validation split each"
            " get at least one of it"
            if carved
            else "in the training split"
        )
        noun = "example" if given is None else "training example"
        raise InputError(
            f"{where}: every class needs at least {_plural(need, noun)} ({why}); {listed}. {fix}"
        )
    warnings: list[str] = []
    if given is not None and not carved:
        for code, split in ((VAL, "validation"), (TEST, "test")):
            absent = [class_names[i] for i in range(k) if not (labels[given == code] == i).any()]
            if absent:
                warnings.append(
                    f"{where}: the data's own {split} split has no example of"
                    f" {few(absent, limit=10)}; accuracy there does not measure"
                    f" {'that class' if len(absent) == 1 else 'those classes'}"
                )
    return warnings
