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

from archsmith.agents.runs import load_meta, open_checkpointer, pending
from archsmith.home import run_dir
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
@pytest.mark.parametrize("how", ["kill -9", "ctrl-c"])
def test_a_run_cut_short_resumes_without_loss_or_repeat(tmp_path: Path, how: str) -> None:
    """A real run killed with SIGKILL, or interrupted with Ctrl-C, once its first iteration is
    on disk, then ``resume`` to the end: two CLI processes, their warm sandboxes and three
    candidates each; the only end-to-end tests of both on a one-at-a-time run.

    Three iterations, so that the cut lands while there is work left: a later candidate of one
    epoch on digits takes about 2.5 s here."""
    proc = _start(tmp_path, "--iterations", "3", "--epochs", "1")
    lines = _read_until(proc, r"^run \S+:", timeout=300)
    run_id = re.search(r"run (\S+):", lines[-1])
    assert run_id, lines
    rid = run_id.group(1)
    # Cut as soon as iteration 1 is on disk: watch the checkpoint, not the live view (a pipe
    # may hold the view's lines back until a later flush).
    deadline = time.monotonic() + 300
    while not _entries(tmp_path, rid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if how == "kill -9":
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    else:
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 130, out
        assert f"archsmith resume {rid}" in out
    before = _entries(tmp_path, rid)
    assert before, "iteration 1 never reached the checkpoint"
    # Killed, it had no chance to say so; interrupted, it recorded where it stopped.
    status = load_meta(tmp_path / "home", rid).status
    assert status == ("running" if how == "kill -9" else "interrupted")

    resumed = subprocess.run(
        [str(SCRIPT), "resume", rid], capture_output=True, text=True, env=env_for(tmp_path),
        timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming run" in resumed.stdout
    after = _entries(tmp_path, rid)
    assert [h["iteration"] for h in after] == [1, 2, 3]
    # The iterations finished before the cut were kept as they were, not run again.
    for old in before:
        assert after[old["iteration"] - 1]["finished_at"] == old["finished_at"]
    meta = load_meta(tmp_path / "home", rid)
    assert meta.status == "finished"
    assert (run_dir(tmp_path / "home", rid) / "best_model.py").is_file()
    # The run store holds every iteration once, including any the cut kept from it.
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


def _wait_for_training(tmp_path: Path, proc: subprocess.Popen[str], timeout: float) -> None:
    """Until a training job is in flight: its work directory exists only while it runs."""
    jobs = tmp_path / "home" / "jobs"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if jobs.is_dir() and any("-train-" in p.name for p in jobs.iterdir()):
            time.sleep(3)  # well into the job: the runner has started training
            return
        assert proc.poll() is None, "the run ended before it started training"
        time.sleep(0.2)
    raise AssertionError("no training job started")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "stop --now"])
def test_an_interrupt_stops_the_training_job_within_seconds(tmp_path: Path, how: str) -> None:
    """Ctrl-C and `archsmith stop --now` during a long training job end the run in seconds.

    2,000 epochs of digits would train for minutes; the run must not wait for that. The
    iteration in flight is not recorded: a resumed run does it again.
    """
    proc = _start(tmp_path, "--iterations", "3", "--epochs", "2000")
    lines = _read_until(proc, r"^run \S+:", timeout=300)
    rid = re.search(r"run (\S+):", lines[-1]).group(1)  # type: ignore[union-attr]
    _wait_for_training(tmp_path, proc, timeout=300)
    started = time.monotonic()
    if how == "ctrl-c":
        os.kill(proc.pid, signal.SIGINT)
    else:
        stop = subprocess.run(
            [str(SCRIPT), "stop", rid, "--now"], capture_output=True, text=True,
            env=env_for(tmp_path), timeout=120,
        )  # fmt: skip
        assert stop.returncode == 0, stop.stderr
    out, _ = proc.communicate(timeout=120)
    took = time.monotonic() - started
    assert proc.returncode == 130, out
    assert took < 30, f"the run took {took:.0f} s to stop"
    assert f"archsmith resume {rid}" in out
    meta = load_meta(tmp_path / "home", rid)
    assert meta.status == "interrupted"
    assert "in iteration 1" in (meta.stop_reason or "")
    assert _entries(tmp_path, rid) == [], "the interrupted iteration must not be recorded"
    jobs = tmp_path / "home" / "jobs"
    assert not any(jobs.iterdir()), "the training job's directory was left behind"


