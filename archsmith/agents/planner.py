"""The planner: a request in plain words -> a validated TaskSpec and the assumptions behind it.

Two front ends share one back end. ``plan_offline`` reads the request with deterministic rules (no
LLM, same request -> same spec); ``plan_with_llm`` asks a chat model for the request's intent as
structured output. Both produce a ``PlanIntent`` that ``_build_result`` turns into a TaskSpec the
same way: the dataset is resolved through the registry, or, for the user's own data (``--dataset
PATH`` or a path in the request, "the cell images in ./cells"), prepared and read, so shapes and
classes never come from guesswork; emphasis sets the combined-metric weights as in the paper's
three settings, and every default taken is written down, because a search that runs overnight
on a silent misreading wastes the night. What cannot be honoured (no known dataset, contradictory
constraints, a value outside the spec's range) is refused with a message that says what to change.

Weights (W_A, W_E, W_F) by emphasis:

* nothing said about energy or speed: 1 / 0 / 0 (the paper's accuracy-only setting);
* energy words only ("energy-efficient", "low power", "battery", "green"): 0.5 / 0.5 / 0
  (the paper's accuracy-energy setting);
* energy and speed, or an edge/embedded/mobile target: 0.7 / 0.1 / 0.2 (the paper's
  accuracy-energy-FPS setting);
* speed only (an FPS target, "real-time", "fast"): 0.8 / 0 / 0.2 (not in the paper: accuracy
  stays dominant, FPS gets the same share as in the paper's three-way setting).

Speed emphasis also sets PF = 1 so the rulebook acts on the FPS target; energy emphasis sets
PV_E = 1 (deployment energy, what those words are about) and PT_E = 0.5.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from archsmith.agents.interfaces import LLMCall, PlanRefusedError, PlanResult
from archsmith.agents.llm import llm_failure, model_name
from archsmith.config import Settings
from archsmith.data.prepared import prepare_dataset
from archsmith.data.prepared_format import read_meta
from archsmith.data.registry import (
    REGISTRY,
    DatasetInfo,
    DatasetNotFoundError,
    normalize_name,
    resolve_dataset,
)
from archsmith.data.user import data_suffix, dataset_argument, few, looks_like_path
from archsmith.errors import InputError, format_validation_error
from archsmith.spec import PAPER_DEFAULTS, TaskKind, TaskSpec

__all__ = [
    "EMPHASIS_PRIORITY",
    "REAL_TIME_FPS",
    "TRAIN_ENERGY_PRIORITY",
    "WEIGHTS_ACCURACY_ENERGY",
    "WEIGHTS_ACCURACY_ENERGY_FPS",
    "WEIGHTS_ACCURACY_FPS",
    "WEIGHTS_ACCURACY_ONLY",
    "PlanIntent",
    "plan",
    "plan_offline",
    "plan_warnings",
    "plan_with_llm",
]

logger = logging.getLogger(__name__)

Weights = tuple[float, float, float]  # (W_A, W_E, W_F)

WEIGHTS_ACCURACY_ONLY: Weights = (1.0, 0.0, 0.0)
WEIGHTS_ACCURACY_ENERGY: Weights = (0.5, 0.5, 0.0)
WEIGHTS_ACCURACY_ENERGY_FPS: Weights = (0.7, 0.1, 0.2)
WEIGHTS_ACCURACY_FPS: Weights = (0.8, 0.0, 0.2)

#: FPS assumed for "real-time": video frame rate.
REAL_TIME_FPS = 30.0
#: PF or PV_E when the request emphasises speed or energy.
EMPHASIS_PRIORITY = 1.0
#: PT_E when the request emphasises energy: training energy matters, but less than deployment's.
TRAIN_ENERGY_PRIORITY = 0.5


class PlanIntent(BaseModel):
    """What a request asks for, before it becomes a TaskSpec; the LLM's structured output.

    Deliberately loose (no ranges): range and consistency checks happen in one place when the
    intent becomes a TaskSpec, so the LLM gets the same readable error the offline parser would.
    """

    model_config = ConfigDict(extra="ignore")

    dataset: str = Field(
        description="The dataset the request names: a known dataset's name or one of its aliases,"
        " or the path of the user's own data exactly as the request writes it."
    )
    val_accuracy_threshold: float | None = Field(
        default=None,
        description=(
            "Validation accuracy target as a fraction in (0, 1], e.g. 0.95 for '95 %'; null if the"
            " request gives none."
        ),
    )
    fps_threshold: float | None = Field(
        default=None,
        description=(
            "Minimum inference throughput in frames per second; 30 for 'real-time'; null if none."
        ),
    )
    max_params: int | None = Field(
        default=None, description="Largest number of parameters allowed, e.g. 100000; null if none."
    )
    max_model_size_mb: float | None = Field(
        default=None, description="Largest model size in megabytes (500 KB = 0.5); null if none."
    )
    max_latency_ms: float | None = Field(
        default=None, description="Largest batch-1 inference latency in milliseconds; null if none."
    )
    emphasizes_energy: bool = Field(
        default=False,
        description="True if the request stresses energy: energy-efficient, low power, battery,"
        " green, edge or embedded devices.",
    )
    emphasizes_speed: bool = Field(
        default=False,
        description="True if the request stresses speed: fast, real-time, an FPS target, edge or"
        " embedded devices.",
    )
    weight_accuracy: float | None = Field(
        default=None, description="W_A in [0, 1] only if the request states weights; else null."
    )
    weight_energy: float | None = Field(
        default=None, description="W_E in [0, 1] only if the request states weights; else null."
    )
    weight_fps: float | None = Field(
        default=None, description="W_F in [0, 1] only if the request states weights; else null."
    )
    assumptions: list[str] = Field(
        default_factory=list,
        description="Every assumption made in reading the request, one plain sentence each.",
    )


# --------------------------------------------------------------------------------------------
# Shared back end: intent -> TaskSpec.
# --------------------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    """A number as a person writes it: 100,000 not 100000.0, 0.95 not 0.9500."""
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:g}"


def _known_datasets_message() -> str:
    lines = [
        f"  {info.name}: {', '.join(repr(a) for a in info.aliases)}" for info in REGISTRY.values()
    ]
    return (
        "Known datasets and their aliases:\n"
        + "\n".join(lines)
        + "\nOr your own data, by its path in the request or --dataset PATH: a folder of class"
        " folders of images ('the cell images in ./cells'), an .npz of images and labels, or a"
        " .csv or .jsonl of text and label."
    )


@dataclass(frozen=True)
class _OwnData:
    """The user's own data, prepared: the TaskSpec's dataset fields and what was read from it."""

    fields: dict[str, Any]
    assumptions: list[str]


def _own_data(name: str, cache_dir: Path | None) -> _OwnData:
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
    return _OwnData(
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
class _Chosen:
    """The dataset fixed before the request's words are read: ``--dataset`` or a path in the
    request. ``own`` is set for the user's data; ``words`` is the request without the path."""

    name: str
    own: _OwnData | None
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


