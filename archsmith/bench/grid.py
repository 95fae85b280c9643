"""The benchmark grid, planned and checked in full before any search starts.

A typo, a missing table or an unusable device fails in a second, not after a long run: every
name is checked, every space loaded and every objective built here; the LLM is checked last, as
the one check that costs a request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archsmith.bench.base import Objective, TabularSpace
from archsmith.bench.components import Components
from archsmith.bench.config import BENCHMARKS, LLM_STRATEGY, OBJECTIVES, BenchConfig
from archsmith.bench.results import Skipped
from archsmith.errors import InputError

__all__ = ["Cell", "GridPlan", "Task", "build_objective", "not_applicable", "plan_grid"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One search: a strategy with one seed on one cell; ``index`` is its place in the grid."""

    index: int
    benchmark: str
    dataset: str
    objective: str
    strategy: str
    seed: int


Cell = tuple[str, str, str]
"""(benchmark, dataset, objective key): one table of results."""


@dataclass
class GridPlan:
    """Everything the grid needs, built and checked before any search starts."""

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


def plan_grid(config: BenchConfig, parts: Components) -> GridPlan:
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
                reason = not_applicable(key, space, dataset, config)
                if reason is None:
                    objectives[(bench, dataset, key)] = build_objective(
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
    return GridPlan(spaces, objectives, cells, strategies, skipped, chat, files)


def not_applicable(key: str, space: TabularSpace, dataset: str, config: BenchConfig) -> str | None:
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


def build_objective(
    parts: Components, config: BenchConfig, key: str, space: TabularSpace, dataset: str
) -> Objective:
    """The objective ``key`` on ``space``/``dataset`` with the options the configuration gives
    it; a value the objective refuses is the user's, so it is an InputError."""
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
