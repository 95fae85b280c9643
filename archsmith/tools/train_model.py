"""The ``train_model`` tool: train in the candidate's process, score in the measuring process."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.tools import StructuredTool

from archsmith.energy import EnergyReading
from archsmith.home import new_held_dir
from archsmith.sandbox.base import SandboxResult
from archsmith.scoring.format import TRAIN_STATE_FILE, VALIDATED_FILES
from archsmith.scoring.handover import ProgramFiles, graph_difference, model_files
from archsmith.tools.runtime import PreparedRef, ToolRuntime, bind_tool, remove_tree, tool_error
from archsmith.tools.schemas import (
    MEASURE_BATCH,
    EarlyStopRecord,
    EpochRecord,
    MeasureEnergyInput,
    ToolError,
    TrainModelInput,
    TrainModelOutput,
)

__all__ = [
    "EarlyCheck",
    "Verdict",
    "argument_error",
    "make_train_model_tool",
    "score_program",
    "score_test_split",
    "train_model",
]

log = logging.getLogger(__name__)

#: What the host keeps of the candidate process's own account of its training.
_REPORTED = ("epochs_completed", "stopped_by_budget", "train_samples_per_s", "device")


def argument_error(
    inp: TrainModelInput | MeasureEnergyInput, data: PreparedRef
) -> ToolError | None:
    """The candidate's declared shapes must be the dataset's, or training would be meaningless."""
    if list(inp.input_shape) != data.input_shape or inp.num_classes != data.num_classes:
        return ToolError(
            type="ArgumentError",
            message=f"dataset {data.meta.get('name')} has input_shape {data.input_shape} and"
            f" {data.num_classes} classes; the call gave {list(inp.input_shape)} and"
            f" {inp.num_classes}",
        )
    return None


def _history(reported: dict[str, Any]) -> list[EpochRecord]:
    """The candidate's per-epoch account, kept only where it has the shape of one."""
    out = []
    for h in reported.get("history") or []:
        try:
            out.append(EpochRecord.model_validate({**h, "val_loss": None, "val_accuracy": None}))
        except (ValueError, TypeError):
            continue
    return out


@dataclass(frozen=True)
class Verdict:
    """An early-stopping decision: stop or go on, why, the figures it read and its bound."""

    stop: bool
    reason: str
    bound: dict[str, float] | None = None
    train_accuracy: float | None = None
    val_accuracy: float | None = None


@dataclass(frozen=True)
class EarlyCheck:
    """Pause training after ``epoch`` epochs and ask ``decide`` whether to go on.

    ``decide(model_dir, train_energy_kwh_pue)`` gets the paused model's checked program (a host
    directory, removed after the call) and the training energy spent so far; it measures what it
    needs with the measuring process.
    """

    epoch: int
    rule: str
    decide: Callable[[Path, float], Verdict]


def train_model(
    runtime: ToolRuntime, inp: TrainModelInput, *, check: EarlyCheck | None = None
) -> TrainModelOutput:
    """Train the candidate on the training split, export it, and score its program.

    The candidate's process gets the training split only; its exported program is checked and
    kept by the host (``model_dir``); a measuring process that never sees the code computes every
    accuracy and loss. Training energy is measured by the host around the training job(s).

    With ``check``, training pauses after ``check.epoch`` epochs and ``check.decide`` is given
    the program of that epoch; unless it stops the candidate, a second job resumes training from
    the state the first left (``train-state.pt``, taken out by the host and handed back), so the
    trained model is the one an uninterrupted training gives. The host asked for the pause, so
    the check runs on whatever program that job handed over, whatever the job says of itself; a
    job that left no state (a time budget, or a candidate that ignored the pause) ends with it.
    """
    data = runtime.prepare(
        inp.dataset, seed=inp.split_seed, max_train=inp.max_train, max_val=inp.max_val
    )
    mismatch = argument_error(inp, data)
    if mismatch is not None:
        return TrainModelOutput(ok=False, error=mismatch)
    args = inp.model_dump(
        include={"epochs", "time_budget_s", "seed", "batch_size", "optimizer", "lr", "augment"}
    )
    pause = check is not None and 1 <= check.epoch < inp.epochs
    held = None
    if pause:
        held = new_held_dir(runtime.settings.home)
    try:
        return _train(runtime, inp, data, args, check if pause else None, held)
    finally:
        if held is not None:
            remove_tree(held)


