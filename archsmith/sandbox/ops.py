"""The tools' work, done inside the sandbox on the candidate's code.

Each ``op_*`` takes the job's arguments and returns a JSON-ready dict. A failure of the candidate
is either raised (the runner turns the exception into a structured error with the candidate's
line) or, when there is a partial result worth keeping (a shape mismatch, a diverged run), returned
under the key ``_candidate_error``.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import re
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

__all__ = [
    "EXPORT_ATOL",
    "EXPORT_FORMATS",
    "EXPORT_RTOL",
    "ONNX_FILE",
    "SAFETENSORS_FILE",
    "TORCHSCRIPT_FILE",
    "WEIGHTS_FILE",
    "ContractError",
    "load_candidate",
    "op_export",
    "run_tool",
]

log = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.pt"
#: Images whose meaning changes when mirrored: no horizontal flip when training on them.
_NO_HFLIP = frozenset({"digits"})


class ContractError(Exception):
    """The candidate does not follow the code contract (no ``build_model``, not a Module ...)."""


def load_candidate(path: str) -> ModuleType:
    """Import the candidate module from its file (its top-level code runs here, in the sandbox)."""
    spec = importlib.util.spec_from_file_location("candidate", path)
    if spec is None or spec.loader is None:
        raise ContractError(f"cannot load the candidate module from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(candidate: str, input_shape: list[int], num_classes: int) -> nn.Module:
    """Call the candidate's ``build_model(input_shape, num_classes)`` and check what it returns."""
    module = load_candidate(candidate)
    factory = getattr(module, "build_model", None)
    if not callable(factory):
        raise ContractError(
            "the candidate must define build_model(input_shape: tuple[int, ...], num_classes: int)"
            " -> torch.nn.Module"
        )
    model = factory(tuple(input_shape), int(num_classes))
    if not isinstance(model, nn.Module):
        raise ContractError(f"build_model returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _device(job: dict[str, Any]) -> torch.device:
    name = str(job.get("device") or "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name} was requested but CUDA is not available in the sandbox")
    return torch.device(name)


def _dummy_input(args: dict[str, Any], batch: int, device: torch.device) -> torch.Tensor:
    shape = [batch, *(int(d) for d in args["input_shape"])]
    if args.get("task") == "text_classification":
        vocab = int(args.get("vocab_size") or 20_000)
        return torch.randint(0, vocab, shape, device=device)
    return torch.randn(shape, device=device)


def op_check_shapes(args: dict[str, Any], job: dict[str, Any], candidate: str) -> dict[str, Any]:
    """Build the model and run a forward pass on a dummy batch; compare with (batch, classes)."""
    device = _device(job)
    batch = int(args.get("batch_size", 2))
    model = build(candidate, args["input_shape"], args["num_classes"]).to(device).eval()
    with torch.inference_mode():
        out = model(_dummy_input(args, batch, device))
    if not isinstance(out, torch.Tensor):
        raise ContractError(f"the model's forward returned {type(out).__name__}, not a Tensor")
    expected = [batch, int(args["num_classes"])]
    got = list(out.shape)
    result: dict[str, Any] = {
        "output_shape": got,
        "expected_shape": expected,
        "matches": got == expected,
    }
    if got != expected:
        result["_candidate_error"] = {
            "type": "ShapeMismatch",
            "message": f"the model's output has shape {got}; expected {expected}"
            " (batch, num_classes)",
            "line": None,
            "traceback": None,
        }
    return result


def op_count_params(args: dict[str, Any], job: dict[str, Any], candidate: str) -> dict[str, Any]:
    """Parameters, trainable parameters, size in MB and FLOPs of one forward pass of one sample."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build(candidate, args["input_shape"], args["num_classes"]).eval()
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    size_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    size_bytes += sum(b.numel() * b.element_size() for b in model.buffers())
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(_dummy_input(args, 1, torch.device("cpu")))
    return {
        "params": params,
        "trainable_params": trainable,
        "size_mb": size_bytes / 1e6,
        "flops_per_sample": int(counter.get_total_flops()),
    }


def _load_data(job: dict[str, Any]) -> Any:
    from archsmith.data.prepared_format import load_prepared

    path = job.get("dataset_path")
    if not path:
        raise ContractError("this tool needs a prepared dataset, and the job names none")
    return load_prepared(Path(path))


def _setup(job: dict[str, Any]) -> tuple[torch.device, Any, bool]:
    """Device, all cores for torch, and the prepared dataset (with whether it is text)."""
    device = _device(job)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    data = _load_data(job)
    return device, data, data.task == "text_classification"


def _meter(job: dict[str, Any], args: dict[str, Any]) -> Any:
    from archsmith.energy import make_meter

    return make_meter(str(job.get("device") or "cpu"), float(args.get("estimate_watts", 65.0)))


def _reading(prefix: str, reading: Any) -> dict[str, Any]:
    return {
        f"{prefix}_energy_j": reading.joules,
        f"{prefix}_energy_kwh_pue": reading.kwh_pue,
        f"{prefix}_energy_source": reading.source.value,
        f"{prefix}_energy_detail": reading.detail,
    }


def op_train_model(
    args: dict[str, Any], job: dict[str, Any], candidate: str, work_dir: Path
) -> dict[str, Any]:
    """Train with the recipe of ``archsmith.training``, measure its energy, save the weights."""
    from archsmith.training import DeviceData, TrainConfig, train

    device, data, is_text = _setup(job)
    cfg = TrainConfig(
        epochs=int(args.get("epochs", 5)),
        batch_size=int(args.get("batch_size", 128)),
        optimizer=args.get("optimizer"),
        lr=args.get("lr"),
        weight_decay=float(args.get("weight_decay", 3e-4)),
        augment=bool(args.get("augment", True)),
        hflip=data.name not in _NO_HFLIP,
        seed=int(args.get("seed", 0)),
        time_budget_s=args.get("time_budget_s"),
        amp=bool(args.get("amp", True)),
    )
    torch.manual_seed(cfg.seed)
    model = build(candidate, list(data.input_shape), data.num_classes)
    dev_data = DeviceData(
        data.x_train, data.y_train, data.x_val, data.y_val, device, is_text=is_text
    )
    meter = _meter(job, args)
    meter.start()
    report = train(model, dev_data, cfg)
    energy = meter.stop()
    torch.save(model.state_dict(), work_dir / WEIGHTS_FILE)
    result = report.as_dict()
    result.update(_reading("train", energy))
    result["weights_file"] = WEIGHTS_FILE
    result["train_samples"] = int(data.x_train.shape[0])
    result["val_samples"] = int(data.x_val.shape[0])
    if report.diverged:
        result["_candidate_error"] = {
            "type": "NonFiniteLoss",
            "message": "training diverged: the loss became NaN or infinite"
            f" in epoch {report.epochs_completed}",
            "line": None,
            "traceback": None,
        }
    return result


def _timed(fn: Any, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def op_measure_energy(
    args: dict[str, Any], job: dict[str, Any], candidate: str, work_dir: Path
) -> dict[str, Any]:
    """Inference on the validation split: FPS, batch-1 latency, energy per image and in total."""
    from archsmith.training import DeviceData, evaluate

    device, data, is_text = _setup(job)
    model = build(candidate, list(data.input_shape), data.num_classes)
    weights = work_dir / str(args.get("weights_file", WEIGHTS_FILE))
    if weights.exists():
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.to(device).eval()
    dev_data = DeviceData(
        data.x_train,
        data.y_train,
        data.x_val,
        data.y_val,
        device,
        is_text=is_text,
        keep_train=False,
    )
    n = int(data.x_val.shape[0])
    if n == 0:
        raise ContractError("the validation split is empty")
    batch = int(args.get("batch_size", 256))
    min_seconds = float(args.get("min_seconds", 1.0))
    warmup = int(args.get("warmup", 3))

    def one_pass() -> None:
        with torch.inference_mode():
            for i in range(0, n, batch):
                model(dev_data.prepare(dev_data.x_val[i : i + batch]))

    with torch.inference_mode():
        for _ in range(warmup):
            model(dev_data.prepare(dev_data.x_val[:batch]))
    meter = _meter(job, args)
    meter.start()
    passes, seconds = 0, 0.0
    while passes == 0 or (seconds < min_seconds and passes < 1000):
        seconds += _timed(one_pass, device)
        passes += 1
    energy = meter.stop()
    images = passes * n
    fps = images / seconds if seconds > 0 else math.inf
    per_image_j = energy.joules / images
    # Batch-1 latency: repeats until enough time has passed, median reported.
    x1 = dev_data.prepare(dev_data.x_val[:1])
    with torch.inference_mode():
        for _ in range(max(warmup, 5)):
            model(x1)
        lat: list[float] = []
        budget = float(args.get("latency_seconds", 0.5))
        spent = 0.0
        while len(lat) < 10 or (spent < budget and len(lat) < 500):
            dt = _timed(lambda: model(x1), device)
            lat.append(dt * 1e3)
            spent += dt
    _, val_acc = evaluate(
        model, dev_data, dev_data.x_val, dev_data.y_val, batch_size=batch, amp_dtype=None
    )
    val_j = per_image_j * n
    from archsmith.metrics import joules_to_kwh_pue

    return {
        "fps": fps,
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
        "device": str(device),
    }


#: What ``export`` writes into its work directory; the host copies only these names.
SAFETENSORS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.torchscript.pt"
EXPORT_FORMATS = ("onnx", "torchscript", "pytorch")
#: The lowest opset the dynamo exporter implements natively (a lower one goes through a version
#: converter that fails on common graphs); onnxruntime runs it from 1.14 on.
ONNX_OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
#: Float32 logits computed by another runtime differ by reordered sums and fused kernels: about
#: 1e-6 to 1e-5 on logits of size 1 to 10. A broken export (a baked-in constant, a wrong layout, a
#: missing op, batch norm in training mode) is off by 1e-2 or more. An element passes when
#: |exported - eager| <= atol + rtol * |eager| (numpy's allclose): ten times above the noise, a
#: hundred times below a real fault.
EXPORT_ATOL = 1e-4
EXPORT_RTOL = 1e-3
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_REASON_CHARS = 600
_MAX_WARNINGS = 10


class ExportCheckError(Exception):
    """An exported file loads but does not compute what the trained model computes."""


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in _ANSI.sub("", str(exc)).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    if len(text) > _REASON_CHARS:
        text = text[:_REASON_CHARS] + " [...]"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _reason(exc: BaseException, candidate: str) -> tuple[str, int | None]:
    """One line saying why an exporter failed, and the candidate's line where that is known.

    The exporters wrap the real cause (an op without an ONNX function, a data-dependent branch)
    in a page of generic advice; the innermost exception of the chain names it.
    """
    from archsmith.sandbox.runner import candidate_line

    chain = [exc]
    while len(chain) < 20:
        nxt = chain[-1].__cause__ or chain[-1].__context__
        if nxt is None or nxt in chain:
            break
        chain.append(nxt)
    text = (
        _first_line(exc) if len(chain) == 1 else f"{type(exc).__name__}: {_first_line(chain[-1])}"
    )
    lines = [candidate_line(e.__traceback__, candidate) for e in reversed(chain)]
    return text, next((ln for ln in lines if ln is not None), None)


def _as_numpy(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.detach().cpu().double().numpy()
    import numpy as np

    if isinstance(out, np.ndarray):
        return out.astype(np.float64)
    raise ContractError(f"the model returned {type(out).__name__}, not a Tensor")


def _compare(
    run: Callable[[torch.Tensor], Any],
    batches: list[torch.Tensor],
    reference: list[Any],
    tol: tuple[float, float],
) -> dict[str, Any]:
    """Run ``run`` on every batch and compare with the eager reference, element by element.

    Argmax agreement is reported, not required: two logits within the tolerance of each other are
    a tie that float noise may break either way.
    """
    import numpy as np

    atol, rtol = tol
    max_abs, max_excess, disagree = 0.0, 0.0, 0
    for i, (x, ref) in enumerate(zip(batches, reference, strict=True)):
        got = _as_numpy(run(x))
        if got.shape != ref.shape:
            raise ExportCheckError(
                f"output shape {list(got.shape)} on a batch of {x.shape[0]}; eager PyTorch gives"
                f" {list(ref.shape)}"
            )
        if not np.isfinite(got).all():
            raise ExportCheckError(f"non-finite outputs on a batch of {x.shape[0]}")
        diff = np.abs(got - ref)
        max_abs = max(max_abs, float(diff.max(initial=0.0)))
        max_excess = max(max_excess, float((diff - (atol + rtol * np.abs(ref))).max(initial=0.0)))
        if i == 0:
            disagree = int((got.argmax(axis=1) != ref.argmax(axis=1)).sum())
    return {
        "max_abs_diff": max_abs,
        "argmax_agree": disagree == 0,
        "argmax_disagreements": disagree,
        "samples": int(batches[0].shape[0]),
        "batch_sizes": [int(b.shape[0]) for b in batches],
        "atol": atol,
        "rtol": rtol,
        "passed": max_excess <= 0.0,
    }


def _checked(
    what: str,
    run: Callable[[torch.Tensor], Any],
    batches: list[torch.Tensor],
    reference: list[Any],
    tol: tuple[float, float],
) -> dict[str, Any]:
    """``_compare``, raising ExportCheckError when an output is outside the tolerance."""
    check = _compare(run, batches, reference, tol)
    if not check["passed"]:
        raise ExportCheckError(
            f"{what} differs from the trained PyTorch model by up to {check['max_abs_diff']:.3g}"
            f" on {check['samples']} validation samples (allowed: {tol[0]:g} + {tol[1]:g} *"
            f" |output|; the predicted class differs on {check['argmax_disagreements']})"
        )
    return check


def _record_warnings(caught: list[warnings.WarningMessage], into: list[str]) -> None:
    """Keep what the tools said about the model (a tracer's doubts), not about their own APIs."""
    for w in caught:
        if issubclass(w.category, DeprecationWarning | FutureWarning):
            continue
        line = _ANSI.sub("", str(w.message)).strip().splitlines()[:1]
        text = f"{w.category.__name__}: {line[0] if line else ''}"[:_REASON_CHARS]
        if text not in into and len(into) < _MAX_WARNINGS:
            into.append(text)


def _onnx_session(
    exporter: str, model: nn.Module, example: torch.Tensor, path: Path
) -> Callable[[torch.Tensor], Any]:
    """Export with one exporter, validate the file and open it in onnxruntime (CPU)."""
    import onnx
    import onnxruntime as ort

    if exporter == "dynamo":
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=True,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            opset_version=ONNX_OPSET,
            external_data=False,
            verbose=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
        )
    else:
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
        )
    onnx.checker.check_model(str(path))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> Any:
        return session.run(None, {name: x.numpy()})[0]

    return run


