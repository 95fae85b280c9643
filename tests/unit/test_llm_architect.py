"""The LLM architect with a scripted chat model, its prompts, and code extraction from replies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jinja2
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from archsmith.agents.extract import defines_build_model, extract_code
from archsmith.agents.interfaces import Architect, ArchitectProposal
from archsmith.agents.llm_architect import LLMArchitect, numbered
from archsmith.prompts import available, render
from archsmith.spec import TaskKind, TaskSpec

pytestmark = pytest.mark.llm

SPEC = TaskSpec(dataset="digits", input_shape=(1, 8, 8), num_classes=10, max_params=50_000)

CODE = '''"""CNN [32,64] residual, GAP, head [64]"""
import torch
from torch import nn


def build_model(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(input_shape[0], 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, num_classes),
    )'''

HELPER = """import torch
from torch import nn


class Block(nn.Module):
    def forward(self, x):
        return x"""

BEST: dict[str, Any] = {
    "iteration": 3,
    "code": CODE,
    "arch": None,
    "metrics": {"val_accuracy": 0.9321, "train_accuracy": 0.95, "fps": 12345.0},
    "combined_metric": 0.8765,
    "summary": "CNN [32] GAP head[64]",
}
INSTRUCTIONS = [
    {"code": "AMK", "meaning": "Add more kernel", "weight": 2.0},
    {"code": "ACL", "meaning": "Add convolutional layer", "weight": 1.0},
]
HISTORY: list[dict[str, Any]] = [
    {
        "iteration": i,
        "summary": f"cand{i}",
        "status": "ok" if i % 3 else "failed",
        "metrics": {"val_accuracy": 0.5 + i / 100, "fps": 1000.0 * i},
        "combined_metric": 0.4 + i / 100,
        "instructions": [],
    }
    for i in range(1, 9)
]


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


def fenced(code: str, lang: str = "python", fence: str = "```") -> str:
    return f"{fence}{lang}\n{code}\n{fence}"


# -- extraction ------------------------------------------------------------------------------------

REPLIES: list[tuple[str, str]] = [
    ("python fence", fenced(CODE)),
    ("py fence", "Here you go:\n\n" + fenced(CODE, "py") + "\n\nThis adds a residual stage."),
    ("bare fence", "Sure.\n" + fenced(CODE, "") + "\nDone."),
    ("tilde fence", fenced(CODE, "python", "~~~")),
    ("prose around", "I widened the convs as asked (AMK).\n\n" + fenced(CODE) + "\n\nNotes:\n- x"),
    ("helper then full", fenced(HELPER) + "\n\nFull module:\n" + fenced(CODE)),
    ("full then usage", fenced(CODE) + "\nUsage:\n" + fenced("model = build_model((1, 8, 8), 10)")),
    (
        "old and revised",
        "Original:\n"
        + fenced(CODE.replace("32, 3", "16, 3").replace("Linear(32", "Linear(16"))
        + "\nRevised:\n"
        + fenced(CODE),
    ),
    ("bash block first", fenced("pip install torch", "bash") + "\n" + fenced(CODE)),
    ("no fences", CODE),
    ("no fences with prose", "Here is the model:\n\n" + CODE + "\n\nIt should train fast."),
    ("unclosed fence (cut reply)", "Model:\n```python\n" + CODE),
    (
        "indented fence in a list",
        "1. The code:\n   ```python\n"
        + "\n".join("   " + ln if ln else "" for ln in CODE.splitlines())
        + "\n   ```",
    ),
    ("crlf", fenced(CODE).replace("\n", "\r\n")),
    ("python3 tag with title", fenced(CODE, "python3 title=model.py")),
]


@pytest.mark.parametrize(("name", "reply"), REPLIES, ids=[n for n, _ in REPLIES])
def test_extract_code_from_realistic_replies(name: str, reply: str) -> None:
    code = extract_code(reply)
    assert defines_build_model(code), name
    assert code.strip() == CODE.strip(), name


def test_extract_keeps_broken_code_that_defines_build_model() -> None:
    """A syntax error is the validator's to report, with its line, to the code fixer."""
    broken = CODE.replace("nn.ReLU(),", "nn.ReLU(,")
    code = extract_code("Try this:\n" + fenced(broken))
    assert "def build_model" in code
    assert not defines_build_model(code)


def test_extract_prefers_parsing_block_over_broken_one() -> None:
    broken = CODE.replace("nn.ReLU(),", "nn.ReLU(,")
    assert extract_code(fenced(CODE) + "\n" + fenced(broken)).strip() == CODE.strip()


@pytest.mark.parametrize(
    "reply",
    [
        "I cannot help with that.",
        fenced(HELPER),
        fenced("def make_model():\n    return None"),
        "",
    ],
)
def test_extract_raises_when_there_is_no_build_model(reply: str) -> None:
    with pytest.raises(ValueError, match="build_model"):
        extract_code(reply)


# -- prompts ---------------------------------------------------------------------------------------


def test_templates_are_shipped() -> None:
    assert set(available()) >= {
        "architect_system",
        "architect_initial",
        "architect_refine",
        "code_fixer",
    }


def test_render_is_strict_about_missing_values() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render("architect_system")
    with pytest.raises(jinja2.TemplateNotFound):
        render("no_such_prompt")


# -- the architect ---------------------------------------------------------------------------------


def test_llm_architect_satisfies_the_protocol() -> None:
    architect: Architect = LLMArchitect(fake(fenced(CODE)), model_name="fake")
    assert architect.name == "llm:fake"


