"""The warm sandbox's server, run in bubblewrap: ``python -I -B -u -m archsmith.sandbox.zygote``.

Starting Python and importing torch costs seconds per job; on small datasets that is most of an
iteration. This server starts once per sandbox with torch and the job code imported (it never runs
torch itself, so no thread pool or device state exists to be copied badly by ``fork``), then takes
jobs one after another: the host writes a job into a new directory of the spool and sends its name
on stdin; the server forks a child for it and answers on stdout when the child and everything it
started are gone.

Each child isolates itself before any job code runs, so a job sees what a cold sandbox shows it and
nothing of the jobs before or after it:

- a new user namespace (same uid, nobody), and in it new mount, IPC, network and UTS namespaces:
  its own work directory at ``/sandbox/work`` (a tmpfs of the job's ``scratch_mb`` and
  ``scratch_files``, with the host's files of its spool directory bound in: outputs writable, inputs
  read-only), the spool covered by an empty read-only tmpfs, and a fresh /tmp and /dev/shm of the
  same bounds; System V and POSIX IPC objects, abstract sockets and the loopback die
  with the job;
- then it drops every capability, sets ``no_new_privs`` and installs the seccomp filter that
  bubblewrap gives a cold job (``archsmith.sandbox.seccomp``: no keyring, tracing, bpf, io_uring,
  new namespaces or mounts). The server itself runs without it: it needs ``unshare`` and
  ``mount`` for each job. The host hands it the program, read-only, at ``SECCOMP_PROGRAM``;
- its stdin is /dev/null and its stdout and stderr are pipes the server drains, keeping only their
  tails as a cold job's host does: it holds no descriptor of the server's;
- the server is not dumpable and the child has no capability in the server's user namespace, so
  the child cannot ptrace it or read or write its memory; killing it only ends this sandbox (the
  host starts a new one);
- when the child exits, the server SIGKILLs every process left in the sandbox's PID namespace (a
  daemon the job started) before it answers, so the host reads the job's files with nothing of the
  job still running, and the next job starts with nothing of it still running.

The kernel must allow a user namespace inside the sandbox and a seccomp filter; the server checks at
start and says ``ready: false`` with the reason when it does not (the host then runs cold jobs).
"""

from __future__ import annotations

import atexit
import ctypes
import json
import logging
import os
import re
import resource
import select
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import archsmith.sandbox.seccomp as seccomp

log = logging.getLogger("archsmith.sandbox.zygote")

SPOOL = "/sandbox/spool"
WORK = "/sandbox/work"
#: The seccomp program each job installs (``archsmith.sandbox.seccomp``), put there by the host.
SECCOMP_PROGRAM = "/sandbox/seccomp.bpf"
#: Exit status of a child that could not isolate itself: a failure of archsmith, not the job's.
SETUP_FAILED = 70

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None
           ) -> None:  # fmt: skip
    def b(s: str | None) -> bytes | None:
        return s.encode() if s is not None else None

    _check(_libc.mount(b(source), b(target), b(fstype), ctypes.c_ulong(flags), b(data)),
           f"mount {target}")  # fmt: skip


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _drop_capabilities() -> None:
    """No capability left (the new user namespace gave the child all of them) and none to gain."""
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), ctypes.byref(data)), "capset")


def _new_namespaces() -> None:
    """A user namespace of our own (same ids), then private mount, IPC, network, UTS ones."""
    uid, gid = os.getuid(), os.getgid()
    _check(_libc.unshare(_CLONE_NEWUSER), "unshare(user)")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    flags = _CLONE_NEWNS | _CLONE_NEWIPC | _CLONE_NEWNET | _CLONE_NEWUTS
    _check(_libc.unshare(flags), "unshare(mount, ipc, net, uts)")
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE, None)


