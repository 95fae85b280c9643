"""``archsmith.home``: the layout of ARCHSMITH_HOME, and what is swept, released and pruned."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from archsmith import home
from archsmith.config import Settings


def _dead_pid() -> int:
    """The pid of a process that has just exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _dead_tag() -> str:
    """An owner tag of this host whose process is gone."""
    live = home.owner_tag()
    host = live.split(".", 1)[0]
    return f"{host}.{_dead_pid()}.12345"


def _filled(path: Path, size: int = 1000) -> Path:
    path.mkdir(parents=True)
    (path / "file").write_bytes(b"x" * size)
    return path


def test_every_path_of_the_home_is_named_by_the_layout(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.jobs_dir == home.jobs_dir(tmp_path) == tmp_path / "jobs"
    assert settings.models_dir == home.models_dir(tmp_path) == tmp_path / "models"
    assert settings.cache_dir == home.datasets_dir(tmp_path) == tmp_path / "datasets"
    assert settings.store_path == home.store_path(tmp_path) == tmp_path / "archsmith.db"
    assert Settings(home=tmp_path, store=tmp_path / "x.db").store_path == tmp_path / "x.db"
    assert home.run_dir(tmp_path, "r1") == home.runs_dir(tmp_path) / "r1" == tmp_path / "runs/r1"


def test_what_a_process_makes_carries_its_owner(tmp_path: Path) -> None:
    job = home.new_job_dir(tmp_path, "train")
    held = home.new_held_dir(tmp_path)
    validated = home.new_validated_dir(tmp_path)
    assert job.parent == held.parent == tmp_path / "jobs"
    assert validated.parent == tmp_path / "models"
    assert held.name.startswith("held-")
    assert "-train-" in job.name
    for made in (job, held, validated):
        assert home.owner_tag() in made.name
        assert home.owner_alive(made.name) is True
    assert home.owner_tag().split(".")[1] == str(os.getpid())


def test_sweep_takes_a_dead_owners_files_and_keeps_a_live_ones(tmp_path: Path) -> None:
    dead = _dead_tag()
    gone = [
        _filled(tmp_path / "jobs" / f"held-{dead}-abc"),
        _filled(tmp_path / "jobs" / f"20260101-000000-score-{dead}-abc"),
        _filled(tmp_path / "models" / f"validated-{dead}-abc" / "20260101-000000-0"),
    ]
    gone[-1] = gone[-1].parent
    live = [home.new_held_dir(tmp_path), home.new_job_dir(tmp_path, "train")]
    live.append(home.new_validated_dir(tmp_path))
    dry = home.sweep(tmp_path, dry_run=True)
    assert sorted(dry.paths) == sorted(gone)
    assert dry.bytes >= 3000
    assert all(p.exists() for p in gone)
    found = home.sweep(tmp_path)
    assert sorted(found.paths) == sorted(gone)
    assert not any(p.exists() for p in gone)
    assert all(p.is_dir() for p in live)


def test_sweep_leaves_what_has_no_owner_and_another_hosts_files(tmp_path: Path) -> None:
    """A user's own files (no owner tag), a trained program, another host's job: all stay."""
    mine = [
        _filled(tmp_path / "jobs" / "held-abc"),  # made before owners were recorded
        _filled(tmp_path / "jobs" / "notes"),
        _filled(tmp_path / "models" / "20260101-000000-0"),
        _filled(tmp_path / "models" / f"{_dead_tag()}-looks-like-one"),  # not validated-*
        _filled(tmp_path / "jobs" / f"held-o00000000.{_dead_pid()}.1-abc"),  # another host
    ]
    (tmp_path / "jobs" / "a-file").write_text("mine")
    assert home.sweep(tmp_path).paths == []
    assert all(p.is_dir() for p in mine)
    assert (tmp_path / "jobs" / "a-file").read_text() == "mine"


def test_a_reused_pid_is_not_its_old_owner() -> None:
    host, pid, started = home.owner_tag().split(".")
    assert home.owner_alive(f"held-{host}.{pid}.{started}-x") is True
    if int(started):  # the start time is known (Linux): a different one is another process
        assert home.owner_alive(f"held-{host}.{pid}.{int(started) + 1}-x") is False
    assert home.owner_alive("held-x") is None


def test_sweep_never_follows_a_link_out_of_the_home(tmp_path: Path) -> None:
    outside = _filled(tmp_path / "outside")
    victim = _filled(outside / "victim")
    root = tmp_path / "home"
    (root / "jobs").mkdir(parents=True)
    link = root / "jobs" / f"held-{_dead_tag()}-abc"
    link.symlink_to(victim, target_is_directory=True)
    assert home.sweep(root).paths == []
    assert (victim / "file").exists()
    # A home whose jobs directory is itself a link is not swept at all.
    other = tmp_path / "other"
    other.mkdir()
    planted = _filled(outside / f"held-{_dead_tag()}-abc")
    (other / "jobs").symlink_to(outside, target_is_directory=True)
    assert home.sweep(other).paths == []
    assert (planted / "file").exists()


def test_release_removes_the_validated_programs_and_only_those(tmp_path: Path) -> None:
    validated = home.new_validated_dir(tmp_path)
    _filled(validated / "20260101-000000-0", 500)
    trained = _filled(tmp_path / "models" / "20260101-000000-1")
    released = home.release_run(validated)
    assert released.paths == [validated]
    assert released.bytes >= 500
    assert not validated.exists()
    assert trained.is_dir()
    with pytest.raises(ValueError, match="not a directory of validated programs"):
        home.release_run(trained)


def test_prune_keeps_what_runs_refer_to_and_what_a_live_run_may_record(tmp_path: Path) -> None:
    models = tmp_path / "models"
    kept = _filled(models / "20260101-000000-kept")
    orphan = _filled(models / "20260101-000000-orphan")
    dead_job = _filled(tmp_path / "jobs" / f"held-{_dead_tag()}-abc")
    old = os.stat(orphan).st_mtime
    young = _filled(models / "20260101-000000-young")
    os.utime(young, (old + 100, old + 100))
    found = home.prune(tmp_path, [str(kept), ""], live_since=old + 50, dry_run=True)
    assert sorted(found.paths) == sorted([dead_job, orphan])
    assert orphan.is_dir()
    found = home.prune(tmp_path, [str(kept)], live_since=None)
    assert sorted(found.paths) == sorted([dead_job, orphan, young])
    assert kept.is_dir()
    assert not orphan.exists()


def test_sizes_read_as_a_person_reads_them() -> None:
    assert home.human_bytes(0) == "0 B"
    assert home.human_bytes(1023) == "1023 B"
    assert home.human_bytes(1536) == "1.5 KiB"
    assert home.human_bytes(5 * 1024**3) == "5.0 GiB"
