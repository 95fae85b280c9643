"""The planner's front ends: the offline rules and the LLM's structured output, and `plan`.

Both read a request into a ``PlanIntent`` and hand it to the same spec builder. The LLM front end
re-asks once with the error when its answer is rejected: models usually fix a named mistake.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ValidationError

from archsmith.agents.interfaces import PlanRefusedError, PlanResult
from archsmith.agents.planning.build import build_result, plan_warnings
from archsmith.agents.planning.choice import choose_dataset
from archsmith.agents.planning.intent import (
    REAL_TIME_FPS,
    PlanIntent,
    fmt,
    known_datasets_message,
)
from archsmith.agents.planning.phrases import intent_from_text
from archsmith.errors import format_validation_error
from archsmith.llm.calls import LLMCall
from archsmith.llm.failures import llm_failure
from archsmith.llm.providers import model_name

__all__ = ["plan", "plan_offline", "plan_with_llm"]

logger = logging.getLogger(__name__)


def plan_offline(
    request: str,
    *,
    dataset: str | None = None,
    image_size: int | None = None,
    cache_dir: Path | None = None,
) -> PlanResult:
    """Read ``request`` with deterministic rules (no LLM) into a validated TaskSpec.

    ``dataset`` (``--dataset``: a registry name or a path) or a path in the request chooses the
    data; the user's own data is prepared into ``cache_dir`` (default: the settings') to read
    its shape and classes. Raises PlanRefusedError when no dataset is named, when constraints
    contradict, or when a value falls outside the spec's range; InputError when the user's data
    cannot be used. Each message says what to change.
    """
    _check_request(request)
    chosen = choose_dataset(request, dataset, image_size, cache_dir)
    if chosen is None:
        intent, notes = intent_from_text(request)
        return build_result(intent, notes, "offline", image_size=image_size)
    intent, notes = intent_from_text(chosen.words, chosen.name)
    return build_result(
        intent, [*chosen.notes, *notes], "offline", own=chosen.own, image_size=image_size
    )


def _check_request(request: str) -> None:
    if not request or not request.strip():
        raise PlanRefusedError(
            "the request is empty; describe the task, e.g. 'a 1000-FPS malaria classifier'.\n"
            + known_datasets_message()
        )


#: One answer and one re-ask with the error: enough for a named mistake, bounded in cost.
_LLM_ATTEMPTS = 2


def _system_prompt() -> str:
    return (
        "You turn a request for a neural network into the task it describes, for a neural"
        " architecture search. Fill the fields from what the request says; leave a field null"
        " when the request does not give it, and do not invent targets.\n"
        "Rules:\n"
        "- dataset: exactly one of the known datasets below, by its name; or, when the request"
        " names a file or folder of its own data, that path exactly as written.\n"
        "- val_accuracy_threshold: a fraction in (0, 1]; '95 %' is 0.95.\n"
        f"- fps_threshold: frames per second, > 0; 'real-time' means {fmt(REAL_TIME_FPS)}.\n"
        "- max_params, max_model_size_mb (1 MB = 1000 KB), max_latency_ms: upper limits, > 0.\n"
        "- emphasizes_energy / emphasizes_speed: true when the request stresses them; edge,"
        " embedded or mobile devices stress both.\n"
        "- weights: only when the request states numeric weights; otherwise null.\n"
        "- assumptions: one plain sentence for every reading that was not literal.\n"
        "If the request names no known dataset, set dataset to what it names; it will be refused.\n"
        + known_datasets_message()
    )


def _model_name(llm: BaseChatModel) -> str:
    for attr in ("model_name", "model", "model_id"):
        value = getattr(llm, attr, None)
        if isinstance(value, str) and value:
            return value
    return str(getattr(llm, "_llm_type", type(llm).__name__))


def _as_intent(raw: object) -> PlanIntent:
    if isinstance(raw, PlanIntent):
        return raw
    data = raw.model_dump() if isinstance(raw, BaseModel) else raw
    try:
        return PlanIntent.model_validate(data)
    except ValidationError as e:
        raise PlanRefusedError(
            f"the answer does not fit the schema:\n{format_validation_error(e, PlanIntent)}"
        ) from e


def _dump(raw: object) -> str:
    data = raw.model_dump() if isinstance(raw, BaseModel) else raw
    return json.dumps(data, default=str, sort_keys=True)


def plan_with_llm(
    request: str,
    llm: BaseChatModel,
    *,
    dataset: str | None = None,
    image_size: int | None = None,
    cache_dir: Path | None = None,
) -> PlanResult:
    """Ask ``llm`` for the request's intent as structured output, then validate it like offline.

    A rejected answer (schema, unknown dataset, out-of-range value) is sent back once with the
    error, since models usually fix a named mistake; a second rejection raises PlanRefusedError.
    A failed call raises ``LLMAuthError`` or ``LLMUnavailableError``: planning comes before any
    work, so there is nothing to wait for. ``--dataset`` or a path in the request is read (and
    the user's data prepared) before the LLM is asked, as offline, and decides the dataset
    whatever the LLM answers: bad data stops before any call is paid for.
    """
    _check_request(request)
    chosen = choose_dataset(request, dataset, image_size, cache_dir)
    source = f"llm:{_model_name(llm)}"
    structured = llm.with_structured_output(PlanIntent)
    messages: list[BaseMessage] = [SystemMessage(_system_prompt()), HumanMessage(request)]
    calls: list[LLMCall] = []
    for attempt in range(1, _LLM_ATTEMPTS + 1):
        raw: object = None
        started = time.perf_counter()
        try:
            try:
                raw = structured.invoke(messages)
            except OutputParserException:
                raise  # an answer that did not parse: re-asked below
            except Exception as e:
                # The provider failed (an outage, a rejected key): no plan, and no run started.
                raise llm_failure(e, model_name(llm)) from e
            finally:
                calls.append(
                    LLMCall(
                        model=source.removeprefix("llm:"),
                        prompt="\n\n".join(f"[{m.type}]\n{m.content}" for m in messages),
                        response=_dump(raw) if raw is not None else "(no parsable answer)",
                        latency_s=time.perf_counter() - started,
                    )
                )
            intent, notes = _as_intent(raw), []
            if chosen is not None:
                notes = list(chosen.notes)
                if intent.dataset != chosen.name:
                    notes.append(
                        f"The LLM named the dataset {intent.dataset!r}; {chosen.name} is used."
                    )
                intent = intent.model_copy(update={"dataset": chosen.name})
            result = build_result(
                intent,
                notes,
                source,
                own=chosen.own if chosen is not None else None,
                image_size=image_size,
                cache_dir=cache_dir,
            )
            return result.model_copy(update={"llm_calls": calls})
        except (PlanRefusedError, OutputParserException) as e:
            error = str(e)
            logger.warning("planner answer %d from %s rejected: %s", attempt, source, error)
            if attempt == _LLM_ATTEMPTS:
                raise PlanRefusedError(
                    f"the LLM planner ({source}) gave no valid plan after a re-ask; last error:"
                    f" {error}"
                ) from e
            messages = [
                *messages,
                AIMessage(_dump(raw) if raw is not None else "(no parsable answer)"),
                HumanMessage(
                    f"That answer was rejected: {error}\nCorrect it and answer again with the"
                    " same fields."
                ),
            ]
    raise AssertionError("unreachable")  # pragma: no cover


def plan(
    request: str,
    llm: BaseChatModel | None,
    *,
    dataset: str | None = None,
    image_size: int | None = None,
    cache_dir: Path | None = None,
) -> PlanResult:
    """Plan with ``llm`` when one is configured, else with the deterministic offline rules.

    ``dataset`` and ``image_size`` are ``--dataset`` and ``--image-size``. Targets that cannot
    be met together (`plan_warnings`) are logged; the CLI shows them with the plan, before any
    work.
    """
    options: dict[str, Any] = {
        "dataset": dataset,
        "image_size": image_size,
        "cache_dir": cache_dir,
    }
    result = (
        plan_offline(request, **options) if llm is None else plan_with_llm(request, llm, **options)
    )
    for warning in plan_warnings(result.spec):
        logger.info("planner warning: %s", warning)
    return result
