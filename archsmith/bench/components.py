"""Where a benchmark grid's spaces, objectives, strategies and LLM come from.

The grid asks a `Components` for each part, so tests can run it on small fakes; `RealComponents`
is the package's own, importing each part only when it is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from archsmith.bench.base import Objective, Strategy, TabularSpace
from archsmith.errors import InputError

__all__ = ["Components", "RealComponents"]


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
        from archsmith.bench.llm_strategy import GENIUS_TEMPERATURE
        from archsmith.llm.providers import check_llm, make_llm

        chat = make_llm(value, base_url=base_url, temperature=GENIUS_TEMPERATURE)
        if chat is None:
            raise InputError(f"--llm {value} names no LLM; the llm strategy needs one")
        check_llm(chat)
        return chat
