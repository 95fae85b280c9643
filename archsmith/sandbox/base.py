"""The sandbox contract: a job goes in, one structured result comes out.

A job names the tool to run inside the sandbox, its arguments, the candidate's code (for the jobs
that run it) and the prepared dataset. The runner (``archsmith.sandbox.runner``) executes it in a
fresh work directory and writes ``result.json`` there. A failure of the candidate (syntax error,
exception, NaN loss, out of memory, time limit) is a result with ``ok = False`` and a
``CandidateError``; only a failure of the framework itself (no sandbox program, an unwritable work
directory, a runner that crashed) raises ``SandboxError``.

The host treats a work directory as the job's, and the job as hostile: it writes into a directory
only before the job starts, creating each file anew (``O_EXCL``, no link followed), copies in only
files from its own directories, and reads back only regular files of bounded size.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from archsmith.errors import ArchsmithError, InputError
from archsmith.files import UntrustedFileError, open_untrusted, read_untrusted
from archsmith.scoring.format import JOB_OUTPUTS, RESULT_FILE

__all__ = [
    "CANDIDATE_FILE",
    "CANDIDATE_TOOLS",
    "JOB_FILE",
    "MEASURING_TOOLS",
    "RESULT_FILE",
    "RUNNER_FLAGS",
    "SANDBOX_DATA",
    "SANDBOX_WORK",
    "CandidateError",
    "JobInterruptedError",
    "Sandbox",
    "SandboxError",
    "SandboxJob",
    "SandboxLimits",
    "SandboxResult",
    "SandboxUnavailableError",
    "ToolName",
    "build_result",
    "cancel_running_jobs",
    "cancellable",
    "interrupts_stop_jobs",
    "prepare_work_dir",
    "read_result",
    "settle_outputs",
    "signal_group",
    "strip_host_paths",
    "truncate",
    "work_files",
]

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
CANDIDATE_FILE = "candidate.py"

ToolName = Literal[
    "build", "train", "export", "inspect", "score", "speed", "verify", "target", "selftest"
]
#: The jobs that run as the candidate's process: they may be given its code, and what they
#: return is that process's own account (bounded, never a score). ``build``, ``train`` and
#: ``export`` import the candidate; ``selftest`` reports what such a process sees.
CANDIDATE_TOOLS = frozenset({"build", "train", "export", "selftest"})
#: The jobs of the measuring process: they load only the exported program, never the code.
MEASURING_TOOLS = frozenset({"inspect", "score", "speed", "verify", "target"})


class SandboxError(ArchsmithError):
    """The sandbox itself failed (not the candidate): missing backend, broken runner, bad setup."""


class SandboxUnavailableError(SandboxError, InputError):
    """No isolation can be started here; the message says why and what the user can do."""


class JobInterruptedError(SandboxError):
    """The host stopped a job on purpose (Ctrl-C, ``archsmith stop --now``): not the candidate's
    failure, so nothing is recorded for it and a resumed run does the step again."""


# -- stopping the jobs in flight -------------------------------------------------------------------

_running: dict[int, Callable[[], None]] = {}
_running_lock = threading.Lock()


@contextmanager
def cancellable(cancel: Callable[[], None]) -> Iterator[Callable[[], bool]]:
    """Register a running job's ``cancel`` for ``cancel_running_jobs``; yields "was it cancelled?".

    A backend wraps its wait for the job in this. The graph runs a node in a worker thread, so a
    Ctrl-C in the main thread would otherwise wait for a training job to end on its own.
    """
    stopped = threading.Event()

    def stop() -> None:
        stopped.set()
        cancel()

    token = id(stop)
    with _running_lock:
        _running[token] = stop
    try:
        yield stopped.is_set
    finally:
        with _running_lock:
            _running.pop(token, None)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Signal a sandbox's process group; one that is already gone is fine."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return
    except PermissionError as e:
        log.warning("cannot signal the sandbox's process group %d: %s", pgid, e)


def cancel_running_jobs() -> int:
    """Stop every job in flight (SIGINT, then SIGKILL after its grace); how many there were."""
    with _running_lock:
        jobs = list(_running.values())
    for stop in jobs:
        stop()
    return len(jobs)


@contextmanager
def interrupts_stop_jobs() -> Iterator[None]:
    """While inside, Ctrl-C (SIGINT) first stops the sandbox jobs in flight, then interrupts.

    Only the main thread can set a signal handler; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: FrameType | None) -> None:
        stopped = cancel_running_jobs()
        if stopped:
            log.warning("interrupted: stopping %d sandbox job(s)", stopped)
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class SandboxLimits(BaseModel):
    """Resource limits every backend enforces on one job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    wall_time_s: float = Field(default=900.0, gt=0, description="Wall-clock limit in seconds.")
    memory_mb: int = Field(default=6144, gt=0, description="Memory limit in MiB.")
    max_processes: int = Field(default=256, gt=0, description="Most processes/threads at once.")
    max_file_size_mb: int = Field(default=2048, gt=0, description="Largest file it may write.")
    scratch_mb: int = Field(
        default=1024,
        gt=0,
        description="Size of each tmpfs the job writes freely in (its work directory and /tmp):"
        " memory, gone when the job ends; only its declared outputs reach the disk.",
    )
    scratch_files: int = Field(
        default=20_000,
        gt=0,
        description="Files and directories each of those tmpfs may hold (where the backend can set"
        " it: the warm sandbox and Docker).",
    )
    cpu_time_s: int | None = Field(default=None, gt=0, description="CPU-seconds limit, if any.")
    max_output_bytes: int = Field(
        default=64_000, gt=0, description="Stdout/stderr kept from the job (the tail)."
    )
    grace_s: float = Field(
        default=3.0, ge=0, description="Time between SIGINT and SIGKILL at the wall-clock limit."
    )
    threads: int | None = Field(
        default=None,
        gt=0,
        description="Threads torch may use; None: one per core. Jobs sharing a machine (parallel"
        " rounds) get their share, so they do not fight over the cores.",
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

    @model_validator(mode="after")
    def _code_only_where_it_runs(self) -> SandboxJob:
        if self.code and self.tool not in CANDIDATE_TOOLS:
            raise ValueError(f"a {self.tool} job measures an exported program; it takes no code")
        return self


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
    placement: dict[str, Any] | None = Field(
        default=None,
        description="Where and when the job ran (Ray node, worker, times, measuring protocol);"
        " None when it ran from this process directly.",
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


#: The runner starts isolated from its environment and working directory (``-I``: no PYTHON*
#: variables, no user site, no current directory on sys.path, so a file a job left behind cannot
#: shadow a module), unbuffered and without writing bytecode.
RUNNER_FLAGS = ("-I", "-B", "-u")

#: Where every backend mounts the job's work directory and the dataset inside the sandbox.
SANDBOX_WORK = "/sandbox/work"
SANDBOX_DATA = "/sandbox/data"


def _create(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data``; fails rather than follow or reuse what is already there."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


#: The largest input file the host copies into a job (a model's weights).
MAX_INPUT_BYTES = 8 << 30


def prepare_work_dir(
    job: SandboxJob, work_dir: Path, dataset_in_sandbox: str | None = None
) -> dict[str, Any]:
    """Write the candidate and ``job.json`` into a new, empty ``work_dir`` and copy the inputs.

    ``work_dir`` must not exist or be empty: a directory a job once had may hold what it planted
    (a link where the host writes next). Input files come from the host's own directories and are
    copied byte for byte from regular files, never through a link. Paths inside ``job.json`` are
    the sandbox's view (``SANDBOX_WORK``, ``SANDBOX_DATA``), the same for every backend
    (``dataset_in_sandbox`` overrides the dataset's path for a backend without mounts).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    if any(work_dir.iterdir()):
        raise SandboxError(f"the work directory {work_dir} is not empty; each job needs a new one")
    reserved = {JOB_FILE, RESULT_FILE, RESULT_FILE + ".tmp", CANDIDATE_FILE, "", ".", ".."}
    reserved |= {".job-stdout", ".job-stderr"}  # a warm sandbox's job output (sandbox.zygote)
    for name in job.input_files:
        if "/" in name or "\x00" in name or name in reserved:
            raise SandboxError(f"input file name {name!r} is not allowed")
    if job.code:
        _create(work_dir / CANDIDATE_FILE, job.code.encode("utf-8"))
    for name, src in job.input_files.items():
        try:
            with open_untrusted(src, MAX_INPUT_BYTES) as f:
                _create(work_dir / name, f.read())
        except (OSError, UntrustedFileError) as e:
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
        "scratch_bytes": job.limits.scratch_mb * 1024 * 1024,
        "scratch_files": job.limits.scratch_files,
    }
    _create(work_dir / JOB_FILE, json.dumps(data).encode("utf-8"))
    for name in JOB_OUTPUTS.get(job.tool, (RESULT_FILE,)):
        if not os.path.lexists(work_dir / name):
            _create(work_dir / name, b"")
    return data


