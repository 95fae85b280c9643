"""Search strategies for tabular benchmarks: the rulebook critic and the baselines it is judged by.

Every strategy spends exactly the evaluator's budget and is a pure function of its seed, so the
runner can repeat a comparison over many seeds and get the same numbers. The baselines are the
ones the M-factor paper compares (random search, regularized evolution, TPE) and GENIUS's LLM
(`archsmith.bench.llm_strategy`); `RulebookStrategy` is LEMONADE's deterministic critic steering
the search with no LLM at all.

How the rulebook's instructions edit a tabular architecture (one position changes per step):

NAS-Bench-Macro (0 Identity, 1 MB3_K3, 2 MB6_K5; a position is a layer):

=======  ============================  ==============================================
code     edit                          why
=======  ============================  ==============================================
ACL      Identity -> MB3_K3            the layer becomes a (small) conv block
RCL      MB3_K3 or MB6_K5 -> Identity  the conv block is removed
AMK      MB3_K3 -> MB6_K5              more kernels: expansion 3 -> 6, kernel 3 -> 5
RK       MB6_K5 -> MB3_K3              fewer kernels: the reverse
others   none: skipped                 every block has its own skip; the head,
                                       dropout, regularization and init are fixed
=======  ============================  ==============================================

NAS-Bench-201 (0 none, 1 skip_connect, 2 nor_conv_1x1, 3 nor_conv_3x3, 4 avg_pool_3x3; a
position is an edge of the cell):

=======  ====================================================  ==============================
code     edit                                                  why
=======  ====================================================  ==============================
ACL      none, skip_connect or avg_pool_3x3 -> nor_conv_3x3    the edge gets a conv
RCL      nor_conv_1x1 or nor_conv_3x3 -> skip_connect          the conv goes, the path stays
AMK      nor_conv_1x1 -> nor_conv_3x3                          more weights per filter
RK       nor_conv_3x3 -> nor_conv_1x1                          fewer
ASC      none -> skip_connect                                  a cut edge becomes a skip
RSC      skip_connect -> none                                  the skip is cut
others   none: skipped                                         no dense layers, dropout, init
=======  ====================================================  ==============================

ACL adds the benchmark's standard 3x3 conv: adding a 1x1 one and leaving AMK to widen it later
found worse cells from a random start (mean best rank 793 against 111 on CIFAR-10, 403 against
122 on CIFAR-100; 200 seeds, budget 10, the accuracy objective); from the default all-1x1 start
the two tables do the same. ``RulebookStrategy(edits=...)`` takes another table.
"""

from __future__ import annotations

import inspect
import logging
import math
import random
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from archsmith.bench.base import Arch, Evaluation, Evaluator, TabularSpace
from archsmith.errors import InputError
from archsmith.tools.rulebook import Rulebook
from archsmith.tools.rulebook_advice import advise
from archsmith.tools.schemas import ResolvedInstruction

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from archsmith.bench.base import Strategy

__all__ = [
    "MACRO_EDITS",
    "NB201_EDITS",
    "STRATEGIES",
    "TPE",
    "EditTable",
    "RandomSearch",
    "RegularizedEvolution",
    "RulebookStrategy",
    "default_population",
    "default_sample",
    "default_startup_trials",
    "edit_table_for",
    "make_strategy",
    "neighbours",
    "random_unseen",
]

logger = logging.getLogger(__name__)

#: The names `make_strategy` knows, as the CLI offers them.
STRATEGIES: tuple[str, ...] = ("rulebook", "llm", "random", "evolution", "tpe")

#: Random draws before `random_unseen` falls back to listing the unseen part of the space.
_RANDOM_DRAWS = 64


# -- helpers shared by the strategies ------------------------------------------------------------


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


def _repeat_rest(evaluator: Evaluator, rng: random.Random, who: str) -> None:
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
        _repeat_rest(evaluator, rng, self.name)


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
        _repeat_rest(evaluator, rng, self.name)

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
        _repeat_rest(evaluator, rng, self.name)

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


# -- the rulebook critic -------------------------------------------------------------------------


@dataclass(frozen=True)
class EditTable:
    """What each rulebook instruction changes at one position: (from choice, to choice) pairs."""

    space: str  # the benchmark the table is written for
    choices: tuple[str, ...]  # its operation names, in the benchmark's order
    edits: Mapping[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)

    def moves(self, code: str) -> tuple[tuple[int, int], ...]:
        """The (from, to) pairs of instruction ``code``; () when it means nothing here."""
        return self.edits.get(code, ())

    def describe(self, code: str) -> str:
        """The edit in words, e.g. 'Identity -> MB3_K3'."""
        moves = self.moves(code)
        if not moves:
            return "no edit"
        targets: dict[int, list[str]] = {}
        for a, b in moves:
            targets.setdefault(b, []).append(self.choices[a])
        return "; ".join(f"{' or '.join(s)} -> {self.choices[b]}" for b, s in targets.items())


