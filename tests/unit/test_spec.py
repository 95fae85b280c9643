"""TaskSpec: the paper's defaults, its symbols, and clear rejection of invalid values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from archsmith.errors import InputError, format_validation_error
from archsmith.spec import PAPER_DEFAULTS, TaskKind, TaskSpec, load_spec

# Section "Experimental analysis and results" of the LEMONADE paper, symbol by symbol.
PAPER = {
    "PT_Acc": 0.0,
    "PV_Acc": 1.0,
    "TT_Acc": 0.99,
    "TV_Acc": 0.99,
    "PF": 0.0,
    "TF": 14000.0,
    "PT_E": 0.0,
    "TT_E": 1e-3,
    "PV_E": 0.0,
    "TV_E": 1e-3,
    "OT": 0.10,
    "UT": 0.05,
}


def test_defaults_are_the_papers(spec_data: dict[str, Any]) -> None:
    spec = TaskSpec.model_validate(spec_data)
    by_symbol = {sym: getattr(spec, field) for field, sym in TaskSpec.symbols().items()}
    for symbol, value in PAPER.items():
        assert by_symbol[symbol] == value, symbol
    assert (spec.weight_accuracy, spec.weight_energy, spec.weight_fps) == (1.0, 0.0, 0.0)
    assert spec.max_params is None
    assert spec.max_latency_ms is None
    assert spec.max_model_size_mb is None
    assert spec.task is TaskKind.IMAGE_CLASSIFICATION


def test_every_table2_user_parameter_has_a_field_carrying_its_symbol() -> None:
    symbols = TaskSpec.symbols()
    wanted = set(PAPER) | {"W_A", "W_E", "W_F"}
    assert wanted == set(symbols.values())
    assert symbols["val_accuracy_threshold"] == "TV_Acc"
    assert symbols["val_accuracy_priority"] == "PV_Acc"
    assert symbols["fps_threshold"] == "TF"
    assert symbols["fps_priority"] == "PF"
    assert symbols["overfit_threshold"] == "OT"
    assert symbols["underfit_threshold"] == "UT"
    assert symbols["weight_accuracy"] == "W_A"
    assert symbols["weight_energy"] == "W_E"
    assert symbols["weight_fps"] == "W_F"
    assert set(PAPER_DEFAULTS) <= set(symbols)


def test_json_round_trip(spec_data: dict[str, Any]) -> None:
    spec = TaskSpec.model_validate({**spec_data, "max_params": 100_000, "weight_fps": 0.2})
    again = TaskSpec.model_validate_json(spec.model_dump_json())
    assert again == spec
    assert again.input_shape == (3, 32, 32)


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        TaskSpec.model_validate(data)
    return format_validation_error(info.value, TaskSpec)


@pytest.mark.parametrize(
    ("field", "value", "expect_range"),
    [
        ("val_accuracy_threshold", -0.1, "[0, 1]"),
        ("train_accuracy_threshold", 1.5, "[0, 1]"),
        ("overfit_threshold", -0.2, "[0, 1]"),
        ("val_accuracy_priority", 1.5, "[0, 1]"),
        ("train_accuracy_priority", -0.5, "[0, 1]"),
        ("fps_priority", 2.0, "[0, 1]"),
        ("train_energy_priority", -1.0, "[0, 1]"),
        ("weight_fps", 1.2, "[0, 1]"),
        ("fps_threshold", -5.0, "(> 0)"),
        ("fps_threshold", 0.0, "(> 0)"),
        ("train_energy_threshold_kwh_pue", -1e-3, "(> 0)"),
        ("val_energy_threshold_kwh_pue", 0.0, "(> 0)"),
        ("max_params", 0, "(> 0)"),
        ("max_latency_ms", -3.0, "(> 0)"),
        ("max_model_size_mb", -1.0, "(> 0)"),
        ("num_classes", 1, ">= 2"),
    ],
)
def test_out_of_range_values_name_field_and_range(
    spec_data: dict[str, Any], field: str, value: float, expect_range: str
) -> None:
    message = _error({**spec_data, field: value})
    line = next(ln for ln in message.splitlines() if ln.startswith(field + ":"))
    assert repr(value) in line
    if field == "num_classes":
        assert "greater than or equal to 2" in line
    else:
        assert expect_range in line


def test_nan_threshold_is_rejected(spec_data: dict[str, Any]) -> None:
    message = _error({**spec_data, "val_accuracy_threshold": float("nan")})
    assert message.startswith("val_accuracy_threshold:")


def test_all_weights_zero_is_rejected(spec_data: dict[str, Any]) -> None:
    message = _error({**spec_data, "weight_accuracy": 0, "weight_energy": 0, "weight_fps": 0})
    assert "weight_accuracy, weight_energy and weight_fps are all 0" in message
    assert "(0, 1]" in message


def test_one_weight_is_enough(spec_data: dict[str, Any]) -> None:
    spec = TaskSpec.model_validate({**spec_data, "weight_accuracy": 0, "weight_energy": 0.5})
    assert spec.weight_energy == 0.5


def test_unknown_field_is_rejected_by_name(spec_data: dict[str, Any]) -> None:
    message = _error({**spec_data, "val_acuracy_threshold": 0.9})
    assert message == "val_acuracy_threshold: unknown field; remove it or check its spelling"


def test_missing_required_fields_are_listed() -> None:
    message = _error({})
    for field in ("dataset", "input_shape", "num_classes"):
        assert f"{field}: required field is missing" in message


def test_overfit_below_underfit_is_contradictory(spec_data: dict[str, Any]) -> None:
    message = _error({**spec_data, "overfit_threshold": 0.02, "underfit_threshold": 0.05})
    assert "overfit_threshold" in message
    assert "underfit_threshold" in message


@pytest.mark.parametrize(
    ("task", "shape"),
    [("image_classification", [32, 32]), ("text_classification", [3, 32, 32])],
)
def test_input_shape_must_fit_the_task(task: str, shape: list[int]) -> None:
    message = _error({"dataset": "d", "task": task, "input_shape": shape, "num_classes": 2})
    assert "input_shape" in message


def test_text_task(spec_data: dict[str, Any]) -> None:
    spec = TaskSpec.model_validate(
        {"dataset": "imdb", "task": "text_classification", "input_shape": [256], "num_classes": 2}
    )
    assert spec.task is TaskKind.TEXT_CLASSIFICATION


def test_spec_is_immutable(spec_data: dict[str, Any]) -> None:
    spec = TaskSpec.model_validate(spec_data)
    with pytest.raises(ValidationError):
        spec.fps_threshold = 10.0  # type: ignore[misc]


def test_load_spec_reports_file_problems(tmp_path: Path, spec_data: dict[str, Any]) -> None:
    good = tmp_path / "spec.json"
    good.write_text(json.dumps(spec_data))
    assert load_spec(good).dataset == "cifar10"

    with pytest.raises(InputError, match="does not exist"):
        load_spec(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"dataset": "x",')
    with pytest.raises(InputError, match=r"not valid JSON \(line 1"):
        load_spec(broken)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(InputError, match="must hold a JSON object, not list"):
        load_spec(listed)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**spec_data, "fps_priority": 3}))
    with pytest.raises(InputError, match=r"fps_priority: .*\[0, 1\]"):
        load_spec(bad)
    with pytest.raises(InputError, match="is a directory"):
        load_spec(tmp_path)
