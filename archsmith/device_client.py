"""The client of the device agent (``archsmith.device_agent``): measure a model on a remote device.

A device that stops answering, a wrong token or a reply that is not the agent's must end in one
``DeviceError`` that says what is wrong and what to do, never a hang or a traceback: a search
may wait on this call overnight. So the whole call has one deadline (a watchdog closes the socket
when it passes), a refusal the agent sends before it reads the upload is read instead of being
lost to a broken pipe, and the reply is bounded and checked field by field.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import select
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode, urlsplit

from archsmith.errors import InputError

__all__ = ["MAX_REPLY_BYTES", "DeviceError", "device_info", "measure_on_device"]

log = logging.getLogger(__name__)

#: A reply larger than this is not the agent's (its figures are a few hundred bytes).
MAX_REPLY_BYTES = 1 << 20
_CHUNK = 1 << 16
_START_HINT = (
    "start it on the device with: python3 device_agent.py --host 127.0.0.1 --port 8765 "
    "--token-file TOKEN_FILE (write the file with: archsmith device-agent -o device_agent.py)"
)
_TOKEN_HINT = (
    "the device refused the token: set ARCHSMITH_DEVICE_TOKEN to the token the agent was "
    "started with"
)
# The measurement's figures and their JSON types, as the agent's MEASURE_FIELDS says.
_MEASURE_TYPES: dict[str, type | tuple[type, ...]] = {
    "agent_version": str,
    "runtime": str,
    "runtime_version": str,
    "threads": int,
    "batch": int,
    "input_shape": list,
    "dtype": str,
    "fps_best": (int, float),
    "fps_median": (int, float),
    "fps_spread_pct": (int, float),
    "fps_repeats": int,
    "latency_ms_p50": (int, float),
    "latency_ms_p90": (int, float),
    "latency_repeats": int,
    "peak_rss_mb": (int, float),
    "model_size_bytes": int,
    "measure_s": (int, float),
    "measured_on": str,
    "machine": dict,
}
_INFO_TYPES: dict[str, type | tuple[type, ...]] = {
    "agent_version": str,
    "runtimes": dict,
    "cpu_count": int,
    "machine": str,
    "processor": str,
    "python": str,
    "measured_on": str,
}


class DeviceError(InputError):
    """The device agent cannot be reached, refuses the request, or answers something unusable.

    An ``InputError``: the URL, the token, the model or the limits the user gave are what to
    change, so the CLI exits with code 2 and the message.
    """


class _Deadline:
    """Closes the connection's socket when the call's time is up, unblocking any read or write."""

    def __init__(self, conn: http.client.HTTPConnection, timeout_s: float) -> None:
        self.expired = False
        self._conn = conn
        self._timer = threading.Timer(timeout_s, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        self.expired = True
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                log.debug("the socket was already closed at the deadline")


def _base_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, base path) of an http:// or https:// agent URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise DeviceError(f"the device URL {url!r} is not valid: {e}") from e
    if parts.scheme not in ("http", "https"):
        raise DeviceError(
            f"the device URL {url!r} must start with http:// or https:// "
            "(e.g. http://127.0.0.1:8765)"
        )
    if not parts.hostname:
        raise DeviceError(f"the device URL {url!r} names no host (e.g. http://127.0.0.1:8765)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise DeviceError(
            f"the device URL {url!r} must hold only a scheme, a host, a port and a path; give "
            "the token separately"
        )
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname, port or default, parts.path.rstrip("/")


def _check_positive(value: float, name: str) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise DeviceError(f"{name} must be a positive number, not {value!r}")


def _request(
    url: str,
    token: str,
    method: str,
    endpoint: str,
    timeout_s: float,
    body: BinaryIO | None = None,
    length: int = 0,
) -> dict[str, Any]:
    """One request to the agent; its JSON object, or a DeviceError that says what to do."""
    _check_positive(timeout_s, "timeout_s")
    if not token or any(c in token for c in "\r\n"):
        raise DeviceError(
            "no usable device token: set ARCHSMITH_DEVICE_TOKEN to the token the agent was "
            "started with"
        )
    scheme, host, port, base = _base_url(url)
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = http.client.HTTPSConnection(
            host, port, timeout=timeout_s, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    where = f"the device agent at {url}"
    started = time.monotonic()
    try:
        with _Deadline(conn, timeout_s) as deadline:
            try:
                status, data = _exchange(conn, method, base + endpoint, token, body, length)
            except TimeoutError as e:
                raise _timeout(where, timeout_s) from e
            except ConnectionRefusedError as e:
                raise DeviceError(
                    f"nothing listens at {url}: is the agent running? {_START_HINT}"
                ) from e
            except socket.gaierror as e:
                raise DeviceError(f"cannot resolve the host of {url}: {e.strerror}") from e
            except ssl.SSLError as e:
                raise DeviceError(f"TLS with {where} failed: {e.reason or e}") from e
            except (OSError, http.client.HTTPException) as e:
                if deadline.expired:
                    raise _timeout(where, timeout_s) from e
                raise DeviceError(
                    f"{where} dropped the connection ({type(e).__name__}: {e}): is the agent "
                    f"running and is {url} its address? {_START_HINT}"
                ) from e
    finally:
        conn.close()
    log.debug("%s %s: %d in %.2f s", method, endpoint, status, time.monotonic() - started)
    reply = _decode(data, where)
    if status == 200:
        return reply
    raise _refusal(status, reply, where)


def _timeout(where: str, timeout_s: float) -> DeviceError:
    return DeviceError(
        f"{where} did not answer within {timeout_s:g} s: is the agent running, and is the "
        f"device reachable? {_START_HINT}; for a slow model, raise timeout_s"
    )


def _exchange(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    token: str,
    body: BinaryIO | None,
    length: int,
) -> tuple[int, bytes]:
    """Send the request and read at most ``MAX_REPLY_BYTES + 1`` of the reply."""
    conn.putrequest(method, path or "/", skip_accept_encoding=True)
    conn.putheader("Authorization", f"Bearer {token}")
    conn.putheader("Accept", "application/json")
    if body is not None:
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(length))
    conn.endheaders()
    if body is not None:
        _upload(conn, body)
    response = conn.getresponse()
    return response.status, response.read(MAX_REPLY_BYTES + 1)


def _upload(conn: http.client.HTTPConnection, body: BinaryIO) -> None:
    """Send the body, stopping early when the agent has already answered (a refusal it sends
    before reading, such as 413): its answer is then read instead of a broken pipe."""
    sock = conn.sock
    if sock is None:  # endheaders() connects; a closed socket is the deadline's doing
        raise ConnectionResetError("the connection closed before the upload")
    while chunk := body.read(_CHUNK):
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            return
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return  # the agent stopped reading; its answer, if any, is read next


def _decode(data: bytes, where: str) -> dict[str, Any]:
    if len(data) > MAX_REPLY_BYTES:
        raise DeviceError(
            f"{where} answered more than {MAX_REPLY_BYTES} bytes: that is not the archsmith "
            "device agent; check the URL"
        )
    try:
        reply = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DeviceError(
            f"{where} answered something that is not JSON ({data[:80]!r}): is the URL the "
            "archsmith device agent's?"
        ) from e
    if not isinstance(reply, dict):
        raise DeviceError(f"{where} answered JSON that is not an object: check the URL")
    return reply


def _refusal(status: int, reply: dict[str, Any], where: str) -> DeviceError:
    said = str(reply.get("error", "no reason given"))[:1000]
    if status == 401:
        return DeviceError(f"{_TOKEN_HINT} ({where})")
    if status == 413:
        return DeviceError(f"{where} refused the model as too large (413): {said}")
    if status == 400:
        return DeviceError(f"{where} could not measure the model (400): {said}")
    if status == 504:
        return DeviceError(f"{where} stopped the measurement (504): {said}")
    if status == 404:
        return DeviceError(f"{where} has no such endpoint (404): is it the archsmith agent? {said}")
    return DeviceError(f"{where} answered {status}: {said}")


def _validated(
    reply: dict[str, Any], types: dict[str, type | tuple[type, ...]], where: str
) -> None:
    """Every expected field is there with its type; numbers finite and not negative."""
    problems = []
    for name, kind in types.items():
        if name not in reply:
            problems.append(f"{name} is missing")
            continue
        value = reply[name]
        if isinstance(value, bool) or not isinstance(value, kind):
            problems.append(f"{name} is {type(value).__name__}, not {_type_name(kind)}")
        elif isinstance(value, int | float) and not (math.isfinite(value) and value >= 0):
            problems.append(f"{name} is {value!r}")
    if problems:
        raise DeviceError(
            f"{where} answered figures that are not the agent's: {'; '.join(problems)}; check "
            "that the device runs the agent of this archsmith version (archsmith device-agent)"
        )


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def device_info(url: str, token: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """What the device offers: the agent's version, runtimes, CPU, machine and limits."""
    reply = _request(url, token, "GET", "/info", timeout_s)
    _validated(reply, _INFO_TYPES, f"the device agent at {url}")
    runtimes = reply["runtimes"]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in runtimes.items()):
        raise DeviceError(f"the device agent at {url} listed its runtimes in an unknown form")
    return reply


