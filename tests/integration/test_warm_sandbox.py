"""Warm sandboxes: jobs share a started interpreter, and still nothing of one job reaches the next.

Every hostile-candidate test of ``test_sandbox_escapes.py`` also runs against the warm backend (the
``sandbox`` fixture); these are the attacks only a sandbox that outlives its job invites: leaving
files, processes or IPC objects for the next job, and going after the server that forks the jobs.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from archsmith.sandbox.base import (
    JobInterruptedError,
    SandboxJob,
    SandboxLimits,
    SandboxResult,
    cancel_running_jobs,
)
from archsmith.sandbox.local import LocalSandbox

BUILD = """
import torch.nn as nn

def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))
"""
ARGS = {"input_shape": [1, 8, 8], "num_classes": 10}
MARK = "1000.4711"  # a sleep's argument no other process on this machine has


@pytest.fixture
def warm(local_sandbox: LocalSandbox) -> Iterator[LocalSandbox]:
    """A warm backend of its own, so each test sees only its own warm sandboxes."""
    box = LocalSandbox(bwrap=local_sandbox.bwrap, warm=True)
    yield box
    box.close()


def build(sandbox: LocalSandbox, code: str, wall: float = 120.0) -> SandboxResult:
    limits = SandboxLimits(wall_time_s=wall, grace_s=1.0)
    return sandbox.run(SandboxJob(tool="build", args=ARGS, code=code + BUILD, limits=limits))


def reported(result: SandboxResult) -> dict[str, object]:
    """What a probing candidate found (it raises it as JSON so the error carries it back)."""
    assert result.error is not None, result
    assert result.error.type == "RuntimeError", result.error
    found: dict[str, object] = json.loads(result.error.message)
    return found


def server_pids(sandbox: LocalSandbox) -> list[int]:
    return [b.proc.pid for b in sandbox._boxes if not b.dead]


def host_processes_with(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                found.append(int(entry))
    return found


def test_jobs_share_one_started_sandbox_and_see_what_a_cold_job_sees(
    warm: LocalSandbox, local_sandbox: LocalSandbox
) -> None:
    cold = local_sandbox.run(SandboxJob(tool="selftest"))
    first = warm.run(SandboxJob(tool="selftest"))
    pids = server_pids(warm)
    second = warm.run(SandboxJob(tool="selftest"))
    assert first.ok
    assert second.ok
    assert cold.ok
    assert len(pids) == 1
    assert server_pids(warm) == pids, "the second job started a new sandbox"
    assert first.result is not None
    assert cold.result is not None
    for key in ("uid", "cwd", "work_dir_writable", "env_keys", "python"):
        assert first.result[key] == cold.result[key], key
    assert first.backend == "local"


def test_nothing_of_one_job_reaches_the_next(warm: LocalSandbox) -> None:
    plant = f"""
import ctypes, os, pathlib, subprocess
errors = []
pathlib.Path('/tmp/planted').write_text('x')
pathlib.Path('/dev/shm/planted').write_text('x')
pathlib.Path('/sandbox/work/mine.txt').write_text('x')
for target in ['/sandbox/spool/planted', '/sandbox/planted']:
    try:
        pathlib.Path(target).write_text('x')
    except OSError as e:
        errors.append(type(e).__name__)
libc = ctypes.CDLL(None, use_errno=True)
shm = libc.shmget(0x4711, 4096, 0o1666)
subprocess.Popen(['sleep', '{MARK}'], start_new_session=True)
raise RuntimeError(__import__('json').dumps({{'errors': errors, 'shm': shm}}))
"""
    planted = reported(build(warm, plant))
    assert planted["errors"] == ["OSError", "OSError"], "the spool or the root was writable"
    assert isinstance(planted["shm"], int)
    assert planted["shm"] >= 0, "the job could not plant a System V segment"
    assert host_processes_with(MARK) == [], "the job's daemon outlived it"
    look = """
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
procs = []
for pid in os.listdir('/proc'):
    if pid.isdigit():
        try:
            procs.append(open(f'/proc/{pid}/cmdline', 'rb').read().decode(errors='replace'))
        except OSError:
            pass
