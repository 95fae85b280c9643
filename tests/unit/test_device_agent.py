"""The device agent and its client, on 127.0.0.1: figures, the token, the limits, dead devices.

The agent runs in this process (a server thread; each measurement in its own child process, as on
a device) on a free port; a few checks run the copied file standalone, as a device would.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from archsmith.device_agent import AGENT_VERSION, MEASURE_FIELDS, agent_source, make_server
from archsmith.device_client import DeviceError, device_info, measure_on_device
from archsmith.errors import InputError

TOKEN = secrets.token_urlsafe(24)
SHAPE = [3, 8, 8]
Agent = Callable[..., str]


def tiny_model(path: Path) -> Path:
    """x[N,3,8,8] -> Flatten -> MatMul(192x10): a model of a few kB with a free batch size."""
    weight = np.random.default_rng(1).standard_normal((192, 10)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *SHAPE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def _serve(server: ThreadingHTTPServer | HTTPServer) -> str:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def start_agent() -> Iterator[Agent]:
    """Starts agents with the given limits on free ports; all are shut down after the test."""
    servers: list[ThreadingHTTPServer] = []

    def start(**limits: Any) -> str:
        server = make_server("127.0.0.1", 0, TOKEN, **limits)
        servers.append(server)
        return _serve(server)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def agent() -> Iterator[str]:
    server = make_server("127.0.0.1", 0, TOKEN)
    yield _serve(server)
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _raw(url: str, request: bytes, timeout_s: float = 10) -> tuple[int, dict[str, Any]]:
    """Send ``request`` as bytes (and nothing more); the status and JSON body of the answer."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _length(data: bytes) -> int:
    found = re.search(rb"Content-Length: (\d+)", data.split(b"\r\n\r\n", 1)[0])
    return int(found.group(1)) if found else 0


def _measure(url: str, model: Path, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"runtime": "onnxruntime", "threads": 1, "batch": 4,
                            "input_shape": SHAPE} | kw  # fmt: skip
    return measure_on_device(url, TOKEN, model, **args)


# --- what the agent answers -----------------------------------------------------------------


def test_info_names_the_runtimes_and_the_machine(agent: str) -> None:
    import onnxruntime

    info = device_info(agent, TOKEN, timeout_s=60)
    assert info["agent_version"] == AGENT_VERSION
    assert info["runtimes"]["onnxruntime"] == onnxruntime.__version__
    assert info["cpu_count"] == os.cpu_count()
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert info["machine"]
    assert info["max_bytes"] == 256 << 20


