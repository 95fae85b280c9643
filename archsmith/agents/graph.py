"""The LEMONADE loop (Algorithm 1) as a LangGraph state machine.

    planner -> architect -> pipeline -> critic -> (architect | final_test -> END)
                               |
                               +-> record_failure (its fix attempts spent) -> ...

``pipeline`` is the candidate pipeline (`archsmith.agents.pipeline`: validate, code_fixer,
evaluate), a subgraph. With ``workers`` > 1 (``run --workers N``) the planner leads to rounds:

  planner -> architect_round =Send=> candidate xN -> critic_round -> (architect_round | final_test)

where each ``candidate`` task runs the same pipeline on one proposal (its sandbox jobs on Ray
workers) and the critic judges the round's results together.

Routing lives in pure ``route_*`` functions; every loop is bounded (iterations, fix attempts,
wall-clock budget, patience). LangGraph Studio's entry point is `archsmith.agents.studio`.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from archsmith.agents import nodes, rounds
from archsmith.agents.pipeline import PIPELINE, NodeWrapper, as_is, build_pipeline
from archsmith.agents.state import AgentContext, AgentState

__all__ = [
    "build_graph",
    "route_after_critic",
    "route_after_pipeline",
    "route_after_planner",
    "route_after_round",
    "wire",
]


def route_after_pipeline(state: AgentState) -> Literal["critic", "record_failure"]:
    """After the candidate pipeline: judge its figures, or record why it failed."""
    return "critic" if state.get("error") is None else "record_failure"


def route_after_planner(state: AgentState) -> Literal["architect", "architect_round"]:
    """One candidate at a time (``--workers 1``, today's loop), or rounds of several at once."""
    return "architect_round" if state["workers"] > 1 else "architect"


def route_after_round(state: AgentState) -> Literal["architect_round", "final_test"]:
    """After a parallel round's critic: stop when it gave a reason, else another round."""
    return "final_test" if state.get("stop_reason") else "architect_round"


def route_after_critic(state: AgentState) -> Literal["architect", "final_test"]:
    """Stop when the critic (or record_failure) gave a reason, else another round."""
    return "final_test" if state.get("stop_reason") else "architect"


def build_graph(
    checkpointer: BaseCheckpointSaver[Any] | None = None,
) -> CompiledStateGraph[AgentState, AgentContext, AgentState, AgentState]:
    """Compile the graph; pass a checkpointer to make runs resumable."""
    g: StateGraph[AgentState, AgentContext, AgentState, AgentState] = StateGraph(
        AgentState, context_schema=AgentContext
    )
    wire(g, as_is)
    return g.compile(checkpointer=checkpointer)


def wire(g: StateGraph[AgentState, Any, Any, AgentState], node: NodeWrapper) -> None:
    """The nodes and edges, the same for every entry point; ``node`` adapts how nodes are called."""
    g.add_node("planner", node(nodes.planner))
    g.add_node("architect", node(nodes.architect))
    g.add_node(PIPELINE, build_pipeline(node))
    g.add_node("critic", node(nodes.critic))
    g.add_node("record_failure", node(nodes.record_failure))
    g.add_node("final_test", node(nodes.final_test))
    g.add_edge(START, "planner")
    g.add_node("architect_round", node(rounds.architect_round))
    g.add_node("candidate", node(rounds.candidate))
    g.add_node("critic_round", node(rounds.critic_round))
    g.add_conditional_edges("planner", route_after_planner, ["architect", "architect_round"])
    # Parallel rounds: one `candidate` task per proposal (LangGraph's Send), each checkpointed as
    # it ends; the critic runs once they all have.
    g.add_conditional_edges("architect_round", rounds.fan_out, ["candidate"])
    g.add_edge("candidate", "critic_round")
    g.add_conditional_edges("critic_round", route_after_round, ["architect_round", "final_test"])
    g.add_edge("architect", PIPELINE)
    g.add_conditional_edges(PIPELINE, route_after_pipeline, ["critic", "record_failure"])
    g.add_conditional_edges("critic", route_after_critic, ["architect", "final_test"])
    g.add_conditional_edges("record_failure", route_after_critic, ["architect", "final_test"])
    g.add_edge("final_test", END)
