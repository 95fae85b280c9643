"""``archsmith export`` inside the sandbox: the best candidate as files a user deploys.

The user asked for the candidate's code (``model.py``) to take away, so this runs in the candidate's
process: the module is built, the weights the measured program holds (``program.safetensors``) are
loaded into it, and every exported file is compared with it on real training samples, at the whole
sample batch and at batch 1. A file that does not match is a ``_candidate_error``, never a result.

Tolerances (``EXPORT_ATOL``, ``EXPORT_RTOL`` in ``archsmith.scoring.common``): float32 logits
computed by another runtime differ by reordered sums and fused kernels, about 1e-6 to 1e-5 on logits
of size 1 to 10. A broken export (a baked-in constant, a wrong layout, a missing op, batch norm in
training mode) is off by 1e-2 or more. An element passes when |exported - eager| <= atol + rtol *
|eager| (numpy's allclose): ten times above the noise, a hundred times below a real fault.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archsmith.files import written_in_place
from archsmith.scoring.candidate import build
from archsmith.scoring.common import (
    EXPORT_ATOL,
    EXPORT_RTOL,
    ONNX_INPUT,
    ONNX_OPSET,
    ONNX_OUTPUT,
    ContractError,
    as_numpy,
    compare,
    export_onnx_dynamo,
    exported_file_runner,
    job_threads,
    load_data,
)
from archsmith.scoring.failures import chain_line, exception_chain
from archsmith.scoring.format import ONNX_FILE, SAFETENSORS_FILE, TORCHSCRIPT_FILE

__all__ = [
    "EXPORT_ATOL",
    "EXPORT_FORMATS",
    "EXPORT_RTOL",
    "ONNX_FILE",
    "SAFETENSORS_FILE",
    "TORCHSCRIPT_FILE",
    "op_export",
]

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx", "torchscript", "pytorch")
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
    chain = exception_chain(exc)
    text = (
        _first_line(exc) if len(chain) == 1 else f"{type(exc).__name__}: {_first_line(chain[-1])}"
    )
    return text, chain_line(exc, candidate)


def _checked(
    what: str,
    run: Callable[[torch.Tensor], Any],
    batches: list[torch.Tensor],
    reference: list[Any],
    tol: tuple[float, float],
) -> dict[str, Any]:
    """``compare``, raising ExportCheckError when an output is outside the tolerance."""
    check = compare(run, batches, reference, tol)
    if check["problem"] is not None:
        raise ExportCheckError(f"{what}: {check['problem']}")
    if not check["passed"]:
        raise ExportCheckError(
            f"{what} differs from the trained PyTorch model by up to {check['max_abs_diff']:.3g}"
            f" on {check['samples']} training samples (allowed: {tol[0]:g} + {tol[1]:g} *"
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

    if exporter == "dynamo":
        export_onnx_dynamo(model, example, path)
    else:
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
            opset_version=ONNX_OPSET,
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
        )
        onnx.checker.check_model(str(path))
    return exported_file_runner("onnx", path)


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
    return exported_file_runner("torchscript", path)


#: Per format: the file, and its exporters in order of preference.
#: ONNX: the dynamo exporter keeps a symbolic batch dimension; the legacy TorchScript-based one
#: (deprecated) still traces what ``torch.export`` refuses (Python branches on tensor values) and
#: bakes in the branch the example took, which the check on real samples and other batch sizes is
#: there to catch. TorchScript: tracing accepts far more of what an LLM writes than scripting.
_EXPORTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "onnx": (ONNX_FILE, ("dynamo", "legacy")),
    "torchscript": (TORCHSCRIPT_FILE, ("torch.jit.trace", "torch.jit.script")),
}


def _emptied(path: Path) -> None:
    """Leave no file of a failed exporter: emptied in place, since in a sandbox it is a file the
    host lent the job (``JOB_OUTPUTS``), and the host reads an empty output as none."""
    if path.exists():
        path.write_bytes(b"")


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
        _emptied(path)
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
    _emptied(path)
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


def _program_state(work_dir: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict from the measured program's tensors (tied names restored).

    The program holds parameters and buffers under the model's own names; a name the model does
    not have, or one it has that the program lacks, means the program is not this model's.
    """
    import safetensors.torch as st

    from archsmith.scoring.format import TENSORS_FILE, read_program, read_regular_file

    _, program = read_program(work_dir)
    tensors = st.load(read_regular_file(work_dir / TENSORS_FILE, 8 << 30))
    for alias, name in program["aliases"].items():
        tensors[alias] = tensors[name]
    wanted = set(model.state_dict())
    missing = sorted(wanted - set(tensors))
    if missing:
        raise ContractError(
            f"the measured program has no tensor for {', '.join(missing[:5])}: build_model now"
            " builds another model than the one that was trained"
        )
    return {k: v for k, v in tensors.items() if k in wanted}


def op_export(
    args: dict[str, Any], job: dict[str, Any], candidate: str, work_dir: Path
) -> dict[str, Any]:
    """Write the trained model as safetensors (+ ONNX or TorchScript) and prove each file right.

    Every file is compared with the trained model in eager PyTorch on real training samples, at
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
    torch.set_num_threads(job_threads())
    data = load_data(job)
    n = min(int(args.get("check_samples", 256)), int(data.x_train.shape[0]))
    if n == 0:
        raise ContractError("the training split is empty: there is nothing to check the export on")
    cpu = torch.device("cpu")
    is_text = data.task == "text_classification"
    dev_data = DeviceData(
        data.x_train, data.y_train, data.x_train[:n], data.y_train[:n], cpu, is_text=is_text,
        keep_train=False,
    )  # fmt: skip
    model = build(candidate, list(data.input_shape), data.num_classes)
    model.load_state_dict(_program_state(work_dir, model))
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
    reference = [as_numpy(o) for o in outputs]
    expected = [n, data.num_classes]
    if list(reference[0].shape) != expected:
        raise ContractError(
            f"the model's output has shape {list(reference[0].shape)}; expected {expected}"
            " (batch, num_classes)"
        )
    if not all(np.isfinite(r).all() for r in reference):
        raise ContractError("the trained model's outputs on training samples are not finite")

    out: dict[str, Any] = {
        "format": fmt,
        "exporter": None,
        "fallback_reason": None,
        "attempts": [],
        "opset": ONNX_OPSET if fmt == "onnx" else None,
        "input": {
            "name": ONNX_INPUT,
            "shape": ["batch", *(int(d) for d in data.input_shape)],
            "dtype": str(sample.dtype).removeprefix("torch."),
        },
        "output": {
            "name": ONNX_OUTPUT,
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
        with written_in_place(work_dir / SAFETENSORS_FILE) as path:
            st.save_model(model, str(path), metadata={"format": "pt"})
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
