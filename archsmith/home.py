"""``ARCHSMITH_HOME``'s layout, and the one owner of what lies in it.

::

    archsmith.db                        the run store (``Settings.store`` may put it elsewhere)
    runs/<run id>/                      a run's record: run.json, checkpoints, candidates, best
    models/<stamp>-<id>/                trained programs a run's history refers to (show, report,
                                        export, the final test read them)
    models/validated-<owner>-<id>/      programs checked while validating, until the run ends
    jobs/<stamp>-<tool>-<owner>-<id>/   a sandbox job's work directory, until the job ends
    jobs/held-<owner>-<id>/             what training holds across an early-stopping pause
    datasets/                           prepared datasets, a cache

Every path under the home is named here. What a process makes for a while carries its owner in
the name (``owner_tag``: host, pid and the pid's start time, so a reused pid is not mistaken for
the owner), because a process killed with SIGKILL cannot clean up after itself: ``sweep`` removes
what dead owners left, and never what a live one (another run, now) is using. ``release_run``
removes what a run no longer needs when it ends; ``prune`` reclaims what runs that failed or were
deleted left in ``models/``. Nothing here follows a link out of the home, and nothing without an
owner tag (a file the user put there) is taken by ``sweep``.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
import stat
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from archsmith.files import remove_untrusted_tree

__all__ = [
    "DATASETS",
    "JOBS",
    "MODELS",
    "RUNS",
    "RUN_META",
    "STORE",
    "Reclaimed",
    "datasets_dir",
    "human_bytes",
    "jobs_dir",
    "models_dir",
    "new_held_dir",
    "new_job_dir",
    "new_validated_dir",
    "owner_alive",
    "owner_tag",
    "prune",
    "release_run",
    "run_dir",
    "runs_dir",
    "store_path",
    "sweep",
    "unknown_runs",
]

log = logging.getLogger(__name__)

RUNS = "runs"
MODELS = "models"
JOBS = "jobs"
DATASETS = "datasets"
STORE = "archsmith.db"
#: A run's own record inside its directory (``agents.runs`` writes it).
RUN_META = "run.json"

#: ``o<host hash>.<pid>.<start time>`` anywhere in a name, between dashes.
_OWNER = re.compile(r"(?:^|-)o([0-9a-f]{8})\.(\d+)\.(\d+)-")


def runs_dir(home: Path) -> Path:
    """Every run's directory lives here."""
    return home / RUNS


def run_dir(home: Path, run_id: str) -> Path:
    """Where a run's files live."""
    return runs_dir(home) / run_id


def jobs_dir(home: Path) -> Path:
    """One work directory per sandbox job lives here."""
    return home / JOBS


def models_dir(home: Path) -> Path:
    """Exported programs the host checked and keeps; no job can write here."""
    return home / MODELS


def datasets_dir(home: Path) -> Path:
    """Prepared datasets (.npz) live here."""
    return home / DATASETS


def store_path(home: Path, store: Path | None = None) -> Path:
    """The SQLite run store every run writes to: ``store`` when given, else in the home."""
    return store or home / STORE


def _host_hash(host: str) -> str:
    return f"{zlib.crc32(host.encode()):08x}"


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), None where unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


@functools.cache
def _tag_of(pid: int) -> str:
    return f"o{_host_hash(socket.gethostname())}.{pid}.{_start_time(pid) or 0}"


def owner_tag() -> str:
    """This process as an owner of files in the home: host, pid and the pid's start time."""
    return _tag_of(os.getpid())


def owner_alive(name: str) -> bool | None:
    """Whether the process that owns ``name`` still runs: None for a name without an owner tag
    or one made on another host (a home shared by a cluster's nodes), where nobody can tell."""
    found = _OWNER.search(name)
    if found is None or found.group(1) != _host_hash(socket.gethostname()):
        return None
    pid, started = int(found.group(2)), int(found.group(3))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = _start_time(pid)
    # A pid reused by a newer process: the owner is gone. Unknown start times count as alive.
    return not (started and now is not None and now != started)


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def new_job_dir(home: Path, tool: str) -> Path:
    """A new work directory for one ``tool`` job, owned by this process."""
    parent = jobs_dir(home)
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{_stamp()}-{tool}-{owner_tag()}-", dir=parent))


def new_held_dir(home: Path) -> Path:
    """A new directory for what training holds across an early-stopping pause."""
    parent = jobs_dir(home)
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"held-{owner_tag()}-", dir=parent))


