"""The program that runs inside the sandbox: ``python -m archsmith.sandbox.runner WORK_DIR``.

It reads ``job.json``, runs the named tool on the candidate in ``candidate.py``, and writes exactly
one ``result.json`` (atomically) with ``ok``, ``result`` and ``error``. Errors of the candidate are
caught here and described (type, message, the line in the candidate, a traceback with the work
directory's path replaced); the process exits 0 whenever it managed to write a result, so a
non-zero exit always means the framework itself failed.

It imports only the standard library, pydantic, numpy, torch and the tool implementations, so a
sandbox image needs nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

from archsmith.sandbox.base import CANDIDATE_FILE, JOB_FILE, RESULT_FILE

log = logging.getLogger("archsmith.sandbox.runner")

_MESSAGE_LIMIT = 2000
_TRACEBACK_LIMIT = 8000


def candidate_line(tb: TracebackType | None, candidate: str) -> int | None:
    """The innermost line of the traceback that lies in the candidate's file."""
    line = None
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == candidate:
            line = lineno
    return line


def describe(exc: BaseException, candidate: str, work_dir: str) -> dict[str, Any]:
    """A CandidateError as data: type, message, candidate line, and a host-path-free traceback."""
    line = candidate_line(exc.__traceback__, candidate)
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


def write_result(work_dir: Path, payload: dict[str, Any]) -> None:
    """Write result.json atomically so the host never reads half a result."""
    tmp = work_dir / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(payload, allow_nan=False, default=str), encoding="utf-8")
    os.replace(tmp, work_dir / RESULT_FILE)


def _selftest(job: dict[str, Any], work_dir: Path) -> dict[str, Any]:
    """Report what the sandbox looks like from inside (used by the backends' own tests)."""
    import platform

    return {
        "python": platform.python_version(),
        "uid": os.getuid(),
        "cwd": os.getcwd(),
        "work_dir_writable": os.access(work_dir, os.W_OK),
        "env_keys": sorted(os.environ),
    }


def run_job(work_dir: Path) -> dict[str, Any]:
    """Run the job in ``work_dir``; the candidate's failures become the payload, not raises."""
    job = json.loads((work_dir / JOB_FILE).read_text(encoding="utf-8"))
    tool = job["tool"]
    candidate = str(work_dir / CANDIDATE_FILE)
    if tool == "selftest":
        return {"ok": True, "result": _selftest(job, work_dir), "error": None}
    import archsmith.sandbox.ops as ops

    try:
        result = ops.run_tool(tool, job, work_dir, candidate)
    except BaseException as exc:  # noqa: BLE001 - the candidate's failures are results
        return {"ok": False, "result": None, "error": describe(exc, candidate, str(work_dir))}
    error = result.pop("_candidate_error", None)
    if error is not None:
        return {"ok": False, "result": result or None, "error": error}
    return {"ok": True, "result": result, "error": None}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 0 when a result was written, 2 when the job could not even be read."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m archsmith.sandbox.runner WORK_DIR\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    work_dir = Path(args[0])
    try:
        payload = run_job(work_dir)
    except (OSError, json.JSONDecodeError, KeyError):
        log.exception("cannot read the job in %s", work_dir)
        return 2
    write_result(work_dir, payload)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
