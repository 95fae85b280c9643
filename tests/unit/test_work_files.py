"""The files a job's work directory lends it: declared outputs, created empty by the host and
forgotten when left empty, and the in-place save that libraries renaming their files need."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archsmith.files import written_in_place
from archsmith.sandbox.base import (
    SandboxJob,
    prepare_work_dir,
    settle_outputs,
    work_files,
)
from archsmith.scoring.format import JOB_OUTPUTS


def test_a_training_job_is_lent_its_outputs_and_its_inputs_read_only(tmp_path: Path) -> None:
    state = tmp_path / "state.pt"
    state.write_bytes(b"state")
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"w")
    job = SandboxJob(
        tool="train",
        code="x = 1\n",
        input_files={"train-state.pt": state, "validated.safetensors": weights},
    )
    wd = tmp_path / "wd"
    prepare_work_dir(job, wd)
    lent = dict(work_files(wd, "train"))
    assert lent == {
        "candidate.py": False,
        "job.json": False,
        "validated.safetensors": False,
        # An input that is also an output (a paused training resumed) is lent writable, as given.
        "train-state.pt": True,
        "result.json": True,
        "program.json": True,
        "program.safetensors": True,
    }
    assert (wd / "train-state.pt").read_bytes() == b"state"
    assert (wd / "program.json").stat().st_size == 0


def test_a_measuring_job_may_write_its_result_only(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    prepare_work_dir(SandboxJob(tool="score"), wd)
    assert [n for n, writable in work_files(wd, "score") if writable] == ["result.json"]
    assert "score" not in JOB_OUTPUTS


def test_outputs_left_empty_are_no_files_and_written_ones_stay(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    prepare_work_dir(SandboxJob(tool="export", code="x = 1\n"), wd)
    (wd / "model.onnx").write_bytes(b"onnx")
    settle_outputs(wd, "export")
    assert sorted(p.name for p in wd.iterdir()) == ["candidate.py", "job.json", "model.onnx"]


def test_written_in_place_keeps_the_file_and_leaves_no_scratch(tmp_path: Path) -> None:
    target = tmp_path / "program.safetensors"
    target.write_bytes(b"old")
    inode = target.stat().st_ino
    with written_in_place(target) as scratch:
        # As safetensors saves: a temporary file renamed over the path it was given.
        temporary = tmp_path / "save.tmp"
        temporary.write_bytes(b"new bytes")
        os.replace(temporary, scratch)
    assert target.read_bytes() == b"new bytes"
    assert target.stat().st_ino == inode  # the same file: a bound one would still be bound
    assert [p.name for p in tmp_path.iterdir()] == ["program.safetensors"]


def test_a_failed_save_changes_nothing_and_leaves_no_scratch(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")

    def save() -> None:
        with written_in_place(target) as scratch:
            scratch.write_bytes(b"half")
            raise RuntimeError("save failed")

    with pytest.raises(RuntimeError, match="save failed"):
        save()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]
