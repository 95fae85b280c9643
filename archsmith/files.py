"""How archsmith writes the files it keeps, and reads the files a sandboxed job leaves behind.

Every file a user asks for (a report, an exported model, a model card) is written to a temporary
name in the same directory and renamed into place; a write that fails removes the temporary file and
says what went wrong and what to do.

A job's work directory is writable by candidate code, so everything in it is hostile: a link to a
host file, a FIFO whose read never returns, a file of any size. ``open_untrusted`` opens such a file
without following links and only when it is a regular file of bounded size, and
``remove_untrusted_tree`` removes whatever tree a job left, however deep, wide or strange.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from archsmith.errors import ArchsmithError, InputError

__all__ = [
    "UntrustedFileError",
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_text",
    "copy_untrusted",
    "explain_os_error",
    "open_untrusted",
    "read_untrusted",
    "remove_untrusted_tree",
    "sha256_of",
    "written_in_place",
]

log = logging.getLogger(__name__)


class UntrustedFileError(ArchsmithError):
    """A file a sandboxed job left is missing, a link, not a regular file, or too large."""


def sha256_of(path: Path) -> str:
    """The file's sha256, read in blocks: what a model card and an acceptance name a file by."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def open_untrusted(path: Path, limit: int) -> BinaryIO:
    """Open ``path`` for reading if it is a regular file of at most ``limit`` bytes.

    Never follows a link (``O_NOFOLLOW``) and never blocks on a FIFO (``O_NONBLOCK``); the size is
    that of the opened file, so swapping the file after the check changes nothing.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:  # ELOOP: a link; ENOENT: not written
        raise UntrustedFileError(f"cannot open {path.name}: {e.strerror}") from e
    f = os.fdopen(fd, "rb")
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
        f.close()
        what = "not a regular file" if not stat.S_ISREG(st.st_mode) else f"{st.st_size} bytes"
        raise UntrustedFileError(
            f"{path.name} is {what}; a job's output must be a regular file of at most {limit} bytes"
        )
    return f


def read_untrusted(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, with ``open_untrusted``'s checks; a file still growing is refused."""
    with open_untrusted(path, limit) as f:
        # Read what fstat says is there, plus one byte to notice growth; never pre-allocate limit.
        data = f.read(os.fstat(f.fileno()).st_size + 1)
    if len(data) > limit:
        raise UntrustedFileError(f"{path.name} grew beyond {limit} bytes while being read")
    return data


