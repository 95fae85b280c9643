"""LangGraph ecosystem: the graph opens from langgraph.json; LangSmith traces by env vars alone.

LangSmith is reached through its standard variables (LANGSMITH_TRACING, LANGSMITH_API_KEY,
LANGSMITH_ENDPOINT). Here the endpoint is a local HTTP server that records what the real
``langsmith`` client sends while a real offline run goes.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from clitools import SCRIPT, env_for

ROOT = Path(__file__).resolve().parents[2]


class _Recorder(BaseHTTPRequestHandler):
    bodies: ClassVar[list[tuple[str, bytes]]]

    def _reply(self) -> None:
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._reply()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.bodies.append((self.path, self.rfile.read(length)))
        self._reply()

    do_PATCH = do_POST  # noqa: N815 - the stdlib's handler name

    def log_message(self, format: str, *args: object) -> None:
        return


def _one_round(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One short offline round on digits, as a user would start it."""
    return subprocess.run(
        [str(SCRIPT), "run", "build a 1000-FPS digits classifier", "-n", "1", "--epochs", "1",
         "--max-train", "300"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip


@pytest.fixture
def langsmith_stub() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    bodies: list[tuple[str, bytes]] = []
    handler = type("Handler", (_Recorder,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_a_run_is_traced_to_langsmith_when_the_user_sets_its_variables(
    tmp_path: Path, langsmith_stub: tuple[str, list[tuple[str, bytes]]]
) -> None:
    url, bodies = langsmith_stub
    env = {
        **env_for(tmp_path),
        "LANGSMITH_TRACING": "true",
        "LANGSMITH_ENDPOINT": url,
        "LANGSMITH_API_KEY": "lsv2-test-key",
        "LANGSMITH_PROJECT": "archsmith-tests",
    }
    result = _one_round(env)
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = result.stdout.split("run ", 1)[1].split(":", 1)[0]
    # Whatever paths this langsmith version posts to (its URL layout is not the point here).
    sent = b"".join(body for _, body in bodies)
    assert sent, f"nothing reached the LangSmith endpoint; requests: {[p for p, _ in bodies]}"
    # The root run, its nodes, and the metadata that finds this archsmith run.
    for needle in (b'"archsmith"', b'"architect"', b'"critic"', b'"evaluate"', run_id.encode()):
        assert needle in sent, needle
    assert b"archsmith-tests" in sent


def test_nothing_is_sent_without_the_variables(
    tmp_path: Path, langsmith_stub: tuple[str, list[tuple[str, bytes]]]
) -> None:
    url, bodies = langsmith_stub
    env = {
        k: v for k, v in env_for(tmp_path).items() if not k.startswith(("LANGSMITH", "LANGCHAIN"))
    }
    env["LANGSMITH_ENDPOINT"] = url  # an endpoint alone does not turn tracing on
    result = _one_round(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert bodies == []