def _choose(
    request: str, dataset: str | None, image_size: int | None, cache_dir: Path | None
) -> _Chosen | None:
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
    own = _own_data(name, cache_dir) if looks_like_path(name) else None
    return _Chosen(name, own, words, notes)


def _resolve(name: str) -> DatasetInfo:
    """The registry entry the intent names, trying the name itself, then aliases inside it."""
    try:
        return resolve_dataset(name)
    except DatasetNotFoundError as e:
        hits = {hit.dataset for hit in _find_datasets(name.lower())}
        if len(hits) == 1:
            return REGISTRY[hits.pop()]
        raise PlanRefusedError(
            f"dataset: {e} Name one of them, e.g. 'a 1000-FPS malaria classifier'."
        ) from e


def _weights_for(energy: bool, speed: bool) -> tuple[Weights, str]:
    if energy and speed:
        return WEIGHTS_ACCURACY_ENERGY_FPS, (
            "the paper's accuracy-energy-FPS setting, because the request stresses speed and energy"
        )
    if energy:
        return WEIGHTS_ACCURACY_ENERGY, (
            "the paper's accuracy-energy setting, because the request stresses energy"
        )
    if speed:
        return WEIGHTS_ACCURACY_FPS, (
            "accuracy first with FPS weighted as in the paper's three-way setting, because the"
            " request stresses speed but not energy"
        )
    return WEIGHTS_ACCURACY_ONLY, (
        "the paper's accuracy-only setting, because the request says nothing about speed or energy"
    )


def _check_intent(intent: PlanIntent) -> None:
    """Refuse values the TaskSpec would accept but that cannot be what the user meant."""
    acc = intent.val_accuracy_threshold
    if acc is not None and not 0.0 < acc <= 1.0:
        raise PlanRefusedError(
            f"val_accuracy_threshold: an accuracy target of {_fmt(acc)} cannot be reached or means"
            " nothing; give a fraction in (0, 1], e.g. 0.95 for 95 %"
        )
    limits: list[tuple[str, float | None, str]] = [
        ("fps_threshold", intent.fps_threshold, "an FPS target"),
        ("max_params", intent.max_params, "a parameter limit"),
        ("max_model_size_mb", intent.max_model_size_mb, "a model size limit"),
        ("max_latency_ms", intent.max_latency_ms, "a latency limit"),
    ]
    for field, value, what in limits:
        if value is not None and value <= 0:
            raise PlanRefusedError(
                f"{field}: {what} of {_fmt(value)} cannot be met by any model; give a value > 0"
            )


