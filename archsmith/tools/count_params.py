"""The ``count_params`` tool: parameters, size and FLOPs of a candidate, measured in the sandbox."""

from __future__ import annotations

from langchain_core.tools import StructuredTool

from archsmith.tools.runtime import ToolRuntime, bind_tool, tool_error
from archsmith.tools.schemas import CandidateInput, CountParamsOutput

__all__ = ["count_params", "make_count_params_tool"]


def count_params(runtime: ToolRuntime, inp: CandidateInput) -> CountParamsOutput:
    """Count parameters and FLOPs per sample (torch.utils.flop_counter) of the built model."""
    result = runtime.run("count_params", inp.model_dump(exclude={"code"}), inp.code)
    data = result.result or {}
    return CountParamsOutput(
        ok=result.ok,
        error=tool_error(result),
        params=data.get("params"),
        trainable_params=data.get("trainable_params"),
        size_mb=data.get("size_mb"),
        flops_per_sample=data.get("flops_per_sample"),
        sandbox_wall_time_s=result.wall_time_s,
    )


def make_count_params_tool(runtime: ToolRuntime) -> StructuredTool:
    """``count_params`` as a LangChain tool bound to ``runtime``."""
    return bind_tool(
        runtime,
        "count_params",
        CandidateInput,
        count_params,
        (
            "Count the candidate's parameters (all and trainable), its size in MB and its FLOPs"
            " per sample, measured in the sandbox."
        ),
    )
