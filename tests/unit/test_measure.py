"""The measuring process's operations (``scoring.measure``) run in this process on programs
exported here: what a sandbox's inspect, score and speed jobs compute, checked without a sandbox.

The sandboxed path (a job, the host's handover) is tested in tests/integration; these are the
fast lane's proof that the figures themselves are right.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from archsmith.data.prepared import prepare_dataset
from archsmith.data.prepared_format import load_prepared, save_prepared
from archsmith.scoring.candidate import export_checked
from archsmith.scoring.common import ContractError
from archsmith.scoring.measure import op_inspect, op_score, op_speed, op_verify
from archsmith.scoring.warmup import warm_up

DIGITS: dict[str, Any] = {"input_shape": [1, 8, 8], "num_classes": 10}
#: The class the constant model always answers.
ANSWER = 3


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small prepared digits file (200 training, 120 validation samples, the 359 test ones)."""
    cache = tmp_path_factory.mktemp("datasets")
    return prepare_dataset("digits", None, cache, max_train=200, max_val=120)


def _exported(model: nn.Module, work_dir: Path, shape: tuple[int, ...] = (1, 8, 8)) -> Path:
    torch.manual_seed(0)
    export_checked(model.eval(), torch.randn(2, *shape), work_dir)
    return work_dir


def _constant(num_classes: int = 10, inputs: int = 64) -> nn.Module:
    """A linear model whose weights are zero and whose bias picks ``ANSWER``: every sample is
    classified as ``ANSWER``, so its accuracy on a split is that class's share of it."""
    linear = nn.Linear(inputs, num_classes)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
        linear.bias[ANSWER % num_classes] = 5.0
    return nn.Sequential(nn.Flatten(), linear)


def test_inspect_counts_what_the_program_holds(tmp_path: Path) -> None:
    work = _exported(_constant(), tmp_path)
    found = op_inspect(DIGITS, {"device": "cpu"}, work)
    assert found["output_shape"] == found["expected_shape"] == [2, 10]
    assert found["matches"] is True
    assert found["params"] == 64 * 10 + 10
    assert found["size_mb"] == pytest.approx(650 * 4 / 1e6)
    assert found["flops_per_sample"] == 2 * 64 * 10
    assert "_candidate_error" not in found


def test_inspect_reports_a_wrong_head_as_the_candidates_error(tmp_path: Path) -> None:
    work = _exported(_constant(num_classes=3), tmp_path)
    found = op_inspect(DIGITS, {"device": "cpu"}, work)
    assert found["matches"] is False
    assert found["_candidate_error"]["type"] == "ShapeMismatch"
    assert "[2, 3]" in found["_candidate_error"]["message"]


@pytest.fixture
def constant_job(tmp_path: Path, digits: Path) -> tuple[Any, Path, dict[str, Any]]:
    """(the prepared data, the constant model's program, a measuring job on the data)."""
    job = {"device": "cpu", "dataset_path": str(digits)}
    return load_prepared(digits), _exported(_constant(), tmp_path), job


def test_score_of_a_one_class_model_is_that_classs_share_of_each_split(
    constant_job: tuple[Any, Path, dict[str, Any]],
) -> None:
    data, work, job = constant_job
    found = op_score({"splits": ["train", "val", "test"], "batch_size": 32}, job, work)
    for split, y in (("train", data.y_train), ("val", data.y_val), ("test", data.y_test)):
        assert found[f"{split}_samples"] == len(y)
        assert found[f"{split}_accuracy"] == pytest.approx(float(np.mean(y == ANSWER))), split
        assert found[f"{split}_loss"] is not None
    assert (found["train_samples"], found["val_samples"], found["test_samples"]) == (200, 120, 359)
    assert found["diverged"] is False
    assert found["params"] == 650


def test_score_refuses_a_program_that_takes_other_inputs(tmp_path: Path, digits: Path) -> None:
    work = _exported(_constant(inputs=16), tmp_path, shape=(1, 4, 4))
    with pytest.raises(ContractError, match=r"shape \[None, 1, 4, 4\]"):
        op_score({}, {"device": "cpu", "dataset_path": str(digits)}, work)


