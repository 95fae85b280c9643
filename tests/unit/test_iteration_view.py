"""The live view of a run: the candidate pipeline's fixes, shown when it ends."""

from __future__ import annotations

from rich.console import Console

from archsmith.agents.pipeline import PIPELINE
from archsmith.agents.session import IterationView


def test_each_fix_of_the_candidate_is_one_line() -> None:
    console = Console(record=True, width=200)
    view = IterationView(console)
    fixes = [
        {"attempt": 1, "stage": "check_shapes", "error": {"type": "RuntimeError", "message": "a"}},
        {"attempt": 2, "stage": "train_model", "error": {"type": "ValueError", "message": "b"}},
    ]
    view(PIPELINE, {"fixes": fixes, "error": None, "llm_calls": []})
    lines = console.export_text().splitlines()
    assert lines == [
        "   fix 1 after check_shapes: RuntimeError: a",
        "   fix 2 after train_model: ValueError: b",
    ]
    view(PIPELINE, {"fixes": [], "error": None})
    assert console.export_text() == ""
