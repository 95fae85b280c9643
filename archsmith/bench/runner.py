"""The benchmark grid: every strategy against every objective of every tabular space, over seeds.

One search is cheap (a few table lookups), so a fair comparison runs hundreds of them. The grid is
planned and validated in full before any search starts, so a typo or a missing table fails in a
second, not after a long run. Ranks are computed once per (space, dataset, objective) and shared;
searches run in worker processes that each load the spaces themselves (a file read) instead of
receiving pickled tables. The LLM strategy runs in the main process, one search after another,
because its client cannot be pickled. Results depend only on the configuration, never on the
number of workers: every search is seeded and results are kept in the grid's order.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import shlex
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from archsmith import __version__
from archsmith.bench.base import (
    Arch,
    BudgetExhausted,
    Evaluator,
    Objective,
    Strategy,
    TabularSpace,
)
from archsmith.errors import InputError

__all__ = [
    "BENCHMARKS",
    "FORMAT",
    "OBJECTIVES",
    "Aggregate",
    "BenchConfig",
    "BenchResult",
    "BenchmarkInfo",
    "Components",
    "Progress",
    "RealComponents",
    "SearchResult",
    "Skipped",
    "aggregate",
    "run_bench",
]

log = logging.getLogger(__name__)

FORMAT: Final = 2
"""Version of ``results.json``; raised when a field changes meaning or disappears.

