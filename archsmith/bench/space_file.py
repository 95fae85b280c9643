"""A user's own tabular benchmark: a space file and the table it points to.

``archsmith bench --space FILE.json`` runs every strategy on a table archsmith has never seen.
The space file::

    {
      "name": "my-cells",
      "dataset": "cifar10",
      "choices": ["none", "skip", "conv1x1", "conv3x3"],
      "roles": {"none": "none", "skip": "skip"},
      "table": "my-cells-table.json",
      "accuracy_unit": "percent"
    }

``choices`` are the operation names, ordered from least to most capacity and the same at every
position; the rulebook's instructions become edits through that order (``archsmith.search.moves``)
and the optional ``roles`` (``none``, ``identity``, ``skip``). ``table`` is a path, relative to
the space file, to a JSON object mapping each architecture's code (one digit per position, the
0-based index of its choice) to ``{"accuracy": ..., "params": ..., "flops": ...,
"latency_ms": {"device": ms}}``; only ``accuracy`` is required, and it is a percentage or a
fraction as ``accuracy_unit`` says. An optional ``description`` tells the LLM strategy what the
positions are. Every architecture of the space must be in the table, so a rank is a rank.

Every problem is an ``InputError`` naming the file, the line and what to fix, raised before any
search; line numbers are found only when there is an error to report.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, SupportsIndex

from archsmith.bench.base import Arch, Record
from archsmith.bench.spaces import _TableSpace, json_with_repeats, read_text
from archsmith.errors import InputError
from archsmith.search.moves import ROLES, Role, capacity_moves

__all__ = ["SPACE_FIELDS", "TABLE_FIELDS", "FileSpace", "load_space_file"]

logger = logging.getLogger(__name__)

#: The space file's fields: required ones first.
SPACE_FIELDS = ("name", "dataset", "choices", "table", "accuracy_unit", "roles", "description")
_REQUIRED = SPACE_FIELDS[:5]
#: A table record's fields.
TABLE_FIELDS = ("accuracy", "params", "flops", "latency_ms")
_UNITS = {"percent": 100.0, "fraction": 1.0}
#: Codes are one decimal digit per position.
MAX_CHOICES = 10
#: Architectures a table may hold: a bench ranks the whole space for every objective.
MAX_ARCHITECTURES = 1_000_000
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class FileSpace(_TableSpace):
    """A table read from a user's space file; positions and devices come from the table."""

    def __init__(
        self,
        *,
        name: str,
        dataset: str,
        choices: tuple[str, ...],
        positions: int,
        roles: Mapping[int, Role],
        records: Mapping[Arch, Record],
        devices: tuple[str, ...],
        description: str | None,
        source: Path,
    ) -> None:
        self.name = name
        self.positions = positions
        self.choices = choices
        self.datasets = (dataset,)
        self.devices = devices
        self.capacity = tuple(range(len(choices)))
        self.roles = MappingProxyType(dict(roles))
        self.description = description
        super().__init__({dataset: records}, source=source)

    def encode(self, arch: Arch) -> str:
        """One digit per position: the table's own key."""
        if len(arch) != self.positions or not all(0 <= c < len(self.choices) for c in arch):
            raise ValueError(
                f"{tuple(arch)} is not an architecture of {self.name}: it needs {self.positions}"
                f" choices from 0 to {len(self.choices) - 1}"
            )
        return "".join(str(c) for c in arch)

    def decode(self, text: str) -> Arch:
        """The inverse of ``encode``; a ValueError that says what a code looks like otherwise."""
        text = text.strip()
        if len(text) != self.positions or not all(
            ch.isdigit() and int(ch) < len(self.choices) for ch in text
        ):
            raise ValueError(
                f"{text!r} is not an architecture of {self.name}: it is {self.positions} digits"
                f" from 0 to {len(self.choices) - 1}, e.g. {'0' * self.positions!r}"
            )
        return tuple(int(ch) for ch in text)

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        return (load_space_file, (str(self.source),))


# -- where in a file ------------------------------------------------------------------------------

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+')


def key_lines(text: str, depth: int = 2) -> dict[tuple[str, ...], list[int]]:
    """The line of every object key up to ``depth`` levels deep, by its path of keys.

    A key that appears twice in one object lists both lines. Only called to report an error, so
    a valid table is parsed once, by ``json``.
    """
    found: dict[tuple[str, ...], list[int]] = {}
    stack: list[list[Any]] = []  # ["obj", key] or ["arr", index]
    expect_key = False
    line, pos = 1, 0
    for m in _TOKEN.finditer(text):
        line += text.count("\n", pos, m.start())
        pos = m.start()
        token = m.group()
        if token == "{":
            stack.append(["obj", None])
            expect_key = True
        elif token == "[":
            stack.append(["arr", 0])
        elif token in "}]":
            if stack:
                stack.pop()
        elif token == ",":
            if stack and stack[-1][0] == "arr":
                stack[-1][1] += 1
            expect_key = bool(stack) and stack[-1][0] == "obj"
        elif token == ":":
            expect_key = False
        elif expect_key and token.startswith('"') and stack and stack[-1][0] == "obj":
            try:
                stack[-1][1] = json.loads(token)
            except json.JSONDecodeError:
                stack[-1][1] = token.strip('"')
            if len(stack) <= depth:
                found.setdefault(tuple(str(f[1]) for f in stack), []).append(line)
    return found