def _build_result(
    intent: PlanIntent,
    notes: list[str],
    source: str,
    *,
    own: _OwnData | None = None,
    image_size: int | None = None,
    cache_dir: Path | None = None,
) -> PlanResult:
    """Turn an intent into a validated TaskSpec and the full list of assumptions.

    ``own`` is the user's data when ``--dataset`` or the request's words named a path; an LLM
    that answers with a path the words' scan did not see has it read here, the same way.
    """
    _check_intent(intent)
    if own is None and looks_like_path(intent.dataset):
        try:
            name = dataset_argument(intent.dataset, image_size=image_size)
        except InputError as e:
            raise PlanRefusedError(f"dataset: {e}") from e
        own = _own_data(name, cache_dir)
    assumptions = list(notes) + [a for a in intent.assumptions if a not in notes]
    if own is not None:
        fields: dict[str, Any] = dict(own.fields)
        assumptions += own.assumptions
    else:
        info = _resolve(intent.dataset)
        if image_size is not None:
            raise PlanRefusedError(
                f"--image-size applies to your own image data; {info.name} has a fixed input"
                f" shape {list(info.input_shape)}"
            )
        assumptions.append(
            f"Dataset {info.name}: {info.task.value}, input shape {list(info.input_shape)},"
            f" {info.num_classes} classes (from the dataset registry)."
        )
        fields = {
            "dataset": info.name,
            "task": info.task,
            "input_shape": info.input_shape,
            "num_classes": info.num_classes,
        }

    acc = intent.val_accuracy_threshold
    if acc is None:
        tv = PAPER_DEFAULTS["val_accuracy_threshold"]
        assumptions.append(f"No accuracy target given: using the paper's TV_Acc = {_fmt(tv)}.")
    else:
        fields["val_accuracy_threshold"] = acc
        assumptions.append(
            f"Validation accuracy target TV_Acc = {_fmt(acc)} with the paper's priority PV_Acc = 1."
        )
        tt = PAPER_DEFAULTS["train_accuracy_threshold"]
        if acc > tt:
            fields["train_accuracy_threshold"] = acc
            assumptions.append(
                f"Training accuracy target TT_Acc raised to {_fmt(acc)} to match TV_Acc, since"
                " training accuracy below the validation target would count as underfitting."
            )

    weights_given = (intent.weight_accuracy, intent.weight_energy, intent.weight_fps)
    speed = intent.emphasizes_speed or intent.fps_threshold is not None
    energy = intent.emphasizes_energy
    if any(w is not None for w in weights_given):
        wa, we, wf = (0.0 if w is None else w for w in weights_given)
        assumptions.append(
            f"Weights as stated: accuracy {_fmt(wa)}, energy {_fmt(we)}, FPS {_fmt(wf)}."
        )
        speed = speed or wf > 0
        energy = energy or we > 0
    else:
        (wa, we, wf), why = _weights_for(energy, speed)
        assumptions.append(
            f"Weights set to accuracy {_fmt(wa)}, energy {_fmt(we)}, FPS {_fmt(wf)} ({why})."
        )
    fields.update(weight_accuracy=wa, weight_energy=we, weight_fps=wf)

    if speed:
        fields["fps_priority"] = EMPHASIS_PRIORITY
        if intent.fps_threshold is None:
            tf = PAPER_DEFAULTS["fps_threshold"]
            assumptions.append(
                f"Speed matters but no FPS target given: using the paper's TF = {_fmt(tf)} FPS"
                f" with priority PF = {_fmt(EMPHASIS_PRIORITY)}."
            )
        else:
            fields["fps_threshold"] = intent.fps_threshold
            assumptions.append(
                f"FPS target TF = {_fmt(intent.fps_threshold)} with priority"
                f" PF = {_fmt(EMPHASIS_PRIORITY)}, since the request asks for it."
            )
    else:
        assumptions.append("No FPS target or speed emphasis: FPS is not pursued (PF = 0).")

    if energy:
        fields["val_energy_priority"] = EMPHASIS_PRIORITY
        fields["train_energy_priority"] = TRAIN_ENERGY_PRIORITY
        assumptions.append(
            f"Energy priorities set to PV_E = {_fmt(EMPHASIS_PRIORITY)} (inference) and"
            f" PT_E = {_fmt(TRAIN_ENERGY_PRIORITY)} (training) against the paper's budgets of"
            f" {_fmt(PAPER_DEFAULTS['val_energy_threshold_kwh_pue'])} kWh-PUE."
        )

    limits = {
        "max_params": intent.max_params,
        "max_model_size_mb": intent.max_model_size_mb,
        "max_latency_ms": intent.max_latency_ms,
    }
    fields.update({k: v for k, v in limits.items() if v is not None})
    if all(v is None for v in limits.values()):
        assumptions.append("No parameter, model size or latency limit given: none is enforced.")
    else:
        units = {"max_params": "parameters", "max_model_size_mb": "MB", "max_latency_ms": "ms"}
        stated = ", ".join(f"{_fmt(v)} {units[k]}" for k, v in limits.items() if v is not None)
        assumptions.append(f"Hard limits (at most, each with priority 1): {stated}.")
    assumptions.append(
        "Other thresholds (TT_Acc, energy budgets, overfit OT, underfit UT) are the paper's"
        " defaults unless stated above."
    )

    try:
        spec = TaskSpec(**fields)
    except ValidationError as e:
        raise PlanRefusedError(
            f"the request gives an invalid task spec:\n{format_validation_error(e, TaskSpec)}"
        ) from e
    logger.info("planned %s from %s with %d assumptions", spec.dataset, source, len(assumptions))
    return PlanResult(spec=spec, assumptions=assumptions, source=source)


#: Parameters a classifier's output needs at the very least: a weight and a bias for each class,
#: even on one learned feature; fewer cannot give every class its own region of the input.
_MIN_PARAMS_PER_CLASS = 2
_FLOAT32_BYTES = 4


