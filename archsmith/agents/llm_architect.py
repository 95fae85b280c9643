"""The LLM architect: the paper's LLM writes the candidate's PyTorch code.

The prompt carries everything the model needs to act like LEMONADE's architect: the task and its
limits, the candidate-code contract, the current best code with its measured metrics, the
critic's resolved instructions with their weights, and a short history. Prompts are Jinja files in
``archsmith/prompts``.

A reply without extractable code is not an exception: the proposal's code is a module that keeps
the reply as comments and raises ``NoPythonCode`` ("your reply contained no Python code"), so
validation fails on it like on any broken candidate and the code fixer receives that error, not a
syntax error from parsing prose. The graph needs no special path for it, and the trace keeps the
reply. A call that fails (an outage, a malformed completion) is retried through the outage window
(`call_through_outage`); past it, ``LLMOutageError`` stops the run, resumable.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import time
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from archsmith.agents.extract import extract_code
from archsmith.agents.interfaces import ArchitectProposal
from archsmith.agents.records import BestCandidate, ErrorRecord, HistoryEntry, Instruction
from archsmith.llm.calls import LLMCall, message_text
from archsmith.llm.outage import OutagePolicy, call_through_outage
from archsmith.llm.providers import model_name as provider_and_model
from archsmith.prompts import render
from archsmith.spec import TaskKind, TaskSpec

__all__ = [
    "CANDIDATE_CONTRACT",
    "HISTORY_LENGTH",
    "NO_CODE_ERROR",
    "LLMArchitect",
    "no_code_module",
    "numbered",
]

logger = logging.getLogger(__name__)

#: The candidate-code contract, in the words the LLM reads.
CANDIDATE_CONTRACT = """\
- A self-contained Python module that defines
  `build_model(input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module`.
- It may import only torch, torch.nn, torch.nn.functional, math and torchvision.
- The model takes a batch of shape (batch, *input_shape) and returns logits of shape
  (batch, num_classes); no softmax at the end.
- No data loading, training, file, network or process access: the framework trains, evaluates
  and measures every candidate the same way.
- No pretrained weights (nothing can be downloaded)."""

_TEXT_NOTE = (
    "inputs are int64 token ids (0 = padding, 1 = out of vocabulary); embed at least 20000 ids"
    " and map larger ids to 1"
)
#: Iterations of history shown in the refine prompt.
HISTORY_LENGTH = 5
_SUMMARY_CHARS = 120
_SHRINK_ERRORS = ("OutOfMemory", "MemoryError", "Timeout", "Killed")
#: The error type a reply without code fails validation with.
NO_CODE_ERROR = "NoPythonCode"


def numbered(code: str) -> str:
    """The code with right-aligned line numbers, so an error's line can be found at a glance."""
    lines = code.splitlines()
    width = len(str(len(lines)))
    return "\n".join(f"{i:>{width}} | {line}".rstrip() for i, line in enumerate(lines, start=1))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4g}"
    if value is None:
        return "n/a"
    return str(value)


def _history_rows(history: list[HistoryEntry]) -> list[dict[str, str]]:
    rows = []
    for h in history[-HISTORY_LENGTH:]:
        metrics = h.get("metrics") or {}
        rows.append(
            {
                "iteration": _fmt(h.get("iteration")),
                "status": _fmt(h.get("status")),
                "summary": _fmt(h.get("summary")),
                "val_accuracy": _fmt(metrics.get("val_accuracy")),
                "fps": _fmt(metrics.get("fps")),
                "cm": _fmt(h.get("combined_metric")),
            }
        )
    return rows


def _instruction_rows(instructions: list[Instruction]) -> list[dict[str, Any]]:
    ranked = sorted(instructions, key=lambda i: -float(i.get("weight", 0.0)))
    return [
        {
            "code": str(i.get("code", "?")),
            "meaning": str(i.get("meaning", "")),
            "weight": float(i.get("weight", 0.0)),
        }
        for i in ranked
    ]


def no_code_module(reply: str) -> str:
    """A module for a reply with no code: the reply as comments, then ``raise NoPythonCode``.

    Validating it fails with "your reply contained no Python code", which is what the code fixer
    should read; the raw prose would fail with a syntax error that points at an English word.
    """
    text = reply.replace("\x00", "")
    lines = text.splitlines()
    quoted = "\n".join(f"# {line}".rstrip() for line in lines) or "# (nothing)"
    empty = " (the reply was empty)" if not text.strip() else ""
    message = (
        f"your reply contained no Python code{empty}; answer with one ```python block holding"
        " the whole module that defines build_model(input_shape, num_classes)"
    )
    return (
        '"""The architect\'s reply, kept as comments: it contained no Python code."""\n\n'
        f"{quoted}\n\n\n"
        f"class {NO_CODE_ERROR}(Exception):\n"
        '    """The reply had no module defining build_model."""\n\n\n'
        f"raise {NO_CODE_ERROR}({message!r})\n"
    )


