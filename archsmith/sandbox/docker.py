"""The Docker backend: each job runs in a fresh, locked-down container that is always removed.

The container's work directory at ``SANDBOX_WORK`` is a size-limited tmpfs with the host's files of
the job bound in (its declared outputs writable, its inputs read-only); it sees the dataset
read-only under ``SANDBOX_DATA``, a private tmpfs ``/tmp`` and nothing else writable (read-only
root). It has no
network, no capabilities, ``no-new-privileges``, a non-root user, hard memory (swap included),
process, CPU and file-size limits, an init process that forwards signals and reaps children, and an
environment built from an allow-list: nothing of the host's environment (API keys, tokens) enters.

The image comes from ``Dockerfile.sandbox``. With ``mount_host_python=True`` the image needs no
Python at all: the host's interpreter, the runner's packages from its virtual environment and the
archsmith package are mounted read-only at their own paths (the same view the local backend gives,
``archsmith.sandbox.pyview``: the rest of site-packages is covered by an empty tmpfs), which is how
CI runs (no registry to pull a PyTorch image from) and how a developer tests local changes without
rebuilding the image.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
from docker.models.containers import Container
from docker.types import DeviceRequest, LogConfig, Mount, Ulimit

import archsmith
from archsmith.files import remove_untrusted_tree
from archsmith.sandbox.base import (
    RUNNER_FLAGS,
    SANDBOX_DATA,
    SANDBOX_WORK,
    JobInterruptedError,
    SandboxError,
    SandboxJob,
    SandboxLimits,
    SandboxResult,
    build_result,
    cancellable,
    prepare_work_dir,
    work_files,
)
from archsmith.sandbox.pyview import python_view
from archsmith.scoring.timing import SPIN_ENV

__all__ = [
    "DEFAULT_IMAGE",
    "LABEL",
    "OWNER_LABEL",
    "SANDBOX_ENV",
    "SANDBOX_UID",
    "DockerSandbox",
    "build_command",
    "docker_available",
    "ensure_image",
    "owner_id",
    "remove_orphans",
]

log = logging.getLogger(__name__)

DEFAULT_IMAGE = "archsmith-sandbox:latest"
#: Every container archsmith starts carries this label (value: the job's id), so leftovers are
#: easy to find: ``docker ps -a --filter label=archsmith.sandbox``.
LABEL = "archsmith.sandbox"
#: Which process started the container (``host:pid``), so that a container left by a process that
#: died (``kill -9``, a power cut) is removed by the next archsmith on that host.
OWNER_LABEL = "archsmith.owner"
#: The image's non-root user (Dockerfile.sandbox); used when the host runs as root.
SANDBOX_UID = 10001

#: The whole environment given to the job, on top of the image's own (PATH and the CUDA variables
#: of the base image). Nothing is copied from the host.
SANDBOX_ENV: dict[str, str] = {
    "LANG": "C.UTF-8",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "USER": "sandbox",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONNOUSERSITE": "1",
    "MPLBACKEND": "Agg",
    "TORCHINDUCTOR_CACHE_DIR": "/tmp/inductor",
    **SPIN_ENV,
}

_MIB = 1 << 20
_API_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)
# Seconds to wait for the engine to report an exit after SIGKILL, and for create/remove calls.
_KILL_WAIT_S = 30.0
# Exit codes above this are ``128 + signal`` (what the init process reports for a killed child).
_SIGNAL_EXIT_BASE = 128
# Mounting the host's copy over one of these breaks the container (the engine's init lives in
# /sbin, the job's files in /sandbox): a Python whose prefix is one of them cannot be mounted.
_SYSTEM_DIRS = frozenset(
    {"/", "/bin", "/sbin", "/lib", "/lib64", "/usr", "/etc", "/dev", "/proc", "/sys", "/tmp"}
    | {"/sandbox", SANDBOX_WORK, SANDBOX_DATA}
)


def build_command(image: str) -> str:
    """The command that builds ``image`` from this repository, for error messages and docs."""
    return f"docker build -f Dockerfile.sandbox -t {image} ."


def _client(client: docker.DockerClient | None) -> docker.DockerClient:
    if client is not None:
        return client
    try:
        return docker.from_env()
    except docker.errors.DockerException as e:
        raise SandboxError(
            f"no Docker engine reachable ({e}); start one (dockerd, Docker Desktop) or set "
            "DOCKER_HOST, or use the local sandbox backend"
        ) from e


def docker_available(
    client: docker.DockerClient | None = None, image: str | None = None
) -> tuple[bool, str]:
    """Whether a Docker engine answers (and holds ``image`` when given), with the reason if not.

    Meant for skipping tests and for ``--sandbox docker`` preflight checks, so it never raises.
    """
    try:
        engine = _client(client)
        engine.ping()
    except SandboxError as e:
        return False, str(e)
    except _API_ERRORS as e:
        return False, f"the Docker engine does not answer: {e}"
    if image is None:
        return True, ""
    try:
        ensure_image(image, engine)
    except SandboxError as e:
        return False, str(e)
    return True, ""


def ensure_image(image: str, client: docker.DockerClient | None = None) -> None:
    """Raise a SandboxError that says how to build ``image`` when the engine does not have it."""
    engine = _client(client)
    try:
        engine.images.get(image)
    except docker.errors.ImageNotFound as e:
        raise SandboxError(
            f"the sandbox image {image!r} is not built; build it from the repository root with: "
            f"{build_command(image)} (where no registry is reachable, bash .ci/docker-setup.sh "
            "builds archsmith-sandbox:ci from a local Debian base instead)"
        ) from e
    except _API_ERRORS as e:
        raise SandboxError(f"cannot inspect the sandbox image {image!r}: {e}") from e


@dataclass(frozen=True)
class _Observed:
    """What the backend saw of one container run, from outside."""

    exit_code: int | None
    timed_out: bool
    oom_killed: bool
    stdout: str
    stderr: str
    wall_time_s: float


def _engine_time(value: object) -> float | None:
    """Seconds since the epoch from the engine's RFC 3339 timestamps (nanoseconds, ``Z``)."""
    if not isinstance(value, str) or value.startswith("0001-"):
        return None
    text = value.rstrip("Z")
    whole, _, frac = text.partition(".")
    try:
        stamp = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    digits = "".join(ch for ch in frac if ch.isdigit())
    return stamp.timestamp() + (int(digits[:9].ljust(9, "0")) / 1e9 if digits else 0.0)


