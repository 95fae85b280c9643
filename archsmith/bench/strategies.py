"""Search strategies for tabular benchmarks: the rulebook critic and the baselines it is judged by.

Every strategy spends exactly the evaluator's budget and is a pure function of its seed, so the
runner can repeat a comparison over many seeds and get the same numbers. The baselines are the
ones the M-factor paper compares (random search, regularized evolution, TPE, policy-gradient
reinforcement learning) and GENIUS's LLM (`archsmith.bench.llm_strategy`). `RulebookStrategy` is
archsmith's offline architect on a table: the rulebook's instructions as moves, chosen by the
objective (`archsmith.search`), with no LLM at all.
"""

from __future__ import annotations

import inspect
import logging
import math
import random
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from archsmith.bench.base import Arch, Evaluation, Evaluator, TabularSpace
from archsmith.bench.guided import GuidedTabularSearch
from archsmith.bench.sampling import neighbours, random_unseen, spend_rest
from archsmith.errors import InputError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from archsmith.bench.base import Strategy

__all__ = [
    "STRATEGIES",
    "TPE",
    "RandomSearch",
    "RegularizedEvolution",
    "Reinforce",
    "RulebookStrategy",
    "default_population",
    "default_sample",
    "default_startup_trials",
    "make_strategy",
    "neighbours",
    "random_unseen",
]

logger = logging.getLogger(__name__)

#: The names `make_strategy` knows, as the CLI offers them.
STRATEGIES: tuple[str, ...] = ("rulebook", "llm", "random", "evolution", "tpe", "rl")

# -- random search -------------------------------------------------------------------------------


class RandomSearch:
    """Uniform sampling without replacement: the baseline every NAS paper reports."""

    name = "random"

    def search(self, evaluator: Evaluator, seed: int) -> None:
        """Evaluate ``budget`` distinct architectures drawn uniformly from the whole space."""
        rng = random.Random(seed)
        archs = evaluator.space.all_archs()
        k = min(evaluator.remaining, len(archs))
        for index in rng.sample(range(len(archs)), k):
            evaluator.evaluate(tuple(archs[index]))
        spend_rest(evaluator, rng, self.name)


# -- regularized evolution -----------------------------------------------------------------------


