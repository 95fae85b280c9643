"""The offline architect: deterministic and seeded; the rulebook's instructions as edits.

Each proposal runs the search the bench measures (`archsmith.search.policy`) from the critic's
judgement: its best is the parent, its instructions (computed on that best) the advice.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from archsmith import judge
from archsmith.agents.interfaces import ArchitectProposal
from archsmith.agents.offline.description import (
    Arch,
    arch_signature,
    estimate_params,
    initial_arch,
    param_cap,
    summarize,
)
from archsmith.agents.offline.edits import EDITS, apply_edit
from archsmith.agents.offline.render import render_code
from archsmith.agents.offline.scoring import (
    FEATURE_PRIOR_SD,
    description_features,
    observed_metrics,
    spec_score,
    surrogate_targets,
)
from archsmith.agents.records import BestCandidate, ErrorRecord, HistoryEntry, Instruction
from archsmith.search.policy import Advice, Candidate, Knobs, Move, Observation, choose
from archsmith.spec import TaskSpec
from archsmith.tools.schemas import STOPPED_EARLY, EvaluationMetrics

__all__ = ["EXPLORE_ATTEMPTS", "TOP_INSTRUCTIONS", "OfflineArchitect"]

logger = logging.getLogger(__name__)

#: Advised instructions combined in one candidate at most: the paper's architect reads the top few.
TOP_INSTRUCTIONS = 3
#: Exploration attempts before a duplicate is accepted.
EXPLORE_ATTEMPTS = 60
_SHRINK_ERRORS = ("OutOfMemory", "MemoryError", "Timeout", "Killed")


@dataclass(frozen=True)
class _Trained:
    """A trained offline candidate from the history: its description, its metrics and the
    critic's record of it (its CM, feasibility and advice)."""

    arch: Arch
    metrics: EvaluationMetrics
    record: HistoryEntry


@dataclass(frozen=True)
class _Parent:
    """What a proposal edits, the advice on it, and its CM for the search to beat."""

    arch: Arch | None
    advice: Advice
    incumbent: float


