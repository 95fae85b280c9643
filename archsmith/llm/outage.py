"""Mid-run LLM calls through a provider's outage: retried with backoff for a window, then stopped.

A provider incident lasts minutes, far longer than the clients' few seconds of retries, so the
architect and the code fixer call through `call_through_outage`: every failure that may pass is
retried and logged as a warning, so whoever watches an overnight run sees the outage and how long
archsmith will wait; then ``LLMOutageError`` stops the run cleanly, resumable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from archsmith.config import DEFAULT_LLM_OUTAGE_WINDOW_S
from archsmith.llm.failures import (
    LLMConfigError,
    LLMOutageError,
    describe_failure,
    failure_kind,
    key_env,
    retry_after_s,
    short,
)
from archsmith.llm.providers import retry_base

__all__ = ["DEFAULT_OUTAGE_WINDOW_S", "OutagePolicy", "call_through_outage", "span"]

log = logging.getLogger(__name__)

DEFAULT_OUTAGE_WINDOW_S: Final = DEFAULT_LLM_OUTAGE_WINDOW_S
"""How long a mid-run call keeps retrying before the run stops (``--llm-outage-window``,
``ARCHSMITH_LLM_OUTAGE_WINDOW_S``)."""

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
        return cls(window_s=window_s, base_s=retry_base(None))

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
            kind = failure_kind(e)
            why = describe_failure(e)
            if kind == "auth":
                raise LLMOutageError(
                    f"{name} rejected the API key ({short(e)}); set {key_env(name)} to a valid"
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
            pause = min(left, max(policy.wait(failures), retry_after_s(e)))
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
