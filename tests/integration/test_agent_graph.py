"""The graph end to end with a scripted architect, the real sandbox, data and checkpointer.

The sandbox is the warm local one that runs use, on a home the module shares (``runtime``): the
backend is not the point here (``test_sandbox_escapes`` and ``test_sealed_scoreboard`` attack
every backend).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from archsmith.agents.interfaces import ArchitectProposal
from archsmith.agents.runs import drive, initial_state, open_checkpointer
from archsmith.agents.state import AgentContext, AgentState
from archsmith.config import RunSettings
from archsmith.spec import TaskSpec
from archsmith.tools.rulebook_advice import advise
from archsmith.tools.runtime import ToolRuntime
from archsmith.tools.schemas import EvaluationMetrics

GOOD = """
import torch.nn as nn

def build_model(input_shape, num_classes):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, {width}), nn.ReLU(),
                         nn.Linear({width}, num_classes))
"""
BAD_SHAPE = """
import torch.nn as nn

def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(7, num_classes))
"""


class ScriptedArchitect:
    """Proposes the scripted codes in turn; repairs with the scripted repairs in turn."""

    name = "scripted"

    def __init__(self, proposals: list[str], repairs: list[str]) -> None:
        self.proposals = list(proposals)
        self.repairs = list(repairs)
        self.seen_instructions: list[list[dict[str, Any]]] = []
        self.seen_errors: list[dict[str, Any]] = []

    def propose(
        self,
        spec: TaskSpec,
        instructions: list[dict[str, Any]],
        best: dict[str, Any] | None,
        history: list[dict[str, Any]],
        iteration: int,
    ) -> ArchitectProposal:
        self.seen_instructions.append(instructions)
        code = self.proposals.pop(0)
        return ArchitectProposal(code=code, summary=f"scripted #{iteration}")

    def repair(
        self,
        spec: TaskSpec,
        proposal: ArchitectProposal,
        error: dict[str, Any],
        best: dict[str, Any] | None,
        attempt: int,
    ) -> ArchitectProposal:
        self.seen_errors.append(error)
        return ArchitectProposal(code=self.repairs.pop(0), summary=f"repair {attempt}")


def initial(spec: TaskSpec) -> AgentState:
    return initial_state("test", spec.model_dump(mode="json"))


def settings(iterations: int) -> RunSettings:
    """One epoch per candidate, two fix attempts."""
    return RunSettings(epochs=1, iterations=iterations, max_fix_attempts=2)


@pytest.fixture
def spec() -> TaskSpec:
    return TaskSpec(dataset="synthetic", input_shape=(3, 16, 16), num_classes=4)


def run_graph(
    tmp_path: Path, runtime: ToolRuntime, arch: ScriptedArchitect, spec: TaskSpec, n: int
) -> tuple[AgentState, list[str]]:
    ctx = AgentContext(tools=runtime, architect=arch, settings=settings(n))
    nodes: list[str] = []
    with open_checkpointer(tmp_path / "run", None) as saver:
        state = drive(saver, "run-1", ctx, initial(spec), lambda node, _: nodes.append(node))
    return state, nodes


def test_loop_evaluates_fixes_and_records_failures(
    tmp_path: Path, runtime: ToolRuntime, spec: TaskSpec
) -> None:
    arch = ScriptedArchitect(
        proposals=[GOOD.format(width=32), BAD_SHAPE, BAD_SHAPE],
        repairs=[GOOD.format(width=64), BAD_SHAPE, BAD_SHAPE],
    )
    state, nodes = run_graph(tmp_path, runtime, arch, spec, 3)
    history = state["history"]
    assert [h["iteration"] for h in history] == [1, 2, 3]
    assert [h["status"] for h in history] == ["evaluated", "evaluated", "failed"]
    # Iteration 2 was repaired once, after a structured error from check_shapes.
    assert len(history[1]["fixes"]) == 1
    assert history[1]["fixes"][0]["stage"] == "check_shapes"
    assert history[1]["fixes"][0]["error"]["type"] == "RuntimeError"
    assert arch.seen_errors[0]["type"] == "RuntimeError"
    # Iteration 3 spent both attempts and was recorded as failed with its reason.
    assert len(history[2]["fixes"]) == 2
    assert history[2]["error"]["stage"] == "check_shapes"
    assert state["stop_reason"] == "reached 3 iterations"
    # The critic's instructions of one round reach the architect in the next.
    assert arch.seen_instructions[0] == []
    assert arch.seen_instructions[1] == history[0]["instructions"]
    assert state["best"] is not None
    assert state["best"]["iteration"] in (1, 2)
    assert nodes.count("critic") == 2
    assert nodes.count("record_failure") == 1
    for h in history[:2]:
        assert 0.0 <= h["metrics"]["val_accuracy"] <= 1.0
        assert h["metrics"]["fps"] > 0
        assert h["energy_sources"]["train"] == "estimate"


def test_state_is_checkpointed_after_every_step(
    tmp_path: Path, runtime: ToolRuntime, spec: TaskSpec
) -> None:
    arch = ScriptedArchitect(proposals=[GOOD.format(width=16)], repairs=[])
    state, _ = run_graph(tmp_path, runtime, arch, spec, 1)
    assert (tmp_path / "run" / "checkpoints.sqlite").is_file()
    from archsmith.agents.runs import pending

    with open_checkpointer(tmp_path / "run", None) as saver:
        left, saved = pending(saver, "run-1")
    assert not left
    assert saved["history"] == state["history"]


def test_a_hard_limit_decides_the_best_and_the_test_split_is_read_once_at_the_end(
    tmp_path: Path, runtime: ToolRuntime
) -> None:
    """Wide candidates break max_params; the narrow one that meets it becomes the best even with
    a lower CM, and only then is the test split measured: for the best and the fronts."""
    # GOOD with width w has 3*16*16*w + w + 4*w + 4 parameters: 4,000 lies between 4 and 64.
    spec = TaskSpec(dataset="synthetic", input_shape=(3, 16, 16), num_classes=4, max_params=4000)
    arch = ScriptedArchitect(proposals=[GOOD.format(width=w) for w in (64, 32, 4)], repairs=[])
    jobs: list[Any] = []
    runtime.on_call = jobs.append
    ctx = AgentContext(tools=runtime, architect=arch, settings=settings(3))
    with open_checkpointer(tmp_path / "run", None) as saver:
        state = drive(saver, "limits", ctx, initial(spec), lambda *_: None)
    history = state["history"]
    assert [h["feasible"] for h in history] == [False, False, True]
    # Each round was advised on the best so far (the parent), not on the candidate just judged.
    parent_after_2 = next(h for h in history[:2] if h["iteration"] == history[1]["next_parent"])
    parent_advice = advise(EvaluationMetrics.model_validate(parent_after_2["metrics"]), spec)
    assert arch.seen_instructions[2] == [
        i.model_dump(mode="json") for i in parent_advice.instructions
    ]
    assert history[0]["limit_violations"] == [
        f"params {3 * 16 * 16 * 64 + 64 * 5 + 4} > max_params 4000"
    ]
    best = state["best"]
    assert best is not None
    assert best["iteration"] == 3
    assert best["feasible"] is True
    # The test split, once, after the loop: the best's figure and nothing read before it.
    scored = [j for j in jobs if j.tool == "score"]
    test_jobs = [j for j in scored if j.args.get("splits") == ["test"]]
    assert scored.index(test_jobs[0]) == len(scored) - len(test_jobs), "test read before the end"
    assert {int(k) for k in state["test_results"]} >= {3}
    assert len(test_jobs) == len(state["test_results"])
    assert 0.0 <= best["test_accuracy"] <= 1.0
    assert state["test_results"]["3"]["test_samples"] == 102  # synthetic: a 20 % carve-out


class Crash(KeyboardInterrupt):
    """Stands in for Ctrl-C (or a kill) right after a node's checkpoint was written."""


