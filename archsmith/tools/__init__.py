"""Typed tools the graph's nodes call; each measures or decides, none calls an LLM.

``rulebook_advice`` is the deterministic critic. ``check_shapes``, ``count_params``,
``train_model`` and ``measure_energy`` run the candidate's code in the sandbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from archsmith.tools.rulebook_advice import advise, rulebook_advice_tool

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from archsmith.tools.runtime import ToolRuntime

__all__ = ["advise", "build_tools", "rulebook_advice_tool"]


def build_tools(runtime: ToolRuntime) -> list[BaseTool]:
    """All five tools, the sandboxed ones bound to ``runtime``."""
    from archsmith.tools.check_shapes import make_check_shapes_tool
    from archsmith.tools.count_params import make_count_params_tool
    from archsmith.tools.measure_energy import make_measure_energy_tool
    from archsmith.tools.train_model import make_train_model_tool

    return [
        make_check_shapes_tool(runtime),
        make_count_params_tool(runtime),
        make_train_model_tool(runtime),
        make_measure_energy_tool(runtime),
        rulebook_advice_tool,
    ]
