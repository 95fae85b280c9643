"""A warm job's fresh /tmp must not hide a Python view under /tmp (a venv, a checkout)."""

from __future__ import annotations

from pathlib import Path

import pytest

from archsmith.sandbox.zygote import view_under_tmp


def test_only_the_outermost_directories_under_tmp_are_bound_again(tmp_path: Path) -> None:
    if not str(tmp_path.resolve()).startswith("/tmp/"):
        pytest.skip(f"the test's directory {tmp_path} is not under /tmp")
    venv = tmp_path / "clone" / ".venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    package = tmp_path / "clone" / "archsmith"
    site.mkdir(parents=True)
    package.mkdir(parents=True)
    outside = Path("/usr").resolve()  # not under /tmp, wherever this checkout is
    got = view_under_tmp(
        [str(venv), str(site), str(package), "", str(outside), str(tmp_path / "missing")]
    )
    assert got == sorted([str(package.resolve()), str(venv.resolve())])


def test_a_view_outside_tmp_binds_nothing() -> None:
    assert view_under_tmp(["/usr/lib/python3", "/opt/venv", "/tmpfoo"]) == []
