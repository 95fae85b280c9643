"""The LEMONADE loop (Algorithm 1) as a LangGraph state machine.

    planner -> architect -> validate -> evaluate -> critic -> (architect | final_test -> END)
                              ^  |          |
                              |  v          v
                           code_fixer <-----+   (attempts spent -> record_failure -> ...)

With ``workers`` > 1 (``run --workers N``) the planner leads to rounds instead:

  planner -> architect_round =Send=> candidate xN -> critic_round -> (architect_round | final_test)

where each ``candidate`` task validates, fixes and evaluates one proposal on its own (its sandbox
jobs on Ray workers) and the critic judges the round's results together.

Routing lives in pure ``route_*`` functions; every loop is bounded (iterations, fix attempts,
wall-clock budget, patience).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from typing_extensions import Required, TypedDict

from archsmith.agents import nodes, rounds
from archsmith.agents.state import AgentContext, AgentState

__all__ = [
    "StudioContext",
    "StudioInput",
    "build_graph",
    "build_studio_graph",
    "graph",
    "route_after_critic",
    "route_after_planner",
    "route_after_round",
    "route_after_step",
]

DEFAULT_MAX_FIX_ATTEMPTS = nodes.DEFAULT_MAX_FIX_ATTEMPTS


class Node(Protocol):
    """A node as `nodes` defines them: the state and the runtime in, the changed keys out."""

    def __call__(self, state: AgentState, runtime: Runtime[Any]) -> dict[str, Any]: ...


NodeWrapper = Callable[[Node], Node]


def route_after_step(
    state: AgentState,
) -> Literal["code_fixer", "record_failure", "next"]:
    """After validate or evaluate: go on, try a fix, or give the candidate up."""
    return nodes.next_step(state)


def route_after_planner(state: AgentState) -> Literal["architect", "architect_round"]:
    """One candidate at a time (``--workers 1``, today's loop), or rounds of several at once."""
    return "architect_round" if state.get("workers", 1) > 1 else "architect"


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
    _wire(g, _as_is)
    return g.compile(checkpointer=checkpointer)


def _wire(g: StateGraph[AgentState, Any, Any, AgentState], node: NodeWrapper) -> None:
    """The nodes and edges, the same for every entry point; ``node`` adapts how nodes are called."""
    g.add_node("planner", node(nodes.planner))
    g.add_node("architect", node(nodes.architect))
    g.add_node("validate", node(nodes.validate))
    g.add_node("code_fixer", node(nodes.code_fixer))
    g.add_node("evaluate", node(nodes.evaluate))
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
    g.add_conditional_edges("critic", route_after_critic, ["architect", "final_test"])
    g.add_conditional_edges("record_failure", route_after_critic, ["architect", "final_test"])
    g.add_edge("final_test", END)


def _as_is(fn: Node) -> Node:
    return fn


# -- LangGraph Studio -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StudioContext:
    """What Studio's context form may set for a run; the rest comes from the settings
    (``ARCHSMITH_*``, ``.env``) and the environment's LLM keys, as ``archsmith run`` takes them."""

    llm: str | None = None
    """offline, openai:MODEL or gemini:MODEL; default: by the key that is set, else offline."""
    base_url: str | None = None
    sandbox: Literal["local", "docker", "none"] = "local"
    device: str | None = None
    data_dir: str | None = None
    epochs: int = 5
    max_train: int | None = None
    max_val: int | None = None
    early_stop: bool = False
    """Stop hopeless candidates after a third of their epochs (``archsmith run --early-stop``)."""
    early_stop_margin: float = 0.02


class StudioInput(TypedDict, total=False):
    """Studio's input form: the request in plain words and the loop's bounds, nothing internal.

    A ``typing_extensions`` TypedDict, so that pydantic can draw the form on Python < 3.12.
    """

    request: Required[str]
    max_iterations: int
    max_fix_attempts: int
    budget_s: float | None
    patience: int | None


def _with_run_context(fn: Node) -> Node:
    """``fn`` given the run's `AgentContext`, built from Studio's context (or none at all)."""

    @functools.wraps(fn)
    def node(state: AgentState, runtime: Runtime[Any]) -> dict[str, Any]:
        # Imported here: session imports this module (through runs).
        from archsmith.agents.session import studio_context

        info = runtime.execution_info
        thread = info.thread_id if info is not None else None
        context = studio_context(runtime.context, thread)
        return fn(state, runtime.override(context=context))

    return node


def build_studio_graph() -> CompiledStateGraph[AgentState, StudioContext, StudioInput, AgentState]:
    """The graph for ``langgraph dev`` / LangGraph Studio, runnable from its input form.

    Studio starts a run with the state alone (a ``request``) and at most a JSON context, never
    the sandbox or the architect a node needs; each node therefore builds the run's
    `AgentContext` from `StudioContext`, the settings and the environment (one per thread).
    The shape is `build_graph`'s.
    """
    g: StateGraph[AgentState, StudioContext, StudioInput, AgentState] = StateGraph(
        AgentState, context_schema=StudioContext, input_schema=StudioInput
    )
    _wire(g, _with_run_context)
    return g.compile()


#: The graph for LangGraph Studio (``langgraph.json``).
graph = build_studio_graph()
