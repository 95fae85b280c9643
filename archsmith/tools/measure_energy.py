"""The ``measure_energy`` tool: inference speed and energy of a trained model's program."""

from __future__ import annotations

from langchain_core.tools import StructuredTool

from archsmith.scoring.handover import model_files
from archsmith.tools.runtime import ToolRuntime, bind_tool, tool_error
from archsmith.tools.schemas import MeasureEnergyInput, MeasureEnergyOutput, ToolError
from archsmith.tools.train_model import argument_error

__all__ = ["make_measure_energy_tool", "measure_energy"]


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
