"""Per-job control groups: hard memory and process limits where the host lets us create them.

rlimits alone cannot stop a fork bomb run by root (RLIMIT_NPROC does not apply to uid 0) and
RLIMIT_DATA does not bound a process tree. A cgroup does both, and tells us afterwards whether the
kernel killed the job for memory. Creating one needs write access to the cgroup filesystem (root,
or a delegated subtree); when that is missing the local backend says so and keeps the rlimits.
Both cgroup v2 (unified) and v1 (one hierarchy per controller) are handled.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
import uuid
from pathlib import Path

__all__ = ["JobCgroup", "create_job_cgroup"]

log = logging.getLogger(__name__)
_ROOT = Path("/sys/fs/cgroup")


def _own_path(controller: str | None) -> str | None:
    """This process's cgroup path for a v1 controller, or the v2 path when controller is None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controller is None and controllers == "":
            return path
        if controller is not None and controller in controllers.split(","):
            return path
    return None


class JobCgroup:
    """One job's cgroup(s): limits set on creation, processes added by pid, removed afterwards."""

    def __init__(self, dirs: dict[str, Path], version: int) -> None:
        self.dirs = dirs
        self.version = version

    def add(self, pid: int) -> None:
        """Move ``pid`` into the job's cgroup(s); called in the child before it execs."""
        for d in self.dirs.values():
            (d / "cgroup.procs").write_text(str(pid))

    def pids(self) -> set[int]:
        """Processes still in the job's cgroup(s)."""
        found: set[int] = set()
        for d in self.dirs.values():
            try:
                found.update(int(x) for x in (d / "cgroup.procs").read_text().split())
            except OSError:
                continue
        return found

    def kill_all(self) -> None:
        """SIGKILL every process left in the cgroup(s), including ones that left the session."""
        for _ in range(50):
            left = self.pids()
            if not left:
                return
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                except PermissionError:
                    log.warning("cannot kill pid %d left in the job's cgroup", pid)

    def memory_exceeded(self) -> bool:
        """Whether the kernel hit the memory limit (an OOM kill) during the job."""
        return self.oom_events() > 0

    def oom_events(self) -> int:
        """How often the kernel hit the memory limit so far (a warm sandbox compares counts)."""
        if self.version == 2:
            events = self.dirs.get("unified")
            if events is None:
                return 0
            try:
                text = (events / "memory.events").read_text()
            except OSError:
                return 0
            counts = dict(line.split() for line in text.splitlines() if line.strip())
            return int(counts.get("oom_kill", "0")) + int(counts.get("oom", "0"))
        mem = self.dirs.get("memory")
        if mem is None:
            return 0
        try:
            control = (mem / "memory.oom_control").read_text()
            failcnt = int((mem / "memory.failcnt").read_text().strip() or 0)
        except OSError:
            return 0
        oom_kills = 0
        for line in control.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                oom_kills = int(value)
        return oom_kills + failcnt

    def remove(self) -> None:
        """Kill what is left and remove the cgroup directories."""
        self.kill_all()
        for d in self.dirs.values():
            # Killed processes leave the cgroup only once the kernel has torn them down: a
            # sandbox of many (a warm one) can take a moment, and rmdir says EBUSY until then.
            for attempt in range(_REMOVE_TRIES):
                try:
                    d.rmdir()
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or attempt == _REMOVE_TRIES - 1:
                        log.warning("could not remove cgroup %s: %s", d, e)
                        break
                    time.sleep(0.02)
                    self.kill_all()


#: rmdir attempts, 20 ms apart, while the killed processes leave the cgroup.
_REMOVE_TRIES = 250


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _create_v2(memory_bytes: int, max_pids: int, name: str) -> JobCgroup:
    own = _own_path(None)
    if own is None:
        raise OSError("no cgroup v2 path in /proc/self/cgroup")
    parent = _ROOT / own.lstrip("/")
    enabled = (parent / "cgroup.subtree_control").read_text().split()
    for ctrl in ("memory", "pids"):
        if ctrl not in enabled:
            _write(parent / "cgroup.subtree_control", f"+{ctrl}")
    d = parent / name
    d.mkdir()
    try:
        _write(d / "memory.max", str(memory_bytes))
        if (d / "memory.swap.max").exists():
            _write(d / "memory.swap.max", "0")
        _write(d / "pids.max", str(max_pids))
    except OSError:
        d.rmdir()
        raise
    return JobCgroup({"unified": d}, 2)


def _create_v1(memory_bytes: int, max_pids: int, name: str) -> JobCgroup:
    dirs: dict[str, Path] = {}
    try:
        for ctrl in ("memory", "pids"):
            own = _own_path(ctrl) or "/"
            d = _ROOT / ctrl / own.lstrip("/") / name
            d.mkdir()
            dirs[ctrl] = d
        _write(dirs["memory"] / "memory.limit_in_bytes", str(memory_bytes))
        memsw = dirs["memory"] / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            _write(memsw, str(memory_bytes))
        _write(dirs["pids"] / "pids.max", str(max_pids))
    except OSError:
        for d in dirs.values():
            d.rmdir()
        raise
    return JobCgroup(dirs, 1)


def create_job_cgroup(memory_bytes: int, max_pids: int) -> tuple[JobCgroup | None, str]:
    """A cgroup with the job's limits, or None and the reason it could not be made."""
    name = f"archsmith-{uuid.uuid4().hex[:12]}"
    try:
        if (_ROOT / "cgroup.controllers").exists():
            return _create_v2(memory_bytes, max_pids, name), "cgroup v2"
        if (_ROOT / "memory").is_dir() and (_ROOT / "pids").is_dir():
            return _create_v1(memory_bytes, max_pids, name), "cgroup v1"
    except OSError as e:
        return None, f"cannot create a cgroup ({e.strerror or e})"
    return None, "no cgroup filesystem with the memory and pids controllers"