def _torchscript_module(
    exporter: str, model: nn.Module, example: torch.Tensor, path: Path
) -> Callable[[torch.Tensor], Any]:
    """Trace or script the model, save it, and load the file back as a user would."""
    if exporter == "torch.jit.trace":
        compiled = torch.jit.trace(  # type: ignore[no-untyped-call]
            model, (example,), check_trace=False
        )
    else:
        compiled = torch.jit.script(model)
    torch.jit.save(compiled, str(path))
    loaded = torch.jit.load(str(path), map_location="cpu").eval()  # type: ignore[no-untyped-call]

    def run(x: torch.Tensor) -> Any:
        with torch.inference_mode():
            return loaded(x)

    return run


#: Per format: the file, and its exporters in order of preference.
#: ONNX: the dynamo exporter keeps a symbolic batch dimension; the legacy TorchScript-based one
#: (deprecated) still traces what ``torch.export`` refuses (Python branches on tensor values) and
#: bakes in the branch the example took, which the check on real samples and other batch sizes is
#: there to catch. TorchScript: tracing accepts far more of what an LLM writes than scripting.
_EXPORTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "onnx": (ONNX_FILE, ("dynamo", "legacy")),
    "torchscript": (TORCHSCRIPT_FILE, ("torch.jit.trace", "torch.jit.script")),
}


