"""An HTTP server on 127.0.0.1 that answers every request with ``{}`` and records what it got.

It stands in for a service a run may talk to (LangSmith's endpoint): a test reads what reached it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar


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
        self.bodies.append((self.path, b""))
        self._reply()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.bodies.append((self.path, self.rfile.read(length)))
        self._reply()

    do_PATCH = do_POST  # noqa: N815 - the stdlib's handler name

    def log_message(self, format: str, *args: object) -> None:
        return


@contextmanager
def recording_server() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """``(base URL, [(path, body), ...])``: the list grows as requests arrive."""
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