def new_validated_dir(home: Path) -> Path:
    """A new directory for the programs one tool runtime checks while validating candidates:
    untrained, needed only until their candidate has trained, so removed when the run ends."""
    parent = models_dir(home)
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"validated-{owner_tag()}-", dir=parent))


@dataclass
class Reclaimed:
    """What a sweep or prune removed (or, dry, would remove), and the bytes it frees."""

    paths: list[Path] = field(default_factory=list)
    bytes: int = 0

    def add(self, path: Path, size: int) -> None:
        self.paths.append(path)
        self.bytes += size

    def __iadd__(self, other: Reclaimed) -> Reclaimed:
        self.paths += other.paths
        self.bytes += other.bytes
        return self


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB': sizes as a person reads them."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _tree_bytes(path: Path) -> int:
    """The bytes of the files under ``path``, links not followed (a link counts as itself)."""
    total = 0
    stack = [path]
    while stack:
        here = stack.pop()
        try:
            st = here.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            total += st.st_size
        elif not here.is_symlink():
            try:
                stack.extend(here.iterdir())
            except OSError as e:
                log.warning("could not look into %s: %s", here, e)
    return total


def _real_dir(path: Path) -> bool:
    """A directory itself, not a link to one: a link planted in the home is never followed."""
    try:
        return path.is_dir() and not path.is_symlink()
    except OSError:
        return False


def _children(parent: Path) -> Iterator[Path]:
    """The directories right under ``parent`` (itself a real directory), links left alone."""
    if not _real_dir(parent):
        if parent.is_symlink():
            log.warning("%s is a link; archsmith does not follow it", parent)
        return
    for child in sorted(parent.iterdir()):
        if _real_dir(child):
            yield child


def _remove(paths: Iterable[Path], dry_run: bool) -> Reclaimed:
    out = Reclaimed()
    for path in paths:
        size = _tree_bytes(path)
        if dry_run or remove_untrusted_tree(path):
            out.add(path, size)
    return out


def sweep(home: Path, *, dry_run: bool = False) -> Reclaimed:
    """Remove what processes that died (SIGKILL, power loss) left: their jobs' work directories,
    held training state and validated programs. A live owner's files, a name without an owner
    tag and anything behind a link stay."""
    dead = [
        child
        for parent, prefix in ((jobs_dir(home), ""), (models_dir(home), "validated-"))
        for child in _children(parent)
        if child.name.startswith(prefix) and owner_alive(child.name) is False
    ]
    found = _remove(dead, dry_run)
    if found.paths and not dry_run:
        log.info(
            "removed %d leftovers of dead processes (%s)",
            len(found.paths),
            human_bytes(found.bytes),
        )
    return found


def release_run(validated: Path) -> Reclaimed:
    """Remove the programs a run's tool runtime checked while validating (``new_validated_dir``):
    when the run ends nothing reads them (a resumed run validates again)."""
    if validated.parent.name != MODELS or not validated.name.startswith("validated-"):
        raise ValueError(f"{validated} is not a directory of validated programs")
    if not _real_dir(validated):
        return Reclaimed()
    return _remove([validated], dry_run=False)


def prune(
    home: Path,
    referenced: Iterable[str],
    live_since: float | None,
    *,
    dry_run: bool = False,
) -> Reclaimed:
    """Reclaim the space of runs that failed or were deleted: what dead processes left
    (``sweep``), and the trained programs in ``models/`` no run refers to (``referenced``: every
    history entry's ``model_dir``). A program made after ``live_since`` (the start of the oldest
    run still going, None when none is) may be a live run's that is not recorded yet: it stays.
    """
    found = sweep(home, dry_run=dry_run)
    kept = {Path(p).resolve() for p in referenced if p}
    orphans = []
    for child in _children(models_dir(home)):
        if child.name.startswith("validated-") or child.resolve() in kept:
            continue
        if live_since is not None and child.lstat().st_mtime >= live_since:
            continue
        orphans.append(child)
    found += _remove(orphans, dry_run)
    return found


def unknown_runs(home: Path, known: Iterable[str]) -> list[str]:
    """Run directories the store does not know (their history cannot be read without them)."""
    ids = set(known)
    return [
        d.name for d in _children(runs_dir(home)) if d.name not in ids and (d / RUN_META).is_file()
    ]
