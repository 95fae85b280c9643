"""`archsmith run` with a real LangChain client against the stub LLM server: plan, code, fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from stubs import isolate_llm_env
from stubs.llm_server import Reply, StubLLMServer

from archsmith.agents.runs import open_checkpointer, pending
from archsmith.home import run_dir

SCRIPT = Path(sys.executable).parent / "archsmith"

CODE = '''"""MLP {width} for 8x8 digits."""
import torch.nn as nn


def build_model(input_shape, num_classes):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, {width}), nn.ReLU(),
                         nn.Linear({width}, num_classes))
'''
BROKEN = "Here you go:\n```python\ndef build_model(input_shape, num_classes:\n    pass\n```\n"
INTENT = {
    "dataset": "digits",
    "val_accuracy_threshold": 0.97,
    "fps_threshold": 1000,
    "max_params": None,
    "max_model_size_mb": None,
    "max_latency_ms": None,
    "emphasizes_energy": False,
    "emphasizes_speed": True,
    "assumptions": ["read '1000-FPS' as at least 1000 frames per second"],
}


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubLLMServer]:
    isolate_llm_env(monkeypatch)
    with StubLLMServer() as server:
        yield server


@pytest.mark.llm
def test_run_with_openai_client_plans_writes_and_fixes_code(
    tmp_path: Path, stub: StubLLMServer
) -> None:
    stub.script(
        Reply(text="ok"),  # check_llm
        Reply(text=json.dumps(INTENT)),  # the planner's structured output
        Reply(text="```python\n" + CODE.format(width=32) + "```"),  # iteration 1
        Reply(text=BROKEN),  # iteration 2: a syntax error ...
        Reply(text="Fixed:\n```python\n" + CODE.format(width=64) + "```"),  # ... and its fix
    )
    env = {**os.environ, "ARCHSMITH_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    result = subprocess.run(
        [
            str(SCRIPT), "run", "build a 1000-FPS digits classifier", "--llm", "openai:stub-coder",
            "--base-url", stub.openai_base_url, "--iterations", "2", "--epochs", "2",
        ],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "openai:stub-coder" in result.stdout
    assert stub.pending == 0
    bodies = [r.json for r in stub.requests]
    assert all(b.get("temperature") == 0.5 for b in bodies)
    prompts = [json.dumps(b["messages"]) for b in bodies[2:]]
    assert "build_model" in prompts[0]
    assert "TV_Acc" in prompts[0] or "0.97" in prompts[0]
    assert "SyntaxError" in prompts[2]  # the fixer saw the structured error
    rid = result.stdout.split("run ", 1)[1].split(":", 1)[0].strip()
    with open_checkpointer(run_dir(tmp_path / "home", rid), None) as saver:
        _, state = pending(saver, rid)
    assert state["spec"]["val_accuracy_threshold"] == 0.97
    assert state["planner"].startswith("llm:")
    history = state["history"]
    assert [h["status"] for h in history] == ["evaluated", "evaluated"]
    assert len(history[1]["fixes"]) == 1
    assert history[1]["fixes"][0]["error"]["type"] == "SyntaxError"
    assert len(state["llm_calls"]) == 4
    assert [c["role"] for c in state["llm_calls"]] == [
        "planner", "architect", "architect", "code_fixer",
    ]  # fmt: skip
    # The run store has every exchange, and `show` tells the fix with its prompt and reply.
    story = subprocess.run(
        [str(SCRIPT), "show", rid, "--json"], capture_output=True, text=True, env=env, timeout=120
    )  # fmt: skip
    calls = json.loads(story.stdout)["llm_calls"]
    assert [c["role"] for c in calls] == ["planner", "architect", "architect", "code_fixer"]
    assert calls[0]["iteration"] == 0
    assert "dataset" in calls[0]["response"]
    assert all(c["model"] == "stub-coder" for c in calls)
    assert all(c["latency_s"] > 0 for c in calls)
    step = subprocess.run(
        [str(SCRIPT), "show", rid, "--iteration", "2"], capture_output=True, text=True, env=env,
        timeout=120,
    )  # fmt: skip
    assert "code_fixer prompt to stub-coder" in step.stdout
    assert "SyntaxError" in step.stdout
    assert "MLP 64" in step.stdout


@pytest.mark.llm
def test_rejected_key_stops_before_any_work(tmp_path: Path, stub: StubLLMServer) -> None:
    stub.script(Reply.error(401, "Incorrect API key provided"))
    env = {**os.environ, "ARCHSMITH_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [str(SCRIPT), "run", "build a digits classifier", "--llm", "openai:gpt-4o",
         "--base-url", stub.openai_base_url],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "OPENAI_API_KEY" in result.stderr
    assert not (tmp_path / "home" / "runs").exists()
    assert len(stub.requests) == 1


def test_missing_key_names_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["ARCHSMITH_HOME"] = str(tmp_path / "home")
    result = subprocess.run(
        [str(SCRIPT), "run", "build a digits classifier", "--llm", "gemini:gemini-2.5-pro"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "GOOGLE_API_KEY" in result.stderr
