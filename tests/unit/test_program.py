"""The program format: what the measuring process loads instead of the candidate's code.

Honest models round-trip exactly; everything a forged program could try (a Python function for an
operator, a file-reading or state-keeping operator, a malformed argument, a link or a FIFO where a
file should be) is refused with a reason, before anything runs.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn

from archsmith.scoring.format import PROGRAM_FILE, TENSORS_FILE, ProgramError
from archsmith.scoring.program import export_program, load_program, resolve_operator


class ResNetish(nn.Module):
    """Batch norm, an in-place ReLU, a residual, a non-persistent buffer, dropout, view(size(0))."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(8, 5)
        self.register_buffer("scale", torch.tensor(0.5), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn(self.c1(x)))
        y = y + self.c2(y) * self.scale
        y = F.adaptive_avg_pool2d(y, 1).view(x.size(0), -1)
        return self.fc(self.drop(y))


class TextModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(100, 8)
        self.gru = nn.GRU(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.emb(x))
        return self.fc(out[:, -1])


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 16)
        self.b.weight = self.a.weight
        self.out = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.b(self.a(x.flatten(1))), approximate="tanh")
        return self.out(h + torch.zeros(x.shape[0], 16, device=x.device))


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:  # a Python branch on a tensor's value
            return self.fc(x.flatten(1))
        return -self.fc(x.flatten(1))


def _roundtrip(model: nn.Module, example: torch.Tensor, tmp_path: Path) -> nn.Module:
    torch.manual_seed(0)
    model.eval()
    export_program(model, example, tmp_path)
    program, _ = load_program(tmp_path)
    return program


@pytest.mark.parametrize(
    ("model", "shape", "ints"),
    [
        (ResNetish(), (3, 8, 8), False),
        (TextModel(), (12,), True),
        (Tied(), (1, 4, 4), False),
    ],
    ids=["cnn", "text", "tied"],
)
def test_honest_models_round_trip_at_any_batch_size(
    model: nn.Module, shape: tuple[int, ...], ints: bool, tmp_path: Path
) -> None:
    def batch(n: int) -> torch.Tensor:
        return torch.randint(0, 100, (n, *shape)) if ints else torch.randn(n, *shape)

    program = _roundtrip(model, batch(2), tmp_path)
    with torch.no_grad():
        for n in (1, 3, 17):
            x = batch(n)
            torch.testing.assert_close(program(x), model(x), atol=1e-6, rtol=1e-5, msg=str(n))


def test_parameters_are_counted_once_for_tied_weights(tmp_path: Path) -> None:
    model = Tied()
    export_program(model.eval(), torch.randn(2, 1, 4, 4), tmp_path)
    _, info = load_program(tmp_path)
    assert info["params"] == sum(p.numel() for p in model.parameters())  # tied: counted once
    assert info["aliases"] == {"b.weight": "a.weight"}


def test_a_python_branch_on_values_cannot_be_exported_and_says_why(tmp_path: Path) -> None:
    with pytest.raises(ProgramError, match=r"torch\.export cannot export the model") as info:
        export_program(DataDependent().eval(), torch.randn(2, 16), tmp_path)
    assert "no Python branches or loops on tensor values" in str(info.value)


# -- forged programs ------------------------------------------------------------------------------


