"""The sandbox contract: a job goes in, one structured result comes out.

A job names the tool to run inside the sandbox, its arguments, the candidate's code and the prepared
dataset. The runner (``archsmith.sandbox.runner``) executes it in a fresh work directory and writes
``result.json`` there. A failure of the candidate (syntax error, exception, NaN loss, out of
memory, time limit) is a result with ``ok = False`` and a ``CandidateError``; only a failure of the
framework itself (no sandbox program, an unwritable work directory, a runner that crashed) raises
``SandboxError``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from archsmith.errors import ArchsmithError

__all__ = [
    "CANDIDATE_FILE",
    "JOB_FILE",
    "RESULT_FILE",
    "SANDBOX_DATA",
    "SANDBOX_WORK",
    "CandidateError",
    "Sandbox",
    "SandboxError",
    "SandboxJob",
    "SandboxLimits",
    "SandboxResult",
    "ToolName",
    "build_result",
    "prepare_work_dir",
    "read_result",
    "strip_host_paths",
    "truncate",
]

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
RESULT_FILE = "result.json"
CANDIDATE_FILE = "candidate.py"

ToolName = Literal[
    "check_shapes", "count_params", "train_model", "measure_energy", "export", "selftest"
]


class SandboxError(ArchsmithError):
    """The sandbox itself failed (not the candidate): missing backend, broken runner, bad setup."""


class SandboxLimits(BaseModel):
    """Resource limits every backend enforces on one job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    wall_time_s: float = Field(default=900.0, gt=0, description="Wall-clock limit in seconds.")
    memory_mb: int = Field(default=6144, gt=0, description="Memory limit in MiB.")
    max_processes: int = Field(default=256, gt=0, description="Most processes/threads at once.")
    max_file_size_mb: int = Field(default=2048, gt=0, description="Largest file it may write.")
    cpu_time_s: int | None = Field(default=None, gt=0, description="CPU-seconds limit, if any.")
    max_output_bytes: int = Field(
        default=64_000, gt=0, description="Stdout/stderr kept from the job (the tail)."
    )
    grace_s: float = Field(
        default=3.0, ge=0, description="Time between SIGINT and SIGKILL at the wall-clock limit."
    )


class SandboxJob(BaseModel):
    """One unit of work for the sandbox: a tool, its arguments, the code and the data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: ToolName
    args: dict[str, Any] = Field(default_factory=dict)
    code: str = Field(default="", description="The candidate module's source text.")
    dataset_path: Path | None = Field(
        default=None, description="A prepared dataset (.npz) on the host; mounted read-only."
    )
    input_files: dict[str, Path] = Field(
        default_factory=dict,
        description="Host files copied into the work directory under these names (e.g. weights).",
    )
    limits: SandboxLimits = Field(default_factory=SandboxLimits)
    device: str = Field(default="cpu", description="'cpu', 'cuda' or 'cuda:N'.")


class CandidateError(BaseModel):
    """What went wrong in the candidate, with the line in its code when there is one."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="Exception class or failure kind: 'RuntimeError', 'Timeout'.")
    message: str
    line: int | None = Field(default=None, description="Line in the candidate's code, if known.")
    traceback: str | None = Field(default=None, description="Traceback with host paths stripped.")


class SandboxResult(BaseModel):
    """The runner's single result, plus what the backend observed from outside."""

    model_config = ConfigDict(extra="forbid")

    ok: bool
    result: dict[str, Any] | None = None
    error: CandidateError | None = None
    backend: str
    wall_time_s: float = Field(ge=0)
    stdout_tail: str = ""
    stderr_tail: str = ""
    work_dir: Path | None = Field(
        default=None, description="Host path of the job's work directory, when it is kept."
    )


@runtime_checkable
class Sandbox(Protocol):
    """A backend: runs jobs in isolation."""

    name: str

    def run(self, job: SandboxJob, work_dir: Path | None = None) -> SandboxResult:
        """Run ``job``; ``work_dir`` (created if absent) keeps its files, else a temporary one."""
        ...


