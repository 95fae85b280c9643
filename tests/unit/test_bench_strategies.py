"""Search strategies on tiny synthetic tables: budgets, seeds, the rulebook's edits, GENIUS."""

from __future__ import annotations

import importlib.util
import itertools
import math
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage

from archsmith import judge
from archsmith.bench import guided
from archsmith.bench.base import Arch, BudgetExhausted, Evaluator, Record, Strategy
from archsmith.bench.guided import exchanges, has_hard_limit, space_moves
from archsmith.bench.llm_strategy import GeniusStrategy, parse_answer
from archsmith.bench.objectives import make_objective
from archsmith.bench.spaces import NasBench201
from archsmith.bench.strategies import (
    STRATEGIES,
    TPE,
    RandomSearch,
    RegularizedEvolution,
    Reinforce,
    RulebookStrategy,
    make_strategy,
)
from archsmith.errors import InputError
from archsmith.search.moves import Role, capacity_moves
from archsmith.search.policy import Knobs
from archsmith.spec import TaskSpec
from archsmith.tools.rulebook_advice import advise
from archsmith.tools.schemas import EvaluationMetrics

HAS_OPTUNA = importlib.util.find_spec("optuna") is not None
needs_optuna = pytest.mark.skipif(not HAS_OPTUNA, reason="optuna is not installed")

# -- a tiny table ---------------------------------------------------------------------------------

MACRO_CHOICES = ("Identity", "MB3_K3", "MB6_K5")
NB201_CHOICES = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: What each choice adds to the accuracy at each position: smooth (additive), and the optimum
#: (2, 2, 1, 2) is not simply "the biggest block everywhere".
GAINS = ((0.0, 0.05, 0.09), (0.0, 0.06, 0.10), (0.0, 0.07, 0.04), (0.0, 0.03, 0.08))
OPTIMUM: Arch = (2, 2, 1, 2)
SIZES = (0, 10_000, 40_000, 25_000, 5_000)


@dataclass
class ToySpace:
    """A TabularSpace of ``positions`` x ``choices`` with an additive accuracy and sizes."""

    name: str = "toy-macro"
    choices: tuple[str, ...] = MACRO_CHOICES
    positions: int = 4
    datasets: tuple[str, ...] = ("cifar10",)
    devices: tuple[str, ...] = ("cpu",)
    gains: Sequence[Sequence[float]] = GAINS
    capacity: tuple[int, ...] | None = None
    roles: dict[int, Role] = field(default_factory=lambda: {0: "identity"})

    def size(self) -> int:
        return int(len(self.choices) ** self.positions)

    def all_archs(self) -> Sequence[Arch]:
        return list(itertools.product(range(len(self.choices)), repeat=self.positions))

    def encode(self, arch: Arch) -> str:
        return "".join(str(c) for c in arch)

    def decode(self, text: str) -> Arch:
        text = text.strip()
        if len(text) != self.positions or not all(
            ch.isdigit() and int(ch) < len(self.choices) for ch in text
        ):
            raise ValueError(
                f"{text!r} is not {self.positions} digits from 0 to {len(self.choices) - 1}"
            )
        return tuple(int(ch) for ch in text)

    def record(self, arch: Arch, dataset: str) -> Record:
        accuracy = 0.5 + sum(self.gains[i][c] for i, c in enumerate(arch))
        params = 1_000 + sum(SIZES[c] for c in arch)
        return Record(accuracy=accuracy, params=params, latency_ms={"cpu": params / 10_000})


def nb201_space() -> ToySpace:
    """Three edges of NAS-Bench-201's five operations, 3x3 convs the best everywhere."""
    gains = [(0.0, 0.02, 0.05, 0.08, 0.01)] * 3
    return ToySpace(
        name="toy-201",
        choices=NB201_CHOICES,
        positions=3,
        gains=gains,
        capacity=(0, 1, 4, 2, 3),
        roles={0: "none", 1: "skip"},
    )


