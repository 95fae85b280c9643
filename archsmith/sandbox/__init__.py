"""Isolation for untrusted candidate code: the job/result contract and its backends."""

from __future__ import annotations

from typing import Literal

from archsmith.sandbox.base import (
    CandidateError,
    Sandbox,
    SandboxError,
    SandboxJob,
    SandboxLimits,
    SandboxResult,
)

__all__ = [
    "CandidateError",
    "Sandbox",
    "SandboxError",
    "SandboxJob",
    "SandboxLimits",
    "SandboxResult",
    "get_sandbox",
]

BackendName = Literal["local", "docker"]


def get_sandbox(name: BackendName = "local", *, image: str | None = None) -> Sandbox:
    """The sandbox backend a user asked for by name (``--sandbox local|docker``)."""
    if name == "local":
        from archsmith.sandbox.local import LocalSandbox

        return LocalSandbox()
    if name == "docker":
        from archsmith.sandbox.docker import DockerSandbox

        return DockerSandbox(image) if image else DockerSandbox()
    raise SandboxError(f"unknown sandbox backend {name!r}; choose local or docker")
