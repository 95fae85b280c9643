"""The ``measure_energy`` tool: inference speed and energy of a trained model's program.

The speed job's accuracy comes from its timed passes; ``timed_is_scored`` holds it to the
``score`` job's accuracy of the same program, wherever the host has both.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from langchain_core.tools import StructuredTool
from pydantic import ValidationError

from archsmith.files import sha256_of
from archsmith.sandbox.base import SandboxResult
from archsmith.scoring.agreement import job_flips_allowed
from archsmith.scoring.format import ONNX_FILE, TARGET_FILE
from archsmith.scoring.handover import model_files
from archsmith.targets import Target, parse_target
from archsmith.tools.runtime import PreparedRef, ToolRuntime, bind_tool, tool_error
from archsmith.tools.schemas import (
    MeasureEnergyInput,
    MeasureEnergyOutput,
    TargetFigures,
    ToolError,
)
from archsmith.tools.train_model import argument_error

__all__ = [
    "ACCURACY_MISMATCH",
    "TARGET_FAILED",
    "make_measure_energy_tool",
    "measure_energy",
    "measure_on_target",
    "timed_is_scored",
]

#: The variable holding a device agent's token (never written into a run's record).
DEVICE_TOKEN_VARIABLE = "ARCHSMITH_DEVICE_TOKEN"
#: The error of a program that could not be built for, or run on, its deployment target.
TARGET_FAILED = "TargetError"

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
    measured = MeasureEnergyOutput(
        **{k: v for k, v in out.items() if k in known and k not in {"ok", "error", "target"}},
        ok=result.ok,
        error=tool_error(result),
        sandbox_wall_time_s=result.wall_time_s,
    )
    if not measured.ok or inp.target is None:
        return measured
    target = parse_target(inp.target)
    # The file measured is kept beside the program (the host's own directory), for the user.
    keep = None if target.is_host_torch else inp.model_dir / f"target-{target.precision}.onnx"
    on_target = measure_on_target(runtime, target, data, inp.model_dir, keep_as=keep)
    if isinstance(on_target, ToolError):
        return measured.model_copy(update={"ok": False, "error": on_target})
    return measured.model_copy(update={"target": on_target})


def measure_on_target(
    runtime: ToolRuntime,
    target: Target,
    data: PreparedRef,
    model_dir: Path,
    *,
    splits: tuple[str, ...] = ("val",),
    exported: Path | None = None,
    keep_as: Path | None = None,
) -> TargetFigures | ToolError:
    """The program in ``model_dir`` measured on ``target`` by a measuring job (no candidate code).

    The job builds the target's model file from the program, or measures ``exported`` (the
    ``model.onnx`` that ``archsmith export`` wrote and checked) when given; ``keep_as`` keeps the
    file it measured (int8 built from it included), whose sha256 the figures then carry.
    """
    args: dict[str, Any] = {
        "runtime": target.runtime,
        "threads": target.threads,
        "batch": target.batch,
        "precision": target.precision,
        "splits": list(splits),
        "source": "file" if exported is not None else "program",
    }
    if target.device is not None and keep_as is None:
        with tempfile.TemporaryDirectory(prefix="archsmith-device-") as tmp:
            return measure_on_target(
                runtime, target, data, model_dir, splits=splits, exported=exported,
                keep_as=Path(tmp) / "model.onnx",
            )  # fmt: skip
    files = model_files(model_dir)
    if exported is not None:
        files[ONNX_FILE] = exported
    kept: dict[str, str] = {}

    def collect(work_dir: Path, result: SandboxResult) -> SandboxResult:
        """Copy the model file the job measured before its work directory goes."""
        built = work_dir / TARGET_FILE
        if keep_as is not None and result.ok and built.is_file() and not built.is_symlink():
            shutil.copyfile(built, keep_as)
            kept["sha256"] = sha256_of(keep_as)
        return result

    result = runtime.run(
        "target",
        args,
        dataset=data,
        input_files=files,
        limits=runtime.limits_for("measure"),
        after=collect,
    )
    if not result.ok or result.result is None:
        why = result.error.message if result.error else "the job returned no figures"
        return ToolError(
            type=TARGET_FAILED,
            message=f"the model could not be measured on {target}: {why}",
        )
    try:
        figures = TargetFigures.model_validate(
            {**result.result, "target": str(target), "artifact_sha256": kept.get("sha256")}
        )
    except ValidationError as e:
        return ToolError(
            type=TARGET_FAILED, message=f"the {target} job's figures are malformed: {e}"
        )
    if target.device is None:
        return figures
    if keep_as is None or "sha256" not in kept:
        return ToolError(type=TARGET_FAILED, message="no model file was kept to send the device")
    return on_device(target, figures, keep_as, list(data.input_shape))


def on_device(
    target: Target, here: TargetFigures, model_file: Path, input_shape: list[int]
) -> TargetFigures:
    """``here`` (accuracy answered by the same file on this machine) with the speed, memory and
    machine the device's agent measured on ``model_file``; only the file and its input shape
    cross. A dead or refusing device raises DeviceError, which says what to do."""
    from archsmith.device_client import DeviceError, measure_on_device

    token = os.environ.get(DEVICE_TOKEN_VARIABLE, "")
    if not token:
        raise DeviceError(
            f"target {target} names a device; set {DEVICE_TOKEN_VARIABLE} to the token its"
            " agent was started with"
        )
    if target.device is None:
        raise ValueError(f"target {target} names no device")
    far = measure_on_device(
        target.device,
        token,
        model_file,
        runtime=target.runtime,
        threads=here.threads,
        batch=target.batch,
        input_shape=input_shape,
    )
    return here.model_copy(
        update={
            "fps": float(far["fps_best"]),
            "fps_repeats": int(far["fps_repeats"]),
            "fps_spread": float(far["fps_spread_pct"]) / 100.0,
            "latency_ms": float(far["latency_ms_p50"]),
            "latency_p90_ms": float(far["latency_ms_p90"]),
            "latency_repeats": int(far["latency_repeats"]),
            "peak_memory_mb": float(far["peak_rss_mb"]),
            "runtime_version": str(far["runtime_version"]),
            "machine": str(far["measured_on"]),
            "measured_by": target.device,
        }
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