@dataclass
class ToyObjective:
    """Accuracy, optionally under a latency limit, with a spec like the real objectives'."""

    space: ToySpace
    max_latency_ms: float | None = None
    val_priority: float = 1.0
    threshold: float | None = None
    name: str = "accuracy"
    _spec: TaskSpec = field(init=False)

    def __post_init__(self) -> None:
        feasible = [
            r
            for r in (self.space.record(a, "cifar10") for a in self.space.all_archs())
            if self.feasible(r)
        ]
        target = self.threshold if self.threshold is not None else max(r.accuracy for r in feasible)
        if self.max_latency_ms is not None:
            self.name = f"latency:cpu<={self.max_latency_ms}ms"
        self._spec = TaskSpec(
            dataset="cifar10",
            input_shape=(3, 32, 32),
            num_classes=10,
            val_accuracy_threshold=target,
            val_accuracy_priority=self.val_priority,
            train_accuracy_threshold=target,
            train_accuracy_priority=0.0,
            underfit_threshold=0.0,
            max_latency_ms=self.max_latency_ms,
        )

    @property
    def limits(self) -> judge.HardLimits:
        return judge.HardLimits(max_latency_ms=self.max_latency_ms)

    def score(self, record: Record) -> float:
        return record.accuracy if self.feasible(record) else -math.inf

    def feasible(self, record: Record) -> bool:
        return self.max_latency_ms is None or record.latency_ms["cpu"] <= self.max_latency_ms

    def spec(self) -> TaskSpec:
        return self._spec

    def metrics(self, record: Record) -> EvaluationMetrics:
        latency = record.latency_ms["cpu"]
        return EvaluationMetrics(
            train_accuracy=record.accuracy,
            val_accuracy=record.accuracy,
            train_energy_kwh_pue=0.0,
            val_energy_kwh_pue=0.0,
            fps=1000.0 / latency,
            params=record.params or 0,
            latency_ms=latency if self.max_latency_ms is not None else None,
        )


def evaluator(
    budget: int, space: ToySpace | None = None, objective: ToyObjective | None = None
) -> Evaluator:
    space = space or ToySpace()
    return Evaluator(space, "cifar10", objective or ToyObjective(space), budget)


# -- a scripted chat model ------------------------------------------------------------------------


class RecordingFake(GenericFakeChatModel):
    """GenericFakeChatModel that also keeps the messages it was sent."""

    seen: list[list[BaseMessage]] = []  # noqa: RUF012 - pydantic field, copied per instance

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> AIMessage:
        self.seen.append(list(input))
        out = super().invoke(input, config, **kwargs)
        assert isinstance(out, AIMessage)
        return out


def fake(*replies: str | AIMessage) -> RecordingFake:
    messages: Iterator[str | AIMessage] = iter(replies)
    return RecordingFake(messages=messages, seen=[])


def genius(*replies: str | AIMessage) -> tuple[GeniusStrategy, RecordingFake]:
    llm = fake(*replies)
    return GeniusStrategy(llm, model_name="fake"), llm


def scripted_llm_strategy(budget: int) -> GeniusStrategy:
    replies = [f"Deeper is better.\nARCH: {a}" for a in ("1111", "2111", "2211", "2212", "2222")]
    replies += [f"ARCH: {ToySpace().encode(a)}" for a in ToySpace().all_archs()]
    return genius(*replies[: budget + 5])[0]


STRATEGY_MAKERS: dict[str, Callable[[], Strategy]] = {
    "random": RandomSearch,
    "evolution": RegularizedEvolution,
    "rulebook": RulebookStrategy,
    "rulebook-radius-2": lambda: RulebookStrategy(radius=2),
    "tpe": TPE,
    "rl": Reinforce,
}
#: Strategies that learn too slowly to beat random search on 81 architectures in 24 lookups.
SLOW_LEARNERS = frozenset({"rl"})


def maker_params(skip: frozenset[str] = frozenset()) -> list[Any]:
    return [
        pytest.param(name, marks=needs_optuna) if name == "tpe" else name
        for name in STRATEGY_MAKERS
        if name not in skip
    ]


def run(make: Callable[[], Strategy], budget: int, seed: int, **kw: Any) -> Evaluator:
    ev = evaluator(budget, **kw)
    make().search(ev, seed)
    return ev


