"""A candidate that rewrites its job's result: the host keeps only the runner's fields, each
bounded, so the run store never holds what candidate code padded in.

The attack (issue 22, item 9): the build job's ``result.json`` rewritten at exit, still ``ok``,
padded to 60 MB; the run store kept it whole (``archsmith.db`` grew to 60 MB in one iteration).
It runs on every backend; the host's other bounds (fields, depth, length, messages) act on the
result the same way whatever the backend, so they run in the warm sandbox runs use.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archsmith.config import Settings
from archsmith.memory.store import ToolCallRecord
from archsmith.sandbox.base import Sandbox
from archsmith.sandbox.bounds import MAX_RESULT_JSON_BYTES
from archsmith.tools.check_shapes import check_shapes
from archsmith.tools.runtime import ToolRuntime
from archsmith.tools.schemas import CheckShapesInput

DIGITS = {"input_shape": [1, 8, 8], "num_classes": 10}
MODEL = """
import torch.nn as nn

def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))
"""


def _rewrite_result(payload: str) -> str:
    """Candidate code that, at exit (after the runner wrote the real result), keeps the runner's
    result and adds ``payload`` (a Python expression over ``real``, the runner's result)."""
    return (
        MODEL
        + f"""
import atexit, json, os

_RESULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "result.json")

def _pad():
    with open(_RESULT) as f:
        real = json.load(f)
    real["result"] = {payload}
    with open(_RESULT, "w") as f:
        json.dump(real, f)

atexit.register(_pad)
"""
    )


def _check(
    sandbox: Sandbox | ToolRuntime, tmp_path: Path, code: str
) -> tuple[object, list[ToolCallRecord]]:
    """check_shapes of ``code`` on a backend (a home of its own) or on the module's runtime."""
    if isinstance(sandbox, ToolRuntime):
        runtime = sandbox
    else:
        settings = Settings(home=tmp_path / "home", job_memory_mb=4096)
        runtime = ToolRuntime(sandbox, settings, device="cpu")
    calls: list[ToolCallRecord] = []
    runtime.on_call = calls.append
    out = check_shapes(runtime, CheckShapesInput(code=code, **DIGITS))
    return out, calls


def _build(calls: list[ToolCallRecord]) -> ToolCallRecord:
    (build,) = (c for c in calls if c.tool == "build")
    return build


def test_a_result_padded_to_60_mb_is_refused_and_never_stored(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # In a field the runner writes (an unknown field is dropped whole: the next test).
    padded = '{**real["result"], "export": {**real["result"]["export"], "pad": "x" * 60_000_000}}'
    out, calls = _check(sandbox, tmp_path, _rewrite_result(padded))
    build = _build(calls)
    assert build.ok is False
    assert build.error is not None
    assert build.error["type"] == "InvalidResult", build.error
    assert "60,000,000 characters" in build.error["message"]
    assert build.result is None
    # What the run store would keep of the call is small.
    assert len(json.dumps([build.args, build.error, build.result])) < 10_000
    assert out.ok is False  # type: ignore[attr-defined]


def test_fields_the_runner_does_not_write_are_dropped(runtime: ToolRuntime, tmp_path: Path) -> None:
    out, calls = _check(
        runtime, tmp_path, _rewrite_result('{**real["result"], "params": 1, "note": "y" * 5000}')
    )
    build = _build(calls)
    assert build.ok, build.error
    assert build.result is not None
    assert "note" not in build.result
    assert "params" not in build.result
    assert build.result["matches"] is True
    assert out.ok
    assert out.matches


@pytest.mark.parametrize(
    ("payload", "bound"),
    [
        ('{**real["result"], "export": {"deep": ' + "[" * 40 + "]" * 40 + "}}", "nested deeper"),
        ('{**real["result"], "output_shape": list(range(100_000))}', "100,000 entries"),
    ],
    ids=["deep", "long-list"],
)
def test_a_result_past_a_bound_is_refused_with_the_bound(
    runtime: ToolRuntime, tmp_path: Path, payload: str, bound: str
) -> None:
    _, calls = _check(runtime, tmp_path, _rewrite_result(payload))
    build = _build(calls)
    assert build.ok is False
    assert build.error is not None
    assert build.error["type"] == "InvalidResult"
    assert bound in build.error["message"]
    assert len(json.dumps(build.error)) < MAX_RESULT_JSON_BYTES


def test_an_error_message_of_megabytes_is_cut(runtime: ToolRuntime, tmp_path: Path) -> None:
    """The runner writes a short message; the candidate rewrites it at exit to 5 MB."""
    failing = MODEL.replace(
        "    return nn.Sequential", "    raise RuntimeError('no')\n    return nn.Sequential"
    )
    code = (
        failing
        + """
import atexit, json, os

_RESULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "result.json")

def _pad():
    with open(_RESULT) as f:
        real = json.load(f)
    real["error"]["message"] = "z" * 5_000_000
    real["error"]["traceback"] = "t" * 5_000_000
    with open(_RESULT, "w") as f:
        json.dump(real, f)

atexit.register(_pad)
"""
    )
    out, calls = _check(runtime, tmp_path, code)
    build = _build(calls)
    assert build.ok is False
    assert build.error is not None
    assert build.error["type"] == "RuntimeError"
    assert len(build.error["message"]) < 5_000
    assert "characters cut" in build.error["message"]
    assert len(build.error["traceback"]) < 20_000
    assert out.ok is False  # type: ignore[attr-defined]
