"""The ``check_shapes`` tool: does the candidate build, and is its output (batch, num_classes)?"""

from __future__ import annotations

from langchain_core.tools import StructuredTool

from archsmith.tools.runtime import ToolRuntime, bind_tool, tool_error
from archsmith.tools.schemas import CheckShapesInput, CheckShapesOutput

__all__ = ["check_shapes", "make_check_shapes_tool"]


def check_shapes(runtime: ToolRuntime, inp: CheckShapesInput) -> CheckShapesOutput:
    """Build the model in the sandbox and run a forward pass on a dummy batch."""
    args = inp.model_dump(exclude={"code"})
    result = runtime.run("check_shapes", args, inp.code)
    data = result.result or {}
    return CheckShapesOutput(
        ok=result.ok,
        error=tool_error(result),
        output_shape=data.get("output_shape"),
        expected_shape=data.get("expected_shape"),
        matches=bool(data.get("matches", False)),
        sandbox_wall_time_s=result.wall_time_s,
    )


def make_check_shapes_tool(runtime: ToolRuntime) -> StructuredTool:
    """``check_shapes`` as a LangChain tool bound to ``runtime``."""
    return bind_tool(
        runtime,
        "check_shapes",
        CheckShapesInput,
        check_shapes,
        (
            "Build the candidate model in the sandbox and run a forward pass on a dummy batch;"
            " report the output shape and whether it is (batch, num_classes)."
        ),
    )
