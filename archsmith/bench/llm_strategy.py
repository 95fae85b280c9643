"""GENIUS on a table: an LLM proposes each architecture after seeing every result so far.

GENIUS (Zheng et al. 2023) encodes the search space as text, asks GPT-4 for a first
architecture, then repeatedly reports the accuracy and asks for a better one, at temperature 0
and 10 evaluations. Here the system prompt describes the space, the encoding, the objective and
the budget (``prompts/genius_system.j2``), and each user prompt carries the whole history
(``prompts/genius_user.j2``) rather than a growing conversation: the information is the same and
every call can be read, and replayed, on its own.

The model answers with a line ``ARCH: <encoding>``; the parser also accepts the encoding inside a
code fence or in prose. An answer that cannot be decoded, or names an architecture already
evaluated, is re-asked once with the error; a second failure falls back to a seeded random unseen
architecture, and the trace says so. Build the model with ``temperature=GENIUS_TEMPERATURE``
(``make_llm(value, temperature=GENIUS_TEMPERATURE)``): the strategy cannot change the
temperature of a model it is given.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections.abc import Iterable
from typing import Any, Final

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from archsmith.bench.base import Arch, Evaluation, Evaluator, Objective, TabularSpace
from archsmith.bench.sampling import random_unseen
from archsmith.llm.calls import LLMCall, message_text
from archsmith.llm.providers import model_name as name_of
from archsmith.prompts import render
from archsmith.spec import TaskSpec

__all__ = [
    "GENIUS_TEMPERATURE",
    "GeniusStrategy",
    "describe_objective",
    "describe_space",
    "parse_answer",
]

logger = logging.getLogger(__name__)

#: GENIUS's setting: temperature 0, to make the optimiser as repeatable as the API allows.
GENIUS_TEMPERATURE: Final = 0.0

#: What each known benchmark is, in words an LLM can reason about (a space's own
#: ``description`` attribute, when it has one, wins).
SPACE_DESCRIPTIONS: Final[dict[str, str]] = {
    "nas-bench-macro": (
        "A CIFAR-10 network with 8 searchable layers between a fixed stem and a fixed head."
        " Each layer is Identity (the layer is skipped), MB3_K3 (a MobileNetV2 inverted residual"
        " block with kernel size 3 and expansion ratio 3) or MB6_K5 (kernel size 5, expansion"
        " ratio 6). The encoding has one digit per layer, the first layer first."
    ),
    "nas-bench-201": (
        "A cell of 4 nodes, stacked with residual blocks into a ResNet-like network. Each of the"
        " cell's 6 edges (from node i to a later node j) carries one operation; 'none' cuts the"
        " edge and 'skip_connect' is the identity. The encoding groups the edges by their target"
        " node j = 1, 2, 3 between '+' signs and writes the edge from node i as 'operation~i'."
    ),
}

_ARCH_LINE = re.compile(
    r"^[\s>*_#`-]*arch(?:itecture)?[\s*_`]*[:=](.*)$", re.IGNORECASE | re.MULTILINE
)
_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)
_INT_LIST = re.compile(r"[\[(]\s*\d+(?:\s*,\s*\d+)+\s*,?\s*[\])]")
_STRIP = " \t`'\"*_.,;:!?()[]{}<>"


# -- parsing the answer --------------------------------------------------------------------------


def _decode(text: str, space: TabularSpace) -> Arch:
    """``text`` as an architecture: the benchmark's encoding, or a list of choice indices."""
    value = text.strip().strip(_STRIP)
    if _INT_LIST.fullmatch(text.strip()):
        arch = tuple(int(n) for n in re.findall(r"\d+", text))
    else:
        arch = tuple(space.decode(value))
    if len(arch) != space.positions or not all(0 <= c < len(space.choices) for c in arch):
        raise ValueError(
            f"{value!r} is not an architecture of {space.name}: it needs {space.positions}"
            f" choices, each from 0 to {len(space.choices) - 1}"
        )
    return arch


def _candidates(text: str, space: TabularSpace) -> list[Arch]:
    """Every distinct architecture written somewhere in ``text``, in order of appearance."""
    found: list[Arch] = []
    pieces: list[str] = [m.group(0) for m in _INT_LIST.finditer(text)]
    pieces += text.split()
    for piece in pieces:
        try:
            arch = _decode(piece, space)
        except ValueError:
            continue
        if arch not in found:
            found.append(arch)
    return found


