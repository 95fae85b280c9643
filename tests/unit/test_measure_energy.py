"""The host holds the speed job's accuracy (from its timed passes) to the score job's accuracy of
the same program: ``timed_is_scored``, and the three places that have both figures (the graph's
``evaluate`` after training, its early-stopping check on the paused program, ``archsmith
evaluate``). The figures here are forged; the measuring process's side is in test_measure.py.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from archsmith import cli_tools
from archsmith.agents import nodes
from archsmith.agents.state import AgentContext
from archsmith.config import RunSettings
from archsmith.spec import TaskSpec
from archsmith.tools.measure_energy import ACCURACY_MISMATCH, timed_is_scored
from archsmith.tools.schemas import (
    CheckShapesOutput,
    CountParamsOutput,
    EarlyStopRecord,
    MeasureEnergyOutput,
    TrainModelOutput,
)
from archsmith.tools.train_model import EarlyCheck, Verdict


def _timed(right: int, n: int = 1000, device: str = "cpu") -> MeasureEnergyOutput:
    """A speed job's output whose timed passes answered ``right`` of ``n`` samples right."""
    return MeasureEnergyOutput(
        ok=True, fps=1e4, latency_ms=0.1, val_accuracy=right / n, val_samples=n, device=device
    )


def test_timed_accuracy_must_be_the_scored_one_within_one_sample_on_a_cpu() -> None:
    assert timed_is_scored(_timed(700), 0.700, 1000).ok
    assert timed_is_scored(_timed(701), 0.700, 1000).ok  # one tie, in another process
    refused = timed_is_scored(_timed(702), 0.700, 1000)
    assert not refused.ok
    assert refused.error is not None
    assert refused.error.type == ACCURACY_MISMATCH
    assert "702 of 1000" in refused.error.message
    assert "score job 700" in refused.error.message
    assert refused.fps == 1e4  # the figures stay on record, refused


def test_a_gpu_may_flip_a_tenth_of_a_percent_of_the_samples() -> None:
    assert timed_is_scored(_timed(7010, 10_000, "cuda:0"), 0.7, 10_000).ok
    assert not timed_is_scored(_timed(7011, 10_000, "cuda:0"), 0.7, 10_000).ok
    assert not timed_is_scored(_timed(7011, 10_000, "cpu"), 0.7, 10_000).ok


def test_figures_of_other_splits_or_none_at_all_are_refused() -> None:
    other = timed_is_scored(_timed(700), 0.7, 999)
    assert other.error is not None
    assert "ran 1000 validation samples, the score job 999" in other.error.message
    missing = timed_is_scored(_timed(700), None, None)
    assert missing.error is not None
    assert missing.error.type == ACCURACY_MISMATCH
    failed = MeasureEnergyOutput(ok=False)
    assert timed_is_scored(failed, 0.7, 1000) is failed  # its own error stands


# -- where the host has both figures ---------------------------------------------------------------

SPEC = TaskSpec(dataset="digits", input_shape=(1, 8, 8), num_classes=10)


def _state() -> dict[str, Any]:
    candidate: dict[str, Any] = {"code": "", "summary": "", "arch": None, "applied": []}
    return {"spec": SPEC.model_dump(mode="json"), "candidate": candidate, "iteration": 1}


def _runtime(early_stop: bool = False) -> Any:
    tools = SimpleNamespace(prepare=lambda *a, **k: None)
    settings = RunSettings(epochs=4, early_stop=early_stop)
    return SimpleNamespace(context=AgentContext(tools=tools, settings=settings))  # type: ignore[arg-type]


def _trained(model_dir: Path, right: int, record: EarlyStopRecord | None = None) -> Any:
    def train(tools: Any, inp: Any, *, check: EarlyCheck | None = None) -> TrainModelOutput:
        if check is not None:
            check.decide(model_dir, 0.0)
        return TrainModelOutput(
            ok=True, val_accuracy=right / 1000, val_samples=1000, model_dir=model_dir,
            early_stop=record,
        )  # fmt: skip

    return train


def test_evaluate_fails_a_candidate_whose_timed_accuracy_is_not_its_scored_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nodes, "train_model", _trained(tmp_path, 700))
    monkeypatch.setattr(nodes, "measure_energy", lambda tools, inp: _timed(900))
    out = nodes.evaluate(_state(), _runtime())  # type: ignore[arg-type]
    assert out["error_stage"] == "measure_energy"
    assert out["error"]["type"] == ACCURACY_MISMATCH
    assert "evaluation" not in out
    monkeypatch.setattr(nodes, "measure_energy", lambda tools, inp: _timed(700))
    assert nodes.evaluate(_state(), _runtime())["error"] is None  # type: ignore[arg-type]


def test_at_the_check_the_paused_program_is_held_to_its_own_score(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The paused program's timing stands for the final program's speed, but its accuracy is the
    paused program's: it is compared with the paused program's score, never the final one's."""

    def check(rule: Any, spec: Any, best: Any, validation: Any, epochs: int, measure: Any) -> Any:
        def decide(model_dir: Path, energy: float) -> Verdict:
            measure(model_dir)
            return Verdict(stop=False, reason="go on")

        return EarlyCheck(epoch=2, rule="test", decide=decide)

    record = EarlyStopRecord(epoch=2, epochs=4, stopped=False, rule="test", reason="go on")
    paused = SimpleNamespace(ok=True, error=None, result={"val_accuracy": 0.6, "val_samples": 1000})
    monkeypatch.setattr(nodes, "early_check", check)
    monkeypatch.setattr(nodes, "score_program", lambda *a: paused)
    monkeypatch.setattr(nodes, "train_model", _trained(tmp_path, 900, record))
    monkeypatch.setattr(nodes, "measure_energy", lambda tools, inp: _timed(600))
    kept = nodes.evaluate(_state(), _runtime(early_stop=True))  # type: ignore[arg-type]
    assert kept["error"] is None
    assert kept["evaluation"]["measure"]["val_accuracy"] == 0.6
    assert kept["evaluation"]["measured_at_epoch"] == 2

    monkeypatch.setattr(nodes, "measure_energy", lambda tools, inp: _timed(900))
    refused = nodes.evaluate(_state(), _runtime(early_stop=True))  # type: ignore[arg-type]
    assert refused["error"]["type"] == ACCURACY_MISMATCH
    assert "900 of 1000" in refused["error"]["message"]
    assert refused["error_stage"] == "measure_energy"


def test_archsmith_evaluate_reports_the_mismatch_as_the_candidates_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`archsmith evaluate` runs the graph's own candidate pipeline, so the node's check is its."""
    monkeypatch.setattr(nodes, "check_shapes", lambda *a: CheckShapesOutput(ok=True, matches=True))
    monkeypatch.setattr(
        nodes,
        "count_params",
        lambda *a: CountParamsOutput(ok=True, params=1, size_mb=0.0, flops_per_sample=1),
    )
    monkeypatch.setattr(nodes, "train_model", _trained(tmp_path, 700))
    monkeypatch.setattr(nodes, "measure_energy", lambda tools, inp: _timed(650))
    context = _runtime().context
    context.tools.prepare = lambda *a, **k: SimpleNamespace(meta={})
    context.tools.expect_data = lambda data: None
    context.tools.device = "cpu"
    report = cli_tools._evaluate(context, SPEC, "", 0, show=False)
    assert report["train_model"]["ok"] is True
    assert report["measure_energy"]["ok"] is False
    assert report["measure_energy"]["error"]["type"] == ACCURACY_MISMATCH
