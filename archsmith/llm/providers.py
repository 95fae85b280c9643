"""The LLM provider factory: ``--llm offline | openai:MODEL | gemini:MODEL`` to a chat model.

Everything provider-specific lives here so that callers only see a LangChain ``BaseChatModel``
(or ``None`` for the offline path). The clients retry transient failures themselves, which keeps
the result a ``BaseChatModel`` so structured output and tool binding still work on it.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Final

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from pydantic import SecretStr

from archsmith.config import DEFAULT_LLM_TIMEOUT_S
from archsmith.errors import InputError
from archsmith.llm.failures import (
    GOOGLE_KEY_ENV,
    OPENAI_KEY_ENV,
    RETRY_STATUS,
    LLMConfigError,
    llm_failure,
)

__all__ = [
    "DEFAULT_GEMINI_MODEL",
    "DEFAULT_OPENAI_MODEL",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_TIMEOUT_S",
    "PLACEHOLDER_API_KEY",
    "RETRY_BASE_ENV",
    "check_llm",
    "default_llm",
    "describe_llm",
    "make_llm",
    "model_name",
    "parse_llm",
    "retry_base",
]

log = logging.getLogger(__name__)

_GEMINI_KEY_ALIAS: Final = "GEMINI_API_KEY"
DEFAULT_OPENAI_MODEL: Final = "gpt-4o"
DEFAULT_GEMINI_MODEL: Final = "gemini-2.5-pro"
DEFAULT_TEMPERATURE: Final = 0.5
"""The paper's sampling temperature for the architect."""
PLACEHOLDER_API_KEY: Final = "not-needed"
"""Sent when ``base_url`` is given and no key is set: self-hosted OpenAI-compatible servers (vLLM,
Ollama, llama.cpp) usually ignore the key, but the clients refuse to start without one."""
RETRY_BASE_ENV: Final = "ARCHSMITH_LLM_RETRY_BASE_S"
"""First backoff wait in seconds for the Gemini client and for `call_through_outage` (doubling
after each retry); tests shrink it. The OpenAI SDK's own backoff is fixed (0.5 s doubling to 8 s)
and follows the server's ``Retry-After``/``retry-after-ms`` headers instead."""
DEFAULT_TIMEOUT_S: Final = DEFAULT_LLM_TIMEOUT_S
"""How long one request may wait for a reply (``--llm-timeout``, ``ARCHSMITH_LLM_TIMEOUT_S``)."""

_OPENAI_DEFAULT_URL: Final = "https://api.openai.com/v1"
_GEMINI_DEFAULT_URL: Final = "https://generativelanguage.googleapis.com"
_ACCEPTED: Final = (
    "'offline', 'openai:MODEL' (e.g. openai:gpt-4o) or 'gemini:MODEL' (e.g. gemini:gemini-2.5-pro)"
)


def parse_llm(value: str) -> tuple[str, str | None]:
    """Split an ``--llm`` value into (provider, model); ``("offline", None)`` for offline."""
    text = value.strip()
    if text == "offline":
        return ("offline", None)
    provider, sep, model = text.partition(":")
    provider = provider.strip().lower()
    model = model.strip()
    if sep and provider in ("openai", "gemini") and model:
        return (provider, model)
    raise InputError(f"invalid LLM {value!r}; use {_ACCEPTED}")


def default_llm() -> str:
    """The LLM to use when none is named: whichever provider has a key, else offline."""
    if os.environ.get(OPENAI_KEY_ENV):
        return f"openai:{DEFAULT_OPENAI_MODEL}"
    if _gemini_key():
        return f"gemini:{DEFAULT_GEMINI_MODEL}"
    return "offline"


def make_llm(
    value: str,
    *,
    base_url: str | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_retries: int = 4,
    retry_base_s: float | None = None,
) -> BaseChatModel | None:
    """Build the chat model for ``value``, or None for offline; no request is made.

    ``base_url`` points the client at another endpoint: any OpenAI-compatible server (vLLM,
    Ollama, a gateway) for ``openai:``, a Gemini-API proxy for ``gemini:``. With ``base_url`` a
    missing key is allowed and `PLACEHOLDER_API_KEY` is sent, since such servers usually need
    none. ``max_retries`` counts retries after the first attempt, for both providers.
    ``retry_base_s`` (default: ``$ARCHSMITH_LLM_RETRY_BASE_S``, else 1 s) is Gemini's first
    backoff wait.
    """
    provider, model = parse_llm(value)
    if provider == "offline" or model is None:
        return None
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise LLMConfigError(f"LLM base URL {base_url!r} must start with http:// or https://")
    if max_retries < 0:
        raise LLMConfigError(f"max_retries must be 0 or more, got {max_retries}")
    if not timeout_s > 0:
        raise LLMConfigError(f"the LLM request timeout must be more than 0 s, got {timeout_s}")
    if provider == "openai":
        return _make_openai(model, base_url, temperature, timeout_s, max_retries)
    return _make_gemini(
        model, base_url, temperature, timeout_s, max_retries, retry_base(retry_base_s)
    )


def check_llm(llm: BaseChatModel) -> None:
    """Make one tiny call so a bad key or an unreachable server fails the run at start.

    A rejected key (401/403, or Gemini's 400 ``API_KEY_INVALID``) raises ``LLMAuthError`` naming
    the variable; anything else raises ``LLMUnavailableError`` with the cause chained.
    """
    name = model_name(llm)
    cap: dict[str, Any] = (
        {"max_output_tokens": 8} if name.startswith("gemini:") else {"max_tokens": 8}
    )
    try:
        llm.invoke([HumanMessage("Reply with the single word: ok")], **cap)
    except Exception as e:
        raise llm_failure(e, name) from e
    log.debug("LLM preflight passed for %s", name)


