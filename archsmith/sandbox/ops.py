"""The tools' work, done inside the sandbox on the candidate's code.

Each ``op_*`` takes the job's arguments and returns a JSON-ready dict. A failure of the candidate
is either raised (the runner turns the exception into a structured error with the candidate's
line) or, when there is a partial result worth keeping (a shape mismatch, a diverged run), returned
under the key ``_candidate_error``.
"""

from __future__ import annotations

import importlib.util
import math
import os
import statistics
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

__all__ = ["ContractError", "load_candidate", "run_tool"]

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
    raise ContractError(f"unknown tool {tool!r}")