def _export_checked(
    fmt: str,
    model: nn.Module,
    example: torch.Tensor,
    batches: list[torch.Tensor],
    reference: list[Any],
    work_dir: Path,
    candidate: str,
    tol: tuple[float, float],
    out: dict[str, Any],
) -> dict[str, Any]:
    """The first exporter whose file passes the check wins; each failure is recorded."""
    filename, exporters = _EXPORTERS[fmt]
    path = work_dir / filename
    attempts: list[dict[str, Any]] = out["attempts"]
    for exporter in exporters:
        started = time.perf_counter()
        path.unlink(missing_ok=True)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if fmt == "onnx":
                    run = _onnx_session(exporter, model, example, path)
                else:
                    run = _torchscript_module(exporter, model, example, path)
            _record_warnings(caught, out["warnings"])
            check = _checked(f"the {fmt} file ({exporter})", run, batches, reference, tol)
        except Exception as exc:  # noqa: BLE001 - each exporter's failure is recorded, then reported
            reason, line = _reason(exc, candidate)
            reason = reason.replace(str(work_dir), "/sandbox/work")
            attempts.append(
                {
                    "exporter": exporter,
                    "ok": False,
                    "error": reason,
                    "line": line,
                    "seconds": time.perf_counter() - started,
                }
            )
            log.warning("%s export with %s failed: %s", fmt, exporter, reason)
            continue
        attempts.append(
            {
                "exporter": exporter,
                "ok": True,
                "error": None,
                "line": None,
                "seconds": time.perf_counter() - started,
            }
        )
        out["exporter"] = exporter
        out["fallback_reason"] = attempts[0]["error"] if exporter != exporters[0] else None
        return check
    path.unlink(missing_ok=True)
    raise ExportCheckError(
        f"the model cannot be exported as {fmt}: "
        + "; ".join(f"{a['exporter']}: {a['error']}" for a in attempts)
        + ". Export it as pytorch (model.py and safetensors) instead, or change its forward"
    )