def plan_warnings(spec: TaskSpec) -> list[str]:
    """Targets that are plainly unreachable together, each with the reason; the run may still go.

    Said before any work, because a night spent on "99.9 % accuracy with at most 10 parameters"
    ends with no candidate meeting its targets. Only bounds that hold for every model are used
    (an output layer's minimum), so a warning is never a guess about what search might find.
    """
    acc = spec.val_accuracy_threshold
    classes = spec.num_classes
    if acc <= 1.0 / classes:
        return []  # a target at chance level asks nothing of the parameters
    floor = _MIN_PARAMS_PER_CLASS * classes
    why = (
        f"a classifier for {classes} classes needs at least {floor:,} parameters (a weight and a"
        f" bias for each class, even on a single learned feature) to tell the classes apart at"
        f" all, let alone reach the validation accuracy target TV_Acc = {_fmt(acc)}"
    )
    warnings = []
    if spec.max_params is not None and spec.max_params < floor:
        warnings.append(
            f"max_params = {_fmt(spec.max_params)} and TV_Acc = {_fmt(acc)} cannot both be met:"
            f" {why}. Allow more parameters or lower the accuracy target."
        )
    if spec.max_model_size_mb is not None:
        room = int(spec.max_model_size_mb * 1e6 // _FLOAT32_BYTES)
        if room < floor:
            warnings.append(
                f"max_model_size_mb = {_fmt(spec.max_model_size_mb)} and TV_Acc = {_fmt(acc)}"
                f" cannot both be met: {_fmt(spec.max_model_size_mb)} MB holds {room:,} float32"
                f" parameters, and {why}. Allow a larger model or lower the accuracy target."
            )
    return warnings


# --------------------------------------------------------------------------------------------
# Offline front end: deterministic rules over the request's words.
# --------------------------------------------------------------------------------------------

#: Aliases that are ordinary words too ("the generated model", "a toy example"): they name a
#: dataset only when no other dataset is named.
_WEAK_ALIASES = frozenset({"generated", "toy", "sentiment"})

_NUM = r"(?<![\w.])(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?!\d)(?!\.\d)"
_MIN_WORDS = (
    "at least|no less than|not less than|no fewer than|more than|greater than|higher than|"
    "faster than|upwards of|in excess of|a minimum of|minimum of|minimum|min|over|above|"
    "exceeding|exceeds|exceed|reaching|reach"
)
_MAX_WORDS = (
    "at most|no more than|not more than|a maximum of|maximum of|maximum|max|less than|"
    "fewer than|smaller than|lower than|slower than|under|below|within|up to|tops"
)
_CMP = rf"(?P<cmp>\b(?:{_MIN_WORDS}|{_MAX_WORDS})\b|>=|<=|≥|≤|>|<)"
_MIN_RE = re.compile(rf"^(?:{_MIN_WORDS}|>=|≥|>)$")
_PCT = r"(?P<pct>\s*%|\s*percent\b|\s*per cent\b)"
_MULT = r"(?:\s*(?P<mult>k|thousand|m|mil|million|mn|b|bn|billion)\b)?"
_MULTIPLIERS = {
    "k": 1e3,
    "thousand": 1e3,
    "m": 1e6,
    "mil": 1e6,
    "million": 1e6,
    "mn": 1e6,
    "b": 1e9,
    "bn": 1e9,
    "billion": 1e9,
}

_FPS_PRE = re.compile(
    rf"(?:{_CMP}\s*)?{_NUM}(?:\s*(?P<mult>k)\b)?\s*-?\s*"
    r"(?:fps\b|frames?\s*(?:per|/|a|each)\s*(?:second|sec|s)\b|(?:images?|inferences?|samples?)"
    r"\s*(?:per|/|a)\s*(?:second|sec|s)\b|img/s\b)"
)
_FPS_POST = re.compile(
    rf"\b(?:fps|frames per second|throughput)\b\s*(?:of\s+)?(?:{_CMP}\s*)?[:=]?\s*{_NUM}"
    r"(?:\s*(?P<mult>k)\b)?(?!\s*(?:%|percent|ms|milli|kb|mb|gb|params|parameters))"
)
_REAL_TIME = re.compile(r"\breal[\s-]?time\b|\brealtime\b")
_PARAMS = re.compile(
    rf"(?:{_CMP}\s*)?{_NUM}{_MULT}\s*-?\s*(?:trainable\s+)?(?:params?|parameters?)\b"
)
_SIZE = re.compile(
    rf"(?:{_CMP}\s*)?{_NUM}\s*-?\s*(?P<unit>kb|kib|kilobytes?|mb|mib|megabytes?|gb|gib|gigabytes?)\b"
)
_SIZE_UNITS = {"k": 1e-3, "m": 1.0, "g": 1e3}
_LATENCY = re.compile(
    rf"(?:{_CMP}\s*)?{_NUM}\s*-?\s*(?P<unit>ms|msec|millisecond|milliseconds|µs|us|microseconds?)\b"
)
_LATENCY_SECONDS = re.compile(
    rf"\blatency\b[^.\d]{{0,30}}?(?:{_CMP}\s*)?{_NUM}\s*(?P<unit>s|sec|secs|seconds?)\b"
)
_ACC_FILLER = (
    r"(?:\s+(?:of|is|at|least|must|should|be|reach|reaches|reaching|target|targeted|minimum|"
    r"min|above|over|>=|>|≥|=|:|to|no|not|less|than|greater|more|a|around|about|exceeding|"
    r"exceed|hit|get))"
)
_ACC_PRE = re.compile(
    rf"(?:{_CMP}\s*)?{_NUM}{_PCT}?\s*(?:top-?1\s+)?(?:validation\s+|val\s+|test\s+)?"
    r"(?P<word>accuracy|acc|accurate)\b(?P<after>\s*(?:drop|loss|degradation|decrease|reduction|"
    r"penalty|hit|gap)\b)?"
)
_ACC_CAP = re.compile(
    rf"\b(?:accuracy|acc)\b\s*(?:of\s+|is\s+|should\s+be\s+)?(?:{_MAX_WORDS}|<=|≤|<)\s*{_NUM}{_PCT}?"
)
_ACC_POST = re.compile(
    rf"\b(?:accuracy|acc)\b{_ACC_FILLER}{{0,6}}\s*[:=>≥]*\s*{_NUM}{_PCT}?"
    r"(?!\s*(?:fps|ms|kb|mb|params|parameters))"
)
_ERROR = re.compile(
    r"\b(?:error|error rate|misclassification rate)\b"
    r"(?:\s+(?:of|is|at|most|under|below|less|than|no|more|<|<=|≤|=|:|within|must|should|be|"
    rf"stay|stays|rate)){{0,6}}\s*{_NUM}{_PCT}?"
)
_BARE_PCT = re.compile(rf"{_NUM}{_PCT}")
#: Words after a bare percent that leave it free to be the accuracy target.
_PCT_FREE_AFTER = frozenset(
    {"", "and", "with", "on", "in", "at", "under", "below", "using", "that", "while", "but", "or"}
)
#: Words before a bare percent that give it another meaning ("under 5%", "by 10%").
_PCT_BOUND_BEFORE = frozenset(
    {"by", "than", "within", "under", "below", "most", "max", "maximum", "up", "to", "use",
     "using", "only", "about", "of", "save", "cut", "reduce"}
)  # fmt: skip
_ENERGY = re.compile(
    r"\b(?:energy|low[\s-]?power|power[\s-]?(?:efficient|efficiency|hungry|budget|consumption|"
    r"saving)|power|battery|batteries|green|greener|sustainab\w*|carbon|eco|eco-friendly|watts?|"
    r"joules?|kwh|frugal)\b|(?<!parameter[\s-])(?<!memory[\s-])(?<!data[\s-])(?<!sample[\s-])"
    r"\befficien(?:t|cy)\b"
)
_SPEED = re.compile(
    r"\b(?:fast|faster|fastest|quick|quickly|speedy|speed|high[\s-]?throughput|throughput|"
    r"low[\s-]?latency|real[\s-]?time|realtime|fps|frames per second)\b"
)
_EDGE = re.compile(
    r"\b(?:edge|embedded|mobile|on[\s-]?device|micro-?controllers?|mcus?|iot|raspberry pi|jetson|"
    r"phones?|smartphones?|wearables?)\b"
)


@dataclass(frozen=True)
class _DatasetHit:
    dataset: str
    alias: str
    start: int
    end: int


@dataclass(frozen=True)
class _Number:
    value: float
    is_min: bool | None  # True: a lower bound, False: an upper bound, None: no comparator
    phrase: str


def _alias_pattern(alias: str) -> re.Pattern[str]:
    """Match an alias with any run of spaces, hyphens or underscores, singular or plural."""
    tokens = [t for t in re.split(r"[\s_\-]+", alias.lower()) if t]
    last = tokens[-1]
    if len(last) > 4 and last.endswith("s") and not last.endswith("ss"):
        tokens[-1] = re.escape(last[:-1]) + "s?"
    elif last.isalpha():
        tokens[-1] = re.escape(last) + "s?"
    else:
        tokens[-1] = re.escape(last)
    body = r"[\s_\-]*".join([re.escape(t) for t in tokens[:-1]] + [tokens[-1]])
    return re.compile(rf"(?<![a-z0-9]){body}(?![a-z0-9])")


_ALIAS_PATTERNS: list[tuple[str, str, re.Pattern[str]]] = [
    (info.name, alias, _alias_pattern(alias))
    for info in REGISTRY.values()
    for alias in dict.fromkeys((info.name, *info.aliases))
]


def _all_dataset_hits(text: str) -> list[_DatasetHit]:
    """Dataset mentions in ``text`` (lower case), longest first, without overlaps, in order."""
    hits = [
        _DatasetHit(name, alias, m.start(), m.end())
        for name, alias, pattern in _ALIAS_PATTERNS
        for m in pattern.finditer(text)
    ]
    hits.sort(key=lambda h: (h.start - h.end, h.start))
    kept: list[_DatasetHit] = []
    for hit in hits:
        if all(hit.end <= k.start or hit.start >= k.end for k in kept):
            kept.append(hit)
    kept.sort(key=lambda h: h.start)
    return kept


def _find_datasets(text: str) -> list[_DatasetHit]:
    """The dataset mentions that count: weak aliases drop out beside a real dataset name."""
    kept = _all_dataset_hits(text)
    strong = [h for h in kept if normalize_name(h.alias) not in _WEAK_ALIASES]
    if strong and any(h.dataset != strong[0].dataset for h in kept):
        # A weak alias beside a real dataset name is an ordinary word ("toy cifar-10 model").
        return strong
    return kept


def _suggestion(text: str) -> str:
    """' Did you mean ...?' for a word close to a known alias ('malria'), else ''."""
    keys = {normalize_name(a): name for name, a, _ in _ALIAS_PATTERNS}
    words = re.findall(r"[a-z0-9]+(?:[\s_\-]+[a-z0-9]+)?", text)
    singles = re.findall(r"[a-z0-9]+", text)
    for word in [*singles, *words]:
        key = normalize_name(word)
        if len(key) < 5:
            continue
        close = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.8)
        if close:
            return f" Did you mean {keys[close[0]]!r} (you wrote {word!r})?"
    return ""


