"""What of this machine's Python a sandboxed job may see: the interpreter and the runner's packages.

A job needs the interpreter, its standard library, torch, torchvision, numpy and the few packages
archsmith's runner imports, with everything they depend on. It does not need the rest of the
virtual environment, and must not see it: scikit-learn ships the digits dataset with its labels,
so a candidate that could read it could score itself on the answers. Each site-packages directory
is therefore covered by an empty file system, and only the entries of the allowed distributions
(and their dependencies, from the installed metadata) are mounted back, read-only, at their own
paths. Both backends apply the same view: bubblewrap with ``--tmpfs`` and ``--ro-bind``, Docker
with a tmpfs and bind mounts.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import site
import sys
import sysconfig
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import archsmith

__all__ = ["RUNNER_DISTRIBUTIONS", "PythonView", "python_view"]

log = logging.getLogger(__name__)

#: What the runner and the candidate contract import, with their dependencies added from metadata:
#: torch, torchvision (the contract), numpy, pydantic, safetensors (the runner and the program
#: format), the NVML and RAPL readers (energy), and ONNX for ``archsmith export``.
RUNNER_DISTRIBUTIONS = (
    "torch",
    "torchvision",
    "numpy",
    "pydantic",
    "safetensors",
    "nvidia-ml-py",
    "pyJoules",
    "onnx",
    "onnxscript",
    "onnxruntime",
    # deployment targets (``archsmith targets``), where installed
    "openvino",
)
#: Debian's and /usr/local's package directories: not the job's interpreter's, never needed.
_SYSTEM_PACKAGE_DIRS = ("/usr/lib/python3/dist-packages", "/usr/local/lib/python3/dist-packages")


@dataclass(frozen=True)
class PythonView:
    """Mounts, in order: ``binds`` read-only at their own paths; ``hidden`` directories covered by
    an empty file system; then ``entries`` (inside hidden directories) bound back read-only."""

    binds: tuple[str, ...]
    hidden: tuple[str, ...]
    entries: tuple[str, ...]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(roots: tuple[str, ...]) -> list[metadata.Distribution]:
    """The installed distributions ``roots`` name, with everything they require (no extras)."""
    from packaging.requirements import InvalidRequirement, Requirement

    found: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        key = _normalise(name)
        if key in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            log.debug("%s is not installed; the sandbox will not have it", name)
            continue
        found[key] = dist
        for text in dist.requires or []:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                log.debug("ignoring the unreadable requirement %r of %s", text, name)
                continue
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(found.values())


def _site_dirs() -> list[Path]:
    """Every site-packages directory this interpreter could read files from."""
    dirs = {Path(p) for p in site.getsitepackages()}
    for prefix in {sys.prefix, sys.base_prefix}:
        paths = sysconfig.get_paths(vars={"base": prefix, "platbase": prefix})
        dirs.update(Path(paths[k]) for k in ("purelib", "platlib"))
    dirs.update(Path(d) for d in _SYSTEM_PACKAGE_DIRS)
    return sorted(d.resolve() for d in dirs if d.is_dir())


def _allowed_entries(site_dirs: list[Path]) -> set[Path]:
    """Top-level entries of the site directories that the allowed distributions installed."""
    allowed: set[Path] = set()
    for dist in _closure(RUNNER_DISTRIBUTIONS):
        base = Path(str(dist.locate_file(""))).resolve()
        if base not in site_dirs:
            continue
        for f in dist.files or []:
            if f.parts and f.parts[0] not in ("..", "__pycache__"):
                allowed.add(base / f.parts[0])
    # archsmith itself: an installed package, or an editable install's finder and .pth file.
    for d in site_dirs:
        for entry in d.iterdir():
            name = entry.name.lower()
            if name == "archsmith" or (
                name.startswith(("archsmith-", "__editable__")) and ("archsmith" in name)
            ):
                allowed.add(entry)
    return {p for p in allowed if os.path.lexists(p)}


@functools.cache
def python_view() -> PythonView:
    """The mounts that give a job this interpreter and only the runner's packages."""
    site_dirs = _site_dirs()
    # The interpreter's prefix and the virtual environment's, whole and read-only (their
    # site-packages are then covered and only the entries below bound back).
    binds = [sys.base_prefix, sys.prefix]
    package_dir = Path(archsmith.__file__).resolve().parent
    binds.append(str(package_dir))
    binds = [b for b in dict.fromkeys(binds) if os.path.exists(b)]
    # A package directory in the archsmith checkout itself stays visible (it is the runner).
    hidden = [str(d) for d in site_dirs if d != package_dir and d not in package_dir.parents]
    entries = sorted(str(p) for p in _allowed_entries(site_dirs))
    log.debug("sandbox python view: %d binds, %d hidden, %d entries", len(binds), len(hidden),
              len(entries))  # fmt: skip
    return PythonView(tuple(binds), tuple(hidden), tuple(entries))