def _train(
    runtime: ToolRuntime,
    inp: TrainModelInput,
    data: PreparedRef,
    args: dict[str, Any],
    check: EarlyCheck | None,
    held: Path | None,
) -> TrainModelOutput:
    from archsmith.energy import make_meter

    meter = make_meter(runtime.device, runtime.settings.estimate_watts(runtime.device))
    view = runtime.training_view(data)
    state = {TRAIN_STATE_FILE: held / TRAIN_STATE_FILE} if held is not None else None
    # One program from validation to the end: the program training hands over must be the graph
    # validated (its shapes, parameters and FLOPs were checked on it), at a pause and at the end.
    validation = runtime.validation_for(inp)
    validated = validation.program
    if validated is None:
        return TrainModelOutput(ok=False, error=tool_error(validation.build) or _NOT_VALIDATED)
    given = {name: validated.directory / host_name for name, host_name in VALIDATED_FILES.items()}
    meter.start()
    trained, program = runtime.run_for_program(
        "train",
        {**args, "stop_after": check.epoch} if check is not None else args,
        inp.code,
        dataset=view,
        limits=runtime.limits_for("train", inp.time_budget_s),
        input_files=given,
        take_files=state,
    )
    energy = meter.stop()
    reported = trained.result or {}
    history = _history(reported)
    mismatch = _unlike(program, validated)
    if mismatch is not None:
        return TrainModelOutput(ok=False, error=mismatch, history=history)
    record: EarlyStopRecord | None = None
    extra_wall = 0.0
    if check is not None and program is not None:
        # The host asked for the pause, so the host checks whatever program the job handed over:
        # the job's own account (``paused_at``) only says whether there is a state to resume.
        has_state = state is not None and state[TRAIN_STATE_FILE].is_file()
        if reported.get("paused_at") == check.epoch and not has_state:
            error = ToolError(
                type="InvalidTrainState",
                message=f"training paused after epoch {check.epoch} but left no"
                f" {TRAIN_STATE_FILE} the host could take (a regular file, no link, of bounded"
                " size) to resume from",
            )
            remove_tree(program.directory)
            return TrainModelOutput(ok=False, error=error, history=history)
        try:
            record = _check(check, program, energy, inp.epochs)
        except BaseException:
            remove_tree(program.directory)
            raise
        if has_state or record.stopped:
            remove_tree(program.directory)
        if record.stopped:
            return TrainModelOutput(
                ok=True,
                history=history,
                early_stop=record,
                **_account(reported, trained.wall_time_s, energy, data),
                sandbox_wall_time_s=trained.wall_time_s,
            )
        if has_state:
            left = None if inp.time_budget_s is None else inp.time_budget_s - trained.wall_time_s
            meter.start()
            resumed, program = runtime.run_for_program(
                "train",
                {**args, "resume": True, "time_budget_s": None if left is None else max(1.0, left)},
                inp.code,
                dataset=view,
                limits=runtime.limits_for("train", None if left is None else max(1.0, left)),
                input_files={**given, **(state or {})},
            )
            energy = _joined(energy, meter.stop())
            mismatch = _unlike(program, validated)
            if mismatch is not None:
                return TrainModelOutput(ok=False, error=mismatch, history=history)
            extra_wall = trained.wall_time_s
            trained = resumed
            reported = {**reported, **(resumed.result or {})}
            history = [*history, *_history(resumed.result or {})]
        else:
            log.warning(
                "the training job did not pause after epoch %d as asked (a time budget, or a"
                " candidate that ignored it): its program, checked, is the final one",
                check.epoch,
            )
    common: dict[str, Any] = {
        "history": history,
        "early_stop": record,
        **_account(reported, trained.wall_time_s + extra_wall, energy, data),
    }
    if program is None:
        diverged = trained.error is not None and trained.error.type == "NonFiniteLoss"
        return TrainModelOutput(
            ok=False,
            error=tool_error(trained),
            diverged=diverged,
            sandbox_wall_time_s=trained.wall_time_s + extra_wall,
            **common,
        )
    scored = score_program(runtime, data, program.directory, ["train", "val"])
    measured = scored.result or {}
    return TrainModelOutput(
        ok=scored.ok,
        error=tool_error(scored),
        train_accuracy=measured.get("train_accuracy"),
        val_accuracy=measured.get("val_accuracy"),
        train_loss=measured.get("train_loss"),
        val_loss=measured.get("val_loss"),
        params=measured.get("params"),
        size_mb=measured.get("size_mb"),
        diverged=bool(measured.get("diverged")),
        model_dir=program.directory,
        val_samples=measured.get("val_samples"),
        sandbox_wall_time_s=trained.wall_time_s + extra_wall + scored.wall_time_s,
        **common,
    )


