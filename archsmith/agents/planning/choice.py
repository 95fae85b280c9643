"""Which data a request is about, when it is fixed before the words are read.

``--dataset`` or a path in the request ("the cell images in ./cells") names the data; the user's
own data is prepared (once; cached by its content) and read here, so its shape and classes come
from the files, never from guesswork.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archsmith.agents.interfaces import PlanRefusedError
from archsmith.config import Settings
from archsmith.data.prepared import prepare_dataset
from archsmith.data.prepared_format import read_meta
from archsmith.data.user import data_suffix, dataset_argument, few, looks_like_path
from archsmith.errors import InputError
from archsmith.spec import TaskKind

__all__ = ["Chosen", "OwnData", "choose_dataset", "own_data"]


@dataclass(frozen=True)
class OwnData:
    """The user's own data, prepared: the TaskSpec's dataset fields and what was read from it."""

    fields: dict[str, Any]
    assumptions: list[str]


def own_data(name: str, cache_dir: Path | None) -> OwnData:
    """Prepare the user's data (once; cached by its content) and take its shape from the file.

    Bad data stops here, before any candidate is built: the loaders raise InputError naming the
    files or classes and what to do.
    """
    path = prepare_dataset(name, None, cache_dir or Settings().cache_dir)
    meta = read_meta(path)
    shape = [int(d) for d in meta["input_shape"]]
    names = [str(c) for c in meta["class_names"]]
    splits = meta["splits"]
    task = TaskKind(meta["task"])
    return OwnData(
        fields={
            "dataset": name,
            "task": task,
            "input_shape": tuple(shape),
            "num_classes": int(meta["num_classes"]),
        },
        assumptions=[
            f"Dataset {name}: your own data, {task.value}, input shape {shape}, {len(names)}"
            f" classes ({few(names, limit=10)}), read from the data.",
            *[str(a) for a in meta.get("assumptions", [])],
            f"Splits: train = {splits['train']}; validation = {splits['val']}; test ="
            f" {splits['test']}.",
            f"Prepared once into {path}, keyed by the data's content: an edited file is prepared"
            " again.",
        ],
    )


@dataclass(frozen=True)
class Chosen:
    """The dataset fixed before the request's words are read: ``--dataset`` or a path in the
    request. ``own`` is set for the user's data; ``words`` is the request without the path."""

    name: str
    own: OwnData | None
    words: str
    notes: list[str]


#: A quoted path may hold spaces; the quotes must stand apart from words ("the user's" is none).
_QUOTES = "\"'`\u201c\u201d\u2018\u2019"
_QUOTED = re.compile(
    rf"(?:(?<=\s)|^)[{_QUOTES}](?P<body>[^{_QUOTES}\n]+)[{_QUOTES}](?=[\s.,;:!?)]|$)"
)
_TOKEN = re.compile(r"\S+")
_LEADING = "([{<" + _QUOTES
_TRAILING = ".,;:!?)]}>" + _QUOTES


def _path_like(token: str) -> bool:
    """Whether a word of the request is a path: a data file's name (reviews.csv), one starting
    with ./, ../ or ~/, an absolute path of two levels or more (a bare /s is a unit), or any word
    with a slash that exists (data/cells)."""
    if "://" in token or not token.strip("./~"):
        return False
    if data_suffix(token) is not None or token.startswith(("./", "../", "~/")):
        return True
    if token.startswith("/") and "/" in token.strip("/"):
        return True
    return "/" in token and Path(token).expanduser().exists()


def _paths_in(request: str) -> list[tuple[str, int, int]]:
    """The paths a request names, as written, with where each stands in it; a quoted one may
    hold spaces ("my photos/cats")."""
    found: list[tuple[str, int, int]] = []
    for m in _QUOTED.finditer(request):
        body = m.group("body").strip()
        slashed = "/" in body and "://" not in body  # quoted, a slash is no "speed/accuracy"
        if slashed or _path_like(body) or Path(body).expanduser().exists():
            found.append((body, m.start(), m.end()))
    for m in _TOKEN.finditer(request):
        if any(s <= m.start() < e for _, s, e in found):
            continue
        word = m.group(0).lstrip(_LEADING)
        start = m.end() - len(word)
        word = word.rstrip(_TRAILING) if not word.endswith(("/.", "/..")) else word
        if _path_like(word):
            found.append((word, start, start + len(word)))
    return sorted(found, key=lambda f: f[1])


def _resolved(written: str) -> Path:
    return (Path.cwd() / Path(written).expanduser()).resolve()


def choose_dataset(
    request: str, dataset: str | None, image_size: int | None, cache_dir: Path | None
) -> Chosen | None:
    """The dataset ``--dataset`` or a path in the request fixes; None leaves it to the words.

    A path in the request and a ``--dataset`` that differ, or two different paths, are refused:
    a search runs on exactly one dataset, and guessing which would waste the night.
    """
    paths = _paths_in(request)
    words = request
    for _, start, end in reversed(paths):
        words = words[:start] + words[end:]
    distinct = list(dict.fromkeys(_resolved(p) for p, _, _ in paths))
    written = ", ".join(p for p, _, _ in paths)
    if len(distinct) > 1:
        raise PlanRefusedError(
            f"dataset: the request names {len(distinct)} paths ({written}); a search runs on"
            " exactly one dataset. Name only the one to use."
        )
    notes: list[str] = []
    if dataset is not None:
        name = dataset_argument(dataset, image_size=image_size)
        if distinct and (not looks_like_path(name) or Path(name.partition("?")[0]) != distinct[0]):
            raise PlanRefusedError(
                f"dataset: the request names {written} and --dataset names {dataset}; give one"
            )
        notes.append(f"--dataset {dataset} names the data: {name}.")
    elif paths:
        try:
            name = dataset_argument(paths[0][0], image_size=image_size)
        except InputError as e:
            raise PlanRefusedError(f"dataset: the request names {written}: {e}") from e
        notes.append(f"'{written}' in the request names your data.")
    else:
        return None
    own = own_data(name, cache_dir) if looks_like_path(name) else None
    return Chosen(name, own, words, notes)
