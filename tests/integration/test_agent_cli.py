"""`archsmith run` / `resume` / `plan` as a user runs them, offline, on digits."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from clitools import SCRIPT, env_for

from archsmith.agents.runs import load_meta, open_checkpointer, pending, run_dir
from archsmith.memory.store import RunStore


def test_plan_json_and_refusal(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    ok = subprocess.run(
        [str(SCRIPT), "plan", "build a 1000-FPS malaria classifier", "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    spec = json.loads(ok.stdout)
    assert spec["dataset"] == "malaria"
    assert spec["fps_threshold"] == 1000
    assert spec["fps_priority"] > 0
    refused = subprocess.run(
        [str(SCRIPT), "plan", "build a classifier for my cat photos"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "malaria" in refused.stderr


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(SCRIPT), "run", "build a 1000-FPS digits classifier", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env_for(tmp_path),
        start_new_session=True,
    )  # fmt: skip


def _read_until(proc: subprocess.Popen[str], pattern: str, timeout: float) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"{pattern!r} not seen in:\n" + "\n".join(lines))


def _entries(tmp_path: Path, run_id: str) -> list[dict[str, Any]]:
    directory = run_dir(tmp_path / "home", run_id)
    if not (directory / "checkpoints.sqlite").is_file():
        return []
    with open_checkpointer(directory, None) as saver:
        _, state = pending(saver, run_id)
    return list(state.get("history", []))


@pytest.mark.slow
def test_run_killed_with_sigkill_resumes_without_loss_or_repeat(tmp_path: Path) -> None:
    proc = _start(tmp_path, "--iterations", "3", "--epochs", "1")
    lines = _read_until(proc, r"^\s+1[ *]", timeout=300)
    run_id = re.search(r"run (\S+):", lines[0])
    assert run_id, lines[0]
    rid = run_id.group(1)
    # Kill as soon as iteration 1 is on disk (the live view can print it a moment earlier).
    deadline = time.monotonic() + 60
    while not _entries(tmp_path, rid) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = _entries(tmp_path, rid)
    assert before, "iteration 1 never reached the checkpoint"
    assert load_meta(tmp_path / "home", rid).status == "running"  # killed: no chance to update

    resumed = subprocess.run(
        [str(SCRIPT), "resume", rid], capture_output=True, text=True, env=env_for(tmp_path),
        timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming run" in resumed.stdout
    after = _entries(tmp_path, rid)
    assert [h["iteration"] for h in after] == [1, 2, 3]
    # The iterations finished before the kill were kept as they were, not run again.
    for old in before:
        assert after[old["iteration"] - 1]["finished_at"] == old["finished_at"]
    meta = load_meta(tmp_path / "home", rid)
    assert meta.status == "finished"
    assert (run_dir(tmp_path / "home", rid) / "best_model.py").is_file()
    # The run store holds every iteration once, including any the kill kept from it.
    with RunStore(tmp_path / "home" / "archsmith.db") as store:
        assert [e["iteration"] for e in store.iterations(rid)] == [1, 2, 3]
        assert [e["finished_at"] for e in store.iterations(rid)] == [
            h["finished_at"] for h in after
        ]
        run = store.get_run(rid)
        assert run is not None
        assert run["status"] == "finished"
        assert {c["tool"] for c in store.tool_calls(rid, iteration=3)} >= {"train", "score"}
    again = subprocess.run(
        [str(SCRIPT), "resume", rid], capture_output=True, text=True, env=env_for(tmp_path),
        timeout=120,
    )  # fmt: skip
    assert again.returncode == 0
    assert "already finished" in again.stdout


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path: Path) -> None:
    proc = _start(tmp_path, "--iterations", "5", "--epochs", "1")
    lines = _read_until(proc, r"^\s+1[ *]", timeout=300)
    rid = re.search(r"run (\S+):", lines[0]).group(1)  # type: ignore[union-attr]
    os.kill(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert f"archsmith resume {rid}" in out
    assert load_meta(tmp_path / "home", rid).status == "interrupted"


def test_resume_unknown_run_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(SCRIPT), "resume", "no-such-run"], capture_output=True, text=True,
        env=env_for(tmp_path), timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no run 'no-such-run'" in result.stderr
