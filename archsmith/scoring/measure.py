"""The measuring process: every figure a user reads, computed without the candidate's code.

This process is given the program the candidate's process exported (``program.json`` and
``program.safetensors``, copied by the host after it checked them) and never imports the candidate's
module: a candidate cannot patch this code, forge its result or see the labels it is scored on.

- ``inspect``: output shape, parameters, size and FLOPs of the (untrained) program.
- ``score``: training and validation accuracy and loss, and the test split's when asked (once, at
  the end of a run); a non-finite loss or output is divergence.
- ``speed``: throughput at the batch size over the validation split, batch-1 latency, inference
  energy. The accuracy pass and the timed passes use the same batches, and batch-1 outputs must
  match the batched ones: a program, which has no state, cannot be fast on the timed passes and
  right on the scored ones.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import fx

from archsmith.scoring.common import (
    EXPORT_ATOL,
    EXPORT_RTOL,
    ContractError,
    as_numpy,
    compare,
    device_of,
    dummy_input,
    exported_file_runner,
    job_threads,
    load_data,
    make_job_meter,
    setup,
    timed,
)

__all__ = ["op_inspect", "op_score", "op_speed", "op_verify"]

#: Training samples scored for T_Acc (the trained model in eval mode, as Algorithm 1's line 11).
TRAIN_EVAL_SAMPLES = 10_000
#: Samples whose batch-1 outputs must match their outputs in a full batch.
_CONSISTENCY_SAMPLES = 8
#: Kernels for a batch of one and of many may sum in another order: float noise is allowed.
_CONSISTENCY_ATOL = 1e-3
_CONSISTENCY_RTOL = 1e-2


def _program(work_dir: Path, device: torch.device) -> tuple[fx.GraphModule, dict[str, Any]]:
    from archsmith.scoring.program import load_program

    return load_program(work_dir, str(device))


def _check_input(program: dict[str, Any], input_shape: list[int], is_text: bool) -> None:
    """The program must take the dataset's samples, in the dataset's dtype."""
    want = [None, *input_shape]
    dtype = "int64" if is_text else "float32"
    got = program["input"]
    if got.get("shape") != want or got.get("dtype") != dtype:
        raise ContractError(
            f"the program takes {got.get('dtype')} inputs of shape {got.get('shape')}; the"
            f" dataset gives {dtype} of shape {want}"
        )


def op_inspect(args: dict[str, Any], job: dict[str, Any], work_dir: Path) -> dict[str, Any]:
    """Output shape on a dummy batch, parameters and size from the file, FLOPs of one sample."""
    from torch.utils.flop_counter import FlopCounterMode

    cpu = torch.device("cpu")
    module, program = _program(work_dir, cpu)
    _check_input(
        program,
        [int(d) for d in args["input_shape"]],
        args.get("task") == "text_classification",
    )
    expected = [2, int(args["num_classes"])]
    with torch.inference_mode():
        out = module(dummy_input(args, 2, cpu))
        counter = FlopCounterMode(display=False)
        with counter:
            module(dummy_input(args, 1, cpu))
    got = list(out.shape) if isinstance(out, torch.Tensor) else []
    result: dict[str, Any] = {
        "output_shape": got,
        "expected_shape": expected,
        "matches": got == expected,
        "params": program["params"],
        "size_mb": program["size_bytes"] / 1e6,
        "flops_per_sample": int(counter.get_total_flops()),
        "program_nodes": len(program["nodes"]),
    }
    if got != expected:
        result["_candidate_error"] = {
            "type": "ShapeMismatch",
            "message": f"the exported program's output has shape {got}; expected {expected}"
            " (batch, num_classes)",
            "line": None,
            "traceback": None,
        }
    return result


def _check_output(module: fx.GraphModule, x: torch.Tensor, num_classes: int) -> None:
    with torch.inference_mode():
        out = module(x)
    want = [int(x.shape[0]), num_classes]
    if not isinstance(out, torch.Tensor) or list(out.shape) != want:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ContractError(f"the program's output is {shape}; expected {want}")


def op_score(args: dict[str, Any], job: dict[str, Any], work_dir: Path) -> dict[str, Any]:
    """Accuracy and loss of the trained program on the training and validation splits (and test).

    Batches are the ``batch_size`` of the speed measurement; training accuracy is over the first
    ``TRAIN_EVAL_SAMPLES`` training samples, in eval mode.
    """
    from archsmith.training import DeviceData, evaluate

    device, data, is_text = setup(job)
    module, program = _program(work_dir, device)
    _check_input(program, list(data.input_shape), is_text)
    limit = int(args.get("train_eval_samples", TRAIN_EVAL_SAMPLES))
    splits = [str(s) for s in args.get("splits", ["train", "val"])]
    dev = DeviceData(
        data.x_train[:limit], data.y_train[:limit], data.x_val, data.y_val, device, is_text=is_text
    )
    batch = int(args.get("batch_size", 256))
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {
        "train": (dev.x_train, dev.y_train),
        "val": (dev.x_val, dev.y_val),
    }
    test = getattr(data, "x_test", None)
    if "test" in splits:
        if test is None or len(test) == 0:
            raise ContractError("the test split was asked for, and this dataset has none")
        parts["test"] = (
            torch.from_numpy(test).to(device),
            torch.from_numpy(data.y_test).to(device),
        )
    started = time.perf_counter()
    first = next((x for x, _ in parts.values() if len(x)), None)
    if first is not None:
        _check_output(module, dev.prepare(first[:2]), data.num_classes)
    result: dict[str, Any] = {
        "params": program["params"],
        "size_mb": program["size_bytes"] / 1e6,
        "eval_batch_size": batch,
        "device": str(device),
    }
    diverged = False
    for name in splits:
        if name not in parts:
            raise ContractError(f"unknown split {name!r}; choose train, val or test")
        x, y = parts[name]
        loss, acc = evaluate(module, dev, x, y, batch_size=batch, amp_dtype=None)
        result[f"{name}_loss"] = loss if math.isfinite(loss) else None
        result[f"{name}_accuracy"] = acc
        result[f"{name}_samples"] = int(x.shape[0])
        diverged = diverged or (len(x) > 0 and not math.isfinite(loss))
    result["diverged"] = diverged
    result["work_seconds"] = time.perf_counter() - started
    if diverged:
        result["_candidate_error"] = {
            "type": "NonFiniteLoss",
            "message": "the trained model's loss is NaN or infinite: training diverged",
            "line": None,
            "traceback": None,
        }
    return result


def op_speed(args: dict[str, Any], job: dict[str, Any], work_dir: Path) -> dict[str, Any]:
    """Throughput over the validation split, batch-1 latency, and inference energy."""
    from archsmith.metrics import joules_to_kwh_pue
    from archsmith.training import DeviceData, evaluate

    device, data, is_text = setup(job)
    module, program = _program(work_dir, device)
    _check_input(program, list(data.input_shape), is_text)
    dev = DeviceData(
        data.x_train, data.y_train, data.x_val, data.y_val, device, is_text=is_text,
        keep_train=False,
    )  # fmt: skip
    n = int(dev.x_val.shape[0])
    if n == 0:
        raise ContractError("the validation split is empty")
    started = time.perf_counter()
    batch = int(args.get("batch_size", 256))
    min_seconds = float(args.get("min_seconds", 1.0))
    warmup = int(args.get("warmup", 3))
    _check_output(module, dev.prepare(dev.x_val[:2]), data.num_classes)
    consistency = _batch_consistency(module, dev, batch)

    def one_pass() -> None:
        with torch.inference_mode():
            for i in range(0, n, batch):
                module(dev.prepare(dev.x_val[i : i + batch]))

    with torch.inference_mode():
        for _ in range(warmup):
            module(dev.prepare(dev.x_val[:batch]))
    meter = make_job_meter(job, args)
    meter.start()
    passes, seconds = 0, 0.0
    while passes == 0 or (seconds < min_seconds and passes < 1000):
        seconds += timed(one_pass, device)
        passes += 1
    energy = meter.stop()
    images = passes * n
    per_image_j = energy.joules / images
    x1 = dev.prepare(dev.x_val[:1])
    with torch.inference_mode():
        for _ in range(max(warmup, 5)):
            module(x1)
        lat: list[float] = []
        budget = float(args.get("latency_seconds", 0.5))
        spent = 0.0
        while len(lat) < 10 or (spent < budget and len(lat) < 500):
            dt = timed(lambda: module(x1), device)
            lat.append(dt * 1e3)
            spent += dt
    _, val_acc = evaluate(module, dev, dev.x_val, dev.y_val, batch_size=batch, amp_dtype=None)
    val_j = per_image_j * n
    return {
        "fps": images / seconds if seconds > 0 else math.inf,
        "eval_batch_size": batch,
        "passes": passes,
        "images": images,
        "seconds": seconds,
        "latency_ms": statistics.median(lat),
        "latency_p90_ms": sorted(lat)[int(0.9 * (len(lat) - 1))],
        "latency_repeats": len(lat),
        "energy_per_image_j": per_image_j,
        "energy_per_image_kwh_pue": joules_to_kwh_pue(per_image_j),
        "val_energy_j": val_j,
        "val_energy_kwh_pue": joules_to_kwh_pue(val_j),
        "val_energy_source": energy.source.value,
        "val_energy_detail": energy.detail,
        "val_accuracy": val_acc,
        "val_samples": n,
        "batch_consistency": consistency,
        "device": str(device_of(job)),
        # The measuring work above (everything after loading the data and the program).
        "work_seconds": time.perf_counter() - started,
    }


def _batch_consistency(module: fx.GraphModule, dev: Any, batch: int) -> dict[str, Any]:
    """Each of the first samples alone must give what it gives inside a full batch.

    A program has no state, but its arithmetic may read the batch size; one that computed less
    (or something else) for a batch of one would report a latency it does not have.
    """
    import numpy as np

    k = min(_CONSISTENCY_SAMPLES, int(dev.x_val.shape[0]))
    with torch.inference_mode():
        full = module(dev.prepare(dev.x_val[:batch]))[:k].double().cpu().numpy()
        alone = np.concatenate(
            [module(dev.prepare(dev.x_val[i : i + 1])).double().cpu().numpy() for i in range(k)]
        )
    if alone.shape != full.shape:
        raise ContractError(
            f"the program's output for single samples has shape {list(alone.shape)}, for the"
            f" same samples in a batch {list(full.shape)}"
        )
    if not (np.isfinite(full).all() and np.isfinite(alone).all()):
        raise ContractError("the program's outputs are NaN or infinite")
    diff = np.abs(alone - full)
    if not np.all(diff <= _CONSISTENCY_ATOL + _CONSISTENCY_RTOL * np.abs(full)):
        raise ContractError(
            "the program's output for a sample depends on the batch it is in (differs by up to"
            f" {float(diff.max()):.3g}); its latency and throughput cannot be"
            " measured honestly"
        )
    return {"samples": k, "max_abs_diff": float(diff.max(initial=0.0))}


#: The files ``archsmith export`` hands the user, by format, as the export job names them.
_EXPORTED = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
_WEIGHTS = "model.safetensors"
#: Bytes of an exported file this process reads at most (a model larger than this is no edge one).
_MAX_EXPORTED_BYTES = 8 << 30


def op_verify(args: dict[str, Any], job: dict[str, Any], work_dir: Path) -> dict[str, Any]:
    """The files an export job wrote, checked against the measured program, with no candidate
    code in this process: what the user takes away is what was measured.

    ``model.safetensors`` must hold the program's own tensors, equal bit for bit (every parameter
    of the program among them); the ONNX file (in onnxruntime) or the TorchScript file must give
    the program's outputs, within the export tolerance, on validation samples (which the export
    job never saw) at the whole batch and at batch 1. Raises ContractError saying what differs.
    """
    import safetensors.torch as st

    from archsmith.files import open_untrusted
    from archsmith.scoring.format import TENSORS_FILE, read_regular_file
    from archsmith.training import DeviceData

    torch.set_num_threads(job_threads())
    cpu = torch.device("cpu")
    module, program = _program(work_dir, cpu)
    fmt = str(args.get("format", "onnx"))
    tol = (float(args.get("atol", EXPORT_ATOL)), float(args.get("rtol", EXPORT_RTOL)))

    weights = st.load(read_regular_file(work_dir / _WEIGHTS, _MAX_EXPORTED_BYTES))
    held = st.load(read_regular_file(work_dir / TENSORS_FILE, _MAX_EXPORTED_BYTES))
    for alias, name in program["aliases"].items():
        held[alias] = held[name]
    for name, tensor in weights.items():
        mine = held.get(name)
        if mine is None or mine.dtype != tensor.dtype or not torch.equal(mine, tensor):
            raise ContractError(
                f"model.safetensors' {name[:80]} is not the measured program's tensor of that name"
            )
    named = set(weights) | {n for a, n in program["aliases"].items() if a in weights}
    missing = sorted(
        n for n, kind in program["tensors"].items() if kind == "parameter" and n not in named
    )
    if missing:
        raise ContractError(f"model.safetensors lacks the measured program's {missing[0][:80]}")
    out: dict[str, Any] = {"safetensors": {"tensors": len(weights), "equal": True}}
    if fmt not in _EXPORTED:
        return out

    data = load_data(job)
    is_text = data.task == "text_classification"
    n = min(int(args.get("check_samples", 256)), int(data.x_val.shape[0]))
    if n == 0:
        raise ContractError("the validation split is empty: there is nothing to check the file on")
    dev = DeviceData(
        data.x_train, data.y_train, data.x_val[:n], data.y_val[:n], cpu, is_text=is_text,
        keep_train=False,
    )  # fmt: skip
    sample = dev.prepare(dev.x_val)
    batches = [sample, sample[:1]] if n > 1 else [sample]
    with torch.inference_mode():
        reference = [as_numpy(module(b)) for b in batches]
    path = work_dir / _EXPORTED[fmt]
    open_untrusted(path, _MAX_EXPORTED_BYTES).close()  # a regular file of bounded size, no link
    run = exported_file_runner(fmt, path)
    check = compare(run, batches, reference, tol)
    if not check["passed"]:
        why = check["problem"] or f"outputs differ by up to {check['max_abs_diff']:.3g}"
        raise ContractError(
            f"the {fmt} file does not compute what the measured program computes ({why}) on"
            f" {n} validation samples"
        )
    return {**out, fmt: {**check, "samples": n, "split": "val"}}
