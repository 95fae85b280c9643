"""`archsmith plan` and `evaluate` on a user's own data, and every kind of bad data refused.

The data is written here: a folder of class folders (PNG and JPEG, grayscale and RGB, one
corrupt file), an npz, a CSV and JSON lines. Plans and evaluations run as a user runs them (a
real process, the local sandbox); the bad-data cases run the commands in-process, since each
stops before any work.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from owndata import (
    CORRUPT_PNG,
    KINDS,
    LINEAR,
    archsmith,
    csv_file,
    gray_folder,
    jsonl_file,
    write_all,
)
from typer.testing import CliRunner

from archsmith.cli import app


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_all(tmp_path_factory.mktemp("own"))


@pytest.mark.parametrize("kind", list(KINDS))
def test_plan(data: Path, tmp_path: Path, kind: str) -> None:
    name, request, task, shape, classes = KINDS[kind]
    result = archsmith(data, tmp_path, "plan", request, "--json")
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)
    assert spec["dataset"] == str((data / name).resolve())
    assert spec["task"] == f"{task}_classification"
    assert (spec["input_shape"], spec["num_classes"]) == (shape, classes)


def test_plan_states_what_it_read_from_the_data(data: Path, tmp_path: Path) -> None:
    result = archsmith(data, tmp_path, "plan", KINDS["folder"][1], "--image-size", "20")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "assumed: 'cell images' is read as an ordinary word" in text
    assert "3 classes (gray, green, red)" in text
    assert "Images resized to 20x20 px, as --image-size asked." in text
    assert "the 12 grayscale ones were repeated into 3 channels" in text
    assert "skipped 1 image file that could not be read: red/broken.png" in text
    assert "red/broken.png" in result.stderr  # the warning, logged while preparing


@pytest.mark.parametrize("kind", ["folder", "jsonl"])
def test_evaluate(data: Path, tmp_path: Path, kind: str) -> None:
    """``evaluate`` on one image kind and one text kind: each loader is proven end to end by a
    whole run on it (``test_own_data_run``); what this adds is the evaluate command's own
    pipeline, which differs between images and texts, not between files of one task."""
    name = KINDS[kind][0]
    result = archsmith(
        data, tmp_path, "evaluate", "model.py", "--dataset", name, "--epochs", "1", "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert list(report) == ["check_shapes", "count_params", "train_model", "measure_energy"]
    assert all(step["ok"] for step in report.values()), report
    assert report["measure_energy"]["fps"] > 0
    assert 0.0 <= report["train_model"]["val_accuracy"] <= 1.0


# --- bad data: the message, and exit code 2, before any work ---------------------------------


def _bad(root: Path, case: str) -> str:
    """Write the bad dataset ``case`` under ``root``; the path to name it by."""
    if case == "empty_folder":
        (root / "empty").mkdir()
        return "empty"
    if case == "single_class":
        gray_folder(root / "one")
        for f in (root / "one" / "light").iterdir():
            f.unlink()
        (root / "one" / "light").rmdir()
        return "one"
    if case == "small_class":
        gray_folder(root / "small")
        for f in sorted((root / "small" / "light").iterdir())[4:]:
            f.unlink()
        return "small"
    if case == "corrupt_files":
        gray_folder(root / "corrupt")
        for f in sorted((root / "corrupt" / "dark").iterdir())[:3]:
            f.write_bytes(CORRUPT_PNG)
        return "corrupt"
    if case == "npz_without_images":
        np.savez(root / "x.npz", pixels=np.zeros((20, 4, 4), np.uint8), labels=np.arange(20) % 2)
        return "x.npz"
    if case == "csv_missing_column":
        (root / "x.csv").write_text("review,label\nfine,1\n")
        return "x.csv"
    if case == "csv_mixed_labels":
        csv_file(root / "x.csv")
        with (root / "x.csv").open("a") as f:
            f.write("a fine film,5\n")
        return "x.csv"
    if case == "jsonl_mixed_labels":
        jsonl_file(root / "x.jsonl")
        with (root / "x.jsonl").open("a") as f:
            f.write('{"text": "fine", "label": "good"}\n')
        return "x.jsonl"
    raise AssertionError(case)


BAD: dict[str, list[str]] = {
    "empty_folder": ["is empty", "Give each class a folder of at least 10 images"],
    "single_class": ["only one class ('dark'); a classifier needs at least two"],
    "small_class": ["every class needs at least 10 examples", "'light' has 4"],
    "corrupt_files": ["'dark' has 7 (3 more unreadable)"],
    "npz_without_images": ["has no 'images' array (it has 'labels', 'pixels')", "numpy.savez"],
    "csv_missing_column": ["has no 'text' column (it has 'review', 'label')"],
    "csv_mixed_labels": ["the labels mix types", "'5' on line 42", "'neg' on line 2"],
    "jsonl_mixed_labels": ["the labels mix types", "'good' on line 41"],
}


@pytest.mark.parametrize("command", ["plan", "run", "evaluate"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_data_is_refused_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, command: str
) -> None:
    monkeypatch.setenv("ARCHSMITH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.chdir(tmp_path)
    name = _bad(tmp_path, case)
    (tmp_path / "model.py").write_text(LINEAR)
    argv = {
        "plan": ["plan", f"a classifier for ./{name}"],
        "run": ["run", f"a classifier for ./{name}", "--llm", "offline", "--iterations", "1"],
        "evaluate": ["evaluate", "model.py", "--dataset", name],
    }[command]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    for fragment in BAD[case]:
        assert fragment in message, message
    assert not (tmp_path / "home" / "runs").exists()  # nothing was started