2: a benchmark may be searched on several datasets (``config.datasets`` maps a benchmark to a list,
aggregates and plots are per benchmark, dataset and objective, ``BenchmarkInfo.datasets``); user
spaces (``config.spaces``); ``config.device`` may be null (each space's first device); skipped
entries carry their dataset; aggregates add ``best_accuracy_mean``."""
BENCHMARKS: Final = ("macro", "nb201")
OBJECTIVES: Final = ("accuracy", "m-factor", "latency")
LLM_STRATEGY: Final = "llm"
_CHUNKS_PER_WORKER: Final = 8  # enough for a smooth progress bar and load balance, few round trips

Progress = Callable[[int, int], None]
"""Called with (searches done, searches in the grid): once before the first search, then after
each search or batch of searches; always from the calling thread."""


# -- configuration -----------------------------------------------------------------------------


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


# -- results -----------------------------------------------------------------------------------


class SearchResult(BaseModel):
    """One search: a strategy with one seed on one (benchmark, dataset, objective)."""

    model_config = ConfigDict(extra="forbid")

    strategy: str
    benchmark: str
    dataset: str
    objective: str = Field(description="The objective's key: accuracy, m-factor or latency.")
    objective_label: str = Field(description="The objective's own name, e.g. latency:pi4<=20ms.")
    seed: int
    evaluations: int = Field(description="Lookups made, repeats included (the budget if spent).")
    best_arch: str = Field(description="The best architecture found, in the benchmark's notation.")
    best_rank: int = Field(description="Its rank in the whole space; 1 is the best there is.")
    best_accuracy: float = Field(description="Its test accuracy, a fraction in [0, 1].")
    best_score: float | None = Field(description="Its objective score; None when infeasible.")
    best_m_factor: float | None = Field(description="Its M-factor, whatever the objective.")
    feasible: bool = Field(description="Whether it meets the objective's constraint.")
    best_rank_so_far: list[int] = Field(description="After each evaluation, the best rank yet.")
    trace: list[dict[str, Any]] = Field(
        default_factory=list, description="The strategy's account of each candidate, if any."
    )
    llm_calls: list[dict[str, Any]] = Field(default_factory=list)
    seconds: float = Field(description="Wall time of the search; the only field that varies.")


class Aggregate(BaseModel):
    """A strategy on one (benchmark, objective), over every seed.

    Quartiles use numpy's default (linear interpolation between order statistics).
    """

    model_config = ConfigDict(extra="forbid")

    benchmark: str
    dataset: str
    objective: str
    objective_label: str
    strategy: str
    seeds: int
    budget: int
    space_size: int
    best_rank_median: float
    best_rank_q25: float
    best_rank_q75: float
    best_rank_mean: float = Field(description="The anchors (papers) quote means, so it is kept.")
    best_rank_min: int
    best_rank_max: int
    best_accuracy_median: float
    best_accuracy_mean: float = Field(description="GENIUS and RoBoT report mean accuracies.")
    m_factor_median: float | None
    feasible_fraction: float = Field(description="Share of seeds whose best meets the constraint.")
    curve_median: list[float] = Field(description="Median best rank so far after each evaluation.")
    curve_q25: list[float]
    curve_q75: list[float]


class Skipped(BaseModel):
    """Part of the default grid that did not run, and why."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["benchmark", "objective", "strategy"]
    name: str
    benchmark: str | None = None
    dataset: str | None = None
    reason: str


class BenchmarkInfo(BaseModel):
    """A benchmark as searched: which space and datasets, its size and devices."""

    model_config = ConfigDict(extra="forbid")

    benchmark: str
    space: str
    datasets: list[str]
    size: int
    devices: list[str]
    source: str | None = Field(default=None, description="The space file of a user's space.")


class BenchResult(BaseModel):
    """Everything ``results.json`` holds: the configuration, every search, the aggregates."""

    model_config = ConfigDict(extra="forbid")

    format: int = FORMAT
    archsmith_version: str = __version__
    command: str
    config: BenchConfig
    quartiles: str = "numpy.percentile, linear interpolation (numpy's default)"
    benchmarks: list[BenchmarkInfo]
    strategies: list[str]
    skipped: list[Skipped]
    aggregates: list[Aggregate]
    searches: list[SearchResult]
    seconds: float


# -- what the grid is built from -----------------------------------------------------------------


class Components(Protocol):
    """Where spaces, objectives, strategies and the LLM come from.

    An instance must be picklable (a module-level class), since worker processes receive it.
    Tests pass small fakes; `RealComponents` is the package's own.
    """

    def strategy_names(self) -> tuple[str, ...]:
        """Every strategy that exists, in the order tables list them."""
        ...

    def load_space(self, name: str, data_dir: Path | None) -> TabularSpace:
        """The space; an InputError that says how to get it when its table is absent."""
        ...

    def load_space_file(self, path: Path) -> TabularSpace:
        """A user's space file; an InputError with the line and what to fix when it is bad."""
        ...

    def make_objective(
        self,
        name: str,
        space: TabularSpace,
        dataset: str,
        *,
        device: str | None,
        max_latency_ms: float | None,
        alpha: float,
    ) -> Objective:
        """The objective ``name`` on ``space``/``dataset``."""
        ...

    def make_strategy(self, name: str, *, llm: Any = None) -> Strategy:
        """A fresh strategy (searches never share state)."""
        ...

    def make_llm(self, value: str, base_url: str | None) -> Any:
        """The chat model for ``value``, checked to answer: the LLM strategy's client."""
        ...


class RealComponents:
    """The package's spaces, objectives, strategies and LLM providers (imported when used)."""

    def strategy_names(self) -> tuple[str, ...]:
        from archsmith.bench.strategies import STRATEGIES

        return tuple(STRATEGIES)

    def load_space(self, name: str, data_dir: Path | None) -> TabularSpace:
        from archsmith.bench.spaces import load_space

        return load_space(name, data_dir)

    def load_space_file(self, path: Path) -> TabularSpace:
        from archsmith.bench.space_file import load_space_file

        return load_space_file(path)

    def make_objective(
        self,
        name: str,
        space: TabularSpace,
        dataset: str,
        *,
        device: str | None,
        max_latency_ms: float | None,
        alpha: float,
    ) -> Objective:
        from archsmith.bench.objectives import make_objective

        return make_objective(
            name, space, dataset, device=device, max_latency_ms=max_latency_ms, alpha=alpha
        )

    def make_strategy(self, name: str, *, llm: Any = None) -> Strategy:
        from archsmith.bench.strategies import make_strategy

        return make_strategy(name) if llm is None else make_strategy(name, llm=llm)

    def make_llm(self, value: str, base_url: str | None) -> Any:
        """Build the client at GENIUS's temperature and make one tiny call, so that a bad key
        fails before the grid starts."""
        from archsmith.agents.llm import check_llm, make_llm
        from archsmith.bench.llm_strategy import GENIUS_TEMPERATURE

        chat = make_llm(value, base_url=base_url, temperature=GENIUS_TEMPERATURE)
        if chat is None:
            raise InputError(f"--llm {value} names no LLM; the llm strategy needs one")
        check_llm(chat)
        return chat


# -- planning ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    index: int
    benchmark: str
    dataset: str
    objective: str
    strategy: str
    seed: int


Cell = tuple[str, str, str]
"""(benchmark, dataset, objective key): one table of results."""


@dataclass
class _Plan:
    spaces: dict[str, TabularSpace]
    objectives: dict[Cell, Objective]  # the m-factor too, where the space has sizes
    cells: list[Cell]  # searched, in order
    strategies: list[str]
    skipped: list[Skipped]
    chat: Any
    files: dict[str, Path]  # a user space's name -> its space file


def _unknown(kind: str, names: Sequence[str], known: Sequence[str]) -> None:
    bad = [n for n in names if n not in known]
    if bad:
        raise InputError(
            f"unknown {kind} {', '.join(map(repr, bad))}; choose from {', '.join(known)}"
        )


def _load_spaces(
    config: BenchConfig, parts: Components, skipped: list[Skipped]
) -> tuple[dict[str, TabularSpace], dict[str, Path]]:
    """The built-in benchmarks asked for (all, without --space or -b) and the user's spaces,
    with the file of each user space by its name."""
    spaces: dict[str, TabularSpace] = {}
    files: dict[str, Path] = {}
    named = config.benchmarks or ([] if config.spaces else list(BENCHMARKS))
    for bench in dict.fromkeys(named):
        try:
            spaces[bench] = _load(parts, bench, config)
        except InputError as e:
            if config.benchmarks is not None:
                raise
            log.info("benchmark %s skipped: %s", bench, e)
            skipped.append(Skipped(kind="benchmark", name=bench, reason=str(e)))
    for path in config.spaces:
        space = parts.load_space_file(path)
        if space.name in spaces:
            raise InputError(f"space {path} is named {space.name!r}, as another benchmark is")
        _check_datasets(space.name, space, config)
        spaces[space.name] = space
        files[space.name] = path
    if not spaces:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in skipped if s.kind == "benchmark")
        raise InputError(f"no benchmark can run here ({reasons})")
    unknown = [b for b in config.datasets if b not in spaces and b not in BENCHMARKS]
    if unknown:
        raise InputError(
            f"--dataset names benchmark(s) {', '.join(map(repr, unknown))} that do not run;"
            f" running: {', '.join(spaces)}"
        )
    return spaces, files