raise RuntimeError(json.dumps({
    'tmp': os.path.exists('/tmp/planted'),
    'shm_file': os.path.exists('/dev/shm/planted'),
    'shm': libc.shmget(0x4711, 0, 0),
    'spool': os.listdir('/sandbox/spool'),
    'work': sorted(os.listdir('/sandbox/work')),
    'procs': [p for p in procs if 'sleep' in p],
}))
"""
    seen = reported(build(warm, look))
    assert seen["tmp"] is False
    assert seen["shm_file"] is False
    assert seen["shm"] == -1, "a System V segment of the previous job is still there"
    assert seen["spool"] == []
    assert "mine.txt" not in seen["work"]  # type: ignore[operator]
    assert not any(MARK in p for p in seen["procs"])  # type: ignore[attr-defined]


def test_a_job_cannot_read_the_server_or_its_pipes(warm: LocalSandbox) -> None:
    probe = """
import json, os
ppid = os.getppid()
found = {}
for what in ('mem', 'environ', 'maps'):
    try:
        with open(f'/proc/{ppid}/{what}', 'rb') as f:
            f.read(64)
        found[what] = 'read'
    except OSError as e:
        found[what] = type(e).__name__
found['fds'] = sorted(int(fd) for fd in os.listdir('/proc/self/fd'))
found['caps'] = [line for line in open('/proc/self/status') if line.startswith('CapEff')]
raise RuntimeError(json.dumps(found))
"""
    found = reported(build(warm, probe))
    assert found["mem"] != "read"
    assert found["environ"] != "read"
    assert found["maps"] != "read"
    assert found["fds"] in ([0, 1, 2], [0, 1, 2, 3]), found["fds"]  # 3: the listing itself
    assert found["caps"] == ["CapEff:\t0000000000000000\n"]


def test_a_job_that_kills_the_server_only_ends_its_sandbox(warm: LocalSandbox) -> None:
    assert build(warm, "").ok
    before = server_pids(warm)
    build(warm, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\n"
          "time.sleep(30)\n")  # fmt: skip
    after = build(warm, "")
    assert after.ok, after.error
    assert server_pids(warm)
    assert server_pids(warm) != before


def test_the_time_limit_ends_the_sandbox_and_the_next_job_gets_a_new_one(
    warm: LocalSandbox,
) -> None:
    assert build(warm, "").ok
    before = server_pids(warm)
    started = time.monotonic()
    stuck = build(warm, "while True:\n    pass\n", wall=3.0)
    took = time.monotonic() - started
    assert stuck.error is not None
    assert stuck.error.type == "Timeout"
    assert took < 3.0 + 12.0
    assert build(warm, "").ok
    assert server_pids(warm) != before


def test_stop_interrupts_the_job_in_flight(warm: LocalSandbox) -> None:
    assert build(warm, "").ok  # started and warm
    raised: list[BaseException] = []

    def job() -> None:
        try:
            build(warm, "import time\ntime.sleep(600)\n")
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            raised.append(e)

    t = threading.Thread(target=job)
    t.start()
    deadline = time.monotonic() + 30
    while cancel_running_jobs() == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    t.join(30)
    assert not t.is_alive(), "the job did not stop"
    assert len(raised) == 1
    assert isinstance(raised[0], JobInterruptedError)
    assert build(warm, "").ok


class _NoNestedNamespaces(LocalSandbox):
    """bubblewrap told to forbid user namespaces inside: the warm server cannot isolate jobs."""

    def _bwrap_argv(self, bwrap: str, *args: object, **kwargs: object) -> list[str]:
        argv = super()._bwrap_argv(bwrap, *args, **kwargs)  # type: ignore[arg-type]
        return [argv[0], "--disable-userns", *argv[1:]]


def test_without_nested_namespaces_jobs_run_cold_and_say_why(
    local_sandbox: LocalSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    if not local_sandbox.userns:
        pytest.skip("bubblewrap cannot create a user namespace here")
    box = _NoNestedNamespaces(bwrap=local_sandbox.bwrap, warm=True)
    try:
        with caplog.at_level("WARNING"):
            result = build(box, "")
        assert result.ok, result.error
        assert box.warm is False
        assert "running every job cold" in caplog.text
    finally:
        box.close()
