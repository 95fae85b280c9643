"""The model card: only measured numbers, each with its unit, energy with its source."""

from __future__ import annotations

import json
from typing import Any

import pytest

from archsmith.model_card import build_card, render_card
from archsmith.spec import TaskSpec

CHECK = {
    "max_abs_diff": 3.2e-7,
    "argmax_agree": True,
    "argmax_disagreements": 0,
    "samples": 256,
    "batch_sizes": [256, 1],
    "atol": 1e-4,
    "rtol": 1e-3,
    "passed": True,
}
RUN = {
    "run_id": "20260101-120000-abcd",
    "request": "digits | on a phone\nplease",
    "status": "finished",
    "llm": "openai:gpt-4o-mini",
    "sandbox": "local",
    "device": "cpu",
    "epochs": 5,
    "max_iterations": 10,
    "iterations_done": 6,
    "created_at": 1767268800.0,
    "duration_s": 812.5,
    "planner": "llm",
}
SPEC = TaskSpec(
    dataset="digits",
    input_shape=(1, 8, 8),
    num_classes=10,
    val_accuracy_threshold=0.95,
    fps_threshold=5000.0,
    max_params=20_000,
)


def _export(fmt: str = "onnx", kind: str = "normalize") -> dict[str, Any]:
    pre: dict[str, Any] = (
        {
            "kind": "normalize",
            "raw_dtype": "uint8",
            "mean": [77.91],
            "std": [95.87],
            "statistics": "per channel, over the training split's first 10,000 samples",
        }
        if kind == "normalize"
        else {
            "kind": "token_ids",
            "dtype": "int64",
            "sequence_length": 256,
            "vocab_size": 20000,
            "pad_id": 0,
            "oov_id": 1,
        }
    )
    checks = {"safetensors": {**CHECK, "max_abs_diff": 0.0}}
    if fmt != "pytorch":
        checks[fmt] = CHECK
    return {
        "format": fmt,
        "exporter": {"onnx": "legacy", "torchscript": "torch.jit.trace"}.get(fmt),
        "fallback_reason": "TorchExportError: GuardOnDataDependentSymNode: no | way"
        if fmt == "onnx"
        else None,
        "attempts": [],
        "opset": 18 if fmt == "onnx" else None,
        "input": {"name": "input", "shape": ["batch", 1, 8, 8], "dtype": "float32"},
        "output": {"name": "logits", "shape": ["batch", 10], "dtype": "float32"},
        "preprocessing": pre,
        "checks": checks,
        "warnings": ["TracerWarning: Converting a tensor to a Python boolean"],
        "versions": {"torch": "2.15.0"},
        "files": [],
        "seconds": 3.0,
    }


def _best(**over: Any) -> dict[str, Any]:
    best: dict[str, Any] = {
        "iteration": 4,
        "summary": "3 stages | widths 16-32-64",
        "applied": ["DP: fewer parameters", "IF: faster"],
        "code": "def build_model(input_shape, num_classes): ...\n",
        "metrics": {
            "train_accuracy": 0.991,
            "val_accuracy": 0.9721,
            "train_energy_kwh_pue": 2.5e-6,
            "val_energy_kwh_pue": 1.1e-8,
            "fps": 8123.4,
            "params": 15_234,
            "latency_ms": 0.42,
            "model_size_mb": 0.061,
            "diverged": False,
        },
        "combined_metric": 0.9721,
        "energy_sources": {"train": "rapl", "val": "estimate"},
        "model_dir": "/models/x",
        "validation": {"params": 15_234, "size_mb": 0.0609, "flops_per_sample": 1_204_000},
    }
    best.update(over)
    return best


def _card(best: dict[str, Any] | None = None, fmt: str = "onnx", **kw: Any) -> dict[str, Any]:
    files = [{"name": "model.py", "bytes": 10, "sha256": "0" * 64}]
    return build_card(
        run=kw.get("run", RUN),
        spec=kw.get("spec", SPEC),
        best=best or _best(),
        export=kw.get("export", _export(fmt)),
        files=files,
        dataset={"class_names": [str(i) for i in range(10)], "source": "sklearn", "counts": {}},
    )


def test_energy_carries_its_source_and_an_estimate_is_called_one() -> None:
    card = _card()
    train, val = card["metrics"]["train_energy_kwh_pue"], card["metrics"]["val_energy_kwh_pue"]
    assert train == {
        "value": 2.5e-6,
        "unit": "kWh-PUE",
        "source": "rapl",
        "scope": "CPU package and DRAM only",
        "measured": True,
        "note": (
            "rapl: measured, read from the CPU's package and DRAM energy counters;"
            " CPU package and DRAM only"
        ),
        "symbol": "T_E",
    }
    assert val["source"] == "estimate"
    assert val["measured"] is False
    md = render_card(card)
    assert "estimate: elapsed time x configured power (CPU and RAM, plus one GPU on CUDA)" in md
    assert "**Estimates, not measurements:** val_energy_kwh_pue." in md
    measured = _card(_best(energy_sources={"train": "nvml", "val": "rapl"}))
    assert "Estimates, not measurements" not in render_card(measured)


