"""A short `archsmith run` (offline, one iteration, one epoch) on each kind of a user's own data.

The request names the data by a relative path; the run records it absolute, so `resume` from any
folder prepares the same data.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from owndata import KINDS, archsmith, write_all


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_all(tmp_path_factory.mktemp("own"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_short_run(data: Path, tmp_path: Path, kind: str) -> None:
    """A whole run per kind of data (a real CLI process, its warm sandboxes, one candidate, the
    test split at the end): the only end-to-end proof that each loader feeds the whole loop."""
    name, request, task, shape, classes = KINDS[kind]
    args = ("run", request, "--llm", "offline", "--iterations", "1", "--epochs", "1")
    result = archsmith(data, tmp_path, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "best: iteration 1" in result.stdout
    listed = archsmith(tmp_path, tmp_path, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    (run,) = json.loads(listed.stdout)
    spec = run["spec"]
    assert spec["dataset"] == str((data / name).resolve())
    assert spec["task"] == f"{task}_classification"
    assert (spec["input_shape"], spec["num_classes"]) == (shape, classes)
    assert run["status"] == "finished"
