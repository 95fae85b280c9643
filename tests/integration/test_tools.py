"""The sandboxed tools end to end on real data: digits always, malaria from ../shared/data.

They run in the warm local sandbox that runs use (``runtime``, on the module's shared home): the
backend is not the point here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from archsmith.config import Settings
from archsmith.data.registry import DatasetNotFoundError
from archsmith.memory.store import ToolCallRecord
from archsmith.sandbox.local import LocalSandbox
from archsmith.tools import build_tools
from archsmith.tools.check_shapes import check_shapes
from archsmith.tools.count_params import count_params
from archsmith.tools.measure_energy import measure_energy
from archsmith.tools.runtime import ToolRuntime
from archsmith.tools.schemas import (
    CandidateInput,
    CheckShapesInput,
    CheckShapesOutput,
    MeasureEnergyInput,
    TrainModelInput,
    TrainModelOutput,
)
from archsmith.tools.train_model import train_model

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

LINEAR = """
import torch.nn as nn

def build_model(input_shape, num_classes):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))
"""

CNN = """
import torch.nn as nn

def build_model(input_shape, num_classes):
    c = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
    )
"""

EXPLODES = """
import torch
import torch.nn as nn

class Boom(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.fc = nn.Linear(64, n)

    def forward(self, x):
        return self.fc(x.flatten(1)) * float("inf")

def build_model(input_shape, num_classes):
    return Boom(num_classes)
"""

DIGITS = {"input_shape": [1, 8, 8], "num_classes": 10}


def test_check_shapes_ok_and_mismatch(runtime: ToolRuntime) -> None:
    good = check_shapes(runtime, CheckShapesInput(code=LINEAR, **DIGITS))
    assert good.ok
    assert good.output_shape == [2, 10]
    assert good.matches
    bad = check_shapes(runtime, CheckShapesInput(code=LINEAR, input_shape=[1, 8, 8], num_classes=3))
    assert bad.ok  # the model builds and runs, and its head has 3 outputs: that matches
    wrong = LINEAR.replace("num_classes))", "num_classes + 1))")
    mismatch = check_shapes(runtime, CheckShapesInput(code=wrong, **DIGITS))
    assert not mismatch.ok
    assert mismatch.error is not None
    assert mismatch.error.type == "ShapeMismatch"
    assert mismatch.output_shape == [2, 11]


def test_candidate_errors_are_results(runtime: ToolRuntime) -> None:
    syntax = check_shapes(runtime, CheckShapesInput(code="def build_model(:\n", **DIGITS))
    assert syntax.error is not None
    assert syntax.error.type == "SyntaxError"
    assert syntax.error.line == 1
    missing = check_shapes(runtime, CheckShapesInput(code="x = 1\n", **DIGITS))
    assert missing.error is not None
    assert missing.error.type == "ContractError"
    assert "build_model" in missing.error.message
    broken = LINEAR.replace("nn.Flatten(), ", "nn.Flatten(), nn.Linear(3, 3), ")
    shape_err = check_shapes(runtime, CheckShapesInput(code=broken, **DIGITS))
    assert shape_err.error is not None
    assert shape_err.error.type == "RuntimeError"
    assert "shapes cannot be multiplied" in shape_err.error.message


def test_count_params_and_flops(runtime: ToolRuntime) -> None:
    out = count_params(runtime, CandidateInput(code=LINEAR, **DIGITS))
    assert out.ok, out.error
    assert out.params == 64 * 10 + 10
    assert out.trainable_params == out.params
    assert out.size_mb == pytest.approx(650 * 4 / 1e6)
    assert out.flops_per_sample == 2 * 64 * 10


def test_train_then_measure_on_digits(runtime: ToolRuntime) -> None:
    trained = train_model(
        runtime, TrainModelInput(code=CNN, dataset="digits", epochs=4, seed=1, **DIGITS)
    )
    assert trained.ok, trained.error
    assert len(trained.history) == 4
    assert trained.epochs_completed == 4
    assert trained.train_accuracy is not None
    assert trained.val_accuracy is not None
    # Better than chance (0.1) after four short epochs; the loss falls.
    assert trained.val_accuracy > 0.3
    assert trained.history[-1].train_loss is not None
    assert trained.history[0].train_loss is not None
    assert trained.history[-1].train_loss < trained.history[0].train_loss
    assert trained.train_energy_source == "estimate"
    assert trained.train_energy_j is not None
    assert trained.train_energy_j > 0
    assert trained.model_dir is not None
    assert {p.name for p in trained.model_dir.iterdir()} == {"program.json", "program.safetensors"}
    # The trained program's numbers, counted from its file: the CNN's parameters and its batch
    # norms' buffers (running mean and variance, the batch counter).
    bn = 2 * 32 + 1 + 2 * 64 + 1
    assert trained.params == 32 * 9 + 32 + 2 * 32 + 64 * 32 * 9 + 64 + 2 * 64 + 64 * 10 + 10 + bn
    # The 1,797 digits: a 20 % test carve-out (359), then the rest 8:2, stratified.
    assert trained.train_samples == 1150
    assert trained.val_samples == 288

    measured = measure_energy(
        runtime, MeasureEnergyInput(dataset="digits", model_dir=trained.model_dir, **DIGITS)
    )
    assert measured.ok, measured.error
    assert measured.fps is not None
    assert measured.fps > 0
    assert measured.latency_ms is not None
    assert measured.latency_ms > 0
    assert measured.energy_per_image_j is not None
    assert measured.energy_per_image_j > 0
    assert measured.val_energy_source == "estimate"
    assert measured.val_energy_kwh_pue == pytest.approx(1.58 * measured.val_energy_j / 3.6e6)
    # The same program on the same validation split, in the same batches: the same accuracy.
    assert measured.val_accuracy == pytest.approx(trained.val_accuracy, abs=1e-6)


def test_training_is_reproducible_with_a_seed(runtime: ToolRuntime) -> None:
    a = train_model(
        runtime, TrainModelInput(code=CNN, dataset="digits", epochs=1, seed=3, **DIGITS)
    )
    b = train_model(
        runtime, TrainModelInput(code=CNN, dataset="digits", epochs=1, seed=3, **DIGITS)
    )
    assert a.ok
    assert b.ok
    assert a.val_accuracy == b.val_accuracy
    assert a.train_loss == b.train_loss


RANDOM_WIDTH = """
import torch
import torch.nn as nn

def build_model(input_shape, num_classes):
    width = int(torch.randint(4, 64, ()))  # drawn from the seed build_model is called under
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, num_classes)
    )