def _preprocessing(data: Any, dev_data: Any) -> dict[str, Any]:
    """How raw samples become the model's input, exactly as training and measuring did it."""
    if dev_data.is_text:
        return {
            "kind": "token_ids",
            "dtype": "int64",
            "sequence_length": int(data.input_shape[0]),
            "vocab_size": data.vocab_size,
            "pad_id": 0,
            "oov_id": 1,
        }
    return {
        "kind": "normalize",
        "raw_dtype": "uint8",
        "mean": [float(v) for v in dev_data.mean.flatten().tolist()],
        "std": [float(v) for v in dev_data.std.flatten().tolist()],
        "statistics": "per channel, over the training split's first 10,000 samples",
    }


def op_export(
    args: dict[str, Any], job: dict[str, Any], candidate: str, work_dir: Path
) -> dict[str, Any]:
    """Write the trained model as safetensors (+ ONNX or TorchScript) and prove each file right.

    Every file is compared with the trained model in eager PyTorch on real validation samples, at
    the whole sample batch and at batch 1: the safetensors weights loaded into a fresh
    ``build_model``, and the ONNX (in onnxruntime) or TorchScript file. Runs on the CPU whatever
    the job's device: an exported file is for CPUs as much as GPUs, and CPU results reproduce. A
    file that does not match is a ``_candidate_error``, never a result.
    """
    import numpy as np
    import safetensors
    import safetensors.torch as st

    from archsmith.training import DeviceData

    started = time.perf_counter()
    fmt = str(args.get("format", "onnx"))
    if fmt not in EXPORT_FORMATS:
        raise ContractError(f"unknown export format {fmt!r}; choose one of {EXPORT_FORMATS}")
    tol = (float(args.get("atol", EXPORT_ATOL)), float(args.get("rtol", EXPORT_RTOL)))
    for noisy in ("onnxscript", "onnx_ir", "torch.onnx", "torch.export"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    data = _load_data(job)
    n = min(int(args.get("check_samples", 256)), int(data.x_val.shape[0]))
    if n == 0:
        raise ContractError(
            "the validation split is empty: there is nothing to check the export on"
        )
    cpu = torch.device("cpu")
    is_text = data.task == "text_classification"
    dev_data = DeviceData(
        data.x_train,
        data.y_train,
        data.x_val[:n],
        data.y_val[:n],
        cpu,
        is_text=is_text,
        keep_train=False,
    )
    weights = work_dir / str(args.get("weights_file", WEIGHTS_FILE))
    if not weights.is_file():
        raise ContractError(f"the job has no weights file {weights.name}")
    model = build(candidate, list(data.input_shape), data.num_classes)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.to(cpu).eval()

    sample = dev_data.prepare(dev_data.x_val)
    batches = [sample, sample[:1]] if n > 1 else [sample]
    # Export with two samples: torch.export would fix a batch dimension of one to a constant.
    example = sample[:2] if n > 1 else torch.cat([sample, sample])
    with torch.inference_mode():
        outputs = [model(b) for b in batches]
    if not isinstance(outputs[0], torch.Tensor):
        raise ContractError(
            f"the model's forward returned {type(outputs[0]).__name__}, not a Tensor"
        )
    reference = [_as_numpy(o) for o in outputs]
    expected = [n, data.num_classes]
    if list(reference[0].shape) != expected:
        raise ContractError(
            f"the model's output has shape {list(reference[0].shape)}; expected {expected}"
            " (batch, num_classes)"
        )
    if not all(np.isfinite(r).all() for r in reference):
        raise ContractError("the trained model's outputs on validation samples are not finite")

    out: dict[str, Any] = {
        "format": fmt,
        "exporter": None,
        "fallback_reason": None,
        "attempts": [],
        "opset": ONNX_OPSET if fmt == "onnx" else None,
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", *(int(d) for d in data.input_shape)],
            "dtype": str(sample.dtype).removeprefix("torch."),
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", int(data.num_classes)],
            "dtype": str(outputs[0].dtype).removeprefix("torch."),
        },
        "preprocessing": _preprocessing(data, dev_data),
        "checks": {},
        "warnings": [],
        "versions": {"torch": torch.__version__, "safetensors": safetensors.__version__},
    }
    files = [SAFETENSORS_FILE]
    try:
        # save_model keeps one name of each group of tied tensors; load_model restores the rest.
        st.save_model(model, str(work_dir / SAFETENSORS_FILE), metadata={"format": "pt"})
        fresh = build(candidate, list(data.input_shape), data.num_classes)
        st.load_model(fresh, str(work_dir / SAFETENSORS_FILE), strict=True)
        fresh.to(cpu).eval()

        def eager(x: torch.Tensor) -> Any:
            with torch.inference_mode():
                return fresh(x)

        out["checks"]["safetensors"] = _checked(
            "build_model with the safetensors weights", eager, batches, reference, tol
        )
        if fmt in _EXPORTERS:
            if fmt == "onnx":
                import onnx
                import onnxruntime

                out["versions"].update(onnx=onnx.__version__, onnxruntime=onnxruntime.__version__)
            out["checks"][fmt] = _export_checked(
                fmt, model, example, batches, reference, work_dir, candidate, tol, out
            )
            files.append(_EXPORTERS[fmt][0])
    except ExportCheckError as exc:
        failed = [a["line"] for a in out["attempts"] if a["line"] is not None]
        out["_candidate_error"] = {
            "type": "ExportError",
            "message": str(exc),
            "line": failed[0] if failed else None,
            "traceback": None,
        }
        return out
    out["files"] = [{"name": f, "bytes": (work_dir / f).stat().st_size} for f in files]
    out["seconds"] = time.perf_counter() - started
    return out


def run_tool(tool: str, job: dict[str, Any], work_dir: Path, candidate: str) -> dict[str, Any]:
    """Dispatch ``tool`` with the job's arguments."""
    args = dict(job.get("args") or {})
    if tool == "check_shapes":
        return op_check_shapes(args, job, candidate)
    if tool == "count_params":
        return op_count_params(args, job, candidate)
    if tool == "train_model":
        return op_train_model(args, job, candidate, work_dir)
    if tool == "measure_energy":
        return op_measure_energy(args, job, candidate, work_dir)
    if tool == "export":
        return op_export(args, job, candidate, work_dir)
    raise ContractError(f"unknown tool {tool!r}")