def _crash_after_first_critic() -> Any:
    seen: list[str] = []

    def on_update(node: str, _: dict[str, Any]) -> None:
        seen.append(node)
        if node == "critic" and seen.count("critic") == 1:
            raise Crash

    return on_update


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_interrupted_run_resumes_without_losing_or_repeating_an_iteration(
    tmp_path: Path, runtime: ToolRuntime, spec: TaskSpec, backend: str
) -> None:
    url = None
    if backend == "postgres":
        url = os.environ.get("ARCHSMITH_TEST_POSTGRES_URL")
        if not url:
            if os.environ.get("ARCHSMITH_REQUIRE_POSTGRES") == "1":
                pytest.fail("ARCHSMITH_TEST_POSTGRES_URL is required here")
            pytest.skip("no PostgreSQL: set ARCHSMITH_TEST_POSTGRES_URL (.ci/postgres-setup.sh)")
    run_id = f"resume-{backend}-{os.getpid()}-{tmp_path.name}"
    arch = ScriptedArchitect(proposals=[GOOD.format(width=w) for w in (8, 16, 24)], repairs=[])
    ctx = AgentContext(tools=runtime, architect=arch, settings=settings(3))
    with open_checkpointer(tmp_path / "run", url) as saver, pytest.raises(Crash):
        drive(saver, run_id, ctx, initial(spec), _crash_after_first_critic())
    with open_checkpointer(tmp_path / "run", url) as saver:
        from archsmith.agents.runs import pending

        left, saved = pending(saver, run_id)
        assert left
        assert [h["iteration"] for h in saved["history"]] == [1]
        state = drive(saver, run_id, ctx, None, lambda *_: None)
    assert [h["iteration"] for h in state["history"]] == [1, 2, 3]
    assert state["stop_reason"] == "reached 3 iterations"
    # Three proposals in all: the finished iteration was not proposed (or trained) again.
    assert arch.proposals == []


