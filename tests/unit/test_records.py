"""The typed records (`archsmith.agents.records`) describe what the nodes really write.

mypy checks the keys the code names; these tests check the dicts the nodes build at run time
against the same TypedDicts, values included (pydantic validates a TypedDict, strictly, with no
undeclared key allowed), so a record that gains a key or changes a value's type without its
TypedDict fails here. They also pin what typing must not change: the checkpoint holds plain
dicts, and a best written before ``feasible`` existed is still read.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from archsmith.agents import nodes
from archsmith.agents.early_stop import CheckFigures, EarlyStopRule, verdict
from archsmith.agents.graph import build_graph
from archsmith.agents.interfaces import ArchitectProposal
from archsmith.agents.offline.architect import OfflineArchitect
from archsmith.agents.records import BestCandidate, HistoryEntry, Instruction
from archsmith.agents.rounds import propose_distinct
from archsmith.agents.state import AgentState
from archsmith.spec import TaskSpec

SPEC = TaskSpec(
    dataset="digits", input_shape=(1, 8, 8), num_classes=10, max_params=10, fps_priority=1.0
)


class _Strict(BaseModel):
    """Pydantic applies this config to the TypedDicts inside (they have none of their own):
    no undeclared key, no value coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class _Entry(_Strict):
    record: HistoryEntry


class _Best(_Strict):
    record: BestCandidate


class _Instruction(_Strict):
    record: Instruction


def _state(iteration: int, params: int, val: float, *, best: BestCandidate | None = None,
           error: dict[str, Any] | None = None) -> AgentState:  # fmt: skip
    """The state a run hands the critic (or record_failure), every record complete."""
    train: dict[str, Any] = {
        "train_accuracy": min(1.0, val + 0.01),
        "val_accuracy": val,
        "train_energy_kwh_pue": 1e-6,
        "params": params,
        "size_mb": params * 4 / 1e6,
        "diverged": False,
        "model_dir": f"/models/{iteration}",
        "train_energy_source": "estimate",
        "early_stop": None,
    }
    measure = {"fps": 900.0, "val_energy_kwh_pue": 1e-8, "latency_ms": 0.5}
    return {
        "spec": SPEC.model_dump(mode="json"),
        "iteration": iteration,
        "max_iterations": 10,
        "iteration_started": 1.0,
        "candidate": {
            "code": f"# {iteration}",
            "summary": f"#{iteration}",
            "arch": None,
            "applied": ["ACL: added conv 64"],
        },
        "fixes": [],
        "validation": {
            "output_shape": [2, 10],
            "params": params,
            "trainable_params": params,
            "size_mb": params * 4 / 1e6,
            "flops_per_sample": 100,
        },
        "evaluation": {"train": train, "measure": measure},
        "error": error,
        "error_stage": "train_model" if error else None,
        "history": [],
        "best": best,
    }


def _critic(state: AgentState) -> dict[str, Any]:
    return nodes.critic(state, None)  # type: ignore[arg-type] # the critic reads no context


def _check(model: type[_Strict], record: Any) -> None:
    """The record is its TypedDict exactly: nothing undeclared, nothing coerced."""
    assert model.model_validate({"record": record}).model_dump()["record"] == record


def test_the_critics_entry_and_best_are_their_records() -> None:
    first = _critic(_state(1, params=8, val=0.9))
    (entry,) = first["history"]
    _check(_Entry, entry)
    _check(_Best, first["best"])
    assert first["instructions"], "the rulebook advises on a first model"
    for instruction in first["instructions"]:
        _check(_Instruction, instruction)

    # A loser: its entry says so, the best stays, the instructions are the best's.
    loser = _critic(_state(2, params=44, val=0.1, best=first["best"]))
    _check(_Entry, loser["history"][0])
    assert loser["best"] == first["best"]


def test_a_failed_candidates_entry_is_its_record() -> None:
    error = {"type": "RuntimeError", "message": "boom", "line": 3}
    out = nodes.record_failure(_state(1, params=8, val=0.9, error=error), None)  # type: ignore[arg-type]
    (entry,) = out["history"]
    _check(_Entry, entry)
    assert entry["error"] == {**error, "stage": "train_model"}


def test_an_undeclared_key_or_a_wrong_type_is_caught() -> None:
    """The check above would miss nothing the TypedDict does not declare."""
    entry = _critic(_state(1, params=8, val=0.9))["history"][0]
    with pytest.raises(ValidationError):
        _Entry.model_validate({"record": {**entry, "surprise": 1}})
    with pytest.raises(ValidationError):
        _Entry.model_validate({"record": {**entry, "is_best": "yes"}})
    with pytest.raises(ValidationError):
        _Entry.model_validate({"record": {**entry, "validation": {"params": 8}}})


def test_a_rounds_proposals_in_flight_are_history_entries() -> None:
    seen: list[list[HistoryEntry]] = []

    class Recording(OfflineArchitect):
        def propose(self, spec: TaskSpec, instructions: list[Instruction],
                    best: BestCandidate | None, history: list[HistoryEntry],
                    iteration: int) -> ArchitectProposal:  # fmt: skip
            seen.append(list(history))
            return super().propose(spec, instructions, best, history, iteration)

    propose_distinct(Recording(seed=0), SPEC, [], None, [], 1, 3)
    in_flight = seen[-1]
    assert [h["status"] for h in in_flight] == ["proposed", "proposed"]
    for h in in_flight:
        _check(_Entry, h)


def test_a_best_from_before_feasibility_is_still_read() -> None:
    """Runs stored before ``feasible`` and ``limit_violations`` existed resume: the keys are
    optional, and their readers take such a best as feasible, as before."""
    old: BestCandidate = {
        "iteration": 1,
        "code": "# 1",
        "arch": None,
        "summary": "#1",
        "metrics": {"train_accuracy": 0.9, "val_accuracy": 0.9, "params": 8},
        "combined_metric": 1.5,
    }
    _check(_Best, old)
    later = _critic(_state(2, params=44, val=0.99, best=old))
    assert later["best"] == old, "an old best counts as feasible: a violation does not beat it"
    said = verdict(EarlyStopRule(), SPEC, old, None, 1, 3, CheckFigures(0.5, 0.5))
    assert not said.stop
    assert "not measured at epoch" in said.reason


def test_the_graphs_schemas_still_build_with_the_records() -> None:
    """LangGraph Studio reads the state's JSON schema; nested TypedDicts must not break it."""
    graph = build_graph()
    schema = graph.get_input_jsonschema()
    assert "history" in schema["properties"]
    assert "best" in graph.get_output_jsonschema()["properties"]