"""


def test_training_refills_the_validated_program(runtime: ToolRuntime) -> None:
    """One export per candidate: training validates the candidate when nothing did before it, and
    the training job fills the validated graph with its trained tensors; the same seed trains the
    same model."""
    records: list[ToolCallRecord] = []
    runtime.on_call = records.append

    def trained(code: str, seed: int) -> tuple[TrainModelOutput, dict[str, Any]]:
        out = train_model(
            runtime, TrainModelInput(code=code, dataset="digits", epochs=2, seed=seed, **DIGITS)
        )
        train = [r for r in records if r.tool == "train"][-1]
        return out, (train.result or {}).get("export") or {}

    first, exported = trained(CNN, 2)
    assert first.ok, first.error
    assert exported["refilled"] is True
    assert exported["check"]["passed"]
    again, refilled = trained(CNN, 2)
    assert again.ok, again.error
    assert refilled["refilled"] is True
    assert again.val_accuracy == first.val_accuracy
    assert again.val_loss == first.val_loss
    assert again.params == first.params


def test_a_model_whose_structure_depends_on_the_seed_fails_with_the_reason(
    runtime: ToolRuntime,
) -> None:
    """The validated graph (seed 0) does not fit the trained model (seed 7): the training job
    exports again, and the host refuses a program that is not the validated one."""
    widths = []
    for seed in (0, 7):
        torch.manual_seed(seed)
        widths.append(int(torch.randint(4, 64, ())))
    assert widths[0] != widths[1]
    assert check_shapes(runtime, CheckShapesInput(code=RANDOM_WIDTH, **DIGITS)).ok
    out = train_model(
        runtime, TrainModelInput(code=RANDOM_WIDTH, dataset="digits", epochs=1, seed=7, **DIGITS)
    )
    assert not out.ok
    assert out.error is not None
    assert out.error.type == "ProgramMismatch"
    assert "dtypes or shapes differ" in out.error.message
    assert out.model_dir is None


def test_diverged_training_is_reported(runtime: ToolRuntime) -> None:
    out = train_model(runtime, TrainModelInput(code=EXPLODES, dataset="digits", epochs=3, **DIGITS))
    assert not out.ok
    assert out.diverged
    assert out.error is not None
    assert out.error.type == "NonFiniteLoss"
    assert out.epochs_completed == 1


def test_time_budget_stops_training(runtime: ToolRuntime) -> None:
    out = train_model(
        runtime,
        TrainModelInput(code=CNN, dataset="digits", epochs=1000, time_budget_s=1.0, **DIGITS),
    )
    assert out.ok, out.error
    assert out.stopped_by_budget
    assert out.epochs_completed < 1000


def test_arguments_must_match_the_dataset(runtime: ToolRuntime) -> None:
    out = train_model(
        runtime,
        TrainModelInput(code=CNN, dataset="digits", input_shape=[3, 32, 32], num_classes=10),
    )
    assert not out.ok
    assert out.error is not None
    assert out.error.type == "ArgumentError"


def test_unknown_dataset_raises(runtime: ToolRuntime) -> None:
    with pytest.raises(DatasetNotFoundError, match="digits"):
        train_model(runtime, TrainModelInput(code=CNN, dataset="no-such-data", **DIGITS))


def test_tools_as_langchain_tools(runtime: ToolRuntime) -> None:
    tools = {t.name: t for t in build_tools(runtime)}
    assert set(tools) == {
        "check_shapes",
        "count_params",
        "train_model",
        "measure_energy",
        "rulebook_advice",
    }
    out = CheckShapesOutput.model_validate(tools["check_shapes"].invoke({"code": LINEAR, **DIGITS}))
    assert out.ok
    trained = TrainModelOutput.model_validate(
        tools["train_model"].invoke({"code": LINEAR, "dataset": "digits", "epochs": 1, **DIGITS})
    )
    assert trained.ok
    schema = tools["train_model"].tool_call_schema.model_json_schema()
    assert {"code", "input_shape", "num_classes", "dataset"} <= set(schema["properties"])
    # measure_energy measures a trained model's program and takes no code at all.
    schema = tools["measure_energy"].tool_call_schema.model_json_schema()
    assert {"model_dir", "input_shape", "num_classes", "dataset"} <= set(schema["properties"])
    assert "code" not in schema["properties"]


@pytest.mark.slow
def test_malaria_small_cnn(warm_local_sandbox: LocalSandbox, tmp_path: Path) -> None:
    """2,000 real malaria images (3x32x32) trained for an epoch (0.644 validation accuracy on
    500, here), scored and timed: the only test of the tools on real images of the paper's
    size. About 30 s alone, 50 s beside another worker."""
    if not (SHARED / "malaria_rgb32_saugatapaul.npz").is_file():
        pytest.skip(f"real malaria data not found in {SHARED}")
    settings = Settings(home=tmp_path)
    runtime = ToolRuntime(warm_local_sandbox, settings, device="cpu", data_dir=SHARED)
    shape = {"input_shape": [3, 32, 32], "num_classes": 2}
    trained = train_model(
        runtime,
        TrainModelInput(
            code=CNN, dataset="malaria", epochs=1, max_train=2000, max_val=500, **shape
        ),
    )
    assert trained.ok, trained.error
    assert trained.val_accuracy is not None
    assert trained.val_accuracy > 0.6, trained.val_accuracy
    assert trained.model_dir is not None
    measured = measure_energy(
        runtime,
        MeasureEnergyInput(dataset="malaria", model_dir=trained.model_dir, max_val=500, **shape),
    )
    assert measured.ok, measured.error
    assert measured.fps is not None
    assert measured.fps > 0


@pytest.mark.smoke
def test_a_candidate_told_its_data_runs_in_two_warm_sandboxes(
    warm_local_sandbox: LocalSandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``expect_data``: validation starts the warm sandboxes with the data training and scoring
    read, so a whole candidate (build, inspect, train, score, speed) needs one of each kind.

    The fast lane's real sandbox job (``smoke``): every job of a candidate, both sides of the
    sealed scoreboard, in the sandbox runs use by default. An honest candidate's results keep
    every field (``sandbox.bounds`` lists what the runner writes).
    """
    caplog.set_level(logging.WARNING, logger="archsmith.sandbox.bounds")
    settings = Settings(home=tmp_path / "home", job_memory_mb=4096)
    runtime = ToolRuntime(warm_local_sandbox, settings, device="cpu")
    records: list[ToolCallRecord] = []
    runtime.on_call = records.append
    runtime.expect_data(runtime.prepare("digits"))
    assert check_shapes(runtime, CheckShapesInput(code=CNN, **DIGITS)).ok
    trained = train_model(
        runtime, TrainModelInput(code=CNN, dataset="digits", epochs=1, seed=1, **DIGITS)
    )
    assert trained.ok, trained.error
    measured = measure_energy(
        runtime, MeasureEnergyInput(dataset="digits", model_dir=trained.model_dir, **DIGITS)
    )
    assert measured.ok, measured.error
    assert [r.tool for r in records] == ["build", "inspect", "train", "score", "speed"]
    assert not [r.message for r in caplog.records if r.name == "archsmith.sandbox.bounds"]
    spool = settings.jobs_dir.resolve()
    mine = [b for b in warm_local_sandbox._boxes if b.key.spool == spool and not b.dead]
    assert sorted(b.key.kind for b in mine) == ["candidate", "measuring"]
