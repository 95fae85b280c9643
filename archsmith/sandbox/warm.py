"""Warm sandboxes: bubblewrap started once, with torch imported, serving jobs one after another.

A cold job starts bubblewrap and Python and imports torch: seconds per job, several jobs per
candidate. A warm sandbox (``WarmSandbox``) runs ``archsmith.sandbox.zygote`` under the same
bubblewrap view as a cold job, with the job spool (the parent of the work directories) where a cold
job has its work directory; every job is a fork of that server that isolates itself, and puts
itself under a cold job's seccomp filter (``archsmith.sandbox.seccomp``), before any job code runs
(the zygote module says how). Limits are those of a cold job: the sandbox's rlimits and
cgroup (memory, processes) hold for the server and its one job, the wall-clock limit and a stop
(Ctrl-C, ``archsmith stop --now``) end the whole sandbox (SIGINT, then SIGKILL after the grace),
and the next job starts a new one.

Sandboxes are kept per kind of job (one that imports the candidate, one that measures), dataset,
device and limits: a candidate's sandbox never holds the validation or test splits. Each one is
started from one long-lived thread, because bubblewrap's ``--die-with-parent`` follows the thread
that started it, and a node's worker thread ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from archsmith.sandbox.base import (
    CANDIDATE_TOOLS,
    JobInterruptedError,
    SandboxError,
    SandboxJob,
    SandboxLimits,
    SandboxResult,
    build_result,
    cancellable,
    signal_group,
)
from archsmith.sandbox.cgroups import JobCgroup
from archsmith.sandbox.zygote import SETUP_FAILED

__all__ = ["WarmKey", "WarmSandbox", "WarmUnavailableError"]

log = logging.getLogger(__name__)

#: How long a new warm sandbox may take to import torch and say it is ready.
START_TIMEOUT_S = 180.0

_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archsmith-warm-spawner")


class WarmUnavailableError(SandboxError):
    """This machine cannot run a warm sandbox (the server says why); cold jobs still work."""


@dataclass(frozen=True)
class WarmKey:
    """What a warm sandbox is fixed to at its start: jobs with a different key need another."""

    kind: str  # "candidate" or "measuring"
    spool: Path
    dataset: Path | None
    device: str
    limits: SandboxLimits  # without the per-job wall-clock limit, output size and grace

    @staticmethod
    def of(job: SandboxJob, spool: Path) -> WarmKey:
        kind = "candidate" if job.tool in CANDIDATE_TOOLS else "measuring"
        fixed = job.limits.model_copy(
            update={"wall_time_s": 1.0, "max_output_bytes": 1, "grace_s": 0.0}
        )
        return WarmKey(kind, spool, job.dataset_path, job.device, fixed)

    def serves(self, job: SandboxJob, spool: Path) -> bool:
        """Whether a sandbox started for this key can run ``job`` (a job without data can run
        in a sandbox of its kind that holds some)."""
        other = WarmKey.of(job, spool)
        return (
            other.kind == self.kind
            and other.spool == self.spool
            and other.device == self.device
            and other.limits == self.limits
            and other.dataset in (None, self.dataset)
        )


class WarmSandbox:
    """One bubblewrap sandbox running the zygote; one job at a time."""

    def __init__(
        self,
        key: WarmKey,
        argv: list[str],
        env: dict[str, str],
        preexec: Callable[[], None],
        cgroup: JobCgroup | None,
        backend: str,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        """``pass_fds`` are descriptors bubblewrap reads (the seccomp program); the caller
        closes them once this returns."""
        self.key = key
        self.cgroup = cgroup
        self.backend = backend
        self.busy = False
        self.dead = False
        started = time.monotonic()
        try:
            self.proc = _spawner.submit(
                subprocess.Popen,
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
                preexec_fn=preexec,
                close_fds=True,
                pass_fds=pass_fds,
            ).result()
        except OSError as e:
            if cgroup is not None:
                cgroup.remove()
            raise SandboxError(f"cannot start a warm sandbox ({argv[0]}): {e}") from e
        # Ends the sandbox on close(), when this object is collected, or at exit, whichever is
        # first; nothing it is given refers back to this object.
        self._finalizer = weakref.finalize(self, _end, self.proc, cgroup)
        self._buffer = b""
        #: The server closed its stdout: it is gone (killed, or out of memory).
        self.ended = False
        self._stderr: list[bytes] = []
        threading.Thread(target=_pump, args=(self.proc.stderr, self._stderr), daemon=True).start()
        ready = self._reply(START_TIMEOUT_S)
        if ready is None or not ready.get("ready"):
            self.close()
            why = (ready or {}).get("why") or "it exited before it was ready"
            raise WarmUnavailableError(
                f"the warm sandbox did not start: {why}: {self.stderr_tail()}"
            )
        self.start_s = time.monotonic() - started
        log.info("warm %s sandbox ready in %.2f s (imports %.2f s, warm-up %.2f s)", key.kind,
                 self.start_s, float(ready.get("import_s", 0.0)),
                 float(ready.get("warm_up_s", 0.0)))  # fmt: skip

    def stderr_tail(self) -> str:
        """The server's own last words (the jobs' output goes to their own files)."""
        return b"".join(self._stderr).decode("utf-8", "replace").strip()[-4000:]

    def _reply(self, timeout: float) -> dict[str, Any] | None:
        """The server's next message, or None when it ended (``ended``) or ``timeout`` passed."""
        stdout = self.proc.stdout
        if stdout is None:
            return None
        fd = stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                self.ended = True
                return None
            self._buffer += chunk
            if len(self._buffer) > 1 << 20:
                raise SandboxError("the warm sandbox's server sent more than it ever should")
        line, _, self._buffer = self._buffer.partition(b"\n")
        message = json.loads(line)
        if not isinstance(message, dict):
            raise SandboxError(f"the warm sandbox's server sent {message!r}")
        return message

    def run(self, job: SandboxJob, wd: Path) -> SandboxResult:
        """Run ``job``, already written into ``wd`` (a new directory of the spool)."""
        limits = job.limits
        if wd.parent != self.key.spool:
            raise SandboxError(f"{wd} is not in this warm sandbox's spool {self.key.spool}")
        oom_before = self.cgroup.oom_events() if self.cgroup is not None else 0
        start = time.monotonic()
        stdin = self.proc.stdin
        if stdin is None:
            raise SandboxError("the warm sandbox has no stdin")
        try:
            request = {"run": wd.name, "max_output_bytes": limits.max_output_bytes}
            stdin.write((json.dumps(request) + "\n").encode())
            stdin.flush()
        except OSError as e:
            self.close()
            why = self.stderr_tail()
            raise SandboxError(f"the warm sandbox ended before the job: {why}") from e
        timed_out = False
        reply: dict[str, Any] | None = None
        with cancellable(self._stop_later(limits.grace_s)) as cancelled:
            reply = self._reply(limits.wall_time_s)
            if reply is None and not cancelled() and not self.ended:
                timed_out = True
                self._stop(limits.grace_s)
        # Read before anything ends the sandbox: its cgroup goes with it.
        memory = self.cgroup is not None and self.cgroup.oom_events() > oom_before
        if cancelled():
            self.close()
            raise JobInterruptedError(f"the {job.tool} job was stopped by the host")
        if reply is not None and "error" in reply:
            raise SandboxError(f"the warm sandbox refused the job: {reply['error']}")
        wall = time.monotonic() - start
        exit_code = None
        if reply is not None:
            exit_code = int(reply["exit_code"])
            if exit_code == SETUP_FAILED:
                self.close()
                raise WarmUnavailableError(
                    f"a warm sandbox job could not isolate itself: {reply.get('stderr')}"
                )
        else:
            # The server is gone (the job killed it, or the memory limit did): no result.
            self.close()
        if memory:
            self.close()  # the kernel may have chosen the server, not only the job
        return build_result(
            tool=job.tool,
            work_dir=wd,
            backend=self.backend,
            wall_time_s=wall,
            stdout=str((reply or {}).get("stdout", "")),
            stderr=str((reply or {}).get("stderr", "")) or self.stderr_tail(),
            exit_code=exit_code,
            timed_out=timed_out,
            limits=limits,
            memory_exceeded=memory,
        )

    def _stop_later(self, grace_s: float) -> Callable[[], None]:
        def cancel() -> None:
            signal_group(self.proc.pid, signal.SIGINT)
            killer = threading.Timer(grace_s, self.close)
            killer.daemon = True
            killer.start()

        return cancel

    def _stop(self, grace_s: float) -> None:
        """SIGINT to everything in the sandbox, SIGKILL after the grace; the sandbox is gone."""
        signal_group(self.proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace_s)
        self.close()

    def close(self) -> None:
        """End the sandbox and everything in it; idempotent."""
        self.dead = True
        self._finalizer()


def _pump(stream: IO[bytes] | None, chunks: list[bytes]) -> None:
    """Keep the last 16 kB a warm sandbox's server wrote to stderr."""
    if stream is None:
        return
    while chunk := stream.read(4096):
        chunks.append(chunk)
        while sum(len(c) for c in chunks) > 16_000 and len(chunks) > 1:
            chunks.pop(0)


def _end(proc: subprocess.Popen[bytes], cgroup: JobCgroup | None) -> None:
    """Kill a warm sandbox's process group, wait for it, remove its cgroup."""
    signal_group(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        log.warning("the warm sandbox (pid %d) did not end after SIGKILL", proc.pid)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None and not stream.closed:
            try:
                stream.close()
            except OSError as e:
                log.debug("closing the warm sandbox's pipe: %s", e)
    if cgroup is not None:
        cgroup.remove()
