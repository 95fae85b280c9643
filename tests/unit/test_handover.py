"""The host's handover: a program leaves a job's work directory only as checked bytes.

The work directory is the candidate's; these tests plant there what a hostile candidate would and
check that the host neither follows, blocks on, nor trusts it.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import torch
from torch import nn

from archsmith.scoring.format import PROGRAM_FILE, TENSORS_FILE, ProgramError
from archsmith.scoring.handover import take_program
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
    assert taken.params == 4 * 3 + 3 + 3 + 3  # linear weight and bias, batch norm's two
    # Parameters and the buffers (running mean and var, float32; the batch counter, int64).
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