def test_a_request_that_cannot_be_planned_exits_2_and_leaves_no_run(tmp_path: Path) -> None:
    """The graph's planner refuses the request: the error and exit 2 as before any run, no
    header, and no run left in the home or the store."""
    env = env_for(tmp_path)
    result = subprocess.run(
        [str(SCRIPT), "run", "build a classifier for my cat photos", "--iterations", "1"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no known dataset is named in the request" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "home" / "runs").exists(), "the refused request left a runs folder"
    runs = subprocess.run(
        [str(SCRIPT), "runs"], capture_output=True, text=True, env=env, timeout=120
    )  # fmt: skip
    assert "No runs yet" in runs.stdout


def test_resume_unknown_run_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(SCRIPT), "resume", "no-such-run"], capture_output=True, text=True,
        env=env_for(tmp_path), timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no run 'no-such-run'" in result.stderr


def test_a_best_past_a_hard_limit_is_said_and_exits_4(tmp_path: Path) -> None:
    """No model of the offline architect has at most 10 parameters: the run says so, exit 4."""
    result = subprocess.run(
        [str(SCRIPT), "run", "a digits classifier with under 10 parameters",
         "--iterations", "1", "--epochs", "1"],
        capture_output=True, text=True, env=env_for(tmp_path), timeout=600,
    )  # fmt: skip
    assert result.returncode == 4, result.stdout + result.stderr
    last = " ".join(result.stderr.split())
    assert "no candidate met every hard limit" in last
    assert "max_params 10" in last


def test_a_run_without_one_evaluated_candidate_exits_3(tmp_path: Path) -> None:
    """Every build times out (a validation limit of a millisecond): no model, exit 3.

    Cold sandboxes: a job past its limit ends its warm sandbox, so each of the four attempts
    would start a new one (about 6 s each) only to have it stopped a millisecond later."""
    env = {
        **env_for(tmp_path),
        "ARCHSMITH_VALIDATE_WALL_TIME_S": "0.001",
        "ARCHSMITH_WARM_SANDBOX": "false",
    }
    result = subprocess.run(
        [str(SCRIPT), "run", "build a 1000-FPS digits classifier", "--iterations", "1"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 3, result.stdout + result.stderr
    assert "no candidate could be evaluated" in " ".join(result.stderr.split())


@pytest.mark.slow
def test_run_with_early_stopping_records_each_check_and_show_tells_it(tmp_path: Path) -> None:
    """`--early-stop` as a user types it: the run says it, keeps it for `resume`, and every
    candidate's check (epoch 1 of 3 here) is in the record and in `show`.

    Slow: a real run of two candidates, each paused, measured and resumed (about 35 s alone, 55 s
    beside another worker)."""
    env = env_for(tmp_path)
    result = subprocess.run(
        [str(SCRIPT), "run", "build a 1000-FPS digits classifier", "--iterations", "2",
         "--epochs", "3", "--max-train", "400", "--early-stop", "--early-stop-margin", "0.05"],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert result.returncode in (0, 4), result.stdout + result.stderr
    assert "early stopping (margin 0.05)" in " ".join(result.stdout.split())
    with RunStore(tmp_path / "home" / "archsmith.db") as store:
        (run,) = store.list_runs()
        entries = store.iterations(run["run_id"])
    meta = load_meta(tmp_path / "home", run["run_id"])
    assert meta.settings.early_stop is True
    assert meta.settings.early_stop_margin == 0.05
    assert entries
    first = entries[0]["early_stop"]
    assert (first["epoch"], first["epochs"], first["stopped"]) == (1, 3, False)
    assert first["reason"] == "no best yet to compare with"
    assert "margin 0.05" in first["rule"]
    assert 0.0 <= first["val_accuracy"] <= 1.0
    shown = subprocess.run(
        [str(SCRIPT), "show", run["run_id"], "--iteration", "1"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    said = " ".join(shown.stdout.split())
    assert "went on after the check at epoch 1 of 3" in said
    assert "no best yet to compare with" in said
    bad = subprocess.run(
        [str(SCRIPT), "run", "build a 1000-FPS digits classifier", "--early-stop-margin", "2"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "--early-stop-margin" in bad.stderr
