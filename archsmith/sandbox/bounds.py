"""What the host keeps of a candidate job's result: known fields, each bounded.

A candidate job's ``result.json`` is written by the process that ran the candidate's code, so
that code can rewrite it: pad it to tens of MB (which the run store would keep whole), add fields
of its own, or nest it deep enough to hurt whoever reads it. The host keeps only the fields the
runner writes for that tool, refuses a result past the bounds below as ``InvalidResult`` (an
honest result is a few kB), and cuts an error's message and traceback to a readable length. The
measuring jobs never run candidate code; their results are not filtered here.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from archsmith.sandbox.base import CANDIDATE_TOOLS, CandidateError, SandboxResult

log = logging.getLogger(__name__)

#: The fields the runner writes for each candidate tool (``archsmith.scoring.candidate`` and
#: ``archsmith.scoring.export_ops``); any other field is dropped.
CANDIDATE_RESULT_FIELDS: dict[str, frozenset[str]] = {
    "build": frozenset({"output_shape", "expected_shape", "matches", "trainable_params", "export"}),
    "train": frozenset(
        {
            "history",
            "train_accuracy",
            "val_accuracy",
            "train_loss",
            "val_loss",
            "diverged",
            "stopped_by_budget",
            "epochs_completed",
            "wall_time_s",
            "train_samples_per_s",
            "device",
            "amp_dtype",
            "optimizer",
            "lr",
            "paused_at",
            "train_samples",
            "export",
        }
    ),
    "export": frozenset(
        {
            "format",
            "exporter",
            "fallback_reason",
            "attempts",
            "opset",
            "input",
            "output",
            "preprocessing",
            "checks",
            "warnings",
            "versions",
            "files",
            "seconds",
        }
    ),
    "selftest": frozenset({"python", "uid", "cwd", "work_dir_writable", "env_keys"}),
}

#: A kept result, as JSON, is at most this many bytes (a 2,000-epoch training history is ~300 kB).
MAX_RESULT_JSON_BYTES = 1 << 20
#: Nesting depth, entries of one object or list, and the length of one string or key.
MAX_DEPTH = 8
MAX_ENTRIES = 20_000
MAX_STRING_CHARS = 16_384
#: An error's message and traceback are cut to these many characters (the end is kept).
MAX_MESSAGE_CHARS = 4_096
MAX_TRACEBACK_CHARS = 16_384


class ResultBoundError(ValueError):
    """A candidate's result is past a bound: the job fails with this message."""


def _check(value: Any, depth: int, where: str) -> None:
    """Raise ResultBoundError where ``value`` is deeper, longer or of another kind than JSON data
    from the runner can be."""
    if depth > MAX_DEPTH:
        raise ResultBoundError(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            raise ResultBoundError(f"{where} is a string of {len(value):,} characters")
    elif isinstance(value, dict):
        if len(value) > MAX_ENTRIES:
            raise ResultBoundError(f"{where} has {len(value):,} fields")
        for key, item in value.items():
            if len(key) > MAX_STRING_CHARS:
                raise ResultBoundError(f"{where} has a field name of {len(key):,} characters")
            _check(item, depth + 1, f"{where}.{key[:40]}")
    elif isinstance(value, list):
        if len(value) > MAX_ENTRIES:
            raise ResultBoundError(f"{where} is a list of {len(value):,} entries")
        for i, item in enumerate(value):
            _check(item, depth + 1, f"{where}[{i}]")
    elif value is not None and not isinstance(value, (bool, int, float)):
        raise ResultBoundError(f"{where} is a {type(value).__name__}")


def bounded_fields(tool: str, result: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``result`` that the runner writes for ``tool``, checked against the bounds.

    Raises ResultBoundError, naming the field, when one is past a bound.
    """
    known = CANDIDATE_RESULT_FIELDS.get(tool, frozenset())
    dropped = sorted(k[:40] for k in result if k not in known)
    if dropped:
        log.warning("dropped fields the %s job's runner does not write: %s", tool, dropped[:10])
    kept = {k: v for k, v in result.items() if k in known}
    _check(kept, 0, "result")
    size = len(json.dumps(kept, default=str).encode("utf-8"))
    if size > MAX_RESULT_JSON_BYTES:
        raise ResultBoundError(
            f"the result is {size:,} bytes as JSON; at most {MAX_RESULT_JSON_BYTES:,} are kept"
        )
    return kept


def _cut(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return f"[... {len(text) - limit:,} characters cut ...]\n" + text[-limit:]


def bound_error(error: CandidateError) -> CandidateError:
    """``error`` with its message and traceback cut to a readable length."""
    return error.model_copy(
        update={
            "type": error.type[:200],
            "message": _cut(error.message, MAX_MESSAGE_CHARS),
            "traceback": _cut(error.traceback, MAX_TRACEBACK_CHARS),
        }
    )


def bound_candidate_result(tool: str, result: SandboxResult) -> SandboxResult:
    """What the host keeps of a job's result: a candidate job's known fields within bounds, or
    an ``InvalidResult`` failure saying which bound it passed; its error cut to length."""
    if tool not in CANDIDATE_TOOLS:
        return result
    update: dict[str, Any] = {}
    if result.error is not None:
        update["error"] = bound_error(result.error)
    if result.result is not None:
        try:
            update["result"] = bounded_fields(tool, result.result)
        except ResultBoundError as e:
            update.update(
                ok=False,
                result=None,
                error=CandidateError(
                    type="InvalidResult",
                    message=f"the {tool} job's result was refused: {e}. A candidate does not"
                    " write its job's result; build_model only returns the model",
                ),
            )
    return result.model_copy(update=update)