#: Validation left no program and no error of the candidate's to say why (never seen).
_NOT_VALIDATED = ToolError(
    type="ProgramError", message="the candidate's program could not be validated before training"
)


def _unlike(program: ProgramFiles | None, validated: ProgramFiles) -> ToolError | None:
    """The error of a trained program that is not the validated graph (it is removed), or None."""
    if program is None:
        return None
    why = graph_difference(program.directory, validated.directory)
    if why is None:
        return None
    remove_tree(program.directory)
    return ToolError(
        type="ProgramMismatch",
        message=f"the trained program is not the program that was validated: {why}. build_model"
        " must build the same model in every job (not one chosen by the environment, the time"
        " or chance), so that the shapes, parameters and FLOPs checked before training are those"
        " of the model trained and measured",
    )


def _check(
    check: EarlyCheck, program: ProgramFiles, energy: EnergyReading, epochs: int
) -> EarlyStopRecord:
    """Ask the rule about the paused model; its record says what it read and decided."""
    verdict = check.decide(program.directory, energy.kwh_pue)
    log.info("early-stopping check at epoch %d: %s", check.epoch, verdict.reason)
    return EarlyStopRecord(
        epoch=check.epoch,
        epochs=epochs,
        train_accuracy=verdict.train_accuracy,
        val_accuracy=verdict.val_accuracy,
        stopped=verdict.stop,
        rule=check.rule,
        reason=verdict.reason,
        bound=verdict.bound,
    )


def score_program(
    runtime: ToolRuntime, data: PreparedRef, model_dir: Path, splits: list[str]
) -> SandboxResult:
    """The measuring process's accuracy and loss of the program in ``model_dir`` on ``splits``."""
    return runtime.run(
        "score",
        {"batch_size": MEASURE_BATCH, "splits": splits},
        dataset=data,
        input_files=model_files(model_dir),
        limits=runtime.limits_for("measure"),
    )


def _account(
    reported: dict[str, Any], wall: float, energy: EnergyReading, data: PreparedRef
) -> dict[str, Any]:
    """What the output says of the training jobs: their own account, wall time and energy."""
    return {
        **{k: reported[k] for k in _REPORTED if isinstance(reported.get(k), int | float | str)},
        "wall_time_s": wall,
        "train_energy_j": energy.joules,
        "train_energy_kwh_pue": energy.kwh_pue,
        "train_energy_source": energy.source.value,
        "train_energy_detail": f"the training job(s) (start, training, export): {energy.detail}",
        "train_samples": int(data.meta.get("counts", {}).get("train") or 0) or None,
    }


def _joined(first: EnergyReading, second: EnergyReading) -> EnergyReading:
    """Two training jobs' energy as one reading (the check between them is not training)."""
    return EnergyReading(
        joules=first.joules + second.joules,
        seconds=first.seconds + second.seconds,
        source=second.source,
        detail=second.detail,
    )


def score_test_split(
    runtime: ToolRuntime,
    model_dir: Path,
    dataset: str,
    *,
    split_seed: int = 0,
    max_train: int | None = None,
    max_val: int | None = None,
) -> dict[str, Any]:
    """The trained model's accuracy and loss on the test split, measured once at a run's end.

    Not a LangChain tool on purpose: no decision may read the test split, and a tool an LLM can
    call is an input to decisions. The measuring process scores the program in ``model_dir``.
    """
    data = runtime.prepare(dataset, seed=split_seed, max_train=max_train, max_val=max_val)
    result = score_program(runtime, data, model_dir, ["test"])
    measured = result.result or {}
    if not result.ok:
        error = tool_error(result)
        return {"ok": False, "error": error.model_dump(mode="json") if error else None}
    return {
        "ok": True,
        "test_accuracy": measured.get("test_accuracy"),
        "test_loss": measured.get("test_loss"),
        "test_samples": measured.get("test_samples"),
        "split": (data.meta.get("splits") or {}).get("test"),
    }


def make_train_model_tool(runtime: ToolRuntime) -> StructuredTool:
    """``train_model`` as a LangChain tool bound to ``runtime``."""
    return bind_tool(
        runtime,
        "train_model",
        TrainModelInput,
        train_model,
        (
            "Train the candidate on a dataset's training split with the paper's recipe (SGD 0.025,"
            " cosine, batch 128, rotation/flip/crop; Adam 1e-3 for text) in the sandbox, export"
            " it, and score the exported program in a separate process: training and validation"
            " accuracy and loss, parameters, training energy with its source, and the model's"
            " directory."
        ),
    )
