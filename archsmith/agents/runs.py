"""Runs that survive: one directory per run, a checkpointer, and the loop driven step by step.

The LangGraph checkpointer saves the state after every node, so a run stopped by Ctrl-C or
``kill -9`` resumes from its last completed step: an iteration that finished is never lost or run
twice; one that was cut short is redone from its last completed node. SQLite in the run's directory
by default; PostgreSQL by URL.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from pydantic import BaseModel, ConfigDict, Field, model_validator

from archsmith.agents.graph import build_graph
from archsmith.agents.state import AgentContext, AgentState
from archsmith.config import RunSettings
from archsmith.errors import InputError
from archsmith.home import RUN_META, run_dir, runs_dir
from archsmith.sandbox.base import interrupts_stop_jobs

__all__ = [
    "RunMeta",
    "drive",
    "initial_state",
    "load_meta",
    "new_run_id",
    "open_checkpointer",
    "redact_url",
    "save_meta",
]

log = logging.getLogger(__name__)
CHECKPOINT_FILE = "checkpoints.sqlite"


class RunMeta(BaseModel):
    """A run's record: what it was asked, how it runs (`RunSettings`, settled: the LLM chosen,
    the epochs once planned) and how far it got; enough to resume it."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    request: str
    settings: RunSettings
    ray_session_dir: str | None = Field(
        default=None, description="The local Ray cluster's session, to clean up after kill -9."
    )
    status: str = "created"
    stop_reason: str | None = None
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    pid: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _settings_of_older_runs(cls, data: Any) -> Any:
        """A ``run.json`` written before the settings had their own object kept them beside the
        record: move them in, so those runs still show and resume."""
        if isinstance(data, dict) and "settings" not in data:
            defaults = {f.name: f.default for f in dataclasses.fields(RunSettings)}
            data = dict(data)
            moved = {k: data.pop(k) for k in list(data) if k in defaults}
            # They wrote None for "the settings' default" (the LLM timeout and outage window).
            data["settings"] = {
                k: v for k, v in moved.items() if v is not None or defaults[k] is None
            }
        return data

    @model_validator(mode="after")
    def _llm_settled(self) -> RunMeta:
        if self.settings.llm is None:
            raise ValueError("a run's settings name its LLM (settled when the run starts)")
        return self

    @property
    def llm(self) -> str:
        """The run's LLM, as settled when it started."""
        assert self.settings.llm is not None  # _llm_settled
        return self.settings.llm


def new_run_id() -> str:
    """Sortable and unique enough for one user's runs: time plus random suffix."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def save_meta(directory: Path, meta: RunMeta) -> None:
    """Write run.json atomically: a crash leaves the old file or the new one, never half."""
    meta.updated_at = time.time()
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (RUN_META + ".tmp")
    tmp.write_text(meta.model_dump_json(indent=2), encoding="utf-8")
    os.replace(tmp, directory / RUN_META)


def load_meta(home: Path, run_id: str) -> RunMeta:
    """The run's metadata, or an InputError that lists the runs that exist."""
    path = run_dir(home, run_id) / RUN_META
    if not path.is_file():
        known = sorted(p.name for p in runs_dir(home).glob("*") if (p / RUN_META).is_file())
        hint = f"; known runs: {', '.join(known[-10:])}" if known else "; there are no runs yet"
        raise InputError(f"no run {run_id!r} in {runs_dir(home)}{hint}")
    try:
        return RunMeta.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise InputError(f"run {run_id}: {path} is damaged ({e})") from e


