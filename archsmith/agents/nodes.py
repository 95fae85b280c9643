"""The graph's nodes: plain functions ``(state, runtime) -> dict`` returning only what they change.

planner -> architect -> validate -> evaluate -> critic, with code_fixer between a failure and the
next validation, and record_failure when the fixer's attempts are spent (the loop goes on);
final_test once when the loop stops. validate, code_fixer and evaluate are wired once, as the
candidate pipeline (`archsmith.agents.pipeline`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Literal

from langgraph.runtime import Runtime

from archsmith import judge
from archsmith.agents.early_stop import STOPPED_EARLY, CheckFigures, early_check
from archsmith.agents.interfaces import ArchitectProposal
from archsmith.agents.records import (
    ErrorRecord,
    Evaluation,
    FixRecord,
    HistoryEntry,
    Instruction,
    Measurement,
    Validation,
)
from archsmith.agents.state import AgentContext, AgentState, Candidate
from archsmith.config import auto_epochs
from archsmith.metrics import PARETO_AXES, pareto_front
from archsmith.spec import TaskSpec
from archsmith.tools.check_shapes import check_shapes
from archsmith.tools.count_params import count_params
from archsmith.tools.measure_energy import measure_energy, timed_is_scored
from archsmith.tools.rulebook_advice import advise
from archsmith.tools.runtime import PreparedRef
from archsmith.tools.schemas import (
    CandidateInput,
    CheckShapesInput,
    EvaluationMetrics,
    MeasureEnergyInput,
    ResolvedInstruction,
    ToolError,
    TrainModelInput,
)
from archsmith.tools.train_model import score_program, score_test_split, train_model

__all__ = [
    "architect",
    "calls_of",
    "candidate_of",
    "code_fixer",
    "critic",
    "evaluate",
    "final_test",
    "history_entry",
    "measured_metrics",
    "next_step",
    "planner",
    "record_failure",
    "validate",
]

log = logging.getLogger(__name__)


def next_step(state: AgentState) -> Literal["code_fixer", "record_failure", "next"]:
    """After validate or evaluate: go on, try a fix, or give the candidate up."""
    if state.get("error") is None:
        return "next"
    if state.get("fix_attempts", 0) < state["max_fix_attempts"]:
        return "code_fixer"
    return "record_failure"


def _spec(state: AgentState) -> TaskSpec:
    return TaskSpec.model_validate(state["spec"])


def candidate_of(p: ArchitectProposal) -> Candidate:
    """The proposal as the state keeps it (plain JSON)."""
    return {"code": p.code, "summary": p.summary, "arch": p.arch, "applied": list(p.applied)}


def calls_of(p: ArchitectProposal, iteration: int, role: str) -> list[dict[str, Any]]:
    """The proposal's LLM calls as the trace keeps them."""
    return [
        {**c.model_dump(mode="json"), "iteration": iteration, "role": role} for c in p.llm_calls
    ]


def planner(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Turn the request into a validated TaskSpec, unless the run was started with one; prepare
    its data (a missing dataset fails here, before any candidate) and settle the epochs.

    It settles what the run's settings leave open: the epochs (by the planned dataset's size
    when unset, then set on the context, which the later nodes read) and the loop's bounds, which
    the state keeps from here; the update records both, so a resumed run (whose planner does not
    run again) gets the same.
    """
    ctx = runtime.context
    settings = ctx.settings
    updates: dict[str, Any] = {"started_at": state.get("started_at") or time.time()}
    for key, value in (
        ("max_iterations", settings.iterations),
        ("max_fix_attempts", settings.max_fix_attempts),
        ("budget_s", settings.budget_s),
        ("patience", settings.patience),
        ("workers", settings.workers),
    ):
        if key not in state:
            updates[key] = value
    if not state.get("spec"):
        from archsmith.agents.planning.front import plan

        dataset, image_size = state.get("dataset"), state.get("image_size")
        result = plan(state["request"], ctx.llm, dataset=dataset, image_size=image_size)
        updates |= {
            "spec": result.spec.model_dump(mode="json"),
            "assumptions": result.assumptions,
            "planner": result.source,
            "llm_calls": [
                {**c.model_dump(mode="json"), "iteration": 0, "role": "planner"}
                for c in result.llm_calls
            ],
        }
    spec = TaskSpec.model_validate(updates.get("spec") or state["spec"])
    data = _prepared(ctx, spec)
    if settings.epochs is None:
        train_samples = int(data.meta["counts"]["train"])
        if settings.max_train is not None:
            train_samples = min(train_samples, settings.max_train)
        ctx.settings = settings.replace(epochs=auto_epochs(train_samples))
        updates["train_samples"] = train_samples
    return {**updates, "epochs": ctx.epochs}


def architect(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Ask the architect for the next candidate."""
    iteration = state.get("iteration", 0) + 1
    proposal = runtime.context.require_architect().propose(
        _spec(state),
        state.get("instructions", []),
        state.get("best"),
        state.get("history", []),
        iteration,
    )
    return {
        "iteration": iteration,
        **fresh_step(candidate_of(proposal), time.time()),
        "llm_calls": calls_of(proposal, iteration, "architect"),
    }


