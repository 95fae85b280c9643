"""The local backend's own behaviour: environment, identity, work directories, fallbacks."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from archsmith.sandbox import cgroups
from archsmith.sandbox.base import SandboxError, SandboxJob, SandboxLimits
from archsmith.sandbox.local import ALLOWED_ENV, LocalSandbox
from archsmith.sandbox.runner import main as runner_main

SAFE_KEYS = set(ALLOWED_ENV) | {
    "PATH", "HOME", "TMPDIR", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONNOUSERSITE",
    "OMP_NUM_THREADS", "MPLBACKEND", "TORCHINDUCTOR_CACHE_DIR", "PWD", "PYTHONPATH",
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
    assert (tmp_path / "job" / "candidate.py").is_file()
    temp = local_sandbox.run(SandboxJob(tool="selftest"))
    assert temp.work_dir is None


def test_unisolated_fallback_warns_and_still_limits_time(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="archsmith.sandbox.local"):
        plain = LocalSandbox(use_bwrap=False)
    assert not plain.isolated
    assert "NO isolation" in caplog.text
    code = "import time\ntime.sleep(60)\n"
    job = SandboxJob(
        tool="check_shapes",
        args={"input_shape": [1, 8, 8], "num_classes": 10},
        code=code,
        limits=SandboxLimits(wall_time_s=3, grace_s=1),
    )
    result = plain.run(job)
    assert result.error is not None
    assert result.error.type == "Timeout"
    assert result.backend == "local-unisolated"
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
    argv = local_sandbox._bwrap_argv(local_sandbox.bwrap, SandboxJob(tool="selftest"), tmp_path, {})
    tmpfs = argv.index("--tmpfs")
    binds = [i for i, a in enumerate(argv) if a == "--ro-bind" and argv[i + 1] == sys.prefix]
    assert binds
    assert binds[0] > tmpfs
