"""What the candidate's process and the measuring process share inside the sandbox.

Imports only the standard library, numpy and torch at module level; datasets, energy meters and the
training recipe are imported where they are used.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "EXPORT_ATOL",
    "EXPORT_RTOL",
    "ContractError",
    "as_numpy",
    "compare",
    "device_of",
    "dummy_input",
    "energy_fields",
    "load_data",
    "make_job_meter",
    "setup",
    "timed",
]

#: Agreement required between a model and its exported form (absolute + relative * |output|).
EXPORT_ATOL = 1e-4
EXPORT_RTOL = 1e-3


class ContractError(Exception):
    """The candidate (or its program) does not follow the contract: no build_model, wrong output."""


def device_of(job: dict[str, Any]) -> torch.device:
    """The job's device; a CUDA job on a machine without CUDA is refused, not silently moved."""
    name = str(job.get("device") or "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name} was requested but CUDA is not available in the sandbox")
    return torch.device(name)


def dummy_input(args: dict[str, Any], batch: int, device: torch.device) -> torch.Tensor:
    """Random samples of the task's shape: normal floats for images, token ids for text."""
    shape = [batch, *(int(d) for d in args["input_shape"])]
    if args.get("task") == "text_classification":
        vocab = int(args.get("vocab_size") or 20_000)
        return torch.randint(0, vocab, shape, device=device)
    return torch.randn(shape, device=device)


def load_data(job: dict[str, Any]) -> Any:
    """The job's prepared dataset (for the candidate: the training split only)."""
    from archsmith.data.prepared_format import load_prepared

    path = job.get("dataset_path")
    if not path:
        raise ContractError("this tool needs a prepared dataset, and the job names none")
    return load_prepared(Path(path))


def job_threads() -> int:
    """Threads for torch: what the sandbox gave the job (``OMP_NUM_THREADS``), else every core."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1)
    except ValueError:
        return max(1, os.cpu_count() or 1)


def setup(job: dict[str, Any]) -> tuple[torch.device, Any, bool]:
    """Device, all cores for torch, and the prepared dataset (with whether it is text)."""
    device = device_of(job)
    torch.set_num_threads(job_threads())
    data = load_data(job)
    return device, data, data.task == "text_classification"


def make_job_meter(job: dict[str, Any], args: dict[str, Any]) -> Any:
    """The best energy meter for the job's device (``archsmith.energy.make_meter``)."""
    from archsmith.energy import make_meter

    return make_meter(str(job.get("device") or "cpu"), float(args.get("estimate_watts", 65.0)))


def energy_fields(prefix: str, reading: Any) -> dict[str, Any]:
    """An EnergyReading as the tools' fields: joules, kWh-PUE, source and detail."""
    return {
        f"{prefix}_energy_j": reading.joules,
        f"{prefix}_energy_kwh_pue": reading.kwh_pue,
        f"{prefix}_energy_source": reading.source.value,
        f"{prefix}_energy_detail": reading.detail,
    }


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds ``fn`` takes, with the GPU's queue drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def as_numpy(out: Any) -> Any:
    """A model's output as float64 numpy; anything but a tensor or an array breaks the contract."""
    if isinstance(out, torch.Tensor):
        return out.detach().cpu().double().numpy()
    import numpy as np

    if isinstance(out, np.ndarray):
        return out.astype(np.float64)
    raise ContractError(f"the model returned {type(out).__name__}, not a Tensor")


def compare(
    run: Callable[[torch.Tensor], Any],
    batches: list[torch.Tensor],
    reference: list[Any],
    tol: tuple[float, float] = (EXPORT_ATOL, EXPORT_RTOL),
    *,
    same_nonfinite: bool = False,
) -> dict[str, Any]:
    """Run ``run`` on every batch and compare with ``reference``, element by element.

    Argmax agreement is reported, not required: two logits within the tolerance of each other are
    a tie that float noise may break either way. ``passed`` is False for a shape that differs, a
    non-finite output or a difference beyond the tolerance; ``problem`` then says which. With
    ``same_nonfinite``, an output that is NaN or infinite where the reference is the same counts as
    agreeing (a model that diverges must export as one that diverges, not fail to export).
    """
    import numpy as np

    atol, rtol = tol
    max_abs, max_excess, disagree = 0.0, 0.0, 0
    problem = None
    for i, (x, ref) in enumerate(zip(batches, reference, strict=True)):
        got = as_numpy(run(x))
        if got.shape != ref.shape:
            problem = (
                f"output shape {list(got.shape)} on a batch of {x.shape[0]}; the reference"
                f" gives {list(ref.shape)}"
            )
            break
        finite = np.isfinite(ref)
        if same_nonfinite:
            matches = np.where(
                np.isnan(ref), np.isnan(got), np.where(np.isinf(ref), got == ref, np.isfinite(got))
            )
            if not matches.all():
                problem = f"other non-finite outputs than the model's on a batch of {x.shape[0]}"
                break
            got, ref = np.where(finite, got, 0.0), np.where(finite, ref, 0.0)
        elif not np.isfinite(got).all():
            problem = f"non-finite outputs on a batch of {x.shape[0]}"
            break
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
        "passed": problem is None and max_excess <= 0.0,
        "problem": problem,
    }


#: The lowest opset the dynamo exporter implements natively (a lower one goes through a version
#: converter that fails on common graphs); onnxruntime runs it from 1.14 on.
ONNX_OPSET = 18
ONNX_INPUT = "input"
ONNX_OUTPUT = "logits"


def export_onnx_dynamo(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """``module`` as ONNX by torch's dynamo exporter, any batch size, one file, checked by onnx:
    how ``archsmith export`` writes ``model.onnx`` and how a target's model file is built."""
    import onnx

    torch.onnx.export(
        module,
        (example,),
        str(path),
        dynamo=True,
        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
        opset_version=ONNX_OPSET,
        external_data=False,
        verbose=False,
        input_names=[ONNX_INPUT],
        output_names=[ONNX_OUTPUT],
    )
    onnx.checker.check_model(str(path))


def exported_file_runner(fmt: str, path: Path) -> Callable[[torch.Tensor], Any]:
    """Run an exported file as a user would: ONNX in onnxruntime on the CPU, TorchScript loaded
    with ``torch.jit.load``. The export job and the measuring process's check both call it."""
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run_onnx(x: torch.Tensor) -> Any:
            return session.run(None, {name: x.numpy()})[0]

        return run_onnx
    if fmt != "torchscript":
        raise ValueError(f"no runner for exported {fmt!r} files")
    loaded = torch.jit.load(str(path), map_location="cpu").eval()  # type: ignore[no-untyped-call]

    def run_torchscript(x: torch.Tensor) -> Any:
        with torch.inference_mode():
            return loaded(x)

    return run_torchscript