# -- every strategy -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", maker_params())
@pytest.mark.parametrize("budget", [1, 7, 20])
def test_every_strategy_spends_exactly_its_budget(name: str, budget: int) -> None:
    ev = run(STRATEGY_MAKERS[name], budget, seed=3)
    assert len(ev.history) == budget
    assert ev.remaining == 0
    assert [e.number for e in ev.history] == list(range(1, budget + 1))


@pytest.mark.parametrize("name", maker_params())
def test_a_budget_larger_than_the_space_sees_everything_then_repeats(name: str) -> None:
    ev = run(STRATEGY_MAKERS[name], 90, seed=1)
    archs = [e.arch for e in ev.history]
    assert len(archs) == 90
    assert len(set(archs)) == ToySpace().size() == 81
    assert len(set(archs[:81])) == 81  # no repeat while something was unseen


@pytest.mark.parametrize("name", maker_params())
def test_strategies_are_deterministic_per_seed_and_differ_across_seeds(name: str) -> None:
    def archs(seed: int) -> list[Arch]:
        return [e.arch for e in run(STRATEGY_MAKERS[name], 12, seed).history]

    assert archs(5) == archs(5)
    assert len({tuple(archs(seed)) for seed in range(6)}) > 1


@pytest.mark.parametrize("name", maker_params())
def test_no_strategy_repeats_an_architecture_within_a_small_budget(name: str) -> None:
    for seed in range(5):
        archs = [e.arch for e in run(STRATEGY_MAKERS[name], 25, seed).history]
        assert len(set(archs)) == len(archs)


def test_a_strategy_never_evaluates_past_the_budget() -> None:
    ev = evaluator(3)
    RulebookStrategy().search(ev, 0)
    with pytest.raises(BudgetExhausted):
        ev.evaluate((0, 0, 0, 0))
    # A second search on a spent evaluator evaluates nothing.
    for make in (RandomSearch, RegularizedEvolution, RulebookStrategy):
        make().search(ev, 1)
    assert len(ev.history) == 3


def optimum_hits(make: Callable[[], Strategy], budget: int, seeds: int = 30) -> int:
    return sum(
        OPTIMUM in {e.arch for e in run(make, budget, seed).history} for seed in range(seeds)
    )


def binomial_quantile(n: int, p: float, level: float) -> int:
    """The smallest k with P(Binomial(n, p) <= k) >= level."""
    total = 0.0
    for k in range(n + 1):
        total += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if total >= level:
            return k
    return n


SEEDS = 30
BUDGET = 24


@pytest.mark.parametrize("name", maker_params(frozenset({"random", *SLOW_LEARNERS})))
def test_guided_strategies_find_the_optimum_more_often_than_random(name: str) -> None:
    """Random search finds the optimum in a run with probability budget/size = 24/81, so its hits
    over 30 seeds are Binomial(30, 24/81); a strategy no better than random would beat that
    distribution's 99% quantile (15 hits) with probability under 1%. At smaller budgets TPE's
    lead on this 81-architecture table is too small to show at that level."""
    bound = binomial_quantile(SEEDS, BUDGET / ToySpace().size(), 0.99)
    assert optimum_hits(RandomSearch, BUDGET, SEEDS) <= bound  # the bound fits random search
    hits = optimum_hits(STRATEGY_MAKERS[name], BUDGET, SEEDS)
    assert hits > bound, (name, hits, bound)


def test_evolution_defaults_scale_with_the_budget() -> None:
    ev = evaluator(10)
    RegularizedEvolution().search(ev, 0)
    # P = 5 random architectures first, then mutants one position from an earlier one.
    later = [e.arch for e in ev.history[5:]]
    earlier = [e.arch for e in ev.history]
    for child in later:
        assert any(sum(a != b for a, b in zip(child, p, strict=True)) == 1 for p in earlier)


def test_evolution_rejects_a_bad_population() -> None:
    with pytest.raises(InputError, match="population"):
        RegularizedEvolution(population=0)


# -- the rulebook strategy ------------------------------------------------------------------------