MACRO_EDITS = EditTable(
    space="nas-bench-macro",
    choices=("Identity", "MB3_K3", "MB6_K5"),
    edits={"ACL": ((0, 1),), "RCL": ((1, 0), (2, 0)), "AMK": ((1, 2),), "RK": ((2, 1),)},
)

NB201_EDITS = EditTable(
    space="nas-bench-201",
    choices=("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"),
    edits={
        "ACL": ((0, 3), (1, 3), (4, 3)),
        "RCL": ((2, 1), (3, 1)),
        "AMK": ((2, 3),),
        "RK": ((3, 2),),
        "ASC": ((0, 1),),
        "RSC": ((1, 0),),
    },
)

_TABLES = (MACRO_EDITS, NB201_EDITS)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def edit_table_for(space: TabularSpace) -> EditTable:
    """The table whose operation names match the space's, else the one named like the space."""
    names = tuple(_norm(c) for c in space.choices)
    for table in _TABLES:
        if tuple(_norm(c) for c in table.choices) == names:
            return table
    for table in _TABLES:
        if _norm(table.space) == _norm(space.name) and len(table.choices) == len(space.choices):
            return table
    known = ", ".join(f"{t.space} {t.choices}" for t in _TABLES)
    raise InputError(
        f"the rulebook strategy has no instruction->edit table for {space.name} with choices"
        f" {space.choices}; it knows {known}; pass edits=EditTable(...) for another space"
    )


@dataclass
class _Step:
    arch: Arch
    source: Literal["start", "rulebook", "explore", "random"]
    instruction: str | None = None
    meaning: str | None = None
    weight: float | None = None
    rules: list[str] = field(default_factory=list)
    position: int | None = None
    edit: str | None = None
    skipped: list[str] = field(default_factory=list)
    reason: str | None = None


