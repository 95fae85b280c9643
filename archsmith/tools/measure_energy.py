"""The ``measure_energy`` tool: inference speed and energy of a trained candidate."""

from __future__ import annotations

from langchain_core.tools import StructuredTool

from archsmith.sandbox.ops import WEIGHTS_FILE
from archsmith.tools.runtime import ToolRuntime, bind_tool, tool_error
from archsmith.tools.schemas import MeasureEnergyInput, MeasureEnergyOutput
from archsmith.tools.train_model import argument_error

__all__ = ["make_measure_energy_tool", "measure_energy"]


def measure_energy(runtime: ToolRuntime, inp: MeasureEnergyInput) -> MeasureEnergyOutput:
    """FPS at the batch size, batch-1 latency, energy per image and for the validation pass."""
    data = runtime.prepare(inp.dataset, seed=inp.split_seed, max_val=inp.max_val)
    mismatch = argument_error(inp, data)
    if mismatch is not None:
        return MeasureEnergyOutput(ok=False, error=mismatch)
    files = {WEIGHTS_FILE: inp.weights_path} if inp.weights_path is not None else {}
    args = {"batch_size": inp.batch_size, "weights_file": WEIGHTS_FILE}
    result = runtime.run("measure_energy", args, inp.code, dataset=data, input_files=files)
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
            "Run the trained candidate over the validation split in the sandbox: throughput FPS,"
            " batch-1 latency, energy per image and for the validation pass in joules and kWh-PUE,"
            " each energy figure labelled nvml, rapl or estimate."
        ),
    )