def test_initial_proposal() -> None:
    llm = fake("Here is a first model.\n" + fenced(CODE))
    prop = LLMArchitect(llm, model_name="fake").propose(SPEC, [], None, [], 1)
    assert prop.code.strip() == CODE.strip()
    assert prop.summary == "CNN [32,64] residual, GAP, head [64]"
    system, human = llm.seen[0]
    assert isinstance(system, SystemMessage)
    assert isinstance(human, HumanMessage)
    assert "build_model(input_shape: tuple[int, ...], num_classes: int)" in str(system.content)
    prompt = str(human.content)
    assert "digits" in prompt
    assert "[1, 8, 8]" in prompt
    assert "at most 50000 parameters" in prompt
    assert len(prop.llm_calls) == 1
    assert prop.llm_calls[0].model == "fake"
    assert prop.llm_calls[0].latency_s >= 0.0


def test_refine_prompt_holds_instructions_best_and_history() -> None:
    llm = fake(fenced(CODE))
    architect = LLMArchitect(llm, model_name="fake")
    prop = architect.propose(SPEC, INSTRUCTIONS, BEST, HISTORY, 9)
    prompt = str(llm.seen[0][1].content)
    assert "AMK: Add more kernel (weight 2.00)" in prompt
    assert "ACL: Add convolutional layer (weight 1.00)" in prompt
    assert prompt.index("AMK") < prompt.index("ACL: Add")
    assert "val_accuracy: 0.9321" in prompt
    assert "fps: 1.234e+04" in prompt
    assert "CM 0.8765" in prompt
    assert "nn.AdaptiveAvgPool2d(1)" in prompt  # the best code
    assert "iteration 8 [ok]: cand8" in prompt
    assert "iteration 6 [failed]" in prompt
    assert "cand3;" not in prompt  # only the last five
    assert prop.llm_calls[0].prompt.endswith(prompt)
    assert prop.applied[0].startswith("asked: AMK")


def test_text_task_prompt_explains_token_ids() -> None:
    llm = fake(fenced(CODE))
    spec = TaskSpec(
        dataset="imdb", task=TaskKind.TEXT_CLASSIFICATION, input_shape=(256,), num_classes=2
    )
    LLMArchitect(llm, model_name="fake").propose(spec, [], None, [], 1)
    prompt = str(llm.seen[0][1].content)
    assert "text_classification" in prompt
    assert "token ids" in prompt


def test_token_usage_is_recorded() -> None:
    reply = AIMessage(
        content=fenced(CODE),
        usage_metadata={"input_tokens": 321, "output_tokens": 45, "total_tokens": 366},
    )
    prop = LLMArchitect(fake(reply), model_name="fake").propose(SPEC, [], None, [], 1)
    assert prop.llm_calls[0].input_tokens == 321
    assert prop.llm_calls[0].output_tokens == 45


@pytest.mark.parametrize(
    ("reply", "summary"),
    [("I'm sorry, I can't design that.", "reply without code"), ("", "empty reply")],
)
def test_reply_without_code_fails_validation_saying_so(reply: str, summary: str) -> None:
    """The fixer must read "no Python code", not a syntax error from parsing English."""
    prop = LLMArchitect(fake(reply), model_name="fake").propose(SPEC, [], None, [], 1)
    assert prop.summary == summary
    assert prop.llm_calls[0].response == reply
    assert reply in prop.code  # kept for the fixer, as comments
    with pytest.raises(Exception, match="your reply contained no Python code") as raised:
        exec(compile(prop.code, "candidate.py", "exec"), {})
    assert type(raised.value).__name__ == "NoPythonCode"


def test_repair_shows_the_error_and_its_line() -> None:
    broken = CODE.replace("nn.Linear(32, num_classes)", "nn.Linear(31, num_classes)")
    line = broken.splitlines().index("        nn.Linear(31, num_classes),") + 1
    llm = fake("Fixed:\n" + fenced(CODE))
    architect = LLMArchitect(llm, model_name="fake")
    failing = ArchitectProposal(code=broken, summary="x")
    error = {
        "type": "RuntimeError",
        "message": "mat1 and mat2 shapes cannot be multiplied (3x32 and 31x10)",
        "line": line,
    }
    fixed = architect.repair(SPEC, failing, error, BEST, 1)
    prompt = str(llm.seen[0][1].content)
    assert "Type: RuntimeError" in prompt
    assert "mat1 and mat2 shapes cannot be multiplied" in prompt
    assert f"Line {line}: nn.Linear(31, num_classes)," in prompt
    assert f"{line} |         nn.Linear(31, num_classes)," in prompt
    assert "repair attempt 1" in prompt
    assert fixed.code.strip() == CODE.strip()
    assert fixed.llm_calls[0].response.startswith("Fixed:")


def test_repair_without_a_line_and_after_out_of_memory() -> None:
    llm = fake(fenced(CODE))
    failing = ArchitectProposal(code=CODE, summary="x")
    LLMArchitect(llm, model_name="fake").repair(
        SPEC, failing, {"type": "OutOfMemory", "message": "", "line": None}, None, 2
    )
    prompt = str(llm.seen[0][1].content)
    assert "Type: OutOfMemory" in prompt
    assert "Line " not in prompt
    assert "make the model smaller" in prompt


def test_numbered() -> None:
    assert numbered("a\nb") == "1 | a\n2 | b"