class _Scanner:
    """Finds numbers with their units in the request; each number is read at most once."""

    def __init__(self, text: str, taken: list[tuple[int, int]]) -> None:
        self.text = text
        self.taken = list(taken)

    def find(
        self, pattern: re.Pattern[str], scale: Callable[[re.Match[str]], float] | None = None
    ) -> list[tuple[_Number, re.Match[str]]]:
        found: list[tuple[_Number, re.Match[str]]] = []
        for m in pattern.finditer(self.text):
            start, end = m.span("num")
            if any(start < e and end > s for s, e in self.taken):
                continue
            self.taken.append((start, end))
            value = float(m.group("num").replace(",", ""))
            groups = m.groupdict()
            mult = groups.get("mult")
            if mult:
                value = _times(value, _MULTIPLIERS[mult])
            if scale is not None:
                value = _times(value, scale(m))
            cmp = groups.get("cmp")
            is_min = None if cmp is None else bool(_MIN_RE.match(cmp))
            found.append((_Number(value, is_min, m.group(0).strip()), m))
        return found


def _times(value: float, factor: float) -> float:
    """``value * factor`` in decimal, so '99.9 %' is 0.999 and '300 KB' 0.3 MB, as the user wrote
    them, not 0.9990000000000001: the spec, the plan and every report print these numbers."""
    return float(Decimal(repr(value)) * Decimal(repr(factor)))


def _refuse_lower_bound(nums: list[_Number], what: str, field: str) -> None:
    for n in nums:
        if n.is_min:
            raise PlanRefusedError(
                f"{field}: '{n.phrase}' asks for a minimum {what}; the spec can only limit the"
                f" maximum {what}. Say e.g. 'under {_fmt(n.value)}'."
            )