@pytest.fixture
def honest(tmp_path: Path) -> Path:
    """A valid program of a small linear model."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    export_program(model, torch.randn(2, 4), tmp_path)
    return tmp_path


def _edit(directory: Path, change: Any) -> None:
    data = json.loads((directory / PROGRAM_FILE).read_text())
    change(data)
    (directory / PROGRAM_FILE).write_text(json.dumps(data))


def _first_op(data: dict[str, Any], op: str, args: list[Any] | None = None) -> None:
    data["nodes"][0]["op"] = op
    if args is not None:
        data["nodes"][0]["args"] = args
        data["nodes"][0]["kwargs"] = {}


@pytest.mark.parametrize(
    ("op", "why"),
    [
        ("torch.os.system", "not an ATen operator"),
        ("builtins.eval", "not of the form aten"),
        ("os.system.x", "not an ATen operator"),
        ("aten.from_file.default", "reads or writes files"),
        ("aten.add_.Tensor", "changes its inputs in place"),
        ("aten.copy_.default", "changes its inputs in place"),
        ("aten.no_such_op.default", "does not exist"),
        ("aten.__class__.mro", "does not exist"),
        ("higher_order.cond.default", "not an ATen operator"),
    ],
)
def test_forged_operators_are_refused_before_anything_runs(honest: Path, op: str, why: str) -> None:
    _edit(honest, lambda d: _first_op(d, op))
    with pytest.raises(ProgramError, match=why):
        load_program(honest)


def test_every_allowed_name_resolves_to_an_aten_overload_or_a_fixed_function() -> None:
    assert resolve_operator("aten.conv2d.default") is torch.ops.aten.conv2d.default
    assert resolve_operator("getitem").__module__ == "_operator"
    with pytest.raises(ProgramError):
        resolve_operator("getattr")


@pytest.mark.parametrize(
    "arg",
    [
        {"node": 5},  # a node not yet defined
        {"tensor": "not.there"},
        {"dtype": "__class__"},
        {"device": "cuda:x"},
        {"callable": "os.system"},
        functools.reduce(lambda inner, _: {"list": [inner]}, range(12), 1),
        float("inf"),
    ],
    ids=["forward-ref", "unknown-tensor", "bad-dtype", "bad-device", "unknown-tag", "deep", "inf"],
)
def test_malformed_arguments_are_refused(honest: Path, arg: Any) -> None:
    def change(d: dict[str, Any]) -> None:
        d["nodes"][0]["args"] = [arg]  # json writes inf as Infinity, which it reads back

    _edit(honest, change)
    with pytest.raises(ProgramError):
        load_program(honest)


def test_the_tensors_must_be_exactly_the_programs(honest: Path) -> None:
    _edit(honest, lambda d: d["tensors"].update({"extra": "parameter"}))
    with pytest.raises(ProgramError, match="does not hold the program's tensors"):
        load_program(honest)


def test_a_file_that_is_not_a_program_is_refused(honest: Path) -> None:
    (honest / PROGRAM_FILE).write_text(json.dumps({"format": "pt2", "version": 1}))
    with pytest.raises(ProgramError, match="not an archsmith-program"):
        load_program(honest)
    (honest / PROGRAM_FILE).write_text("{not json")
    with pytest.raises(ProgramError, match="not valid JSON"):
        load_program(honest)


def test_devices_in_a_program_become_the_measuring_device(tmp_path: Path) -> None:
    export_program(Tied().eval(), torch.randn(2, 1, 4, 4), tmp_path)
    data = json.loads((tmp_path / PROGRAM_FILE).read_text())
    assert '"device"' in json.dumps(data)  # torch.zeros(..., device=x.device) was recorded
    _edit(tmp_path, lambda d: json.loads(json.dumps(d).replace('"cpu"', '"cuda:7"')))
    program, _ = load_program(tmp_path, "cpu")
    assert program(torch.randn(3, 1, 4, 4)).shape == (3, 3)


@pytest.mark.parametrize("name", [PROGRAM_FILE, TENSORS_FILE])
@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_a_link_instead_of_a_program_file_is_not_followed(
    honest: Path, tmp_path_factory: pytest.TempPathFactory, name: str, relative: bool
) -> None:
    elsewhere = tmp_path_factory.mktemp("host") / "secret"
    elsewhere.write_bytes((honest / name).read_bytes())  # a valid file, reached through a link
    (honest / name).unlink()
    target = os.path.relpath(elsewhere, honest) if relative else str(elsewhere)
    (honest / name).symlink_to(target)
    with pytest.raises(ProgramError, match="cannot open"):
        load_program(honest)


def test_a_fifo_instead_of_the_program_does_not_hang(honest: Path) -> None:
    (honest / PROGRAM_FILE).unlink()
    os.mkfifo(honest / PROGRAM_FILE)
    done: list[BaseException] = []

    def load() -> None:
        try:
            load_program(honest)
        except ProgramError as e:
            done.append(e)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(10)
    assert done, "loading a FIFO blocked"
    assert "not a regular file" in str(done[0])


def test_a_huge_program_is_refused_unread(honest: Path) -> None:
    with (honest / PROGRAM_FILE).open("r+b") as f:
        f.truncate(64 << 20)  # sparse: no real disk used
    with pytest.raises(ProgramError, match=r"is 67108864 bytes; .* at most 33554432 bytes"):
        load_program(honest)


def test_a_model_that_diverges_exports_as_one_that_diverges() -> None:
    """The candidate's self-check: NaN and infinity where the model has them are agreement."""
    from archsmith.scoring.common import compare

    ref = np.array([[np.inf, 1.0], [np.nan, 2.0]])
    same = compare(lambda _x: ref.copy(), [torch.zeros(2)], [ref], same_nonfinite=True)
    assert same["passed"], same
    other = np.array([[-np.inf, 1.0], [np.nan, 2.0]])
    flipped = compare(lambda _x: other, [torch.zeros(2)], [ref], same_nonfinite=True)
    assert not flipped["passed"]
    assert "other non-finite outputs" in flipped["problem"]
    strict = compare(lambda _x: ref.copy(), [torch.zeros(2)], [ref])
    assert not strict["passed"]
    assert "non-finite outputs" in strict["problem"]


@pytest.mark.parametrize(
    ("forward", "why", "line"),
    [
        (
            "return self.fc(F.dropout(x.flatten(1), 0.5))",
            "different outputs for the same input",
            None,
        ),
        ("self.calls += 1\n        return self.fc(x.flatten(1))", "must have no state", None),
        (
            "if x.mean() > 0:\n            return self.fc(x.flatten(1))\n"
            "        return self.fc(-x.flatten(1))",
            "no Python branches or loops on tensor values",
            12,
        ),
    ],
    ids=["random", "stateful", "data-dependent"],
)
def test_the_candidate_hears_why_its_model_cannot_be_measured(
    tmp_path: Path, forward: str, why: str, line: int | None
) -> None:
    """The candidate's build step: each refusal is an ExportError saying what to change."""
    from archsmith.scoring.candidate import ExportError, op_build
    from archsmith.scoring.failures import describe

    code = (
        "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, n):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(16, n)\n"
        "        self.register_buffer('calls', torch.zeros(()))\n\n"
        "    def forward(self, x):\n"
        f"        {forward}\n\n"
        "def build_model(input_shape, num_classes):\n"
        "    return Net(num_classes)\n"
    )
    candidate = tmp_path / "candidate.py"
    candidate.write_text(code)
    with pytest.raises(ExportError, match=why) as info:
        op_build({"input_shape": [1, 4, 4], "num_classes": 3}, {}, str(candidate), tmp_path)
    # The line the code fixer is pointed at: the `if` on a tensor's value.
    assert describe(info.value, str(candidate), str(tmp_path))["line"] == line
