"""The LEMONADE loop (Algorithm 1) as a LangGraph state machine.

    planner -> architect -> validate -> evaluate -> critic -> (architect | END)
                              ^  |          |
                              |  v          v
                           code_fixer <-----+   (attempts spent -> record_failure -> ...)

Routing lives in pure ``route_*`` functions; every loop is bounded (iterations, fix attempts,
wall-clock budget, patience).
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from archsmith.agents import nodes
from archsmith.agents.state import AgentContext, AgentState

__all__ = ["build_graph", "graph", "route_after_critic", "route_after_step"]

DEFAULT_MAX_FIX_ATTEMPTS = 3


def route_after_step(
    state: AgentState,
) -> Literal["code_fixer", "record_failure", "next"]:
    """After validate or evaluate: go on, try a fix, or give the candidate up."""
    if state.get("error") is None:
        return "next"
    if state.get("fix_attempts", 0) < state.get("max_fix_attempts", DEFAULT_MAX_FIX_ATTEMPTS):
        return "code_fixer"
    return "record_failure"


def route_after_critic(state: AgentState) -> Literal["architect", "__end__"]:
    """Stop when the critic (or record_failure) gave a reason, else another round."""
    return "__end__" if state.get("stop_reason") else "architect"


def build_graph(
    checkpointer: BaseCheckpointSaver[Any] | None = None,
) -> CompiledStateGraph[AgentState, AgentContext, AgentState, AgentState]:
    """Compile the graph; pass a checkpointer to make runs resumable."""
    g: StateGraph[AgentState, AgentContext, AgentState, AgentState] = StateGraph(
        AgentState, context_schema=AgentContext
    )
    g.add_node("planner", nodes.planner)
    g.add_node("architect", nodes.architect)
    g.add_node("validate", nodes.validate)
    g.add_node("code_fixer", nodes.code_fixer)
    g.add_node("evaluate", nodes.evaluate)
    g.add_node("critic", nodes.critic)
    g.add_node("record_failure", nodes.record_failure)
    g.add_edge(START, "planner")
    g.add_edge("planner", "architect")
    g.add_edge("architect", "validate")
    g.add_conditional_edges(
        "validate",
        route_after_step,
        {"next": "evaluate", "code_fixer": "code_fixer", "record_failure": "record_failure"},
    )
    g.add_edge("code_fixer", "validate")
    g.add_conditional_edges(
        "evaluate",
        route_after_step,
        {"next": "critic", "code_fixer": "code_fixer", "record_failure": "record_failure"},
    )
    g.add_conditional_edges("critic", route_after_critic, ["architect", END])
    g.add_conditional_edges("record_failure", route_after_critic, ["architect", END])
    return g.compile(checkpointer=checkpointer)


#: The graph without a checkpointer, for LangGraph Studio (``langgraph.json``).
graph = build_graph()
