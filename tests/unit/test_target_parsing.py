"""Deployment targets: parsing, the run settings that carry one, and the acceptance table."""

from __future__ import annotations

import pytest

from archsmith.acceptance import acceptance_rows
from archsmith.config import RunSettings
from archsmith.errors import InputError
from archsmith.spec import TaskSpec
from archsmith.targets import (
    DEFAULT_TARGET_BATCH,
    RUNTIMES,
    Target,
    installed_version,
    parse_target,
)
from archsmith.tools.schemas import TargetFigures


def test_a_target_is_parsed_and_spelled_canonically() -> None:
    target = parse_target(" ONNXRuntime:threads=1, precision=int8 ")
    assert target == Target("onnxruntime", 1, DEFAULT_TARGET_BATCH, "int8")
    assert str(target) == f"onnxruntime:threads=1,batch={DEFAULT_TARGET_BATCH},precision=int8"
    assert parse_target(str(target)) == target
    assert parse_target("openvino") == Target("openvino")
    assert parse_target("torch:batch=256").batch == 256
    assert parse_target("torch").is_host_torch
    assert not parse_target("onnxruntime").is_host_torch


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("tensorrt", "unknown target runtime 'tensorrt'"),
        ("onnxruntime:threads=0", "threads must be between 1 and"),
        ("onnxruntime:threads=two", "'two' is not a whole number"),
        ("onnxruntime:batch=10000000", "batch must be between 1 and"),
        ("onnxruntime:precision=int4", "precision must be fp32 or int8"),
        ("onnxruntime:cores=2", "unknown option 'cores'"),
        ("onnxruntime:threads", "is not key=value"),
        ("openvino:precision=int8", "openvino measures fp32 here, not int8"),
        ("torch:precision=int8", "torch measures fp32 here, not int8"),
    ],
)
def test_a_bad_target_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_target(text)
    assert says in str(caught.value)


def test_the_unknown_runtime_error_lists_the_known_ones() -> None:
    with pytest.raises(InputError) as caught:
        parse_target("tflite")
    assert all(name in str(caught.value) for name in RUNTIMES)
    assert "archsmith targets" in str(caught.value)


def test_run_settings_keep_the_canonical_target_and_refuse_a_bad_one() -> None:
    settings = RunSettings(target="onnxruntime:threads=2")
    assert settings.target == f"onnxruntime:threads=2,batch={DEFAULT_TARGET_BATCH},precision=fp32"
    from_env = RunSettings.from_env({"ARCHSMITH_TARGET": "openvino:threads=1"})
    assert from_env.target is not None
    assert from_env.target.startswith("openvino:threads=1")
    with pytest.raises(InputError, match="target='onnxruntime:threads=-1'"):
        RunSettings(target="onnxruntime:threads=-1")
    with pytest.raises(InputError, match="unknown target runtime"):
        RunSettings.from_env({"ARCHSMITH_TARGET": "coreml"})


def test_installed_runtimes_report_a_version() -> None:
    # torch and onnxruntime are archsmith's own dependencies: always here.
    assert installed_version(RUNTIMES["torch"])
    assert installed_version(RUNTIMES["onnxruntime"])


def _figures(**changes: object) -> TargetFigures:
    base: dict[str, object] = {
        "target": "onnxruntime:threads=1,batch=32,precision=fp32",
        "runtime": "onnxruntime",
        "threads": 1,
        "batch": 32,
        "precision": "fp32",
        "fps": 1500.0,
        "latency_ms": 0.8,
        "latency_p90_ms": 1.0,
        "size_mb": 1.2,
        "val_accuracy": 0.96,
        "val_samples": 500,
        "test_accuracy": 0.95,
        "machine": "x86_64",
    }
    return TargetFigures.model_validate({**base, **changes})