def _tightest_max(nums: list[_Number], what: str, notes: list[str]) -> float | None:
    if not nums:
        return None
    value = min(n.value for n in nums)
    if len({n.value for n in nums}) > 1:
        phrases = ", ".join(f"'{n.phrase}'" for n in nums)
        notes.append(f"Several {what} limits given ({phrases}): using the tightest, {_fmt(value)}.")
    return value


def _read_fps(scan: _Scanner, text: str, notes: list[str]) -> float | None:
    nums = [n for n, _ in scan.find(_FPS_PRE) + scan.find(_FPS_POST)]
    lows = [n for n in nums if n.is_min is not False]
    highs = [n for n in nums if n.is_min is False]
    low = max((n.value for n in lows), default=None)
    if highs:
        high = min(n.value for n in highs)
        phrases = " and ".join(f"'{n.phrase}'" for n in highs)
        if low is None:
            raise PlanRefusedError(
                f"fps_threshold: {phrases} caps the FPS, but the spec only has a minimum FPS"
                " target (TF); a faster model is never worse. Ask for e.g. 'at least 500 fps'."
            )
        if low > high:
            raise PlanRefusedError(
                f"fps_threshold: contradictory FPS constraints: at least {_fmt(low)} FPS and at"
                f" most {_fmt(high)} FPS; no model can meet both."
            )
        notes.append(f"The FPS upper bound {phrases} is ignored: the spec only has a minimum FPS.")
    for n in lows:
        if n.is_min is None:
            notes.append(f"'{n.phrase}' read as at least {_fmt(n.value)} FPS.")
    if len({n.value for n in lows}) > 1 and low is not None:
        notes.append(f"Several FPS targets given: using the highest, {_fmt(low)} FPS.")
    if low is None and _REAL_TIME.search(text):
        notes.append(f"'real-time' read as at least {_fmt(REAL_TIME_FPS)} FPS.")
        return REAL_TIME_FPS
    if low is not None and _REAL_TIME.search(text):
        notes.append(f"'real-time' is covered by the explicit target of {_fmt(low)} FPS.")
    return low


def _acc_value(n: _Number, m: re.Match[str], notes: list[str]) -> float:
    """A percent or fraction as a fraction; refuses what no model can reach."""
    v = n.value
    if m.group("pct") is None:
        if v <= 1.0:
            return v
        if v <= 100.0:
            notes.append(f"'{n.phrase}' read as {_fmt(v)} % accuracy.")
            return _times(v, 0.01)
    if v > 100.0:
        raise PlanRefusedError(
            f"val_accuracy_threshold: '{n.phrase}' asks for more than 100 % accuracy, which no"
            " model can reach; give a target such as '95 %' or '0.95'."
        )
    return _times(v, 0.01)


def _read_accuracy(scan: _Scanner, notes: list[str]) -> float | None:
    targets: list[tuple[float, str]] = []
    for n, m in scan.find(_ACC_PRE):
        if m.group("after") or n.is_min is False:
            notes.append(f"'{n.phrase}' is a tolerance, not read as an accuracy target.")
            continue
        targets.append((_acc_value(n, m, notes), n.phrase))
    for n, _ in scan.find(_ACC_CAP):
        raise PlanRefusedError(
            f"val_accuracy_threshold: '{n.phrase}' caps the accuracy, but the spec only has a"
            " minimum accuracy target (TV_Acc); ask for e.g. 'at least 90 % accuracy'."
        )
    for n, m in scan.find(_ACC_POST):
        targets.append((_acc_value(n, m, notes), n.phrase))
    for n, m in scan.find(_ERROR):
        err = _acc_value(n, m, notes)
        if err >= 1.0:
            raise PlanRefusedError(
                f"val_accuracy_threshold: '{n.phrase}' allows every answer to be wrong; give an"
                " error rate below 100 %."
            )
        target = float(1 - Decimal(repr(err)))
        notes.append(f"'{n.phrase}' read as an accuracy target of {_fmt(target)}.")
        targets.append((target, n.phrase))

    bare: list[tuple[_Number, re.Match[str]]] = []
    for n, m in scan.find(_BARE_PCT):
        before = re.findall(r"[a-z]+", scan.text[max(0, m.start() - 20) : m.start()])
        rest = scan.text[m.end() :].lstrip()
        word = re.match(r"[a-z]+", rest)
        next_word = word.group(0) if word else ""
        starts_dataset = any(h.start == 0 for h in _find_datasets(rest[:40]))
        free = next_word in _PCT_FREE_AFTER or starts_dataset
        if free and not (before and before[-1] in _PCT_BOUND_BEFORE):
            bare.append((n, m))
        else:
            context = scan.text[max(0, m.start() - 12) : m.end() + 12].strip()
            notes.append(f"'{n.phrase}' (in '...{context}...') was not read as an accuracy target.")
    if not targets and len(bare) == 1:
        n, m = bare[0]
        value = _acc_value(n, m, notes)
        notes.append(f"'{n.phrase}' read as the validation accuracy target TV_Acc.")
        targets.append((value, n.phrase))
    elif not targets and len(bare) > 1:
        phrases = ", ".join(f"'{n.phrase}'" for n, _ in bare)
        raise PlanRefusedError(
            f"val_accuracy_threshold: several percentages ({phrases}) could be the accuracy target;"
            " say which, e.g. '95 % accuracy'."
        )
    elif targets and bare:
        for n, _ in bare:
            notes.append(f"'{n.phrase}' was not read as an accuracy target (one is given).")
    if not targets:
        return None
    best = max(v for v, _ in targets)
    if len({v for v, _ in targets}) > 1:
        phrases = ", ".join(f"'{p}'" for _, p in targets)
        notes.append(f"Several accuracy targets given ({phrases}): using the highest, {best:g}.")
    return best


