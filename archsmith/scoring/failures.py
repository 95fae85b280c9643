"""A candidate's failure as data: its type, message, the line in the candidate, and a traceback
with host paths replaced.

It lives with the code that runs inside the sandbox because both of the candidate's processes
need it: the runner describes every failure it catches, and the export job names the candidate's
line behind an exporter's wrapped error. Standard library only.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["candidate_line", "chain_line", "describe", "exception_chain"]

_MESSAGE_LIMIT = 2000
_TRACEBACK_LIMIT = 8000


def candidate_line(tb: TracebackType | None, candidate: str) -> int | None:
    """The innermost line of the traceback that lies in the candidate's file."""
    line = None
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == candidate:
            line = lineno
    return line


def exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes, outermost first (at most 20, no cycles)."""
    chain = [exc]
    while len(chain) < 20:
        nxt = chain[-1].__cause__ or chain[-1].__context__
        if nxt is None or nxt in chain:
            break
        chain.append(nxt)
    return chain


def chain_line(exc: BaseException, candidate: str) -> int | None:
    """The candidate's line from the innermost exception of the chain that has one.

    torch.export and the exporters wrap the real failure (a data-dependent branch in forward) in
    their own errors, and archsmith wraps those again; the cause nearest the candidate's code
    names the line to fix.
    """
    lines = [candidate_line(e.__traceback__, candidate) for e in reversed(exception_chain(exc))]
    return next((ln for ln in lines if ln is not None), None)


def describe(exc: BaseException, candidate: str, work_dir: str) -> dict[str, Any]:
    """A CandidateError as data: type, message, candidate line, and a host-path-free traceback."""
    line = chain_line(exc, candidate)
    if line is None and isinstance(exc, SyntaxError) and exc.filename == candidate:
        line = exc.lineno
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    package_root = str(Path(__file__).resolve().parents[2])
    prefixes = {
        work_dir: "/sandbox/work",
        sys.prefix: "<python>",
        sys.base_prefix: "<python>",
        package_root: "<archsmith>",
    }
    for path, label in sorted(prefixes.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(path, label)
    message = str(exc)
    for path, label in prefixes.items():
        message = message.replace(path, label)
    if len(message) > _MESSAGE_LIMIT:
        message = message[:_MESSAGE_LIMIT] + " [...]"
    if len(text) > _TRACEBACK_LIMIT:
        text = "[...]\n" + text[-_TRACEBACK_LIMIT:]
    return {"type": type(exc).__name__, "message": message, "line": line, "traceback": text}
