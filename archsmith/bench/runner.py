"""The benchmark grid: every strategy against every objective of every tabular space, over seeds.

One search is cheap (a few table lookups), so a fair comparison runs hundreds of them. The grid is
planned and validated in full before any search starts, so a typo or a missing table fails in a
second, not after a long run. Ranks are computed once per (space, dataset, objective) and shared;
searches run in worker processes that each load the spaces themselves (a file read) instead of
receiving pickled tables. The LLM strategy runs in the main process, one search after another,
because its client cannot be pickled. Results depend only on the configuration, never on the
number of workers: every search is seeded and results are kept in the grid's order.

The grid's configuration is `archsmith.bench.config`, its planning `archsmith.bench.grid`, its
parts `archsmith.bench.components` and its results `archsmith.bench.results`; this module runs it.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel

from archsmith.bench.base import (
    Arch,
    BudgetExhausted,
    Evaluator,
    Objective,
    TabularSpace,
)
from archsmith.bench.components import Components, RealComponents
from archsmith.bench.config import LLM_STRATEGY, BenchConfig
from archsmith.bench.grid import Cell, GridPlan, Task, build_objective, not_applicable, plan_grid
from archsmith.bench.results import BenchmarkInfo, BenchResult, SearchResult, aggregate

__all__ = ["Progress", "run_bench"]

log = logging.getLogger(__name__)

_CHUNKS_PER_WORKER: Final = 8  # enough for a smooth progress bar and load balance, few round trips

Progress = Callable[[int, int], None]
"""Called with (searches done, searches in the grid): once before the first search, then after
each search or batch of searches; always from the calling thread."""


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
        plan: GridPlan | None = None,
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
            if not_applicable(key, space, dataset, self.config) is not None:
                return None
            self.objectives[cell] = build_objective(self.parts, self.config, key, space, dataset)
        return self.objectives[cell]

    def rank_table(self, cell: Cell) -> dict[Arch, int]:
        if cell not in self.ranks:
            archs = self.space(cell[0]).all_archs()
            self.ranks[cell] = dict(zip(archs, self.rank_lists[cell], strict=True))
        return self.ranks[cell]

    def run(self, task: Task, chat: Any = None) -> SearchResult:
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


def _run_chunk(tasks: list[Task]) -> list[tuple[int, SearchResult]]:
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
    plan = plan_grid(config, parts)
    rank_lists: dict[Cell, list[int]] = {}
    for cell in plan.cells:
        space = plan.spaces[cell[0]]
        table = Evaluator.rank_table(space, cell[1], plan.objectives[cell])
        rank_lists[cell] = [table[a] for a in space.all_archs()]
    files = plan.files
    tasks = [
        Task(i, bench, dataset, key, strategy, seed)
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
    tasks: list[Task],
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
