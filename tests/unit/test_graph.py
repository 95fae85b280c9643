"""The graph's shape and its pure routing functions."""

from __future__ import annotations

from pathlib import Path

from archsmith.agents.graph import build_graph, route_after_critic, route_after_pipeline
from archsmith.agents.pipeline import build_pipeline, route_after_step
from archsmith.agents.state import AgentState

SNAPSHOT = Path(__file__).resolve().parents[1] / "snapshots" / "graph.mmd"


def test_mermaid_drawing_matches_the_snapshot() -> None:
    drawing = build_graph().get_graph(xray=True).draw_mermaid()
    assert drawing == SNAPSHOT.read_text(), (
        "the graph changed; if on purpose, regenerate tests/snapshots/graph.mmd"
    )


def test_graph_has_the_designed_nodes() -> None:
    nodes = set(build_graph().get_graph().nodes)
    assert nodes == {
        "__start__", "planner", "architect", "pipeline", "critic", "record_failure",
        "final_test", "__end__",
        # --workers N > 1: a round of candidates fanned out with Send, judged together
        "architect_round", "candidate", "critic_round",
    }  # fmt: skip


def test_the_candidate_pipeline_is_one_subgraph_for_both_loops() -> None:
    """validate -> fix -> evaluate is written once: the serial node and each parallel candidate
    run the same steps."""
    assert set(build_pipeline().get_graph().nodes) == {
        "__start__", "validate", "code_fixer", "evaluate", "__end__",
    }  # fmt: skip
    drawn = set(build_graph().get_graph(xray=True).nodes)
    for owner in ("pipeline", "candidate"):
        assert {f"{owner}:validate", f"{owner}:code_fixer", f"{owner}:evaluate"} <= drawn


def test_route_after_step() -> None:
    ok: AgentState = {"error": None}
    assert route_after_step(ok) == "next"
    failing: AgentState = {"error": {"type": "X"}, "fix_attempts": 0, "max_fix_attempts": 3}
    assert route_after_step(failing) == "code_fixer"
    spent: AgentState = {"error": {"type": "X"}, "fix_attempts": 3, "max_fix_attempts": 3}
    assert route_after_step(spent) == "failed"
    no_fixes: AgentState = {"error": {"type": "X"}, "fix_attempts": 0, "max_fix_attempts": 0}
    assert route_after_step(no_fixes) == "failed"


def test_route_after_pipeline() -> None:
    assert route_after_pipeline({"error": None}) == "critic"
    # The pipeline ends with the error kept once its fix attempts are spent.
    assert route_after_pipeline({"error": {"type": "X"}, "fix_attempts": 3}) == "record_failure"


def test_route_after_critic() -> None:
    assert route_after_critic({"stop_reason": None}) == "architect"
    # The loop's end goes through the one place the test split is read.
    assert route_after_critic({"stop_reason": "reached 10 iterations"}) == "final_test"