def explain_os_error(e: OSError, path: Path) -> InputError:
    """An InputError that names the path and the remedy for the usual causes."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return InputError(
            f"no space left on the device while writing {path}; free some space or"
            " choose another place with -o; nothing was written"
        )
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return InputError(f"cannot write {path}: {e.strerror}; choose a writable place with -o")
    return InputError(f"cannot write {path}: {e}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def _atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A new file that becomes ``path`` (a rename) once the block ends, synced and with the usual
    mode; removed when the block raises. An OSError says what went wrong and what to do."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private; a report or a model is meant to be shared as usual.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise explain_os_error(e, path) from e
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with _atomic_file(Path(path)) as f:
        f.write(data)


def copy_untrusted(src: Path, dest: Path, limit: int) -> None:
    """Copy a file a job left to ``dest`` (atomically), in blocks, never more than ``limit`` bytes.

    ``open_untrusted``'s checks apply; the copy streams, so a file of ``limit`` bytes (a paused
    training's state may be GBs) is never held in memory at once, and one still growing past
    ``limit`` is refused, with nothing left at ``dest``.
    """
    with open_untrusted(src, limit) as f, _atomic_file(dest) as out:
        copied = 0
        while block := f.read(1 << 20):
            copied += len(block)
            if copied > limit:
                raise UntrustedFileError(f"{src.name} grew beyond {limit} bytes while read")
            out.write(block)


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` through a temporary file and a rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_dir(path: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``path`` only when the block succeeds.

    An existing non-empty ``path`` is an InputError unless ``overwrite``; then it is replaced only
    after the new contents are complete.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} exists and is not a directory; choose another place with -o")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise InputError(f"{path} is not empty; choose another place with -o or pass --force")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        os.chmod(tmp, 0o777 & ~_umask())
    except OSError as e:
        raise explain_os_error(e, path) from e
    try:
        yield tmp
        old: Path | None = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    except OSError as e:
        raise explain_os_error(e, path) from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_untrusted_tree(path: Path) -> bool:
    """Remove the tree at ``path`` that a finished job left; True when nothing of it is left.

    ``shutil.rmtree`` recurses once per level, so a job that left a few thousand nested
    directories made it raise ``RecursionError`` past ``ignore_errors``, failing the run and
    leaving the tree. This walks the tree with at most two descriptors open and a stack of names,
    never follows a link, opens up directories the job made unreadable (they are the host user's
    or the job's uid mapped to it), and removes files, links, FIFOs, sockets and device nodes
    alike. What cannot be removed is logged and skipped, never raised: the job's result is the
    host's already. The job's processes must be gone (a tree that changes under the walk is only
    cleaned as far as it goes).
    """
    try:
        fd = _open_dir(path, None)
    except FileNotFoundError:
        return True
    except OSError as e:
        if isinstance(e, NotADirectoryError) or e.errno == errno.ELOOP:
            return _unlink_logged(str(path), None)
        log.warning("could not remove %s left by a job: %s", path, e)
        return False
    names: list[str] = []
    skipped: list[set[str]] = [set()]
    clean = True
    try:
        while True:
            child = _next_dir(fd, skipped[-1])
            if child is not None:
                try:
                    child_fd = _open_dir(child, fd)
                except OSError as e:
                    log.warning("could not open %s/%s left by a job: %s", path, child, e)
                    skipped[-1].add(child)
                    clean = False
                    continue
                os.close(fd)
                fd = child_fd
                names.append(child)
                skipped.append(set())
                continue
            if not names:
                break
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            name = names.pop()
            skipped.pop()
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError as e:
                log.warning("could not remove %s/…/%s left by a job: %s", path, name, e)
                skipped[-1].add(name)
                clean = False
    except OSError as e:
        log.warning("could not finish removing %s left by a job: %s", path, e)
        return False
    finally:
        os.close(fd)
    if clean:
        try:
            os.rmdir(path)
        except OSError as e:
            log.warning("could not remove %s left by a job: %s", path, e)
            return False
    return clean


def _open_dir(name: str | Path, dir_fd: int | None) -> int:
    """Open a directory without following a link; one the job made unreadable is opened up."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        # Not a link (O_NOFOLLOW said ELOOP for one), and the job is over: it stays a directory.
        os.chmod(name, 0o700, dir_fd=dir_fd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    if stat.S_IMODE(os.fstat(fd).st_mode) & 0o700 != 0o700:
        os.fchmod(fd, 0o700)  # a job's read-only directory: its entries must be removable
    return fd


def _next_dir(fd: int, skipped: set[str]) -> str | None:
    """Remove every non-directory in the directory ``fd``; the first subdirectory left, or None."""
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.name in skipped:
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                return entry.name
            if not _unlink_logged(entry.name, fd):
                skipped.add(entry.name)
    return None


def _unlink_logged(name: str, dir_fd: int | None) -> bool:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return True
    except OSError as e:
        log.warning("could not remove %s left by a job: %s", name, e)
        return False
    return True


@contextmanager
def written_in_place(path: Path) -> Iterator[Path]:
    """A scratch path to save ``path`` through, whose bytes are then copied into ``path`` itself.

    In a sandbox, a job's outputs are files the host lent it, bound into its work directory: they
    can be rewritten but not replaced, and a library that saves by renaming a temporary file over
    its target (safetensors does) fails there. It saves the scratch file instead (on the job's
    tmpfs), and the bytes go into ``path`` in place.
    """
    scratch = path.with_name(f".{path.name}.writing")
    try:
        yield scratch
        with scratch.open("rb") as src, path.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    finally:
        scratch.unlink(missing_ok=True)