def check_trace_follows_the_capacity_order(ev: Evaluator, strategy: RulebookStrategy) -> int:
    """Every rulebook step changed the positions its moves name, each by the instruction the
    capacity order assigns, and says which rules (on the parent's metrics) raised it."""
    space = ev.space
    moves = space_moves(space)
    spec = ev.objective.spec()
    assert len(strategy.trace) == len(ev.history)
    steps = 0
    for entry, evaluation in zip(strategy.trace, ev.history, strict=True):
        assert entry["number"] == evaluation.number
        assert entry["arch"] == space.encode(evaluation.arch)
        if entry["source"] not in ("rulebook", "explore"):
            continue
        steps += 1
        parent, child = space.decode(entry["from_arch"]), evaluation.arch
        changed = [i for i in range(space.positions) if parent[i] != child[i]]
        assert changed == sorted(m["position"] for m in entry["moves"])
        parent_eval = next(e for e in ev.history if e.arch == parent)
        advice = advise(parent_eval.metrics, spec)
        advised = {i.code: i for i in advice.instructions}
        for move in entry["moves"]:
            i = move["position"]
            assert move["instruction"] == moves.instruction(parent[i], child[i])
            assert move["edit"] == f"{space.choices[parent[i]]} -> {space.choices[child[i]]}"
            if move["instruction"] in advised:
                assert move["weight"] == advised[move["instruction"]].weight
                assert set(move["rules"]) == set(advised[move["instruction"]].raised_by)
            else:
                assert move["weight"] == 0.0
                assert move["why"]
        all_advised = all(m["instruction"] in advised for m in entry["moves"])
        assert entry["source"] == ("rulebook" if all_advised else "explore")
        assert entry["instruction"] == "+".join(m["instruction"] for m in entry["moves"])
    return steps


def test_rulebook_starts_large_for_accuracy_and_small_under_a_limit() -> None:
    space = ToySpace()
    ev = evaluator(3)
    RulebookStrategy().search(ev, 0)
    assert ev.history[0].arch == (2, 2, 2, 2)  # the top of the capacity order
    limited = Evaluator(space, "cifar10", ToyObjective(space, max_latency_ms=2.5), 3)
    strategy = RulebookStrategy()
    strategy.search(limited, 0)
    assert limited.history[0].arch == (0, 0, 0, 0)  # the identity role everywhere
    assert strategy.trace[0]["source"] == "start"
    assert strategy.trace[0]["from_arch"] is None


@pytest.mark.parametrize("which", ["macro", "nb201"])
def test_rulebook_moves_are_instructions_of_the_capacity_order(which: str) -> None:
    space = ToySpace() if which == "macro" else nb201_space()
    codes: set[str] = set()
    for seed in range(8):
        for objective in (ToyObjective(space), ToyObjective(space, max_latency_ms=3.0)):
            ev = Evaluator(space, "cifar10", objective, 10)
            strategy = RulebookStrategy()
            strategy.search(ev, seed)
            steps = check_trace_follows_the_capacity_order(ev, strategy)
            random_steps = sum(e["source"] == "random" for e in strategy.trace)
            assert steps + random_steps == 9
            assert steps >= 5
            codes |= {m["instruction"] for e in strategy.trace for m in e.get("moves", [])}
    assert {"ACL", "AMK", "RK", "RCL"} <= codes


def test_advised_instructions_win_what_the_surrogate_cannot_tell_apart() -> None:
    """At the start every unseen edit predicts alike; the rules' weight decides. NB201's
    val_accuracy_low raises ASC, and from all-3x3 an ASC makes an edge a skip connection."""
    space = nb201_space()
    objective = ToyObjective(space, threshold=0.9)  # above the best: val_accuracy_low fires
    for seed in range(5):
        ev = Evaluator(space, "cifar10", objective, 2)
        strategy = RulebookStrategy(knobs=Knobs(sample=1.0))
        strategy.search(ev, seed)
        second = strategy.trace[1]
        assert second["source"] == "rulebook"
        assert second["instruction"] == "ASC"
        assert second["rule"] == "val_accuracy_low"
        assert second["moves"][0]["edit"] == "nor_conv_3x3 -> skip_connect"


