"""The device agent in a Docker container acting as the edge device, measured over the network.

The container is the CI sandbox image (a bare Debian without Python): like the Docker sandbox
with ``mount_host_python``, the host's interpreter and virtual environment are mounted read-only
at their own paths, and the agent file and its token file read-only under /agent. The agent
listens on the container's own network interface; the test reaches it through a port published
on 127.0.0.1. Skipped without an engine or the image, except under ARCHSMITH_REQUIRE_DOCKER=1.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import numpy as np
import onnx
import pytest
from clitools import SCRIPT, env_for
from docker.models.containers import Container
from docker.types import Mount
from onnx import TensorProto, helper, numpy_helper

from archsmith.device_agent import agent_source
from archsmith.device_client import DeviceError, device_info, measure_on_device
from archsmith.sandbox.docker import LABEL, OWNER_LABEL, docker_available, owner_id

pytestmark = pytest.mark.docker

IMAGE = os.environ.get("ARCHSMITH_SANDBOX_IMAGE", "archsmith-sandbox:ci")
REQUIRED = os.environ.get("ARCHSMITH_REQUIRE_DOCKER", "") == "1"
TOKEN = secrets.token_urlsafe(24)
SHAPE = [3, 32, 32]
AGENT_PORT = 8765
# How long the engine and the agent may take to come up.
START_S = 60.0


def conv_model(path: Path) -> Path:
    """Conv(3->64) -> Relu -> Conv(64->64) -> Relu -> GlobalAveragePool -> Gemm(64->10), batch
    free: small, but enough work per call (a millisecond or two) that overheads do not dominate."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((64, 3, 3, 3)).astype(np.float32), "cw"),
        numpy_helper.from_array(np.zeros(64, np.float32), "cb"),
        numpy_helper.from_array(rng.standard_normal((64, 64, 3, 3)).astype(np.float32), "dw"),
        numpy_helper.from_array(np.zeros(64, np.float32), "db"),
        numpy_helper.from_array(rng.standard_normal((64, 10)).astype(np.float32), "fw"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fb"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Conv", ["r", "dw", "db"], ["d"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["d"], ["s"]),
        helper.make_node("GlobalAveragePool", ["s"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *SHAPE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _engine() -> docker.DockerClient:
    """The engine, waited for while it starts (CI starts it alongside the tests)."""
    deadline = time.monotonic() + START_S
    while True:
        ok, why = docker_available(image=IMAGE)
        if ok:
            return docker.from_env()
        if "not built" in why or time.monotonic() > deadline:
            if REQUIRED:
                pytest.fail(f"Docker is required here (ARCHSMITH_REQUIRE_DOCKER=1): {why}")
            pytest.skip(f"no Docker engine or image: {why}")
        time.sleep(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _python_mounts() -> list[Mount]:
    """The host's interpreter and virtual environment, read-only at their own paths."""
    paths = sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)})
    outer = [p for p in paths if not any(p != q and p.startswith(q + os.sep) for q in paths)]
    return [Mount(p, p, type="bind", read_only=True) for p in outer]


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A running agent container: its URL, the container, and the model file to measure."""
    client = _engine()
    home = tmp_path_factory.mktemp("device")
    agent = home / "device_agent.py"
    agent.write_text(agent_source())
    token_file = home / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    port = _free_port()
    container: Container = client.containers.run(
        IMAGE,
        [
            f"{sys.prefix}/bin/python",
            "/agent/device_agent.py",
            "--host",
            "0.0.0.0",
            "--port",
            str(AGENT_PORT),
            "--token-file",
            "/agent/token",
        ],
        name=f"archsmith-device-{secrets.token_hex(6)}",
        labels={LABEL: "device-agent-test", OWNER_LABEL: owner_id()},
        # The token file's owner, so that it can stay 0600.
        user=f"{os.getuid()}:{os.getgid()}",
        mounts=[
            *_python_mounts(),
            Mount("/agent/device_agent.py", str(agent), type="bind", read_only=True),
            Mount("/agent/token", str(token_file), type="bind", read_only=True),
        ],
        ports={f"{AGENT_PORT}/tcp": ("127.0.0.1", port)},
        read_only=True,
        tmpfs={"/tmp": "rw,nosuid,nodev,size=512m"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        environment={"HOME": "/tmp"},
        detach=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url, container)
        yield {"url": url, "container": container, "model": conv_model(home / "conv.onnx")}
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def _wait_for(url: str, container: Container) -> None:
    deadline = time.monotonic() + START_S
    while True:
        try:
            device_info(url, TOKEN, timeout_s=5)
        except DeviceError as e:
            container.reload()
            if container.status == "exited" or time.monotonic() > deadline:
                logs = container.logs().decode("utf-8", "replace")[-3000:]
                pytest.fail(f"the agent did not come up ({e}); its log:\n{logs}")
            time.sleep(0.5)
        else:
            return


def _in_process_latency_ms(model: Path, repeats: int = 300) -> float:
    """The median latency at batch 1 of the same model, measured here without the agent."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, *SHAPE), dtype=np.float32)
    for _ in range(10):
        session.run(None, {"x": x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, {"x": x})
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def test_the_device_measures_over_the_network(device: dict[str, Any]) -> None:
    info = device_info(device["url"], TOKEN, timeout_s=30)
    assert "onnxruntime" in info["runtimes"]
    r = measure_on_device(device["url"], TOKEN, device["model"], runtime="onnxruntime",
                          threads=1, batch=8, input_shape=SHAPE, timeout_s=120)  # fmt: skip
    assert r["measured_on"] == info["measured_on"]
    assert r["fps_best"] >= r["fps_median"] > 0
    assert r["model_size_bytes"] == device["model"].stat().st_size
    # Sane: the same machine's CPU, so near the latency measured in this process (loosely: two
    # cores are shared with the rest of the suite).
    here = _in_process_latency_ms(device["model"])
    assert here / 5 < r["latency_ms_p50"] < here * 5, (r["latency_ms_p50"], here)


def test_the_device_refuses_a_wrong_token(device: dict[str, Any]) -> None:
    with pytest.raises(DeviceError, match="refused the token: set ARCHSMITH_DEVICE_TOKEN"):
        measure_on_device(device["url"], "z" * 32, device["model"], runtime="onnxruntime",
                          threads=1, batch=1, input_shape=SHAPE, timeout_s=30)  # fmt: skip


def _evaluate_on(url: str, token: str, home: Path) -> subprocess.CompletedProcess[str]:
    """`archsmith evaluate` as a user types it, with the container as the target's device."""
    env = {**env_for(home), "ARCHSMITH_DEVICE_TOKEN": token}
    return subprocess.run(
        [str(SCRIPT), "evaluate", "examples/models/small_cnn.py", "--epochs", "1", "--json",
         "--target", f"onnxruntime:threads=1,device={url}"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_evaluate_times_the_built_file_on_the_device(
    device: dict[str, Any], tmp_path: Path
) -> None:
    """The whole path: the program built into ONNX in the sandbox, its accuracy answered here by
    the same file, its speed timed by the device's agent, which says what it ran on.

    Slow: two `evaluate` commands, each training the model for an epoch in its own sandbox."""
    result = _evaluate_on(device["url"], TOKEN, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    target = json.loads(result.stdout)["target"]
    info = device_info(device["url"], TOKEN, timeout_s=30)
    assert target["measured_by"] == device["url"]
    assert target["machine"] == info["measured_on"]
    assert target["fps"] > 0
    assert 0 < target["latency_ms"] <= target["latency_p90_ms"]
    assert 0 < target["val_accuracy"] <= 1
    wrong = _evaluate_on(device["url"], "y" * 32, tmp_path)
    assert wrong.returncode == 2
    assert "refused the token" in wrong.stderr


def test_a_stopped_device_is_a_clear_error(device: dict[str, Any]) -> None:
    """Last in the module: it stops the shared container."""
    device["container"].stop(timeout=5)
    started = time.monotonic()
    with pytest.raises(DeviceError, match="is the agent running"):
        measure_on_device(device["url"], TOKEN, device["model"], runtime="onnxruntime",
                          threads=1, batch=1, input_shape=SHAPE, timeout_s=10)  # fmt: skip
    assert time.monotonic() - started < 15
