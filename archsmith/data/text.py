"""IMDB movie reviews, prepared the paper's way.

The test split is the source's own test half (Maas et al.'s 25,000 test reviews), never read for a
decision; validation is the paper's 8:2 seeded, stratified carve-out of the training half (a file
without splits is pooled: a 20 % test carve-out first, then 8:2). The text is cleaned (URLs, HTML
tags such as ``<br />``, #hashtags, @mentions and special characters removed, lower case) and
split on whitespace. The vocabulary comes from the training split only, so validation and test
accuracy are not inflated by words the model could not have seen: id 0 pads, id 1 stands for any
word outside the ``vocab_size - 2`` most frequent ones. Sequences keep their first
``sequence_length`` tokens and are padded at the end.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from archsmith.data.common import LoadedDataset, Search, Source, checked_plan
from archsmith.data.registry import DatasetInfo
from archsmith.data.splits import split_code
from archsmith.errors import InputError

__all__ = [
    "IMDB_CLASSES",
    "IMDB_DEFAULTS",
    "OOV_ID",
    "PAD_ID",
    "build_vocabulary",
    "clean_text",
    "encode",
    "load_imdb",
    "locate_imdb",
    "tokenize",
]

logger = logging.getLogger(__name__)

IMDB_CLASSES = ("negative", "positive")
IMDB_DEFAULTS = {"vocab_size": 20000, "sequence_length": 256}
PAD_ID = 0
OOV_ID = 1

_NOISE = re.compile(r"(?:https?://|www\.)[^\s<]+|<[^>]*>|[#@]\w+")
_SPECIAL = re.compile(r"[^a-z0-9\s]+")
#: The same for text in any script: letters and digits of every alphabet are kept.
_SPECIAL_ANY_SCRIPT = re.compile(r"[^\w\s]+|_")


def clean_text(text: str, *, any_script: bool = False) -> str:
    """Lower case without URLs, HTML tags, #hashtags, @mentions and special characters.

    Apostrophes are dropped rather than split on, so "don't" stays one word ("dont").
    IMDB is English and keeps only a-z and 0-9 (as prepared until now); ``any_script`` keeps the
    letters of every alphabet, so a user's French or Greek text is not reduced to its ASCII.
    """
    text = _NOISE.sub(" ", text.lower()).replace("'", "")
    return (_SPECIAL_ANY_SCRIPT if any_script else _SPECIAL).sub(" ", text)


def tokenize(text: str) -> list[str]:
    """Whitespace tokens of the cleaned text."""
    return clean_text(text).split()


def build_vocabulary(cleaned: Iterable[str], vocab_size: int) -> list[str]:
    """The ``vocab_size - 2`` most frequent words; ties broken alphabetically, for determinism."""
    if vocab_size < 3:
        raise InputError(
            f"imdb: vocab_size must be at least 3 (two ids are reserved), got {vocab_size}"
        )
    counts: Counter[str] = Counter()
    for text in cleaned:
        counts.update(text.split())
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [word for word, _ in ranked[: vocab_size - 2]]


def encode(
    cleaned: Sequence[str], vocabulary: Sequence[str], sequence_length: int
) -> npt.NDArray[np.int64]:
    """Token ids (N, sequence_length): words from 2, OOV_ID for the rest, PAD_ID after the end."""
    ids = {word: i + 2 for i, word in enumerate(vocabulary)}
    out = np.full((len(cleaned), sequence_length), PAD_ID, dtype=np.int64)
    lookup = ids.get
    for row, text in enumerate(cleaned):
        tokens = text.split(maxsplit=sequence_length)[:sequence_length]
        out[row, : len(tokens)] = [lookup(t, OOV_ID) for t in tokens]
    return out


def locate_imdb(info: DatasetInfo, data_dir: Path | None) -> Source:
    """The aclImdb folder (train and test, pos and neg), else the reviews as gzipped JSON lines."""
    search = Search(info, data_dir)
    for relative in ("aclImdb", "imdb/aclImdb"):
        folder = search.folder(relative)
        if folder is None:
            continue
        parts = [folder / s / p for s in ("train", "test") for p in ("neg", "pos")]
        absent = [str(p.relative_to(folder)) for p in parts if not p.is_dir()]
        if absent:
            search.note(folder, f"incomplete: no {', '.join(absent)}")
            continue
        files = tuple(f for p in parts for f in sorted(p.glob("*.txt")))
        return Source("aclimdb", folder, files)
    for relative in ("imdb_aclImdb_50k.jsonl.gz", "imdb.jsonl.gz", "imdb.jsonl"):
        path = search.file(relative)
        if path is not None:
            return Source("imdb-jsonl", path)
    raise search.unavailable()


Reviews = tuple[list[str], list[int], npt.NDArray[np.int64] | None]


def _read_aclimdb(files: tuple[Path, ...]) -> Reviews:
    """Texts, labels (from pos/neg) and splits (from train/test) of the aclImdb folders."""
    texts: list[str] = []
    labels: list[int] = []
    splits: list[int] = []
    for f in files:
        try:
            texts.append(f.read_text(encoding="utf-8", errors="replace"))
        except OSError as e:
            raise InputError(f"cannot read review {f}: {e.strerror}") from e
        labels.append(1 if f.parent.name == "pos" else 0)
        code = split_code(f.parent.parent.name)
        if code is None:
            raise InputError(f"review {f} is in neither train/ nor test/")
        splits.append(code)
    return texts, labels, np.array(splits, dtype=np.int64)


def _split_of(record: dict[str, object], path: Path, number: int) -> int | None:
    name = record.get("split")
    if name is None:
        return None
    code = split_code(name) if isinstance(name, str) else None
    if code is None:
        raise InputError(f"{path} line {number}: split must be train, validation or test")
    return code


def _read_jsonl(path: Path) -> Reviews:
    """Texts, labels and (when every line has one) the ``split`` of each review."""
    texts: list[str] = []
    labels: list[int] = []
    splits: list[int | None] = []
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    text, label = record["text"], record["label"]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise InputError(
                        f"{path} line {number}: expected a JSON object with text and label ({e})"
                    ) from e
                if label not in (0, 1) or not isinstance(text, str):
                    raise InputError(f"{path} line {number}: label must be 0 or 1, text a string")
                texts.append(text)
                labels.append(int(label))
                splits.append(_split_of(record, path, number))
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {path}: {e}") from e
    given = [c for c in splits if c is not None]
    if not given:
        return texts, labels, None
    if len(given) != len(splits):
        raise InputError(f"{path}: some lines have a split and some do not; give it on every line")
    return texts, labels, np.array(given, dtype=np.int64)


def load_imdb(source: Source, seed: int, options: dict[str, int]) -> LoadedDataset:
    """Split (the source's test half is the test split), clean, build the vocabulary on the
    training split, encode all three."""
    if source.path is None:
        raise ValueError("an IMDB source needs a path")
    if source.layout == "aclimdb":
        texts, label_list, given = _read_aclimdb(source.files)
    else:
        texts, label_list, given = _read_jsonl(source.path)
    if not texts:
        raise InputError(f"{source.path} holds no reviews")
    labels = np.array(label_list, dtype=np.int64)
    plan = checked_plan(labels, given, str(source.path), seed=seed)
    cleaned = [clean_text(t) for t in texts]
    vocabulary = build_vocabulary((cleaned[i] for i in plan.train), options["vocab_size"])
    length = options["sequence_length"]
    x_train, x_val, x_test = (
        encode([cleaned[i] for i in idx], vocabulary, length)
        for idx in (plan.train, plan.val, plan.test)
    )
    logger.info(
        "imdb: %d reviews, %d words in the vocabulary, sequences of %d",
        len(texts),
        len(vocabulary),
        length,
    )
    return LoadedDataset(
        x_train,
        labels[plan.train],
        x_val,
        labels[plan.val],
        x_test,
        labels[plan.test],
        IMDB_CLASSES,
        str(source.path),
        plan.origin,
        vocabulary,
    )
