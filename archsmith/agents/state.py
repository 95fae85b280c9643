"""The graph's state and its run-scoped context.

State holds only JSON data (code as text, metrics as numbers) so any checkpointer can store it and a
run resumes after a crash exactly where its last completed step left it. Things that cannot be
serialised (the sandbox, the architect, the LLM client) live in the ``AgentContext`` handed to each
invocation, rebuilt on resume.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel

from archsmith.agents.interfaces import Architect
from archsmith.tools.runtime import ToolRuntime

__all__ = ["AgentContext", "AgentState", "Candidate"]


class Candidate(TypedDict):
    """The candidate in flight: its code and what the architect said about it."""

    code: str
    summary: str
    arch: dict[str, Any] | None
    applied: list[str]


class AgentState(TypedDict, total=False):
    """Everything a run knows; each node returns only the keys it changes."""

    request: str
    spec: dict[str, Any]
    assumptions: list[str]
    planner: str
    max_iterations: int
    max_fix_attempts: int
    budget_s: float | None
    patience: int | None
    started_at: float
    elapsed_s: float
    iteration: int
    iteration_started: float
    candidate: Candidate | None
    fix_attempts: int
    fixes: list[dict[str, Any]]
    error: dict[str, Any] | None
    error_stage: str | None
    validation: dict[str, Any] | None
    evaluation: dict[str, Any] | None
    instructions: list[dict[str, Any]]
    history: Annotated[list[dict[str, Any]], operator.add]
    llm_calls: Annotated[list[dict[str, Any]], operator.add]
    best: dict[str, Any] | None
    stale_iterations: int
    stop_reason: str | None


@dataclass
class AgentContext:
    """Run-scoped collaborators: not checkpointed, rebuilt when a run resumes."""

    tools: ToolRuntime
    architect: Architect
    llm: BaseChatModel | None = None
    epochs: int = 5
    max_fix_attempts: int = 3
    train_time_budget_s: float | None = None
    max_train: int | None = None
    max_val: int | None = None
