"""The measuring process: every figure a user reads, computed without the candidate's code.

This process is given the program the candidate's process exported (``program.json`` and
``program.safetensors``, copied by the host after it checked them) and never imports the candidate's
module: a candidate cannot patch this code, forge its result or see the labels it is scored on.

- ``inspect``: output shape, parameters, size and FLOPs of the (untrained) program.
- ``score``: training and validation accuracy and loss, and the test split's when asked (once, at
  the end of a run); a non-finite loss or output is divergence.
- ``speed``: throughput at the batch size over the validation split, batch-1 latency (both timed
  as ``scoring.timing`` does, to hold when other work shares the machine), inference energy, and
  the validation accuracy of the timed passes' own answers: every pass must answer as the first
  (``scoring.agreement``), and batch-1 outputs must match the batched ones, so what was timed is
  what was scored (the host holds this accuracy to the ``score`` job's).

A program has no state (the loader's operator allowlist is the mechanism). On top of it, every op
takes a digest of each tensor the program holds and of each input tensor it feeds it, before the
program's first call and after its last (``_Tripwire``): a change is a ContractError, so the
figures are never returned.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from archsmith.scoring.agreement import pass_flips_allowed
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
)
from archsmith.scoring.timing import Clock, latency, throughput

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


def _held_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor ``module`` holds, by name: parameters, buffers and plain tensor attributes."""
    held: dict[str, torch.Tensor] = {}
    for prefix, sub in module.named_modules(remove_duplicate=False):
        for name, value in [*sub._parameters.items(), *sub._buffers.items(), *vars(sub).items()]:
            if isinstance(value, torch.Tensor):
                held[f"{prefix}.{name}" if prefix else name] = value
    return held


def _digest(tensor: torch.Tensor) -> bytes:
    """blake2b of a tensor's dtype, shape and bytes (copied to the CPU first when elsewhere)."""
    digest = hashlib.blake2b(f"{tensor.dtype} {list(tensor.shape)}".encode(), digest_size=32)
    with torch.inference_mode():
        raw = tensor.detach().reshape(-1).contiguous().view(torch.uint8).cpu()
    digest.update(raw.numpy().data)
    return digest.digest()


class _Tripwire:
    """Digests of the program's tensors and of the inputs a job feeds it, taken before the
    program's first call and compared after its last.

    Not the mechanism that keeps a program from keeping state (the loader's allowlist is): a
    program could put its tensors back before a job ends. What it catches is a write that
    outlives the job's work, into the program's tensors or the split it is fed; a figure measured
    on a program that changed is not returned. An image batch is normalised into a new tensor for
    every call, so a write to it dies with the batch; a text batch is a slice of the split itself,
    which the split's digest covers.
    """

    def __init__(self, module: nn.Module, inputs: dict[str, torch.Tensor | None]) -> None:
        self._module = module
        self._inputs = {name: t for name, t in inputs.items() if t is not None}
        self._before = self._digests()

    def _digests(self) -> dict[str, bytes]:
        tensors = {f"its {name}": t for name, t in _held_tensors(self._module).items()}
        tensors.update({f"the {name} it was fed": t for name, t in self._inputs.items()})
        return {name: _digest(t) for name, t in tensors.items()}

    def check(self) -> None:
        """Raise ContractError when a tensor changed (or one appeared or went) since the start."""
        after = self._digests()
        changed = sorted(
            n for n in self._before.keys() | after.keys() if self._before.get(n) != after.get(n)
        )
        if changed:
            shown = ", ".join(n[:80] for n in changed[:3]) + (", ..." if len(changed) > 3 else "")
            raise ContractError(
                f"the program's tensors changed while it was measured ({shown}): a measured"
                " program has no state and writes nothing it is given, so its figures are not"
                " returned"
            )


