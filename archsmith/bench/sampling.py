"""Sampling helpers every tabular strategy shares: unseen architectures, neighbours, repeats."""

from __future__ import annotations

import logging
import random

from archsmith.bench.base import Arch, Evaluator, TabularSpace

__all__ = ["neighbours", "random_unseen", "spend_rest"]

logger = logging.getLogger(__name__)

#: Random draws before `random_unseen` falls back to listing the unseen part of the space.
_RANDOM_DRAWS = 64


def random_unseen(space: TabularSpace, rng: random.Random, seen: set[Arch]) -> Arch | None:
    """A uniformly random architecture not in ``seen``; None once the whole space is seen.

    Draws first (cheap while most of the space is unseen), then lists the unseen rest, so the
    answer is uniform over the unseen architectures either way.
    """
    n = len(space.choices)
    for _ in range(_RANDOM_DRAWS):
        arch = tuple(rng.randrange(n) for _ in range(space.positions))
        if arch not in seen:
            return arch
    rest = [tuple(a) for a in space.all_archs() if tuple(a) not in seen]
    return rng.choice(rest) if rest else None


def neighbours(arch: Arch, n_choices: int) -> list[Arch]:
    """Every architecture one position away from ``arch``, in a fixed order."""
    return [
        (*arch[:i], c, *arch[i + 1 :])
        for i in range(len(arch))
        for c in range(n_choices)
        if c != arch[i]
    ]


def spend_rest(evaluator: Evaluator, rng: random.Random, who: str) -> None:
    """Spend what is left on repeats once every architecture has been seen (budget > space)."""
    if evaluator.remaining > 0:
        logger.warning(
            "%s: all %d architectures of %s seen; spending the last %d evaluations on repeats",
            who,
            evaluator.space.size(),
            evaluator.space.name,
            evaluator.remaining,
        )
    n = len(evaluator.space.choices)
    while evaluator.remaining > 0:
        evaluator.evaluate(tuple(rng.randrange(n) for _ in range(evaluator.space.positions)))
