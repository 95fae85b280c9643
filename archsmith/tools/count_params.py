"""The ``count_params`` tool: parameters, size and FLOPs of a candidate, measured in the sandbox."""

from __future__ import annotations

from langchain_core.tools import StructuredTool

from archsmith.tools.runtime import ToolRuntime, bind_tool, tool_error
from archsmith.tools.schemas import CandidateInput, CountParamsOutput

__all__ = ["count_params", "make_count_params_tool"]


def count_params(runtime: ToolRuntime, inp: CandidateInput) -> CountParamsOutput:
    """Parameters and size of the exported program, FLOPs per sample of running it.

    Counted by the measuring process on the program (never by the candidate's code), the same
    validation ``check_shapes`` runs, so calling both builds the candidate once.
    """
    found = runtime.validate(inp)
    last = found.inspect or found.build
    data = last.result or {}
    built = found.build.result or {}
    return CountParamsOutput(
        ok=last.ok,
        error=tool_error(last),
        params=data.get("params"),
        trainable_params=built.get("trainable_params") if last.ok else None,
        size_mb=data.get("size_mb"),
        flops_per_sample=data.get("flops_per_sample"),
        sandbox_wall_time_s=found.build.wall_time_s
        + (found.inspect.wall_time_s if found.inspect else 0.0),
    )


def make_count_params_tool(runtime: ToolRuntime) -> StructuredTool:
    """``count_params`` as a LangChain tool bound to ``runtime``."""
    return bind_tool(
        runtime,
        "count_params",
        CandidateInput,
        count_params,
        (
            "Count the candidate's parameters, its size in MB and its FLOPs per sample, measured"
            " in the sandbox on the program the candidate exports."
        ),
    )
