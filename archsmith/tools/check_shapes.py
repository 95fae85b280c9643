"""The ``check_shapes`` tool: does the candidate build, export, and give (batch, num_classes)?"""

from __future__ import annotations

from langchain_core.tools import StructuredTool

from archsmith.tools.runtime import ToolRuntime, bind_tool, tool_error
from archsmith.tools.schemas import CandidateInput, CheckShapesInput, CheckShapesOutput

__all__ = ["check_shapes", "make_check_shapes_tool"]


def check_shapes(runtime: ToolRuntime, inp: CheckShapesInput) -> CheckShapesOutput:
    """Build the model in the sandbox, export it, and run the program on a dummy batch.

    The shape comes from the measuring process's run of the exported program when the build got
    that far, else from the build job's own run (a failure there goes to the code fixer).
    """
    found = runtime.validate(CandidateInput(**inp.model_dump(exclude={"batch_size"})))
    last = found.inspect or found.build
    data = last.result or {}
    return CheckShapesOutput(
        ok=last.ok,
        error=tool_error(last),
        output_shape=data.get("output_shape"),
        expected_shape=data.get("expected_shape"),
        matches=bool(data.get("matches", False)),
        sandbox_wall_time_s=found.build.wall_time_s
        + (found.inspect.wall_time_s if found.inspect else 0.0),
    )


def make_check_shapes_tool(runtime: ToolRuntime) -> StructuredTool:
    """``check_shapes`` as a LangChain tool bound to ``runtime``."""
    return bind_tool(
        runtime,
        "check_shapes",
        CheckShapesInput,
        check_shapes,
        (
            "Build the candidate model in the sandbox, export it as a program and run that on a"
            " dummy batch; report the output shape and whether it is (batch, num_classes)."
        ),
    )
