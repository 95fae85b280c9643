"""Pull the candidate's Python module out of an LLM reply.

Models wrap code in many ways: ```python / ```py / bare ``` / ~~~ fences, several blocks (an
excerpt, then the full module), prose before and after, a fence left open when the reply was cut,
or no fence at all. The rule is the same everywhere: the code is the block that defines
``build_model``; among several, the last one that parses (a reply that revises itself ends with
the final version), else the last one that merely mentions ``def build_model`` so the validator
can report its syntax error to the code fixer.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

__all__ = ["defines_build_model", "extract_code"]

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")
_DEF = re.compile(r"^def[ \t]+build_model[ \t]*\(", re.MULTILINE)
_CODE_START = re.compile(
    r"^(import |from \S+ import |def |class |@|[A-Za-z_][A-Za-z0-9_]*\s*[:=]|\"\"\"|'''|#)"
)
#: Regions tried when a reply has no fences: enough for any real reply, bounded for a huge one.
_MAX_STARTS = 40
_NON_PYTHON = {"bash", "sh", "shell", "console", "json", "yaml", "text", "txt", "diff", "toml"}


@dataclass(frozen=True)
class _Block:
    text: str
    lang: str


def defines_build_model(code: str) -> bool:
    """True when ``code`` parses and defines ``build_model`` at module level."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "build_model"
        for node in tree.body
    )


def _fenced_blocks(reply: str) -> list[_Block]:
    """Every fenced block, in order; an unclosed last fence runs to the end of the reply."""
    lines = reply.split("\n")
    blocks: list[_Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence = opening.group("fence")
        lang = opening.group("info").strip().split(" ")[0].lower() if opening.group("info") else ""
        body: list[str] = []
        i += 1
        while i < len(lines):
            closing = _FENCE.match(lines[i])
            if (
                closing is not None
                and closing.group("fence")[0] == fence[0]
                and len(closing.group("fence")) >= len(fence)
                and not closing.group("info").strip()
            ):
                break
            body.append(lines[i])
            i += 1
        i += 1  # past the closing fence
        blocks.append(_Block(textwrap.dedent("\n".join(body)).strip("\n"), lang))
    return blocks


def _pick(candidates: list[str]) -> str | None:
    """The last candidate that parses and defines build_model, else the last that mentions it."""
    for text in reversed(candidates):
        if defines_build_model(text):
            return text
    for text in reversed(candidates):
        if _DEF.search(text):
            return text
    return None


def _largest_region(reply: str) -> str | None:
    """The largest run of lines that parses and defines build_model, for replies without fences."""
    lines = reply.split("\n")
    starts = [i for i, line in enumerate(lines) if _CODE_START.match(line)][:_MAX_STARTS]
    best: tuple[int, int] | None = None
    for start in starts:
        if best is not None and len(lines) - start <= best[1] - best[0]:
            break  # nothing later can be longer
        for end in range(len(lines), start, -1):
            if best is not None and end - start <= best[1] - best[0]:
                break
            chunk = "\n".join(lines[start:end])
            if defines_build_model(chunk):
                best = (start, end)
                break
    if best is None:
        return None
    return "\n".join(lines[best[0] : best[1]]).strip("\n")


def extract_code(reply: str) -> str:
    """The Python module defining ``build_model`` in an LLM reply.

    Raises ``ValueError`` saying what was found when no code defining ``build_model`` is there.
    """
    text = reply.replace("\r\n", "\n").replace("\r", "\n")
    blocks = _fenced_blocks(text)
    python = [b.text for b in blocks if b.lang not in _NON_PYTHON]
    chosen = _pick(python) or _pick([b.text for b in blocks])
    if chosen is not None:
        return chosen + "\n"
    stripped = text.strip()
    if defines_build_model(stripped):
        return stripped + "\n"
    region = _largest_region(text)
    if region is not None:
        return region + "\n"
    if _DEF.search(text):  # broken code without fences: let the validator name the syntax error
        return stripped + "\n"
    what = f"{len(blocks)} fenced block(s)" if blocks else "no fenced block"
    raise ValueError(
        f"no Python code defining build_model(input_shape, num_classes) in the reply ({what},"
        f" {len(text)} characters)"
    )
