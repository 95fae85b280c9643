"""The contracts between the graph and its pluggable parts: planner, architect.

Kept in one small module so the graph, the offline and the LLM implementations agree on data
shapes without importing each other. Everything here is plain data (pydantic or dicts of JSON
values) because it ends up in the graph's checkpointed state.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from archsmith.agents.records import BestCandidate, ErrorRecord, HistoryEntry, Instruction
from archsmith.errors import InputError
from archsmith.llm.calls import LLMCall
from archsmith.spec import TaskSpec

__all__ = [
    "Architect",
    "ArchitectProposal",
    "PlanRefusedError",
    "PlanResult",
]


class PlanRefusedError(InputError):
    """The planner cannot honour the request (unknown dataset, contradictory constraints)."""


class PlanResult(BaseModel):
    """A validated TaskSpec and every assumption the planner made to get it."""

    model_config = ConfigDict(extra="forbid")

    spec: TaskSpec
    assumptions: list[str] = Field(default_factory=list)
    source: str = Field(description="'offline' or the LLM that produced it, e.g. 'openai:gpt-4o'.")
    llm_calls: list[LLMCall] = Field(default_factory=list, description="The planner's exchanges.")


class ArchitectProposal(BaseModel):
    """A candidate: its code, a one-line summary, and (offline) the description it renders."""

    model_config = ConfigDict(extra="forbid")

    code: str
    summary: str = Field(description="One line for the live view, e.g. 'CNN 3x[32,64,64] +skip'.")
    arch: dict[str, Any] | None = Field(
        default=None, description="The offline architect's architecture description (JSON)."
    )
    applied: list[str] = Field(
        default_factory=list, description="What was changed, e.g. ['ACL: added conv 64']."
    )
    llm_calls: list[LLMCall] = Field(default_factory=list)


class Architect(Protocol):
    """Proposes candidates and repairs failing ones."""

    name: str

    def propose(
        self,
        spec: TaskSpec,
        instructions: list[Instruction],
        best: BestCandidate | None,
        history: list[HistoryEntry],
        iteration: int,
    ) -> ArchitectProposal:
        """The next candidate.

        ``instructions``: the critic's resolved instructions, heaviest first. ``best``: the best
        candidate so far, or None. ``history``: one entry per finished iteration (a parallel
        round adds its proposals in flight, status ``proposed``). ``iteration`` starts at 1.
        """
        ...

    def repair(
        self,
        spec: TaskSpec,
        proposal: ArchitectProposal,
        error: ErrorRecord,
        best: BestCandidate | None,
        attempt: int,
    ) -> ArchitectProposal:
        """A fixed candidate after ``error`` (the failing tool's); attempt >= 1."""
        ...
