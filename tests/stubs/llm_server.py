"""A local HTTP server that speaks the OpenAI chat-completions and Gemini generateContent APIs.

The provider tests drive the real ``ChatOpenAI`` and ``ChatGoogleGenerativeAI`` clients, so their
request building, retries and response parsing are exercised for real; only the far end is
scripted. Replies are protocol-neutral (`Reply`) and rendered in the wire format of the path that
was called, so one script serves both providers. Every request is recorded with its secrets
redacted, the way pydantic-ai filters auth headers from its recorded responses.

Paths served:

- ``POST /v1/chat/completions`` (OpenAI, non-streaming; text, ``tool_calls``; a JSON text is what
  ``with_structured_output(method="json_schema")`` parses).
- ``POST /{api_version}/models/{model}:generateContent`` (Gemini Developer API as the google-genai
  SDK calls it; text and ``functionCall`` parts; JSON text for ``response_json_schema``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

__all__ = ["RecordedRequest", "Reply", "StubLLMServer"]

log = logging.getLogger(__name__)

Protocol = Literal["openai", "gemini"]

_SECRET_HEADERS = frozenset({"authorization", "x-goog-api-key", "api-key", "x-api-key"})
_GEMINI_PATH = re.compile(r"^/(?P<version>[^/]+)/models/(?P<model>[^/:]+):generateContent$")
_OPENAI_PATH = "/v1/chat/completions"
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_OPENAI_ERROR_TYPE = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_denied",
    429: "rate_limit_exceeded",
}


@dataclass(frozen=True)
class Reply:
    """One scripted answer; rendered as OpenAI or Gemini JSON depending on the path called.

    ``text`` becomes the message content, ``tool_call`` (name, arguments) a function call, a
    ``status`` of 400 or more an error body in the provider's shape carrying ``error_message``;
    ``body`` replaces the rendered body verbatim. ``headers`` are added to the response (e.g.
    ``retry-after-ms``, which the OpenAI SDK honours).
    """

    status: int = 200
    text: str | None = None
    tool_call: tuple[str, dict[str, Any]] | None = None
    error_message: str | None = None
    body: dict[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    @classmethod
    def error(cls, status: int, message: str | None = None, **headers: str) -> Reply:
        """An error reply; keyword arguments become headers (underscores turn into dashes)."""
        hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
        return cls(status=status, error_message=message, headers=hdrs)


@dataclass(frozen=True)
class RecordedRequest:
    """What a client sent: secrets in headers are replaced by ``<redacted>``.

    Only a SHA-256 digest of each secret header is kept, so a test can still check which key was
    sent (`sent_key`) without the record ever holding it.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    protocol: Protocol | None
    gemini_model: str | None = None
    secret_digests: dict[str, str] = field(default_factory=dict)

    def sent_key(self, key: str) -> bool:
        """Whether ``key`` was sent as a bearer token or an API-key header."""
        wanted = {_digest(key), _digest(f"Bearer {key}")}
        return any(d in wanted for d in self.secret_digests.values())

    @property
    def json(self) -> dict[str, Any]:
        """The body as a JSON object (the tests only ever send objects)."""
        if not isinstance(self.body, dict):
            raise TypeError(f"request body is {type(self.body).__name__}, not a JSON object")
        return self.body