def _spec(**limits: object) -> TaskSpec:
    return TaskSpec.model_validate(
        {
            "dataset": "malaria",
            "input_shape": [3, 32, 32],
            "num_classes": 2,
            "fps_threshold": 1000.0,
            "fps_priority": 1.0,
            "val_accuracy_threshold": 0.95,
            "val_accuracy_priority": 1.0,
            **limits,
        }
    )


def test_acceptance_rows_judge_targets_and_hard_limits() -> None:
    rows = acceptance_rows(
        _spec(max_latency_ms=1.0, max_model_size_mb=1.0, max_params=100_000),
        _figures(),
        params=90_000,
    )
    by_name = {r.name: r for r in rows}
    assert by_name["validation accuracy"].met is True
    assert "held-out test 95.00%" in by_name["validation accuracy"].measured
    assert by_name["throughput (batch 32)"].met is True
    assert by_name["latency, batch 1 (p50)"].met is True
    assert by_name["latency, batch 1 (p50)"].hard
    # 1.2 MB against a 1 MB limit: the hard limit is missed.
    assert by_name["model file size"].met is False
    assert by_name["parameters"].met is True


def test_a_target_missed_is_not_a_hard_limit_missed() -> None:
    from archsmith.acceptance import Acceptance
    from archsmith.export import ExportResult

    slow = acceptance_rows(_spec(max_latency_ms=2.0), _figures(fps=10.0), params=None)
    export = ExportResult(out_dir=".", files=[], format="onnx", check={}, card={}, seconds=0.0)
    accepted = Acceptance(
        target="t", measured_on="m", measured_by="this machine", file="model.onnx",
        sha256=None, rows=slow, figures={}, export=export,
    )  # fmt: skip
    assert [r.met for r in slow if not r.hard] == [True, False]
    assert not accepted.hard_limit_missed
    missed = acceptance_rows(_spec(max_latency_ms=0.5), _figures(), params=None)
    assert Acceptance.model_validate({**accepted.model_dump(), "rows": missed}).hard_limit_missed


def test_the_card_says_the_table_was_measured_on_this_machine() -> None:
    rows = acceptance_rows(_spec(max_latency_ms=0.5), _figures(), params=None)
    card_part = {
        "target": "onnxruntime:threads=1,batch=32,precision=fp32",
        "measured_on": "x86_64 Linux",
        "measured_by": "this machine",
        "file": "model.onnx",
        "sha256": "ab" * 32,
        "rows": [r.model_dump() for r in rows],
        "figures": _figures().model_dump(),
    }
    from archsmith.model_card import _acceptance_lines

    text = "\n".join(_acceptance_lines(card_part))
    assert "not on the deployment device" in text
    assert "| latency, batch 1 (p50) (hard limit) | <= 0.500 ms | 0.800 ms | **no** |" in text
    device = "\n".join(_acceptance_lines({**card_part, "measured_by": "http://10.0.0.7:8765"}))
    assert "on the device at http://10.0.0.7:8765" in device


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        ("a 1000-FPS malaria classifier with onnxruntime on one thread", "onnxruntime:threads=1,"),
        ("an int8 digits model", "onnxruntime:batch=32,precision=int8"),
        ("a malaria classifier for a 4-core ARM board", "onnxruntime:threads=4,"),
        ("a cifar-10 model for OpenVINO, 2 threads", "openvino:threads=2,"),
        (
            "a single-threaded quantised digits model",
            "onnxruntime:threads=1,batch=32,precision=int8",
        ),
    ],
)
def test_a_target_is_read_from_the_request(request_text: str, expected: str) -> None:
    from archsmith.targets import target_from_request

    found, read = target_from_request(request_text)
    assert found is not None
    assert found.startswith(expected)
    assert str(parse_target(found)) == found  # a valid target, spelled canonically
    assert read is not None
    assert "--target replaces it" in read


def test_a_request_without_a_target_names_none() -> None:
    from archsmith.targets import target_from_request

    assert target_from_request("build a 1000-FPS digits classifier under 2 ms") == (None, None)
