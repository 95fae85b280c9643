"""Parallel rounds (``archsmith run --workers N``): N candidates proposed, evaluated at once, judged
together.

    architect_round --Send--> candidate (one task per proposal) --> critic_round

* ``architect_round`` asks the architect for up to N *distinct* candidates (`propose_distinct`),
  each with its own iteration number, as if they had been proposed one after the other.
* ``candidate`` is one LangGraph task per proposal (the ``Send`` API): the candidate pipeline
  (validate, fix, evaluate) the one-at-a-time loop runs. Its sandbox jobs go wherever the run's
  sandbox sends them (Ray workers). LangGraph saves each task's result as it ends, and each of
  the pipeline's steps, so a crash in the middle of a round keeps the finished candidates and a
  resume runs only what the others had left.
* ``critic_round`` runs the critic on each result in iteration order, exactly as the serial loop
  would have, and decides once for the round whether to go on.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, cast

from langgraph.runtime import Runtime
from langgraph.types import Send

from archsmith import judge
from archsmith.agents import nodes
from archsmith.agents.interfaces import Architect, ArchitectProposal
from archsmith.agents.pipeline import PipelineOutput, pipeline
from archsmith.agents.records import (
    BestCandidate,
    ErrorRecord,
    Evaluation,
    HistoryEntry,
    Instruction,
    Measurement,
)
from archsmith.agents.state import AgentContext, AgentState
from archsmith.llm.calls import LLMCall
from archsmith.spec import TaskSpec
from archsmith.tools.runtime import JOB_TRACE, JobTrace

__all__ = [
    "PROPOSE_ATTEMPTS",
    "architect_round",
    "candidate",
    "critic_round",
    "fan_out",
    "propose_distinct",
    "summarize_jobs",
]

log = logging.getLogger(__name__)

#: Proposals asked for one slot of a round before the round makes do with fewer candidates.
PROPOSE_ATTEMPTS = 3
#: What a candidate task carries from its proposal to the critic.
_RESULT_KEYS = (
    "candidate",
    "fixes",
    "fix_attempts",
    "error",
    "error_stage",
    "validation",
    "evaluation",
)


def _code_key(code: str) -> str:
    """Codes that differ only in blank lines or trailing spaces are the same candidate."""
    lines = [line.rstrip() for line in code.strip().splitlines() if line.strip()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def propose_distinct(
    architect: Architect,
    spec: TaskSpec,
    instructions: list[Instruction],
    best: BestCandidate | None,
    history: list[HistoryEntry],
    first_iteration: int,
    count: int,
) -> list[ArchitectProposal]:
    """Up to ``count`` candidates whose code differs from each other and from the history's.

    The architect is asked once per slot, with the round's earlier proposals appended to the
    history (status ``proposed``, no metrics yet), so it sees what is already in the round: the
    offline architect never repeats a description it has seen, an LLM is told its history.
    A proposal that repeats code is asked again, ``PROPOSE_ATTEMPTS`` times; after that the round
    has fewer candidates (the first slot always gets one, as a serial iteration would). LLM calls
    of rejected proposals stay with the next accepted one, so the trace keeps every call.
    """
    seen = {_code_key(str(h["code"])) for h in history if h.get("code")}
    if best and best.get("code"):
        seen.add(_code_key(str(best["code"])))
    pending: list[HistoryEntry] = []
    out: list[ArchitectProposal] = []
    calls: list[LLMCall] = []
    for _slot in range(count):
        iteration = first_iteration + len(out)
        accepted: ArchitectProposal | None = None
        for attempt in range(1, PROPOSE_ATTEMPTS + 1):
            proposal = architect.propose(spec, instructions, best, [*history, *pending], iteration)
            calls.extend(proposal.llm_calls)
            key = _code_key(proposal.code)
            if key not in seen or (not out and attempt == PROPOSE_ATTEMPTS):
                accepted = proposal
                seen.add(key)
                break
            log.info(
                "iteration %d: the architect repeated a candidate (try %d)", iteration, attempt
            )
        if accepted is None:
            log.warning(
                "the architect found no new candidate for iteration %d; this round has %d",
                iteration,
                len(out),
            )
            break
        out.append(accepted.model_copy(update={"llm_calls": calls}))
        calls = []
        pending.append(
            {
                "iteration": iteration,
                "status": "proposed",
                "summary": accepted.summary,
                "arch": accepted.arch,
                "code": accepted.code,
                "applied": accepted.applied,
            }
        )
    return out


def architect_round(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Propose the round: up to ``workers`` distinct candidates, never past ``max_iterations``."""
    first = state.get("iteration", 0) + 1
    left = state["max_iterations"] - first + 1
    count = max(1, min(state["workers"], left))
    proposals = propose_distinct(
        runtime.context.require_architect(),
        TaskSpec.model_validate(state["spec"]),
        state.get("instructions", []),
        state.get("best"),
        state.get("history", []),
        first,
        count,
    )
    number = state.get("round_number", 0) + 1
    tasks = [
        {"iteration": first + i, "candidate": nodes.candidate_of(p)}
        for i, p in enumerate(proposals)
    ]
    calls = [
        call for i, p in enumerate(proposals) for call in nodes.calls_of(p, first + i, "architect")
    ]
    log.info("round %d: iterations %d to %d", number, first, first + len(tasks) - 1)
    return {
        "iteration": first + len(tasks) - 1,
        "round": tasks,
        "round_number": number,
        "round_started": time.time(),
        "round_results": None,
        "llm_calls": calls,
    }