class _Where:
    """Builds 'FILE, line N' prefixes, scanning the text for lines only when asked."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    @functools.cached_property
    def _lines(self) -> dict[tuple[str, ...], list[int]]:
        return key_lines(self.text)

    def at(self, *keys: str, last: bool = False) -> str:
        lines = self._lines.get(tuple(keys))
        if not lines:
            return f"{self.path}"
        return f"{self.path}, line {lines[-1] if last else lines[0]}"


def _load_json(text: str, path: Path, what: str) -> tuple[dict[str, Any], list[str]]:
    """The top-level object and the keys that repeat anywhere in it."""
    data, repeated = json_with_repeats(text, path, what)
    if not isinstance(data, dict):
        raise InputError(f"{what} {path} must hold a JSON object, not {type(data).__name__}")
    return data, repeated


# -- the space file ------------------------------------------------------------------------------


def _text_field(data: dict[str, Any], key: str, where: _Where) -> str:
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where.at(key)}: {key} must be a non-empty string, got {value!r}")
    return value.strip()


def _space_fields(
    data: dict[str, Any], repeated: list[str], where: _Where
) -> tuple[str, str, tuple[str, ...], dict[int, Role], str, float, str | None]:
    """Name, dataset, choices, roles, table path, accuracy scale, description: checked."""
    for key in data:
        if key not in SPACE_FIELDS:
            raise InputError(
                f"{where.at(key)}: unknown field {key!r}; remove it or use one of"
                f" {', '.join(SPACE_FIELDS)}"
            )
    if repeated:
        raise InputError(f"{where.at(repeated[0], last=True)}: field {repeated[0]!r} repeats")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise InputError(
            f"{where.path}: field(s) {', '.join(missing)} missing; a space file needs"
            f" {', '.join(_REQUIRED)}"
        )
    name = _text_field(data, "name", where)
    if not _NAME.match(name) or name in ("macro", "nb201", "nas-bench-macro", "nas-bench-201"):
        raise InputError(
            f"{where.at('name')}: name {name!r} must be lower-case letters, digits, '.', '_' or"
            " '-', and not a built-in benchmark's name"
        )
    dataset = _text_field(data, "dataset", where)
    choices = data["choices"]
    if (
        not isinstance(choices, list)
        or not all(isinstance(c, str) and c.strip() for c in choices)
        or not 2 <= len(choices) <= MAX_CHOICES
    ):
        raise InputError(
            f"{where.at('choices')}: choices must be a list of 2 to {MAX_CHOICES} operation names"
            " (strings), ordered from least to most capacity"
        )
    names = tuple(c.strip() for c in choices)
    if len(set(names)) != len(names):
        twice = next(c for c in names if names.count(c) > 1)
        raise InputError(f"{where.at('choices')}: choice {twice!r} is listed twice")
    roles: dict[int, Role] = {}
    raw_roles = data.get("roles", {})
    if not isinstance(raw_roles, dict):
        raise InputError(
            f"{where.at('roles')}: roles must be an object of choice name to role"
            f' ({", ".join(ROLES)}), e.g. {{"none": "none"}}'
        )
    for choice, role in raw_roles.items():
        if choice not in names:
            raise InputError(
                f"{where.at('roles', choice)}: roles names {choice!r}, which is not one of the"
                f" choices ({', '.join(names)})"
            )
        if role not in ROLES:
            raise InputError(
                f"{where.at('roles', choice)}: role {role!r} of {choice!r} must be one of"
                f" {', '.join(ROLES)}"
            )
        roles[names.index(choice)] = role
    table = _text_field(data, "table", where)
    unit = data["accuracy_unit"]
    if unit not in _UNITS:
        raise InputError(
            f'{where.at("accuracy_unit")}: accuracy_unit must be "percent" or "fraction",'
            f" got {unit!r}"
        )
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise InputError(f"{where.at('description')}: description must be a string")
    return name, dataset, names, roles, table, _UNITS[unit], description


# -- the table ------------------------------------------------------------------------------------


def _record(
    code: str, value: Any, scale: float, where: _Where
) -> tuple[float, int | None, float | None, dict[str, float]]:
    """Accuracy as a fraction, params, flops and latencies of one entry, checked."""
    if not isinstance(value, dict):
        raise InputError(
            f"{where.at(code)}: the entry of {code} must be an object with an accuracy, e.g."
            ' {"accuracy": 91.3, "params": 120000}'
        )
    for key in value:
        if key not in TABLE_FIELDS:
            raise InputError(
                f"{where.at(code, key)}: unknown field {key!r} in {code}; the fields are"
                f" {', '.join(TABLE_FIELDS)}"
            )
    if "accuracy" not in value:
        raise InputError(f'{where.at(code)}: {code} has no accuracy; add "accuracy": <number>')

    def number(key: str, low: float, high: float = math.inf) -> float:
        x = value[key]
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not low <= x <= high:
            bounds = f">= {low:g}" if math.isinf(high) else f"from {low:g} to {high:g}"
            raise InputError(
                f"{where.at(code, key)}: {key} of {code} must be a number {bounds}, got {x!r}"
            )
        return float(x)

    accuracy = number("accuracy", 0.0, scale) / scale
    params: int | None = None
    if "params" in value:
        p = number("params", 1.0)
        if not p.is_integer():
            raise InputError(f"{where.at(code, 'params')}: params of {code} must be a whole number")
        params = int(p)
    flops = number("flops", 0.0) if "flops" in value else None
    latency: dict[str, float] = {}
    raw = value.get("latency_ms", {})
    if not isinstance(raw, dict):
        raise InputError(
            f"{where.at(code, 'latency_ms')}: latency_ms of {code} must be an object of device"
            ' to milliseconds, e.g. {"pi4": 12.5}'
        )
    for device, ms in raw.items():
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not 0.0 < ms < math.inf:
            raise InputError(
                f"{where.at(code, 'latency_ms')}: latency of {code} on {device!r} must be a"
                f" number > 0 (milliseconds), got {ms!r}"
            )
        latency[str(device)] = float(ms)
    return accuracy, params, flops, latency


def _table(
    path: Path, names: tuple[str, ...], scale: float
) -> tuple[int, dict[Arch, Record], tuple[str, ...]]:
    """Positions, records and devices of the table; every problem with its line."""
    text = read_text(path, "benchmark table")
    where = _Where(path, text)
    data, repeated = _load_json(text, path, "benchmark table")
    if repeated:
        raise InputError(f"{where.at(repeated[0], last=True)}: {repeated[0]!r} appears twice")
    if not data:
        raise InputError(f"benchmark table {path} is empty; it needs an entry per architecture")
    n = len(names)
    first = next(iter(data))
    positions = len(first)
    if positions < 1 or n**positions > MAX_ARCHITECTURES:
        raise InputError(
            f"{where.at(first)}: codes of {positions} positions over {n} choices make {n}^"
            f"{positions} architectures; at most {MAX_ARCHITECTURES:,} can be ranked"
        )
    records: dict[Arch, Record] = {}
    devices: set[str] | None = None
    sized: bool | None = None
    for code, value in data.items():
        if len(code) != positions or not all(ch.isdigit() and int(ch) < n for ch in code):
            raise InputError(
                f"{where.at(code)}: {code!r} is not a code of this space: it must be"
                f" {positions} digits (one per position, like {first!r}), each from 0 to {n - 1}"
                f" ({', '.join(f'{i} {c}' for i, c in enumerate(names))})"
            )
        accuracy, params, flops, latency = _record(code, value, scale, where)
        if devices is None:
            devices = set(latency)
        elif set(latency) != devices:
            odd = sorted(devices ^ set(latency))
            raise InputError(
                f"{where.at(code)}: {code} has latency for {sorted(latency)} but {first} for"
                f" {sorted(devices)}; every entry needs the same devices (check {odd[0]!r})"
            )
        if sized is None:
            sized = params is not None
        elif sized != (params is not None):
            raise InputError(
                f"{where.at(code)}: {code} {'has' if params else 'lacks'} params but {first}"
                f" {'lacks' if params else 'has'} them; give params for every entry or none"
            )
        records[tuple(int(ch) for ch in code)] = Record(accuracy, params, flops, latency)
    expected = n**positions
    if len(records) != expected:
        missing = (
            "".join(map(str, a))
            for a in itertools.product(range(n), repeat=positions)
            if a not in records
        )
        shown = list(itertools.islice(missing, 3))
        raise InputError(
            f"benchmark table {path} has {len(records):,} of the {expected:,} architectures of"
            f" {positions} positions x {n} choices; add the missing ones, e.g."
            f" {', '.join(shown)}"
        )
    return positions, records, tuple(sorted(devices or ()))


def load_space_file(path: str | Path) -> FileSpace:
    """The space a user's space file describes (see the module docstring).

    Not cached: a run reads it once per process, and an edited table must be read again.
    """
    space_path = Path(path).expanduser().resolve()
    text = read_text(space_path, "space file")
    where = _Where(space_path, text)
    data, repeated = _load_json(text, space_path, "space file")
    name, dataset, names, roles, table, scale, description = _space_fields(data, repeated, where)
    try:
        capacity_moves(names, None, roles)
    except InputError as e:
        raise InputError(f"{where.at('roles')}: {e}") from e
    table_path = (space_path.parent / table).resolve()
    positions, records, devices = _table(table_path, names, scale)
    logger.info(
        "read space %s from %s: %d architectures, %d positions x %d choices",
        name,
        space_path,
        len(records),
        positions,
        len(names),
    )
    return FileSpace(
        name=name,
        dataset=dataset,
        choices=names,
        positions=positions,
        roles=roles,
        records=records,
        devices=devices,
        description=description,
        source=space_path,
    )
