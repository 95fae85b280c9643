"""The ``train_model`` tool: train a candidate with the paper's recipe in the sandbox."""

from __future__ import annotations

from langchain_core.tools import StructuredTool

from archsmith.sandbox.ops import WEIGHTS_FILE
from archsmith.tools.runtime import PreparedRef, ToolRuntime, bind_tool, tool_error
from archsmith.tools.schemas import (
    MeasureEnergyInput,
    ToolError,
    TrainModelInput,
    TrainModelOutput,
)

__all__ = ["argument_error", "make_train_model_tool", "train_model"]


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


def train_model(runtime: ToolRuntime, inp: TrainModelInput) -> TrainModelOutput:
    """Train the candidate; the output's ``weights_path`` is where its weights were saved."""
    data = runtime.prepare(
        inp.dataset, seed=inp.split_seed, max_train=inp.max_train, max_val=inp.max_val
    )
    mismatch = argument_error(inp, data)
    if mismatch is not None:
        return TrainModelOutput(ok=False, error=mismatch)
    args = inp.model_dump(
        include={"epochs", "time_budget_s", "seed", "batch_size", "optimizer", "lr", "augment"}
    )
    result = runtime.run("train_model", args, inp.code, dataset=data, keep=True)
    out = dict(result.result or {})
    weights = None
    if result.work_dir is not None and (result.work_dir / WEIGHTS_FILE).exists():
        weights = result.work_dir / WEIGHTS_FILE
    known = set(TrainModelOutput.model_fields)
    return TrainModelOutput(
        **{k: v for k, v in out.items() if k in known and k not in {"ok", "error"}},
        ok=result.ok,
        error=tool_error(result),
        weights_path=weights,
        sandbox_wall_time_s=result.wall_time_s,
    )


def make_train_model_tool(runtime: ToolRuntime) -> StructuredTool:
    """``train_model`` as a LangChain tool bound to ``runtime``."""
    return bind_tool(
        runtime,
        "train_model",
        TrainModelInput,
        train_model,
        (
            "Train the candidate on a dataset with the paper's recipe (SGD 0.025, cosine, batch"
            " 128, rotation/flip/crop; Adam 1e-3 for text) in the sandbox; return accuracy and"
            " loss per epoch, training energy with its source, and the saved weights' path."
        ),
    )
