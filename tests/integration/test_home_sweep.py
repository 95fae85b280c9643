"""One owner for the files in ARCHSMITH_HOME (``archsmith.home``), with real runs.

A run killed with SIGKILL in the middle of an early-stopping check leaves what it held across
the pause (``jobs/held-*``) and the programs it had validated; the next start sweeps them, the
run's end removes its own validated programs, and ``runs --prune`` reclaims what no run refers
to, keeping every program a run can still show, report or export.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from clitools import SCRIPT, env_for

from archsmith.memory.store import RunStore
from archsmith.scoring.format import TRAIN_STATE_FILE


def _cli(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, env=env_for(tmp_path),
        timeout=timeout,
    )  # fmt: skip


def _held(home: Path) -> list[Path]:
    jobs = home / "jobs"
    return [p for p in jobs.iterdir() if p.name.startswith("held-")] if jobs.is_dir() else []


@pytest.mark.slow
def test_a_run_killed_mid_check_is_swept_by_the_next_start(tmp_path: Path) -> None:
    """Slow: a real run with early stopping, killed at its check, then resumed to its end (one
    candidate of three epochs on 400 samples, its validation and training twice, and three CLI
    commands: about a minute alone, several on a loaded machine)."""
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [str(SCRIPT), "run", "build a 1000-FPS digits classifier", "--iterations", "1",
         "--epochs", "3", "--max-train", "400", "--early-stop"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env_for(tmp_path),
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        # Paused after epoch 1: the host holds the training state while the check measures.
        while not any((h / TRAIN_STATE_FILE).is_file() for h in _held(home)):
            assert proc.poll() is None, "the run ended before its first check"
            assert time.monotonic() < deadline, "no early-stopping check started"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    held = _held(home)
    assert held, "the kill left nothing held: it did not land in the check"
    validated = [p for p in (home / "models").iterdir() if p.name.startswith("validated-")]
    assert validated, "the killed run's validated programs are still there"
    # A live run's files next to the dead one's: the sweep must leave them be.
    alive = subprocess.Popen(["sleep", "600"])
    try:
        tag = f"held-{_tag_of(alive.pid)}-live"
        (home / "jobs" / tag).mkdir()
        rid = _run_id(home)
        resumed = _cli(tmp_path, "resume", rid, timeout=900)
        assert resumed.returncode in (0, 4), resumed.stdout + resumed.stderr
        assert (home / "jobs" / tag).is_dir(), "a live process's files were swept"
    finally:
        alive.kill()
        alive.wait()
    assert not any(p.exists() for p in held + validated), "the next start did not sweep"
    left = sorted(p.name for p in (home / "jobs").iterdir())
    assert left == [tag], left
    assert not [p for p in (home / "models").iterdir() if p.name.startswith("validated-")]
    # Every program the run refers to stays; what the kill left unrecorded is pruned.
    with RunStore(home / "archsmith.db") as store:
        kept = {e["model_dir"] for e in store.iterations(rid) if e.get("model_dir")}
    assert kept
    dry = json.loads(_cli(tmp_path, "runs", "--prune", "--dry-run", "--json").stdout)
    assert dry["dry_run"] is True
    assert not set(dry["paths"]) & kept
    pruned = _cli(tmp_path, "runs", "--prune")
    assert pruned.returncode == 0, pruned.stderr
    assert "Reclaimed" in pruned.stdout
    assert all(Path(p).is_dir() for p in kept)
    assert not any(Path(p).exists() for p in dry["paths"])
    assert _cli(tmp_path, "show", rid).returncode == 0


def _run_id(home: Path) -> str:
    (rid,) = [p.name for p in (home / "runs").iterdir()]
    return rid


def _tag_of(pid: int) -> str:
    """The owner tag ``archsmith.home`` gives a process: a live one here."""
    from archsmith import home

    mine = home.owner_tag().split(".")
    stat = Path(f"/proc/{pid}/stat").read_text()
    started = stat[stat.rfind(")") + 2 :].split()[19]
    return f"{mine[0]}.{pid}.{started}"


def test_prune_says_what_it_would_reclaim_and_dry_run_needs_prune(tmp_path: Path) -> None:
    home = tmp_path / "home"
    orphan = home / "models" / "20260101-000000-orphan"
    orphan.mkdir(parents=True)
    (orphan / "program.safetensors").write_bytes(b"x" * 2048)
    (home / "notes.txt").parent.mkdir(exist_ok=True)
    (home / "notes.txt").write_text("mine")
    dry = _cli(tmp_path, "runs", "--prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "Would reclaim 2.0 KiB" in dry.stdout
    assert orphan.is_dir()
    done = _cli(tmp_path, "runs", "--prune")
    assert "Reclaimed 2.0 KiB" in done.stdout
    assert not orphan.exists()
    assert (home / "notes.txt").read_text() == "mine"
    bad = _cli(tmp_path, "runs", "--dry-run")
    assert bad.returncode == 2
    assert "--dry-run goes with --prune" in bad.stderr
