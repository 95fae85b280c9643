"""Which warm sandbox may run which job: never a candidate's job where the measuring data is."""

from __future__ import annotations

from pathlib import Path

from archsmith.sandbox.base import SandboxJob, SandboxLimits
from archsmith.sandbox.warm import WarmKey

SPOOL = Path("/spool")
TRAIN_VIEW = Path("/cache/digits-train.npz")
FULL = Path("/cache/digits.npz")


def job(tool: str, dataset: Path | None = None, **limits: float) -> SandboxJob:
    code = "x = 1" if tool in {"build", "train"} else ""
    return SandboxJob(tool=tool, code=code, dataset_path=dataset, limits=SandboxLimits(**limits))


def test_a_candidate_job_never_runs_in_a_measuring_sandbox() -> None:
    measuring = WarmKey.of(job("score", FULL), SPOOL)
    assert not measuring.serves(job("train", FULL), SPOOL)
    assert not measuring.serves(job("build"), SPOOL)
    assert measuring.serves(job("speed", FULL), SPOOL)


def test_a_sandbox_holding_one_dataset_takes_jobs_with_none_but_no_other() -> None:
    candidate = WarmKey.of(job("train", TRAIN_VIEW), SPOOL)
    assert candidate.serves(job("build"), SPOOL)
    assert not candidate.serves(job("train", FULL), SPOOL)
    empty = WarmKey.of(job("build"), SPOOL)
    assert not empty.serves(job("train", TRAIN_VIEW), SPOOL)


def test_limits_fixed_at_start_must_match_and_per_job_ones_need_not() -> None:
    key = WarmKey.of(job("build", wall_time_s=120), SPOOL)
    assert key.serves(job("build", wall_time_s=1800, grace_s=9), SPOOL)
    assert not key.serves(job("build", memory_mb=1024), SPOOL)
    assert not key.serves(job("build"), Path("/other-spool"))
