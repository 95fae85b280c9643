"""The LLM provider factory: ``--llm offline | openai:MODEL | gemini:MODEL`` to a chat model.

Everything provider-specific lives here so that the planner, architect and code fixer only see a
LangChain ``BaseChatModel`` (or ``None`` for the offline path) and can call ``invoke``,
``with_structured_output`` and ``bind_tools`` on it.

Failure policy, so that an overnight run neither dies on a blip nor loops on a bad key:

- A missing key is an ``LLMConfigError`` raised by `make_llm` before any request or other work.
- Rate limits (429), server errors (5xx), request timeouts (408) and connection failures are retried
  with exponential backoff and jitter by the clients' own retry loops (the OpenAI SDK's, and the
  google-genai SDK's tenacity loop). Retrying inside the client, rather than wrapping the model in
  ``Runnable.with_retry``, keeps the result a ``BaseChatModel`` so structured output and tool
  binding still work on it.
- 401 and 403 are never retried; `check_llm` turns them into ``LLMAuthError`` naming the variable
  to fix, and any other preflight failure into ``LLMUnavailableError`` carrying the cause.
- Mid-run calls (the architect, the code fixer) go through `call_through_outage`: a provider
  incident lasts minutes, far longer than the clients' few seconds of retries, so every failure
  that may pass (5xx, 429, a timeout, no connection, a malformed completion) is retried with
  backoff for an outage window (`OutagePolicy`, default 10 minutes), each wait logged as a
  warning; then ``LLMOutageError`` stops the run cleanly, resumable. A rejected key or request
  stops it at once, since waiting cannot fix it.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

from langchain_core.exceptions import (
    ModelAuthenticationError,
    ModelError,
    ModelPermissionDeniedError,
    ModelTimeoutError,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from pydantic import SecretStr

from archsmith.config import DEFAULT_LLM_OUTAGE_WINDOW_S, DEFAULT_LLM_TIMEOUT_S
from archsmith.errors import ArchsmithError, InputError

__all__ = [
    "DEFAULT_GEMINI_MODEL",
    "DEFAULT_OPENAI_MODEL",
    "DEFAULT_OUTAGE_WINDOW_S",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_TIMEOUT_S",
    "GOOGLE_KEY_ENV",
    "OPENAI_KEY_ENV",
    "PLACEHOLDER_API_KEY",
    "RETRY_BASE_ENV",
    "LLMAuthError",
    "LLMConfigError",
    "LLMOutageError",
    "LLMUnavailableError",
    "OutagePolicy",
    "call_through_outage",
    "check_llm",
    "default_llm",
    "describe_llm",
    "llm_failure",
    "make_llm",
    "model_name",
    "parse_llm",
    "span",
]

log = logging.getLogger(__name__)

OPENAI_KEY_ENV: Final = "OPENAI_API_KEY"
GOOGLE_KEY_ENV: Final = "GOOGLE_API_KEY"
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
DEFAULT_OUTAGE_WINDOW_S: Final = DEFAULT_LLM_OUTAGE_WINDOW_S
"""How long a mid-run call keeps retrying before the run stops (``--llm-outage-window``,
``ARCHSMITH_LLM_OUTAGE_WINDOW_S``)."""

_OPENAI_DEFAULT_URL: Final = "https://api.openai.com/v1"
_GEMINI_DEFAULT_URL: Final = "https://generativelanguage.googleapis.com"
_RETRY_STATUS: Final = (408, 429, 500, 502, 503, 504)
_ACCEPTED: Final = (
    "'offline', 'openai:MODEL' (e.g. openai:gpt-4o) or 'gemini:MODEL' (e.g. gemini:gemini-2.5-pro)"
)


class LLMConfigError(InputError):
    """The LLM cannot be configured as asked (a missing key, a malformed base URL)."""


class LLMAuthError(InputError):
    """The provider rejected the key (401/403); the message names the variable to fix."""


class LLMUnavailableError(ArchsmithError):
    """The provider could not be reached or failed for a reason other than the key."""


class LLMOutageError(LLMUnavailableError):
    """A mid-run LLM call failed for good: the outage outlasted its window, or was not transient.

    The run stops cleanly and can be resumed; the message is the reason it records.
    """


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
        model, base_url, temperature, timeout_s, max_retries, _retry_base(retry_base_s)
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


def llm_failure(err: BaseException, name: str) -> LLMAuthError | LLMUnavailableError:
    """The error to raise for a failed call to ``name``: a rejected key names its variable."""
    if _is_auth_error(err):
        return LLMAuthError(
            f"{name} rejected the API key ({_short(err)}); "
            f"set {_key_env(name)} to a valid key or use --llm offline"
        )
    return LLMUnavailableError(f"{name} is unavailable: {_describe_failure(err)}")


# -- mid-run calls through an outage --------------------------------------------------------------

_T = TypeVar("_T")


@dataclass(frozen=True)
class OutagePolicy:
    """How long and how often a mid-run LLM call is retried before the run stops."""

    window_s: float = DEFAULT_OUTAGE_WINDOW_S
    """Retry for this long after the first failure of a call; 0 stops at the first failure."""
    base_s: float = 1.0
    """The first wait; it doubles after each failure, up to ``max_wait_s``."""
    max_wait_s: float = 60.0

    @classmethod
    def from_env(cls, window_s: float = DEFAULT_OUTAGE_WINDOW_S) -> OutagePolicy:
        """The policy with the backoff base from ``$ARCHSMITH_LLM_RETRY_BASE_S`` (else 1 s)."""
        if not window_s >= 0:
            raise LLMConfigError(f"the LLM outage window must be 0 s or more, got {window_s}")
        return cls(window_s=window_s, base_s=_retry_base(None))

    def wait(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1 for the first)."""
        return float(min(self.max_wait_s, self.base_s * 2 ** min(failures - 1, 30)))


