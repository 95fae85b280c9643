"""Deployment targets end to end: a CNN really trained on digits, its checked program built into
each target's model file by a sandboxed measuring job, measured by the real runtimes, and the
exported file of the session's shared run accepted on a target through the CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from clitools import SCRIPT, env_for
from sharedrun import FinishedRun

from archsmith.device_client import DeviceError, device_info
from archsmith.sandbox import SandboxError
from archsmith.targets import RUNTIMES, installed_version, parse_target
from archsmith.tools.measure_energy import TARGET_FAILED, measure_on_target
from archsmith.tools.runtime import ToolRuntime
from archsmith.tools.schemas import TargetFigures, ToolError, TrainModelInput
from archsmith.tools.train_model import train_model

CNN = """
import torch.nn as nn

def build_model(input_shape, num_classes):
    c = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
    )
"""
DIGITS = {"input_shape": [1, 8, 8], "num_classes": 10}
HAS_OPENVINO = installed_version(RUNTIMES["openvino"]) is not None


@pytest.fixture(scope="module")
def trained(
    warm_local_sandbox: object, module_settings: object, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ToolRuntime, Path, float]:
    runtime = ToolRuntime(warm_local_sandbox, module_settings, device="cpu")  # type: ignore[arg-type]
    out = train_model(
        runtime, TrainModelInput(code=CNN, dataset="digits", epochs=3, seed=1, **DIGITS)
    )
    assert out.ok, out.error
    assert out.model_dir is not None
    assert out.val_accuracy is not None
    return runtime, out.model_dir, out.val_accuracy


def _measure(
    trained: tuple[ToolRuntime, Path, float], text: str, tmp_path: Path
) -> tuple[TargetFigures, Path]:
    runtime, model_dir, _ = trained
    tmp_path.mkdir(parents=True, exist_ok=True)
    kept = tmp_path / "kept.onnx"
    figures = measure_on_target(
        runtime, parse_target(text), runtime.prepare("digits"), model_dir, keep_as=kept
    )
    assert not isinstance(figures, ToolError), figures
    return figures, kept


@pytest.mark.parametrize(
    "text",
    [
        "onnxruntime:threads=1",
        "torch:threads=1,batch=64",
        pytest.param(
            "openvino:threads=1",
            marks=pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed here"),
        ),
    ],
)
def test_fp32_targets_answer_as_the_program_does(
    trained: tuple[ToolRuntime, Path, float], text: str, tmp_path: Path
) -> None:
    figures, kept = _measure(trained, text, tmp_path)
    target = parse_target(text)
    assert (figures.runtime, figures.threads, figures.precision) == (
        target.runtime, 1, "fp32",
    )  # fmt: skip
    assert figures.batch == target.batch
    assert figures.target == str(target)
    assert figures.measured_by == "this machine"
    assert figures.runtime_version
    # The same weights in float32: the same answers on the 288 validation samples, up to a tie.
    assert figures.val_samples == 288
    assert abs(figures.val_accuracy - trained[2]) * 288 <= 1
    assert figures.fps > 0
    assert 0 < figures.latency_ms <= figures.latency_p90_ms
    assert figures.latency_repeats is not None
    assert figures.latency_repeats >= 20
    # The CNN's 21,600 float32 parameters (and its batch norms' statistics): about 0.086 MB.
    assert 0.07 < figures.size_mb < 0.1
    if target.runtime == "torch":
        assert figures.artifact_sha256 is None
    else:
        # The very file measured came back, and it is what its sha256 says.
        assert figures.artifact_sha256 == hashlib.sha256(kept.read_bytes()).hexdigest()
        assert figures.size_mb == pytest.approx(kept.stat().st_size / 1e6)


def test_int8_is_calibrated_smaller_and_close_in_accuracy(
    trained: tuple[ToolRuntime, Path, float], tmp_path: Path
) -> None:
    fp32, _ = _measure(trained, "onnxruntime:threads=1", tmp_path / "a")
    int8, kept = _measure(trained, "onnxruntime:threads=1,precision=int8", tmp_path / "b")
    assert int8.precision == "int8"
    assert int8.built["calibration_split"] == "train"
    assert int8.built["calibration_samples"] == 256
    assert int8.size_mb < 0.5 * fp32.size_mb
    assert abs(int8.val_accuracy - fp32.val_accuracy) <= 0.05
    # The kept file is a quantised ONNX model that onnxruntime runs as it is.
    session = ort.InferenceSession(str(kept), providers=["CPUExecutionProvider"])
    ops = {node.op_type for node in __import__("onnx").load(str(kept)).graph.node}
    assert "QuantizeLinear" in ops
    assert session.run(None, {"input": np.zeros((2, 1, 8, 8), np.float32)})[0].shape == (2, 10)


def test_a_forged_model_file_is_refused_with_the_reason(
    trained: tuple[ToolRuntime, Path, float], tmp_path: Path
) -> None:
    runtime, model_dir, _ = trained
    forged = tmp_path / "model.onnx"
    forged.write_bytes(b"\x08\x07" + os.urandom(4096))
    out = measure_on_target(
        runtime, parse_target("onnxruntime"), runtime.prepare("digits"), model_dir, exported=forged
    )
    assert isinstance(out, ToolError)
    assert out.type == TARGET_FAILED
    assert "could not be measured on onnxruntime" in out.message


def test_a_link_given_as_the_model_file_is_refused(
    trained: tuple[ToolRuntime, Path, float], tmp_path: Path
) -> None:
    runtime, model_dir, _ = trained
    link = tmp_path / "model.onnx"
    link.symlink_to("/etc/passwd")
    # The host copies no link into a job: what the link points at never reaches the runtime.
    with pytest.raises(SandboxError, match=r"cannot copy input file .*model\.onnx"):
        measure_on_target(
            runtime, parse_target("onnxruntime"), runtime.prepare("digits"), model_dir,
            exported=link,
        )  # fmt: skip


def test_targets_lists_what_is_installed(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(SCRIPT), "targets", "--json"], capture_output=True, text=True,
        env=env_for(tmp_path), timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {r["runtime"]: r for r in json.loads(result.stdout)}
    assert set(rows) == set(RUNTIMES)
    assert rows["onnxruntime"]["installed"] == ort.__version__
    assert rows["onnxruntime"]["precisions"] == ["fp32", "int8"]


def test_a_bad_target_is_bad_input(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(SCRIPT), "evaluate", "examples/models/small_cnn.py", "--target", "tensorrt:threads=1"],
        capture_output=True, text=True, env=env_for(tmp_path), timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown target runtime 'tensorrt'" in result.stderr


def test_export_accepts_the_exported_file_on_the_target(
    finished_run: FinishedRun, tmp_path: Path
) -> None:
    out_dir = tmp_path / "export"
    result = subprocess.run(
        [
            str(SCRIPT), "export", finished_run.run_id, "-o", str(out_dir),
            "--target", "onnxruntime:threads=1,precision=int8",
        ],
        capture_output=True, text=True, env=env_for(finished_run.base), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "acceptance on onnxruntime:threads=1" in result.stdout
    accepted = json.loads((out_dir / "acceptance.json").read_text())
    assert accepted["file"] == "model.int8.onnx"
    assert accepted["measured_by"] == "this machine"
    assert accepted["hard_limit_missed"] is False
    names = [row["name"] for row in accepted["rows"]]
    # The shared run's request: "build a 1000-FPS digits classifier".
    assert "throughput (batch 32)" in names
    assert accepted["figures"]["test_accuracy"] is not None
    card = json.loads((out_dir / "model_card.json").read_text())
    listed = {f["name"]: f["sha256"] for f in card["files"]}
    int8 = out_dir / "model.int8.onnx"
    assert listed["model.int8.onnx"] == hashlib.sha256(int8.read_bytes()).hexdigest()
    assert accepted["sha256"] == listed["model.int8.onnx"]
    assert "not on the deployment device" in (out_dir / "MODEL_CARD.md").read_text()
    # The file a user takes away runs in onnxruntime as it is.
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    shape = card["input"]["shape"][1:]
    assert session.run(None, {"input": np.zeros((1, *shape), np.float32)})[0].shape[0] == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_a_dead_device_stops_the_run_resumable(tmp_path: Path) -> None:
    """The device is down when the first candidate is timed: the run says so and how to go on,
    and `resume` finishes it once the agent answers (started here as the device would).

    Slow: a run as a user starts it (its own sandbox, one candidate trained) and its resume,
    which trains the candidate again and exports it; about 70 s idle."""
    port = _free_port()
    token = "t" * 32
    env = {**env_for(tmp_path), "ARCHSMITH_DEVICE_TOKEN": token}
    target = f"onnxruntime:threads=1,device=http://127.0.0.1:{port}"
    first = subprocess.run(
        [str(SCRIPT), "run", "build a digits classifier", "--iterations", "1", "--epochs", "1",
         "--target", target],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert first.returncode == 2, first.stdout + first.stderr
    assert f"nothing listens at http://127.0.0.1:{port}" in first.stderr
    found = re.search(r"archsmith resume (\S+)", first.stderr)
    assert found, first.stderr
    agent = subprocess.Popen(
        [sys.executable, "-m", "archsmith.device_agent", "--host", "127.0.0.1", "--port",
         str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                device_info(f"http://127.0.0.1:{port}", token, timeout_s=5)
                break
            except DeviceError:
                assert time.monotonic() < deadline, "the agent did not start"
                time.sleep(0.5)
        resumed = subprocess.run(
            [str(SCRIPT), "resume", found.group(1)],
            capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"measured on the device at http://127.0.0.1:{port}" in " ".join(resumed.stdout.split())
    accepted = json.loads(
        (tmp_path / "home" / "runs" / found.group(1) / "export" / "acceptance.json").read_text()
    )
    assert accepted["measured_by"] == f"http://127.0.0.1:{port}"
