"""The run store: what goes in comes out, migrations keep data, bad databases are refused."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from archsmith.memory.recorder import RunRecorder, StopRequested
from archsmith.memory.store import MIGRATIONS, SCHEMA_VERSION, RunStore, StoreError, ToolCallRecord


def _run(run_id: str = "r1", **extra: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "request": "build a 1000-FPS digits classifier",
        "status": "running",
        "llm": "offline",
        "sandbox": "local",
        "device": "cpu",
        "directory": "/tmp/runs/" + run_id,
        "max_iterations": 3,
        "settings": {"epochs": 2},
        "pid": os.getpid(),
        "created_at": time.time(),
        **extra,
    }


def _entry(n: int, *, best: bool = False, status: str = "evaluated") -> dict[str, Any]:
    entry: dict[str, Any] = {
        "iteration": n,
        "status": status,
        "summary": f"CNN #{n}",
        "applied": ["AMK"] if n > 1 else [],
        "code": f"# candidate {n}\nimport torch\n",
        "fixes": [],
        "seconds": 1.5,
        "finished_at": time.time(),
        "is_best": best,
    }
    if status != "failed":
        entry.update(
            metrics={"val_accuracy": 0.9 + n / 100, "train_accuracy": 0.95, "fps": 1000.0 * n,
                     "params": 1000 * n, "val_energy_kwh_pue": 1e-6, "train_energy_kwh_pue": 1e-4},
            combined_metric=1.5 + n / 10,
            fired_rules=[{"rule_id": "fps_low", "weight": 1.0, "reason": "fps 1000 < TF 2000"}],
            instructions=[{"code": "RK", "weight": 1.0, "meaning": "reduce kernel"}],
        )  # fmt: skip
    else:
        entry["error"] = {"type": "RuntimeError", "message": "shape", "line": 3, "stage": "x"}
    return entry


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    s = RunStore(tmp_path / "archsmith.db")
    s.upsert_run(_run())
    return s


def test_round_trip_of_a_run_and_its_steps(store: RunStore, tmp_path: Path) -> None:
    rec = RunRecorder(store, "r1", tmp_path / "runs" / "r1")
    rec.on_update("architect", {"iteration": 1, "llm_calls": [{"role": "architect",
                  "iteration": 1, "model": "m", "prompt": "P", "response": "R",
                  "latency_s": 0.5, "input_tokens": 10, "output_tokens": 20}]})  # fmt: skip
    rec.on_tool_call(
        ToolCallRecord("check_shapes", {"input_shape": [1, 8, 8]}, True, None,
                       {"output_shape": [2, 10]}, 0.3, "bwrap", time.time())
    )  # fmt: skip
    rec.on_update("critic", {"history": [_entry(1, best=True)]})
    rec.on_update("architect", {"iteration": 2})
    rec.on_update("record_failure", {"history": [_entry(2, status="failed")]})

    its = store.iterations("r1")
    assert [e["iteration"] for e in its] == [1, 2]
    assert its[0]["fired_rules"][0]["reason"] == "fps 1000 < TF 2000"
    assert its[1]["error"]["type"] == "RuntimeError"
    calls = store.llm_calls("r1")
    assert calls[0]["prompt"] == "P"
    assert calls[0]["output_tokens"] == 20
    tools = store.tool_calls("r1", iteration=1)
    assert tools[0]["tool"] == "check_shapes"
    assert tools[0]["ok"] is True
    assert tools[0]["result"] == {"output_shape": [2, 10]}
    code = tmp_path / "runs" / "r1" / "candidates" / "iteration_001.py"
    assert code.read_text() == _entry(1)["code"]
    kinds = {(a["kind"], a["iteration"]) for a in store.artifacts("r1")}
    assert ("code", 1) in kinds
    assert ("code", 2) in kinds
    (listed,) = store.list_runs()
    assert listed["done"] == 2
    assert listed["best_iteration"] == 1
    assert listed["best_val_accuracy"] == pytest.approx(0.91)
    assert listed["settings"] == {"epochs": 2}
    # ``show`` reads the same summary ``runs`` lists.
    shown = store.get_run("r1")
    assert shown is not None
    summary = [k for k in listed if k == "done" or k.startswith("best_")]
    assert "best_test_accuracy" in summary
    assert {k: shown[k] for k in summary} == {k: listed[k] for k in summary}


def test_sync_is_idempotent_and_fills_what_a_crash_missed(store: RunStore, tmp_path: Path) -> None:
    state = {
        "spec": {"dataset": "digits"},
        "assumptions": ["a"],
        "planner": "offline",
        "iteration": 2,
        "history": [_entry(1, best=True), _entry(2)],
        "llm_calls": [{"role": "planner", "prompt": "p", "response": "r", "iteration": 0}],
    }
    rec = RunRecorder(store, "r1", tmp_path / "r1")
    rec.sync(state)
    rec.sync(state)
    assert [e["iteration"] for e in store.iterations("r1")] == [1, 2]
    assert len(store.llm_calls("r1")) == 1
    assert rec.llm_seq == 1
    assert rec.iteration == 2
    run = store.get_run("r1")
    assert run is not None
    assert run["spec"] == {"dataset": "digits"}
    assert run["planner"] == "offline"


def test_stop_request_is_seen_by_the_recorder(store: RunStore, tmp_path: Path) -> None:
    rec = RunRecorder(store, "r1", tmp_path / "r1")
    rec.on_update("architect", {"iteration": 1})
    store.request_stop("r1")
    with pytest.raises(StopRequested):
        rec.on_update("validate", {"validation": {}})
    # Resuming sets the run running again, which clears the request.
    store.set_status("r1", "running", pid=os.getpid())
    assert not store.stop_requested("r1")


def test_a_running_row_whose_process_is_gone_reads_as_crashed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    store = RunStore(tmp_path / "s.db")
    store.upsert_run(_run("gone", pid=int(dead.stdout)))
    run = store.get_run("gone")
    assert run is not None
    assert run["status"] == "crashed"
    assert "ended without a word" in run["stop_reason"]
    alive = RunStore(tmp_path / "s.db")
    alive.upsert_run(_run("here"))
    here = alive.get_run("here")
    assert here is not None
    assert here["status"] == "running"
    assert here["alive"] is True


def test_migration_from_schema_1_keeps_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO runs (run_id, request, status, llm, sandbox, device, directory, created_at,"
        " updated_at) VALUES ('old', 'req', 'finished', 'offline', 'local', 'cpu', '/x', 1, 2)"
    )
    conn.execute(
        "INSERT INTO iterations (run_id, iteration, status, entry) VALUES"
        " ('old', 1, 'evaluated', '{\"iteration\": 1, \"status\": \"evaluated\"}')"
    )
    conn.close()
    store = RunStore(path)
    assert int(store.conn.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION
    assert store.iterations("old") == [{"iteration": 1, "status": "evaluated", "test": None}]
    assert store.get_run("old") is not None
    store.record_tool_call(
        "old", 1, ToolCallRecord("count_params", {}, True, None, None, 0.1, "bwrap", 1.0)
    )
    assert store.tool_calls("old")[0]["tool"] == "count_params"


def test_a_database_from_a_newer_archsmith_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    RunStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 3}")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer archsmith") as info:
        RunStore(path)
    assert f"schema {SCHEMA_VERSION + 3}" in str(info.value)
    assert path.read_bytes() == before


def test_a_corrupt_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    path.write_bytes(b"this is not sqlite at all " * 200)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="damaged") as info:
        RunStore(path)
    assert f"mv {path} {path}.damaged" in str(info.value)
    assert path.read_bytes() == before


def test_a_full_disk_loses_the_step_not_the_store(store: RunStore, tmp_path: Path) -> None:
    rec = RunRecorder(store, "r1", tmp_path / "r1")
    rec.on_update("critic", {"history": [_entry(1, best=True)]})
    pages = int(store.conn.execute("PRAGMA page_count").fetchone()[0])
    store.conn.execute(f"PRAGMA max_page_count = {pages}")
    huge = _entry(2)
    huge["code"] = "x" * 2_000_000
    with pytest.raises(StoreError, match="full"):
        store.record_iteration("r1", huge)
    # Nothing of the failed step, everything before it.
    assert [e["iteration"] for e in store.iterations("r1")] == [1]
    assert not store.conn.in_transaction


def test_an_import_is_all_or_nothing(store: RunStore, tmp_path: Path) -> None:
    bad_entry = {"iteration": "not a number"}
    with pytest.raises(ValueError, match="invalid literal"):
        RunRecorder(store, "r1", tmp_path / "r1").sync({"history": [_entry(1), bad_entry]})
    assert store.iterations("r1") == []


def test_readers_see_rows_while_a_writer_holds_the_database(store: RunStore) -> None:
    other = RunStore(store.path)
    with store.transaction():
        store.record_iteration("r1", _entry(1))
        # Not committed yet, and the reader is not blocked (WAL).
        assert other.iterations("r1") == []
    assert [e["iteration"] for e in other.iterations("r1")] == [1]
