"""LangGraph Studio's entry point (``langgraph.json``): the run's graph, runnable from its forms.

Studio starts a run with the state alone (a ``request``) and at most a JSON context, never the
sandbox or the architect a node needs; each node therefore builds the run's `AgentContext` from
`StudioContext`, the settings and the environment (one per thread).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from pydantic import ValidationError
from typing_extensions import Required, TypedDict

from archsmith.agents.graph import wire
from archsmith.agents.pipeline import Node
from archsmith.agents.runs import RunMeta
from archsmith.agents.session import make_checked_llm, run_context
from archsmith.agents.state import AgentContext, AgentState
from archsmith.config import DEFAULT_EARLY_STOP_MARGIN, DEFAULT_EPOCHS, Settings
from archsmith.errors import InputError

__all__ = ["StudioContext", "StudioInput", "build_studio_graph", "graph", "studio_context"]

log = logging.getLogger(__name__)


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
    epochs: int = DEFAULT_EPOCHS
    max_train: int | None = None
    max_val: int | None = None
    early_stop: bool = False
    """Stop hopeless candidates after a third of their epochs (``archsmith run --early-stop``)."""
    early_stop_margin: float = DEFAULT_EARLY_STOP_MARGIN


class StudioInput(TypedDict, total=False):
    """Studio's input form: the request in plain words and the loop's bounds, nothing internal.

    A ``typing_extensions`` TypedDict, so that pydantic can draw the form on Python < 3.12.
    """

    request: Required[str]
    max_iterations: int
    max_fix_attempts: int
    budget_s: float | None
    patience: int | None


def studio_context(options: Any, thread: str | None) -> AgentContext:
    """The run context for a graph started by LangGraph Studio, which has none of its own.

    ``options`` is what Studio passed: a `StudioContext`, its fields as a dict, or None; an
    `AgentContext` (a caller that built one) is used as it is. Built once per thread and kept,
    so a search's nodes share one sandbox and one architect, as in ``archsmith run``.
    """
    if isinstance(options, AgentContext):
        return options
    if options is None or isinstance(options, StudioContext):
        return _studio_context(options or StudioContext(), thread)
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        options = dataclasses.asdict(options)  # StudioContext of this module loaded by its path
    if not isinstance(options, dict):
        raise InputError(f"LangGraph Studio passed a context archsmith cannot read: {options!r}")
    try:
        return _studio_context(StudioContext(**options), thread)
    except TypeError as e:
        raise InputError(f"LangGraph Studio passed an unknown context field: {e}") from e


@functools.lru_cache(maxsize=8)
def _studio_context(options: StudioContext, thread: str | None) -> AgentContext:
    from archsmith.llm.providers import default_llm

    overrides: dict[str, Any] = {"sandbox": options.sandbox}
    if options.device:
        overrides["device"] = options.device
    if options.data_dir:
        overrides["data_dir"] = Path(options.data_dir)
    settings = Settings(**overrides)
    try:
        meta = RunMeta(
            run_id=f"studio-{thread or 'local'}",
            request="(started from LangGraph Studio)",
            llm=options.llm or default_llm(),
            base_url=options.base_url,
            sandbox=settings.sandbox,
            device=settings.resolve_device(),
            data_dir=str(settings.data_dir) if settings.data_dir else None,
            epochs=options.epochs,
            max_train=options.max_train,
            max_val=options.max_val,
            early_stop=options.early_stop,
            early_stop_margin=options.early_stop_margin,
        )
    except ValidationError as e:
        raise InputError(f"LangGraph Studio's context has a bad value: {e}") from e
    log.info("LangGraph Studio run on thread %s: %s, %s sandbox", thread, meta.llm, meta.sandbox)
    return run_context(meta, settings, make_checked_llm(meta, settings))


def _with_run_context(fn: Node) -> Node:
    """``fn`` given the run's `AgentContext`, built from Studio's context (or none at all)."""

    @functools.wraps(fn)
    def node(state: AgentState, runtime: Runtime[Any]) -> dict[str, Any]:
        info = runtime.execution_info
        thread = info.thread_id if info is not None else None
        context = studio_context(runtime.context, thread)
        return fn(state, runtime.override(context=context))

    return node


def build_studio_graph() -> CompiledStateGraph[AgentState, StudioContext, StudioInput, AgentState]:
    """The graph for ``langgraph dev`` / LangGraph Studio, runnable from its input form; its
    shape is `archsmith.agents.graph.build_graph`'s."""
    g: StateGraph[AgentState, StudioContext, StudioInput, AgentState] = StateGraph(
        AgentState, context_schema=StudioContext, input_schema=StudioInput
    )
    wire(g, _with_run_context)
    return g.compile()


#: The graph for LangGraph Studio (``langgraph.json``).
graph = build_studio_graph()
