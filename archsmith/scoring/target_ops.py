"""The ``target`` measuring job: a model's figures on its deployment runtime.

Runs in the measuring process (no candidate code). The model file is built here from the checked
program (``program.json`` and ``program.safetensors``) with torch's ONNX exporter, or, at the end
of a run, is the very ``model.onnx`` that ``archsmith export`` wrote and checked (``source: file``).
For ``precision=int8`` the file is quantised post-training, static, by onnxruntime's own quantiser,
calibrated on training samples only. The runtime (onnxruntime, OpenVINO, or torch running the
program) then answers the validation split (and the test split when asked) at the target batch,
timed, and batch-1 calls give the latency.

A model file is parsed by the runtime, which is attack surface like any input: the file is a regular
file of bounded size (``files.open_untrusted``), and this job runs in the sandbox like every other.
"""

from __future__ import annotations

import logging
import os
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archsmith.scoring.common import (
    ONNX_INPUT,
    ContractError,
    export_onnx_dynamo,
    job_threads,
    load_data,
)
from archsmith.scoring.format import ONNX_FILE, TARGET_FILE
from archsmith.scoring.timing import Clock, latency, throughput

__all__ = ["TARGET_FILE", "op_target"]

log = logging.getLogger(__name__)

_MAX_MODEL_BYTES = 2 << 30