def redact_url(url: str) -> str:
    """The URL without its password, safe to store and print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def open_checkpointer(directory: Path, url: str | None) -> Iterator[BaseCheckpointSaver[Any]]:
    """SQLite in the run's directory, or PostgreSQL at ``url`` (tables created on first use)."""
    if url:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver

        with ExitStack() as stack:
            try:
                saver = stack.enter_context(PostgresSaver.from_conn_string(url))
                saver.setup()
            except psycopg.Error as e:
                raise InputError(
                    f"cannot use the PostgreSQL checkpointer at {redact_url(url)}: {e}"
                ) from e
            yield saver
        return
    from langgraph.checkpoint.sqlite import SqliteSaver

    directory.mkdir(parents=True, exist_ok=True)
    with SqliteSaver.from_conn_string(str(directory / CHECKPOINT_FILE)) as sqlite_saver:
        yield sqlite_saver


def initial_state(
    request: str,
    spec: dict[str, Any] | None = None,
    *,
    assumptions: list[str] | None = None,
    planner: str = "given",
    dataset: str | None = None,
    image_size: int | None = None,
) -> AgentState:
    """The state a new run starts from; without ``spec`` the graph's planner plans the request
    (with ``dataset`` and ``image_size``, ``--dataset`` and ``--image-size``). The loop's bounds
    come from the run's settings, through the planner node."""
    state: AgentState = {
        "request": request,
        "dataset": dataset,
        "image_size": image_size,
        "assumptions": assumptions or [],
        "planner": planner,
        "iteration": 0,
        "history": [],
        "llm_calls": [],
        "best": None,
        "stale_iterations": 0,
        "elapsed_s": 0.0,
        "stop_reason": None,
    }
    if spec is not None:
        state["spec"] = spec
    return state


def drive(
    checkpointer: BaseCheckpointSaver[Any],
    run_id: str,
    context: AgentContext,
    initial: AgentState | None,
    on_update: Callable[[str, dict[str, Any]], None],
) -> AgentState:
    """Run (``initial`` given) or resume (``initial`` None) the graph; report each node's update."""
    graph = build_graph(checkpointer)
    # With LANGSMITH_TRACING=true (and a key) LangChain sends each node and LLM call to LangSmith;
    # the name, tag and metadata let a user find this run there. Without it nothing is sent.
    config: RunnableConfig = {
        "configurable": {"thread_id": run_id},
        "recursion_limit": 10_000,
        "run_name": "archsmith",
        "tags": ["archsmith"],
        "metadata": {"archsmith_run_id": run_id},
    }
    # durability="sync": each step's checkpoint is on disk before the next step starts, so a kill
    # loses at most the step in flight.
    # The candidate pipeline (a subgraph) is reported as one step, when its checkpoint is saved:
    # streaming its inner steps (``subgraphs=True``) would report each step before it is saved.
    updates = graph.stream(
        initial, config, context=context, stream_mode="updates", durability="sync"
    )
    # Nodes run in worker threads: a Ctrl-C (or `archsmith stop --now`) must stop the sandbox job
    # in flight as well, or it would finish its training first. The step is then redone on resume.
    with interrupts_stop_jobs():
        for chunk in updates:
            for node, update in chunk.items():
                if isinstance(update, dict):
                    on_update(node, update)
    snapshot = graph.get_state(config)
    values: AgentState = snapshot.values  # type: ignore[assignment]
    if snapshot.next:
        log.debug("run %s paused before %s", run_id, snapshot.next)
    return values


def pending(checkpointer: BaseCheckpointSaver[Any], run_id: str) -> tuple[bool, AgentState]:
    """Whether the run has work left, and its last saved state."""
    graph = build_graph(checkpointer)
    snapshot = graph.get_state({"configurable": {"thread_id": run_id}})
    values: AgentState = snapshot.values  # type: ignore[assignment]
    return bool(snapshot.next), values


def write_best(directory: Path, state: AgentState) -> Path | None:
    """Save the best candidate's code next to the run, for the user to take away."""
    best = state.get("best")
    if not best:
        return None
    path = directory / "best_model.py"
    path.write_text(best["code"], encoding="utf-8")
    (directory / "best.json").write_text(
        json.dumps({k: v for k, v in best.items() if k != "code"}, indent=2, default=str),
        encoding="utf-8",
    )
    return path