def _plan(config: BenchConfig, parts: Components) -> _Plan:
    """Check the whole grid and build what it needs; InputError before any search otherwise."""
    known_strategies = parts.strategy_names()
    _unknown("benchmark", config.benchmarks or (), BENCHMARKS)
    _unknown("objective", config.objectives or (), OBJECTIVES)
    _unknown("strategy", config.strategies or (), known_strategies)
    skipped: list[Skipped] = []

    strategies = list(dict.fromkeys(config.strategies or known_strategies))
    llm = config.llm if config.llm is not None and config.llm.strip() != "offline" else None
    if LLM_STRATEGY in strategies and llm is None:
        why = (
            "no LLM configured: pass --llm openai:MODEL or gemini:MODEL, or set"
            " OPENAI_API_KEY or GOOGLE_API_KEY"
        )
        if config.strategies is not None:
            raise InputError(f"strategy {LLM_STRATEGY!r} needs an LLM; {why}")
        strategies.remove(LLM_STRATEGY)
        skipped.append(Skipped(kind="strategy", name=LLM_STRATEGY, reason=why))

    spaces, files = _load_spaces(config, parts, skipped)
    objectives: dict[Cell, Objective] = {}
    cells: list[Cell] = []
    wanted = config.objectives or list(OBJECTIVES)
    for bench, space in spaces.items():
        for dataset in config.datasets_for(bench, space):
            for key in dict.fromkeys([*wanted, "m-factor"]):
                searched = key in wanted
                reason = _not_applicable(key, space, dataset, config)
                if reason is None:
                    objectives[(bench, dataset, key)] = _objective(
                        parts, config, key, space, dataset
                    )
                    if searched:
                        cells.append((bench, dataset, key))
                elif searched:
                    skipped.append(
                        Skipped(
                            kind="objective",
                            name=key,
                            benchmark=bench,
                            dataset=dataset,
                            reason=reason,
                        )
                    )
    if not cells:
        raise InputError(
            "nothing to run: "
            + "; ".join(f"{s.name} on {s.benchmark} {s.dataset}: {s.reason}" for s in skipped)
        )
    # Last, as it is the one check that costs a request.
    chat = parts.make_llm(llm, config.base_url) if llm and LLM_STRATEGY in strategies else None
    return _Plan(spaces, objectives, cells, strategies, skipped, chat, files)