def truncate(text: str, limit: int) -> str:
    """Keep the last ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    return f"[... {cut} characters cut ...]\n" + text[-limit:]


_HOME = re.compile(r"/(?:root|home/[^/\s]+)(?=/)")


def strip_host_paths(text: str, replacements: dict[str, str]) -> str:
    """Replace host paths (work dir, site-packages, home) so traces reveal nothing of the host."""
    for path, label in sorted(replacements.items(), key=lambda kv: -len(kv[0])):
        if path:
            text = text.replace(path, label)
    return _HOME.sub("~", text)


#: Where every backend mounts the job's work directory and the dataset inside the sandbox.
SANDBOX_WORK = "/sandbox/work"
SANDBOX_DATA = "/sandbox/data"


def prepare_work_dir(
    job: SandboxJob, work_dir: Path, dataset_in_sandbox: str | None = None
) -> dict[str, Any]:
    """Write the candidate and ``job.json`` into ``work_dir`` and copy the input files.

    Paths inside ``job.json`` are the sandbox's view (``SANDBOX_WORK``, ``SANDBOX_DATA``), the same
    for every backend, so the runner never sees a host path (``dataset_in_sandbox`` overrides the
    dataset's path for a backend without mounts).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    # A reused work directory must not hand an earlier (or forged) result to this job, and a link
    # the previous job planted must not redirect what we write next.
    for name in (RESULT_FILE, RESULT_FILE + ".tmp", CANDIDATE_FILE, JOB_FILE, *job.input_files):
        target = work_dir / name
        if target.is_symlink() or target.is_file():
            target.unlink()
    (work_dir / CANDIDATE_FILE).write_text(job.code, encoding="utf-8")
    for name, src in job.input_files.items():
        if "/" in name or name in {JOB_FILE, RESULT_FILE, CANDIDATE_FILE, "", ".", ".."}:
            raise SandboxError(f"input file name {name!r} is not allowed")
        try:
            shutil.copyfile(src, work_dir / name)
        except OSError as e:
            raise SandboxError(f"cannot copy input file {src} into the sandbox: {e}") from e
    data = {
        "tool": job.tool,
        "args": job.args,
        "device": job.device,
        "dataset_path": (
            dataset_in_sandbox or f"{SANDBOX_DATA}/{job.dataset_path.name}"
            if job.dataset_path is not None
            else None
        ),
        "max_output_bytes": job.limits.max_output_bytes,
    }
    (work_dir / JOB_FILE).write_text(json.dumps(data), encoding="utf-8")
    return data


#: A result larger than this is not the runner's (it writes a few kB); it is refused unread.
MAX_RESULT_BYTES = 64 << 20


def read_result(work_dir: Path) -> dict[str, Any] | None:
    """The runner's ``result.json`` as data, or None when it wrote none (killed, crashed).

    The work directory belongs to the job, so ``result.json`` may be hostile: a symbolic link to a
    host file, a FIFO, or huge. It is opened without following links and read only when it is a
    regular file of sane size.
    """
    path = work_dir / RESULT_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:  # ELOOP: a symbolic link planted by the job
        log.warning("ignoring %s: %s", path, e.strerror)
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_RESULT_BYTES:
            log.warning(
                "ignoring %s: not a regular file of at most %d bytes", path, MAX_RESULT_BYTES
            )
            return None
        raw = f.read(MAX_RESULT_BYTES + 1)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def build_result(
    *,
    work_dir: Path,
    backend: str,
    wall_time_s: float,
    stdout: str,
    stderr: str,
    exit_code: int | None,
    timed_out: bool,
    limits: SandboxLimits,
    memory_exceeded: bool = False,
    keep_work_dir: bool = True,
    path_labels: dict[str, str] | None = None,
) -> SandboxResult:
    """Turn what a backend observed into one SandboxResult; shared so every backend agrees.

    The runner's own ``result.json`` wins when it exists. Otherwise the outside view explains the
    failure: the wall-clock limit, the memory limit, a signal, or an exit with no result.
    """
    labels = {str(work_dir): SANDBOX_WORK, **(path_labels or {})}
    out_tail = strip_host_paths(truncate(stdout, limits.max_output_bytes), labels)
    err_tail = strip_host_paths(truncate(stderr, limits.max_output_bytes), labels)
    common: dict[str, Any] = {
        "backend": backend,
        "wall_time_s": wall_time_s,
        "stdout_tail": out_tail,
        "stderr_tail": err_tail,
        "work_dir": work_dir if keep_work_dir else None,
    }
    data = None if timed_out else read_result(work_dir)
    if data is not None:
        try:
            parsed = SandboxResult.model_validate({**data, **common})
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed
        error = CandidateError(type="InvalidResult", message="the runner's result.json is invalid")
    elif timed_out:
        error = CandidateError(
            type="Timeout",
            message=f"stopped at the wall-clock limit of {limits.wall_time_s:g} s",
        )
    elif memory_exceeded:
        error = CandidateError(
            type="OutOfMemory",
            message=f"killed at the memory limit of {limits.memory_mb} MiB",
        )
    elif exit_code is not None and exit_code < 0:
        error = CandidateError(
            type="Killed", message=f"the sandboxed process was killed by signal {-exit_code}"
        )
    else:
        last = err_tail.strip().splitlines()[-1:] if err_tail.strip() else []
        error = CandidateError(
            type="NoResult",
            message=f"the sandboxed process exited with code {exit_code} and wrote no result"
            + (f": {last[0]}" if last else ""),
        )
    return SandboxResult(ok=False, error=error, **common)
