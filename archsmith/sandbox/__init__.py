"""Isolation for untrusted candidate code: the job/result contract and its backends."""

from __future__ import annotations

import logging
from typing import Literal

from archsmith.sandbox.base import (
    CandidateError,
    Sandbox,
    SandboxError,
    SandboxJob,
    SandboxLimits,
    SandboxResult,
    SandboxUnavailableError,
)

__all__ = [
    "CandidateError",
    "Sandbox",
    "SandboxError",
    "SandboxJob",
    "SandboxLimits",
    "SandboxResult",
    "SandboxUnavailableError",
    "get_sandbox",
    "release",
]

log = logging.getLogger(__name__)
BackendName = Literal["local", "docker", "none"]


def get_sandbox(
    name: BackendName = "local",
    *,
    image: str | None = None,
    trusted_code: bool = False,
    bwrap: str | None = None,
    warm: bool = False,
) -> Sandbox:
    """The sandbox backend a user asked for by name (``--sandbox local|docker|none``).

    When ``local`` cannot start a sandbox here, code written by an LLM (or given by a user) is
    refused with the reason and what to do (``SandboxUnavailableError``, an InputError);
    ``trusted_code`` (the offline architect's own templates) runs without isolation instead, with
    a warning. ``none`` runs everything without isolation because the user said so. ``bwrap``
    names the bubblewrap binary to use instead of the system's or the bundled one. ``warm``
    keeps warm sandboxes for the local backend's jobs (``archsmith.sandbox.warm``).
    """
    if name in ("local", "none"):
        from archsmith.sandbox.local import LocalSandbox

        if name == "none":
            return LocalSandbox(isolated=False)
        try:
            return LocalSandbox(bwrap=bwrap, warm=warm)
        except SandboxUnavailableError as e:
            if not trusted_code:
                raise
            log.warning(
                "%s. The offline architect's own code runs WITHOUT isolation; code written by an"
                " LLM would be refused.",
                e,
            )
            return LocalSandbox(isolated=False)
    if name == "docker":
        from archsmith.sandbox.docker import DockerSandbox

        return DockerSandbox(image) if image else DockerSandbox()
    raise SandboxError(f"unknown sandbox backend {name!r}; choose local, docker or none")


def release(sandbox: Sandbox) -> None:
    """End what a backend keeps between jobs (the local backend's warm sandboxes); a backend
    that keeps nothing has nothing to end."""
    close = getattr(sandbox, "close", None)
    if callable(close):
        close()