def _not_applicable(key: str, space: TabularSpace, dataset: str, config: BenchConfig) -> str | None:
    """Why objective ``key`` cannot run on this space and dataset, or None when it can.

    An explicit device the space lacks is an error, not a reason: the user asked for it.
    """
    archs = space.all_archs()
    first = space.record(archs[0], dataset)
    if key == "m-factor" and first.params is None:
        return f"not applicable: {space.name} gives no parameter counts"
    if key != "latency":
        return None
    if not space.devices:
        return f"not applicable: {space.name} has no measured latency"
    if config.device is not None and config.device not in space.devices:
        raise InputError(
            f"unknown device {config.device!r} for {space.name}; choose from"
            f" {', '.join(space.devices)}"
        )
    device = config.device or space.devices[0]
    if device not in first.latency_ms:
        return f"not applicable: {space.name} has no {device} latency on {dataset}"
    return None


def _check_datasets(bench: str, space: TabularSpace, config: BenchConfig) -> None:
    missing = [d for d in config.datasets.get(bench, []) if d not in space.datasets]
    if missing:
        raise InputError(
            f"{space.name} has no dataset {', '.join(map(repr, missing))}; it has"
            f" {', '.join(space.datasets)}"
        )


def _load(parts: Components, bench: str, config: BenchConfig) -> TabularSpace:
    space = parts.load_space(bench, config.data_dir)
    _check_datasets(bench, space, config)
    return space


def _objective(
    parts: Components, config: BenchConfig, key: str, space: TabularSpace, dataset: str
) -> Objective:
    latency = key == "latency"
    try:
        return parts.make_objective(
            key,
            space,
            dataset,
            device=(config.device or space.devices[0]) if latency else None,
            max_latency_ms=config.max_latency_ms if latency else None,
            alpha=config.alpha if key == "m-factor" else 1.0,
        )
    except InputError:
        raise
    except ValueError as e:  # a value the user chose, refused by the objective
        raise InputError(f"objective {key} on {space.name}: {e}") from e


# -- one search ----------------------------------------------------------------------------------


class _Context:
    """What searches share within one process: spaces, objectives and rank tables, each built once.

    The main process hands over what it built while planning; a worker builds them on first use
    from the configuration and the space files' paths by name, except the ranks, which it
    receives (computed once, in the main one).
    """

    def __init__(
        self,
        config: BenchConfig,
        parts: Components,
        rank_lists: dict[Cell, list[int]],
        files: dict[str, Path],
        plan: _Plan | None = None,
    ) -> None:
        self.config = config
        self.parts = parts
        self.rank_lists = rank_lists
        self.files = files
        self.spaces: dict[str, TabularSpace] = dict(plan.spaces) if plan else {}
        self.objectives: dict[Cell, Objective] = dict(plan.objectives) if plan else {}
        self.ranks: dict[Cell, dict[Arch, int]] = {}

    def space(self, bench: str) -> TabularSpace:
        if bench not in self.spaces:
            path = self.files.get(bench)
            self.spaces[bench] = (
                self.parts.load_space_file(path)
                if path is not None
                else self.parts.load_space(bench, self.config.data_dir)
            )
        return self.spaces[bench]

    def objective(self, bench: str, dataset: str, key: str) -> Objective | None:
        """The objective, or None for an m-factor the space cannot have (no sizes)."""
        cell = (bench, dataset, key)
        if cell not in self.objectives:
            space = self.space(bench)
            if _not_applicable(key, space, dataset, self.config) is not None:
                return None
            self.objectives[cell] = _objective(self.parts, self.config, key, space, dataset)
        return self.objectives[cell]

    def rank_table(self, cell: Cell) -> dict[Arch, int]:
        if cell not in self.ranks:
            archs = self.space(cell[0]).all_archs()
            self.ranks[cell] = dict(zip(archs, self.rank_lists[cell], strict=True))
        return self.ranks[cell]

    def run(self, task: _Task, chat: Any = None) -> SearchResult:
        """One search with its own fresh strategy; the strategy's bugs propagate."""
        space = self.space(task.benchmark)
        cell = (task.benchmark, task.dataset, task.objective)
        objective = self.objective(*cell)
        if objective is None:
            raise RuntimeError(f"objective {task.objective} was planned but cannot be built")
        evaluator = Evaluator(
            space, task.dataset, objective, self.config.budget, self.rank_table(cell)
        )
        strategy = self.parts.make_strategy(task.strategy, llm=chat)
        start = time.perf_counter()
        try:
            strategy.search(evaluator, task.seed)
        except BudgetExhausted:
            log.debug("%s asked past its budget (seed %d); stopped there", task.strategy, task.seed)
        seconds = time.perf_counter() - start
        best = evaluator.best()
        if best is None:
            raise RuntimeError(
                f"strategy {task.strategy!r} evaluated nothing on {space.name} (seed {task.seed})"
            )
        if evaluator.remaining:
            log.warning(
                "%s left %d of %d evaluations unspent on %s (seed %d)",
                task.strategy, evaluator.remaining, evaluator.budget, space.name, task.seed,
            )  # fmt: skip
        sized = self.objective(task.benchmark, task.dataset, "m-factor")
        m_factor = sized.score(best.record) if sized is not None else math.nan
        calls = getattr(strategy, "llm_calls", None) or []
        return SearchResult(
            strategy=task.strategy,
            benchmark=task.benchmark,
            dataset=task.dataset,
            objective=task.objective,
            objective_label=objective.name,
            seed=task.seed,
            evaluations=len(evaluator.history),
            best_arch=space.encode(best.arch),
            best_rank=best.rank,
            best_accuracy=best.record.accuracy,
            best_score=best.score if math.isfinite(best.score) else None,
            best_m_factor=m_factor if math.isfinite(m_factor) else None,
            feasible=best.feasible,
            best_rank_so_far=evaluator.best_rank_so_far(),
            trace=list(getattr(strategy, "trace", None) or []),
            llm_calls=[c.model_dump(mode="json") if isinstance(c, BaseModel) else c for c in calls],
            seconds=seconds,
        )