def test_measure_gives_sane_figures_and_leaves_no_file(
    agent: str, model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the agent keeps the upload
    r = _measure(agent, model_file, batch=4)
    assert set(MEASURE_FIELDS) <= set(r)
    assert (r["runtime"], r["threads"], r["batch"], r["input_shape"]) == (
        "onnxruntime",
        1,
        4,
        SHAPE,
    )
    assert r["fps_best"] >= r["fps_median"] > 0
    assert r["latency_ms_p90"] >= r["latency_ms_p50"] > 0
    assert r["fps_repeats"] >= 5
    assert r["latency_repeats"] >= 10
    assert r["model_size_bytes"] == model_file.stat().st_size
    assert 10 < r["peak_rss_mb"] < 4096
    assert r["measured_on"]
    assert r["machine"]["cpu_count"] == os.cpu_count()
    assert list(tmp_path.iterdir()) == []


def test_openvino_measures_the_same_model(agent: str, model_file: Path) -> None:
    if "openvino" not in device_info(agent, TOKEN, timeout_s=60)["runtimes"]:
        pytest.skip("openvino is not installed here")
    r = _measure(agent, model_file, runtime="openvino", threads=2, batch=2)
    assert (r["runtime"], r["threads"], r["batch"]) == ("openvino", 2, 2)
    assert r["fps_median"] > 0
    assert r["latency_ms_p50"] > 0


# --- what it refuses ------------------------------------------------------------------------


def test_a_missing_or_wrong_token_is_refused(
    agent: str, model_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    status, body = _raw(agent, b"GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 401
    assert "token" in body["error"]
    wrong = b"Authorization: Bearer " + b"x" * len(TOKEN)
    status, _ = _raw(agent, b"GET /info HTTP/1.1\r\nHost: x\r\n" + wrong + b"\r\n\r\n")
    assert status == 401
    for call in (
        lambda: device_info(agent, "y" * 32, timeout_s=10),
        lambda: measure_on_device(
            agent,
            "y" * 32,
            model_file,
            runtime="onnxruntime",
            threads=1,
            batch=1,
            input_shape=SHAPE,
        ),
    ):
        with pytest.raises(DeviceError, match="set ARCHSMITH_DEVICE_TOKEN to the token"):
            call()
    device_info(agent, TOKEN, timeout_s=60)
    assert TOKEN not in caplog.text


def test_an_oversized_body_is_refused_before_it_is_read(start_agent: Agent, tmp_path: Path) -> None:
    url = start_agent(max_bytes=4096)
    # Headers only: the answer comes although not one byte of the announced terabyte was sent.
    head = (
        f"POST /measure?runtime=onnxruntime&shape=3,8,8 HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: {1 << 40}\r\n\r\n"
    )
    started = time.monotonic()
    status, body = _raw(url, head.encode())
    assert status == 413
    assert "--max-bytes" in body["error"]
    assert time.monotonic() - started < 5
    # The client stops uploading when the refusal comes, and says what to change.
    big = tmp_path / "big.onnx"
    big.write_bytes(os.urandom(8 << 20))
    with pytest.raises(DeviceError, match=r"too large \(413\).*--max-bytes"):
        _measure(url, big)
    # Its own bound is checked before anything is sent.
    with pytest.raises(DeviceError, match="over max_bytes=1000"):
        _measure("http://127.0.0.1:9", big, max_bytes=1000)


def test_a_body_without_a_length_is_refused(agent: str) -> None:
    head = (
        f"POST /measure?runtime=onnxruntime&shape=3,8,8 HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    status, body = _raw(agent, head.encode())
    assert status == 411
    assert "Content-Length" in body["error"]


def test_a_malformed_model_gets_the_runtimes_message(agent: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model" * 50)
    with pytest.raises(
        DeviceError, match=r"\(400\): onnxruntime cannot load the model: .*Protobuf"
    ):
        _measure(agent, bad)


def test_the_wrong_input_shape_is_a_400(agent: str, model_file: Path) -> None:
    with pytest.raises(DeviceError, match=r"does not run on an input of shape \[1, 3, 9, 9\]"):
        _measure(agent, model_file, batch=1, input_shape=[3, 9, 9])


def test_an_unknown_runtime_is_refused_with_the_installed_ones(
    agent: str, model_file: Path
) -> None:
    with pytest.raises(DeviceError, match=r"unknown or absent runtime 'tflite'.*onnxruntime"):
        _measure(agent, model_file, runtime="tflite")


def test_a_measurement_past_the_time_limit_is_stopped(start_agent: Agent, model_file: Path) -> None:
    url = start_agent(max_seconds=0.05)  # not even enough to start the child's interpreter
    started = time.monotonic()
    with pytest.raises(DeviceError, match=r"\(504\).*limit of 0\.05 s.*--max-seconds"):
        _measure(url, model_file)
    assert time.monotonic() - started < 10


# --- the client against dead devices and strangers ------------------------------------------


def test_nothing_listening_is_a_clear_error(model_file: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(DeviceError, match=r"nothing listens at .*is the agent running") as e:
        _measure(url, model_file, timeout_s=5)
    assert isinstance(e.value, InputError)
    with pytest.raises(DeviceError, match="nothing listens"):
        device_info(url, TOKEN, timeout_s=5)


@pytest.mark.parametrize("upload_mb", [0, 8])
def test_a_device_that_never_answers_times_out(tmp_path: Path, upload_mb: int) -> None:
    # The kernel completes connections on a listening socket that nobody accepts: a hung agent.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        model = tmp_path / "m.onnx"
        model.write_bytes(os.urandom(max(upload_mb << 20, 100)))
        started = time.monotonic()
        with pytest.raises(DeviceError, match="did not answer within 1 s: is the agent running"):
            _measure(url, model, timeout_s=1)
        assert time.monotonic() - started < 4


class _Stranger(BaseHTTPRequestHandler):
    """Answers every request with the server's canned body."""

    server: Any

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>hello</html>", "not JSON"),
        (b"[1, 2]", "not an object"),
        (json.dumps({"agent_version": 1}).encode(), "agent_version is int, not str"),
        (b'{"a": "' + b"x" * (2 << 20) + b'"}', "more than 1048576 bytes"),
    ],
)
def test_a_reply_that_is_not_the_agents_is_refused(body: bytes, message: str) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Stranger)
    server.body = body  # type: ignore[attr-defined]
    url = _serve(server)
    try:
        with pytest.raises(DeviceError, match=message):
            device_info(url, TOKEN, timeout_s=10)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:8765", "file:///etc/passwd", "127.0.0.1:8765",
                                 "http://", "http://u:p@127.0.0.1:8765"])  # fmt: skip
def test_only_http_urls_are_accepted(url: str) -> None:
    with pytest.raises(DeviceError, match="device URL"):
        device_info(url, TOKEN, timeout_s=1)


# --- the file a device runs -----------------------------------------------------------------

DEVICE_MODULES = {"numpy", "onnxruntime", "openvino", "resource"}


def test_the_agent_imports_only_the_stdlib_numpy_and_runtimes() -> None:
    tree = ast.parse(agent_source())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    stdlib = set(sys.stdlib_module_names)
    assert imported - stdlib - DEVICE_MODULES == set()
    # Imported by name, for the optional runtime.
    assert re.findall(r"import_module\(\"(\w+)\"\)", agent_source()) == ["openvino"]


def test_the_copied_file_runs_standalone_and_needs_a_token(tmp_path: Path) -> None:
    script = tmp_path / "device_agent.py"
    script.write_text(agent_source())
    env = {k: v for k, v in os.environ.items() if k != "ARCHSMITH_DEVICE_TOKEN"}
    refused = subprocess.run([sys.executable, str(script), "--port", "0"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2
    assert "no token" in refused.stderr
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    proc = subprocess.Popen(
        [sys.executable, "-I", str(script), "--port", "0", "--token-file", str(token_file)],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line)
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if found:
                break
        else:
            pytest.fail(f"the agent did not start: {''.join(lines)}")
        info = device_info(found.group(1), TOKEN, timeout_s=60)
        assert info["agent_version"] == AGENT_VERSION
        assert TOKEN not in "".join(lines)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_python_dash_m_runs_the_agent() -> None:
    done = subprocess.run([sys.executable, "-m", "archsmith.device_agent", "--help"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0
    assert "--token-file" in done.stdout