def test_what_was_not_measured_is_not_reported_as_zero() -> None:
    best = _best(
        metrics={**_best()["metrics"], "fps": 0.0, "val_energy_kwh_pue": 0.0, "latency_ms": None},
        energy_sources={"train": "estimate", "val": None},
        validation=None,
    )
    metrics = _card(best)["metrics"]
    assert metrics["fps"]["value"] is None
    assert metrics["val_energy_kwh_pue"]["value"] is None
    assert metrics["val_energy_kwh_pue"]["note"] == "not measured"
    assert metrics["latency_ms"]["value"] is None
    assert metrics["flops_per_sample"]["value"] is None
    assert metrics["params"]["value"] == 15_234  # the critic's own count remains
    md = render_card(_card(best))
    assert "| fps | F | not measured | frames/s |" in md


def test_metrics_have_units_symbols_and_the_validation_counts() -> None:
    metrics = _card()["metrics"]
    assert metrics["val_accuracy"] == {
        "value": 0.9721,
        "unit": "fraction",
        "note": (
            "on the validation split, after training; the search chose the model on it,"
            " so it is optimistic"
        ),
        "symbol": "V_Acc",
    }
    assert metrics["fps"]["unit"] == "frames/s"
    assert metrics["latency_ms"]["unit"] == "ms"
    assert metrics["model_size_mb"]["value"] == 0.0609  # count_params' figure
    assert metrics["flops_per_sample"]["value"] == 1_204_000
    assert metrics["params"]["symbol"] == "P"
    md = render_card(_card())
    assert "| val_accuracy | V_Acc | 0.9721 (97.21 %) | fraction |" in md


def test_targets_use_the_papers_symbols_and_say_whether_they_were_met() -> None:
    targets = {t["symbol"] or t["field"]: t for t in _card()["targets"]}
    assert targets["TV_Acc"]["threshold"] == 0.95
    assert targets["TV_Acc"]["priority_symbol"] == "PV_Acc"
    assert targets["TV_Acc"]["met"] is True
    assert targets["TF"]["met"] is True
    assert targets["TT_Acc"]["met"] is True  # 0.991 >= 0.99
    assert targets["max_params"]["met"] is True
    assert "max_latency_ms" not in targets  # not set in the spec
    assert _card()["spec_symbols"]["overfit_threshold"] == "OT"
    slow = _card(_best(metrics={**_best()["metrics"], "fps": 10.0}))
    assert {t["field"]: t["met"] for t in slow["targets"]}["fps_threshold"] is False


def test_provenance_and_the_export_check_are_on_the_card() -> None:
    card = _card()
    prov = card["provenance"]
    assert prov["architect"] == "openai:gpt-4o-mini"
    assert (prov["iteration"], prov["iterations_done"], prov["max_iterations"]) == (4, 6, 10)
    assert prov["applied"] == ["DP: fewer parameters", "IF: faster"]
    assert card["export"]["checks"]["onnx"]["max_abs_diff"] == 3.2e-7
    md = render_card(card)
    assert "iteration 4 of 6 (at most 10): 3 stages \\| widths 16-32-64" in md
    assert "> digits \\| on a phone please" in md  # one line, no table break
    assert "- exporter: legacy, ONNX opset 18" in md
    assert "fell back from the preferred exporter because: TorchExportError" in md
    assert "| onnx | 3.2e-07 | yes | 256 | 256, 1 | 0.0001 | 0.001 |" in md
    assert "TracerWarning" in md
    json.dumps(card)  # the JSON card is plain data


@pytest.mark.parametrize(
    ("fmt", "snippets"),
    [
        ("onnx", {"onnxruntime", "pytorch"}),
        ("torchscript", {"torchscript", "pytorch"}),
        ("pytorch", {"pytorch"}),
    ],
)
def test_usage_snippets_fit_the_format_and_are_python(fmt: str, snippets: set[str]) -> None:
    card = _card(fmt=fmt, export=_export(fmt))
    assert set(card["usage"]) == snippets
    for code in card["usage"].values():
        compile(code, "usage", "exec")
        assert "mean = np.array([77.91]" in code
    assert "build_model((1, 8, 8), 10)" in card["usage"]["pytorch"]
    assert 'load_model(model, "model.safetensors")' in card["usage"]["pytorch"]
    md = render_card(card)
    assert md.count("```python") == len(snippets)


def test_text_models_document_token_ids() -> None:
    spec = TaskSpec(dataset="imdb", task="text_classification", input_shape=(256,), num_classes=2)
    card = _card(spec=spec, export=_export("onnx", kind="token_ids"))
    assert "int64 token ids of shape (batch, 256)" in card["usage"]["onnxruntime"]
    md = render_card(card)
    assert "A text classification model for **imdb**" in md
    assert "token ids (int64), sequences of 256" in md
    assert "vocabulary.txt" in md


def test_the_held_out_test_accuracy_is_the_headline_when_measured() -> None:
    measured = _card(
        _best(test={"ok": True, "test_accuracy": 0.9512, "split": "the source's own test split"})
    )["metrics"]["test_accuracy"]
    assert measured["value"] == 0.9512
    assert "the source's own test split" in measured["note"]
    assert "no decision read it" in measured["note"]
    never = _card(_best())["metrics"]["test_accuracy"]
    assert never["value"] is None
    failed = _card(_best(test={"ok": False, "error": {"message": "gone"}}))["metrics"]
    assert failed["test_accuracy"]["value"] is None
