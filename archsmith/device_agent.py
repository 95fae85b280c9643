"""A measuring agent for a remote edge device: it times an ONNX model on the device's own CPU.

A speed figure says where it was measured (DESIGN.md, Targets); the device a user deploys to is
often not the machine that searches. This file is copied to that device and run there, so it needs
only Python 3.9+, numpy and a runtime (onnxruntime and/or openvino): it imports nothing from
archsmith, torch or pydantic. Get its text with ``agent_source()``.

Run it with ``python device_agent.py --host 127.0.0.1 --port 8765 --token-file PATH`` (or the
token in ``ARCHSMITH_DEVICE_TOKEN``). Protocol, every request with ``Authorization: Bearer TOKEN``:

* ``GET /info``: the agent version, the runtimes that import and their versions, the CPU count,
  the machine, the processor, the Python version and the agent's limits.
* ``POST /measure?runtime=onnxruntime&threads=1&batch=8&shape=3,32,32&dtype=float32`` with the
  raw model file as the body (``Content-Length`` required): JSON figures (``MEASURE_FIELDS``).

Errors are JSON ``{"error": "..."}`` with 400 (bad parameters, a model the runtime refuses), 401
(token), 404, 411 (no length), 413 (body over ``--max-bytes``, refused before it is read) and 504
(the measurement ran past ``--max-seconds``). Only the model file and those parameters cross: the
agent makes its own inputs (random normal, fixed seed), so no data leaves the user's machine.

Each measurement runs in a child process (this file again), one at a time: the device's CPU is
what is measured, the time limit can kill it, a runtime that crashes on a bad model takes only the
child down, and the child's peak RSS is the model's, not the server's. The protocol is plain HTTP:
across a network, reach the agent through an SSH tunnel or a TLS proxy, not in the open.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import importlib
import json
import logging
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "AGENT_VERSION",
    "MEASURE_FIELDS",
    "RUNTIMES",
    "AgentConfig",
    "agent_source",
    "main",
    "make_server",
]

log = logging.getLogger("archsmith.device_agent")

AGENT_VERSION = "1"
TOKEN_ENV = "ARCHSMITH_DEVICE_TOKEN"
RUNTIMES = ("onnxruntime", "openvino")
DTYPES = ("float32", "float16", "float64")
DEFAULT_MAX_BYTES = 256 << 20
DEFAULT_MAX_SECONDS = 120.0
MIN_TOKEN_CHARS = 16
#: What a measurement answers, with each field's JSON type (the client checks them).
MEASURE_FIELDS: dict[str, str] = {
    "agent_version": "str",
    "runtime": "str",
    "runtime_version": "str",
    "threads": "int",
    "batch": "int",
    "input_shape": "list",
    "dtype": "str",
    "fps_best": "float",
    "fps_median": "float",
    "fps_spread_pct": "float",
    "fps_repeats": "int",
    "latency_ms_p50": "float",
    "latency_ms_p90": "float",
    "latency_repeats": "int",
    "peak_rss_mb": "float",
    "model_size_bytes": "int",
    "measure_s": "float",
    "measured_on": "str",
    "machine": "dict",
}
# Timing: warm-up calls, then passes until both the time and the count are reached.
_WARMUP_CALLS = 3
_THROUGHPUT_S = 1.0
_THROUGHPUT_MIN_REPEATS = 5
_LATENCY_S = 0.5
_LATENCY_MIN_REPEATS = 10
_SEED = 0
_ERROR_CHARS = 600
_MAX_DIMS = 8
_MAX_ELEMENTS = 1 << 28
_MAX_THREADS = 1024
_MAX_BATCH = 1 << 16
# A client that stalls mid-request frees its thread after this many seconds of silence.
_SOCKET_TIMEOUT_S = 60.0
# After refusing a body, read and discard at most this much for this long before closing, so the
# client reads the refusal instead of a connection reset.
_LINGER_S = 2.0
_LINGER_BYTES = 8 << 20
_CHUNK = 1 << 20
# Runs this file in the child with the private temp directory (not the file's own) on sys.path.
_WORKER_BOOT = "import runpy, sys; runpy.run_path(sys.argv[1])['worker_main'](sys.argv[2])"


def agent_source() -> str:
    """This file's text, to copy to a device (it runs there with no archsmith installed)."""
    return Path(__file__).read_text(encoding="utf-8")