class StubLLMServer:
    """A threaded HTTP server on 127.0.0.1 with an ephemeral port, serving scripted replies.

    With an empty script it answers ``Reply(text=default_text)`` so a preflight call succeeds
    without scripting, or what `always` set (an outage: 500 on every try); every answer,
    scripted or not, is counted in ``requests``.
    """

    def __init__(self, default_text: str = "ok") -> None:
        self.default_text = default_text
        self._always: Reply | None = None
        self._script: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> StubLLMServer:
        """Serve in a daemon thread; returns self for chaining."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="stub-llm-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> StubLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` with no trailing slash."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_base_url(self) -> str:
        """What ``ChatOpenAI(base_url=...)`` takes: the server plus ``/v1``."""
        return f"{self.url}/v1"

    @property
    def gemini_base_url(self) -> str:
        """What ``ChatGoogleGenerativeAI(base_url=...)`` takes; the SDK appends ``/VERSION/...``."""
        return self.url

    # -- script and record ---------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Queue replies; each request takes the next one."""
        with self._lock:
            self._script.extend(replies)

    def always(self, reply: Reply | None) -> None:
        """Answer ``reply`` whenever the script is empty, until called with None (recovered)."""
        with self._lock:
            self._always = reply

    @property
    def pending(self) -> int:
        """Scripted replies not yet served."""
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget the script and the recorded requests."""
        with self._lock:
            self._script.clear()
            self._requests.clear()
            self._always = None

    def _next(self, recorded: RecordedRequest) -> Reply:
        with self._lock:
            self._requests.append(recorded)
            if self._script:
                return self._script.popleft()
            return self._always or Reply(text=self.default_text)

    # -- rendering -------------------------------------------------------------------------------

    def render(self, reply: Reply, protocol: Protocol, model: str) -> dict[str, Any]:
        """The JSON body for ``reply`` in the wire format of ``protocol``."""
        if reply.body is not None:
            return reply.body
        if reply.status >= 400:
            return _render_error(reply, protocol)
        if protocol == "openai":
            return self._render_openai(reply, model)
        return _render_gemini(reply, model)

    def _render_openai(self, reply: Reply, model: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
        finish = "stop"
        if reply.tool_call is not None:
            name, args = reply.tool_call
            message["tool_calls"] = [
                {
                    "id": f"call_{next(self._ids)}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
            ]
            finish = "tool_calls"
        return {
            "id": f"chatcmpl-stub-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        }


def _render_gemini(reply: Reply, model: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if reply.text is not None:
        parts.append({"text": reply.text})
    if reply.tool_call is not None:
        name, args = reply.tool_call
        parts.append({"functionCall": {"name": name, "args": args}})
    return {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3, "totalTokenCount": 10},
        "modelVersion": model,
    }


def _render_error(reply: Reply, protocol: Protocol) -> dict[str, Any]:
    try:
        phrase = HTTPStatus(reply.status).phrase
    except ValueError:
        phrase = "Error"
    message = reply.error_message or f"stub says {reply.status} {phrase}"
    if protocol == "openai":
        return {
            "error": {
                "message": message,
                "type": _OPENAI_ERROR_TYPE.get(reply.status, "server_error"),
                "param": None,
                "code": None,
            }
        }
    return {
        "error": {
            "code": reply.status,
            "message": message,
            "status": _GEMINI_STATUS.get(reply.status, "UNKNOWN"),
        }
    }


def _redact(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        k.lower(): ("<redacted>" if k.lower() in _SECRET_HEADERS else v) for k, v in headers.items()
    }


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _secret_digests(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): _digest(v) for k, v in headers.items() if k.lower() in _SECRET_HEADERS}


def _make_handler(server: StubLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("stub llm: %s", format % args)

        def do_POST(self) -> None:
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                body = raw.decode("utf-8", "replace")
            protocol: Protocol | None = None
            model = "stub"
            gemini = _GEMINI_PATH.match(path)
            if path == _OPENAI_PATH:
                protocol = "openai"
                if isinstance(body, dict):
                    model = str(body.get("model", model))
            elif gemini is not None:
                protocol = "gemini"
                model = gemini["model"]
            recorded = RecordedRequest(
                method="POST",
                path=path,
                query=query,
                headers=_redact(dict(self.headers.items())),
                body=body,
                protocol=protocol,
                gemini_model=gemini["model"] if gemini is not None else None,
                secret_digests=_secret_digests(dict(self.headers.items())),
            )
            if protocol is None:
                with server._lock:
                    server._requests.append(recorded)
                self._send(404, {"error": {"message": f"stub serves no {path}"}}, {})
                return
            reply = server._next(recorded)
            if reply.delay_s:
                time.sleep(reply.delay_s)
            self._send(reply.status, server.render(reply, protocol, model), reply.headers)

        def do_GET(self) -> None:
            with server._lock:
                server._requests.append(
                    RecordedRequest(
                        method="GET",
                        path=self.path,
                        query="",
                        headers=_redact(dict(self.headers.items())),
                        body=None,
                        protocol=None,
                    )
                )
            self._send(404, {"error": {"message": f"stub serves no GET {self.path}"}}, {})

        def _send(self, status: int, payload: dict[str, Any], headers: Mapping[str, str]) -> None:
            data = json.dumps(payload).encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                log.debug("stub llm: client went away before the reply was written")

    return Handler