def measure_on_device(
    url: str,
    token: str,
    model_file: Path,
    *,
    runtime: str,
    threads: int,
    batch: int,
    input_shape: list[int],
    dtype: str = "float32",
    timeout_s: float = 300.0,
    max_bytes: int = 256 << 20,
) -> dict[str, Any]:
    """Time ``model_file`` (ONNX) on the device: FPS at ``batch``, latency at batch 1, peak RSS.

    ``input_shape`` is one sample's shape, without the batch dimension; the agent generates the
    inputs itself, so only the model file crosses. ``max_bytes`` bounds the upload on this side.
    """
    for name, value in (("threads", threads), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DeviceError(f"{name} must be a whole number of at least 1, not {value!r}")
    if not input_shape or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in input_shape
    ):
        raise DeviceError(
            f"input_shape must be one sample's dimensions, each at least 1 (e.g. [3, 32, 32]), "
            f"not {input_shape!r}"
        )
    try:
        size = model_file.stat().st_size
        handle = model_file.open("rb")
    except FileNotFoundError as e:
        raise DeviceError(f"the model file {model_file} does not exist") from e
    except OSError as e:
        raise DeviceError(f"cannot read the model file {model_file}: {e.strerror}") from e
    with handle:
        if not model_file.is_file():
            raise DeviceError(f"the model file {model_file} is not a regular file")
        if size == 0:
            raise DeviceError(f"the model file {model_file} is empty")
        if size > max_bytes:
            raise DeviceError(
                f"the model file {model_file} is {size} bytes, over max_bytes={max_bytes}"
            )
        query = urlencode(
            {
                "runtime": runtime,
                "threads": threads,
                "batch": batch,
                "shape": ",".join(str(d) for d in input_shape),
                "dtype": dtype,
            }
        )
        reply = _request(url, token, "POST", f"/measure?{query}", timeout_s, handle, size)
    where = f"the device agent at {url}"
    _validated(reply, _MEASURE_TYPES, where)
    if reply["runtime"] != runtime or reply["batch"] != batch or reply["threads"] != threads:
        raise DeviceError(
            f"{where} measured {reply['runtime']} with {reply['threads']} threads at batch "
            f"{reply['batch']}, not what was asked ({runtime}, {threads}, {batch})"
        )
    return reply
