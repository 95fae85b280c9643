"""Parallel rounds without a cluster: distinct proposals, and the node lock that keeps speed
measurements alone on their machine."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from archsmith.agents.interfaces import ArchitectProposal
from archsmith.agents.offline.architect import OfflineArchitect
from archsmith.agents.rounds import (
    PROPOSE_ATTEMPTS,
    _measurement,
    propose_distinct,
    summarize_jobs,
)
from archsmith.errors import InputError
from archsmith.sandbox.ray_pool import check_address, node_lock
from archsmith.spec import TaskSpec

SPEC = TaskSpec(dataset="digits", input_shape=(1, 8, 8), num_classes=10)


class Repeating:
    """Proposes the codes in turn, then the last one forever; records what it was shown."""

    name = "repeating"

    def __init__(self, codes: list[str]) -> None:
        self.codes = codes
        self.calls = 0
        self.histories: list[list[dict[str, Any]]] = []

    def propose(
        self,
        spec: TaskSpec,
        instructions: list[dict[str, Any]],
        best: dict[str, Any] | None,
        history: list[dict[str, Any]],
        iteration: int,
    ) -> ArchitectProposal:
        self.histories.append(list(history))
        code = self.codes[min(self.calls, len(self.codes) - 1)]
        self.calls += 1
        return ArchitectProposal(code=code, summary=f"#{iteration}")

    def repair(self, *args: Any) -> ArchitectProposal:
        raise AssertionError("not used")


def test_the_offline_architect_fills_a_round_with_distinct_candidates() -> None:
    proposals = propose_distinct(OfflineArchitect(seed=0), SPEC, [], None, [], 1, 3)
    assert len(proposals) == 3
    assert len({p.code for p in proposals}) == 3
    assert len({str(p.arch) for p in proposals}) == 3


def test_a_round_after_a_history_repeats_none_of_it() -> None:
    first = propose_distinct(OfflineArchitect(seed=0), SPEC, [], None, [], 1, 2)
    history = [
        {"iteration": i + 1, "code": p.code, "arch": p.arch, "status": "evaluated"}
        for i, p in enumerate(first)
    ]
    # A new architect (as after a resume) knows only what the history says.
    second = propose_distinct(OfflineArchitect(seed=0), SPEC, [], None, history, 3, 2)
    codes = [p.code for p in first + second]
    assert len(set(codes)) == 4


def test_repeated_code_is_asked_again_then_the_round_makes_do() -> None:
    arch = Repeating(["A = 1\n", "A = 1\n\n", "B = 2\n"])
    proposals = propose_distinct(arch, SPEC, [], None, [], 5, 2)
    # "A = 1" with a blank line is the same candidate: asked again until "B = 2".
    assert [p.code for p in proposals] == ["A = 1\n", "B = 2\n"]
    assert arch.calls == 3
    # The second slot saw the first proposal as part of the history.
    assert arch.histories[-1][-1]["iteration"] == 5
    assert arch.histories[-1][-1]["status"] == "proposed"

    stuck = Repeating(["A = 1\n"])
    assert [p.code for p in propose_distinct(stuck, SPEC, [], None, [], 1, 3)] == ["A = 1\n"]
    assert stuck.calls == 1 + PROPOSE_ATTEMPTS


def test_the_first_slot_accepts_a_repeat_as_a_serial_iteration_would() -> None:
    history = [{"iteration": 1, "code": "A = 1\n", "status": "evaluated"}]
    arch = Repeating(["A = 1\n"])
    proposals = propose_distinct(arch, SPEC, [], None, history, 2, 2)
    assert [p.code for p in proposals] == ["A = 1\n"]


def test_an_exclusive_job_waits_for_shared_ones_and_goes_before_new_ones(tmp_path: Path) -> None:
    events: list[str] = []
    shared_in = threading.Event()
    release = threading.Event()

    def shared(name: str, hold: threading.Event | None) -> None:
        with node_lock(False, tmp_path):
            events.append(f"{name} in")
            shared_in.set()
            if hold is not None:
                hold.wait(10)
            events.append(f"{name} out")

    def exclusive() -> None:
        with node_lock(True, tmp_path):
            events.append("speed in")
            time.sleep(0.2)
            events.append("speed out")

    first = threading.Thread(target=shared, args=("train", release))
    first.start()
    assert shared_in.wait(5)
    speed = threading.Thread(target=exclusive)
    speed.start()
    time.sleep(0.3)
    late = threading.Thread(target=shared, args=("late", None))
    late.start()
    time.sleep(0.3)
    # The measurement waits for the job in flight; the job that came after waits for it.
    assert events == ["train in"]
    release.set()
    for t in (first, speed, late):
        t.join(10)
    assert events == ["train in", "train out", "speed in", "speed out", "late in", "late out"]


def test_summary_of_a_candidates_jobs() -> None:
    def job(tool: str, worker: str, protocol: str, wall: float) -> dict[str, Any]:
        placement = {
            "host": "h", "node": "n" * 12, "worker": worker * 12, "protocol": protocol,
            "submitted_at": 0.0, "returned_at": wall + 0.5, "lock_wait_s": 0.25,
        }  # fmt: skip
        return {"tool": tool, "wall_time_s": wall, "placement": placement}

    summary = summarize_jobs(
        [job("build", "a", "shared", 2.0), job("train", "b", "shared", 5.0),
         job("speed", "a", "exclusive", 1.0)]
    )  # fmt: skip
    assert summary["workers"] == ["h/nnnnnnnn/aaaaaaaa", "h/nnnnnnnn/bbbbbbbb"]
    assert summary["speed_protocol"] == "exclusive"
    assert summary["ray_task_s"] == pytest.approx(9.5)
    assert summary["sandbox_s"] == pytest.approx(8.0)
    assert summary["lock_wait_s"] == pytest.approx(0.75)
    assert summarize_jobs([job("train", "a", "shared", 1.0)])["speed_protocol"] is None


def test_a_dead_cluster_address_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"no Ray cluster answers at 127\.0\.0\.1:9"):
        check_address("127.0.0.1:9", timeout_s=2)
    with pytest.raises(InputError, match="cannot read the Ray address"):
        check_address("localhost:port")


def test_a_parallel_rounds_label_keeps_where_speed_was_timed() -> None:
    """Speed timed at the early-stopping check says so in a round's label too."""
    placement = {"speed_protocol": "exclusive"}
    paused = {"measure": {"fps": 1.0}, "measured_at_epoch": 2}
    assert _measurement(placement, paused) == {
        "speed_and_energy": "exclusive, on the program paused at epoch 2 (the final one's graph)",
        "training_energy": "shared",
    }
    assert _measurement(placement, {"measure": {"fps": 1.0}})["speed_and_energy"] == "exclusive"
    assert _measurement({}, {})["speed_and_energy"] == "not measured"
