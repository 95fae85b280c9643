"""A user's texts: a CSV (or TSV) with ``text`` and ``label`` columns, or JSON lines of them.

Prepared the way IMDB is (``archsmith.data.text``): cleaned, split on whitespace, a vocabulary
from the training split only (id 0 pads, id 1 is any other word), sequences cut or padded to one
length. Two things differ, because a user's text is not English movie reviews: letters of every
script are kept, and the length is chosen from the data, the 95th percentile of the texts' word
counts (all rows, labels unused, so it does not depend on the split's seed) capped at IMDB's 256.

An optional ``split`` column (train, validation, test) gives the data's own splits. A header
without ``text`` or ``label`` stops with the columns it has; rows that cannot be used (no label,
a text that is not a string, a line that is not JSON, a row with the wrong number of fields, no
words at all) are skipped and named in a warning. Labels are whole numbers or names, never both.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from archsmith.data.common import LoadedDataset, Source, checked_plan
from archsmith.data.splits import split_code
from archsmith.data.text import IMDB_DEFAULTS, build_vocabulary, clean_text, encode
from archsmith.data.user import (
    MIN_PER_CLASS,
    DatasetRef,
    check_classes,
    class_ids,
    few,
    report_skipped,
    user_meta,
)
from archsmith.errors import InputError

__all__ = ["LENGTH_PERCENTILE", "SEQUENCE_CAP", "VOCAB_BUDGET", "load_table", "locate_table"]

#: The longest sequence chosen from the data: IMDB's, long enough for a review's opinion.
SEQUENCE_CAP = IMDB_DEFAULTS["sequence_length"]
#: Ids the vocabulary may use (two reserved): IMDB's.
VOCAB_BUDGET = IMDB_DEFAULTS["vocab_size"]
#: Texts longer than this share of all are cut; the rest fit whole.
LENGTH_PERCENTILE = 95
#: csv's own limit (128 KiB a field) is below a long document; this still bounds a broken quote.
_FIELD_LIMIT = 1 << 24
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass
class _Rows:
    """What a file gave: each usable row's text, label and split, and the skipped rows."""

    texts: list[str] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add(self, line: int, text: str, label: Any, split: str | None) -> None:
        self.texts.append(text)
        self.labels.append(label)
        self.lines.append(line)
        self.splits.append(split)


def locate_table(ref: DatasetRef) -> Source:
    return Source(ref.layout, ref.path, content=True)


def _open(path: Path) -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


@contextmanager
def _opened(path: Path) -> Iterator[IO[str]]:
    """The open file; a file that is not UTF-8 or not readable is the user's error, said so."""
    try:
        with _open(path) as f:
            yield f
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8"
        ) from e
    except (OSError, EOFError) as e:
        raise InputError(f"cannot read {path}: {e}") from e


def _missing(path: Path, missing: list[str], has: list[str]) -> InputError:
    what = " and ".join(repr(m) for m in missing)
    return InputError(
        f"{path} has no {what} column (it has {', '.join(repr(h) for h in has) or 'none'});"
        " name the column of texts 'text' and the column of classes 'label'"
    )


def _read_csv(path: Path) -> _Rows:
    rows = _Rows()
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    delimiter = "\t" if ".tsv" in path.name.lower() else ","
    with _opened(path) as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = [h.strip().lower() for h in next(reader, [])]
            missing = [c for c in ("text", "label") if c not in header]
            if missing:
                raise _missing(path, missing, header)
            repeated = sorted({c for c in header if c and header.count(c) > 1})
            if repeated:
                raise InputError(f"{path}: the header repeats the column(s) {', '.join(repeated)}")
            at_text, at_label = header.index("text"), header.index("label")
            at_split = header.index("split") if "split" in header else None
            for row in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    why = f"{len(row)} fields, the header has {len(header)}; an unquoted comma?"
                    rows.skipped.append((f"line {line}", why))
                    continue
                label = row[at_label].strip()
                if not label:
                    rows.skipped.append((f"line {line}", "no label"))
                    continue
                split = row[at_split].strip() if at_split is not None else None
                rows.add(line, row[at_text], label, split or None)
        except csv.Error as e:
            raise InputError(f"{path} line {reader.line_num}: not valid CSV ({e})") from e
    return rows


def _read_jsonl(path: Path) -> _Rows:
    rows = _Rows()
    keys: set[str] = set()
    with _opened(path) as f:
        for line, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as e:
                rows.skipped.append((f"line {line}", f"not JSON: {e.msg}"))
                continue
            if not isinstance(record, dict):
                rows.skipped.append((f"line {line}", "not a JSON object"))
                continue
            keys.update(record)
            text, label = record.get("text"), record.get("label")
            if not isinstance(text, str):
                rows.skipped.append((f"line {line}", "no text string"))
            elif label is None or isinstance(label, list | dict):
                rows.skipped.append((f"line {line}", "no label"))
            else:
                split = record.get("split")
                rows.add(line, text, label, None if split is None else str(split))
    missing = [k for k in ("text", "label") if k not in keys]
    if missing:
        raise _missing(path, missing, sorted(keys))
    return rows


def _label_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "numbers"
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return "numbers"
    return "names"