class OfflineArchitect:
    """Deterministic, seeded architect: rulebook instructions as edits of a description.

    Each proposal runs the search the bench measures (`archsmith.search.policy`): the parent is
    the critic's best when it meets the spec's limits, and the advice the critic's instructions,
    which it computed on that best; when nothing meets them, the parent is the judge's
    (`judge.parent`: the latest trained candidate) with the critic's advice on it. Every
    instruction (and every combination of up to ``TOP_INSTRUCTIONS`` advised ones) is a
    candidate edit, and the candidate kept is the one whose predicted CM, optimistic on accuracy,
    is highest, plus a small bonus per unit of rule weight. The surrogate is fitted on the
    history's descriptions and metrics; the parameter count is exact. Without a trained parent
    (a best from elsewhere, a test), the instructions given are the advice.

    It remembers every description it proposed (and those it sees in ``best`` and ``history``)
    by signature and never proposes one twice while an unseen neighbour can be found.
    """

    name = "offline"

    def __init__(self, seed: int = 0, knobs: Knobs | None = None) -> None:
        self.seed = seed
        #: Every candidate is scored (there are few); the seed only breaks ties.
        self.knobs = knobs or Knobs(sample=1.0)
        self._seen: set[str] = set()

    # The Architect protocol.

    def propose(
        self,
        spec: TaskSpec,
        instructions: list[Instruction],
        best: BestCandidate | None,
        history: list[HistoryEntry],
        iteration: int,
    ) -> ArchitectProposal:
        """The first model at iteration 1, else the chosen edit of the parent (class docstring)."""
        tried = self._tried(best, history)
        rng = random.Random(self.seed * 1_000_003 + iteration)
        cap = param_cap(spec)
        trained = _trained(history)
        parent = _critics_parent(best, instructions, trained, history)
        base, advice = parent.arch, parent.advice
        if iteration <= 1 or base is None:
            start = initial_arch(spec)
            if arch_signature(start) not in tried:
                return self._emit(start, [])
            base = start
        candidates = self._candidates(base, advice, cap, tried)
        if not candidates:
            logger.info("iteration %d: every edit of the parent was tried; exploring", iteration)
            arch, applied = self._explore(base, advice.ranked(), cap, rng, tried)
            return self._emit(arch, applied)
        observations = [
            Observation(description_features(t.arch), observed_metrics(t.metrics)) for t in trained
        ]
        chosen = choose(
            candidates,
            observations,
            surrogate_targets([o.metrics for o in observations]),
            lambda m: spec_score(spec, m),
            incumbent=parent.incumbent,
            advice=advice,
            prior_sd=np.full(len(description_features(base)), FEATURE_PRIOR_SD),
            knobs=self.knobs,
            rng=rng,
        )
        arch, applied = chosen.candidate.arch, []
        for move in chosen.candidate.moves:
            why = advice.explain(move)
            if why["weight"] > 0.0:
                rules = f" [{', '.join(why['rules'])}]" if why["rules"] else ""
                applied.append(f"{move.edit}{rules}")
            else:
                applied.append(f"explore {move.edit}")
        logger.info(
            "iteration %d: %s (predicted CM %.4g, rule weight %g, %d candidates)",
            iteration,
            "; ".join(applied),
            chosen.predicted,
            chosen.weight,
            chosen.considered,
        )
        return self._emit(arch, applied)

    def repair(
        self,
        spec: TaskSpec,
        proposal: ArchitectProposal,
        error: ErrorRecord,
        best: BestCandidate | None,
        attempt: int,
    ) -> ArchitectProposal:
        """Back to the last valid description with a smaller change (one edit, then none).

        Out of memory or out of time: the description is also shrunk (narrower, and one conv
        fewer per extra attempt), since the same size would fail the same way.
        """
        cap = param_cap(spec)
        base = _arch_of(best.get("arch") if best else None) or initial_arch(spec)
        applied: list[str] = []
        kind = str(error.get("type", ""))
        message = str(error.get("message", ""))
        shrink = any(k in kind for k in _SHRINK_ERRORS) or "out of memory" in message.lower()
        if shrink:
            failed = _arch_of(proposal.arch) or base
            arch = failed
            for code in ["RK", "RN"] + ["RCL"] * attempt:
                step = apply_edit(arch, code, cap)
                if step is not None:
                    arch = step[0]
                    applied.append(step[1])
            return self._emit(arch, applied, note=f"repair {attempt} after {kind}")
        arch = base
        if attempt == 1:
            first = [a.split(":", 1)[0] for a in proposal.applied if ":" in a]
            for code in first[:1]:
                step = apply_edit(base, code.removeprefix("explore "), cap)
                if step is not None:
                    arch, applied = step[0], [step[1]]
        return self._emit(arch, applied, note=f"repair {attempt} after {kind or 'error'}")

    # Internals.

    def _tried(self, best: BestCandidate | None, history: list[HistoryEntry]) -> set[str]:
        tried = set(self._seen)
        archs = [h.get("arch") for h in history or []] + ([best.get("arch")] if best else [])
        for arch in archs:
            if isinstance(arch, dict):
                try:
                    tried.add(arch_signature(arch))
                except ValueError:
                    logger.debug("ignoring an arch that is not an offline description")
        return tried

    def _candidates(
        self, base: Arch, advice: Advice, cap: int, tried: set[str]
    ) -> list[Candidate[Arch]]:
        """Every instruction applied alone, and the advised ones (heaviest first) together in
        every combination of two up to ``TOP_INSTRUCTIONS``; unseen ones only, labelled."""
        advised = advice.ranked()[:TOP_INSTRUCTIONS]
        groups: list[tuple[str, ...]] = [(code,) for code in EDITS]
        for size in range(2, len(advised) + 1):
            groups += list(itertools.combinations(advised, size))
        found: dict[str, Candidate[Arch]] = {}
        for group in groups:
            arch, moves = base, []
            for code in group:
                step = apply_edit(arch, code, cap)
                if step is None:
                    break
                arch = step[0]
                moves.append(Move(code, step[1]))
            else:
                signature = arch_signature(arch)
                if signature not in tried and signature not in found:
                    found[signature] = Candidate(
                        arch,
                        tuple(moves),
                        description_features(arch),
                        {"params": float(estimate_params(arch))},
                    )
        return list(found.values())

    def _explore(
        self,
        base: Arch,
        codes: list[str],
        cap: int,
        rng: random.Random,
        tried: set[str],
    ) -> tuple[Arch, list[str]]:
        """An unseen neighbour: the instructions in a random subset, plus random edits."""
        everything = list(EDITS)
        fallback: tuple[Arch, list[str]] | None = None
        for attempt in range(EXPLORE_ATTEMPTS):
            arch, applied = base, []
            chosen = [c for c in codes if rng.random() < 0.6]
            extra = 1 + attempt // 15
            chosen += [
                rng.choice(codes or everything) if rng.random() < 0.5 else rng.choice(everything)
                for _ in range(extra)
            ]
            for code in chosen:
                step = apply_edit(arch, code, cap)
                if step is not None:
                    arch = step[0]
                    explored = code not in codes
                    applied.append(("explore " if explored else "") + step[1])
            if applied and arch_signature(arch) not in tried:
                return arch, applied
            if applied and fallback is None:
                fallback = (arch, applied)
        logger.warning("no unseen neighbour after %d attempts; repeating one", EXPLORE_ATTEMPTS)
        return fallback or (base, [])

    def _emit(self, arch: Arch, applied: list[str], note: str = "") -> ArchitectProposal:
        self._seen.add(arch_signature(arch))
        summary = summarize(arch, applied)
        if note:
            summary = f"{summary} [{note}]"
        return ArchitectProposal(
            code=render_code(arch),
            summary=summary,
            arch=arch.model_dump(mode="json"),
            applied=applied,
        )


