"""One LLM exchange as the trace keeps it, and the text of a reply, for every LLM caller.

The planner, the architect and the bench's LLM strategy each record their calls in this one shape,
so a run's trace and a bench's ``results.json`` read the same way.
"""

from __future__ import annotations

from langchain_core.messages import BaseMessage
from pydantic import BaseModel, ConfigDict

__all__ = ["LLMCall", "message_text"]


class LLMCall(BaseModel):
    """One LLM exchange, kept for the trace."""

    model_config = ConfigDict(extra="forbid")

    model: str
    prompt: str
    response: str
    latency_s: float
    input_tokens: int | None = None
    output_tokens: int | None = None


def message_text(message: BaseMessage) -> str:
    """A reply's text whether its content is a string or a list of content blocks."""
    content = message.content
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)