def fan_out(state: AgentState) -> list[Send]:
    """One ``candidate`` task per proposal of the round, each with the state it reads."""
    shared = {
        key: state[key]  # type: ignore[literal-required,unused-ignore]
        for key in ("spec", "best", "max_fix_attempts", "budget_s", "elapsed_s", "round_number")
        if key in state
    }
    return [
        Send(
            "candidate",
            {
                **shared,
                "iteration": task["iteration"],
                **nodes.fresh_step(task["candidate"], state.get("round_started") or time.time()),
            },
        )
        for task in state.get("round") or []
    ]


def summarize_jobs(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Where a candidate's jobs ran, for its record: the workers, and how speed was measured."""
    placements = [j["placement"] for j in jobs if j.get("placement")]
    workers = list(
        dict.fromkeys(
            f"{p['host']}/{str(p['node'])[:8]}/{str(p['worker'])[:8]}" for p in placements
        )
    )
    speed = [j for j in jobs if j.get("tool") == "speed"]
    protocol = (
        "exclusive"
        if speed and all((j.get("placement") or {}).get("protocol") == "exclusive" for j in speed)
        else ("shared" if speed else None)
    )
    in_ray = sum(float(p["returned_at"]) - float(p["submitted_at"]) for p in placements)
    in_sandbox = sum(float(j["wall_time_s"]) for j in jobs if j.get("placement"))
    waited = sum(float(p.get("lock_wait_s") or 0.0) for p in placements)
    return {
        "workers": workers,
        "speed_protocol": protocol,
        "jobs": len(jobs),
        "ray_task_s": round(in_ray, 3),
        "sandbox_s": round(in_sandbox, 3),
        "lock_wait_s": round(waited, 3),
    }


def candidate(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """One candidate of a round from proposal to measured metrics, on its own.

    The candidate pipeline the serial loop runs (`archsmith.agents.pipeline`), so a candidate is
    treated exactly as it would be one at a time. What it finds is written under its iteration in
    ``round_results``.
    """
    iteration = int(state.get("iteration", 0))
    trace = JobTrace(iteration)
    token = JOB_TRACE.set(trace)
    started = time.time()
    try:
        found = pipeline.invoke(state, context=runtime.context)
    finally:
        JOB_TRACE.reset(token)
    finished = time.time()
    calls = found.pop("llm_calls", [])
    # The pipeline's output schema: what ``invoke`` returns, which LangGraph types as a dict.
    work: AgentState = {**state, **cast(PipelineOutput, found)}
    result = {key: work.get(key) for key in _RESULT_KEYS}
    placement = summarize_jobs(trace.jobs)
    number = state.get("round_number")
    worker = ", ".join(placement["workers"]) or None
    result.update(
        {
            "iteration": iteration,
            "round": number,
            "started_at": started,
            "finished_at": finished,
            "placement": placement,
            "worker": worker,
        }
    )
    # The store's row for it now (the critic's judgement replaces it when the round ends), so
    # `show` lists a candidate as soon as it is done.
    failed = work.get("error") is not None
    entry = nodes.history_entry(work, status="failed" if failed else "awaiting critic")
    entry.update(
        {
            "round": number,
            "started_at": started,
            "finished_at": finished,
            "placement": placement,
            "worker": worker,
            "seconds": finished - started,
        }
    )
    if failed:
        error: ErrorRecord = work.get("error") or {}
        entry["error"] = {**error, "stage": work.get("error_stage")}
    else:
        entry["metrics"] = nodes.measured_metrics(work).model_dump(mode="json")
    result["entry"] = entry
    if runtime.context.on_candidate is not None:
        runtime.context.on_candidate(entry)
    log.info("iteration %d finished in %.1f s", iteration, finished - started)
    return {"round_results": {str(iteration): result}, "llm_calls": calls}


def critic_round(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """The round's results together: the critic (or record_failure) on each in iteration order,
    as the serial loop would have judged them; the run's clock moves by the round's wall time."""
    results = state.get("round_results") or {}
    work: dict[str, Any] = dict(state)
    # The budget is checked once for the round, on its wall time, not per candidate.
    work["budget_s"] = None
    history: list[HistoryEntry] = []
    stop: str | None = None
    updates: dict[str, Any] = {}
    for key in sorted(results, key=int):
        found = results[key]
        judged = {
            **work,
            **{k: found.get(k) for k in _RESULT_KEYS},
            "iteration": int(found["iteration"]),
            "iteration_started": found["started_at"],
        }
        node = nodes.record_failure if found.get("error") is not None else nodes.critic
        updates = node(judged, runtime)  # type: ignore[arg-type]
        entry: HistoryEntry = updates.pop("history")[0]
        placement = found.get("placement") or {}
        entry.update(
            {
                "seconds": float(found["finished_at"]) - float(found["started_at"]),
                "started_at": found["started_at"],
                "finished_at": found["finished_at"],
                "round": found.get("round"),
                "worker": found.get("worker"),
                "placement": placement,
            }
        )
        if entry.get("status") != "failed":
            entry["measurement"] = _measurement(placement, found.get("evaluation"))
        history.append(entry)
        stop = stop or updates.get("stop_reason")
        work.update(updates)
    elapsed = state.get("elapsed_s", 0.0) + (time.time() - (state.get("round_started") or 0.0))
    # Patience and targets were judged per candidate above; the clock once, on the round's.
    stop = stop or judge.stop_reason(
        iteration=state.get("iteration", 0),
        max_iterations=state["max_iterations"],
        elapsed_s=elapsed,
        budget_s=state.get("budget_s"),
        stale=0,
        patience=None,
    )
    return {
        "history": history,
        "best": work.get("best"),
        "instructions": work.get("instructions", state.get("instructions", [])),
        "stale_iterations": work.get("stale_iterations", 0),
        "elapsed_s": elapsed,
        "stop_reason": stop,
        "round": None,
        "round_results": None,
    }


def _measurement(placement: dict[str, Any], evaluation: Evaluation | None) -> Measurement:
    """How this candidate's figures were measured in a parallel round: speed and inference
    energy alone on their node (``exclusive``) unless the jobs ran outside Ray; training next to
    the round's other candidates (``shared``), so its energy includes their load."""
    speed = placement.get("speed_protocol") or "not measured"
    return {
        "speed_and_energy": speed + nodes.paused_note(evaluation),
        "training_energy": "shared",
    }