def _summary(code: str, fallback: str) -> str:
    """The module docstring's first line (the prompt asks for one), else ``fallback``."""
    try:
        doc = ast.get_docstring(ast.parse(code))
    except (SyntaxError, ValueError):
        doc = None
    line = (doc or "").strip().splitlines()[0] if doc and doc.strip() else fallback
    return line if len(line) <= _SUMMARY_CHARS else line[: _SUMMARY_CHARS - 3] + "..."


class LLMArchitect:
    """An architect backed by any LangChain chat model (OpenAI, Gemini, a local server, a fake)."""

    def __init__(
        self, llm: BaseChatModel, *, model_name: str, outage: OutagePolicy | None = None
    ) -> None:
        self.llm = llm
        self.model_name = model_name
        self.name = f"llm:{model_name}"
        self.outage = outage or OutagePolicy()
        #: How failures name the model, as ``--llm`` does ('openai:gpt-4o').
        self.provider_model = provider_and_model(llm)

    def _task_values(self, spec: TaskSpec) -> dict[str, Any]:
        note = _TEXT_NOTE if spec.task is TaskKind.TEXT_CLASSIFICATION else ""
        return {"spec": spec, "text_note": note}

    def _call(self, system: str, prompt: str) -> tuple[str, LLMCall]:
        messages = [SystemMessage(content=system), HumanMessage(content=prompt)]
        started = time.perf_counter()

        def invoke() -> BaseMessage:
            nonlocal started
            started = time.perf_counter()  # the latency of the call that answered, not the waits
            return self.llm.invoke(messages)

        response = call_through_outage(invoke, name=self.provider_model, policy=self.outage)
        latency = time.perf_counter() - started
        text = message_text(response)
        usage = getattr(response, "usage_metadata", None) or {}
        call = LLMCall(
            model=self.model_name,
            prompt=f"[system]\n{system}\n\n[user]\n{prompt}",
            response=text,
            latency_s=latency,
            input_tokens=usage.get("input_tokens"),
            output_tokens=usage.get("output_tokens"),
        )
        logger.info(
            "%s replied in %.1f s (%s in / %s out tokens)",
            self.name,
            latency,
            call.input_tokens,
            call.output_tokens,
        )
        return text, call

    def _proposal(self, reply: str, call: LLMCall, applied: list[str]) -> ArchitectProposal:
        try:
            code = extract_code(reply)
        except ValueError as e:
            logger.warning("%s: %s; the code fixer will be told", self.name, e)
            return ArchitectProposal(
                code=no_code_module(reply),
                summary=("empty reply" if not reply.strip() else "reply without code"),
                applied=applied,
                llm_calls=[call],
            )
        fallback = f"{self.name} candidate ({len(code.splitlines())} lines)"
        return ArchitectProposal(
            code=code, summary=_summary(code, fallback), applied=applied, llm_calls=[call]
        )

    def propose(
        self,
        spec: TaskSpec,
        instructions: list[Instruction],
        best: BestCandidate | None,
        history: list[HistoryEntry],
        iteration: int,
    ) -> ArchitectProposal:
        """Ask the LLM for the first model, or for the best model changed by the instructions."""
        system = render("architect_system", contract=CANDIDATE_CONTRACT)
        rows = _instruction_rows(instructions)
        values = self._task_values(spec)
        if best is None or not best.get("code"):
            prompt = render("architect_initial", instructions=rows, **values)
        else:
            metrics = best.get("metrics") or {}
            prompt = render(
                "architect_refine",
                iteration=iteration,
                best_iteration=_fmt(best.get("iteration")),
                best_cm=_fmt(best.get("combined_metric")),
                best_summary=_fmt(best.get("summary")),
                best_metrics={k: _fmt(v) for k, v in metrics.items()},
                best_code=str(best["code"]).rstrip("\n"),
                instructions=rows,
                history=_history_rows(history),
                **values,
            )
        reply, call = self._call(system, prompt)
        applied = [f"asked: {r['code']} ({r['meaning']}, weight {r['weight']:.2f})" for r in rows]
        return self._proposal(reply, call, applied)

    def repair(
        self,
        spec: TaskSpec,
        proposal: ArchitectProposal,
        error: ErrorRecord,
        best: BestCandidate | None,
        attempt: int,
    ) -> ArchitectProposal:
        """Ask the LLM to fix the failing code, showing the error and the line it points at."""
        lines = proposal.code.splitlines()
        line = error.get("line")
        line_no = line if isinstance(line, int) and 1 <= line <= len(lines) else None
        kind = str(error.get("type") or "Error")
        message = str(error.get("message") or "")
        shrink = any(k in kind for k in _SHRINK_ERRORS) or "out of memory" in message.lower()
        system = render("architect_system", contract=CANDIDATE_CONTRACT)
        prompt = render(
            "code_fixer",
            error_type=kind,
            error_message=message or "(no message)",
            error_line=line_no,
            error_code_line=lines[line_no - 1].strip() if line_no is not None else "",
            attempt=attempt,
            shrink=shrink,
            numbered_code=numbered(proposal.code),
            **self._task_values(spec),
        )
        reply, call = self._call(system, prompt)
        note = json.dumps({"type": kind, "line": line_no})
        return self._proposal(reply, call, [f"repair {attempt} of {note}"])