def describe_llm(value: str, *, base_url: str | None = None) -> str:
    """One line for the start banner: which LLM and where it is reached."""
    provider, model = parse_llm(value)
    if provider == "offline":
        why = "no LLM key set" if default_llm() == "offline" else "chosen with --llm offline"
        return f"offline architect ({why})"
    return f"{provider}:{model} at {_endpoint(provider, base_url)}"


def model_name(llm: BaseChatModel) -> str:
    """``provider:model`` of a model built by `make_llm`, the same form ``--llm`` takes."""
    from langchain_google_genai import ChatGoogleGenerativeAI
    from langchain_openai import ChatOpenAI

    if isinstance(llm, ChatOpenAI):
        return f"openai:{llm.model_name}"
    if isinstance(llm, ChatGoogleGenerativeAI):
        return f"gemini:{llm.model.removeprefix('models/')}"
    name = getattr(llm, "model_name", None) or getattr(llm, "model", None)
    return f"{llm._llm_type}:{name}" if name else llm._llm_type


def retry_base(value: float | None) -> float:
    """The first backoff wait: ``value``, else ``$ARCHSMITH_LLM_RETRY_BASE_S``, else 1 s."""
    if value is None:
        raw = os.environ.get(RETRY_BASE_ENV)
        if not raw:
            return 1.0
        try:
            value = float(raw)
        except ValueError as e:
            raise LLMConfigError(f"{RETRY_BASE_ENV}={raw!r} is not a number of seconds") from e
    if not value >= 0:
        raise LLMConfigError(f"the LLM retry backoff base must be 0 s or more, got {value}")
    return value


# -- providers -----------------------------------------------------------------------------------


def _make_openai(
    model: str, base_url: str | None, temperature: float, timeout_s: float, max_retries: int
) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    key = _require_key(OPENAI_KEY_ENV, os.environ.get(OPENAI_KEY_ENV), base_url, "openai")
    log.info("LLM openai:%s at %s", model, _endpoint("openai", base_url))
    # The OpenAI SDK retries 408/409/429/5xx, connection errors and timeouts, never 401/403.
    return ChatOpenAI(
        model=model,
        api_key=SecretStr(key),
        base_url=base_url,
        temperature=temperature,
        timeout=timeout_s,
        max_retries=max_retries,
    )


def _make_gemini(
    model: str,
    base_url: str | None,
    temperature: float,
    timeout_s: float,
    max_retries: int,
    retry_base_s: float,
) -> BaseChatModel:
    key = _require_key(GOOGLE_KEY_ENV, _gemini_key(), base_url, "gemini")
    log.info("LLM gemini:%s at %s", model, _endpoint("gemini", base_url))
    chat_cls = _gemini_class()
    return chat_cls(
        model=model,
        google_api_key=SecretStr(key),
        base_url=base_url,
        vertexai=False,  # a GOOGLE_API_KEY means the Developer API, whatever the environment says
        temperature=temperature,
        timeout=timeout_s,
        max_retries=max_retries + 1,  # the SDK counts attempts, the first included
        retry_base_s=retry_base_s,
    )


@functools.cache
def _gemini_class() -> type[BaseChatModel]:
    """``ChatGoogleGenerativeAI`` whose SDK retries use our backoff base and status codes.

    langchain-google-genai passes the SDK only ``attempts`` per request, so the waits are fixed at
    1 s doubling with up to 1 s of jitter; this subclass adds ``initial_delay``/``jitter`` from
    ``retry_base_s`` and the explicit retryable codes (never 401/403). Built lazily so that
    importing this module does not import the Google SDK.
    """
    from google.genai.types import GenerateContentConfig, HttpOptions, HttpRetryOptions
    from langchain_google_genai import ChatGoogleGenerativeAI

    class ArchsmithGeminiChat(ChatGoogleGenerativeAI):
        retry_base_s: float = 1.0
        """First backoff wait; doubles after each retry, plus up to the same again of jitter."""

        def _build_request_config(self, *args: Any, **kwargs: Any) -> GenerateContentConfig:
            attempts = kwargs.get("max_retries")
            if attempts is not None and "http_options" not in kwargs:
                kwargs["http_options"] = HttpOptions(
                    retry_options=HttpRetryOptions(
                        attempts=attempts,
                        initial_delay=self.retry_base_s,
                        jitter=self.retry_base_s,
                        http_status_codes=list(RETRY_STATUS),
                    )
                )
            config: GenerateContentConfig = super()._build_request_config(*args, **kwargs)
            return config

    return ArchsmithGeminiChat


# -- helpers -------------------------------------------------------------------------------------


def _gemini_key() -> str | None:
    return os.environ.get(GOOGLE_KEY_ENV) or os.environ.get(_GEMINI_KEY_ALIAS) or None


def _require_key(env: str, key: str | None, base_url: str | None, provider: str) -> str:
    if key:
        return key
    if base_url is not None:
        log.info("no %s set; sending a placeholder key to %s", env, base_url)
        return PLACEHOLDER_API_KEY
    raise LLMConfigError(
        f"--llm {provider}:... needs an API key: set {env} or use --llm offline "
        "(or give a base URL for a self-hosted server that needs no key)"
    )


def _endpoint(provider: str, base_url: str | None) -> str:
    """The URL the client will talk to, following the SDKs' own environment variables."""
    if base_url:
        return base_url
    if provider == "openai":
        return (
            os.environ.get("OPENAI_BASE_URL")
            or os.environ.get("OPENAI_API_BASE")
            or _OPENAI_DEFAULT_URL
        )
    return os.environ.get("GOOGLE_GEMINI_BASE_URL") or _GEMINI_DEFAULT_URL