_WORKER: _Context | None = None


def _init_worker(
    config: BenchConfig,
    parts: Components,
    rank_lists: dict[Cell, list[int]],
    files: dict[str, Path],
) -> None:
    global _WORKER  # one context per worker process
    _WORKER = _Context(config, parts, rank_lists, files)


def _run_chunk(tasks: list[_Task]) -> list[tuple[int, SearchResult]]:
    if _WORKER is None:
        raise RuntimeError("worker used before _init_worker")
    return [(t.index, _WORKER.run(t)) for t in tasks]


# -- the grid ------------------------------------------------------------------------------------


def run_bench(
    config: BenchConfig,
    progress: Progress | None = None,
    *,
    components: Components | None = None,
) -> BenchResult:
    """Run the grid benchmark x objective x strategy x seed and aggregate it.

    Everything the grid needs is checked first: an InputError (unknown name, missing table,
    unusable device, an LLM asked for but not configured) comes before any search. With more than
    one job, workers are started with ``spawn``, so a script calling this needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    started = time.perf_counter()
    parts = components if components is not None else RealComponents()
    plan = _plan(config, parts)
    rank_lists: dict[Cell, list[int]] = {}
    for cell in plan.cells:
        space = plan.spaces[cell[0]]
        table = Evaluator.rank_table(space, cell[1], plan.objectives[cell])
        rank_lists[cell] = [table[a] for a in space.all_archs()]
    files = plan.files
    tasks = [
        _Task(i, bench, dataset, key, strategy, seed)
        for i, (bench, dataset, key, strategy, seed) in enumerate(
            (b, d, k, s, seed)
            for b, d, k in plan.cells
            for s in plan.strategies
            for seed in config.seed_list
        )
    ]
    total = len(tasks)
    log.info("%d searches: %d cells x %d strategies", total, len(plan.cells), len(plan.strategies))
    report = progress or (lambda done, total: None)
    report(0, total)
    context = _Context(config, parts, rank_lists, files, plan)
    results = _execute(config, parts, context, plan.chat, rank_lists, files, tasks, report)
    searches = [results[t.index] for t in tasks]
    return BenchResult(
        command=config.command(),
        config=config,
        benchmarks=[
            BenchmarkInfo(
                benchmark=b,
                space=s.name,
                datasets=list(dict.fromkeys(d for bench, d, _ in plan.cells if bench == b)),
                size=s.size(),
                devices=list(s.devices),
                source=str(files[b]) if b in files else None,
            )
            for b, s in plan.spaces.items()
        ],
        strategies=plan.strategies,
        skipped=plan.skipped,
        aggregates=aggregate(
            searches, {b: s.size() for b, s in plan.spaces.items()}, config.budget
        ),
        searches=searches,
        seconds=time.perf_counter() - started,
    )


def _execute(
    config: BenchConfig,
    parts: Components,
    context: _Context,
    chat: Any,
    rank_lists: dict[Cell, list[int]],
    files: dict[str, Path],
    tasks: list[_Task],
    report: Progress,
) -> dict[int, SearchResult]:
    """Pooled tasks go to workers while LLM tasks run here; progress is reported from here only."""
    total = len(tasks)
    local = [t for t in tasks if t.strategy == LLM_STRATEGY]
    pooled = [t for t in tasks if t.strategy != LLM_STRATEGY]
    workers = min(config.jobs, len(pooled))
    if workers <= 1:
        local, pooled = pooled + local, []
    results: dict[int, SearchResult] = {}
    pending: list[Future[list[tuple[int, SearchResult]]]] = []

    def collect(block: bool) -> None:
        futures = as_completed(list(pending)) if block else [f for f in pending if f.done()]
        for future in futures:
            pending.remove(future)
            results.update(future.result())
            report(len(results), total)

    pool: ProcessPoolExecutor | None = None
    try:
        if pooled:
            # Strided, not contiguous: every chunk mixes strategies, so a slow one (TPE) does not
            # end up in a few chunks that finish last.
            n_chunks = min(len(pooled), workers * _CHUNKS_PER_WORKER)
            # spawn, not fork: the main process may hold threads (a progress bar, an HTTP client).
            pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(config, parts, rank_lists, files),
            )
            pending = [pool.submit(_run_chunk, pooled[i::n_chunks]) for i in range(n_chunks)]
            log.debug("%d searches in %d chunks on %d workers", len(pooled), len(pending), workers)
        for task in local:
            results[task.index] = context.run(task, chat if task.strategy == LLM_STRATEGY else None)
            report(len(results), total)
            collect(block=False)
        collect(block=True)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return results


# -- aggregation ---------------------------------------------------------------------------------


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    q25, q50, q75 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return float(q25), float(q50), float(q75)


def aggregate(
    searches: Sequence[SearchResult], sizes: dict[str, int], budget: int
) -> list[Aggregate]:
    """Per (benchmark, dataset, objective, strategy), in the order the searches come: ranks,
    accuracy, M-factor and feasibility over seeds, and the best-so-far curve's median and quartiles.

    A search that stopped early keeps its last best rank for the evaluations it did not make, as
    a best-so-far curve would.
    """
    groups: dict[tuple[str, str, str, str], list[SearchResult]] = {}
    for s in searches:
        groups.setdefault((s.benchmark, s.dataset, s.objective, s.strategy), []).append(s)
    out: list[Aggregate] = []
    for (bench, _, key, strategy), group in groups.items():
        ranks = [float(s.best_rank) for s in group]
        q25, median, q75 = _quartiles(ranks)
        curves = np.asarray([_pad(s.best_rank_so_far, budget) for s in group], dtype=float).reshape(
            len(group), budget
        )
        c25, c50, c75 = np.percentile(curves, [25, 50, 75], axis=0)
        m_factors = [s.best_m_factor for s in group if s.best_m_factor is not None]
        out.append(
            Aggregate(
                benchmark=bench,
                dataset=group[0].dataset,
                objective=key,
                objective_label=group[0].objective_label,
                strategy=strategy,
                seeds=len(group),
                budget=budget,
                space_size=sizes[bench],
                best_rank_median=median,
                best_rank_q25=q25,
                best_rank_q75=q75,
                best_rank_mean=float(np.mean(ranks)),
                best_rank_min=min(s.best_rank for s in group),
                best_rank_max=max(s.best_rank for s in group),
                best_accuracy_median=float(np.median([s.best_accuracy for s in group])),
                best_accuracy_mean=float(np.mean([s.best_accuracy for s in group])),
                m_factor_median=float(np.median(m_factors)) if m_factors else None,
                feasible_fraction=sum(s.feasible for s in group) / len(group),
                curve_median=[float(v) for v in c50],
                curve_q25=[float(v) for v in c25],
                curve_q75=[float(v) for v in c75],
            )
        )
    return out


def _pad(curve: Sequence[int], budget: int) -> list[int]:
    if not curve:
        raise ValueError("a search without evaluations has no best-so-far curve")
    return [*curve[:budget], *[curve[-1]] * (budget - len(curve))]