def _size_scale(m: re.Match[str]) -> float:
    return _SIZE_UNITS[m.group("unit")[0]]


def _latency_scale(m: re.Match[str]) -> float:
    unit = m.group("unit")
    if unit.startswith(("µ", "u", "micro")):
        return 1e-3
    if unit.startswith("s"):
        return 1e3
    return 1.0


def _intent_from_text(request: str, chosen: str | None = None) -> tuple[PlanIntent, list[str]]:
    """The offline reading of a request: the intent and the notes on how it was read.

    ``chosen`` is the dataset ``--dataset`` or a path in the request fixed (the path already
    taken out of ``request``); registry aliases in the words are then ordinary words.
    """
    text = " ".join(request.lower().split())
    notes: list[str] = []
    hits = _find_datasets(text)
    names = list(dict.fromkeys(h.dataset for h in hits))
    if chosen is not None:
        for h in _all_dataset_hits(text):
            if h.dataset != chosen:
                notes.append(f"'{h.alias}' is read as an ordinary word: the data is {chosen}.")
    elif not names:
        raise PlanRefusedError(
            f"dataset: no known dataset is named in the request.{_suggestion(text)} Name one by"
            " its name or an alias, e.g. 'a 1000-FPS malaria classifier'.\n"
            + _known_datasets_message()
        )
    elif len(names) > 1:
        named = ", ".join(
            f"{n!r} (as '{next(h.alias for h in hits if h.dataset == n)}')" for n in names
        )
        raise PlanRefusedError(
            f"dataset: the request names {len(names)} datasets, {named}; a search runs on exactly"
            " one. Name only the one to use."
        )
    else:
        first = hits[0]
        chosen = first.dataset
        dropped = [h for h in _all_dataset_hits(text) if h.dataset != first.dataset]
        for h in dropped:
            notes.append(
                f"'{h.alias}' is read as an ordinary word, not as the {h.dataset} dataset."
            )
        if normalize_name(first.alias) != normalize_name(first.dataset):
            notes.append(f"'{text[first.start : first.end]}' names the {first.dataset} dataset.")

    scan = _Scanner(text, [(h.start, h.end) for h in hits])
    fps = _read_fps(scan, text, notes)

    param_nums = [n for n, _ in scan.find(_PARAMS)]
    _refuse_lower_bound(param_nums, "parameter count", "max_params")
    params = _tightest_max(param_nums, "parameter", notes)
    size_nums = [n for n, _ in scan.find(_SIZE, _size_scale)]
    _refuse_lower_bound(size_nums, "model size", "max_model_size_mb")
    size = _tightest_max(size_nums, "model size", notes)
    lat_nums = [n for n, _ in scan.find(_LATENCY, _latency_scale)]
    lat_nums += [n for n, _ in scan.find(_LATENCY_SECONDS, _latency_scale)]
    _refuse_lower_bound(lat_nums, "latency", "max_latency_ms")
    latency = _tightest_max(lat_nums, "latency", notes)
    for nums, what in ((param_nums, "parameter"), (size_nums, "size"), (lat_nums, "latency")):
        for n in nums:
            if n.is_min is None:
                notes.append(f"'{n.phrase}' read as an upper {what} limit.")

    accuracy = _read_accuracy(scan, notes)

    edge = _EDGE.search(text)
    energy = bool(_ENERGY.search(text))
    speed = bool(_SPEED.search(text)) or fps is not None
    if edge:
        notes.append(
            f"'{edge.group(0)}' read as a deployment target where both speed and energy matter."
        )
        energy = speed = True

    return (
        PlanIntent(
            dataset=chosen,
            val_accuracy_threshold=accuracy,
            fps_threshold=fps,
            max_params=None if params is None else round(params),
            max_model_size_mb=size,
            max_latency_ms=latency,
            emphasizes_energy=energy,
            emphasizes_speed=speed,
        ),
        notes,
    )


def plan_offline(
    request: str,
    *,
    dataset: str | None = None,
    image_size: int | None = None,
    cache_dir: Path | None = None,
) -> PlanResult:
    """Read ``request`` with deterministic rules (no LLM) into a validated TaskSpec.

    ``dataset`` (``--dataset``: a registry name or a path) or a path in the request chooses the
    data; the user's own data is prepared into ``cache_dir`` (default: the settings') to read
    its shape and classes. Raises PlanRefusedError when no dataset is named, when constraints
    contradict, or when a value falls outside the spec's range; InputError when the user's data
    cannot be used. Each message says what to change.
    """
    _check_request(request)
    chosen = _choose(request, dataset, image_size, cache_dir)
    if chosen is None:
        intent, notes = _intent_from_text(request)
        return _build_result(intent, notes, "offline", image_size=image_size)
    intent, notes = _intent_from_text(chosen.words, chosen.name)
    return _build_result(
        intent, [*chosen.notes, *notes], "offline", own=chosen.own, image_size=image_size
    )


def _check_request(request: str) -> None:
    if not request or not request.strip():
        raise PlanRefusedError(
            "the request is empty; describe the task, e.g. 'a 1000-FPS malaria classifier'.\n"
            + _known_datasets_message()
        )


# --------------------------------------------------------------------------------------------
# LLM front end: structured output, one re-ask on a rejected answer.
# --------------------------------------------------------------------------------------------


#: One answer and one re-ask with the error: enough for a named mistake, bounded in cost.
_LLM_ATTEMPTS = 2


