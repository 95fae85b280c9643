"""The program that runs inside the sandbox: ``python -I -m archsmith.sandbox.runner WORK_DIR``.

It reads ``job.json``, runs the named tool and writes exactly one ``result.json`` (atomically) with
``ok``, ``result`` and ``error``. Two kinds of job never meet in one process:

- candidate jobs (``build``, ``train``, ``export``) import the candidate in ``candidate.py``
  (``archsmith.scoring.candidate``); their result is the candidate's own account, which the host
  never takes as a score;
- measuring jobs (``inspect``, ``score``, ``speed``) load only the exported program
  (``archsmith.scoring.measure``) and refuse to run where a ``candidate.py`` exists.

Errors are caught here and described (type, message, the line in the candidate, a traceback with
host paths replaced); the process exits 0 whenever it managed to write a result, so a non-zero exit
always means the framework itself failed.

It imports only the standard library, pydantic, numpy, torch, safetensors and the tool
implementations, so a sandbox image needs nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from archsmith.sandbox.base import CANDIDATE_FILE, JOB_FILE, MEASURING_TOOLS, RESULT_FILE
from archsmith.scoring.failures import describe

log = logging.getLogger("archsmith.sandbox.runner")


def write_result(work_dir: Path, payload: dict[str, Any]) -> None:
    """Write result.json in place: it is a file the host lent the job, which cannot be replaced.

    The host reads it only once every process of the job has ended; a job killed while writing
    leaves JSON that does not parse, which the host reads as no result.
    """
    (work_dir / RESULT_FILE).write_text(
        json.dumps(payload, allow_nan=False, default=str), encoding="utf-8"
    )


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


def _dispatch(tool: str, args: dict[str, Any], job: dict[str, Any], work_dir: Path) -> Any:
    """Run one tool; a measuring tool refuses a work directory that holds candidate code."""
    candidate = str(work_dir / CANDIDATE_FILE)
    if tool in MEASURING_TOOLS:
        if os.path.lexists(candidate):
            raise RuntimeError("a measuring job must not be given the candidate's code")
        from archsmith.scoring import measure

        if tool == "target":
            from archsmith.scoring.target_ops import op_target

            return op_target(args, job, work_dir)
        return getattr(measure, f"op_{tool}")(args, job, work_dir)
    from archsmith.scoring import candidate as candidate_ops
    from archsmith.scoring import export_ops

    # The tools that import the candidate (``base.CANDIDATE_TOOLS`` less the selftest).
    ops = {
        "build": candidate_ops.op_build,
        "train": candidate_ops.op_train,
        "export": export_ops.op_export,
    }
    if tool not in ops:
        raise ValueError(f"unknown tool {tool!r}")
    return ops[tool](args, job, candidate, work_dir)


def run_job(work_dir: Path) -> dict[str, Any]:
    """Run the job in ``work_dir``; the candidate's failures become the payload, not raises."""
    job = json.loads((work_dir / JOB_FILE).read_text(encoding="utf-8"))
    tool = job["tool"]
    if tool == "selftest":
        return {"ok": True, "result": _selftest(job, work_dir), "error": None}
    try:
        result = _dispatch(tool, dict(job.get("args") or {}), job, work_dir)
    except BaseException as exc:  # noqa: BLE001 - the candidate's failures are results
        error = describe(exc, str(work_dir / CANDIDATE_FILE), str(work_dir))
        return {"ok": False, "result": None, "error": error}
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