def test_speed_times_the_scored_program_and_checks_it_batch_by_batch(
    constant_job: tuple[Any, Path, dict[str, Any]],
) -> None:
    data, work, job = constant_job
    args = {"batch_size": 32, "min_seconds": 0.05, "latency_seconds": 0.02, "warmup": 1}
    found = op_speed(args, job, work)
    assert found["fps"] > 0
    assert found["images"] == found["passes"] * 120
    # Each figure carries its repeats, spread, method and threads (``scoring.timing``): on a CPU
    # the passes are charged CPU time over torch's threads, and the wall figure is kept beside.
    assert found["fps_repeats"] == found["passes"] >= 3
    assert found["fps_p10"] <= found["fps"] == found["fps_median"] <= found["fps_p90"]
    assert found["fps_spread"] >= 0
    assert found["fps_wall"] > 0
    assert found["fps_threads"] == torch.get_num_threads()
    assert "CPU time" in found["fps_method"]
    assert found["seconds"] > 0
    assert 0 < found["latency_p10_ms"] <= found["latency_ms"] <= found["latency_p90_ms"]
    assert found["latency_median_ms"] == found["latency_ms"]
    assert found["latency_repeats"] >= 20
    assert "p50" in found["latency_method"]
    assert "CPU time" in found["latency_method"]
    assert found["latency_wall_ms"] > 0
    # Batch-1 latency runs on one thread; torch's threads are the job's again afterwards.
    assert found["latency_threads"] == 1
    assert torch.get_num_threads() == found["fps_threads"]
    assert found["val_energy_source"] == "estimate"
    assert found["val_energy_j"] == pytest.approx(found["energy_per_image_j"] * 120)
    # The timed passes run the program that was scored, on the same batches.
    assert found["val_accuracy"] == pytest.approx(float(np.mean(data.y_val == ANSWER)))
    assert found["batch_consistency"]["samples"] == 8
    assert found["batch_consistency"]["max_abs_diff"] <= 1e-3


def test_warm_up_leaves_a_program_that_inspects(tmp_path: Path) -> None:
    """A warm sandbox's first export and inspection, here: the tiny CNN it exports is whole."""
    warm_up(tmp_path)
    found = op_inspect({"input_shape": [1, 8, 8], "num_classes": 2}, {"device": "cpu"}, tmp_path)
    assert found["matches"] is True
    assert found["params"] == (4 * 9 + 4) + 2 * 4 + (2 * 4 + 1) + (4 * 2 + 2)  # BN's buffers too


# -- the timed passes are the scored computation ---------------------------------------------------

#: A quick speed job: two or more timed passes of the 120 validation samples in batches of 32.
QUICK = {"batch_size": 32, "min_seconds": 0.2, "latency_seconds": 0.02, "warmup": 1}