def call_through_outage(
    call: Callable[[], _T],
    *,
    name: str,
    policy: OutagePolicy,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> _T:
    """``call()``, retried with backoff while its failures may pass, for ``policy.window_s``.

    Every failure and the wait after it is logged as a warning, so whoever watches an overnight
    run sees the outage and how long archsmith will wait. Raises ``LLMOutageError`` (the cause
    chained) when the window is spent or the failure cannot pass by waiting: a rejected key, a
    request the provider refuses (400, 404, a context overflow).
    """
    first_failure: float | None = None
    failures = 0
    while True:
        try:
            return call()
        # The boundary to a remote service: every failure of the call is classified here, and
        # each is logged or raised, never dropped.
        except Exception as e:
            kind = _failure_kind(e)
            why = _describe_failure(e)
            if kind == "auth":
                raise LLMOutageError(
                    f"{name} rejected the API key ({_short(e)}); set {_key_env(name)} to a valid"
                    " key, then resume the run"
                ) from e
            if kind == "refused":
                raise LLMOutageError(f"{name} refused the request: {why}") from e
            now = clock()
            first_failure = now if first_failure is None else first_failure
            failures += 1
            spent = now - first_failure
            left = policy.window_s - spent
            if left <= 0:
                raise LLMOutageError(
                    f"{name} failed {failures} time{'s' if failures != 1 else ''} over"
                    f" {span(spent)} (outage window {span(policy.window_s)}); last: {why}"
                ) from e
            pause = min(left, max(policy.wait(failures), _retry_after_s(e)))
            log.warning(
                "%s failed: %s; retrying in %s (%s left of the %s outage window)",
                name,
                why,
                span(pause),
                span(left),
                span(policy.window_s),
            )
            sleep(pause)


def span(seconds: float) -> str:
    """A duration as a person reads it: '0.25 s', '45 s', '2 min 5 s', '10 min'."""
    if seconds < 10:
        return f"{seconds:.2g} s" if seconds < 1 else f"{seconds:.0f} s"
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    if not minutes:
        return f"{secs} s"
    return f"{minutes} min" + (f" {secs} s" if secs else "")


def _failure_kind(err: BaseException) -> Literal["auth", "refused", "transient"]:
    """Whether waiting may help: not for a rejected key or a request the provider refuses."""
    if _is_auth_error(err):
        return "auth"
    if isinstance(err, ModelError):
        return "transient" if err.is_retryable else "refused"
    status = _status(err)
    if status is not None and 400 <= status < 500 and status not in _RETRY_STATUS:
        return "refused"
    # Timeouts and connection errors the integration did not wrap, and malformed completions
    # (a body without ``choices``, an error object sent with 200): a gateway's hiccup.
    return "transient"


def _describe_failure(err: BaseException) -> str:
    """What went wrong, in a few words: a timeout, an HTTP status, or a malformed reply."""
    kind = type(err).__name__
    if isinstance(err, (ModelTimeoutError, TimeoutError)) or "Timeout" in kind:
        return f"no reply before the request timeout ({kind})"
    status = _status(err)
    if status is not None:
        return f"HTTP {status} ({kind}: {_short(err)})"
    if isinstance(err, (TypeError, ValueError, KeyError, AttributeError)):
        return f"malformed reply ({kind}: {_short(err)})"
    return f"{kind}: {_short(err)}"


def _key_env(name: str) -> str:
    """The variable holding the key of the LLM ``name`` ('openai:gpt-4o')."""
    return GOOGLE_KEY_ENV if name.startswith("gemini:") else OPENAI_KEY_ENV


def _status(err: BaseException) -> int | None:
    status = getattr(err, "status_code", None) or getattr(err, "code", None)
    return status if isinstance(status, int) and 100 <= status < 600 else None


def _retry_after_s(err: BaseException) -> float:
    """The server's ``retry-after-ms``/``retry-after`` (seconds) on an error reply, else 0."""
    headers = getattr(getattr(err, "response", None), "headers", None)
    if headers is None:
        return 0.0
    for key, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        raw = headers.get(key)
        if raw is None:
            continue
        try:
            return max(0.0, float(raw) * scale)
        except (TypeError, ValueError):
            continue  # an HTTP date or garbage: the backoff alone decides
    return 0.0


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
                        http_status_codes=list(_RETRY_STATUS),
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


def _retry_base(value: float | None) -> float:
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


def _is_auth_error(err: BaseException) -> bool:
    """Whether ``err`` or anything in its cause chain is a rejected credential."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ModelAuthenticationError, ModelPermissionDeniedError)):
            return True
        status = getattr(current, "status_code", None) or getattr(current, "code", None)
        if status in (401, 403):
            return True
        # The Gemini API answers an invalid key with 400 INVALID_ARGUMENT / API_KEY_INVALID.
        text = str(current)
        if "API_KEY_INVALID" in text or "API key not valid" in text:
            return True
        current = current.__cause__ or current.__context__
    return False


def _short(err: BaseException, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
