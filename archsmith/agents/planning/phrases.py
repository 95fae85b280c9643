"""The offline reading of a request: deterministic rules over its words, no LLM.

Same request -> same intent. Dataset names and aliases, numbers with their units and comparators
(FPS, accuracy or error rate, parameters, model size, latency) and the words of emphasis (energy,
speed, an edge device) become a ``PlanIntent``, with a note for every reading that was not
literal; what contradicts itself or cannot be a bound the spec holds is refused.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from archsmith.agents.interfaces import PlanRefusedError
from archsmith.agents.planning.intent import (
    REAL_TIME_FPS,
    PlanIntent,
    fmt,
    known_datasets_message,
)
from archsmith.data.registry import REGISTRY, normalize_name

__all__ = ["find_datasets", "intent_from_text"]

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


def find_datasets(text: str) -> list[_DatasetHit]:
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
                f" maximum {what}. Say e.g. 'under {fmt(n.value)}'."
            )


def _tightest_max(nums: list[_Number], what: str, notes: list[str]) -> float | None:
    if not nums:
        return None
    value = min(n.value for n in nums)
    if len({n.value for n in nums}) > 1:
        phrases = ", ".join(f"'{n.phrase}'" for n in nums)
        notes.append(f"Several {what} limits given ({phrases}): using the tightest, {fmt(value)}.")
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
                f"fps_threshold: contradictory FPS constraints: at least {fmt(low)} FPS and at"
                f" most {fmt(high)} FPS; no model can meet both."
            )
        notes.append(f"The FPS upper bound {phrases} is ignored: the spec only has a minimum FPS.")
    for n in lows:
        if n.is_min is None:
            notes.append(f"'{n.phrase}' read as at least {fmt(n.value)} FPS.")
    if len({n.value for n in lows}) > 1 and low is not None:
        notes.append(f"Several FPS targets given: using the highest, {fmt(low)} FPS.")
    if low is None and _REAL_TIME.search(text):
        notes.append(f"'real-time' read as at least {fmt(REAL_TIME_FPS)} FPS.")
        return REAL_TIME_FPS
    if low is not None and _REAL_TIME.search(text):
        notes.append(f"'real-time' is covered by the explicit target of {fmt(low)} FPS.")
    return low


def _acc_value(n: _Number, m: re.Match[str], notes: list[str]) -> float:
    """A percent or fraction as a fraction; refuses what no model can reach."""
    v = n.value
    if m.group("pct") is None:
        if v <= 1.0:
            return v
        if v <= 100.0:
            notes.append(f"'{n.phrase}' read as {fmt(v)} % accuracy.")
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
        notes.append(f"'{n.phrase}' read as an accuracy target of {fmt(target)}.")
        targets.append((target, n.phrase))

    bare: list[tuple[_Number, re.Match[str]]] = []
    for n, m in scan.find(_BARE_PCT):
        before = re.findall(r"[a-z]+", scan.text[max(0, m.start() - 20) : m.start()])
        rest = scan.text[m.end() :].lstrip()
        word = re.match(r"[a-z]+", rest)
        next_word = word.group(0) if word else ""
        starts_dataset = any(h.start == 0 for h in find_datasets(rest[:40]))
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


def intent_from_text(request: str, chosen: str | None = None) -> tuple[PlanIntent, list[str]]:
    """The offline reading of a request: the intent and the notes on how it was read.

    ``chosen`` is the dataset ``--dataset`` or a path in the request fixed (the path already
    taken out of ``request``); registry aliases in the words are then ordinary words.
    """
    text = " ".join(request.lower().split())
    notes: list[str] = []
    hits = find_datasets(text)
    names = list(dict.fromkeys(h.dataset for h in hits))
    if chosen is not None:
        for h in _all_dataset_hits(text):
            if h.dataset != chosen:
                notes.append(f"'{h.alias}' is read as an ordinary word: the data is {chosen}.")
    elif not names:
        raise PlanRefusedError(
            f"dataset: no known dataset is named in the request.{_suggestion(text)} Name one by"
            " its name or an alias, e.g. 'a 1000-FPS malaria classifier'.\n"
            + known_datasets_message()
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