def test_speed_reports_the_accuracy_of_its_own_timed_passes(
    tmp_path: Path, digits: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An honest program with a non-trivial answer: the speed job's accuracy is the score job's,
    and it comes from the timed passes, not from a scoring pass of its own."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))
    work = _exported(model, tmp_path)
    job = {"device": "cpu", "dataset_path": str(digits)}
    scored = op_score({"splits": ["val"], "batch_size": 32}, job, work)

    def no_scoring_pass(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the speed job scored the program in a pass of its own")

    monkeypatch.setattr("archsmith.training.evaluate", no_scoring_pass)
    timed = op_speed(QUICK, job, work)
    assert timed["passes"] >= 2
    assert timed["val_samples"] == scored["val_samples"] == 120
    assert timed["val_accuracy"] == scored["val_accuracy"]
    assert 0.0 < timed["val_accuracy"] < 1.0
    assert timed["pass_agreement"] == {
        "passes": timed["passes"],
        "max_samples_changed": 0,
        "allowed": 0,
    }


class _ChangesItsAnswer(nn.Module):
    """The constant model's answer until it has seen the split's short last batch (24 of the 120
    samples in batches of 32: only the timed passes end with it), another class from then on: a
    Python counter, which no exported program can hold."""

    def __init__(self) -> None:
        super().__init__()
        self.model = _constant()
        self.short_batches = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(x)
        if self.short_batches:
            out = out.roll(1, dims=1)
        self.short_batches += int(x.shape[0] == 24)
        return out


def _in_process(
    monkeypatch: pytest.MonkeyPatch, module: nn.Module, shape: list[int], dtype: str = "float32"
) -> None:
    """Measure ``module`` as if the loader had given it: bypasses the loader, whose allowlist
    refuses every program these tests need (one that writes a tensor or keeps a count)."""
    program = {
        "input": {"shape": [None, *shape], "dtype": dtype},
        "params": 0,
        "size_bytes": 0,
        "nodes": [],
        "tensors": {},
        "aliases": {},
    }
    monkeypatch.setattr(
        "archsmith.scoring.measure._program", lambda work_dir, device: (module.eval(), program)
    )


def test_speed_refuses_a_program_whose_passes_answer_otherwise(
    tmp_path: Path, digits: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _in_process(monkeypatch, _ChangesItsAnswer(), [1, 8, 8])
    with pytest.raises(ContractError, match=r"timed pass 2 of \d+ answered \d+ of 120 validation"):
        op_speed(QUICK, {"device": "cpu", "dataset_path": str(digits)}, tmp_path)


# -- the tripwire: a program's tensors and its inputs are the same after a job as before -----------


class _CountsItsCalls(nn.Module):
    """The constant model, counting its calls in a buffer it writes: its answers never change,
    but state outlives each call."""

    calls: torch.Tensor

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out: torch.Tensor = self.model(x)
        return out


class _WritesItsInput(nn.Module):
    """A linear model of every token but the last, which it changes in the batch it is given:
    its answers never change, but the split it is fed does."""

    def __init__(self, length: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(length - 1, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x[:, :-1].float())
        x[:, -1] += 1
        return out


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small prepared text file: sequences of 6 token ids, 2 classes. A text batch is a slice of
    the split, not a normalised copy, so a program that writes its input writes the split."""
    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[Any, Any]:
        return rng.integers(2, 50, (n, 6), dtype=np.int64), rng.integers(0, 2, n, dtype=np.int64)

    arrays = dict(zip(("x_train", "y_train"), split(40), strict=True))
    arrays |= dict(zip(("x_val", "y_val"), split(40), strict=True))
    arrays |= dict(zip(("x_test", "y_test"), split(20), strict=True))
    meta = {"name": "tokens", "task": "text_classification", "input_shape": [6], "num_classes": 2}
    meta |= {"class_names": ["a", "b"], "vocab_size": 50}
    return save_prepared(tmp_path_factory.mktemp("text") / "tokens.npz", arrays, meta)


def _verify_work_dir(work: Path) -> Path:
    """The files ``op_verify`` reads before it runs the program: no tensors in either."""
    import safetensors.torch

    for name in ("model.safetensors", "program.safetensors"):
        safetensors.torch.save_file({}, str(work / name))
    return work


def _run(op: str, args: dict[str, Any], job: dict[str, Any], work: Path) -> dict[str, Any]:
    """One measuring op as the runner calls it, with what each needs to run the program."""
    if op == "inspect":
        return op_inspect(args, job, work)
    if op == "score":
        return op_score({"splits": ["train", "val", "test"], "batch_size": 16}, job, work)
    if op == "speed":
        return op_speed({**QUICK, "batch_size": 16, "min_seconds": 0.02}, job, work)
    return op_verify({"format": "torchscript"}, job, _verify_work_dir(work))


OPS = ("inspect", "score", "speed", "verify")


@pytest.mark.parametrize("op", OPS)
def test_every_measuring_op_refuses_a_program_that_writes_its_own_tensor(
    op: str, tmp_path: Path, digits: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _CountsItsCalls(_constant())
    _in_process(monkeypatch, module, [1, 8, 8])
    job = {"device": "cpu", "dataset_path": str(digits)}
    with pytest.raises(ContractError, match=r"tensors changed while it was measured \(its calls\)"):
        _run(op, DIGITS, job, tmp_path)
    assert int(module.calls) > 0


@pytest.mark.parametrize("op", OPS)
def test_every_measuring_op_refuses_a_program_that_writes_its_input(
    op: str, tmp_path: Path, tokens: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _in_process(monkeypatch, _WritesItsInput(6, 2), [6], dtype="int64")
    args = {"input_shape": [6], "num_classes": 2, "task": "text_classification", "vocab_size": 50}
    job = {"device": "cpu", "dataset_path": str(tokens)}
    fed = "dummy batch" if op == "inspect" else "validation samples"
    with pytest.raises(ContractError, match=rf"tensors changed while it was measured.*the {fed}"):
        _run(op, args, job, tmp_path)


def test_the_tripwire_passes_an_honest_program_that_holds_every_kind_of_tensor(
    tmp_path: Path, digits: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parameters, buffers and plain tensor attributes are read, not written: no false alarm."""
    module = _CountsItsCalls(_constant())
    module.forward = module.model.forward  # type: ignore[method-assign]
    module.constant = torch.ones(3)  # a plain attribute, as an fx constant is
    _in_process(monkeypatch, module, [1, 8, 8])
    found = op_speed(QUICK, {"device": "cpu", "dataset_path": str(digits)}, tmp_path)
    assert found["pass_agreement"]["max_samples_changed"] == 0