def fresh_step(candidate: Candidate, started: float) -> dict[str, Any]:
    """The per-candidate state a new candidate starts from, in a round or one at a time."""
    return {
        "iteration_started": started,
        "candidate": candidate,
        "fix_attempts": 0,
        "fixes": [],
        "error": None,
        "error_stage": None,
        "validation": None,
        "evaluation": None,
    }


def _base_input(spec: TaskSpec, code: str) -> dict[str, Any]:
    return {
        "code": code,
        "input_shape": list(spec.input_shape),
        "num_classes": spec.num_classes,
        "task": spec.task.value,
    }


def validate(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """check_shapes and count_params in the sandbox; a failure is data for the code fixer.

    ``reports`` keeps each tool's whole output, for the pipeline's callers that show it
    (``archsmith evaluate``); the run's state keeps only ``validation``."""
    spec = _spec(state)
    cand = state["candidate"]
    if cand is None:
        raise RuntimeError("validate reached without a candidate")
    tools = runtime.context.tools
    base = _base_input(spec, cand["code"])
    data = _prepared(runtime.context, spec)
    tools.expect_data(data)
    vocab = data.meta.get("vocab_size")
    if spec.task.value == "text_classification" and vocab is not None:
        base["vocab_size"] = int(vocab)
    shapes = check_shapes(tools, CheckShapesInput(**base))
    reports = {"check_shapes": shapes.model_dump(mode="json")}
    if not shapes.ok:
        return {"error": _err(shapes.error), "error_stage": "check_shapes", "reports": reports}
    params = count_params(tools, CandidateInput(**base))
    reports["count_params"] = params.model_dump(mode="json")
    if not params.ok:
        return {"error": _err(params.error), "error_stage": "count_params", "reports": reports}
    validation: Validation = {
        "output_shape": shapes.output_shape,
        "params": params.params,
        "trainable_params": params.trainable_params,
        "size_mb": params.size_mb,
        "flops_per_sample": params.flops_per_sample,
    }
    return {"error": None, "error_stage": None, "reports": reports, "validation": validation}


def _prepared(ctx: AgentContext, spec: TaskSpec) -> PreparedRef:
    """The data the candidate trains on (prepared once, then read from the cache)."""
    settings = ctx.settings
    return ctx.tools.prepare(spec.dataset, max_train=settings.max_train, max_val=settings.max_val)


def _err(error: ToolError | None) -> ErrorRecord:
    """A tool's error as the state keeps it (``ToolError`` as JSON, key for key)."""
    if error is None:
        return {"type": "Unknown", "message": "the tool failed without saying why", "line": None}
    return {"type": error.type, "message": error.message, "line": error.line}


def _train_budget(state: AgentState) -> float | None:
    """Seconds a training job may take: what is left of the run's budget (None: no limit)."""
    budget = state.get("budget_s")
    if budget is None:
        return None
    spent = state.get("elapsed_s", 0.0) + (time.time() - (state.get("iteration_started") or 0.0))
    return max(1.0, float(budget) - spent)


def evaluate(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """train_model, then measure_energy; a diverged run goes to the critic, which acts on it.

    Each tool's whole output goes to ``reports``, as in `validate`."""
    spec = _spec(state)
    cand = state["candidate"]
    if cand is None:
        raise RuntimeError("evaluate reached without a candidate")
    ctx = runtime.context
    base = _base_input(spec, cand["code"])
    check = None
    at_check: dict[str, Any] = {}
    if ctx.early_stop is not None:

        def measure(model_dir: Path) -> CheckFigures:
            return _measure_at_check(ctx, spec, base, model_dir, at_check)

        best = state.get("best")
        validation = state.get("validation")
        check = early_check(ctx.early_stop, spec, best, validation, ctx.epochs, measure)
    trained = train_model(
        ctx.tools,
        TrainModelInput(
            **base,
            dataset=spec.dataset,
            epochs=ctx.epochs,
            time_budget_s=_train_budget(state),
            seed=state.get("iteration", 0),
            max_train=ctx.settings.max_train,
            max_val=ctx.settings.max_val,
        ),
        check=check,
    )
    if "error" in at_check:
        return {"error": at_check["error"], "error_stage": "measure_energy"}
    reports: dict[str, Any] = {"train_model": trained.model_dump(mode="json")}
    if not trained.ok and not trained.diverged:
        return {"error": _err(trained.error), "error_stage": "train_model", "reports": reports}
    evaluation: Evaluation = {"train": reports["train_model"]}
    if trained.early_stop is not None and "measure" in at_check:
        # Timed at the check on the paused program: the same graph, so the same figures.
        evaluation["measure"] = at_check["measure"]
        evaluation["measured_at_epoch"] = trained.early_stop.epoch
        # A target's accuracy is the final program's own: a finished one is measured again.
        finished_on_target = ctx.settings.target is not None and not trained.early_stop.stopped
        if not finished_on_target and (trained.early_stop.stopped or trained.model_dir is not None):
            return {"error": None, "error_stage": None, "evaluation": evaluation}
    if trained.diverged or trained.model_dir is None:
        evaluation["measure"] = None
        return {"error": None, "error_stage": None, "evaluation": evaluation, "reports": reports}
    shapes = {k: v for k, v in base.items() if k != "code"}
    measured = measure_energy(
        ctx.tools,
        MeasureEnergyInput(
            **shapes,
            dataset=spec.dataset,
            model_dir=trained.model_dir,
            max_val=ctx.settings.max_val,
            target=ctx.settings.target,
        ),
    )
    # The final program, scored by train_model and timed here: one program, the same answers.
    measured = timed_is_scored(measured, trained.val_accuracy, trained.val_samples)
    reports["measure_energy"] = measured.model_dump(mode="json")
    if not measured.ok:
        return {"error": _err(measured.error), "error_stage": "measure_energy", "reports": reports}
    evaluation["measure"] = reports["measure_energy"]
    evaluation.pop("measured_at_epoch", None)  # measured again, on the final program
    return {"error": None, "error_stage": None, "evaluation": evaluation, "reports": reports}


def _measure_at_check(
    ctx: AgentContext,
    spec: TaskSpec,
    base: dict[str, Any],
    model_dir: Path,
    keep: dict[str, Any],
) -> CheckFigures:
    """Score and time the paused program for the early-stopping check; its timing is kept in
    ``keep["measure"]`` (it is the final program's: the same graph).

    The paused program's timed accuracy must be its scored one; when it is not, the candidate
    fails with the error kept in ``keep["error"]`` (``evaluate`` reads it once training returns).
    """
    scored = score_program(ctx.tools, _prepared(ctx, spec), model_dir, ["train", "val"])
    if not scored.ok:
        why = scored.error.message if scored.error else "no reason given"
        return CheckFigures(problem=f"measuring the paused model failed ({why})")
    figures = scored.result or {}
    shapes = {k: v for k, v in base.items() if k != "code"}
    speed = measure_energy(
        ctx.tools,
        MeasureEnergyInput(
            **shapes,
            dataset=spec.dataset,
            model_dir=model_dir,
            max_val=ctx.settings.max_val,
            target=ctx.settings.target,
        ),
    )
    if speed.ok:
        speed = timed_is_scored(speed, figures.get("val_accuracy"), figures.get("val_samples"))
        if not speed.ok:
            keep["error"] = _err(speed.error)
            return CheckFigures(problem=str(keep["error"]["message"]))
        keep["measure"] = speed.model_dump(mode="json")
    on_target = speed.target
    return CheckFigures(
        train_accuracy=figures.get("train_accuracy"),
        val_accuracy=on_target.val_accuracy if on_target else figures.get("val_accuracy"),
        fps=on_target.fps if on_target else speed.fps,
        latency_ms=on_target.latency_ms if on_target else speed.latency_ms,
        val_energy_kwh_pue=speed.val_energy_kwh_pue,
    )


def code_fixer(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Repair the failing candidate (LLM, or the offline architect's smaller edit)."""
    cand = state["candidate"]
    error: ErrorRecord = state.get("error") or {}
    if cand is None:
        raise RuntimeError("code_fixer reached without a candidate")
    attempt = state.get("fix_attempts", 0) + 1
    proposal = runtime.context.require_architect().repair(
        _spec(state),
        ArchitectProposal(
            code=cand["code"], summary=cand["summary"], arch=cand["arch"], applied=cand["applied"]
        ),
        error,
        state.get("best"),
        attempt,
    )
    fix: FixRecord = {"attempt": attempt, "stage": state.get("error_stage"), "error": error}
    return {
        "candidate": candidate_of(proposal),
        "fix_attempts": attempt,
        "fixes": [*state.get("fixes", []), fix],
        "error": None,
        "llm_calls": calls_of(proposal, state.get("iteration", 0), "code_fixer"),
    }


def record_failure(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """The fixer's attempts are spent: record the candidate as failed, with why, and go on."""
    error: ErrorRecord = state.get("error") or {}
    entry = history_entry(state, status="failed")
    entry["error"] = {**error, "stage": state.get("error_stage")}
    log.info("iteration %d failed: %s", entry["iteration"], error.get("message"))
    return {**_stop_update(state, entry, improved=False), "history": [entry]}


def history_entry(state: AgentState, *, status: str) -> HistoryEntry:
    """What the record of an iteration holds before the critic adds its judgement."""
    cand = state.get("candidate")
    started = state.get("iteration_started") or time.time()
    return {
        "iteration": state.get("iteration", 0),
        "status": status,
        "summary": cand["summary"] if cand else "",
        "applied": cand["applied"] if cand else [],
        "arch": cand["arch"] if cand else None,
        "code": cand["code"] if cand else "",
        "fixes": state.get("fixes", []),
        "validation": state.get("validation"),
        "seconds": time.time() - started,
        "finished_at": time.time(),
    }


def _stop_update(
    state: AgentState, entry: HistoryEntry, *, improved: bool, targets_met: bool = False
) -> dict[str, Any]:
    """The run's clock and staleness after ``entry``, and the judge's reason to stop, if any."""
    elapsed = state.get("elapsed_s", 0.0) + float(entry["seconds"])
    stale = 0 if improved else state.get("stale_iterations", 0) + 1
    reason = judge.stop_reason(
        iteration=state.get("iteration", 0),
        max_iterations=state["max_iterations"],
        elapsed_s=elapsed,
        budget_s=state.get("budget_s"),
        stale=stale,
        patience=state.get("patience"),
        targets_met=targets_met,
    )
    return {"elapsed_s": elapsed, "stale_iterations": stale, "stop_reason": reason}


def measured_metrics(state: AgentState) -> EvaluationMetrics:
    """The candidate's measured figures; what was not measured stays None, never 0."""
    train, measure = _figures(state.get("evaluation"))
    validation = state.get("validation")
    # With a deployment target, speed, size and accuracy are the target's: what the user ships.
    target = measure.get("target") or {}
    return EvaluationMetrics(
        train_accuracy=train.get("train_accuracy"),
        val_accuracy=target.get("val_accuracy", train.get("val_accuracy")),
        train_energy_kwh_pue=train.get("train_energy_kwh_pue"),
        val_energy_kwh_pue=measure.get("val_energy_kwh_pue"),
        fps=target.get("fps", measure.get("fps")),
        params=int(
            _first_measured(train.get("params"), validation.get("params") if validation else None)
            or 0
        ),
        latency_ms=target.get("latency_ms", measure.get("latency_ms")),
        model_size_mb=target.get("size_mb")
        or _first_measured(train.get("size_mb"), validation.get("size_mb") if validation else None),
        diverged=bool(train.get("diverged")),
    )


def _figures(evaluation: Evaluation | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``train_model``'s and ``measure_energy``'s outputs in an evaluation; empty when absent."""
    if not evaluation:
        return {}, {}
    return evaluation.get("train") or {}, evaluation.get("measure") or {}


def instruction_records(instructions: list[ResolvedInstruction]) -> list[Instruction]:
    """The rulebook's resolved instructions as the state keeps them (JSON, key for key)."""
    return [
        {"code": i.code, "meaning": i.meaning, "weight": i.weight, "raised_by": list(i.raised_by)}
        for i in instructions
    ]


def _first_measured(*figures: Any) -> Any:
    """The first figure that was measured: a measured 0 is a figure, not a missing one."""
    return next((f for f in figures if f is not None), None)


def critic(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Deterministic: the rulebook judges the candidate; the best is the one within the hard
    limits with the highest CM; the next round's instructions are computed on that best, the
    parent the architect edits."""
    spec = _spec(state)
    evaluation = state.get("evaluation")
    train, measure = _figures(evaluation)
    if (train.get("early_stop") or {}).get("stopped"):
        return _stopped_early(state, spec, train["early_stop"])
    metrics = measured_metrics(state)
    advice = advise(metrics, spec)
    entry = history_entry(state, status="diverged" if metrics.is_diverged else "evaluated")
    feasible = not advice.limit_violations
    entry.update(
        {
            "metrics": metrics.model_dump(mode="json"),
            "combined_metric": advice.combined_metric,
            "instructions": instruction_records(advice.instructions),
            "fired_rules": [r.model_dump(mode="json") for r in advice.fired_rules],
            "dropped": [d.model_dump(mode="json") for d in advice.dropped],
            "targets_met": advice.targets_met,
            "feasible": feasible,
            "limit_violations": advice.limit_violations,
            "energy_sources": {
                "train": train.get("train_energy_source"),
                "val": measure.get("val_energy_source"),
            },
            "model_dir": train.get("model_dir"),
            "early_stop": train.get("early_stop"),
            # One job at a time: nothing else of this run shared the machine while it was
            # timed. Parallel rounds say otherwise (rounds.critic_round).
            "measurement": _measurement(evaluation),
        }
    )
    best = state.get("best")
    cm = advice.combined_metric
    held = (
        None
        if best is None
        else judge.rank(bool(best.get("feasible", True)), float(best["combined_metric"]))
    )
    improved = (
        not metrics.is_diverged
        and cm is not None
        and judge.outranks(judge.rank(feasible, cm), held)
    )
    entry["is_best"] = improved
    updates = _stop_update(
        state,
        entry,
        improved=improved,
        targets_met=advice.targets_met and feasible and not metrics.is_diverged,
    )
    if improved and cm is not None:
        best = {
            "iteration": entry["iteration"],
            "code": entry["code"],
            "arch": entry["arch"],
            "summary": entry["summary"],
            "metrics": entry["metrics"],
            "combined_metric": cm,
            "feasible": feasible,
            "limit_violations": advice.limit_violations,
            "model_dir": entry["model_dir"],
            # Its own early-stopping check: the curve later candidates are bounded against.
            "early_stop": entry["early_stop"],
        }
    # The architect edits the best, so the advice it gets is the best's own: when this candidate
    # lost, its diagnosis stays in its history entry, not in the next round's instructions.
    parent = best if best is not None and not improved else None
    instructions = entry["instructions"]
    if parent is not None:
        parent_advice = advise(EvaluationMetrics.model_validate(parent["metrics"]), spec)
        instructions = instruction_records(parent_advice.instructions)
    entry["next_parent"] = best["iteration"] if best is not None else entry["iteration"]
    return {
        **updates,
        "best": best,
        "instructions": instructions,
        "history": [entry],
    }


def _measurement(evaluation: Evaluation | None) -> Measurement:
    """How the figures were measured when candidates run one at a time."""
    speed = "exclusive" if evaluation and evaluation.get("measure") else "not measured"
    return {"speed_and_energy": speed + paused_note(evaluation), "training_energy": "exclusive"}


def paused_note(evaluation: Evaluation | None) -> str:
    """What a measurement label adds: speed timed at the early-stopping check, and the deployment
    target the critic's figures were measured on."""
    if not evaluation:
        return ""
    note = ""
    epoch = evaluation.get("measured_at_epoch")
    if evaluation.get("measure") and epoch is not None:
        note = f", on the program paused at epoch {epoch} (the final one's graph)"
    target = (evaluation.get("measure") or {}).get("target")
    if target:
        # The figures the critic reads are the target's: say where they come from.
        note += (
            f"; FPS, latency, size and accuracy on {target['target']} ({target['runtime']}"
            f" {target.get('runtime_version')}, {target['machine']}, {target['measured_by']})"
        )
    return note


def _stopped_early(state: AgentState, spec: TaskSpec, record: dict[str, Any]) -> dict[str, Any]:
    """A candidate the early-stopping rule stopped: recorded with its figures at the check and the
    rule's reason; no CM (its model is not trained with the full recipe, so its figures do not
    compare with finished ones), never the best, and the next round edits the best as before."""
    metrics = measured_metrics(state)
    entry = history_entry(state, status=STOPPED_EARLY)
    violations = judge.limit_violations(
        spec, metrics.params, metrics.latency_ms, metrics.model_size_mb
    )
    entry.update(
        {
            "metrics": metrics.model_dump(mode="json"),
            "combined_metric": None,
            "early_stop": record,
            "instructions": [],
            "fired_rules": [],
            "dropped": [],
            "targets_met": False,
            "feasible": not violations,
            "limit_violations": violations,
            "model_dir": None,
            "is_best": False,
            "measurement": _measurement(state.get("evaluation")),
        }
    )
    best = state.get("best")
    entry["next_parent"] = best["iteration"] if best is not None else entry["iteration"]
    log.info("iteration %d stopped early: %s", entry["iteration"], record.get("reason"))
    return {
        **_stop_update(state, entry, improved=False),
        "best": best,
        "instructions": state.get("instructions", []),
        "history": [entry],
    }


def _front_members(history: list[HistoryEntry]) -> list[int]:
    """Iterations on any of the report's Pareto fronts (validation accuracy against each axis)."""
    evaluated = [
        h for h in history if h.get("status") == "evaluated" and isinstance(h.get("metrics"), dict)
    ]
    members: set[int] = set()
    for axis, more_is_better in PARETO_AXES:
        points: list[tuple[HistoryEntry, tuple[Any, Any]]] = [
            (h, (h["metrics"].get(axis), h["metrics"].get("val_accuracy"))) for h in evaluated
        ]
        points = [(h, xy) for h, xy in points if None not in xy]
        front = pareto_front([xy for _, xy in points], maximize=(more_is_better, True))
        members.update(int(points[i][0]["iteration"]) for i in front)
    return sorted(members)


def final_test(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Once, at the end: the best and the Pareto-front candidates on the test split.

    The only place the test split is read, after every decision was made: the critic chose the
    best on the validation split, so the test accuracy is an unbiased figure of the model the
    user gets (and of the fronts the report draws).
    """
    spec = _spec(state)
    ctx = runtime.context
    history = state.get("history", [])
    by_iteration = {int(h["iteration"]): h for h in history}
    best = state.get("best")
    wanted = ([int(best["iteration"])] if best else []) + _front_members(history)
    results: dict[str, Any] = dict(state.get("test_results") or {})
    for iteration in dict.fromkeys(wanted):
        entry = by_iteration.get(iteration)
        model_dir = (entry.get("model_dir") if entry else None) or (
            best.get("model_dir") if best else None
        )
        if str(iteration) in results or not model_dir:
            continue
        if not Path(model_dir).is_dir():
            results[str(iteration)] = {"ok": False, "error": {"message": f"{model_dir} is gone"}}
            continue
        results[str(iteration)] = score_test_split(
            ctx.tools,
            Path(model_dir),
            spec.dataset,
            max_train=ctx.settings.max_train,
            max_val=ctx.settings.max_val,
        )
        log.info("iteration %d on the test split: %s", iteration, results[str(iteration)])
    update: dict[str, Any] = {"test_results": results}
    if best is not None:
        measured = results.get(str(best["iteration"])) or {}
        update["best"] = {**best, "test_accuracy": measured.get("test_accuracy")}
    return update
