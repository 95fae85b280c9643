"""Fills the run store from the graph's updates and the tool runtime, as the run goes.

The checkpoint is the source of truth for resuming; the store is the record a person reads. A
crash between a checkpoint and its store rows is repaired on resume by ``sync``, which replays the
checkpointed history and LLM calls (both writes are idempotent). Tool calls are only seen live, so
the store keeps every one, including those redone after a resume.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from archsmith.files import atomic_write_text
from archsmith.memory.store import RunStore, ToolCallRecord

__all__ = ["RunRecorder", "StopRequested"]

log = logging.getLogger(__name__)

CANDIDATES_DIR = "candidates"


class StopRequested(Exception):  # noqa: N818 - a signal, not an error
    """Someone ran ``archsmith stop``: end the run after the step that just finished."""


class RunRecorder:
    """Writes one run's iterations, LLM calls and tool calls to the store."""

    def __init__(self, store: RunStore, run_id: str, directory: Path) -> None:
        self.store = store
        self.run_id = run_id
        self.directory = directory
        self.iteration: int | None = None
        self.llm_seq = 0

    def sync(self, state: dict[str, Any]) -> None:
        """Make the store hold everything the checkpointed state holds (idempotent)."""
        with self.store.transaction(f"importing run {self.run_id}"):
            if state.get("spec"):
                self._spec(state)
            calls = state.get("llm_calls", [])
            for seq, call in enumerate(calls):
                self.store.record_llm_call(self.run_id, seq, call)
            for entry in state.get("history", []):
                self._iteration(entry)
            self._tests(state.get("test_results") or {})
        self.llm_seq = len(calls)
        self.iteration = state.get("iteration")

    def _spec(self, values: dict[str, Any]) -> None:
        self.store.update_run(
            self.run_id,
            spec=values["spec"],
            assumptions=values.get("assumptions", []),
            planner=values.get("planner"),
        )

    def on_update(self, node: str, update: dict[str, Any]) -> None:
        """Record what one node changed; raise StopRequested when a stop was asked for."""
        if "iteration" in update:
            self.iteration = int(update["iteration"])
        if node == "planner" and update.get("spec"):
            self._spec(update)
        for call in update.get("llm_calls", []):
            self.store.record_llm_call(self.run_id, self.llm_seq, call)
            self.llm_seq += 1
        for entry in update.get("history", []):
            self._iteration(entry)
        self._tests(update.get("test_results") or {})
        if self.store.stop_requested(self.run_id) and not update.get("stop_reason"):
            raise StopRequested(f"run {self.run_id} was asked to stop")

    def _tests(self, results: dict[str, Any]) -> None:
        for iteration, result in results.items():
            self.store.record_test(self.run_id, int(iteration), result)

    def on_tool_call(self, call: ToolCallRecord) -> None:
        """Record a tool call under the iteration in flight."""
        iteration = call.iteration if call.iteration is not None else self.iteration
        self.store.record_tool_call(self.run_id, iteration, call)

    def on_candidate(self, entry: Mapping[str, Any]) -> None:
        """A parallel round's candidate, recorded as soon as it is done, from its own thread;
        the critic's judgement of it replaces the row when the round ends."""
        self._iteration(entry)

    def _iteration(self, entry: Mapping[str, Any]) -> None:
        number = int(entry["iteration"])
        artifacts: list[tuple[str, Path]] = []
        if entry.get("code"):
            path = self.directory / CANDIDATES_DIR / f"iteration_{number:03d}.py"
            atomic_write_text(path, entry["code"])
            artifacts.append(("code", path))
        if entry.get("model_dir"):
            artifacts.append(("model", Path(entry["model_dir"])))
        self.store.record_iteration(self.run_id, entry, artifacts)
