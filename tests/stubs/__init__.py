"""Test doubles that speak real wire protocols, so the real clients run against them.

`StubLLMServer` answers as OpenAI chat completions and as the Gemini API; `isolate_llm_env` makes
sure no test can reach a real provider whatever the developer's shell exports.
"""

from __future__ import annotations

import pytest

from .llm_server import RecordedRequest, Reply, StubLLMServer

__all__ = ["DEAD_URL", "RecordedRequest", "Reply", "StubLLMServer", "isolate_llm_env"]

DEAD_URL = "http://127.0.0.1:9"
"""The discard port on loopback: a client that falls back to its default endpoint lands here."""

_CLEARED = (
    "OPENAI_API_BASE",
    "OPENAI_ORG_ID",
    "OPENAI_ORGANIZATION",
    "GEMINI_API_KEY",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_VERTEX_BASE_URL",
    "LANGSMITH_GATEWAY",
    "LANGSMITH_GATEWAY_API_KEY",
    "LANGSMITH_TRACING",
    "LANGCHAIN_TRACING_V2",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


def isolate_llm_env(monkeypatch: pytest.MonkeyPatch, *, retry_base_s: float = 0.01) -> None:
    """Dummy keys, default endpoints on a dead loopback port, no proxies, no tracing, fast retries.

    Real keys in the environment are replaced, so even a client built without ``base_url`` sends
    nothing of value and reaches nothing beyond this machine.
    """
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    monkeypatch.setenv("GOOGLE_API_KEY", "test-not-a-real-key")
    monkeypatch.setenv("OPENAI_BASE_URL", DEAD_URL + "/v1")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", DEAD_URL)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("ARCHSMITH_LLM_RETRY_BASE_S", str(retry_base_s))