def _data_tensors(dev: Any) -> dict[str, torch.Tensor | None]:
    """The tensors of a ``DeviceData`` a job feeds the program from, by what they are."""
    return {
        "training samples": dev.x_train,
        "training labels": dev.y_train,
        "validation samples": dev.x_val,
        "validation labels": dev.y_val,
        "normalisation mean": dev.mean,
        "normalisation std": dev.std,
    }


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
    pair, one = dummy_input(args, 2, cpu), dummy_input(args, 1, cpu)
    tripwire = _Tripwire(module, {"dummy batch": pair, "dummy sample": one})
    with torch.inference_mode():
        out = module(pair)
        counter = FlopCounterMode(display=False)
        with counter:
            module(one)
    tripwire.check()
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
    test_x = test_y = None
    if "test" in splits:
        if test is None or len(test) == 0:
            raise ContractError("the test split was asked for, and this dataset has none")
        test_x = torch.from_numpy(test).to(device)
        test_y = torch.from_numpy(data.y_test).to(device)
        parts["test"] = (test_x, test_y)
    tripwire = _Tripwire(
        module, {**_data_tensors(dev), "test samples": test_x, "test labels": test_y}
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
    tripwire.check()
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
    """Throughput over the validation split, batch-1 latency, inference energy, and the
    validation accuracy of the timed passes' own answers.

    Each timed pass keeps its answers (the argmax of each batch, part of the timed work as it is
    of any classifier's); every pass must give the first pass's answers (``scoring.agreement``),
    and the accuracy is the first pass's, so the figure the host compares with the ``score`` job's
    is the timed computation's own. On a CPU each pass is charged its CPU time over torch's
    threads (``timing.throughput``); every figure carries its repeats, spread and method.
    """
    from archsmith.metrics import joules_to_kwh_pue
    from archsmith.training import DeviceData

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
    tripwire = _Tripwire(module, _data_tensors(dev))
    started = time.perf_counter()
    batch = int(args.get("batch_size", 256))
    min_seconds = float(args.get("min_seconds", 1.0))
    warmup = int(args.get("warmup", 3))
    _check_output(module, dev.prepare(dev.x_val[:2]), data.num_classes)
    consistency = _batch_consistency(module, dev, batch)
    answers: list[list[torch.Tensor]] = []

    def one_pass() -> None:
        kept: list[torch.Tensor] = []
        with torch.inference_mode():
            for i in range(0, n, batch):
                kept.append(module(dev.prepare(dev.x_val[i : i + batch])).argmax(dim=1))
        answers.append(kept)

    with torch.inference_mode():
        for _ in range(warmup):
            module(dev.prepare(dev.x_val[:batch]))
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    threads = torch.get_num_threads()
    meter = make_job_meter(job, args)
    meter.start()
    fps = throughput(
        one_pass,
        n,
        threads=threads,
        clock=Clock.WALL if device.type == "cuda" else Clock.CPU,
        min_seconds=min_seconds,
        min_passes=int(args.get("min_passes", 3)),
        max_passes=1000,
        sync=sync,
    )
    energy = meter.stop()
    passes, seconds = fps.repeats, fps.wall_seconds
    images = passes * n
    per_image_j = energy.joules / images
    x1 = dev.prepare(dev.x_val[:1])
    # Batch-1 latency on one thread by default: two threads at batch 1 wait for each other at
    # every operator, and with another program on the cores a call took 100 ms instead of 0.6.
    lat_threads = max(1, min(threads, int(args.get("latency_threads", 1))))
    torch.set_num_threads(lat_threads)
    try:
        with torch.inference_mode():
            for _ in range(max(warmup, 5)):
                module(x1)
            lat = latency(
                lambda: module(x1),
                threads=lat_threads,
                clock=Clock.CPU if device.type == "cpu" and lat_threads == 1 else Clock.WALL,
                # The median, as every latency archsmith reports: on one CPU thread charged its
                # CPU time, a call another program delayed costs no more.
                quantile=0.5,
                budget_s=float(args.get("latency_seconds", 0.5)),
                min_repeats=20,
                max_repeats=500,
                sync=sync,
            )
    finally:
        torch.set_num_threads(threads)
    tripwire.check()
    agreement, first = _passes_agree(answers, device)
    correct = int((first == dev.y_val).sum().item())
    val_j = per_image_j * n
    return {
        # fps (CPU time over threads on a CPU, so it holds under load) with its repeats, spread,
        # method, threads and the wall-clock figure of the same passes (``scoring.timing``).
        **fps.as_fields("fps"),
        "eval_batch_size": batch,
        "passes": passes,
        "images": images,
        # Wall seconds of the timed passes (what the energy figure covers).
        "seconds": seconds,
        # latency_ms: the median batch-1 time on latency_threads (CPU time on one CPU thread,
        # else wall time); its quantiles and the wall-clock figure beside it.
        **lat.as_fields("latency", unit="ms", scale=1e3),
        "energy_per_image_j": per_image_j,
        "energy_per_image_kwh_pue": joules_to_kwh_pue(per_image_j),
        "val_energy_j": val_j,
        "val_energy_kwh_pue": joules_to_kwh_pue(val_j),
        "val_energy_source": energy.source.value,
        "val_energy_detail": energy.detail,
        "val_accuracy": correct / n,
        "val_samples": n,
        "pass_agreement": agreement,
        "batch_consistency": consistency,
        "device": str(device_of(job)),
        # The measuring work above (everything after loading the data and the program).
        "work_seconds": time.perf_counter() - started,
    }


def _passes_agree(
    answers: list[list[torch.Tensor]], device: torch.device
) -> tuple[dict[str, Any], torch.Tensor]:
    """Every timed pass's answers against the first's, and the first's answers.

    A program has no state, so the same batches get the same answers on every pass: exactly on a
    CPU, up to the ties ``pass_flips_allowed`` grants a GPU. Raises ContractError for a pass that
    answered otherwise on more samples.
    """
    stacked = torch.stack([torch.cat(kept) for kept in answers])
    samples = int(stacked.shape[1])
    moved = [int(m) for m in (stacked != stacked[0]).sum(dim=1).tolist()]
    allowed = pass_flips_allowed(samples, str(device))
    worst = max(moved)
    if worst > allowed:
        raise ContractError(
            f"timed pass {moved.index(worst) + 1} of {len(moved)} answered {worst} of {samples}"
            f" validation samples otherwise than the first (at most {allowed} may differ on"
            f" {device}): a program has no state, so the same batches get the same answers on"
            " every pass, and its accuracy and speed cannot be measured honestly"
        )
    return {"passes": len(moved), "max_samples_changed": worst, "allowed": allowed}, stacked[0]


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
    # The exported file is run on the same batches next: they must be what the program was fed.
    tripwire = _Tripwire(module, {**_data_tensors(dev), "batch to check": sample})
    with torch.inference_mode():
        reference = [as_numpy(module(b)) for b in batches]
    tripwire.check()
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