NAN_CODE = """
import torch.nn as nn

class Boom(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.fc = nn.Linear(3 * 16 * 16, n)

    def forward(self, x):
        return self.fc(x.flatten(1)) * float("inf")

def build_model(input_shape, num_classes):
    return Boom(num_classes)
"""


def fenced(code: str, prose: str = "Here is the model.") -> str:
    return f"{prose}\n\n```python\n{code.strip()}\n```\n"


@pytest.mark.llm
def test_graph_with_a_scripted_chat_model(
    tmp_path: Path, runtime: ToolRuntime, spec: TaskSpec
) -> None:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from archsmith.agents.llm_architect import LLMArchitect

    refusal = "I'm sorry, but I can't help with designing that model."
    replies = [
        fenced(GOOD.format(width=32)),  # 1: a good model
        fenced(GOOD.format(width=16).replace(", num_classes))", ", num_classes + 3))")),  # 2: bug
        fenced(GOOD.format(width=48), "Fixed the head's output size:"),  # ... fixed on try 2
        "A wider MLP should do better here; I would double the hidden layer.",  # 3: no code
        fenced(GOOD.format(width=64)),  # ... the fixer's reply has code
        refusal,  # 4: a refusal, and the fixer refuses twice more
        refusal,
        refusal,
        fenced(NAN_CODE),  # 5: trains to NaN
    ]
    llm = GenericFakeChatModel(messages=iter(AIMessage(content=r) for r in replies))
    arch = LLMArchitect(llm, model_name="scripted")
    ctx = AgentContext(tools=runtime, architect=arch, llm=None, settings=settings(5))
    with open_checkpointer(tmp_path / "run", None) as saver:
        state = drive(saver, "llm-run", ctx, initial(spec), lambda *_: None)
    history = state["history"]
    assert [h["status"] for h in history] == [
        "evaluated", "evaluated", "evaluated", "failed", "diverged",
    ]  # fmt: skip
    assert history[1]["fixes"][0]["error"]["type"] == "ShapeMismatch"
    assert history[2]["fixes"][0]["error"]["type"] == "NoPythonCode"
    assert "your reply contained no Python code" in history[2]["fixes"][0]["error"]["message"]
    assert len(history[3]["fixes"]) == 2
    assert history[4]["metrics"]["diverged"] is True
    # Never timed, never scored: absent, not zero; no rule fires on an "fps 0".
    assert history[4]["metrics"]["fps"] is None
    assert history[4]["metrics"]["val_accuracy"] is None
    assert history[4]["combined_metric"] is None
    assert "fps_low" not in {r["rule_id"] for r in history[4]["fired_rules"]}
    assert "training_diverged" in {r["rule_id"] for r in history[4]["fired_rules"]}
    # Its own diagnosis stays in its entry; the next round is advised on the best it lost to.
    assert {i["code"] for i in history[4]["instructions"]} == {"AWI", "ASC", "RCL"}
    assert state["best"] is not None
    assert state["best"]["iteration"] in (1, 2, 3)
    assert history[4]["next_parent"] == state["best"]["iteration"]
    on_best = advise(EvaluationMetrics.model_validate(state["best"]["metrics"]), spec)
    assert state["instructions"] == [i.model_dump(mode="json") for i in on_best.instructions]
    # Every exchange is kept for the trace: 5 proposals and 4 repairs.
    roles = [c["role"] for c in state["llm_calls"]]
    assert roles.count("architect") == 5
    assert roles.count("code_fixer") == 4
    fixer_prompt = next(c["prompt"] for c in state["llm_calls"] if c["role"] == "code_fixer")
    assert "ShapeMismatch" in fixer_prompt