def test_rulebook_explores_when_no_rule_fires() -> None:
    space = ToySpace()
    objective = ToyObjective(space, threshold=0.1)  # every architecture meets the target
    ev = Evaluator(space, "cifar10", objective, 6)
    strategy = RulebookStrategy()
    strategy.search(ev, 0)
    check_trace_follows_the_capacity_order(ev, strategy)
    for entry, evaluation in zip(strategy.trace[1:], ev.history[1:], strict=True):
        assert entry["source"] == "explore"
        assert entry["rule"] is None
        # Raised by no rule, or only by rules whose priority is 0 (training accuracy, FPS).
        assert all(
            m["weight"] == 0.0 and m["why"] in ("no rule raised it: explored", "weight <= 0")
            for m in entry["moves"]
        )
        earlier = ev.history[: evaluation.number - 1]
        best = max(earlier, key=lambda e: (e.score, -e.number))
        assert entry["from_arch"] == space.encode(best.arch)
    assert len({e.arch for e in ev.history}) == 6


def test_rulebook_goes_random_when_the_parent_has_no_unseen_neighbour() -> None:
    ev = evaluator(40)
    strategy = RulebookStrategy()
    strategy.search(ev, 0)
    assert any(e["source"] == "random" for e in strategy.trace)
    assert OPTIMUM in {e.arch for e in ev.history}
    assert len({e.arch for e in ev.history}) == 40


def test_rulebook_keeps_to_a_latency_limit_once_it_knows_the_costs() -> None:
    """The surrogate learns what each choice costs; a candidate predicted over the limit scores
    -inf and is passed over (looking one position further when every neighbour is), so the later
    lookups are far more often feasible than random search's, on a table where 32 of 81 are."""
    space = ToySpace()
    objective = ToyObjective(space, max_latency_ms=6.0)
    late = {"rulebook": 0, "random": 0}
    for seed in range(10):
        for name, make in (("rulebook", RulebookStrategy), ("random", RandomSearch)):
            ev = Evaluator(space, "cifar10", objective, 12)
            make().search(ev, seed)
            late[name] += sum(not e.feasible for e in ev.history[6:])
            if name == "rulebook":
                best = ev.best()
                assert best is not None
                assert best.feasible
    assert late["rulebook"] * 2 < late["random"], late


def test_exchanges_swap_two_positions_that_differ() -> None:
    assert exchanges((0, 1, 1)) == [((1, 0, 1), (0, 1)), ((1, 1, 0), (0, 2))]
    assert exchanges((2, 2, 2)) == []
    swapped = exchanges((3, 1, 0, 2))
    assert len(swapped) == 6  # every pair differs
    assert all(sorted(a) == [0, 1, 2, 3] for a, _ in swapped)  # the same choices, moved


def test_has_hard_limit() -> None:
    assert not has_hard_limit(judge.HardLimits())
    assert has_hard_limit(judge.HardLimits(max_latency_ms=3.0))
    assert has_hard_limit(judge.HardLimits(max_params=1e6))