class AgentConfig:
    """The agent's token and limits, shared by every request handler."""

    def __init__(self, token: str, max_bytes: int, max_seconds: float) -> None:
        self.token = token
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.busy = threading.Lock()

    def __repr__(self) -> str:  # never show the token
        return f"AgentConfig(max_bytes={self.max_bytes}, max_seconds={self.max_seconds})"


class RequestError(Exception):
    """A request the agent refuses: the HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _cut(text: str, limit: int = _ERROR_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Run in a child: importing a runtime in the server would cost a small device its memory for as
# long as the agent runs, and a broken install may crash rather than raise.
_PROBE = """
import importlib, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        found[name] = str(importlib.import_module(name).__version__)
    except Exception:
        pass
print(json.dumps(found))
"""
_probe_lock = threading.Lock()
_probed: dict[str, str] | None = None


def _installed_runtimes() -> dict[str, str]:
    """The runtimes that import here, with their versions (probed once, in a child process)."""
    global _probed
    with _probe_lock:
        if _probed is None:
            _probed = _probe_runtimes()
        return dict(_probed)


def _probe_runtimes() -> dict[str, str]:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, *RUNTIMES],
            capture_output=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
            cwd=tempfile.gettempdir(),
        )
        found = json.loads(done.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as e:
        log.warning("cannot tell which runtimes import here: %s", e)
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _machine() -> dict[str, Any]:
    uname = platform.uname()
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or _cpu_model(),
        "system": uname.system,
        "release": uname.release,
        "cpu_count": os.cpu_count() or 1,
        "python": platform.python_version(),
    }


def _cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo, where platform.processor() is empty (most Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Model", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return ""


def _describe(machine: dict[str, Any]) -> str:
    cpu = machine["processor"] or "unknown CPU"
    return (
        f"{machine['machine']} ({cpu}), {machine['cpu_count']} CPUs, "
        f"{machine['system']} {machine['release']}"
    )


def _info(config: AgentConfig) -> dict[str, Any]:
    machine = _machine()
    try:
        import numpy

        numpy_version: str | None = str(numpy.__version__)
    except ImportError:
        numpy_version = None
    return {
        "agent_version": AGENT_VERSION,
        "runtimes": _installed_runtimes(),
        "numpy": numpy_version,
        "cpu_count": machine["cpu_count"],
        "machine": machine["machine"],
        "processor": machine["processor"],
        "system": machine["system"],
        "python": machine["python"],
        "measured_on": _describe(machine),
        "max_bytes": config.max_bytes,
        "max_seconds": config.max_seconds,
    }


def _one(query: dict[str, list[str]], name: str, default: str | None = None) -> str:
    values = query.get(name)
    if not values:
        if default is None:
            raise RequestError(400, f"the query parameter {name!r} is missing")
        return default
    if len(values) > 1:
        raise RequestError(400, f"the query parameter {name!r} is given more than once")
    return values[0]


def _positive(query: dict[str, list[str]], name: str, default: str, limit: int) -> int:
    text = _one(query, name, default)
    try:
        value = int(text)
    except ValueError:
        raise RequestError(400, f"{name} must be a whole number, not {_cut(text, 40)!r}") from None
    if not 1 <= value <= limit:
        raise RequestError(400, f"{name} must be between 1 and {limit}, not {value}")
    return value


def _parse_measure(query: dict[str, list[str]]) -> dict[str, Any]:
    """The measurement's parameters from the query string, checked."""
    runtime = _one(query, "runtime")
    installed = _installed_runtimes()
    if runtime not in installed:
        have = ", ".join(sorted(installed)) or "none (install onnxruntime or openvino)"
        raise RequestError(
            400, f"unknown or absent runtime {_cut(runtime, 40)!r}; installed here: {have}"
        )
    threads = _positive(query, "threads", "1", _MAX_THREADS)
    batch = _positive(query, "batch", "1", _MAX_BATCH)
    shape_text = _one(query, "shape")
    try:
        shape = [int(d) for d in shape_text.split(",")] if shape_text.strip() else []
    except ValueError:
        raise RequestError(
            400, f"shape must be comma-separated whole numbers (e.g. 3,32,32), not "
            f"{_cut(shape_text, 60)!r}"
        ) from None  # fmt: skip
    if len(shape) > _MAX_DIMS or any(d < 1 for d in shape):
        raise RequestError(400, f"shape needs at most {_MAX_DIMS} dimensions, each at least 1")
    elements = batch
    for d in shape:
        elements *= d
    if elements > _MAX_ELEMENTS:
        raise RequestError(400, f"an input of {elements} elements is too large to generate")
    dtype = _one(query, "dtype", "float32")
    if dtype not in DTYPES:
        raise RequestError(400, f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    return {"runtime": runtime, "runtime_version": installed[runtime], "threads": threads,
            "batch": batch, "input_shape": shape, "dtype": dtype}  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    """One request: authenticate, then answer /info or run one measurement."""

    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = f"archsmith-device-agent/{AGENT_VERSION}"
    timeout = _SOCKET_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries no token (it travels in a header), so this is safe to log.
        log.info("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._serve(self._get)

    def do_POST(self) -> None:
        self._serve(self._post)

    def _serve(self, action: Any) -> None:
        try:
            self._authenticate()
            status, body = action()
        except RequestError as e:
            self._reply(e.status, {"error": e.message})
            return
        self._reply(status, body)

    def _authenticate(self) -> None:
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        expected = self.server.config.token.encode("utf-8")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), expected
        )
        if not ok:
            raise RequestError(
                401, "missing or wrong token: send 'Authorization: Bearer TOKEN' with the token "
                "the agent was started with"
            )  # fmt: skip

    def _get(self) -> tuple[int, dict[str, Any]]:
        if urlsplit(self.path).path != "/info":
            raise RequestError(404, "no such endpoint; use GET /info or POST /measure")
        return 200, _info(self.server.config)

    def _post(self) -> tuple[int, dict[str, Any]]:
        url = urlsplit(self.path)
        if url.path != "/measure":
            raise RequestError(404, "no such endpoint; use GET /info or POST /measure")
        params = _parse_measure(parse_qs(url.query, keep_blank_values=True))
        length = self._content_length()
        config = self.server.config
        # Another measurement holds the CPU: wait for it rather than measure two at once.
        if not config.busy.acquire(timeout=config.max_seconds + _LINGER_S):
            raise RequestError(503, "the agent is busy with another measurement; try again")
        try:
            with tempfile.TemporaryDirectory(prefix="archsmith-agent-") as tmp:
                model = Path(tmp) / "model.onnx"
                self._receive(model, length)
                return 200, _run_worker(Path(tmp), model, params, config.max_seconds)
        finally:
            config.busy.release()

    def _content_length(self) -> int:
        text = self.headers.get("Content-Length")
        if text is None or self.headers.get("Transfer-Encoding"):
            raise RequestError(411, "send the model file with a Content-Length header")
        try:
            length = int(text)
        except ValueError:
            raise RequestError(400, "the Content-Length header is not a number") from None
        if length <= 0:
            raise RequestError(400, "the body is empty: send the model file")
        limit = self.server.config.max_bytes
        if length > limit:
            raise RequestError(
                413, f"the model file is {length} bytes; this agent takes at most {limit} bytes "
                "(start it with a larger --max-bytes)"
            )  # fmt: skip
        return length

    def _receive(self, path: Path, length: int) -> None:
        """Copy the body to a private file (0600, in a 0700 directory), exactly ``length`` bytes."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            left = length
            while left > 0:
                chunk = self.rfile.read(min(_CHUNK, left))
                if not chunk:
                    self.close_connection = True
                    raise RequestError(400, f"the body ended {left} bytes short of its length")
                out.write(chunk)
                left -= len(chunk)

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        unread_body = status != 200 and self.command == "POST"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if unread_body:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        if unread_body:
            self._linger()

    def _linger(self) -> None:
        """Half-close, then discard a bounded part of an unread body for a short time: a socket
        closed with unread data sends a reset that can destroy the reply before the client
        reads it."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.2)
            deadline = time.monotonic() + _LINGER_S
            drained = 0
            while time.monotonic() < deadline and drained < _LINGER_BYTES:
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], config: AgentConfig) -> None:
        self.config = config
        super().__init__(address, _Handler)