def view_under_tmp(paths: list[str]) -> list[str]:
    """The outermost of ``paths`` (the Python view's directories) that lie under /tmp.

    A venv or a checkout under /tmp is bound into the sandbox's /tmp by bubblewrap; a job's fresh
    /tmp would hide it (and every module imported after the fork with it), so these are bound
    again into the job's /tmp, read-only as they were.
    """
    under = sorted(
        {
            os.path.realpath(p)
            for p in paths
            if p and os.path.realpath(p).startswith("/tmp/") and os.path.isdir(p)
        }
    )
    outermost: list[str] = []
    for p in under:
        if not any(p.startswith(q + "/") for q in outermost):
            outermost.append(p)
    return outermost


def _python_view() -> list[str]:
    import archsmith

    return [sys.prefix, os.path.dirname(os.path.dirname(archsmith.__file__)), *sys.path]


def isolate(name: str, bpf: bytes) -> None:
    """Make this process a job's sandbox: its directory only, fresh /tmp, no capabilities, the
    seccomp program ``bpf`` in force."""
    from archsmith.sandbox.base import JOB_FILE, work_files

    _new_namespaces()
    job_dir = f"{SPOOL}/{name}"
    # The host wrote job.json and every file of the directory; the job has not run yet.
    job = json.loads(Path(job_dir, JOB_FILE).read_bytes())
    scratch = f"size={int(job['scratch_bytes'])},nr_inodes={int(job['scratch_files'])}"
    _mount("tmpfs", WORK, "tmpfs", _MS_NOSUID | _MS_NODEV, f"{scratch},mode=755")
    for file, writable in work_files(Path(job_dir), str(job["tool"])):
        target = f"{WORK}/{file}"
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
        _mount(f"{job_dir}/{file}", target, None, _MS_BIND, None)
        if not writable:
            # A remount must keep the flags the outer sandbox locked on the spool's mount.
            kept = os.statvfs(target).f_flag & (_MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
            flags = _MS_BIND | _MS_REMOUNT | _MS_RDONLY | kept
            _mount(None, target, None, flags, None)
    _mount("tmpfs", SPOOL, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_RDONLY, "size=4k,mode=555")
    # Held open across the new /tmp, then bound back from the descriptor (a view under /tmp).
    keep = [
        (p, os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        for p in view_under_tmp(_python_view())
    ]
    _mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, f"{scratch},mode=1777")
    for path, fd in keep:
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC, None)
        os.close(fd)
    if os.path.isdir("/dev/shm"):
        _mount("tmpfs", "/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV, f"{scratch},mode=1777")
    os.chdir(WORK)
    _drop_capabilities()
    seccomp.install(bpf)


def _redirect_output(out: int, err: int) -> None:
    """stdin from /dev/null, stdout and stderr to the server's pipes; nothing else stays open."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _child(name: str, bpf: bytes, out: int, err: int) -> None:
    """The forked job: isolate, run it like the cold runner does, exit. Never returns."""
    code = 0
    try:
        try:
            _redirect_output(out, err)
            isolate(name, bpf)
        except (OSError, ValueError):
            traceback.print_exc()
            os._exit(SETUP_FAILED)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from archsmith.sandbox.runner import main as runner_main

        code = runner_main([WORK])
        # What a cold job's interpreter does at exit: handlers the job registered run (and can
        # do what they would do there, such as plant a link for the host), then it ends.
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 - whatever happens, this process must end here
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _processes() -> set[int]:
    """Live processes of this PID namespace other than its init (bwrap) and this server."""
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (1, me):
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            found.add(int(entry))
    return found


def kill_stragglers() -> int:
    """SIGKILL what a job left running, until nothing is left; how many processes that was."""
    killed: set[int] = set()
    for _ in range(200):
        left = _processes()
        if not left:
            return len(killed)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                continue
        time.sleep(0.005)
    raise RuntimeError(f"processes left by a job survive SIGKILL: {sorted(_processes())}")


def _probe(bpf: bytes) -> str | None:
    """Why a child cannot isolate itself here, or None when it can."""
    pid = os.fork()
    if pid == 0:
        try:
            _new_namespaces()
            _mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=1777")
            _drop_capabilities()
            seccomp.install(bpf)
        except (OSError, ValueError) as e:
            os.write(2, f"{e}\n".encode())
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        return None
    return "a job cannot get namespaces of its own inside the sandbox (see the stderr above)"


class OutputTail:
    """The last ``limit`` bytes of a job's output, and how many came in all (both backends)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.buf += chunk
        if len(self.buf) > 2 * self.limit:
            del self.buf[: len(self.buf) - self.limit]

    def text(self) -> str:
        data = bytes(self.buf[-self.limit :])
        cut = self.total - len(data)
        out = data.decode("utf-8", errors="replace")
        return f"[... {cut} bytes cut ...]\n{out}" if cut > 0 else out


def _drain(fd: int, tail: OutputTail) -> None:
    """Read what a non-blocking pipe holds now."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            return
        tail.add(chunk)


def _run_child(name: str, bpf: bytes, limit: int) -> dict[str, Any]:
    """Fork the job, drain its output until it has exited, then end whatever it left."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(name, bpf, out_w, err_w)
    os.close(out_w)
    os.close(err_w)
    pipes = {out_r: OutputTail(limit), err_r: OutputTail(limit)}
    for fd in pipes:
        os.set_blocking(fd, False)
    status = None
    while status is None:
        select.select(list(pipes), [], [], 0.05)
        for fd, tail in pipes.items():
            _drain(fd, tail)
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            status = raw
    stragglers = kill_stragglers()
    for fd, tail in pipes.items():
        _drain(fd, tail)
        os.close(fd)
    tails = list(pipes.values())
    return {
        "exit_code": os.waitstatus_to_exitcode(status),
        "stragglers": stragglers,
        "stdout": tails[0].text(),
        "stderr": tails[1].text(),
    }


def _warm_up() -> None:
    """A first export and inspection (``scoring.warmup``), so no job pays for torch's first.

    Torch runs here, once, on one thread: no OpenMP pool exists for a fork to copy half of (each
    job sets its own thread count), and tqdm, which the exporter uses, starts no monitor thread.
    """
    import shutil
    import tempfile

    import torch

    try:
        import tqdm  # type: ignore[import-untyped]

        tqdm.tqdm.monitor_interval = 0
    except ImportError:
        pass
    torch.set_num_threads(1)
    from archsmith.scoring.warmup import warm_up

    scratch = tempfile.mkdtemp(prefix="warm-up-")
    try:
        warm_up(Path(scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if threading.active_count() > 1:
        log.warning("threads left after the warm-up: %s", threading.enumerate())


def _send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def serve() -> int:
    """Import, probe, then serve jobs until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the host's Ctrl-C is for the job, not for us
    _check(_libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), "not dumpable")
    started = time.perf_counter()
    import numpy  # noqa: F401
    import torch
    import torch.export  # noqa: F401

    import archsmith.sandbox.runner  # noqa: F401
    from archsmith.scoring import candidate, export_ops, measure  # noqa: F401

    imported = time.perf_counter() - started
    _warm_up()
    warmed = time.perf_counter() - started - imported
    try:
        bpf = Path(SECCOMP_PROGRAM).read_bytes()
    except OSError as e:
        bpf = b""
        why: str | None = f"no seccomp program for the jobs: {e}"
    else:
        why = _probe(bpf)
    _send({
        "ready": why is None,
        "why": why,
        "import_s": imported,
        "warm_up_s": warmed,
        "threads": threading.active_count(),
        "pid": os.getpid(),
    })  # fmt: skip
    if why is not None:
        return 1
    for line in sys.stdin:
        request = json.loads(line)
        name = str(request.get("run", ""))
        if not _NAME.fullmatch(name) or not os.path.isdir(f"{SPOOL}/{name}"):
            _send({"error": f"no job directory {name!r} in the spool"})
            continue
        t = time.perf_counter()
        found = _run_child(name, bpf, int(request.get("max_output_bytes", 64_000)))
        _send({"done": name, **found, "seconds": time.perf_counter() - t})
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(serve())
