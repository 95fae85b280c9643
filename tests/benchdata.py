"""The published NAS benchmark tables in ../shared/data, or a skip that says they are absent."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(name: str) -> Path:
    """The published table in ../shared/data, or skip the test saying it is absent."""
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"the real benchmark table is not here: {path.resolve()} is absent")
    return path
