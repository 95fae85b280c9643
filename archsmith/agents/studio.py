"""LangGraph Studio's entry point (``langgraph.json``): the run's graph, runnable from its forms.

Studio starts a run with the state alone (a ``request``) and at most a JSON context, never the
sandbox or the architect a node needs; each node therefore builds the run's `AgentContext` from
the context form (`RunSettings`, as ``archsmith run``'s flags fill it), the settings and the
environment (one per thread).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any

from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from typing_extensions import Required, TypedDict

from archsmith.agents.graph import wire
from archsmith.agents.pipeline import Node
from archsmith.agents.session import make_checked_llm, new_meta, run_context
from archsmith.agents.state import AgentContext, AgentState
from archsmith.config import RunSettings, Settings
from archsmith.errors import InputError

__all__ = ["StudioInput", "build_studio_graph", "graph", "studio_context"]

log = logging.getLogger(__name__)


class StudioInput(TypedDict, total=False):
    """Studio's input form: the request in plain words, and what the planner may be told with it
    (``--dataset``, ``--image-size``); how the run goes is the context form (`RunSettings`).

    A ``typing_extensions`` TypedDict, so that pydantic can draw the form on Python < 3.12.
    """

    request: Required[str]
    dataset: str | None
    image_size: int | None


def studio_context(options: Any, thread: str | None) -> AgentContext:
    """The run context for a graph started by LangGraph Studio, which has none of its own.

    ``options`` is what Studio passed: `RunSettings`, its fields as a dict, or None; a field it
    leaves at its default is read from ``ARCHSMITH_<FIELD>``, as ``archsmith run`` reads it. An
    `AgentContext` (a caller that built one) is used as it is. Built once per thread and kept,
    so a search's nodes share one sandbox and one architect, as in ``archsmith run``.
    """
    if isinstance(options, AgentContext):
        return options
    if options is None:
        options = {}
    elif dataclasses.is_dataclass(options) and not isinstance(options, type):
        # RunSettings (or this module's, loaded by its path): what differs from the defaults.
        defaults = RunSettings()
        options = {
            k: v for k, v in dataclasses.asdict(options).items() if getattr(defaults, k) != v
        }
    if not isinstance(options, dict):
        raise InputError(f"LangGraph Studio passed a context archsmith cannot read: {options!r}")
    try:
        settings = RunSettings.from_env(**options)
    except TypeError as e:
        raise InputError(f"LangGraph Studio passed an unknown context field: {e}") from e
    return _studio_context(settings, thread)


@functools.lru_cache(maxsize=8)
def _studio_context(run: RunSettings, thread: str | None) -> AgentContext:
    meta = new_meta("(started from LangGraph Studio)", run)
    meta.run_id = f"studio-{thread or 'local'}"
    log.info(
        "LangGraph Studio run on thread %s: %s, %s sandbox", thread, meta.llm, meta.settings.sandbox
    )
    return run_context(meta, Settings(), make_checked_llm(meta))


def _with_run_context(fn: Node) -> Node:
    """``fn`` given the run's `AgentContext`, built from Studio's context (or none at all)."""

    @functools.wraps(fn)
    def node(state: AgentState, runtime: Runtime[Any]) -> dict[str, Any]:
        info = runtime.execution_info
        thread = info.thread_id if info is not None else None
        context = studio_context(runtime.context, thread)
        return fn(state, runtime.override(context=context))

    return node


def build_studio_graph() -> CompiledStateGraph[AgentState, RunSettings, StudioInput, AgentState]:
    """The graph for ``langgraph dev`` / LangGraph Studio, runnable from its forms; its shape is
    `archsmith.agents.graph.build_graph`'s."""
    g: StateGraph[AgentState, RunSettings, StudioInput, AgentState] = StateGraph(
        AgentState, context_schema=RunSettings, input_schema=StudioInput
    )
    wire(g, _with_run_context)
    return g.compile()


#: The graph for LangGraph Studio (``langgraph.json``).
graph = build_studio_graph()
