"""The candidate pipeline (validate -> fix -> evaluate), one subgraph: its routing, what it gives
back to the graph that runs it, and where a cut run resumes it; the nodes scripted."""

from __future__ import annotations

import operator
from typing import Annotated, Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from typing_extensions import TypedDict

from archsmith.agents.pipeline import Node, PipelineInput, build_pipeline
from archsmith.agents.state import Candidate

CANDIDATE: Candidate = {"code": "x = 1", "summary": "s", "arch": None, "applied": []}


class CrashError(Exception):
    """A process killed in the middle of a step."""


class Script:
    """Scripted nodes: validate fails ``failures`` times, each fix made by code_fixer; evaluate
    crashes ``crashes`` times first. Every call is counted."""

    def __init__(self, failures: int = 0, crashes: int = 0) -> None:
        self.failures, self.crashes = failures, crashes
        self.calls: list[str] = []

    def wrap(self, fn: Node) -> Node:
        name: str = getattr(fn, "__name__", "")

        def node(state: Any, runtime: Runtime[Any]) -> dict[str, Any]:
            self.calls.append(name)
            step: dict[str, Any] = getattr(self, name)(state)
            return step

        return node

    def validate(self, state: Any) -> dict[str, Any]:
        if self.failures > 0:
            self.failures -= 1
            return {"error": {"type": "E", "message": "bad"}, "error_stage": "check_shapes"}
        return {"error": None, "error_stage": None, "validation": {"params": 3}}

    def code_fixer(self, state: Any) -> dict[str, Any]:
        attempt = state.get("fix_attempts", 0) + 1
        return {
            "fix_attempts": attempt,
            "fixes": [*state.get("fixes", []), {"attempt": attempt}],
            "error": None,
            "llm_calls": [{"role": "code_fixer", "attempt": attempt}],
        }

    def evaluate(self, state: Any) -> dict[str, Any]:
        if self.crashes > 0:
            self.crashes -= 1
            raise CrashError
        return {"error": None, "evaluation": {"train": {"val_accuracy": 0.5}}}


def _start(max_fix_attempts: int) -> PipelineInput:
    return {
        "spec": {},
        "iteration": 1,
        "candidate": CANDIDATE,
        "fix_attempts": 0,
        "max_fix_attempts": max_fix_attempts,
        "fixes": [],
    }


def test_a_failing_candidate_is_fixed_then_evaluated() -> None:
    script = Script(failures=2)
    out = build_pipeline(script.wrap).invoke(_start(3))
    assert script.calls == [
        "validate", "code_fixer", "validate", "code_fixer", "validate", "evaluate",
    ]  # fmt: skip
    assert out["error"] is None
    assert out["evaluation"] == {"train": {"val_accuracy": 0.5}}
    assert [c["attempt"] for c in out["llm_calls"]] == [1, 2]


def test_spent_fix_attempts_end_the_pipeline_with_its_error() -> None:
    script = Script(failures=5)
    out = build_pipeline(script.wrap).invoke(_start(1))
    assert script.calls == ["validate", "code_fixer", "validate"]
    assert out["error"] == {"type": "E", "message": "bad"}
    assert out["error_stage"] == "check_shapes"
    # ``archsmith evaluate``: no fix attempts, the first failure ends it.
    script = Script(failures=1)
    out = build_pipeline(script.wrap).invoke(_start(0))
    assert script.calls == ["validate"]
    assert out["error"] is not None


class Outer(TypedDict, total=False):
    spec: dict[str, Any]
    iteration: int
    candidate: Any
    fix_attempts: int
    max_fix_attempts: int
    fixes: list[dict[str, Any]]
    error: Any
    evaluation: Any
    llm_calls: Annotated[list[dict[str, Any]], operator.add]


def _outer(script: Script) -> Any:
    g: StateGraph[Outer, Any, Outer, Outer] = StateGraph(Outer)
    g.add_node("pipeline", build_pipeline(script.wrap))
    g.add_edge(START, "pipeline")
    g.add_edge("pipeline", END)
    return g.compile(checkpointer=InMemorySaver())


def test_as_a_node_it_adds_only_its_own_llm_calls() -> None:
    """The caller's list of calls is not handed back to it (it would be added twice)."""
    graph = _outer(Script(failures=1))
    config: Any = {"configurable": {"thread_id": "t"}}
    state = graph.invoke({**_start(3), "llm_calls": [{"role": "architect"}]}, config)
    assert [c["role"] for c in state["llm_calls"]] == ["architect", "code_fixer"]


def test_a_cut_candidate_resumes_from_its_last_finished_step() -> None:
    """Killed while training, the candidate is not validated (or fixed) again on resume."""
    script = Script(failures=1, crashes=1)
    graph = _outer(script)
    config: Any = {"configurable": {"thread_id": "t"}}
    with pytest.raises(CrashError):
        graph.invoke({**_start(3), "llm_calls": []}, config, durability="sync")
    assert script.calls == ["validate", "code_fixer", "validate", "evaluate"]
    state = graph.invoke(None, config, durability="sync")
    assert script.calls[4:] == ["evaluate"]
    assert state["evaluation"] == {"train": {"val_accuracy": 0.5}}
    assert [c["role"] for c in state["llm_calls"]] == ["code_fixer"]
