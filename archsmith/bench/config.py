"""What a benchmark grid runs: the benchmarks, objectives, strategies, seeds and budget.

A frozen, validated configuration, so the grid can be planned and checked in full before any
search starts, and written into ``results.json`` with a command line that reproduces it.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from archsmith.bench.base import TabularSpace

__all__ = ["BENCHMARKS", "LLM_STRATEGY", "OBJECTIVES", "BenchConfig"]

BENCHMARKS: Final = ("macro", "nb201")
OBJECTIVES: Final = ("accuracy", "m-factor", "latency")
LLM_STRATEGY: Final = "llm"


class BenchConfig(BaseModel):
    """What to run. ``None`` for benchmarks, objectives or strategies means "every one that can
    run here": those that cannot are reported as skipped. A name given explicitly must run, or the
    whole grid is refused before any search starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    benchmarks: list[str] | None = Field(
        default=None, min_length=1, description=f"Some of {', '.join(BENCHMARKS)}; None: all."
    )
    objectives: list[str] | None = Field(
        default=None, min_length=1, description=f"Some of {', '.join(OBJECTIVES)}; None: all."
    )
    strategies: list[str] | None = Field(
        default=None, min_length=1, description="Strategy names; None: every available one."
    )
    seeds: int | list[int] = Field(
        default=20, description="A count (seeds 0..N-1, N >= 1) or a list of distinct seeds >= 0."
    )
    budget: int = Field(default=10, ge=1, description="Evaluations per search, at least 1.")
    datasets: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Benchmark -> datasets to search; every dataset of a benchmark not listed.",
    )
    spaces: list[Path] = Field(
        default_factory=list, description="User space files (archsmith.bench.space_file)."
    )
    device: str | None = Field(
        default=None, description="Device of the latency objective; None: each space's first."
    )
    max_latency_ms: float | None = Field(
        default=None, gt=0, description="The latency objective's limit in ms, above 0."
    )
    alpha: float = Field(default=1.0, description="Exponent of the M-factor's size penalty.")
    data_dir: Path | None = Field(default=None, description="Where the benchmark tables are.")
    jobs: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, description="Worker processes, >= 1."
    )
    llm: str | None = Field(
        default=None, description="The LLM strategy's model, e.g. openai:gpt-4o; None: no LLM."
    )
    base_url: str | None = Field(default=None, description="An OpenAI-compatible server's URL.")

    @field_validator("datasets", mode="before")
    @classmethod
    def _dataset_lists(cls, v: Any) -> Any:
        """A single dataset per benchmark (format 1's shape) is a list of one."""
        if isinstance(v, dict):
            return {k: [d] if isinstance(d, str) else d for k, d in v.items()}
        return v

    @field_validator("seeds")
    @classmethod
    def _check_seeds(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, int):
            if v < 1:
                raise ValueError(f"seeds must be a count of at least 1, got {v}")
            return v
        if not v:
            raise ValueError("seeds must not be an empty list")
        if any(s < 0 for s in v) or len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct and >= 0, got {v}")
        return v

    @property
    def seed_list(self) -> list[int]:
        """The seeds every (benchmark, objective, strategy) is searched with."""
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def datasets_for(self, benchmark: str, space: TabularSpace) -> list[str]:
        """The datasets searched on ``benchmark``: those asked for, else every one it has."""
        return list(self.datasets.get(benchmark) or space.datasets)

    def command(self) -> str:
        """An ``archsmith bench`` command line that reproduces this grid (the jobs aside)."""
        args = ["archsmith", "bench"]
        for flag, names in (("-b", self.benchmarks), ("-O", self.objectives)):
            for name in names or ():
                args += [flag, name]
        for name in self.strategies or ():
            args += ["-s", name]
        seeds = self.seed_list
        args += ["--seeds", str(len(seeds)) if seeds == list(range(len(seeds))) else ",".join(
            map(str, seeds)
        )]  # fmt: skip
        args += ["--budget", str(self.budget)]
        for bench, datasets in sorted(self.datasets.items()):
            args += ["--dataset", f"{bench}={','.join(datasets)}"]
        for path in self.spaces:
            args += ["--space", str(path)]
        if self.objectives is None or "latency" in self.objectives:
            if self.device is not None:
                args += ["--device", self.device]
            if self.max_latency_ms is not None:
                args += ["--max-latency-ms", f"{self.max_latency_ms:g}"]
        if self.alpha != 1.0:
            args += ["--alpha", f"{self.alpha:g}"]
        if self.data_dir is not None:
            args += ["--data-dir", str(self.data_dir)]
        if self.llm is not None:
            args += ["--llm", self.llm]
        if self.base_url is not None:
            args += ["--base-url", self.base_url]
        return shlex.join(args)
