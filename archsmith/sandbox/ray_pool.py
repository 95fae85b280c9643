"""Sandbox jobs as Ray tasks: the same jobs, run on whichever node of a Ray cluster has room.

``archsmith run --workers N`` evaluates up to N candidates of a round at once. Each candidate's
jobs are exactly today's sandbox jobs (bubblewrap or Docker, same limits); `RaySandbox` only moves
the call ``sandbox.run(job, work_dir)`` into a Ray task (``num_cpus``, fractional ``num_gpus``),
so a cluster spreads the jobs over its nodes. The host's side of a job (preparing the work
directory, taking the exported program out, the models directory) stays where it is: on a
cluster of several machines, ``ARCHSMITH_HOME`` must be the same shared path on every node.

Honest speed measurement: FPS, latency and inference energy are timed by the ``speed`` job. Run
next to a training job they would be slower and noisier than alone, so a ``speed`` job takes its
node exclusively: it waits until the node's running archsmith jobs have finished, and no new job
starts on that node until it is done (a reader-writer lock on a file in the node's temporary
directory, writer first). Every other job shares the node. Each result says which it was
(``placement["protocol"]``: ``exclusive`` or ``shared``).
"""

from __future__ import annotations

import fcntl
import functools
import logging
import math
import os
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archsmith.errors import InputError
from archsmith.sandbox.base import (
    JobInterruptedError,
    Sandbox,
    SandboxError,
    SandboxJob,
    SandboxResult,
    cancellable,
)

__all__ = [
    "EXCLUSIVE_TOOLS",
    "ClusterInfo",
    "RaySandbox",
    "SandboxSpec",
    "check_address",
    "node_lock",
    "open_cluster",
    "reap_local_cluster",
]

log = logging.getLogger(__name__)

#: Jobs that time the model (FPS, latency, inference energy): alone on their node.
EXCLUSIVE_TOOLS = frozenset({"speed", "target"})
#: How long connecting to an existing cluster may take before archsmith gives up.
CONNECT_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class SandboxSpec:
    """What a Ray worker needs to build the run's sandbox itself (a sandbox object holds host
    state, such as the probed bubblewrap binary, that belongs to the machine that probed it)."""

    backend: str
    image: str | None = None
    trusted_code: bool = False
    bwrap: str | None = None
    warm: bool = False


@dataclass(frozen=True)
class ClusterInfo:
    """The cluster a run uses: where it is and whether archsmith started it."""

    address: str
    local: bool
    session_dir: str | None
    cpus: float
    gpus: float


@functools.lru_cache(maxsize=4)
def _worker_sandbox(spec: SandboxSpec) -> Sandbox:
    """One sandbox per spec and Ray worker process: probing bubblewrap once is enough."""
    from archsmith.sandbox import get_sandbox

    return get_sandbox(
        spec.backend,  # type: ignore[arg-type]
        image=spec.image,
        trusted_code=spec.trusted_code,
        bwrap=spec.bwrap,
        warm=spec.warm,
    )


def _lock_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"archsmith-{os.getuid()}-ray-locks"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


