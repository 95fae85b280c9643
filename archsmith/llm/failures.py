"""What a failed LLM call means: the errors archsmith raises, and whether waiting may help.

One classification for the preflight check (`llm_failure`), the planner and the mid-run outage
loop (`failure_kind`), so a rejected key is named the same way wherever it shows up.
"""

from __future__ import annotations

from typing import Final, Literal

from langchain_core.exceptions import (
    ModelAuthenticationError,
    ModelError,
    ModelPermissionDeniedError,
    ModelTimeoutError,
)

from archsmith.errors import ArchsmithError, InputError

__all__ = [
    "GOOGLE_KEY_ENV",
    "OPENAI_KEY_ENV",
    "RETRY_STATUS",
    "LLMAuthError",
    "LLMConfigError",
    "LLMOutageError",
    "LLMUnavailableError",
    "describe_failure",
    "failure_kind",
    "key_env",
    "llm_failure",
    "retry_after_s",
    "short",
]

OPENAI_KEY_ENV: Final = "OPENAI_API_KEY"
GOOGLE_KEY_ENV: Final = "GOOGLE_API_KEY"
RETRY_STATUS: Final = (408, 429, 500, 502, 503, 504)
"""HTTP statuses that may pass by waiting: the clients retry them, and so does the outage loop."""


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


def llm_failure(err: BaseException, name: str) -> LLMAuthError | LLMUnavailableError:
    """The error to raise for a failed call to ``name``: a rejected key names its variable."""
    if _is_auth_error(err):
        return LLMAuthError(
            f"{name} rejected the API key ({short(err)}); "
            f"set {key_env(name)} to a valid key or use --llm offline"
        )
    return LLMUnavailableError(f"{name} is unavailable: {describe_failure(err)}")


def failure_kind(err: BaseException) -> Literal["auth", "refused", "transient"]:
    """Whether waiting may help: not for a rejected key or a request the provider refuses."""
    if _is_auth_error(err):
        return "auth"
    if isinstance(err, ModelError):
        return "transient" if err.is_retryable else "refused"
    status = _status(err)
    if status is not None and 400 <= status < 500 and status not in RETRY_STATUS:
        return "refused"
    # Timeouts and connection errors the integration did not wrap, and malformed completions
    # (a body without ``choices``, an error object sent with 200): a gateway's hiccup.
    return "transient"


def describe_failure(err: BaseException) -> str:
    """What went wrong, in a few words: a timeout, an HTTP status, or a malformed reply."""
    kind = type(err).__name__
    if isinstance(err, (ModelTimeoutError, TimeoutError)) or "Timeout" in kind:
        return f"no reply before the request timeout ({kind})"
    status = _status(err)
    if status is not None:
        return f"HTTP {status} ({kind}: {short(err)})"
    if isinstance(err, (TypeError, ValueError, KeyError, AttributeError)):
        return f"malformed reply ({kind}: {short(err)})"
    return f"{kind}: {short(err)}"


def key_env(name: str) -> str:
    """The variable holding the key of the LLM ``name`` ('openai:gpt-4o')."""
    return GOOGLE_KEY_ENV if name.startswith("gemini:") else OPENAI_KEY_ENV


def _status(err: BaseException) -> int | None:
    status = getattr(err, "status_code", None) or getattr(err, "code", None)
    return status if isinstance(status, int) and 100 <= status < 600 else None


def retry_after_s(err: BaseException) -> float:
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


def short(err: BaseException, limit: int = 300) -> str:
    """The error's message on one line, cut to ``limit`` characters."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
