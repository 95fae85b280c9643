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

from archsmith.data import prepare_dataset
from archsmith.data.prepared_format import load_prepared
from archsmith.scoring.candidate import export_checked
from archsmith.scoring.common import ContractError
from archsmith.scoring.measure import op_inspect, op_score, op_speed
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
    assert found["fps"] == pytest.approx(found["images"] / found["seconds"])
    assert 0 < found["latency_ms"] <= found["latency_p90_ms"]
    assert found["latency_repeats"] >= 10
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
