"""The seccomp filter's one list (``archsmith.sandbox.seccomp``): built, complete, in force.

The jobs that run under it are tested in ``tests/integration/test_sandbox_escapes.py``; here a
plain subprocess installs it the way a warm job does, to show what it refuses and what it leaves.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pyseccomp
import pytest
from kernelprobe import CALLS, probe_code, reports

from archsmith.sandbox import seccomp
from archsmith.sandbox.base import SandboxUnavailableError


def test_the_filter_refuses_exactly_the_listed_calls() -> None:
    text = seccomp.describe()
    listed = set(re.findall(r'# filter for syscall "(\w+)"', text))
    unknown = [
        n for n in seccomp.DENIED if pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, n) == -1
    ]
    assert unknown == [], "not a system call libseccomp knows (a typo?)"
    here = {
        name
        for name in seccomp.DENIED
        if pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name) >= 0
    }
    assert listed == here | {"clone", *seccomp.ENOSYS}
    # clone is refused only with a namespace flag: one masked test per flag
    assert text.count("action ERRNO(1);") == len(here) + len(seccomp.CLONE_NAMESPACE_FLAGS)
    assert text.count("action ERRNO(38);") == len(seccomp.ENOSYS)
    assert "action ALLOW;" in text


def test_the_program_is_built_once_as_whole_instructions() -> None:
    bpf = seccomp.program()
    assert bpf is seccomp.program()
    assert bpf
    assert len(bpf) % 8 == 0


def test_a_missing_library_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyseccomp", None)
    with pytest.raises(SandboxUnavailableError, match="libseccomp"):
        seccomp._build()


def test_install_refuses_what_is_not_a_program() -> None:
    with pytest.raises(ValueError, match="not a seccomp program"):
        seccomp.install(b"\0" * 7)


def test_installed_it_refuses_the_calls_and_leaves_threads_forks_and_subprocesses() -> None:
    harmless = {k: CALLS[k] for k in ("ptrace", "process_vm_readv", "clone3", "setns")}
    code = (
        probe_code(harmless)
        + textwrap.dedent(
            """
            import ctypes, os, subprocess, threading
            from archsmith.sandbox import seccomp
            ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)  # no_new_privs
            seccomp.install(seccomp.program())
            """
        )
        + probe_code()
        + textwrap.dedent(
            """
            t = threading.Thread(target=lambda: None)
            t.start()
            t.join()
            pid = os.fork()
            if pid == 0:
                os._exit(7)
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7
            print(subprocess.run(['echo', 'ordinary'], capture_output=True, text=True).stdout)
            """
        )
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    before, after = reports(out.stdout)
    # unfiltered, these calls get the kernel's own answers: the refusals below are the filter's
    assert before == {
        "ptrace": "ESRCH", "process_vm_readv": "allowed", "clone3": "EINVAL", "setns": "EBADF"
    }  # fmt: skip
    assert after == {name: "ENOSYS" if name == "clone3" else "EPERM" for name in CALLS}
    assert "ordinary" in out.stdout
