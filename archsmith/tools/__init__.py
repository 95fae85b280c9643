"""Typed tools the graph's nodes call; each measures or decides, none calls an LLM.

Here now: ``rulebook_advice`` (the deterministic critic). The sandboxed tools ``check_shapes``,
``count_params``, ``train_model`` and ``measure_energy`` join them with the sandbox.
"""

from archsmith.tools.rulebook_advice import advise, rulebook_advice_tool

__all__ = ["advise", "rulebook_advice_tool"]