def _labels(rows: _Rows, path: Path) -> tuple[npt.NDArray[np.int64], tuple[str, ...]]:
    """Class ids and names; labels of more than one kind, or fractions, stop here."""
    kinds: dict[str, tuple[int, Any]] = {}
    for line, value in zip(rows.lines, rows.labels, strict=True):
        kinds.setdefault(_label_kind(value), (line, value))
    if len(kinds) > 1:
        seen = "; ".join(f"{k} (e.g. {v!r} on line {n})" for k, (n, v) in kinds.items())
        raise InputError(
            f"{path}: the labels mix types: {seen}. Give every row the same kind of label, all"
            " class numbers or all class names"
        )
    kind = next(iter(kinds), "names")
    if kind == "names":
        return class_ids([str(v).strip() for v in rows.labels], str(path))
    if kind == "true/false":
        return class_ids([str(v) for v in rows.labels], str(path))
    numbers: list[int] = []
    for line, value in zip(rows.lines, rows.labels, strict=True):
        number = float(value)
        if not number.is_integer():
            raise InputError(
                f"{path} line {line}: label {value!r} is a fraction; labels are classes, whole"
                " numbers or names, not values to regress"
            )
        numbers.append(int(number))
    return class_ids(numbers, str(path))


def _splits(rows: _Rows, path: Path) -> npt.NDArray[np.int64] | None:
    given = [s for s in rows.splits if s is not None]
    if not given:
        return None
    if len(given) != len(rows.splits):
        raise InputError(
            f"{path}: {len(given)} rows have a split and {len(rows.splits) - len(given)} do not;"
            " give train, validation or test on every row, or on none"
        )
    codes = []
    for line, name in zip(rows.lines, given, strict=True):
        code = split_code(name)
        if code is None:
            raise InputError(
                f"{path} line {line}: split {name!r} must be train, validation or test"
            )
        codes.append(code)
    return np.array(codes, dtype=np.int64)


def _length(cleaned: list[str]) -> int:
    """The ``LENGTH_PERCENTILE``th percentile of the word counts (nearest rank), capped."""
    counts = sorted(len(c.split()) for c in cleaned)
    rank = max(1, math.ceil(len(counts) * LENGTH_PERCENTILE / 100))
    return max(1, min(SEQUENCE_CAP, counts[rank - 1]))


def load_table(source: Source, seed: int, options: dict[str, int]) -> LoadedDataset:
    """Read, check, split, build the vocabulary on the training split, encode all three."""
    if source.path is None:
        raise ValueError("a text source needs a path")
    path = source.path
    rows = _read_jsonl(path) if source.layout == "text-jsonl" else _read_csv(path)
    cleaned_all = [clean_text(t, any_script=True) for t in rows.texts]
    wordless = [i for i, c in enumerate(cleaned_all) if not c.split()]
    for i in wordless:
        rows.skipped.append((f"line {rows.lines[i]}", "no words"))
    keep = [i for i, c in enumerate(cleaned_all) if c.split()]
    rows = _Rows(
        [rows.texts[i] for i in keep],
        [rows.labels[i] for i in keep],
        [rows.lines[i] for i in keep],
        [rows.splits[i] for i in keep],
        sorted(rows.skipped, key=lambda s: int(s[0].split()[-1])),
    )
    cleaned = [cleaned_all[i] for i in keep]
    if not cleaned:
        named = few([f"{n} ({why})" for n, why in rows.skipped])
        raise InputError(
            f"{path} holds no row with a text and a label{': ' + named if named else ''}"
        )
    labels, names = _labels(rows, path)
    given = _splits(rows, path)
    fix = "Add rows with those labels, or remove the rows that have them."
    warnings = check_classes(labels, names, given, str(path), fix=fix)
    plan = checked_plan(labels, given, str(path), seed=seed)
    vocabulary = build_vocabulary((cleaned[i] for i in plan.train), VOCAB_BUDGET)
    length = _length(cleaned)
    x_train, x_val, x_test = (
        encode([cleaned[i] for i in idx], vocabulary, length)
        for idx in (plan.train, plan.val, plan.test)
    )
    counts = np.bincount(labels, minlength=len(names))
    skipped = report_skipped(str(path), "row", rows.skipped)
    notes = [
        f"Your texts: {len(cleaned):,} rows of {path}"
        + (", in its own split" if given is not None else "")
        + (f"; {len(rows.skipped)} unusable row(s) skipped" if rows.skipped else "")
        + ".",
        f"Classes from the label column: {few(list(names), limit=10)}; the smallest has"
        f" {int(counts.min())} rows (each needs at least {MIN_PER_CLASS}, so every split gets"
        " one).",
        "Texts cleaned as IMDB's (lower case; URLs, HTML tags, #hashtags, @mentions and"
        " punctuation removed) but keeping the letters of every script, then split on spaces.",
        f"Sequences of {length} words: the {LENGTH_PERCENTILE}th percentile of the texts'"
        f" lengths, capped at {SEQUENCE_CAP}; longer texts are cut, shorter ones padded.",
        f"Vocabulary: the {len(vocabulary):,} most frequent words of the training split (at most"
        f" {VOCAB_BUDGET - 2:,}); id 0 pads, id 1 stands for every other word.",
    ]
    return LoadedDataset(
        x_train,
        labels[plan.train],
        x_val,
        labels[plan.val],
        x_test,
        labels[plan.test],
        names,
        str(path),
        plan.origin,
        vocabulary,
        user_meta(notes, [*([skipped] if skipped else []), *warnings], rows.skipped),
    )