class RulebookStrategy:
    """LEMONADE's critic on a table: the best architecture's metrics -> instructions -> one edit.

    It starts from the middle choice at every position (``start="middle"``: all MB3_K3 on
    NAS-Bench-Macro, all nor_conv_1x1 on NAS-Bench-201) or from a seeded random architecture
    (``start="random"``). Neither wins everywhere (mean best rank, 200 seeds, budget 10, the
    objectives of `archsmith.bench.objectives`): middle is better for accuracy on NAS-Bench-Macro
    (43 against 70) and on NAS-Bench-201's latency objective (2,248 against 4,808 on pi4, 154
    against 4,727 on pixel3), about even for accuracy on NAS-Bench-201 (126 / 116 against
    111 / 122 on CIFAR-10 / 100), and worse for the M-factor (202 against 143 on
    NAS-Bench-Macro, 1,402 against 1,347 on NAS-Bench-201). Middle is the default for its wins
    on accuracy and latency. With a fixed start, seeds differ only in the positions they edit.

    After each evaluation ``advise(metrics, objective.spec())`` runs on the parent: the best
    architecture so far, or the latest one while none is feasible (so a chain of RK/RCL edits can
    walk into a latency or size limit). Instructions are taken heaviest first (Table 3 order
    among equals); each maps to a one-position edit by the `EditTable` (see the module
    docstring), applied at a seeded random position whose result has not been evaluated. An
    instruction with no meaning in the space, or whose every edit was evaluated, is skipped.
    When no rule fires, or nothing the instructions map to is new, the strategy explores: a
    seeded random unseen one-position mutant of the parent, or a random unseen architecture
    when the parent has none. So no architecture is evaluated twice while an unseen one is one
    edit away.

    ``trace`` has one JSON-ready dict per evaluation of the latest search, aligned with
    ``evaluator.history``: ``number``, ``arch`` (encoded), ``from_arch`` (encoded parent or
    None), ``source`` ("start", "rulebook", "explore", "random"), ``instruction`` (code or
    None), ``meaning``, ``weight``, ``rule`` (the heaviest rule that raised it), ``rules`` (all
    of them, heaviest first), ``position``, ``edit`` (e.g. "Identity -> MB3_K3"), ``skipped``
    (instructions passed over, with why) and ``reason`` (why it explored).
    """

    name = "rulebook"

    def __init__(
        self,
        *,
        start: Literal["random", "middle"] = "middle",
        edits: EditTable | None = None,
        rulebook: Rulebook | None = None,
    ) -> None:
        if start not in ("random", "middle"):
            raise InputError(f"rulebook start must be 'random' or 'middle', got {start!r}")
        self.start = start
        self.edits = edits
        self.rulebook = rulebook
        self.trace: list[dict[str, Any]] = []

    def search(self, evaluator: Evaluator, seed: int) -> None:
        """Evaluate the start, then one rulebook-chosen edit of the parent per evaluation."""
        self.trace = []
        space = evaluator.space
        table = self.edits or edit_table_for(space)
        spec = evaluator.objective.spec()
        rng = random.Random(seed)
        seen: set[Arch] = set()
        if self.start == "middle":
            first: Arch = (len(space.choices) // 2,) * space.positions
        else:
            first = tuple(rng.randrange(len(space.choices)) for _ in range(space.positions))
        step = _Step(arch=first, source="start")
        parent: Evaluation | None = None
        while evaluator.remaining > 0:
            seen.add(step.arch)
            evaluation = evaluator.evaluate(step.arch)
            self._record(space, evaluation, parent, step)
            parent = self._parent(evaluator)
            if evaluator.remaining == 0:
                break
            advice = advise(parent.metrics, spec, self.rulebook)
            rule_weights = {rule.rule_id: rule.weight for rule in advice.fired_rules}
            next_step = self._next(
                parent.arch, advice.instructions, rule_weights, table, space, rng, seen
            )
            if next_step is None:
                break
            step = next_step
        _repeat_rest(evaluator, rng, self.name)

    @staticmethod
    def _parent(evaluator: Evaluator) -> Evaluation:
        best = evaluator.best()
        if best is None:
            raise RuntimeError("no evaluation to take a parent from")  # search evaluates first
        if math.isfinite(best.score) and best.feasible:
            return best
        return evaluator.history[-1]

    def _next(
        self,
        parent: Arch,
        instructions: Sequence[ResolvedInstruction],
        rule_weights: Mapping[str, float],
        table: EditTable,
        space: TabularSpace,
        rng: random.Random,
        seen: set[Arch],
    ) -> _Step | None:
        skipped: list[str] = []
        for inst in instructions:
            moves = table.moves(inst.code)
            if not moves:
                skipped.append(f"{inst.code}: no edit in {table.space}")
                continue
            applicable = [(i, b) for i, c in enumerate(parent) for a, b in moves if c == a]
            options = [
                (i, b) for i, b in applicable if (*parent[:i], b, *parent[i + 1 :]) not in seen
            ]
            if not options:
                if applicable:
                    why = f"every {table.describe(inst.code)} edit was evaluated"
                else:
                    why = "no position holds " + " or ".join(
                        sorted({space.choices[a] for a, _ in moves})
                    )
                skipped.append(f"{inst.code}: {why}")
                continue
            i, b = rng.choice(options)
            return _Step(
                arch=(*parent[:i], b, *parent[i + 1 :]),
                source="rulebook",
                instruction=inst.code,
                meaning=inst.meaning,
                weight=inst.weight,
                rules=sorted(inst.raised_by, key=lambda r: -rule_weights.get(r, 0.0)),
                position=i,
                edit=f"{space.choices[parent[i]]} -> {space.choices[b]}",
                skipped=skipped,
            )
        reason = (
            "no rule fired with a positive weight"
            if not instructions
            else "no instruction maps to an unseen architecture"
        )
        fresh = [a for a in neighbours(parent, len(space.choices)) if a not in seen]
        if fresh:
            arch = rng.choice(fresh)
            i = next(k for k in range(len(arch)) if arch[k] != parent[k])
            edit = f"{space.choices[parent[i]]} -> {space.choices[arch[i]]}"
            return _Step(
                arch=arch,
                source="explore",
                position=i,
                edit=edit,
                skipped=skipped,
                reason=reason,
            )
        other = random_unseen(space, rng, seen)
        if other is None:
            return None
        return _Step(
            arch=other,
            source="random",
            skipped=skipped,
            reason=f"{reason}, and every neighbour of the parent was evaluated",
        )

    def _record(
        self,
        space: TabularSpace,
        evaluation: Evaluation,
        parent: Evaluation | None,
        step: _Step,
    ) -> None:
        entry = {
            "number": evaluation.number,
            "arch": space.encode(evaluation.arch),
            "from_arch": space.encode(parent.arch) if parent and step.source != "start" else None,
            "source": step.source,
            "instruction": step.instruction,
            "meaning": step.meaning,
            "weight": step.weight,
            "rule": step.rules[0] if step.rules else None,
            "rules": step.rules,
            "position": step.position,
            "edit": step.edit,
            "skipped": step.skipped,
            "reason": step.reason,
        }
        if step.source == "random":
            entry["from_arch"] = None
        self.trace.append(entry)
        logger.debug("rulebook %d: %s", evaluation.number, entry)


# -- the factory ---------------------------------------------------------------------------------

_FACTORIES: dict[str, Callable[..., Strategy]] = {
    "rulebook": RulebookStrategy,
    "random": RandomSearch,
    "evolution": RegularizedEvolution,
    "tpe": TPE,
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