def _signal_exit_code(code: int | None) -> int | None:
    """``128 + N`` (a child killed by signal N, as the init reports it) as ``-N``, like Popen."""
    if code is not None and _SIGNAL_EXIT_BASE < code <= _SIGNAL_EXIT_BASE + 64:
        return -(code - _SIGNAL_EXIT_BASE)
    return code


def _outermost(paths: list[Path]) -> list[Path]:
    """Drop paths inside another one of the list: mounting the outer one covers them."""
    unique = sorted(set(paths), key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in unique:
        if not any(path == k or k in path.parents for k in kept):
            kept.append(path)
    return kept


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give ``root`` and everything in it to ``uid``; never follows a link the job planted."""
    try:
        os.lchown(root, uid, gid)
        for dirpath, dirnames, filenames in os.walk(root, onerror=_raise):
            for name in (*dirnames, *filenames):
                os.lchown(os.path.join(dirpath, name), uid, gid)
    except OSError as e:
        raise SandboxError(f"cannot hand the work directory {root} to uid {uid}: {e}") from e


def _raise(error: OSError) -> None:
    """os.walk's error hook: an unreadable directory must not be skipped silently."""
    raise error


class DockerSandbox:
    """Runs sandbox jobs in Docker containers (the ``docker`` backend of ``Sandbox``)."""

    name = "docker"

    def __init__(
        self,
        image: str = DEFAULT_IMAGE,
        *,
        mount_host_python: bool = False,
        gpus: bool | None = None,
        client: docker.DockerClient | None = None,
        cpus: float | None = None,
    ) -> None:
        """``gpus=None`` gives GPUs to jobs whose device is ``cuda``; ``cpus=None``: all cores."""
        if cpus is not None and cpus <= 0:
            raise SandboxError(f"cpus must be positive, not {cpus}")
        self.image = image
        self.mount_host_python = mount_host_python
        self.gpus = gpus
        self.cpus = cpus
        self._docker = client
        self._image_checked = False

    @property
    def client(self) -> docker.DockerClient:
        """The engine's client, connected on first use so that constructing never fails."""
        if self._docker is None:
            self._docker = _client(None)
        return self._docker

    def run(self, job: SandboxJob, work_dir: Path | None = None) -> SandboxResult:
        """Run ``job`` in a fresh container; ``work_dir`` keeps its files, else a temporary one."""
        if not self._image_checked:
            ensure_image(self.image, self.client)
            remove_orphans(self.client)
            self._image_checked = True
        keep = work_dir is not None
        wd = work_dir if work_dir is not None else Path(tempfile.mkdtemp(prefix="archsmith-dk-"))
        wd = wd.resolve()
        try:
            prepare_work_dir(job, wd)
            return self._run_prepared(job, wd, keep)
        finally:
            if not keep:
                _remove_tree(wd)

    def _run_prepared(self, job: SandboxJob, work_dir: Path, keep: bool) -> SandboxResult:
        host_uid, host_gid = os.getuid(), os.getgid()
        # As root on the host, the job runs as the image's sandbox user and the work directory is
        # lent to it; any other host user runs the job as itself, so its files need no chown.
        if host_uid == 0:
            user = f"{SANDBOX_UID}:{SANDBOX_UID}"
            _chown_tree(work_dir, SANDBOX_UID, SANDBOX_UID)
        else:
            user = f"{host_uid}:{host_gid}"
        try:
            observed = self._run_container(job, work_dir, user)
        finally:
            if host_uid == 0:
                _chown_tree(work_dir, host_uid, host_gid)
        labels = {str(work_dir): SANDBOX_WORK}
        if self.mount_host_python:
            labels.update({p: "<python>" for p in (sys.prefix, sys.base_prefix)})
            labels[str(_package_dir())] = "<archsmith>"
        return build_result(
            tool=job.tool,
            work_dir=work_dir,
            backend=self.name,
            wall_time_s=observed.wall_time_s,
            stdout=observed.stdout,
            stderr=observed.stderr,
            exit_code=_signal_exit_code(observed.exit_code),
            timed_out=observed.timed_out,
            limits=job.limits,
            memory_exceeded=observed.oom_killed,
            keep_work_dir=keep,
            path_labels=labels,
        )

    def _command(self, job: SandboxJob) -> list[str]:
        """The process the container runs; tests replace it to probe the isolation directly."""
        python = f"{sys.prefix}/bin/python" if self.mount_host_python else "python"
        return [python, *RUNNER_FLAGS, "-m", "archsmith.sandbox.runner", SANDBOX_WORK]

    def _wants_gpus(self, job: SandboxJob) -> bool:
        return self.gpus if self.gpus is not None else job.device.startswith("cuda")

    def _cpus(self) -> float:
        if self.cpus is not None:
            return self.cpus
        try:
            return float(self.client.info()["NCPU"])
        except (*_API_ERRORS, KeyError, TypeError, ValueError) as e:
            raise SandboxError(f"cannot read the Docker engine's CPU count: {e}") from e

    def _mounts(self, job: SandboxJob, work_dir: Path) -> list[Mount]:
        # The work directory is a tmpfs (``_tmpfs``); the host's files are bound into it, so only
        # the declared outputs reach the disk (``base.work_files``).
        mounts = [
            Mount(f"{SANDBOX_WORK}/{name}", str(work_dir / name), type="bind",
                  read_only=not writable)
            for name, writable in work_files(work_dir, job.tool)
        ]  # fmt: skip
        if job.dataset_path is not None:
            try:
                data = job.dataset_path.resolve(strict=True)
            except OSError as e:
                raise SandboxError(f"the dataset {job.dataset_path} is not readable: {e}") from e
            if os.getuid() == 0 and not data.stat().st_mode & 0o004:
                log.warning(
                    "the dataset %s is not world-readable; the sandbox user (uid %d) may fail "
                    "to read it",
                    data,
                    SANDBOX_UID,
                )
            target = f"{SANDBOX_DATA}/{job.dataset_path.name}"
            mounts.append(Mount(target, str(data), type="bind", read_only=True))
        if self.mount_host_python:
            view = python_view()
            for path in _outermost([Path(p) for p in view.binds]):
                if str(path) in _SYSTEM_DIRS:
                    raise SandboxError(
                        f"mount_host_python cannot mount {path} over the image's own: make the "
                        "virtual environment from a Python with its own prefix (pyenv, conda, "
                        "uv) or use an image with archsmith installed and mount_host_python off"
                    )
                mounts.append(Mount(str(path), str(path), type="bind", read_only=True))
            # Mounted after the empty tmpfs over each site directory (the engine orders mounts
            # by depth): the runner's packages only.
            mounts += [Mount(p, p, type="bind", read_only=True) for p in view.entries]
        return mounts

    def _tmpfs(self, limits: SandboxLimits, user: str) -> dict[str, str]:
        """A private /tmp and work directory of the job's scratch bounds, and an empty file system
        over each site directory of the host's."""
        scratch = f"rw,nosuid,nodev,size={limits.scratch_mb}m,nr_inodes={limits.scratch_files}"
        # The engine gives a tmpfs over an image's directory that directory's owner and mode:
        # the job's user must own its work directory outright.
        uid, _, gid = user.partition(":")
        found = {"/tmp": scratch, SANDBOX_WORK: f"{scratch},mode=700,uid={uid},gid={gid or uid}"}
        if self.mount_host_python:
            empty = "rw,nosuid,nodev,noexec,size=1m,mode=755"
            found.update({p: empty for p in python_view().hidden})
        return found

    def container_config(self, job: SandboxJob, work_dir: Path, user: str) -> dict[str, Any]:
        """The keyword arguments of ``containers.create`` for ``job``: every isolation setting."""
        limits = job.limits
        cpus = self._cpus()
        memory = f"{limits.memory_mb}m"
        fsize = limits.max_file_size_mb * _MIB
        ulimits = [
            Ulimit(name="fsize", soft=fsize, hard=fsize),
            Ulimit(name="core", soft=0, hard=0),
        ]
        if limits.cpu_time_s is not None:
            ulimits.append(Ulimit(name="cpu", soft=limits.cpu_time_s, hard=limits.cpu_time_s))
        # The json-file log is the only thing the job writes outside its work directory: bound it.
        log_size_kb = max(1024, math.ceil(4 * limits.max_output_bytes / 1024))
        job_id = uuid.uuid4().hex[:12]
        config: dict[str, Any] = {
            "image": self.image,
            "command": self._command(job),
            "name": f"archsmith-job-{job_id}",
            "labels": {LABEL: job_id, OWNER_LABEL: owner_id()},
            "hostname": "sandbox",
            "user": user,
            "working_dir": SANDBOX_WORK,
            "environment": {**SANDBOX_ENV, "OMP_NUM_THREADS": str(max(1, math.floor(cpus)))},
            "mounts": self._mounts(job, work_dir),
            "tmpfs": self._tmpfs(limits, user),
            "read_only": True,
            "network_mode": "none",
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "init": True,
            "mem_limit": memory,
            "memswap_limit": memory,
            "pids_limit": limits.max_processes,
            "nano_cpus": int(cpus * 1e9),
            "ulimits": ulimits,
            "log_config": LogConfig(
                type="json-file", config={"max-size": f"{log_size_kb}k", "max-file": "2"}
            ),
            "detach": True,
        }
        if self._wants_gpus(job):
            config["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
        return config

    def _run_container(self, job: SandboxJob, work_dir: Path, user: str) -> _Observed:
        config = self.container_config(job, work_dir, user)
        t_create = time.monotonic()
        try:
            container = self.client.containers.create(**config)
        except docker.errors.ImageNotFound as e:
            raise SandboxError(
                f"the sandbox image {self.image!r} is missing; build it with: "
                f"{build_command(self.image)}"
            ) from e
        except _API_ERRORS as e:
            raise SandboxError(f"cannot create the sandbox container: {e}") from e
        try:
            observed = self._supervise(container, job.limits)
        except BaseException as e:
            _remove_after_failure(container, e)
            raise
        try:
            container.remove(force=True)
        except _API_ERRORS as e:
            raise SandboxError(
                f"cannot remove the sandbox container {container.name}; remove it with "
                f"docker rm -f {container.name}: {e}"
            ) from e
        _log_timing(container, time.monotonic() - t_create, observed.wall_time_s)
        return observed

    def _supervise(self, container: Container, limits: SandboxLimits) -> _Observed:
        """Start, wait up to the wall-clock limit, then SIGINT and after the grace SIGKILL."""

        def cancel() -> None:
            _signal_container(container, "SIGINT")
            killer = threading.Timer(limits.grace_s, _signal_container, (container, "SIGKILL"))
            killer.daemon = True
            killer.start()

        try:
            t_start = time.monotonic()
            container.start()
            with cancellable(cancel) as cancelled:
                status = _wait(container, limits.wall_time_s)
            if cancelled():
                raise JobInterruptedError(f"the job in {container.name} was stopped by the host")
            timed_out = status is None
            if status is None:
                log.info("job %s hit the wall-clock limit; interrupting it", container.name)
                container.kill(signal="SIGINT")
                status = _wait(container, limits.grace_s) if limits.grace_s > 0 else None
                if status is None:
                    log.warning("job %s ignored SIGINT; killing it", container.name)
                    _kill(container)
                    status = _wait(container, _KILL_WAIT_S)
            wall = time.monotonic() - t_start
            if status is None:
                raise SandboxError(f"the container {container.name} did not stop after SIGKILL")
            container.reload()
            stdout = container.logs(stdout=True, stderr=False)
            stderr = container.logs(stdout=False, stderr=True)
        except _API_ERRORS as e:
            raise SandboxError(f"the Docker engine failed while running a job: {e}") from e
        state = container.attrs.get("State", {})
        code = status.get("StatusCode")
        return _Observed(
            exit_code=code if isinstance(code, int) else None,
            timed_out=timed_out,
            oom_killed=bool(state.get("OOMKilled", False)),
            stdout=stdout.decode("utf-8", errors="replace"),
            stderr=stderr.decode("utf-8", errors="replace"),
            wall_time_s=wall,
        )


def owner_id(pid: int | None = None) -> str:
    """``host:pid`` of the process that starts containers (this one unless ``pid`` is given)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def remove_orphans(client: docker.DockerClient) -> list[str]:
    """Remove containers that an archsmith process on this host started and did not live to remove.

    Only containers whose owner label names this host and a process that no longer exists are
    touched: another run's live jobs, and containers of other hosts sharing the engine, are kept.
    Returns the names removed.
    """
    host = socket.gethostname()
    removed: list[str] = []
    try:
        containers = client.containers.list(all=True, filters={"label": LABEL})
    except _API_ERRORS as e:
        raise SandboxError(f"cannot list the sandbox containers: {e}") from e
    for container in containers:
        owner = container.labels.get(OWNER_LABEL, "")
        owner_host, _, pid = owner.rpartition(":")
        if owner_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            container.remove(force=True)
        except _API_ERRORS as e:
            log.warning("cannot remove the orphaned sandbox container %s: %s", container.name, e)
            continue
        log.warning(
            "removed the sandbox container %s: the archsmith process %s that started it is gone",
            container.name,
            pid,
        )
        removed.append(container.name)
    return removed


def _package_dir() -> Path:
    """The archsmith package directory, mounted alone: the repository around it may hold .env."""
    return Path(archsmith.__file__).resolve().parent


def _wait(container: Container, timeout_s: float) -> dict[str, Any] | None:
    """The container's exit status, or None if it still runs after ``timeout_s``.

    Over the Unix socket the SDK reports a read timeout as a ``ConnectionError``, the same type as
    a dead engine, so the container's state (which a dead engine cannot report) tells them apart.
    """
    try:
        status: dict[str, Any] = container.wait(timeout=timeout_s)
    except requests.exceptions.RequestException:
        container.reload()
        if container.status in {"running", "created", "restarting", "paused"}:
            return None
        status = container.wait(timeout=_KILL_WAIT_S)
    return status


def _signal_container(container: Container, sig: str) -> None:
    """Send ``sig`` from another thread; a container that already exited is not an error."""
    try:
        container.kill(signal=sig)
    except _API_ERRORS as e:
        log.debug("signalling %s with %s: %s", container.name, sig, e)


def _kill(container: Container) -> None:
    """SIGKILL, tolerating the race where the container exited on its own a moment earlier."""
    try:
        container.kill()
    except docker.errors.APIError:
        container.reload()
        if container.status == "running":
            raise


def _remove_after_failure(container: Container, cause: BaseException) -> None:
    """Remove the container while ``cause`` propagates; a removal error is logged, not raised,
    so that it cannot hide the original failure."""
    try:
        container.remove(force=True)
    except _API_ERRORS:
        log.exception(
            "could not remove the sandbox container %s after %s; remove it with docker rm -f %s",
            container.name,
            type(cause).__name__,
            container.name,
        )


def _log_timing(container: Container, end_to_end_s: float, wall_s: float) -> None:
    """Log the start overhead: create-to-remove on the host versus the engine's own run time."""
    state = container.attrs.get("State", {})
    started, finished = _engine_time(state.get("StartedAt")), _engine_time(state.get("FinishedAt"))
    inside = finished - started if started is not None and finished is not None else None
    log.debug(
        "container %s: end to end %.3f s (create to remove), start to exit %.3f s, "
        "engine-measured run %s",
        container.name,
        end_to_end_s,
        wall_s,
        f"{inside:.3f} s" if inside is not None else "unknown",
    )


def _remove_tree(path: Path) -> None:
    """Delete a temporary work directory, whatever the job left in it; a leftover is worth a
    warning (``remove_untrusted_tree`` logs it), not a failed job."""
    remove_untrusted_tree(path)