@contextmanager
def node_lock(exclusive: bool, directory: Path | None = None) -> Iterator[float]:
    """Hold this node's job lock, shared or exclusive; yields the seconds spent waiting.

    Writer first: every job passes a turnstile that an exclusive job holds while it waits, so a
    stream of shared jobs cannot starve a measurement. ``flock`` locks belong to the open file
    and vanish with the process, so a killed worker leaves no stale lock.
    """
    where = directory or _lock_dir()
    started = time.monotonic()
    with open(where / "turnstile", "a") as turnstile, open(where / "jobs", "a") as jobs:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(jobs, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield time.monotonic() - started
        finally:
            fcntl.flock(jobs, fcntl.LOCK_UN)


def _run_on_worker(spec: SandboxSpec, job: SandboxJob, work_dir: str) -> SandboxResult:
    """The body of the Ray task: take the node's lock, run the job in the sandbox as always."""
    import ray

    exclusive = job.tool in EXCLUSIVE_TOOLS
    ctx = ray.get_runtime_context()
    with node_lock(exclusive) as waited:
        started = time.time()
        result = _worker_sandbox(spec).run(job, Path(work_dir))
        finished = time.time()
    placement = {
        "node": ctx.get_node_id(),
        "worker": ctx.get_worker_id(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": started,
        "finished_at": finished,
        "lock_wait_s": waited,
        "protocol": "exclusive" if exclusive else "shared",
    }
    return result.model_copy(update={"placement": placement})


class RaySandbox:
    """A `Sandbox` whose jobs run as Ray tasks; the result is the inner sandbox's, plus where
    and when it ran (``placement``)."""

    def __init__(self, spec: SandboxSpec, *, num_cpus: float = 1.0, num_gpus: float = 0.0) -> None:
        import ray

        self.spec = spec
        self.name = spec.backend if spec.backend != "none" else "none"
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self._remote = ray.remote(max_retries=0)(_run_on_worker)

    def run(self, job: SandboxJob, work_dir: Path | None = None) -> SandboxResult:
        """Submit the job, wait for it; Ctrl-C (``cancel_running_jobs``) cancels the task, which
        stops the job's process group where it runs."""
        import ray
        from ray.exceptions import RayError, TaskCancelledError

        if work_dir is None:
            raise SandboxError("a Ray job needs the work directory the host prepared")
        # GPUs only for jobs that use one; a fraction lets small models share a device.
        gpus = self.num_gpus if job.device.startswith("cuda") else 0.0
        if job.tool not in EXCLUSIVE_TOOLS:
            # Its share of the cores; a speed job has its node alone and keeps them all, so its
            # figures compare with those of a run that measures one candidate at a time.
            threads = max(1, math.ceil(self.num_cpus))
            job = job.model_copy(
                update={"limits": job.limits.model_copy(update={"threads": threads})}
            )
        submitted = time.time()
        ref = self._remote.options(num_cpus=self.num_cpus, num_gpus=gpus).remote(
            self.spec, job, str(work_dir)
        )
        with cancellable(lambda: ray.cancel(ref)) as cancelled:
            try:
                result: SandboxResult = ray.get(ref)
            except TaskCancelledError as e:
                raise JobInterruptedError(f"the {job.tool} job was stopped by the host") from e
            except RayError as e:
                if cancelled():
                    raise JobInterruptedError(f"the {job.tool} job was stopped by the host") from e
                raise SandboxError(f"the Ray task running the {job.tool} job failed: {e}") from e
        placement = dict(result.placement or {})
        placement["submitted_at"] = submitted
        placement["returned_at"] = time.time()
        return result.model_copy(update={"placement": placement})


def _ray_env() -> None:
    """Ray talks to no one but the cluster: no usage statistics, no dashboard downloads."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_gcs_rpc_server_connect_timeout_s", str(int(CONNECT_TIMEOUT_S)))


@contextmanager
def open_cluster(
    address: str | None, *, workers: int, gpus: float | None = None
) -> Iterator[ClusterInfo]:
    """Connect to the cluster at ``address``, or start a local one for ``workers`` jobs at a time
    (stopped on the way out, whatever happens).

    A local cluster gets ``workers`` CPUs: each job asks for one, so at most ``workers`` jobs
    run at once. An address that does not answer is an `InputError` (exit code 2) that says
    what to check, not a traceback.
    """
    _ray_env()
    import ray

    if ray.is_initialized():
        raise SandboxError("Ray is already initialised in this process; one run per process")
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
    }
    try:
        if address:
            context = ray.init(address=address, **kwargs)
        else:
            if gpus is not None:
                kwargs["num_gpus"] = gpus
            context = ray.init(num_cpus=workers, **kwargs)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        hint = (
            "; check that `ray start --head` runs there, that the address is host:port of its"
            " GCS (default port 6379) or ray://host:10001 for Ray Client, and that this"
            " machine can reach it"
            if address
            else ""
        )
        raise InputError(f"cannot connect to {where}: {e}{hint}") from e
    try:
        resources = ray.cluster_resources()  # type: ignore[no-untyped-call]
        node = ray._private.worker.global_worker.node
        info = ClusterInfo(
            address=str(getattr(context, "address_info", {}).get("gcs_address") or address),
            local=not address,
            session_dir=str(node.get_session_dir_path()) if node is not None else None,
            cpus=float(resources.get("CPU", 0.0)),
            gpus=float(resources.get("GPU", 0.0)),
        )
        log.info(
            "Ray cluster %s (%s): %g CPUs, %g GPUs",
            info.address,
            "started by archsmith" if info.local else "existing",
            info.cpus,
            info.gpus,
        )
        yield info
    finally:
        ray.shutdown()


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast, before a run is created, when nothing listens at a cluster's address.

    ``host:port`` (the head's GCS, port 6379 when omitted) or ``ray://host:port`` (Ray Client,
    10001 when omitted). ``auto`` (the cluster this machine belongs to) is left to Ray.
    """
    if address == "auto":
        return
    client = address.startswith("ray://")
    where = address.removeprefix("ray://").rstrip("/")
    host, sep, port_text = where.rpartition(":")
    if not sep:
        host, port_text = where, "10001" if client else "6379"
    try:
        port = int(port_text)
    except ValueError as e:
        raise InputError(
            f"cannot read the Ray address {address!r}: use host:port or ray://host:port"
        ) from e
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout_s):
            pass
    except OSError as e:
        raise InputError(
            f"no Ray cluster answers at {address} ({e}); start one there with `ray start --head"
            " --port=6379` (same archsmith, Python and Ray versions on every node), or leave out"
            " --ray-address to let archsmith start a local one"
        ) from e


def reap_local_cluster(session_dir: str | None) -> int:
    """Kill what a local cluster left behind when its run was killed (``kill -9``).

    Ray's head processes die with the process that started them, but its agents
    (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) outlive it. They are found by the
    session directory they hold open and only when orphaned (their parent is gone), so a
    cluster still in use is never touched. Returns how many were killed.
    """
    if not session_dir or not Path(session_dir).is_dir():
        return 0
    killed = 0
    prefix = str(Path(session_dir)) + os.sep
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid != 1:
                continue
            holds = any(os.readlink(fd).startswith(prefix) for fd in (proc / "fd").iterdir())
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        if holds:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    if killed:
        log.info("killed %d process(es) left by the Ray cluster of %s", killed, session_dir)
    return killed