def test_rulebook_offers_exchanges_only_under_a_hard_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under a latency limit the parent's exchanges are candidates, and the search takes some:
    a step whose two moves put each position's choice in the other's place, each labelled by
    the instruction the capacity order assigns. Without a hard limit (or with ``exchange``
    off) no exchange is even proposed."""
    calls: list[Arch] = []

    def spy(arch: Arch) -> list[tuple[Arch, tuple[int, int]]]:
        calls.append(arch)
        return exchanges(arch)

    monkeypatch.setattr(guided, "exchanges", spy)
    space = nb201_space()
    limited = ToyObjective(space, max_latency_ms=3.0)
    taken = 0
    for seed in range(8):
        ev = Evaluator(space, "cifar10", limited, 10)
        strategy = RulebookStrategy()
        strategy.search(ev, seed)
        check_trace_follows_the_capacity_order(ev, strategy)
        for entry, evaluation in zip(strategy.trace, ev.history, strict=True):
            if entry["source"] in ("rulebook", "explore") and len(entry["moves"]) == 2:
                parent = space.decode(entry["from_arch"])
                i, j = (m["position"] for m in entry["moves"])
                child = evaluation.arch
                taken += (child[i], child[j]) == (parent[j], parent[i])
    assert calls
    assert taken >= 1

    calls.clear()
    for seed in range(4):
        RulebookStrategy().search(Evaluator(space, "cifar10", ToyObjective(space), 10), seed)
        RulebookStrategy(exchange=False).search(Evaluator(space, "cifar10", limited, 10), seed)
    assert calls == []


def test_exchanges_lift_the_rulebook_under_the_pi4_limit_on_nb201(nb201: NasBench201) -> None:
    """The issue's latency cell (NAS-Bench-201 CIFAR-10, Pi 4 latency <= the median, 10
    lookups): the best cells there spend the limit on one 3x3 convolution, and reaching them
    means moving layers at the limit, which one-position edits cannot do without going over it
    or giving capacity up. On 60 seeds the exchanges cut the median best rank by over a third
    (179 against 278.5 when measured; 172 against 256 over the benchmark's 200 seeds)."""
    objective = make_objective("latency", nb201, "cifar10", device="pi4")
    ranks = Evaluator.rank_table(nb201, "cifar10", objective)
    medians = {}
    for exchange in (True, False):
        best = []
        for seed in range(60):
            ev = Evaluator(nb201, "cifar10", objective, 10, ranks)
            RulebookStrategy(exchange=exchange).search(ev, seed)
            best.append(min(e.rank for e in ev.history))
        medians[exchange] = statistics.median(best)
    assert medians[True] < 0.75 * medians[False], medians


def test_rulebook_takes_another_capacity_order() -> None:
    space = ToySpace(name="other", choices=("a", "b", "c"))
    ev = evaluator(4, space=space)
    strategy = RulebookStrategy(moves=capacity_moves(("a", "b", "c"), (2, 1, 0)))
    strategy.search(ev, 0)
    assert ev.history[0].arch == (0, 0, 0, 0)  # "a" has the most capacity here
    assert strategy.trace[1]["instruction"] == "RK"


def test_rulebook_can_start_in_the_middle_for_comparison() -> None:
    ev = evaluator(2)
    RulebookStrategy(start="middle").search(ev, 0)
    assert ev.history[0].arch == (1, 1, 1, 1)


def test_rulebook_options_are_checked() -> None:
    with pytest.raises(InputError, match="radius"):
        RulebookStrategy(radius=0)
    with pytest.raises(InputError, match="start"):
        RulebookStrategy(start="random")  # type: ignore[arg-type]
    assert isinstance(make_strategy("rulebook", radius=2), RulebookStrategy)


# -- REINFORCE ------------------------------------------------------------------------------------


def test_reinforce_moves_probability_towards_a_rewarded_choice() -> None:
    logits = [[0.0, 0.0, 0.0]]
    Reinforce._update(logits, (2,), 1.0)
    assert logits[0][2] > 0.0 > logits[0][0]
    assert logits[0][0] == pytest.approx(logits[0][1])
    assert sum(logits[0]) == pytest.approx(0.0)  # the softmax gradient sums to zero


def test_reinforce_learns_on_the_toy_table() -> None:
    """After 30 lookups the policy, averaged over 20 seeds, favours the optimum's choice at every
    position over the uniform 1/3 it started from. (Its later lookups need not score better: it
    never pays twice, so on 81 architectures the unseen ones left are the worse ones.)"""
    mean = [0.0] * len(OPTIMUM)
    for seed in range(20):
        strategy = Reinforce()
        strategy.search(evaluator(30), seed)
        for i, c in enumerate(OPTIMUM):
            mean[i] += strategy.policy[i][c] / 20
    assert all(p > 1 / 3 for p in mean), mean


def test_reinforce_rejects_bad_options() -> None:
    with pytest.raises(InputError, match="learning rate"):
        Reinforce(lr=0.0)
    with pytest.raises(InputError, match="decay"):
        Reinforce(decay=1.0)


# -- the factory ----------------------------------------------------------------------------------


def test_make_strategy_knows_every_name() -> None:
    assert set(STRATEGIES) == {"rulebook", "llm", "random", "evolution", "tpe", "rl"}
    for name in STRATEGIES:
        strategy = make_strategy(name, llm=fake("ARCH: 0000"))
        assert strategy.name == name
    assert isinstance(make_strategy("evolution", population=4), RegularizedEvolution)


def test_make_strategy_refuses_unknown_names_and_options() -> None:
    with pytest.raises(InputError, match="rulebook, llm, random, evolution, tpe, rl"):
        make_strategy("bayes")
    with pytest.raises(InputError, match="--llm openai:MODEL"):
        make_strategy("llm")
    with pytest.raises(InputError, match=r"unknown option\(s\) \['size'\]; it takes population"):
        make_strategy("evolution", size=3)
    with pytest.raises(InputError, match="no options"):
        make_strategy("random", seed=3)


# -- TPE ------------------------------------------------------------------------------------------


@needs_optuna
def test_tpe_defaults_to_a_short_random_start_for_small_budgets() -> None:
    from archsmith.bench.strategies import default_startup_trials

    assert default_startup_trials(10) == 3
    assert default_startup_trials(30) == 10
    assert default_startup_trials(300) == 10


@needs_optuna
def test_tpe_tells_infeasible_architectures_as_very_bad() -> None:
    space = ToySpace()
    objective = ToyObjective(space, max_latency_ms=4.0)
    ev = Evaluator(space, "cifar10", objective, 15)
    TPE().search(ev, 0)
    assert len(ev.history) == 15
    assert any(not e.feasible for e in ev.history)


# -- GENIUS ---------------------------------------------------------------------------------------


def test_parse_answer_accepts_the_arch_line_fences_and_prose() -> None:
    space = ToySpace()
    assert parse_answer("rationale...\nARCH: 2212", space) == (2, 2, 1, 2)
    assert parse_answer("**ARCH:** `2212`.", space) == (2, 2, 1, 2)
    assert parse_answer("Architecture = 2212 (wider at the end)", space) == (2, 2, 1, 2)
    assert parse_answer("Try this:\n```\n2212\n```\nIt is deeper.", space) == (2, 2, 1, 2)
    assert parse_answer("I would go with 2212, since it is deeper.", space) == (2, 2, 1, 2)
    assert parse_answer("As a list: [2, 2, 1, 2]", space) == (2, 2, 1, 2)
    # Prose naming a tried architecture and a new one: the new one.
    assert parse_answer("Improving on 1111, try 2212.", space, seen=[(1, 1, 1, 1)]) == (2, 2, 1, 2)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("I cannot improve on this.", "names no architecture"),
        ("ARCH: 2219", "not usable"),
        ("Either 2212 or 2222 would do.", "several architectures"),
    ],
)
def test_parse_answer_says_what_is_wrong(reply: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_answer(reply, ToySpace())


@pytest.mark.llm
def test_genius_asks_first_with_no_history_then_with_all_of_it() -> None:
    strategy, llm = genius(
        "Start medium.\nARCH: 1111",
        AIMessage(
            content="Widen the front.\n```\n2211\n```",
            usage_metadata={"input_tokens": 500, "output_tokens": 20, "total_tokens": 520},
        ),
        "I suggest 2212 because the third layer prefers the small block.",
    )
    ev = evaluator(3)
    strategy.search(ev, 0)
    assert [e.arch for e in ev.history] == [(1, 1, 1, 1), (2, 2, 1, 1), (2, 2, 1, 2)]
    assert [t["source"] for t in strategy.trace] == ["llm", "llm", "llm"]
    assert len(strategy.llm_calls) == 3
    system = str(llm.seen[0][0].content)
    assert "toy-macro" in system
    assert "0 = Identity" in system
    assert "2222    (MB6_K5 at every position)" in system
    assert "Budget: 3 evaluations" in system
    assert "accuracy: maximise test accuracy" in system
    first = str(llm.seen[0][1].content)
    assert "No architecture has been evaluated yet" in first
    third = str(llm.seen[2][1].content)
    assert "| 1 | 1111 |" in third
    assert "| 2 | 2211 |" in third
    acc = 100 * ToySpace().record((2, 2, 1, 1), "cifar10").accuracy
    assert f"{acc:.2f}" in third
    assert "1 evaluation left" in third
    call = strategy.llm_calls[1]
    assert call.model == "fake"
    assert call.input_tokens == 500
    assert call.output_tokens == 20
    assert call.prompt.startswith("[system]\n")
    assert "[user]\n" in call.prompt
    assert call.response.startswith("Widen the front.")


@pytest.mark.llm
def test_genius_reasks_once_with_the_error() -> None:
    strategy, llm = genius("ARCH: 1111", "ARCH: 9999", "Sorry.\nARCH: 2212")
    ev = evaluator(2)
    strategy.search(ev, 0)
    assert ev.history[1].arch == (2, 2, 1, 2)
    assert strategy.trace[1]["source"] == "reask"
    assert strategy.trace[1]["calls"] == [1, 2]
    assert "not usable" in strategy.trace[1]["errors"][0]
    reask = llm.seen[2]
    assert [m.type for m in reask] == ["system", "human", "ai", "human"]
    assert reask[2].content == "ARCH: 9999"
    assert "could not be used" in str(reask[3].content)
    assert "9999" in str(reask[3].content)
    assert "[assistant]\nARCH: 9999" in strategy.llm_calls[2].prompt


@pytest.mark.llm
def test_genius_refuses_a_repeat() -> None:
    strategy, llm = genius("ARCH: 1111", "ARCH: 1111", "ARCH: 2111")
    ev = evaluator(2)
    strategy.search(ev, 0)
    assert [e.arch for e in ev.history] == [(1, 1, 1, 1), (2, 1, 1, 1)]
    assert "1111 was already evaluated (#1" in strategy.trace[1]["errors"][0]
    assert "already evaluated" in str(llm.seen[2][3].content)


@pytest.mark.llm
def test_genius_falls_back_to_a_seeded_random_architecture_after_two_failures() -> None:
    def go(seed: int) -> tuple[Evaluator, GeniusStrategy]:
        strategy, _ = genius("ARCH: 1111", "no idea", "still no idea")
        ev = evaluator(2)
        strategy.search(ev, seed)
        return ev, strategy

    ev, strategy = go(4)
    entry = strategy.trace[1]
    assert entry["source"] == "fallback"
    assert len(entry["errors"]) == 2
    assert entry["calls"] == [1, 2]
    assert ev.history[1].arch != (1, 1, 1, 1)
    assert go(4)[0].history[1].arch == ev.history[1].arch


@pytest.mark.llm
def test_genius_shows_latency_and_the_limit_when_the_objective_has_one() -> None:
    strategy, llm = genius("ARCH: 2222", "ARCH: 1000", "ARCH: 0000")
    space = ToySpace()
    objective = ToyObjective(space, max_latency_ms=2.0)
    ev = Evaluator(space, "cifar10", objective, 3)
    strategy.search(ev, 0)
    system = str(llm.seen[0][0].content)
    assert "latency on cpu is at most 2 ms" in system
    assert "Budget: 3 evaluations" in system
    assert f"{objective.spec().val_accuracy_threshold}" not in system  # no hint of the optimum
    second = str(llm.seen[1][1].content)
    assert "latency ms" in second
    assert "| 1 | 2222 | 81.00 | 161,000 | 16.10 | -inf | no |" in second
    assert "None of them meets the objective's limit yet." in second
    third = str(llm.seen[2][1].content)
    assert "Best so far: #2 1000" in third


@pytest.mark.llm
def test_genius_spends_the_budget_with_scripted_answers() -> None:
    strategy = scripted_llm_strategy(12)
    ev = evaluator(12)
    strategy.search(ev, 0)
    assert len(ev.history) == 12
    assert len({e.arch for e in ev.history}) == 12
    assert ev.history[4].arch == (2, 2, 2, 2)
