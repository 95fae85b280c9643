"""One export per candidate: the training job refills the validated program with trained tensors.

The refilled program must compute what the trained model computes; where it cannot (the model's
tensors changed shape, a constant differs, the file is not a program), the job exports again and
says why, so no candidate is measured as something it is not. The one-trace export and torch's
public two-step path give programs that compute the same.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from archsmith.scoring.candidate import export_checked
from archsmith.scoring.format import PROGRAM_FILE, VALIDATED_FILES, ProgramError
from archsmith.scoring.program import export_program, load_program, refill_program


class Net(nn.Module):
    """Batch norm (buffers), an in-place ReLU, tied weights and a tensor constant."""

    def __init__(self, width: int = 8, constant: float = 1.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.act = nn.ReLU(inplace=True)
        self.a = nn.Linear(width, width)
        self.b = nn.Linear(width, width)
        self.b.weight = self.a.weight
        self.fc = nn.Linear(width, 4)
        self.offset = torch.full((width,), constant)  # not a parameter or buffer: a constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn(self.conv(x))).mean((2, 3)) + self.offset
        return self.fc(self.b(self.a(y)))


def _trained(model: nn.Module) -> nn.Module:
    """``model`` after a few steps of training: every parameter and the BN statistics move."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(3):
        loss = model(torch.randn(8, 3, 6, 6)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _validated(model: nn.Module, tmp_path: Path) -> Path:
    """The model's exported program under the names a training job is given it by."""
    exported = tmp_path / "validated"
    export_program(model.eval(), torch.randn(2, 3, 6, 6), exported)
    given = tmp_path / "job"
    given.mkdir()
    for name, host_name in VALIDATED_FILES.items():
        shutil.copyfile(exported / host_name, given / name)
    return given


def test_a_refilled_program_computes_what_the_trained_model_computes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Net()
    given = _validated(model, tmp_path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _trained(model)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    info = refill_program(model, *(given / n for n in VALIDATED_FILES), tmp_path / "out")
    assert info["refilled"] is True
    program, header = load_program(tmp_path / "out")
    assert header["aliases"] == {"b.weight": "a.weight"}  # tied weights stay stored once
    with torch.no_grad():
        for n in (1, 5):
            x = torch.randn(n, 3, 6, 6)
            torch.testing.assert_close(program(x), model(x), atol=1e-6, rtol=1e-5)


def test_tensors_that_do_not_fit_the_program_are_refused_with_the_name(tmp_path: Path) -> None:
    given = _validated(Net(width=8), tmp_path)
    files = [given / n for n in VALIDATED_FILES]
    with pytest.raises(ProgramError, match=r"conv\.weight is torch\.float32 \[16, 3, 3, 3\]"):
        refill_program(Net(width=16), *files, tmp_path / "out")

    class Renamed(Net):
        def __init__(self) -> None:
            super().__init__()
            self.head = self.fc
            del self.fc

    with pytest.raises(ProgramError, match=r"no tensor 'fc\.weight'"):
        refill_program(Renamed(), *files, tmp_path / "out")
    with pytest.raises(ProgramError, match=r"conv\.weight is torch\.float64"):
        refill_program(Net().double(), *files, tmp_path / "out")


def test_a_validated_file_that_is_not_a_program_is_refused(tmp_path: Path) -> None:
    given = _validated(Net(), tmp_path)
    program_file, tensors_file = (given / n for n in VALIDATED_FILES)
    program_file.write_text("{not json")
    with pytest.raises(ProgramError, match="cannot be read"):
        refill_program(Net(), program_file, tensors_file, tmp_path / "out")
    program_file.unlink()
    program_file.symlink_to(tmp_path / "validated" / PROGRAM_FILE)
    with pytest.raises(ProgramError):  # a link is not followed
        refill_program(Net(), program_file, tensors_file, tmp_path / "out")


def test_the_training_export_refills_when_it_fits(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Net()
    given = _validated(model, tmp_path)
    _trained(model)
    info = export_checked(model, torch.randn(6, 3, 6, 6), given, given)
    assert info["refilled"] is True
    assert info["check"]["passed"]
    assert "refill_problem" not in info


@pytest.mark.parametrize(
    ("trained", "problem"),
    [
        (Net(width=16), r"conv\.weight is torch\.float32 \[16, 3, 3, 3\]"),
        # Same tensors, but the constant the validated program holds is no longer the model's.
        (Net(constant=5.0), r"outputs differ by"),
    ],
    ids=["other-shapes", "other-constant"],
)
def test_the_training_export_exports_again_when_the_program_does_not_fit(
    tmp_path: Path, trained: nn.Module, problem: str
) -> None:
    given = _validated(Net(), tmp_path)
    sample = torch.randn(6, 3, 6, 6)
    info = export_checked(trained, sample, given, given)
    assert "refilled" not in info
    assert info["check"]["passed"]
    assert re.search(problem, info["refill_problem"])
    program, _ = load_program(given)
    with torch.no_grad():
        torch.testing.assert_close(program(sample), trained.eval()(sample), atol=1e-5, rtol=1e-4)


def test_the_public_export_path_gives_a_program_that_computes_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A torch without the one-trace path exports through the public two-step path."""
    from archsmith.scoring import program as program_module

    assert program_module._one_trace_export() is not None  # this torch has the one-trace path
    torch.manual_seed(0)
    model = _trained(Net())
    export_program(model, torch.randn(2, 3, 6, 6), tmp_path / "one")
    monkeypatch.setattr(program_module, "_one_trace_export", lambda: None)
    export_program(model, torch.randn(2, 3, 6, 6), tmp_path / "two")
    one, _ = load_program(tmp_path / "one")
    two, _ = load_program(tmp_path / "two")
    x = torch.randn(3, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(one(x), two(x), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(one(x), model(x), atol=1e-6, rtol=1e-5)
