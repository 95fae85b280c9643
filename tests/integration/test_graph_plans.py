"""`archsmith run` plans in the graph: the plan is the run's first checkpointed step, a request
that cannot be planned leaves no run behind, and a resumed run does not plan again.

Driven through `archsmith.agents.session` on digits with the offline planner and architect; each
run is stopped (as `archsmith stop` does) before any candidate trains, so no sandbox job runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from archsmith.agents.graph import build_graph
from archsmith.agents.runs import load_meta, open_checkpointer
from archsmith.agents.session import new_meta, resume_run, start_run
from archsmith.config import RunSettings, Settings, auto_epochs
from archsmith.errors import InputError
from archsmith.home import run_dir, runs_dir
from archsmith.memory.recorder import StopRequested
from archsmith.memory.store import RunStore

REQUEST = "build a 1000-FPS digits classifier"


def _settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", warm_sandbox=False)


def _meta(request: str, epochs: int | None = None) -> Any:
    run = RunSettings(
        llm="offline", sandbox="none", device="cpu", epochs=epochs, iterations=3, max_train=300
    )
    return new_meta(request, run)


class StopAt:
    """The live view: notes each node's update and stops the run (as `archsmith stop` does)
    after the node ``at``."""

    def __init__(self, at: str) -> None:
        self.at = at
        self.seen: list[str] = []
        self.plan: dict[str, Any] | None = None

    def __call__(self, node: str, update: dict[str, Any]) -> None:
        self.seen.append(node)
        if node == "planner":
            self.plan = update
        if node == self.at:
            raise StopRequested(f"stop after {node}")


def test_the_plan_is_the_runs_first_checkpointed_step(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    meta = _meta(REQUEST)
    view = StopAt("planner")
    start_run(meta, settings, Console(), on_update=view)
    assert view.seen == ["planner"]
    assert view.plan is not None
    assert view.plan["spec"]["dataset"] == "digits"
    assert view.plan["planner"] == "offline"
    assert view.plan["assumptions"]
    # No --epochs: the planner chose them by the planned data's size (--max-train 300).
    assert view.plan["train_samples"] == 300
    assert view.plan["epochs"] == auto_epochs(300)

    directory = run_dir(settings.home, meta.run_id)
    with open_checkpointer(directory, None) as saver:
        config: Any = {"configurable": {"thread_id": meta.run_id}}
        history = list(build_graph(saver).get_state_history(config))[::-1]
    # The input (-1), the request entered (0), then the first step, the planner's, with the plan.
    steps = [(s.metadata or {}).get("step") for s in history]
    assert steps == [-1, 0, 1]
    start, planned = history[1:]
    assert start.next == ("planner",)
    assert start.values["request"] == REQUEST
    assert "spec" not in start.values
    assert planned.next == ("architect",)
    assert planned.values["spec"] == view.plan["spec"]
    assert planned.values["epochs"] == auto_epochs(300)

    # run.json and the store have the run, with the epochs the planner settled.
    assert load_meta(settings.home, meta.run_id).settings.epochs == auto_epochs(300)
    with RunStore(settings.store_path) as store:
        run = store.get_run(meta.run_id)
    assert run is not None
    assert run["spec"]["dataset"] == "digits"
    assert run["settings"]["epochs"] == auto_epochs(300)


def test_a_resumed_run_does_not_plan_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path)
    meta = _meta(REQUEST, epochs=2)
    first = StopAt("planner")
    start_run(meta, settings, Console(), on_update=first)
    assert first.plan is not None
    assert first.plan["epochs"] == 2
    assert "train_samples" not in first.plan

    def no_second_plan(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a resumed run planned again")

    monkeypatch.setattr("archsmith.agents.planning.front.plan", no_second_plan)
    again = StopAt("architect")
    state = resume_run(meta.run_id, settings, Console(), on_update=again)
    assert again.seen == ["architect"]
    assert state["spec"] == first.plan["spec"]
    assert state["iteration"] == 1
    assert load_meta(settings.home, meta.run_id).settings.epochs == 2


@pytest.mark.parametrize(
    ("request_text", "says"),
    [
        ("build a classifier for my cat photos", "no known dataset is named"),
        ("a digits classifier with at most 0 parameters", "max_params"),
    ],
)
def test_a_request_that_cannot_be_planned_leaves_no_run_behind(
    tmp_path: Path, request_text: str, says: str
) -> None:
    settings = _settings(tmp_path)
    meta = _meta(request_text)
    view = StopAt("planner")
    with pytest.raises(InputError, match=says):
        start_run(meta, settings, Console(), on_update=view)
    assert view.seen == []
    assert not run_dir(settings.home, meta.run_id).exists()
    assert not runs_dir(settings.home).exists(), "the refused request left a runs folder"
    with RunStore(settings.store_path) as store:
        assert store.list_runs() == []
