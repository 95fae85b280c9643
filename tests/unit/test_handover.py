"""The host's handover: a program leaves a job's work directory only as checked bytes.

The work directory is the candidate's; these tests plant there what a hostile candidate would and
check that the host neither follows, blocks on, nor trusts it.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from archsmith.scoring.format import PROGRAM_FILE, TENSORS_FILE, ProgramError
from archsmith.scoring.handover import graph_difference, take_program
from archsmith.scoring.program import export_program

LIMIT = 1 << 24


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """A work directory holding the program of a small model with a buffer."""
    work = tmp_path / "work"
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3)).eval()
    export_program(model, torch.randn(2, 4), work)
    return work


@pytest.fixture
def models(tmp_path: Path) -> Path:
    return tmp_path / "models"


def test_a_valid_program_is_copied_with_its_size_from_the_header(job: Path, models: Path) -> None:
    taken = take_program(job, models, max_tensor_bytes=LIMIT)
    assert taken.directory.parent == models
    # Every number: linear weight and bias, batch norm's two parameters, and its buffers
    # (running mean and var; the batch counter, an int64).
    assert taken.params == 4 * 3 + 3 + 3 + 3 + 3 + 3 + 1
    assert taken.size_bytes == (4 * 3 + 3 + 3 + 3) * 4 + 3 * 4 * 2 + 8
    for name in (PROGRAM_FILE, TENSORS_FILE):
        assert (taken.directory / name).read_bytes() == (job / name).read_bytes()
        # The host's copy does not change when the job's file does.
        (job / name).write_bytes(b"changed")
        assert (taken.directory / name).read_bytes() != b"changed"


@pytest.mark.parametrize("name", [PROGRAM_FILE, TENSORS_FILE])
@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_links_planted_by_the_job_are_not_followed(
    job: Path, models: Path, tmp_path: Path, name: str, relative: bool
) -> None:
    secret = tmp_path / "host-secret"
    secret.write_bytes((job / name).read_bytes())  # even a valid file is not read through a link
    (job / name).unlink()
    (job / name).symlink_to(os.path.relpath(secret, job) if relative else secret)
    with pytest.raises(ProgramError, match="cannot open"):
        take_program(job, models, max_tensor_bytes=LIMIT)
    assert not models.exists() or not any(models.iterdir())


def test_a_fifo_is_refused_without_blocking(job: Path, models: Path) -> None:
    (job / TENSORS_FILE).unlink()
    os.mkfifo(job / TENSORS_FILE)
    with pytest.raises(ProgramError, match="not a regular file"):
        take_program(job, models, max_tensor_bytes=LIMIT)


def test_weights_larger_than_the_limit_are_refused_unread(job: Path, models: Path) -> None:
    with pytest.raises(ProgramError, match="at most 100 bytes"):
        take_program(job, models, max_tensor_bytes=100)


def _rewrite_header(path: Path, change: object) -> None:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    change(header)  # type: ignore[operator]
    body = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body)) + body + raw[8 + length :])


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda h: h["1.weight"].update(shape=[4, 4]), "does not fit its shape"),
        (
            lambda h: (
                h["1.weight"].update(data_offsets=[0, 48])
                or h["1.bias"].update(data_offsets=[0, 12])
            ),
            "overlap or leave gaps",
        ),
        (lambda h: h["1.weight"].update(dtype="OBJECT"), "unsupported dtype"),
        (lambda h: h["1.weight"].update(shape=[-1, 4]), "malformed shape"),
        (
            lambda h: h.update(extra={"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}),
            "exactly the program's tensors",
        ),
    ],
    ids=["size", "overlap", "dtype", "negative", "extra"],
)
def test_a_forged_safetensors_header_is_refused(
    job: Path, models: Path, change: object, why: str
) -> None:
    _rewrite_header(job / TENSORS_FILE, change)
    with pytest.raises(ProgramError, match=why):
        take_program(job, models, max_tensor_bytes=LIMIT)


def test_a_header_longer_than_the_file_is_refused(job: Path, models: Path) -> None:
    path = job / TENSORS_FILE
    path.write_bytes(struct.pack("<Q", 1 << 40) + path.read_bytes()[8:])
    with pytest.raises(ProgramError, match="larger than the file"):
        take_program(job, models, max_tensor_bytes=LIMIT)


def test_a_missing_program_says_so(job: Path, models: Path) -> None:
    (job / PROGRAM_FILE).unlink()
    with pytest.raises(ProgramError, match=r"cannot open program\.json"):
        take_program(job, models, max_tensor_bytes=LIMIT)


# -- graph_difference: one program from validation to the end -----------------------------------


class _Scaled(nn.Module):
    """A linear layer and a constant it multiplies by (export lifts the plain tensor)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.scale = torch.full((3,), scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.scale


def _taken(tmp_path: Path, name: str, model: nn.Module) -> Any:
    work = tmp_path / name
    export_program(model.eval(), torch.randn(2, 4), work)
    return take_program(work, tmp_path / "models", max_tensor_bytes=LIMIT)


def test_the_same_graph_with_other_weights_is_the_same_program(tmp_path: Path) -> None:
    torch.manual_seed(0)
    first = _taken(tmp_path, "a", _Scaled(2.0))
    trained = _taken(tmp_path, "b", _Scaled(2.0))  # new random weights: training changes them
    assert graph_difference(trained.directory, first.directory) is None


@pytest.mark.parametrize(
    ("other", "said"),
    [
        (lambda: nn.Sequential(nn.Linear(4, 3), nn.ReLU()), "operators"),
        (lambda: _Scaled(3.0), "constants in its graph differ"),
    ],
    ids=["another-graph", "another-constant"],
)
def test_another_graph_or_other_constants_are_another_program(
    tmp_path: Path, other: Any, said: str
) -> None:
    validated = _taken(tmp_path, "a", _Scaled(2.0))
    trained = _taken(tmp_path, "b", other())
    why = graph_difference(trained.directory, validated.directory)
    assert why is not None
    assert said in why


def test_tensors_of_another_shape_are_another_program(tmp_path: Path) -> None:
    validated = _taken(tmp_path, "a", _Scaled(2.0))
    bigger = _taken(tmp_path, "b", _Scaled(2.0))
    # the same graph text, a tensor of another shape: forge the trained copy's header
    raw = (bigger.directory / TENSORS_FILE).read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    name = next(n for n in header if n.endswith("weight"))
    header[name]["shape"] = [6, 2]
    encoded = json.dumps(header).encode()
    (bigger.directory / TENSORS_FILE).write_bytes(
        struct.pack("<Q", len(encoded)) + encoded + raw[8 + length :]
    )
    why = graph_difference(bigger.directory, validated.directory)
    assert why is not None
    assert "dtypes or shapes differ" in why