def _arch_of(arch: dict[str, Any] | None) -> Arch | None:
    """The offline description of ``best``, a history entry or a proposal (its ``arch``), when
    it is a valid one."""
    if not isinstance(arch, dict):
        return None
    try:
        return Arch.model_validate(arch)
    except ValueError:
        logger.info("best has no offline description; starting from the initial model")
        return None


def _metrics_of(item: BestCandidate | HistoryEntry | None) -> EvaluationMetrics | None:
    """The trained metrics inside ``best`` or a history entry, when it has complete ones."""
    metrics = item.get("metrics") if item else None
    if not item or not isinstance(metrics, dict) or not metrics:
        return None
    try:
        return EvaluationMetrics.model_validate(metrics)
    except ValueError:
        logger.debug("metrics of iteration %s are incomplete; not used", item.get("iteration"))
        return None


def _trained(history: list[HistoryEntry]) -> list[_Trained]:
    """The history's trained, non-diverged offline candidates: what the surrogate is fitted on."""
    out: list[_Trained] = []
    for item in history or []:
        arch, metrics = _arch_of(item.get("arch")), _metrics_of(item)
        if arch is None or metrics is None or metrics.is_diverged:
            continue
        if item.get("status") == STOPPED_EARLY:
            continue  # no accuracy of a finished training: nothing to fit or to edit
        out.append(_Trained(arch, metrics, item))
    return out


def _recorded_rank(candidate: _Trained) -> judge.Rank:
    """How the critic judged a candidate: its feasibility and CM as its record holds them."""
    cm = candidate.record.get("combined_metric")
    feasible = bool(candidate.record.get("feasible", True))
    return judge.rank(feasible, -math.inf if cm is None else float(cm))


def _advice_of(instructions: list[Instruction], record: HistoryEntry | None) -> Advice:
    """The critic's advice: its instructions, with the rules' weights and the dropped ones from
    its record of the candidate advised on (empty when the record is not at hand)."""
    if record is None:
        return Advice.from_instructions(instructions, [], [])
    return Advice.from_instructions(
        instructions, record.get("fired_rules") or [], record.get("dropped") or []
    )


def _critics_parent(
    best: BestCandidate | None,
    instructions: list[Instruction],
    trained: list[_Trained],
    history: list[HistoryEntry],
) -> _Parent:
    """The critic's best, when it is a trained offline candidate within the spec's limits, with
    the critic's instructions; else the judge's parent of the trained candidates (the critic
    ranks feasible first, so none meets the limits: the latest) with the critic's advice on it;
    else ``best``'s description, if any, with the instructions given."""
    if (
        best is not None
        and bool(best.get("feasible", True))
        and best.get("combined_metric") is not None
    ):
        arch, metrics = _arch_of(best.get("arch")), _metrics_of(best)
        if arch is not None and metrics is not None and not metrics.is_diverged:
            record = next(
                (
                    h
                    for h in history
                    if h.get("iteration") == best.get("iteration")
                    and h.get("fired_rules") is not None
                ),
                None,
            )
            return _Parent(arch, _advice_of(instructions, record), float(best["combined_metric"]))
    chosen = judge.parent(trained, _recorded_rank)
    if chosen is None:
        return _Parent(
            _arch_of(best.get("arch") if best else None),
            Advice.from_instructions(instructions),
            -math.inf,
        )
    feasible, cm = _recorded_rank(chosen)
    return _Parent(
        chosen.arch,
        _advice_of(list(chosen.record.get("instructions") or []), chosen.record),
        cm if feasible and math.isfinite(cm) else -math.inf,
    )
