"""How archsmith writes the files it keeps, and reads the files a sandboxed job leaves behind.

Every file a user asks for (a report, an exported model, a model card) is written to a temporary
name in the same directory and renamed into place; a write that fails removes the temporary file and
says what went wrong and what to do.

A job's work directory is writable by candidate code, so everything in it is hostile: a link to a
host file, a FIFO whose read never returns, a file of any size. ``open_untrusted`` opens such a file
without following links and only when it is a regular file of bounded size.
"""

from __future__ import annotations

import errno
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
    "explain_os_error",
    "open_untrusted",
    "read_untrusted",
]


class UntrustedFileError(ArchsmithError):
    """A file a sandboxed job left is missing, a link, not a regular file, or too large."""


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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
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