def make_server(
    host: str,
    port: int,
    token: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> ThreadingHTTPServer:
    """A bound agent server (``serve_forever`` to run it); port 0 picks a free port."""
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"the token must have at least {MIN_TOKEN_CHARS} characters")
    return _Server((host, port), AgentConfig(token, max_bytes, max_seconds))


# --- the measuring child ---------------------------------------------------------------------


def _run_worker(
    tmp: Path, model: Path, params: dict[str, Any], max_seconds: float
) -> dict[str, Any]:
    """Measure in a child process, killed (its whole group) past ``max_seconds``."""
    job = tmp / "job.json"
    result = tmp / "result.json"
    job.write_text(json.dumps({**params, "model": str(model), "result": str(result),
                               "deadline_s": max_seconds}))  # fmt: skip
    env = dict(os.environ)
    env.pop(TOKEN_ENV, None)
    env["OMP_NUM_THREADS"] = str(params["threads"])
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", _WORKER_BOOT, str(Path(__file__).resolve()), str(job)],
        cwd=tmp,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=max_seconds)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise RequestError(
            504, f"the measurement ran past this agent's limit of {max_seconds:g} s; measure a "
            "smaller model or batch, or start the agent with a larger --max-seconds"
        ) from None  # fmt: skip
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    log.info("measurement finished in %.2f s (exit %s)", time.monotonic() - started,
             proc.returncode)  # fmt: skip
    try:
        answer = json.loads(result.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        tail = _cut(stderr.decode("utf-8", "replace")[-4000:])
        how = (
            f"was killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exited with {proc.returncode}"
        )
        raise RequestError(500, f"the runtime {how} without a result: {tail}") from None
    if not isinstance(answer, dict):
        raise RequestError(500, "the measuring process wrote something that is not a result")
    if "error" in answer:
        raise RequestError(int(answer.get("status", 400)), str(answer["error"]))
    return answer


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def worker_main(job_path: str) -> None:
    """The child: load the model, time it, write the figures (or an error) as JSON."""
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    try:
        answer = _measure(job)
    except RequestError as e:
        answer = {"error": e.message, "status": e.status}
    tmp = job["result"] + ".part"
    Path(tmp).write_text(json.dumps(answer), encoding="utf-8")
    os.replace(tmp, job["result"])


def _measure(job: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    batch, shape, threads = int(job["batch"]), list(job["input_shape"]), int(job["threads"])
    rng = np.random.default_rng(_SEED)
    inputs = rng.standard_normal((batch, *shape), dtype=np.float32).astype(job["dtype"])
    single = np.ascontiguousarray(inputs[:1])
    started = time.perf_counter()
    deadline = started + 0.8 * float(job["deadline_s"])
    if job["runtime"] == "onnxruntime":
        run_batch, run_single = _onnxruntime(job["model"], threads)
    else:
        run_batch, run_single = _openvino(job["model"], threads, inputs.shape, single.shape)
    for run, data in ((run_batch, inputs), (run_single, single)):
        try:
            for _ in range(_WARMUP_CALLS):
                run(data)
        except Exception as e:  # the runtime's own error is the answer
            raise RequestError(
                400, f"the model does not run on an input of shape {list(data.shape)} "
                f"({job['dtype']}): {_cut(str(e))}"
            ) from e  # fmt: skip
    batch_s = _timed(run_batch, inputs, _THROUGHPUT_S, _THROUGHPUT_MIN_REPEATS, deadline)
    single_s = _timed(run_single, single, _LATENCY_S, _LATENCY_MIN_REPEATS, deadline)
    fps = sorted(batch / t for t in batch_s)
    median_s = statistics.median(batch_s)
    machine = _machine()
    return {
        "agent_version": AGENT_VERSION,
        "runtime": job["runtime"],
        "runtime_version": job["runtime_version"],
        "threads": threads,
        "batch": batch,
        "input_shape": shape,
        "dtype": job["dtype"],
        "fps_best": fps[-1],
        "fps_median": batch / median_s,
        "fps_spread_pct": 100.0 * (_quantile(batch_s, 0.9) - _quantile(batch_s, 0.1)) / median_s,
        "fps_repeats": len(batch_s),
        "latency_ms_p50": 1000.0 * _quantile(single_s, 0.5),
        "latency_ms_p90": 1000.0 * _quantile(single_s, 0.9),
        "latency_repeats": len(single_s),
        "peak_rss_mb": _peak_rss_mb(),
        "model_size_bytes": os.path.getsize(job["model"]),
        "measure_s": time.perf_counter() - started,
        "measured_on": _describe(machine),
        "machine": machine,
    }


def _onnxruntime(model: str, threads: int) -> tuple[Any, Any]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own unexported types
        raise RequestError(400, f"onnxruntime cannot load the model: {_cut(str(e))}") from e
    feeds = session.get_inputs()
    if len(feeds) != 1:
        raise RequestError(400, f"the model has {len(feeds)} inputs; the agent feeds exactly one")
    name = feeds[0].name

    def run(data: Any) -> None:
        session.run(None, {name: data})

    return run, run


def _openvino(model: str, threads: int, batch_shape: Any, single_shape: Any) -> tuple[Any, Any]:
    ov = importlib.import_module("openvino")
    core = ov.Core()
    try:
        inputs = len(core.read_model(model).inputs)
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        compiled = []
        # Static shapes, as OpenVINO is deployed: one program for the batch, one for batch 1.
        for shape in (batch_shape, single_shape):
            g = core.read_model(model)
            g.reshape({g.inputs[0].any_name: ov.PartialShape(list(shape))})
            compiled.append(core.compile_model(g, "CPU", config))
    except Exception as e:  # OpenVINO raises plain RuntimeErrors
        raise RequestError(400, f"openvino cannot load the model: {_cut(str(e))}") from e
    if inputs != 1:
        raise RequestError(400, f"the model has {inputs} inputs; the agent feeds exactly one")
    requests = [c.create_infer_request() for c in compiled]

    def run_batch(data: Any) -> None:
        requests[0].infer([data])

    def run_single(data: Any) -> None:
        requests[1].infer([data])

    return run_batch, run_single


def _timed(run: Any, data: Any, seconds: float, min_repeats: int, deadline: float) -> list[float]:
    """Durations of ``run(data)``: at least ``min_repeats`` and ``seconds`` of them, cut at the
    deadline (after one) so a slow model still answers within the agent's limit."""
    times: list[float] = []
    begin = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        run(data)
        t1 = time.perf_counter()
        times.append(t1 - t0)
        if len(times) >= min_repeats and t1 - begin >= seconds:
            return times
        if t1 >= deadline:
            return times


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's ``ru_maxrss`` keeps the peak of the process
    before ``exec`` (the server's), so the memory's own high-water mark (VmHWM) comes first."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Kilobytes on Linux, bytes on macOS.
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


# --- the command line ------------------------------------------------------------------------


def _read_token(token_file: str | None) -> str:
    if token_file is not None:
        path = Path(token_file)
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise SystemExit(f"cannot read the token file {path}: {e.strerror}") from e
        if os.name == "posix" and path.stat().st_mode & 0o077:
            log.warning("the token file %s is readable by others; chmod 600 it", path)
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise SystemExit(
            f"no token: give --token-file PATH or set {TOKEN_ENV}; make one with: "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    if len(token) < MIN_TOKEN_CHARS:
        raise SystemExit(f"the token is too short: use at least {MIN_TOKEN_CHARS} characters")
    return token


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="device_agent.py",
        description="Measure ONNX models on this device for archsmith (see the file's docstring).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks one)")
    p.add_argument("--token-file", help=f"file holding the token (else ${TOKEN_ENV})")
    p.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                   help="largest model file accepted, in bytes (default 256 MiB)")  # fmt: skip
    p.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                   help="time limit of one measurement (default 120)")  # fmt: skip
    p.add_argument("--log-level", default="INFO")
    return p


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the agent until interrupted; exit code 2 when it cannot start."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    if args.max_bytes < 1 or args.max_seconds <= 0:
        log.error("--max-bytes and --max-seconds must be positive")
        return 2
    try:
        token = _read_token(args.token_file)
        server = make_server(args.host, args.port, token, max_bytes=args.max_bytes,
                             max_seconds=args.max_seconds)  # fmt: skip
    except SystemExit as e:
        log.error("%s", e.code)  # noqa: TRY400 - a message for the user, not a bug
        return 2
    except OSError as e:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, e.strerror or e)  # noqa: TRY400
        return 2
    host, port = server.server_address[:2]
    runtimes = _installed_runtimes()
    log.info("archsmith device agent %s listening on http://%s:%s (runtimes: %s)", AGENT_VERSION,
             host, port, ", ".join(f"{k} {v}" for k, v in runtimes.items()) or "none")  # fmt: skip
    if not runtimes:
        log.warning("no runtime imports here: install onnxruntime or openvino")
    if host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("plain HTTP on %s: the token crosses the network in the clear; prefer "
                    "--host 127.0.0.1 with an SSH tunnel or a TLS proxy", host)  # fmt: skip
    # A service manager (systemd, docker stop) asks with SIGTERM: stop as on Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopped")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
