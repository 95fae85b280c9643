"""Typed records of what a run keeps: the best candidate, history entries, evaluations.

TypedDicts, not pydantic models: the graph's state is JSON that a checkpointer stores as it is,
so a record must stay a plain dict with the same keys and values (old runs `show` and `resume`
unchanged); the types only let mypy check the keys each node writes and reads. Keys a record
gained after runs were stored (``feasible``, ``limit_violations`` ...) are ``NotRequired`` and read
with ``.get`` and the old default. The tools' own outputs inside a record (``train``,
``measure``, ``metrics``, ``fired_rules`` ...) stay ``dict[str, Any]``: their pydantic models in
`archsmith.tools.schemas` are their schema, and they are validated where they are read.

Their own module so that the Architect protocol (`interfaces`), the state and the architects
share them without importing each other. The run store and the report read these records back
from SQLite as written by any version, so they take ``Mapping[str, Any]`` rather than these types.
"""

from __future__ import annotations

from typing import Any

# typing_extensions' TypedDict: pydantic (LangGraph Studio's schema) refuses typing's on Python
# before 3.12, and the state that holds these records is turned into a schema there.
from typing_extensions import NotRequired, Required, TypedDict

__all__ = [
    "BestCandidate",
    "ErrorRecord",
    "Evaluation",
    "FixRecord",
    "HistoryEntry",
    "Instruction",
    "Measurement",
    "Validation",
]


class ErrorRecord(TypedDict, total=False):
    """Why a step failed: a tool's ``ToolError`` as JSON; in a history entry also its ``stage``."""

    type: str
    message: str
    line: int | None
    stage: str | None


class FixRecord(TypedDict):
    """One code-fixer attempt: which, after which step, and the error it answered."""

    attempt: int
    stage: str | None
    error: ErrorRecord


class Validation(TypedDict):
    """What validate measured: check_shapes' output shape and count_params' figures."""

    output_shape: list[int] | None
    params: int | None
    trainable_params: int | None
    size_mb: float | None
    flops_per_sample: int | None


class Evaluation(TypedDict, total=False):
    """What evaluate measured: ``train_model``'s output and ``measure_energy``'s (None: not
    timed, a diverged or unexported model), or the timing at the early-stopping check with the
    epoch it was taken at."""

    train: Required[dict[str, Any]]
    measure: dict[str, Any] | None
    measured_at_epoch: int


class Instruction(TypedDict):
    """A resolved instruction of the rulebook (``ResolvedInstruction`` as JSON), heaviest first."""

    code: str
    meaning: str
    weight: float
    raised_by: NotRequired[list[str]]


class Measurement(TypedDict):
    """How a candidate's figures were measured: alone on the machine or next to others."""

    speed_and_energy: str
    training_energy: str


class HistoryEntry(TypedDict, total=False):
    """One iteration's record: what was proposed, then what the critic (or the failure) made of
    it. A proposal in flight in a parallel round carries only the required keys."""

    iteration: Required[int]
    status: Required[str]
    summary: Required[str]
    applied: Required[list[str]]
    arch: Required[dict[str, Any] | None]
    code: Required[str]
    fixes: list[FixRecord]
    validation: Validation | None
    seconds: float
    started_at: float
    finished_at: float
    error: ErrorRecord
    #: ``EvaluationMetrics`` as JSON.
    metrics: dict[str, Any]
    combined_metric: float | None
    instructions: list[Instruction]
    #: The rulebook's ``FiredRule`` and ``DroppedInstruction`` as JSON.
    fired_rules: list[dict[str, Any]]
    dropped: list[dict[str, Any]]
    targets_met: bool
    feasible: bool
    limit_violations: list[str]
    energy_sources: dict[str, str | None]
    model_dir: str | None
    #: ``EarlyStopRecord`` as JSON: the candidate's own check, if it had one.
    early_stop: dict[str, Any] | None
    measurement: Measurement
    is_best: bool
    next_parent: int
    round: int | None
    worker: str | None
    placement: dict[str, Any]


class BestCandidate(TypedDict, total=False):
    """The best candidate so far: what the architect edits and early stopping bounds against."""

    iteration: Required[int]
    code: Required[str]
    arch: Required[dict[str, Any] | None]
    summary: Required[str]
    #: ``EvaluationMetrics`` as JSON.
    metrics: Required[dict[str, Any]]
    combined_metric: Required[float]
    feasible: bool
    limit_violations: list[str]
    model_dir: str | None
    #: Its own early-stopping check: the curve later candidates are bounded against.
    early_stop: dict[str, Any] | None
    #: Set once by ``final_test``.
    test_accuracy: float | None
