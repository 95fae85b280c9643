"""Reading what a sandboxed job left (``archsmith.files``): links, FIFOs and sizes are refused,
and a copy never holds more than its bound nor leaves half a file."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO

import pytest

from archsmith.files import (
    UntrustedFileError,
    copy_untrusted,
    read_untrusted,
    remove_untrusted_tree,
)


def test_a_regular_file_is_copied_whole(tmp_path: Path) -> None:
    src = tmp_path / "train-state.pt"
    data = os.urandom(3 << 20)
    src.write_bytes(data)
    dest = tmp_path / "held" / "train-state.pt"
    copy_untrusted(src, dest, 4 << 20)
    assert dest.read_bytes() == data
    assert [p.name for p in dest.parent.iterdir()] == ["train-state.pt"]


def test_a_link_to_a_host_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host")
    (tmp_path / "state").symlink_to(secret)
    with pytest.raises(UntrustedFileError, match="cannot open state"):
        copy_untrusted(tmp_path / "state", tmp_path / "out", 1 << 20)
    assert not (tmp_path / "out").exists()


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "state")
    with pytest.raises(UntrustedFileError, match="not a regular file"):
        copy_untrusted(tmp_path / "state", tmp_path / "out", 1 << 20)
    with pytest.raises(UntrustedFileError, match="not a regular file"):
        read_untrusted(tmp_path / "state", 1 << 20)


def test_a_file_over_the_bound_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    src = tmp_path / "state"
    with src.open("wb") as f:
        f.truncate(5 << 20)  # sparse: 5 MiB that cost no disk
    with pytest.raises(UntrustedFileError, match="5242880 bytes"):
        copy_untrusted(src, tmp_path / "held" / "state", 4 << 20)
    assert not (tmp_path / "held").exists() or not any((tmp_path / "held").iterdir())


def test_a_file_that_grows_while_copied_is_refused_and_nothing_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The size is checked when the file is opened; a job that keeps writing (a process it left
    behind) cannot push more than the bound through the copy."""
    import archsmith.files as files

    src = tmp_path / "state"
    src.write_bytes(b"x" * (1 << 20))
    dest = tmp_path / "held" / "state"
    opened = files.open_untrusted

    with src.open("ab") as grow:

        def open_then_grow(path: Path, limit: int) -> BinaryIO:
            f = opened(path, limit)
            read = f.read

            def read_and_grow(n: int | None = -1) -> bytes:
                grow.write(b"y" * (1 << 20))  # 1 MiB more behind every block read
                grow.flush()
                return read(n)

            f.read = read_and_grow  # type: ignore[method-assign]
            return f

        monkeypatch.setattr(files, "open_untrusted", open_then_grow)
        with pytest.raises(UntrustedFileError, match="grew beyond"):
            copy_untrusted(src, dest, 3 << 20)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


# -- remove_untrusted_tree: whatever tree a job leaves, the host removes it and carries on -------


def _deep(root: Path, depth: int) -> None:
    """``depth`` nested directories under ``root``, deeper than any path the kernel resolves."""
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
        with open(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "wb") as f:
            f.write(b"x")
    finally:
        os.close(fd)


def test_a_tree_deeper_than_recursion_allows_is_removed(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    _deep(job, 5000)
    with pytest.raises(RecursionError):  # what the host used to call
        shutil.rmtree(job, ignore_errors=True)
    assert remove_untrusted_tree(job)
    assert not job.exists()


def test_links_fifos_sockets_and_odd_names_are_removed_and_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "keep.txt").write_text("host file")
    job = tmp_path / "job"
    job.mkdir()
    (job / "to-host-dir").symlink_to(outside, target_is_directory=True)
    (job / "to-host-file").symlink_to(outside / "keep.txt")
    (job / "loop").symlink_to(job / "loop")
    os.mkfifo(job / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(job / "sock"))
    sock.close()
    odd = os.fsencode(job) + b"/\xff\xfe name\nwith newline"
    with open(odd, "wb") as f:
        f.write(b"odd")
    sub = job / "wide"
    sub.mkdir()
    for i in range(2000):
        (sub / f"f{i}").touch()
    assert remove_untrusted_tree(job)
    assert not job.exists()
    assert (outside / "keep.txt").read_text() == "host file"


_LOCKED = """
import os, sys
from pathlib import Path
from archsmith.files import remove_untrusted_tree
job = Path(sys.argv[1])
(job / "locked" / "inner").mkdir(parents=True)
(job / "locked" / "inner" / "f").write_text("x")
(job / "locked" / "inner").chmod(0o500)
(job / "locked").chmod(0)
print(remove_untrusted_tree(job), job.exists())
"""


def test_directories_the_job_made_unreadable_are_opened_up_and_removed() -> None:
    """As a user, not root (root opens any directory): as nobody through setpriv when root."""
    base = Path(tempfile.mkdtemp(prefix="archsmith-locked-"))
    try:
        argv = [sys.executable, "-c", _LOCKED, str(base / "job")]
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root without setpriv to become another user")
            os.chown(base, 65534, 65534)
            argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["True", "False"], done.stdout + done.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_link_or_a_file_in_place_of_the_directory_is_removed_not_followed(
    tmp_path: Path,
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "keep.txt").write_text("host file")
    link = tmp_path / "job"
    link.symlink_to(host, target_is_directory=True)
    assert remove_untrusted_tree(link)
    assert not link.is_symlink()
    assert (host / "keep.txt").read_text() == "host file"
    assert remove_untrusted_tree(tmp_path / "never-made")


def test_what_cannot_be_removed_is_logged_and_the_rest_goes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = tmp_path / "job"
    (job / "a").mkdir(parents=True)
    (job / "a" / "stuck").write_text("x")
    (job / "b.txt").write_text("x")
    real_unlink = os.unlink

    def unlink(name: str, *, dir_fd: int | None = None) -> None:
        if name == "stuck":
            raise PermissionError(1, "Operation not permitted")
        real_unlink(name, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink)
    assert not remove_untrusted_tree(job)
    assert [p.name for p in job.rglob("*")] == ["a", "stuck"]
    assert "could not remove stuck" in caplog.text