def parse_answer(text: str, space: TabularSpace, seen: Iterable[Arch] = ()) -> Arch:
    """The architecture an LLM's reply proposes; a ValueError saying what is wrong otherwise.

    The last ``ARCH:`` line decides when there is one. Without it, the last code fence holding an
    architecture does, then the prose: if it names several, the one not in ``seen`` is taken,
    and several unseen ones are ambiguous.
    """
    lines = _ARCH_LINE.findall(text)
    if lines:
        value = lines[-1].strip()
        try:
            return _decode(value, space)
        except ValueError as e:
            inside = _candidates(value, space)  # e.g. 'ARCH: 22212220 (deeper at the end)'
            if len(inside) == 1:
                return inside[0]
            raise ValueError(f"the line 'ARCH: {value}' is not usable: {e}") from e
    for block in reversed(_FENCE.findall(text)):
        options = [block, *block.splitlines()]
        for option in options:
            try:
                return _decode(option, space)
            except ValueError:
                continue
    found = _candidates(text, space)
    if not found:
        raise ValueError(
            f"the reply names no architecture of {space.name};"
            " end it with the line 'ARCH: <encoding>'"
        )
    if len(found) == 1:
        return found[0]
    known = set(seen)
    unseen = [a for a in found if a not in known]
    if len(unseen) == 1:
        return unseen[0]
    names = ", ".join(space.encode(a) for a in (unseen or found))
    raise ValueError(
        f"the reply names several architectures ({names}); give exactly one line 'ARCH: <encoding>'"
    )


# -- describing the problem ----------------------------------------------------------------------


def describe_space(space: TabularSpace) -> str:
    """The space in words: its own ``description``, the known benchmark's, or a generic line."""
    own = getattr(space, "description", None)
    if isinstance(own, str) and own.strip():
        return own.strip()
    return SPACE_DESCRIPTIONS.get(
        space.name.lower(),
        f"A network whose {space.positions} searchable positions each take one operation.",
    )


def describe_objective(objective: Objective, spec: TaskSpec) -> str:
    """What the score means, so the model knows what "better" is: accuracy, M-factor, a limit."""
    own = getattr(objective, "description", None)
    if isinstance(own, str) and own.strip():
        return own.strip()
    name = objective.name
    key = name.lower().replace("_", "-")
    if key == "accuracy":
        text = "maximise test accuracy; the score is the accuracy."
    elif key.startswith(("m-factor", "mfactor")):
        text = (
            "maximise the M-factor, which combines accuracy and model size: among architectures"
            " of equal accuracy, the one with fewer parameters scores higher."
        )
    elif key.startswith("latency"):
        device = name.split(":", 1)[1].split("<", 1)[0] if ":" in name else "the target device"
        limit = f" {spec.max_latency_ms:g} ms" if spec.max_latency_ms is not None else " its limit"
        text = (
            f"maximise accuracy among architectures whose inference latency on {device} is at"
            f" most{limit}; an architecture over the limit scores -inf whatever its accuracy."
        )
    else:
        text = f"maximise the score '{name}' shown in the history."
    # The spec's other targets (TV_Acc = 1, the M-factor's median-size max_params) only steer the
    # rulebook's rules; the M-factor has no size limit, so naming one would misstate the goal.
    return f"{name}: {text}"


def _examples(space: TabularSpace) -> list[dict[str, str]]:
    n = len(space.choices)
    out = [
        {"text": space.encode((c,) * space.positions), "meaning": f"{choice} at every position"}
        for c, choice in enumerate(space.choices)
    ]
    mixed = tuple(i % n for i in range(space.positions))
    names = ", ".join(space.choices[c] for c in mixed)
    out.append({"text": space.encode(mixed), "meaning": f"positions in order: {names}"})
    return out


def _history_rows(space: TabularSpace, history: list[Evaluation]) -> list[dict[str, str]]:
    rows = []
    for e in history:
        latency = e.metrics.latency_ms
        rows.append(
            {
                "number": str(e.number),
                "arch": space.encode(e.arch),
                "accuracy": f"{100 * e.record.accuracy:.2f}",
                "params": f"{e.record.params:,}" if e.record.params is not None else "n/a",
                "latency": f"{latency:.2f}" if latency is not None else "n/a",
                "score": _score(e.score),
                "feasible": "yes" if e.feasible else "no",
            }
        )
    return rows


def _score(score: float) -> str:
    return f"{score:.4f}" if score != float("-inf") else "-inf"


# -- the strategy --------------------------------------------------------------------------------


