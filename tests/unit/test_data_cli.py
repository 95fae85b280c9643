"""``archsmith datasets``: each dataset's splits listed, the JSON keys scripts rely on kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archsmith.cli import app
from archsmith.data.registry import DATA_DIR_ENV, REGISTRY

#: The keys of ``datasets --json`` before the splits were listed: scripts may read any of them.
OLD_KEYS = {"name", "aliases", "task", "input_shape", "num_classes", "available", "source"}


def test_datasets_json_keeps_its_keys_and_adds_the_splits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    result = CliRunner().invoke(app, ["datasets", "--json", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == set(REGISTRY)
    for name, row in rows.items():
        assert set(row) == OLD_KEYS | {"splits"}, name
        assert row["splits"] == REGISTRY[name].splits
    assert "test = the test batch" in rows["cifar10"]["splits"]
    assert "20 % test carve-out" in rows["digits"]["splits"]


def test_datasets_table_shows_the_splits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("COLUMNS", "400")
    result = CliRunner().invoke(app, ["datasets", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "splits" in result.stdout
    assert "test = the 25,000-review test half" in result.stdout
