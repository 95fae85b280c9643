"""IMDB movie reviews, prepared the paper's way.

All 50,000 labelled reviews are pooled and split 8:2 (seeded, stratified); the text is cleaned
(URLs, HTML tags such as ``<br />``, #hashtags, @mentions and special characters removed, lower
case) and split on whitespace. The vocabulary comes from the training part only, so validation
accuracy is not inflated by words the model could not have seen: id 0 pads, id 1 stands for any
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

from archsmith.data.common import LoadedDataset, Search, Source
from archsmith.data.registry import DatasetInfo
from archsmith.data.splits import stratified_split
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


def clean_text(text: str) -> str:
    """Lower case without URLs, HTML tags, #hashtags, @mentions and special characters.

    Apostrophes are dropped rather than split on, so "don't" stays one word ("dont").
    """
    text = _NOISE.sub(" ", text.lower()).replace("'", "")
    return _SPECIAL.sub(" ", text)


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


def _read_aclimdb(files: tuple[Path, ...]) -> tuple[list[str], list[int]]:
    texts: list[str] = []
    labels: list[int] = []
    for f in files:
        try:
            texts.append(f.read_text(encoding="utf-8", errors="replace"))
        except OSError as e:
            raise InputError(f"cannot read review {f}: {e.strerror}") from e
        labels.append(1 if f.parent.name == "pos" else 0)
    return texts, labels


def _read_jsonl(path: Path) -> tuple[list[str], list[int]]:
    texts: list[str] = []
    labels: list[int] = []
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
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {path}: {e}") from e
    return texts, labels


def load_imdb(source: Source, seed: int, options: dict[str, int]) -> LoadedDataset:
    """Pool, split 8:2, clean, build the vocabulary on the training part, encode both parts."""
    if source.path is None:
        raise ValueError("an IMDB source needs a path")
    if source.layout == "aclimdb":
        texts, label_list = _read_aclimdb(source.files)
    else:
        texts, label_list = _read_jsonl(source.path)
    if not texts:
        raise InputError(f"{source.path} holds no reviews")
    labels = np.array(label_list, dtype=np.int64)
    train, val = stratified_split(labels, seed=seed)
    cleaned = [clean_text(t) for t in texts]
    vocabulary = build_vocabulary((cleaned[i] for i in train), options["vocab_size"])
    length = options["sequence_length"]
    x_train = encode([cleaned[i] for i in train], vocabulary, length)
    x_val = encode([cleaned[i] for i in val], vocabulary, length)
    logger.info(
        "imdb: %d reviews, %d words in the vocabulary, sequences of %d",
        len(texts),
        len(vocabulary),
        length,
    )
    return LoadedDataset(
        x_train, labels[train], x_val, labels[val], IMDB_CLASSES, str(source.path), vocabulary
    )
