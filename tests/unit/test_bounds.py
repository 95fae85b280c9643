"""What the host keeps of a candidate job's result (``archsmith.sandbox.bounds``)."""

from __future__ import annotations

import json

import pytest

from archsmith.sandbox.base import CandidateError, SandboxResult
from archsmith.sandbox.bounds import (
    CANDIDATE_RESULT_FIELDS,
    MAX_MESSAGE_CHARS,
    MAX_RESULT_JSON_BYTES,
    MAX_TRACEBACK_CHARS,
    bound_candidate_result,
)


def _result(result: dict[str, object] | None, error: CandidateError | None = None) -> SandboxResult:
    return SandboxResult(
        ok=error is None, result=result, error=error, backend="local", wall_time_s=1.0
    )


def test_an_honest_build_result_is_kept_as_it_is() -> None:
    honest = {
        "output_shape": [2, 10],
        "expected_shape": [2, 10],
        "matches": True,
        "trainable_params": 650,
        "export": {"nodes": 5, "tensors": 2, "check": {"passed": True, "problem": None}},
    }
    kept = bound_candidate_result("build", _result(honest))
    assert kept.ok
    assert kept.result == honest


def test_unknown_fields_are_dropped_per_tool() -> None:
    kept = bound_candidate_result("train", _result({"val_accuracy": 0.9, "params": 1, "fps": 1e9}))
    assert kept.ok
    assert kept.result == {"val_accuracy": 0.9}


def test_a_measuring_jobs_result_is_not_filtered() -> None:
    figures = {"val_accuracy": 0.9, "params": 650, "size_mb": 0.0026}
    assert bound_candidate_result("score", _result(figures)).result == figures


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"history": "x" * 100_000}, "100,000 characters"),
        ({"history": [0] * 30_000}, "30,000 entries"),
        ({"export": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}}, "deeper"),
        ({"export": {"x" * 20_000: 1}}, "field name"),
        ({"history": [{"e": "y" * 16_000} for _ in range(100)]}, "bytes as JSON"),
    ],
    ids=["long-string", "long-list", "deep", "long-key", "too-big-in-all"],
)
def test_a_result_past_a_bound_fails_as_invalid_and_is_not_kept(
    bad: dict[str, object], says: str
) -> None:
    kept = bound_candidate_result("train", _result(bad))
    assert kept.ok is False
    assert kept.result is None
    assert kept.error is not None
    assert kept.error.type == "InvalidResult"
    assert says in kept.error.message, kept.error.message


def test_the_largest_kept_result_fits_the_bound() -> None:
    """A 2,000-epoch history (the longest a run asks for) stays well inside the bound."""
    epoch = {
        "epoch": 1999,
        "train_loss": 0.123456789,
        "train_accuracy": 0.987654321,
        "val_loss": 0.123456789,
        "val_accuracy": 0.987654321,
        "seconds": 12.3456789,
    }
    kept = bound_candidate_result("train", _result({"history": [epoch] * 2000}))
    assert kept.ok, kept.error
    assert len(json.dumps(kept.result)) < MAX_RESULT_JSON_BYTES / 2


def test_an_errors_message_and_traceback_are_cut_keeping_the_end() -> None:
    error = CandidateError(
        type="RuntimeError", message="a" * 10 + "z" * 1_000_000, traceback="t" * 1_000_000 + "END"
    )
    kept = bound_candidate_result("build", _result(None, error))
    assert kept.error is not None
    assert len(kept.error.message) < MAX_MESSAGE_CHARS + 100
    assert kept.error.message.endswith("z")
    assert "characters cut" in kept.error.message
    assert kept.error.traceback is not None
    assert kept.error.traceback.endswith("END")
    assert len(kept.error.traceback) < MAX_TRACEBACK_CHARS + 100


def test_every_candidate_tool_has_its_fields() -> None:
    from archsmith.sandbox.base import CANDIDATE_TOOLS

    assert set(CANDIDATE_TOOLS) == set(CANDIDATE_RESULT_FIELDS)


def test_every_tool_runs_in_one_process_kind() -> None:
    """Each job is the candidate's process or the measuring one, never both, never neither."""
    from typing import get_args

    from archsmith.sandbox.base import CANDIDATE_TOOLS, MEASURING_TOOLS, ToolName

    assert not CANDIDATE_TOOLS & MEASURING_TOOLS
    assert set(get_args(ToolName)) == CANDIDATE_TOOLS | MEASURING_TOOLS
