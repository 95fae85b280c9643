"""Benchmark tables for tests: the published ones in ../shared/data, or small space files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(name: str) -> Path:
    """The published table in ../shared/data, or skip the test saying it is absent."""
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"the real benchmark table is not here: {path.resolve()} is absent")
    return path


def write_space_file(folder: Path, rows: dict[str, Any], fields: dict[str, Any]) -> Path:
    """A user's space file (``space.json``) with ``fields`` and its table (``table.json``,
    ``rows`` as given) in ``folder``; ``fields`` may name another table."""
    (folder / "table.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    path = folder / "space.json"
    path.write_text(json.dumps({"table": "table.json", **fields}, indent=2), encoding="utf-8")
    return path