def default_population(budget: int) -> int:
    """P = max(5, budget // 3), at most 100 (Real et al.'s own population)."""
    return min(100, max(5, budget // 3))


def default_sample(population: int) -> int:
    """S = P up to Real et al.'s 25: at small budgets selection pressure beats diversity."""
    return min(population, 25)


class RegularizedEvolution:
    """Aging evolution (Real et al. 2019): tournaments, one-position mutation, the oldest dies.

    Real et al. ran P = 100, S = 25 for 20,000 models; a population of 100 would never finish its
    random start within the 10 evaluations GENIUS uses. So P = max(5, budget // 3) (at most 100)
    and S = min(P, 25): at budget 10, 5 random architectures then 5 mutants of the best of the
    last 5. Measured over 1,000 seeds on the real NAS-Bench-Macro and NAS-Bench-201 (CIFAR-10)
    tables, these beat P = budget // 2 with S = P // 2 at budgets 10, 30 and 100; at budget 10
    that setting and P = 3 did no better than random search, as a tournament among mediocre
    random architectures breeds mediocre children.

    With ``dedup`` (the default) a child is drawn among the parent's unseen one-position mutants,
    since a table lookup stands for a training run and a repeated child would waste one; when the
    parent has none left, the child is a random unseen architecture. ``dedup=False`` is the
    paper's algorithm, repeats included.
    """

    name = "evolution"

    def __init__(
        self, *, population: int | None = None, sample: int | None = None, dedup: bool = True
    ) -> None:
        if population is not None and population < 1:
            raise InputError(f"evolution population must be 1 or more, got {population}")
        if sample is not None and sample < 1:
            raise InputError(f"evolution sample size must be 1 or more, got {sample}")
        self.population = population
        self.sample = sample
        self.dedup = dedup

    def search(self, evaluator: Evaluator, seed: int) -> None:
        """Evaluate a random population, then one mutated tournament winner per evaluation."""
        rng = random.Random(seed)
        space = evaluator.space
        p = self.population or default_population(evaluator.budget)
        s = min(p, self.sample or default_sample(p))
        seen: set[Arch] = set()
        population: deque[Evaluation] = deque()
        while evaluator.remaining > 0 and len(population) < p:
            arch = random_unseen(space, rng, seen)
            if arch is None:
                break
            seen.add(arch)
            population.append(evaluator.evaluate(arch))
        while evaluator.remaining > 0 and population:
            contenders = rng.sample(list(population), min(s, len(population)))
            parent = max(contenders, key=lambda e: (e.score, -e.number))
            child = self._mutate(parent.arch, space, rng, seen)
            if child is None:
                break
            seen.add(child)
            population.append(evaluator.evaluate(child))
            if len(population) > p:
                population.popleft()
        spend_rest(evaluator, rng, self.name)

    def _mutate(
        self, arch: Arch, space: TabularSpace, rng: random.Random, seen: set[Arch]
    ) -> Arch | None:
        n = len(space.choices)
        if not self.dedup:
            i = rng.randrange(len(arch))
            c = rng.choice([c for c in range(n) if c != arch[i]])
            return (*arch[:i], c, *arch[i + 1 :])
        fresh = [a for a in neighbours(arch, n) if a not in seen]
        if fresh:
            return rng.choice(fresh)
        return random_unseen(space, rng, seen)


# -- TPE -----------------------------------------------------------------------------------------


def default_startup_trials(budget: int) -> int:
    """min(10, max(3, budget // 3)): Optuna's 10 random trials would be all of a budget of 10."""
    return min(10, max(3, budget // 3))


#: What TPE is told for an infeasible architecture (score -inf): worse than any real score.
_INFEASIBLE_VALUE = -1e12
#: Duplicate suggestions answered from the cache before an unseen neighbour is enqueued.
_MAX_DUPLICATE_ASKS = 10


class TPE:
    """Optuna's Tree-structured Parzen Estimator, one categorical parameter per position.

    Optuna starts TPE after 10 random trials, which would make a 10-evaluation search pure random
    search; here ``n_startup_trials`` defaults to min(10, max(3, budget // 3)): 3 random trials
    then 7 guided ones at budget 10, Optuna's own 10 from budget 30 up. A suggestion that was
    evaluated already costs no budget: it is told its known score (Optuna's FAQ advice for
    duplicates) and TPE is asked again; after 10 duplicates in a row a random unseen one-position
    mutant of the repeated pick is enqueued (any unseen architecture when it has none), which
    stays near where TPE was looking. On the real tables duplicates are rare; on an 81-architecture
    toy table they dominate once TPE has converged. ``multivariate=True`` uses Optuna's joint TPE
    (no better on the real tables at budget 10). Infeasible architectures are told -1e12, since
    Optuna's TPE is rank-based and needs finite values. Optuna is imported only when a search
    starts, so the other strategies work without it.
    """

    name = "tpe"

    def __init__(self, *, n_startup_trials: int | None = None, multivariate: bool = False) -> None:
        if n_startup_trials is not None and n_startup_trials < 0:
            raise InputError(f"TPE n_startup_trials must be 0 or more, got {n_startup_trials}")
        self.n_startup_trials = n_startup_trials
        self.multivariate = multivariate

    def search(self, evaluator: Evaluator, seed: int) -> None:
        """Ask Optuna for an architecture, look it up, tell Optuna its score; until spent."""
        try:
            import optuna
        except ImportError as e:
            raise InputError(
                "the tpe strategy needs optuna; install it with `pip install optuna`"
            ) from e
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        space = evaluator.space
        rng = random.Random(seed)
        startup = (
            self.n_startup_trials
            if self.n_startup_trials is not None
            else default_startup_trials(evaluator.budget)
        )
        sampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=startup, multivariate=self.multivariate
        )
        study = optuna.create_study(direction="maximize", sampler=sampler)
        distribution = optuna.distributions.CategoricalDistribution(
            tuple(range(len(space.choices)))
        )
        distributions: dict[str, optuna.distributions.BaseDistribution] = {
            _param(i): distribution for i in range(space.positions)
        }
        known: dict[Arch, float] = {}
        duplicates = 0
        while evaluator.remaining > 0:
            trial = study.ask(distributions)
            arch = tuple(int(trial.params[_param(i)]) for i in range(space.positions))
            if arch in known:
                study.tell(trial, known[arch])
                duplicates += 1
                if duplicates >= _MAX_DUPLICATE_ASKS:
                    nearby = self._unseen_near(arch, space, rng, set(known))
                    if nearby is None:
                        break
                    study.enqueue_trial({_param(i): c for i, c in enumerate(nearby)})
                    duplicates = 0
                continue
            duplicates = 0
            evaluation = evaluator.evaluate(arch)
            known[arch] = _finite(evaluation.score)
            study.tell(trial, known[arch])
        spend_rest(evaluator, rng, self.name)

    @staticmethod
    def _unseen_near(
        arch: Arch, space: TabularSpace, rng: random.Random, seen: set[Arch]
    ) -> Arch | None:
        """A random unseen one-position mutant of TPE's repeated pick, else any unseen one."""
        fresh = [a for a in neighbours(arch, len(space.choices)) if a not in seen]
        return rng.choice(fresh) if fresh else random_unseen(space, rng, seen)


def _param(position: int) -> str:
    return f"p{position}"


def _finite(score: float) -> float:
    return score if math.isfinite(score) else _INFEASIBLE_VALUE


# -- policy-gradient reinforcement learning -----------------------------------------------------


class Reinforce:
    """REINFORCE (Williams 1992) with a learned categorical policy per position.

    The M-factor paper's best strategy was policy-based RL; this is its simplest form, as in
    NAS-Bench-201's own RL baseline: logits start at zero (a uniform policy), each evaluation
    samples an architecture, and the logits move by ``lr * (reward - baseline)`` along the
    gradient of the sample's log-probability, with an exponential moving average of the rewards
    as the baseline (``decay``). Rewards are the objective's scores; an infeasible architecture
    (score -inf) is rewarded like the worst score seen so far. A sample already evaluated is
    drawn again (up to ``redraws`` times) rather than paid for twice; the policy is updated once
    per evaluation, and repeats are answered from the cache.
    """

    name = "rl"

    def __init__(self, *, lr: float = 0.5, decay: float = 0.9, redraws: int = 50) -> None:
        if not (math.isfinite(lr) and lr > 0.0):
            raise InputError(f"rl learning rate must be > 0, got {lr}")
        if not 0.0 <= decay < 1.0:
            raise InputError(f"rl baseline decay must be in [0, 1), got {decay}")
        if redraws < 0:
            raise InputError(f"rl redraws must be 0 or more, got {redraws}")
        self.lr = lr
        self.decay = decay
        self.redraws = redraws
        #: The policy after the latest search: per position, the probability of each choice.
        self.policy: list[list[float]] = []

    def search(self, evaluator: Evaluator, seed: int) -> None:
        """Sample from the policy, look the sample up, update the policy; until spent."""
        rng = random.Random(seed)
        space = evaluator.space
        n = len(space.choices)
        logits = [[0.0] * n for _ in range(space.positions)]
        seen: dict[Arch, float] = {}
        baseline: float | None = None
        while evaluator.remaining > 0:
            arch = self._sample(logits, rng)
            for _ in range(self.redraws):
                if arch not in seen:
                    break
                arch = self._sample(logits, rng)
            if arch in seen:
                fresh = random_unseen(space, rng, set(seen))
                if fresh is None:
                    break
                arch = fresh
            score = evaluator.evaluate(arch).score
            finite = [v for v in seen.values() if math.isfinite(v)]
            reward = score if math.isfinite(score) else (min(finite) if finite else 0.0)
            seen[arch] = score
            baseline = reward if baseline is None else baseline
            advantage = reward - baseline
            spread = _spread([v for v in seen.values() if math.isfinite(v)])
            self._update(logits, arch, self.lr * advantage / spread)
            baseline = self.decay * baseline + (1.0 - self.decay) * reward
        self.policy = [_softmax(row) for row in logits]
        spend_rest(evaluator, rng, self.name)

    @staticmethod
    def _sample(logits: list[list[float]], rng: random.Random) -> Arch:
        return tuple(rng.choices(range(len(row)), weights=_softmax(row))[0] for row in logits)

    @staticmethod
    def _update(logits: list[list[float]], arch: Arch, step: float) -> None:
        """Ascend ``step * grad log pi(arch)``: +step on the chosen logit, -step * p on all."""
        for row, chosen in zip(logits, arch, strict=True):
            probs = _softmax(row)
            for c in range(len(row)):
                row[c] += step * ((1.0 if c == chosen else 0.0) - probs[c])


def _softmax(row: list[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(v - top) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def _spread(values: list[float]) -> float:
    """The rewards' standard deviation, so the step size does not depend on the score's units."""
    if len(values) < 2:
        return 1.0
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return sd if sd > 1e-12 else 1.0


# -- the rulebook, objective-aware ---------------------------------------------------------------


class RulebookStrategy(GuidedTabularSearch):
    """The offline architect's search on a table (`archsmith.bench.guided`): the rulebook's
    instructions as moves derived from the space's capacity order, chosen by the objective."""

    name = "rulebook"


# -- the factory ---------------------------------------------------------------------------------

_FACTORIES: dict[str, Callable[..., Strategy]] = {
    "rulebook": RulebookStrategy,
    "random": RandomSearch,
    "evolution": RegularizedEvolution,
    "tpe": TPE,
    "rl": Reinforce,
}


def make_strategy(name: str, *, llm: BaseChatModel | None = None, **options: Any) -> Strategy:
    """The strategy called ``name`` with ``options`` passed to its constructor.

    ``llm`` is needed by "llm" (GENIUS-style prompting) only; the others ignore it.
    """
    key = name.strip().lower()
    if key == "llm":
        if llm is None:
            raise InputError(
                "the llm strategy needs a model: pass --llm openai:MODEL or --llm gemini:MODEL"
                " (with a --base-url for a self-hosted OpenAI-compatible server)"
            )
        from archsmith.bench.llm_strategy import GeniusStrategy

        _check_options(key, GeniusStrategy, options)
        return GeniusStrategy(llm, **options)
    if key not in _FACTORIES:
        raise InputError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    factory = _FACTORIES[key]
    _check_options(key, factory, options)
    return factory(**options)


def _check_options(name: str, factory: Callable[..., Any], options: Mapping[str, Any]) -> None:
    """An InputError naming the options ``factory`` takes, before a TypeError could say less."""
    params = inspect.signature(factory).parameters.values()
    allowed = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "no options"
        raise InputError(f"strategy {name!r} got unknown option(s) {unknown}; it takes {takes}")