class GeniusStrategy:
    """GENIUS-style prompting: the space, the objective and every result so far -> one architecture.

    ``llm_calls`` holds every exchange of the latest search (re-asks included) and ``trace`` one
    JSON-ready dict per evaluation, aligned with ``evaluator.history``: ``number``, ``arch``
    (encoded), ``source`` ("llm", "reask" or "fallback"), ``calls`` (indices into
    ``llm_calls``) and ``errors`` (why an answer was refused).
    """

    name = "llm"

    def __init__(self, llm: BaseChatModel, *, model_name: str | None = None) -> None:
        self.llm = llm
        if model_name is None:
            model_name = name_of(llm)
        self.model_name = model_name
        self.llm_calls: list[LLMCall] = []
        self.trace: list[dict[str, Any]] = []

    def search(self, evaluator: Evaluator, seed: int) -> None:
        """Ask for one architecture per evaluation until the budget is spent."""
        self.llm_calls = []
        self.trace = []
        space = evaluator.space
        spec = evaluator.objective.spec()
        rng = random.Random(seed)
        system = render(
            "genius_system",
            space_name=space.name,
            size=f"{space.size():,}",
            dataset=evaluator.dataset,
            space_description=describe_space(space),
            positions=space.positions,
            choices=list(space.choices),
            examples=_examples(space),
            objective_text=describe_objective(evaluator.objective, spec),
            budget=evaluator.budget,
        )
        seen: set[Arch] = set()
        while evaluator.remaining > 0:
            arch, entry = self._propose(evaluator, system, rng, seen)
            seen.add(arch)
            evaluation = evaluator.evaluate(arch)
            self.trace.append({"number": evaluation.number, "arch": space.encode(arch), **entry})

    def _user_values(self, evaluator: Evaluator, error: str | None) -> dict[str, Any]:
        history = evaluator.history
        best = evaluator.best()
        return {
            "error": error,
            "space_name": evaluator.space.name,
            "history": _history_rows(evaluator.space, history),
            "show_latency": any(e.metrics.latency_ms is not None for e in history),
            "best": {
                "number": best.number,
                "arch": evaluator.space.encode(best.arch),
                "score": _score(best.score),
            }
            if best is not None and best.feasible and math.isfinite(best.score)
            else None,
            "budget": evaluator.budget,
            "remaining": evaluator.remaining,
        }

    def _propose(
        self, evaluator: Evaluator, system: str, rng: random.Random, seen: set[Arch]
    ) -> tuple[Arch, dict[str, Any]]:
        space = evaluator.space
        messages: list[BaseMessage] = [
            SystemMessage(content=system),
            HumanMessage(content=render("genius_user", **self._user_values(evaluator, None))),
        ]
        calls: list[int] = []
        errors: list[str] = []
        for source in ("llm", "reask"):
            reply = self._call(messages)
            calls.append(len(self.llm_calls) - 1)
            try:
                arch = self._check(parse_answer(reply, space, seen), evaluator, seen)
            except ValueError as e:
                errors.append(str(e))
                logger.info("%s answer refused: %s", self.model_name, e)
                retry = render("genius_user", **self._user_values(evaluator, str(e)))
                messages += [AIMessage(content=reply), HumanMessage(content=retry)]
                continue
            return arch, {"source": source, "calls": calls, "errors": errors}
        arch_or_none = random_unseen(space, rng, seen)
        if arch_or_none is None:  # every architecture seen: the budget exceeds the space
            arch_or_none = tuple(rng.randrange(len(space.choices)) for _ in range(space.positions))
        logger.warning(
            "%s gave no usable architecture twice (%s); evaluating a random one instead",
            self.model_name,
            errors[-1],
        )
        return arch_or_none, {"source": "fallback", "calls": calls, "errors": errors}

    @staticmethod
    def _check(arch: Arch, evaluator: Evaluator, seen: set[Arch]) -> Arch:
        if arch in seen:
            earlier = [e for e in evaluator.history if e.arch == arch]
            when = (
                f" (#{earlier[0].number}, accuracy {100 * earlier[0].record.accuracy:.2f}%)"
                if earlier
                else ""
            )
            raise ValueError(f"{evaluator.space.encode(arch)} was already evaluated{when}")
        return arch

    def _call(self, messages: list[BaseMessage]) -> str:
        started = time.perf_counter()
        response = self.llm.invoke(messages)
        latency = time.perf_counter() - started
        text = message_text(response)
        usage = getattr(response, "usage_metadata", None) or {}
        self.llm_calls.append(
            LLMCall(
                model=self.model_name,
                prompt="\n\n".join(f"[{_role(m)}]\n{m.content}" for m in messages),
                response=text,
                latency_s=latency,
                input_tokens=usage.get("input_tokens"),
                output_tokens=usage.get("output_tokens"),
            )
        )
        logger.debug("%s replied in %.1f s", self.model_name, latency)
        return text


def _role(message: BaseMessage) -> str:
    return {"system": "system", "human": "user", "ai": "assistant"}.get(message.type, message.type)
