"""What moves the rulebook strategy's numbers: each idea of the search switched off in turn.

Run from the repository root (about 15 minutes on 2 CPU cores at 200 seeds)::

    .venv/bin/python docs/bench/ablations.py --seeds 200 --data-dir ../shared/data

It prints a markdown table, one row per variant and one column per cell: the median best rank
after 10 lookups (mean in brackets). The knobs were chosen on NAS-Bench-201 CIFAR-10 (its three
objectives); the other columns are the held-out benchmarks.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from archsmith.bench.base import Evaluator, Objective, TabularSpace
from archsmith.bench.objectives import make_objective
from archsmith.bench.spaces import load_space
from archsmith.bench.strategies import RulebookStrategy
from archsmith.search.policy import Knobs

logger = logging.getLogger("ablations")

CELLS: tuple[tuple[str, str, str], ...] = (
    ("nb201", "cifar10", "accuracy"),
    ("nb201", "cifar10", "m-factor"),
    ("nb201", "cifar10", "latency"),
    ("macro", "cifar10", "accuracy"),
    ("macro", "cifar10", "m-factor"),
    ("nb201", "cifar100", "accuracy"),
    ("nb201", "cifar100", "m-factor"),
    ("nb201", "imagenet16-120", "accuracy"),
    ("nb201", "imagenet16-120", "m-factor"),
)

#: Variant name -> the strategy it builds; the first is the default every other one changes once.
VARIANTS: dict[str, Callable[[], RulebookStrategy]] = {
    "default": RulebookStrategy,
    "no rule bonus (bonus 0)": lambda: RulebookStrategy(knobs=Knobs(bonus=0.0)),
    "no rule-weighted sample (sample 1)": lambda: RulebookStrategy(knobs=Knobs(sample=1.0)),
    "no optimism (beta 0)": lambda: RulebookStrategy(knobs=Knobs(beta=0.0)),
    "no pruning by the best possible score": lambda: RulebookStrategy(knobs=Knobs(prune=False)),
    "two positions per move (radius 2)": lambda: RulebookStrategy(radius=2),
    "start in the middle of the capacity order": lambda: RulebookStrategy(start="middle"),
}


def _cell(
    bench: str, dataset: str, key: str, data_dir: Path | None
) -> tuple[TabularSpace, Objective, dict[tuple[int, ...], int]]:
    space = load_space(bench, data_dir)
    objective = make_objective(
        key, space, dataset, device=space.devices[0] if key == "latency" else None
    )
    return space, objective, Evaluator.rank_table(space, dataset, objective)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--budget", type=int, default=10)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    cells = {c: _cell(*c, args.data_dir) for c in CELLS}
    header = ["variant"] + [f"{'Macro' if b == 'macro' else 'NB201'} {d} {k}" for b, d, k in CELLS]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" + " ---: |" * len(CELLS)]
    for name, make in VARIANTS.items():
        row = [name]
        for (_, dataset, _), (space, objective, ranks) in cells.items():
            best: list[int] = []
            for seed in range(args.seeds):
                evaluator = Evaluator(space, dataset, objective, args.budget, ranks)
                make().search(evaluator, seed)
                best.append(min(e.rank for e in evaluator.history))
            row.append(f"{statistics.median(best):g} ({statistics.fmean(best):.0f})")
        logger.info("%s done", name)
        lines.append("| " + " | ".join(row) + " |")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
