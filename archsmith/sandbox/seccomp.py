"""The seccomp filter of every local job: the kernel calls a training job never needs, refused.

Namespaces, a read-only view and limits leave the kernel's own interface whole, and part of it is
not namespaced at all: the keyring is the host user's in every sandbox. A job once listed the
host's keys, unlinked one and planted its own; a build job left a message in a key's name that the
next training job read. Other calls (bpf, io_uring, perf events, userfaultfd, new user namespaces)
are where kernel exploits are found. A training job needs none of them, so each job runs under a
filter that answers them with EPERM. ``clone3`` gets ENOSYS instead: its flags lie in memory, which
a filter cannot read, and glibc falls back to ``clone``, whose namespace flags it can.

``DENIED`` and ``CLONE_NAMESPACE_FLAGS`` are the one list. ``program()`` builds the filter on the
host with libseccomp (through pyseccomp) and exports the BPF program the kernel runs; it is put in
force once a job's sandbox is set up and before any job code runs: by bubblewrap for a cold job
(``--seccomp FD``), and by each forked job of a warm sandbox after it made its namespaces (the
zygote needs ``unshare`` and ``mount`` for that; ``install``). This module imports pyseccomp only
to build, so the zygote can ``install`` without it. Docker keeps its own default profile.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import tempfile
from typing import Any

from archsmith.sandbox.base import SandboxUnavailableError

__all__ = [
    "CLONE_NAMESPACE_FLAGS",
    "DENIED",
    "ENOSYS",
    "describe",
    "install",
    "program",
    "program_fd",
]

log = logging.getLogger(__name__)

#: Refused with EPERM, whatever their arguments.
DENIED: tuple[str, ...] = (
    # The keyring: not namespaced, so the host user's keys and a channel between jobs.
    "add_key",
    "keyctl",
    "request_key",
    # Reading or steering another process.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    # Kernel subsystems with a long record of exploits and no use in training.
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    # New namespaces: the sandbox made the job's; a new user namespace hands back capabilities.
    "unshare",
    "setns",
    # Mounts: the job's view is fixed.
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    # The machine's own state: modules, kernels, reboots, swap, accounting, quotas, its log.
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "syslog",
    "open_by_handle_at",
    "iopl",
    "ioperm",
)
#: ``clone`` with any of these (a new mount, UTS, IPC, user, PID, network or cgroup namespace) is
#: refused with EPERM; a plain fork or thread passes.
CLONE_NAMESPACE_FLAGS: dict[str, int] = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
#: Answered with ENOSYS, so that the C library falls back to a call the filter can check.
ENOSYS: tuple[str, ...] = ("clone3",)

_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_NR_SCMP_ERROR = -1
#: One BPF instruction (struct sock_filter: u16 code, u8 jt, u8 jf, u32 k).
_INSTRUCTION = 8


def _library() -> Any:
    """pyseccomp, loaded with libseccomp; a clear error when either is missing."""
    try:
        import pyseccomp
    except (ImportError, RuntimeError, OSError) as e:  # RuntimeError: no libseccomp.so found
        raise SandboxUnavailableError(
            f"the local sandbox's seccomp filter cannot be built ({e}): it needs libseccomp"
            " (apt-get install libseccomp2) and pyseccomp (pip install pyseccomp, a dependency"
            " of archsmith); or use --sandbox docker"
        ) from e
    return pyseccomp


def _build() -> Any:
    """The filter as libseccomp holds it: allow by default, refuse the calls listed above."""
    sc = _library()
    f = sc.SyscallFilter(sc.ALLOW)
    # A call of another ABI (32-bit x86 on x86_64) would bypass the rules: it ends the process.
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    for name in DENIED:
        if sc.resolve_syscall(sc.Arch.NATIVE, name) == _NR_SCMP_ERROR:
            # An older libseccomp than the call: the rest of the filter still stands.
            log.warning("libseccomp does not know the system call %s: it is not filtered", name)
            continue
        f.add_rule(sc.ERRNO(errno.EPERM), name)
    for flag in CLONE_NAMESPACE_FLAGS.values():
        f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    for name in ENOSYS:
        f.add_rule(sc.ERRNO(errno.ENOSYS), name)
    return f


def _export(method: str) -> bytes:
    with tempfile.TemporaryFile() as out:
        getattr(_build(), method)(out)
        out.seek(0)
        return out.read()


@functools.cache
def program() -> bytes:
    """The filter as the BPF program the kernel runs (what ``--seccomp`` and ``install`` take);
    built once per process. Raises ``SandboxUnavailableError`` when libseccomp is missing."""
    built = _export("export_bpf")
    if not built or len(built) % _INSTRUCTION:
        raise SandboxUnavailableError(f"libseccomp exported a malformed program ({len(built)} B)")
    log.debug("seccomp program: %d instructions", len(built) // _INSTRUCTION)
    return built


def describe() -> str:
    """The filter in libseccomp's readable form (PFC): what it refuses, for people and tests."""
    return _export("export_pfc").decode()


def program_fd() -> int:
    """A new descriptor holding ``program()`` from its start, for one bubblewrap to read (it
    reads it to the end). Close-on-exec: pass it with ``pass_fds`` and close it after."""
    fd = os.memfd_create("archsmith-seccomp", os.MFD_CLOEXEC)
    try:
        os.write(fd, program())
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(bpf: bytes) -> None:
    """Put this process under ``bpf`` (from ``program()``) for good, as bubblewrap does for a cold
    job; a warm job's child calls it after its namespaces are made. Needs ``no_new_privs`` (or
    CAP_SYS_ADMIN) and one thread: a forked child has one."""
    if not bpf or len(bpf) % _INSTRUCTION or len(bpf) // _INSTRUCTION > 0xFFFF:
        raise ValueError(f"not a seccomp program ({len(bpf)} bytes)")
    code = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // _INSTRUCTION, ctypes.cast(code, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    ret = libc.prctl(
        _PR_SET_SECCOMP, ctypes.c_ulong(_SECCOMP_MODE_FILTER), ctypes.byref(prog),
        ctypes.c_ulong(0), ctypes.c_ulong(0),
    )  # fmt: skip
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp filter: {os.strerror(err)}")
