"""Exception types shared by the package, and reading user-supplied JSON files.

Bad user input (a spec, a metrics file, a rulebook) raises ``InputError`` whose message says what is
wrong and what to do; the CLI turns it into exit code 2. Anything else that escapes is a bug or an
infrastructure failure and keeps its traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

__all__ = [
    "ArchsmithError",
    "InputError",
    "format_validation_error",
    "load_json_model",
    "read_json_object",
]

_M = TypeVar("_M", bound=BaseModel)


class ArchsmithError(Exception):
    """Base of every error archsmith raises on purpose."""


class InputError(ArchsmithError, ValueError):
    """User input is invalid; the message names the field or file and what to change."""


def format_validation_error(err: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per problem: ``field: what is wrong (got X); allowed: <the field's description>``.

    The field's description carries its allowed range, so the user learns the range without
    opening the source.
    """
    lines: list[str] = []
    for item in err.errors(include_url=False):
        loc = ".".join(str(p) for p in item["loc"]) or "(top level)"
        kind = item["type"]
        if kind == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling"
        elif kind == "missing":
            msg = "required field is missing"
        elif kind == "value_error":
            msg = str(item["msg"]).removeprefix("Value error, ")
        else:
            msg = f"{item['msg']} (got {item.get('input')!r})"
        desc = _describe(model, item["loc"]) if model is not None else None
        if desc and kind != "extra_forbidden":
            msg = f"{msg}; {desc}"
        lines.append(f"{loc}: {msg}")
    return "\n".join(lines)


def _describe(model: type[BaseModel], loc: tuple[int | str, ...]) -> str | None:
    """Follow ``loc`` through nested models and return the last field's description."""
    current: type[BaseModel] | None = model
    desc: str | None = None
    for part in loc:
        if current is None or not isinstance(part, str):
            break
        info = current.model_fields.get(part)
        if info is None:
            break
        desc = info.description
        ann = info.annotation
        current = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return desc


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object from ``path``; ``what`` names the file's role in error messages."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise InputError(f"{what} file {path} does not exist") from e
    except IsADirectoryError as e:
        raise InputError(f"{what} file {path} is a directory; give a JSON file") from e
    except UnicodeDecodeError as e:
        raise InputError(f"{what} file {path} is not UTF-8 text: {e.reason}") from e
    except OSError as e:
        raise InputError(f"cannot read {what} file {path}: {e.strerror}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            f"{what} file {path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
        ) from e
    if not isinstance(data, dict):
        raise InputError(f"{what} file {path} must hold a JSON object, not {type(data).__name__}")
    return data


def load_json_model(path: Path, model: type[_M], what: str) -> _M:
    """Read ``path`` and validate it as ``model``; every problem is listed in one InputError."""
    data = read_json_object(path, what)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InputError(f"invalid {what} in {path}:\n{format_validation_error(e, model)}") from e
