"""The ``measure_energy`` tool: inference speed and energy of a trained model's program.

The speed job's accuracy comes from its timed passes; ``timed_is_scored`` holds it to the
``score`` job's accuracy of the same program, wherever the host has both.
"""

from __future__ import annotations

from langchain_core.tools import StructuredTool

from archsmith.scoring.agreement import job_flips_allowed
from archsmith.scoring.handover import model_files
from archsmith.tools.runtime import ToolRuntime, bind_tool, tool_error
from archsmith.tools.schemas import MeasureEnergyInput, MeasureEnergyOutput, ToolError
from archsmith.tools.train_model import argument_error

__all__ = ["ACCURACY_MISMATCH", "make_measure_energy_tool", "measure_energy", "timed_is_scored"]

#: The error of a program whose timed answers are not its scored ones.
ACCURACY_MISMATCH = "AccuracyMismatch"


def measure_energy(runtime: ToolRuntime, inp: MeasureEnergyInput) -> MeasureEnergyOutput:
    """FPS at the batch size, batch-1 latency, energy per image and for the validation pass.

    Measured by the measuring process on the exported program in ``model_dir`` (which
    ``train_model`` returned), never on the candidate's code.
    """
    data = runtime.prepare(inp.dataset, seed=inp.split_seed, max_val=inp.max_val)
    mismatch = argument_error(inp, data)
    if mismatch is not None:
        return MeasureEnergyOutput(ok=False, error=mismatch)
    if not inp.model_dir.is_dir() or inp.model_dir.is_symlink():
        return MeasureEnergyOutput(
            ok=False,
            error=ToolError(
                type="ArgumentError",
                message=f"{inp.model_dir} is not a model directory train_model returned",
            ),
        )
    result = runtime.run(
        "speed",
        {"batch_size": inp.batch_size},
        dataset=data,
        input_files=model_files(inp.model_dir),
        limits=runtime.limits_for("measure"),
    )
    out = dict(result.result or {})
    known = set(MeasureEnergyOutput.model_fields)
    return MeasureEnergyOutput(
        **{k: v for k, v in out.items() if k in known and k not in {"ok", "error"}},
        ok=result.ok,
        error=tool_error(result),
        sandbox_wall_time_s=result.wall_time_s,
    )


def timed_is_scored(
    measured: MeasureEnergyOutput, val_accuracy: float | None, val_samples: int | None
) -> MeasureEnergyOutput:
    """``measured`` as it is when its accuracy, from its timed passes, is the ``score`` job's
    (``val_accuracy`` of ``val_samples``) for the same program and validation split; otherwise
    ``measured`` failed, with an ``AccuracyMismatch`` error.

    A program has no state, so the passes that were timed and the pass that was scored give the
    same answers: within ``job_flips_allowed`` samples (one on a CPU). Only figures of one program
    may be compared: a program paused for an early-stopping check is not the final one.
    """
    if not measured.ok:
        return measured
    timed_n, timed_acc, device = measured.val_samples, measured.val_accuracy, measured.device
    problem = None
    if timed_acc is None or timed_n is None or val_accuracy is None or val_samples is None:
        problem = "one of the two jobs reported no validation accuracy"
    elif timed_n != val_samples:
        problem = f"the timed passes ran {timed_n} validation samples, the score job {val_samples}"
    else:
        timed_right, scored_right = round(timed_acc * timed_n), round(val_accuracy * val_samples)
        allowed = job_flips_allowed(timed_n, device or "cpu")
        if abs(timed_right - scored_right) > allowed:
            problem = (
                f"the timed passes answered {timed_right} of {timed_n} validation samples right,"
                f" the score job {scored_right} (at most {allowed} may differ on {device})"
            )
    if problem is None:
        return measured
    error = ToolError(
        type=ACCURACY_MISMATCH,
        message=f"the program's timed accuracy is not its scored accuracy: {problem}. A measured"
        " program has no state, so it gives the same answers when it is timed as when it is"
        " scored; its figures are refused",
    )
    return measured.model_copy(update={"ok": False, "error": error})


def make_measure_energy_tool(runtime: ToolRuntime) -> StructuredTool:
    """``measure_energy`` as a LangChain tool bound to ``runtime``."""
    return bind_tool(
        runtime,
        "measure_energy",
        MeasureEnergyInput,
        measure_energy,
        (
            "Run a trained model's exported program over the validation split in the sandbox:"
            " throughput FPS, batch-1 latency, energy per image and for the validation pass in"
            " joules and kWh-PUE, each energy figure labelled nvml, rapl or estimate."
        ),
    )
