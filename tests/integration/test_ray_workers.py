"""`archsmith run --workers 2` on a real local Ray cluster, as a user runs it: a round of two
candidates in parallel, `kill -9` in the middle of the round, `resume`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from clitools import SCRIPT, env_for

from archsmith.agents.runs import load_meta
from archsmith.memory.store import RunStore

REQUEST = "build a 1000-FPS digits classifier"


def _rows(home: Path, run_id: str) -> list[dict[str, Any]]:
    with RunStore(home / "archsmith.db") as store:
        return store.iterations(run_id)


def _holders(session_dir: str) -> list[int]:
    """Processes that hold a file of the Ray session open."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd).startswith(session_dir) for fd in (proc / "fd").iterdir()):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _is_worker(name: str) -> bool:
    return re.fullmatch(r"[\w.-]+/[0-9a-f]{8}/[0-9a-f]{8}", name) is not None


def test_a_bad_cluster_address_is_exit_2_before_any_run(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(SCRIPT), "run", REQUEST, "--workers", "2", "--ray-address", "127.0.0.1:9"],
        capture_output=True, text=True, env=env_for(tmp_path), timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no Ray cluster answers at 127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "home" / "runs").exists()


@pytest.mark.slow
def test_kill_9_in_the_middle_of_a_round_loses_and_repeats_no_candidate(tmp_path: Path) -> None:
    """A real local Ray cluster, a round of two candidates, kill -9 between their results, then
    ``resume``: two clusters started and stopped, two CLI processes; the only test of a
    parallel round's crash safety."""
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [str(SCRIPT), "run", REQUEST, "--iterations", "2", "--epochs", "1", "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env_for(tmp_path),
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    # The header comes from the graph's planning step; lines before it (the planning status, a
    # warning) are allowed.
    head: list[str] = []
    run_id = None
    while run_id is None and len(head) < 40:
        head.append(proc.stdout.readline())
        run_id = re.search(r"run (\S+):", head[-1])
    assert run_id, head
    rid = run_id.group(1)
    # Watch the store, not the live view (a pipe buffers it): kill as soon as one candidate of
    # the round is recorded and the other not. The other's speed job waits for this one's, so
    # it has seconds of work left.
    deadline = time.monotonic() + 300
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline and proc.poll() is None:
        if (home / "archsmith.db").is_file():
            rows = _rows(home, rid)
            if rows:
                break
        time.sleep(0.1)
    assert len(rows) == 1, rows
    finished = int(rows[0]["iteration"])
    time.sleep(0.5)  # the checkpoint's write of the same result, submitted just before
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    meta = load_meta(home, rid)
    assert meta.status == "running"  # killed: no chance to say so
    assert meta.ray_session_dir
    before = {r["iteration"]: r for r in _rows(home, rid)}
    # In the middle of the round: one candidate finished and recorded, the other not.
    assert list(before) == [finished], before
    assert before[finished]["status"] == "awaiting critic"
    # node/worker/actor of each Ray worker its jobs ran on (one candidate's jobs may land on two)
    assert all(_is_worker(w) for w in before[finished]["worker"].split(", ")), before[finished]
    with RunStore(home / "archsmith.db") as store:
        calls_before = store.tool_calls(rid, iteration=finished)
    assert [c["tool"] for c in calls_before].count("speed") == 1

    resumed = subprocess.run(
        [str(SCRIPT), "resume", rid], capture_output=True, text=True, env=env_for(tmp_path),
        timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # What the killed run's cluster left behind was cleaned up.
    assert _holders(meta.ray_session_dir) == []

    after = _rows(home, rid)
    assert [r["iteration"] for r in after] == [1, 2]
    assert all(r["status"] == "evaluated" for r in after), after
    kept = after[finished - 1]
    # The finished candidate was judged from its saved result, not run again.
    assert kept["finished_at"] == before[finished]["finished_at"]
    assert kept["started_at"] == before[finished]["started_at"]
    with RunStore(home / "archsmith.db") as store:
        calls = store.tool_calls(rid, iteration=finished)
        other = store.tool_calls(rid, iteration=3 - finished)
        run = store.get_run(rid)

    # (The test split's scoring at the end is recorded under the last iteration: not counted.)
    def jobs(rows: list[dict[str, Any]]) -> list[str]:
        return [c["tool"] for c in rows if c["tool"] != "score"]

    assert jobs(calls) == jobs(calls_before)
    assert {"build", "train", "score", "speed"} <= {c["tool"] for c in other}
    for row in after:
        assert row["round"] == 1
        assert all(_is_worker(w) for w in row["worker"].split(", ")), row
        assert row["started_at"] < row["finished_at"]
        assert row["measurement"] == {"speed_and_energy": "exclusive", "training_energy": "shared"}
        assert row["placement"]["speed_protocol"] == "exclusive"
    assert run is not None
    assert run["status"] == "finished"
    # Both candidates were measured once each, never at the same time as anything else.
    speeds = [c for c in store_calls(home, rid) if c["tool"] == "speed"]
    assert len(speeds) >= 2
    assert all(c["args"]["placement"]["protocol"] == "exclusive" for c in speeds)


def store_calls(home: Path, run_id: str) -> list[dict[str, Any]]:
    with RunStore(home / "archsmith.db") as store:
        return store.tool_calls(run_id)
