"""The ``train_model`` tool: train in the candidate's process, score in the measuring process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.tools import StructuredTool

from archsmith.scoring.handover import model_files
from archsmith.tools.runtime import PreparedRef, ToolRuntime, bind_tool, tool_error
from archsmith.tools.schemas import (
    MEASURE_BATCH,
    EpochRecord,
    MeasureEnergyInput,
    ToolError,
    TrainModelInput,
    TrainModelOutput,
)

__all__ = ["argument_error", "make_train_model_tool", "score_test_split", "train_model"]

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


def train_model(runtime: ToolRuntime, inp: TrainModelInput) -> TrainModelOutput:
    """Train the candidate on the training split, export it, and score its program.

    The candidate's process gets the training split only; its exported program is checked and
    kept by the host (``model_dir``); a measuring process that never sees the code computes every
    accuracy and loss. Training energy is measured by the host around the whole training job.
    """
    from archsmith.energy import make_meter

    data = runtime.prepare(
        inp.dataset, seed=inp.split_seed, max_train=inp.max_train, max_val=inp.max_val
    )
    mismatch = argument_error(inp, data)
    if mismatch is not None:
        return TrainModelOutput(ok=False, error=mismatch)
    args = inp.model_dump(
        include={"epochs", "time_budget_s", "seed", "batch_size", "optimizer", "lr", "augment"}
    )
    meter = make_meter(runtime.device, runtime.settings.estimate_watts(runtime.device))
    meter.start()
    trained, program = runtime.run_for_program(
        "train",
        args,
        inp.code,
        dataset=runtime.training_view(data),
        limits=runtime.limits_for("train", inp.time_budget_s),
    )
    energy = meter.stop()
    reported = trained.result or {}
    common: dict[str, Any] = {
        "history": _history(reported),
        **{k: reported[k] for k in _REPORTED if isinstance(reported.get(k), int | float | str)},
        "wall_time_s": trained.wall_time_s,
        "train_energy_j": energy.joules,
        "train_energy_kwh_pue": energy.kwh_pue,
        "train_energy_source": energy.source.value,
        "train_energy_detail": f"the whole training job (start, training, export): {energy.detail}",
        "train_samples": int(data.meta.get("counts", {}).get("train") or 0) or None,
        "sandbox_wall_time_s": trained.wall_time_s,
    }
    if program is None:
        diverged = trained.error is not None and trained.error.type == "NonFiniteLoss"
        return TrainModelOutput(ok=False, error=tool_error(trained), diverged=diverged, **common)
    scored = runtime.run(
        "score",
        {"batch_size": MEASURE_BATCH, "splits": ["train", "val"]},
        dataset=data,
        input_files=program.paths,
        limits=runtime.limits_for("measure"),
    )
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
        **{**common, "sandbox_wall_time_s": trained.wall_time_s + scored.wall_time_s},
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
    result = runtime.run(
        "score",
        {"batch_size": MEASURE_BATCH, "splits": ["test"]},
        dataset=data,
        input_files=model_files(model_dir),
        limits=runtime.limits_for("measure"),
    )
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
