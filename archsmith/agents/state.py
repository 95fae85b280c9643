"""The graph's state and its run-scoped context.

State holds only JSON data (code as text, metrics as numbers) so any checkpointer can store it and a
run resumes after a crash exactly where its last completed step left it. Things that cannot be
serialised (the sandbox, the architect, the LLM client) live in the ``AgentContext`` handed to each
invocation, rebuilt on resume.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel

# typing_extensions' TypedDict: pydantic (LangGraph Studio's schema) refuses typing's on Python
# before 3.12, and the graph's output schema would be missing there.
from typing_extensions import TypedDict

from archsmith.agents.early_stop import EarlyStopRule
from archsmith.agents.interfaces import Architect
from archsmith.agents.records import (
    BestCandidate,
    ErrorRecord,
    Evaluation,
    FixRecord,
    HistoryEntry,
    Instruction,
    Validation,
)
from archsmith.config import RunSettings
from archsmith.tools.runtime import ToolRuntime

__all__ = ["AgentContext", "AgentState", "Candidate", "merge_round_results"]


class Candidate(TypedDict):
    """The candidate in flight: its code and what the architect said about it."""

    code: str
    summary: str
    arch: dict[str, Any] | None
    applied: list[str]


def merge_round_results(
    current: dict[str, Any] | None, update: dict[str, Any] | None
) -> dict[str, Any]:
    """The round's finished candidates by iteration: each candidate adds its own as it ends;
    ``None`` (a new round) empties it."""
    if update is None:
        return {}
    return {**(current or {}), **update}


class AgentState(TypedDict, total=False):
    """Everything a run knows; each node returns only the keys it changes."""

    request: str
    #: ``--dataset`` and ``--image-size``: what the planner is told besides the request.
    dataset: str | None
    image_size: int | None
    spec: dict[str, Any]
    assumptions: list[str]
    planner: str
    #: Epochs per candidate as the planner settled them (the settings', or by the planned
    #: dataset's size), and the training samples it counted when it chose them.
    epochs: int
    train_samples: int | None
    #: The loop's bounds, copied from the run's settings by the planner node (checkpointed with
    #: the run; a test may start the graph with its own).
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
    fixes: list[FixRecord]
    error: ErrorRecord | None
    error_stage: str | None
    validation: Validation | None
    evaluation: Evaluation | None
    instructions: list[Instruction]
    history: Annotated[list[HistoryEntry], operator.add]
    llm_calls: Annotated[list[dict[str, Any]], operator.add]
    best: BestCandidate | None
    #: The test split's figures, by iteration: the best's and the Pareto fronts', measured once
    #: when the loop stops (``nodes.final_test``), never read by a decision.
    test_results: dict[str, Any]
    stale_iterations: int
    stop_reason: str | None
    #: Candidates evaluated at once (``run --workers N``); 1 (or absent): one at a time.
    workers: int
    #: The parallel round in flight: its candidates, each ``{"iteration", "candidate"}``.
    round: list[dict[str, Any]] | None
    round_number: int
    round_started: float
    #: What each of the round's candidates found, by iteration, written as each one ends.
    round_results: Annotated[dict[str, Any], merge_round_results]


@dataclass
class AgentContext:
    """The run's collaborators, and its `RunSettings`: not checkpointed, rebuilt on resume."""

    tools: ToolRuntime
    settings: RunSettings = field(default_factory=RunSettings)
    #: Proposes and repairs candidates; None where nothing is proposed (``archsmith evaluate``).
    architect: Architect | None = None
    llm: BaseChatModel | None = None
    #: Told each parallel candidate's record as soon as it is done, from its own thread (the
    #: run store's row); the graph's stream reports it only when LangGraph gets to it.
    on_candidate: Callable[[HistoryEntry], None] | None = None

    @property
    def epochs(self) -> int:
        """Epochs per candidate: the settings', which the planner node settles when unset."""
        if self.settings.epochs is None:
            raise RuntimeError("the epochs are settled by the planner node, which has not run")
        return self.settings.epochs

    @property
    def early_stop(self) -> EarlyStopRule | None:
        """The early-stopping rule (``run --early-stop``); None: every candidate trains on."""
        if not self.settings.early_stop:
            return None
        return EarlyStopRule(margin=self.settings.early_stop_margin)

    def require_architect(self) -> Architect:
        """The architect, for the nodes that propose or repair a candidate."""
        if self.architect is None:
            raise RuntimeError("this context has no architect to propose or repair candidates")
        return self.architect
