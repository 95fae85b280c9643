"""LLM plumbing shared by the agents and the bench: chat models, their failures, and outages.

A layer of its own, below ``agents/`` and ``bench/``, so both can use one chat-model factory
without the bench importing the agents. It imports ``config`` and ``errors`` and nothing else of
archsmith. ``providers`` turns ``--llm offline | openai:MODEL | gemini:MODEL`` into a LangChain
``BaseChatModel`` (or ``None`` for the offline path), so the planner, architect, code fixer and
the bench's LLM strategy only call ``invoke``, ``with_structured_output`` and ``bind_tools`` on
it; ``failures`` says what a failed call means; ``outage`` carries mid-run calls through a
provider's incident; ``calls`` is the record of one exchange, kept for the trace.

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