def work_files(work_dir: Path, tool: str) -> list[tuple[str, bool]]:
    """The files a job's work directory lends it, each with whether the job may write it.

    A backend mounts a size-limited tmpfs as the job's work directory and binds each of these
    files into it: the job can rewrite its declared outputs (``JOB_OUTPUTS``, each bounded by the
    file-size limit), read its inputs, and nothing else it writes reaches the host's disk, so a job
    can neither fill the disk nor leave a tree for the host to walk. The names are the host's own
    (``prepare_work_dir`` made them), read before the job starts.
    """
    outputs = set(JOB_OUTPUTS.get(tool, (RESULT_FILE,)))
    return [(name, name in outputs) for name in sorted(os.listdir(work_dir))]


def settle_outputs(work_dir: Path, tool: str) -> None:
    """Forget the declared outputs the job left empty: a file it did not write is no file.

    The host created every output empty before the job, so the readers of a finished job's files
    keep meaning "absent" by "not there". Only regular files the host made are removed.
    """
    for name in JOB_OUTPUTS.get(tool, (RESULT_FILE,)):
        path = work_dir / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise SandboxError(f"cannot read the job's {name}: {e}") from e
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            path.unlink()


#: A result larger than this is not the runner's (it writes a few kB); it is refused unread.
MAX_RESULT_BYTES = 64 << 20


def read_result(work_dir: Path) -> dict[str, Any] | None:
    """The runner's ``result.json`` as data, or None when it wrote none (killed, crashed).

    The work directory belongs to the job, so ``result.json`` may be hostile: a symbolic link to a
    host file, a FIFO, or huge. ``files.read_untrusted`` opens it without following links and
    reads it only when it is a regular file of sane size.
    """
    path = work_dir / RESULT_FILE
    if not os.path.lexists(path):
        return None
    try:
        raw = read_untrusted(path, MAX_RESULT_BYTES)
    except UntrustedFileError as e:
        log.warning("ignoring the job's %s: %s", RESULT_FILE, e)
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def build_result(
    *,
    tool: str,
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
    settle_outputs(work_dir, tool)
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