def _quantised(src: Path, dest: Path, calibration: np.ndarray, input_name: str) -> None:
    """Post-training static int8 (QDQ), calibrated on ``calibration`` (training samples only)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches = iter(
                {input_name: calibration[i : i + 32]} for i in range(0, len(calibration), 32)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    pre = dest.with_name("pre-quantisation.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(dest),
        _Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    pre.unlink()


Runner = Callable[[np.ndarray], np.ndarray]


def _onnxruntime(path: Path, threads: int) -> tuple[Runner, str]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: x})[0])

    return run, str(ort.__version__)


def _openvino(path: Path, threads: int) -> tuple[Runner, str]:
    import openvino as ov  # type: ignore[import-untyped]

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(path)),
        "CPU",
        {
            "INFERENCE_NUM_THREADS": threads,
            # OpenVINO may compute in bf16/f16 on CPUs that have it; the target says fp32.
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",
        },
    )
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(request.infer({0: x})[0])

    return run, str(ov.__version__)


def _torch(module: torch.nn.Module, threads: int) -> tuple[Runner, str]:
    torch.set_num_threads(threads)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return np.asarray(module(torch.from_numpy(x)).numpy())

    return run, str(torch.__version__)


def _peak_rss_mb() -> float:
    """This process's peak resident memory since the last reset (``VmHWM``; getrusage's maximum,
    which a reset does not lower, where /proc is not readable)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        log.debug("no VmHWM in /proc/self/status; reading getrusage")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak_rss() -> bool:
    """Reset the peak RSS so the runtime's own peak is read (Linux ``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _machine() -> str:
    return f"{platform.machine()} {platform.processor() or platform.system()}".strip() + (
        f", {os.cpu_count()} cores visible"
    )


def _answers(run: Runner, x: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([run(x[i : i + batch]).argmax(axis=1) for i in range(0, len(x), batch)])


def op_target(args: dict[str, Any], job: dict[str, Any], work_dir: Path) -> dict[str, Any]:
    """Build the target's model file and measure it: throughput at the target batch, batch-1
    latency (p50, p90), file size, peak memory, and accuracy on the validation split (and on the
    test split when ``splits`` names it) as that runtime answers it."""
    from archsmith.files import open_untrusted
    from archsmith.scoring.program import load_program
    from archsmith.training import DeviceData

    runtime = str(args.get("runtime", "onnxruntime"))
    precision = str(args.get("precision", "fp32"))
    batch = int(args.get("batch", 32))
    threads = int(args.get("threads") or job_threads())
    source = str(args.get("source", "program"))
    splits = list(args.get("splits") or ["val"])
    torch.set_num_threads(job_threads())
    data = load_data(job)
    is_text = data.task == "text_classification"
    dev = DeviceData(
        data.x_train, data.y_train, data.x_val, data.y_val, torch.device("cpu"), is_text=is_text,
        keep_train=False,
    )  # fmt: skip
    if int(dev.x_val.shape[0]) == 0:
        raise ContractError("the validation split is empty")
    x_val = dev.prepare(dev.x_val).numpy()
    parts = {"val": (x_val, data.y_val)}
    if "test" in splits:
        if getattr(data, "x_test", None) is None or len(data.x_test) == 0:
            raise ContractError("the test split was asked for, and this dataset has none")
        parts["test"] = (dev.prepare(torch.from_numpy(data.x_test)).numpy(), data.y_test)
    started = time.perf_counter()
    module, _ = load_program(work_dir, "cpu")
    built: dict[str, Any] = {"source": source}
    path = work_dir / TARGET_FILE
    if runtime != "torch":
        if source == "file":
            given = work_dir / ONNX_FILE
            open_untrusted(given, _MAX_MODEL_BYTES).close()  # regular, bounded, not a link
            fp32 = given
        else:
            t = time.perf_counter()
            fp32 = path if precision == "fp32" else work_dir / "fp32.onnx"
            export_onnx_dynamo(module, torch.from_numpy(x_val[:2]), fp32)
            built["export_seconds"] = time.perf_counter() - t
        if precision == "int8":
            t = time.perf_counter()
            samples = int(args.get("calibration_samples", 256))
            train_x = torch.from_numpy(data.x_train[:samples])
            calibration = dev.prepare(train_x).numpy()
            _quantised(
                fp32, path, calibration, ONNX_INPUT if source == "program" else _first_input(fp32)
            )
            built["quantise_seconds"] = time.perf_counter() - t
            built["calibration_samples"] = len(calibration)
            built["calibration_split"] = "train"
        elif fp32 != path:
            path.write_bytes(fp32.read_bytes())
        open_untrusted(path, _MAX_MODEL_BYTES).close()
        size_mb = path.stat().st_size / 1e6
    else:
        size_mb = sum(t.numel() * t.element_size() for t in module.state_dict().values()) / 1e6
    reset = _reset_peak_rss()
    base_mb = _peak_rss_mb()
    opened = time.perf_counter()
    if runtime == "onnxruntime":
        run, version = _onnxruntime(path, threads)
    elif runtime == "openvino":
        run, version = _openvino(path, threads)
    elif runtime == "torch":
        run, version = _torch(module, threads)
    else:
        raise ContractError(f"unknown target runtime {runtime!r}")
    load_seconds = time.perf_counter() - opened
    accuracy: dict[str, float] = {}
    for split, (x, y) in parts.items():
        accuracy[split] = float((_answers(run, x, batch) == np.asarray(y)).mean())
    timed_x = x_val[:batch] if len(x_val) >= batch else np.resize(x_val, (batch, *x_val.shape[1:]))
    for _ in range(3):
        run(timed_x)
    # Timed as the speed job times torch (``scoring.timing``): each pass charged its CPU time
    # over the target's threads, so another program on the cores does not move the figure.
    fps = throughput(
        lambda: run(timed_x),
        batch,
        threads=threads,
        clock=Clock.CPU,
        min_seconds=float(args.get("min_seconds", 1.0)),
        min_passes=5,
        max_passes=10_000,
    )
    one = x_val[:1]
    for _ in range(5):
        run(one)
    lat = latency(
        lambda: run(one),
        threads=threads,
        clock=Clock.CPU if threads == 1 else Clock.WALL,
        quantile=0.5,
        budget_s=float(args.get("latency_seconds", 0.5)),
        min_repeats=20,
        max_repeats=2000,
    )
    peak_mb = _peak_rss_mb()
    return {
        "runtime": runtime,
        "runtime_version": version,
        "threads": threads,
        "batch": batch,
        "precision": precision,
        **fps.as_fields("fps"),
        **lat.as_fields("latency", unit="ms", scale=1e3),
        "size_mb": size_mb,
        "peak_memory_mb": peak_mb if reset else None,
        "memory_before_runtime_mb": base_mb if reset else None,
        "load_seconds": load_seconds,
        "val_accuracy": accuracy["val"],
        "val_samples": len(parts["val"][0]),
        "test_accuracy": accuracy.get("test"),
        "built": built,
        "artifact": TARGET_FILE if runtime != "torch" else None,
        "machine": _machine(),
        "work_seconds": time.perf_counter() - started,
    }


def _first_input(path: Path) -> str:
    import onnx

    return str(onnx.load(str(path), load_external_data=False).graph.input[0].name)