def _system_prompt() -> str:
    return (
        "You turn a request for a neural network into the task it describes, for a neural"
        " architecture search. Fill the fields from what the request says; leave a field null"
        " when the request does not give it, and do not invent targets.\n"
        "Rules:\n"
        "- dataset: exactly one of the known datasets below, by its name; or, when the request"
        " names a file or folder of its own data, that path exactly as written.\n"
        "- val_accuracy_threshold: a fraction in (0, 1]; '95 %' is 0.95.\n"
        f"- fps_threshold: frames per second, > 0; 'real-time' means {_fmt(REAL_TIME_FPS)}.\n"
        "- max_params, max_model_size_mb (1 MB = 1000 KB), max_latency_ms: upper limits, > 0.\n"
        "- emphasizes_energy / emphasizes_speed: true when the request stresses them; edge,"
        " embedded or mobile devices stress both.\n"
        "- weights: only when the request states numeric weights; otherwise null.\n"
        "- assumptions: one plain sentence for every reading that was not literal.\n"
        "If the request names no known dataset, set dataset to what it names; it will be refused.\n"
        + _known_datasets_message()
    )


def _model_name(llm: BaseChatModel) -> str:
    for attr in ("model_name", "model", "model_id"):
        value = getattr(llm, attr, None)
        if isinstance(value, str) and value:
            return value
    return str(getattr(llm, "_llm_type", type(llm).__name__))


def _as_intent(raw: object) -> PlanIntent:
    if isinstance(raw, PlanIntent):
        return raw
    data = raw.model_dump() if isinstance(raw, BaseModel) else raw
    try:
        return PlanIntent.model_validate(data)
    except ValidationError as e:
        raise PlanRefusedError(
            f"the answer does not fit the schema:\n{format_validation_error(e, PlanIntent)}"
        ) from e


def _dump(raw: object) -> str:
    data = raw.model_dump() if isinstance(raw, BaseModel) else raw
    return json.dumps(data, default=str, sort_keys=True)


def plan_with_llm(
    request: str,
    llm: BaseChatModel,
    *,
    dataset: str | None = None,
    image_size: int | None = None,
    cache_dir: Path | None = None,
) -> PlanResult:
    """Ask ``llm`` for the request's intent as structured output, then validate it like offline.

    A rejected answer (schema, unknown dataset, out-of-range value) is sent back once with the
    error, since models usually fix a named mistake; a second rejection raises PlanRefusedError.
    A failed call raises ``LLMAuthError`` or ``LLMUnavailableError``: planning comes before any
    work, so there is nothing to wait for. ``--dataset`` or a path in the request is read (and
    the user's data prepared) before the LLM is asked, as offline, and decides the dataset
    whatever the LLM answers: bad data stops before any call is paid for.
    """
    _check_request(request)
    chosen = _choose(request, dataset, image_size, cache_dir)
    source = f"llm:{_model_name(llm)}"
    structured = llm.with_structured_output(PlanIntent)
    messages: list[BaseMessage] = [SystemMessage(_system_prompt()), HumanMessage(request)]
    calls: list[LLMCall] = []
    for attempt in range(1, _LLM_ATTEMPTS + 1):
        raw: object = None
        started = time.perf_counter()
        try:
            try:
                raw = structured.invoke(messages)
            except OutputParserException:
                raise  # an answer that did not parse: re-asked below
            except Exception as e:
                # The provider failed (an outage, a rejected key): no plan, and no run started.
                raise llm_failure(e, model_name(llm)) from e
            finally:
                calls.append(
                    LLMCall(
                        model=source.removeprefix("llm:"),
                        prompt="\n\n".join(f"[{m.type}]\n{m.content}" for m in messages),
                        response=_dump(raw) if raw is not None else "(no parsable answer)",
                        latency_s=time.perf_counter() - started,
                    )
                )
            intent, notes = _as_intent(raw), []
            if chosen is not None:
                notes = list(chosen.notes)
                if intent.dataset != chosen.name:
                    notes.append(
                        f"The LLM named the dataset {intent.dataset!r}; {chosen.name} is used."
                    )
                intent = intent.model_copy(update={"dataset": chosen.name})
            result = _build_result(
                intent,
                notes,
                source,
                own=chosen.own if chosen is not None else None,
                image_size=image_size,
                cache_dir=cache_dir,
            )
            return result.model_copy(update={"llm_calls": calls})
        except (PlanRefusedError, OutputParserException) as e:
            error = str(e)
            logger.warning("planner answer %d from %s rejected: %s", attempt, source, error)
            if attempt == _LLM_ATTEMPTS:
                raise PlanRefusedError(
                    f"the LLM planner ({source}) gave no valid plan after a re-ask; last error:"
                    f" {error}"
                ) from e
            messages = [
                *messages,
                AIMessage(_dump(raw) if raw is not None else "(no parsable answer)"),
                HumanMessage(
                    f"That answer was rejected: {error}\nCorrect it and answer again with the"
                    " same fields."
                ),
            ]
    raise AssertionError("unreachable")  # pragma: no cover


def plan(
    request: str,
    llm: BaseChatModel | None,
    *,
    dataset: str | None = None,
    image_size: int | None = None,
    cache_dir: Path | None = None,
) -> PlanResult:
    """Plan with ``llm`` when one is configured, else with the deterministic offline rules.

    ``dataset`` and ``image_size`` are ``--dataset`` and ``--image-size``. Targets that cannot
    be met together (`plan_warnings`) are logged; the CLI shows them with the plan, before any
    work.
    """
    options: dict[str, Any] = {
        "dataset": dataset,
        "image_size": image_size,
        "cache_dir": cache_dir,
    }
    result = (
        plan_offline(request, **options) if llm is None else plan_with_llm(request, llm, **options)
    )
    for warning in plan_warnings(result.spec):
        logger.info("planner warning: %s", warning)
    return result
