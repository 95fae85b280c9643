"""The candidate pipeline: validate -> fix -> evaluate, one LangGraph subgraph for every caller.

    validate -> evaluate -> END
      ^  |        |
      |  v        v
    code_fixer <--+        (attempts spent: END with the error kept)

The serial loop runs it as a node, a parallel round runs it once per proposal (LangGraph's
``Send``), and ``archsmith evaluate`` runs it on one model file with no fix attempts. Inside a
graph with a checkpointer it inherits it: each of its steps is saved, so a run cut in the middle
of a candidate resumes from the candidate's last finished step.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Annotated, Any, Literal, Protocol

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from typing_extensions import TypedDict

from archsmith.agents import nodes
from archsmith.agents.records import BestCandidate, ErrorRecord, Evaluation, FixRecord, Validation
from archsmith.agents.state import AgentState, Candidate

__all__ = [
    "PIPELINE",
    "Node",
    "NodeWrapper",
    "PipelineInput",
    "PipelineOutput",
    "PipelineState",
    "as_is",
    "build_pipeline",
    "pipeline",
    "route_after_step",
]

#: The serial loop's name for the pipeline node; its own steps are what a run reports.
PIPELINE = "pipeline"


class Node(Protocol):
    """A node as `nodes` defines them: the state and the runtime in, the changed keys out."""

    def __call__(self, state: AgentState, runtime: Runtime[Any]) -> dict[str, Any]: ...


#: How an entry point adapts a node (Studio builds the run's context in each one).
NodeWrapper = Callable[[Node], Node]


def merge_reports(current: dict[str, Any] | None, update: dict[str, Any] | None) -> dict[str, Any]:
    """Each tool's output by tool name, as the steps that called them add them."""
    return {**(current or {}), **(update or {})}


class PipelineInput(TypedDict, total=False):
    """What the pipeline reads from its caller's state: the candidate and the run's bounds."""

    spec: dict[str, Any]
    iteration: int
    iteration_started: float
    candidate: Candidate | None
    fix_attempts: int
    max_fix_attempts: int
    fixes: list[FixRecord]
    error: ErrorRecord | None
    error_stage: str | None
    validation: Validation | None
    evaluation: Evaluation | None
    best: BestCandidate | None
    budget_s: float | None
    elapsed_s: float


class PipelineOutput(TypedDict, total=False):
    """What the pipeline gives back: the candidate as it ends, its figures or its error, and the
    code fixer's LLM calls (only this candidate's: the caller adds them to its own)."""

    candidate: Candidate | None
    fix_attempts: int
    fixes: list[FixRecord]
    error: ErrorRecord | None
    error_stage: str | None
    validation: Validation | None
    evaluation: Evaluation | None
    llm_calls: Annotated[list[dict[str, Any]], operator.add]


class PipelineState(PipelineInput, PipelineOutput, total=False):
    """The pipeline's own state: its input and output, and each tool's output (``reports``,
    what ``archsmith evaluate --json`` prints), kept in the pipeline's steps only."""

    reports: Annotated[dict[str, Any], merge_reports]


def route_after_step(state: AgentState) -> Literal["code_fixer", "failed", "next"]:
    """After validate or evaluate: go on, try a fix, or give the candidate up: the pipeline ends
    with its error, which the caller records (``record_failure`` in the serial loop)."""
    step = nodes.next_step(state)
    return "failed" if step == "record_failure" else step


def as_is(fn: Node) -> Node:
    """The node unchanged: callers that pass the run's `AgentContext` themselves."""
    return fn


def build_pipeline(
    node: NodeWrapper = as_is,
) -> CompiledStateGraph[PipelineState, Any, PipelineInput, PipelineOutput]:
    """Compile the pipeline; ``node`` adapts how its nodes are called (see `NodeWrapper`).

    Compiled without a checkpointer: inside a graph it uses that graph's.
    """
    g: StateGraph[PipelineState, Any, PipelineInput, PipelineOutput] = StateGraph(
        PipelineState, input_schema=PipelineInput, output_schema=PipelineOutput
    )
    g.add_node("validate", node(nodes.validate))
    g.add_node("code_fixer", node(nodes.code_fixer))
    g.add_node("evaluate", node(nodes.evaluate))
    g.add_edge(START, "validate")
    g.add_conditional_edges(
        "validate",
        route_after_step,
        {"next": "evaluate", "code_fixer": "code_fixer", "failed": END},
    )
    g.add_edge("code_fixer", "validate")
    g.add_conditional_edges(
        "evaluate",
        route_after_step,
        {"next": END, "code_fixer": "code_fixer", "failed": END},
    )
    return g.compile()


#: The pipeline for callers that hand it an `AgentContext` (parallel rounds, ``evaluate``).
pipeline = build_pipeline()
