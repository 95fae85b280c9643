"""Kernel calls a sandboxed job must be refused, tried from inside a job (or a test's subprocess).

``code(body)`` is Python source that defines ``call(name, *args)`` (the system call through ctypes:
its errno's name, or ``"returned N"``), ``read(path)`` and ``report(obj)`` (one line, ``MARK`` and
JSON, on stdout), then runs ``body``; ``reports(stdout)`` reads the lines back. ``probe_code()``
tries every call of ``CALLS`` with harmless arguments, chosen so that an unfiltered kernel answers
something other than the filter's EPERM where it can (ESRCH for ptrace of a process not traced,
EINVAL for clone3 with no arguments, success for an empty process_vm_readv): a refusal then is
the filter's, not the kernel's.
"""

from __future__ import annotations

import ctypes
import json
import os

import pyseccomp

MARK = "KERNEL-PROBE:"
CLONE_NEWUSER = 0x10000000
_SIGCHLD = 17
KEY_SPEC_SESSION_KEYRING = -3
KEY_SPEC_USER_KEYRING = -4
KEYCTL_GET_KEYRING_ID = 0
KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_UPDATE = 2
KEYCTL_DESCRIBE = 6
KEYCTL_UNLINK = 9
KEYCTL_SEARCH = 10
KEYCTL_READ = 11
KEYCTL_INVALIDATE = 21

#: Each call and its arguments (ints, bytes or None for NULL); ``-1`` as ptrace's and
#: process_vm_readv's pid stands for the probing process itself.
CALLS: dict[str, tuple[str, tuple[int | bytes | None, ...]]] = {
    "add_key": ("add_key", (b"user", b"archsmith-probe", b"x", 1, KEY_SPEC_SESSION_KEYRING)),
    "keyctl": ("keyctl", (KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0)),
    "request_key": ("request_key", (b"user", b"archsmith-probe", None, 0)),
    "ptrace": ("ptrace", (3, -1, 0, 0)),  # PTRACE_PEEKUSER
    "process_vm_readv": ("process_vm_readv", (-1, 0, 0, 0, 0, 0)),
    "bpf": ("bpf", (0, 0, 0)),
    "perf_event_open": ("perf_event_open", (0, 0, -1, -1, 0)),
    "userfaultfd": ("userfaultfd", (0,)),
    "io_uring_setup": ("io_uring_setup", (1, 0)),
    "unshare(CLONE_NEWUSER)": ("unshare", (CLONE_NEWUSER,)),
    "setns": ("setns", (-1, 0)),
    "clone(CLONE_NEWUSER)": ("clone", (CLONE_NEWUSER | _SIGCHLD, 0, 0, 0, 0)),
    "clone3": ("clone3", (0, 0)),
    "mount": ("mount", (b"none", b"/tmp", b"tmpfs", 0, None)),
    "umount2": ("umount2", (b"/tmp", 0)),
    "fsopen": ("fsopen", (b"tmpfs", 0)),
    "init_module": ("init_module", (None, 0, b"")),
    "kexec_load": ("kexec_load", (0, 0, 0, 0)),
}

_HELPERS = """
import ctypes as _ct, errno as _errno, json as _json, os as _os

_libc = _ct.CDLL(None, use_errno=True)

def call(name, *args):
    args = [_os.getpid() if (name in ('ptrace', 'process_vm_readv') and a == -1) else a
            for a in args]
    cargs = [_ct.c_char_p(a) if isinstance(a, bytes) else _ct.c_long(a or 0) for a in args]
    _ct.set_errno(0)
    ret = _libc.syscall(_ct.c_long(NR[name]), *cargs)
    if ret == 0 and name == 'clone':
        _os._exit(0)  # the new process, had the call been allowed
    if ret > 0 and name == 'clone':
        _os.waitpid(ret, 0)
    err = _ct.get_errno()
    return _errno.errorcode.get(err, str(err)) if ret == -1 else f'returned {ret}'

def read(path):
    try:
        with open(path, errors='replace') as f:
            return f.read()
    except OSError as e:
        return type(e).__name__

def report(obj):
    print(MARK + _json.dumps(obj), flush=True)
"""


def numbers() -> dict[str, int]:
    """This machine's number of each call a probe may make (libseccomp's table)."""
    names = {name for name, _ in CALLS.values()}
    return {name: pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name) for name in names}


def code(body: str) -> str:
    """Source that defines the helpers, then runs ``body``."""
    return f"MARK = {MARK!r}\nNR = {numbers()!r}\n{_HELPERS}\n{body}\n"


def probe_code(calls: dict[str, tuple[str, tuple[int | bytes | None, ...]]] = CALLS) -> str:
    """Source that tries ``calls`` and reports what each got ("allowed" for a success)."""
    return code(
        f"report({{label: ('allowed' if got.startswith('returned') else got)"
        f" for label, got in ((label, call(name, *args))"
        f" for label, (name, args) in {calls!r}.items())}})"
    )


def reports(stdout: str) -> list[dict[str, str]]:
    """What each ``report`` in ``stdout`` said, in order."""
    return [json.loads(line[len(MARK) :]) for line in stdout.splitlines() if line.startswith(MARK)]


def found(stdout: str) -> dict[str, str]:
    """What the one ``report`` in ``stdout`` said."""
    got = reports(stdout)
    assert len(got) == 1, f"expected one report in {stdout[-2000:]!r}"
    return got[0]


def host_call(name: str, *args: int | bytes | None) -> int:
    """The system call ``name`` made here, on the host: its return value; OSError on failure."""
    libc = ctypes.CDLL(None, use_errno=True)
    cargs = [ctypes.c_char_p(a) if isinstance(a, bytes) else ctypes.c_long(a or 0) for a in args]
    nr = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
    libc.syscall.restype = ctypes.c_long
    ret = int(libc.syscall(ctypes.c_long(nr), *cargs))
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return ret
