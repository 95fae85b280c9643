"""Turn a run's best candidate into files a user can deploy: code, weights, a model file, a card.

The candidate's code was written by an LLM, so loading it with the weights of its measured program,
exporting it and checking the exported file against PyTorch all happen in the sandbox (the
``export`` job, ``archsmith.scoring.export_ops``). The host only copies the files that job is
expected to write from its work directory into ``out_dir`` (all of them or none, through
``archsmith.files.atomic_dir``), never through a link, and writes the model card from numbers that
were measured, each with its unit and, for energy, its source.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from archsmith.errors import InputError, format_validation_error
from archsmith.files import UntrustedFileError, atomic_dir, open_untrusted, sha256_of
from archsmith.model_card import VOCABULARY_FILE, build_card, render_card
from archsmith.sandbox.base import CandidateError, SandboxResult
from archsmith.scoring.common import EXPORT_ATOL, EXPORT_RTOL
from archsmith.scoring.export_ops import ONNX_FILE, SAFETENSORS_FILE, TORCHSCRIPT_FILE
from archsmith.scoring.handover import model_files
from archsmith.spec import TaskSpec
from archsmith.tools.runtime import PreparedRef, ToolRuntime

__all__ = [
    "CARD_JSON",
    "CARD_MARKDOWN",
    "CODE_FILE",
    "ExportError",
    "ExportFormat",
    "ExportResult",
    "export_model",
]

log = logging.getLogger(__name__)

ExportFormat = Literal["onnx", "torchscript", "pytorch"]

CODE_FILE = "model.py"
CARD_JSON = "model_card.json"
CARD_MARKDOWN = "MODEL_CARD.md"
#: The files the sandbox writes for each format; nothing else is ever copied out of its work dir.
SANDBOX_FILES: dict[str, tuple[str, ...]] = {
    "pytorch": (SAFETENSORS_FILE,),
    "onnx": (SAFETENSORS_FILE, ONNX_FILE),
    "torchscript": (SAFETENSORS_FILE, TORCHSCRIPT_FILE),
}
#: Validation samples the exported file is checked on (the whole split when it is smaller).
CHECK_SAMPLES = 256


class ExportError(InputError):
    """The candidate could not be exported or its exported file did not match; nothing was written.

    An InputError because the remedy is the user's (another format, another candidate), not a
    bug; ``error`` is the sandbox's structured error.
    """

    def __init__(self, message: str, error: CandidateError | None = None) -> None:
        super().__init__(message)
        self.error = error


class ExportResult(BaseModel):
    """What ``export_model`` wrote and what its checks found."""

    model_config = ConfigDict(extra="forbid")

    out_dir: Path
    files: list[str] = Field(description="Names of the files in out_dir.")
    format: ExportFormat
    check: dict[str, Any] = Field(description="Per file kind: max_abs_diff, argmax_agree, ...")
    card: dict[str, Any]
    seconds: float = Field(ge=0, description="Wall time of the whole export.")


class _Check(BaseModel):
    max_abs_diff: float
    argmax_agree: bool
    argmax_disagreements: int
    samples: int
    batch_sizes: list[int]
    atol: float
    rtol: float
    passed: bool


class _File(BaseModel):
    name: str
    bytes: int = Field(ge=0)


class _SandboxExport(BaseModel):
    """The ``export`` tool's result as the host relies on it; anything else is refused."""

    format: ExportFormat
    exporter: str | None
    fallback_reason: str | None
    attempts: list[dict[str, Any]]
    opset: int | None
    input: dict[str, Any]
    output: dict[str, Any]
    preprocessing: dict[str, Any]
    checks: dict[str, _Check]
    warnings: list[str]
    versions: dict[str, str]
    files: list[_File]
    seconds: float
    #: Set by the host, never by the job: the measuring process's check of the files
    #: (``scoring.measure.op_verify``).
    verified: dict[str, Any] | None = None


def _retrain_hint(spec: TaskSpec) -> str:
    return (
        "save the best candidate's code as model.py and re-train it with"
        f" `archsmith evaluate model.py --dataset {spec.dataset}`"
    )


def _model_dir(best: dict[str, Any], spec: TaskSpec) -> Path:
    """The best candidate's measured program; an InputError when it is gone, saying what to do."""
    raw = best.get("model_dir")
    if not raw:
        raise InputError(
            f"the best candidate (iteration {best.get('iteration', '?')}) has no trained model"
            f" (runs from before archsmith's sealed scoreboard kept only weights), so there is"
            f" nothing to export; {_retrain_hint(spec)}"
        )
    path = Path(str(raw))
    if not all(p.is_file() for p in model_files(path).values()):
        raise InputError(
            f"the best candidate's model {path} is incomplete or gone (was the models directory"
            f" cleaned?); the run's best must be re-trained: {_retrain_hint(spec)}"
        )
    return path


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Fail before any sandbox time is spent; ``atomic_dir`` checks again when it writes."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} exists and is not a directory; choose another place with -o")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise InputError(f"{out_dir} is not empty; choose another place with -o or pass --force")


def _copy_from_job(work_dir: Path, name: str, dest: Path, expected_bytes: int) -> None:
    """Copy one file the job wrote, refusing what the job could have planted instead.

    The work directory is the sandbox's: a link there could point at any host file, so the file
    is opened without following links and must be a regular file of the size the job reported.
    """
    try:
        with open_untrusted(work_dir / name, expected_bytes) as f, dest.open("xb") as out:
            if os.fstat(f.fileno()).st_size != expected_bytes:
                raise ExportError(
                    f"the export job's {name} is not the {expected_bytes} bytes it reported"
                )
            shutil.copyfileobj(f, out, 1 << 20)
    except UntrustedFileError as e:
        raise ExportError(f"the export job did not leave a usable {name}: {e}") from e


def _vocabulary(data: PreparedRef) -> list[str] | None:
    """The word of each token id from 2 on, for text datasets (ids 0 and 1 are reserved)."""
    import numpy as np

    with np.load(data.path, allow_pickle=False) as archive:
        if "vocabulary" not in archive.files:
            return None
        return [str(w) for w in archive["vocabulary"].tolist()]


def _failure(fmt: ExportFormat, result: SandboxResult) -> ExportError:
    err = result.error or CandidateError(type="NoResult", message="the sandbox returned no result")
    where = f" (model.py line {err.line})" if err.line is not None else ""
    hint = ""
    if err.type in ("ModuleNotFoundError", "ImportError"):
        hint = (
            "; the sandbox lacks a package the export needs: give it safetensors, onnx, onnxscript"
            " and onnxruntime (rebuild the Docker image from Dockerfile.sandbox)"
        )
    tail = result.stderr_tail.strip().splitlines()[-3:]
    logs = ("; the job's last output: " + " | ".join(tail)) if tail else ""
    return ExportError(
        f"exporting as {fmt} failed in the sandbox: {err.type}: {err.message}{where}{hint}{logs}",
        error=err,
    )


def _checked_result(raw: dict[str, Any], fmt: ExportFormat) -> _SandboxExport:
    """The export job's result, if it is what the export op writes and every check passed."""
    try:
        exported = _SandboxExport.model_validate(raw)
    except ValidationError as e:
        raise ExportError(
            f"the export job's result is not what the export op writes ({e.error_count()} problems)"
        ) from e
    wanted = {"safetensors", fmt} if fmt != "pytorch" else {"safetensors"}
    sizes = {f.name for f in exported.files}
    if (
        exported.format != fmt
        or not wanted <= set(exported.checks)
        or not all(c.passed for c in exported.checks.values())
        or not set(SANDBOX_FILES[fmt]) <= sizes
    ):
        raise ExportError(
            f"the export job reported success without every file and passed check for {fmt}"
        )
    return exported


def export_model(
    runtime: ToolRuntime,
    *,
    run: dict[str, Any],
    spec: dict[str, Any],
    best: dict[str, Any],
    fmt: ExportFormat = "onnx",
    out_dir: Path,
    overwrite: bool = False,
    max_val: int | None = None,
    max_train: int | None = None,
) -> ExportResult:
    """Export ``best`` (a run's best history entry) as ``fmt`` into ``out_dir``, with a card.

    ``out_dir`` receives ``model.py``, ``model.safetensors``, ``model.onnx`` or
    ``model.torchscript.pt`` by format, ``vocabulary.txt`` for text tasks, ``model_card.json``
    and ``MODEL_CARD.md``; all of them or, when anything fails, nothing. ``max_train`` should be
    the run's own: the input normalisation is computed from the training split, so a different
    subsample would describe a slightly different preprocessing than the model was trained with.
    Raises InputError (no trained model, out_dir not empty, no space) or ExportError (the
    candidate cannot be exported or its exported file does not match); a broken sandbox raises
    SandboxError.
    """
    started = time.perf_counter()
    if fmt not in SANDBOX_FILES:
        raise InputError(f"export format must be one of {sorted(SANDBOX_FILES)}, not {fmt!r}")
    try:
        task = TaskSpec.model_validate(spec)
    except ValidationError as e:
        raise InputError(
            f"the run's task spec is invalid:\n{format_validation_error(e, TaskSpec)}"
        ) from e
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    code = str(best.get("code") or "")
    if not code.strip():
        raise InputError(f"the best candidate (iteration {best.get('iteration', '?')}) has no code")
    model_dir = _model_dir(best, task)

    data = runtime.prepare(task.dataset, max_train=max_train, max_val=max_val)
    if data.input_shape != list(task.input_shape) or data.num_classes != task.num_classes:
        raise InputError(
            f"dataset {task.dataset} now has input_shape {data.input_shape} and"
            f" {data.num_classes} classes, but the run's spec says {list(task.input_shape)} and"
            f" {task.num_classes}"
        )
    args = {
        "format": fmt,
        "check_samples": CHECK_SAMPLES,
        "atol": EXPORT_ATOL,
        "rtol": EXPORT_RTOL,
    }
    vocabulary = _vocabulary(data)
    staged: list[_SandboxExport] = []

    with atomic_dir(out_dir, overwrite=overwrite) as tmp:

        def collect(work_dir: Path, result: SandboxResult) -> SandboxResult:
            """Check what the job says it wrote, and copy exactly that, before it is removed."""
            if result.ok and result.result is not None:
                staged.append(_checked_result(result.result, fmt))
                sizes = {f.name: f.bytes for f in staged[0].files}
                for name in SANDBOX_FILES[fmt]:
                    _copy_from_job(work_dir, name, tmp / name, sizes[name])
            return result

        result = runtime.run(
            "export",
            args,
            code,
            dataset=runtime.training_view(data),
            input_files=model_files(model_dir),
            limits=runtime.limits_for("export"),
            after=collect,
        )
        if not result.ok or not staged:
            raise _failure(fmt, result)
        exported = staged[0]
        # The export job ran the candidate's code, so its own checks are its own account: the
        # files are checked again against the measured program in a process without that code.
        verified = runtime.run(
            "verify",
            args,
            dataset=data,
            input_files={
                **model_files(model_dir),
                **{name: tmp / name for name in SANDBOX_FILES[fmt]},
            },
            limits=runtime.limits_for("measure"),
        )
        if not verified.ok:
            why = verified.error.message if verified.error else "no reason given"
            raise ExportError(
                f"the exported files are not the measured model ({why}); nothing was written."
                " Export again; if it fails the same way, report it with the run id"
            )
        exported.verified = verified.result
        (tmp / CODE_FILE).write_text(code if code.endswith("\n") else code + "\n", "utf-8")
        if vocabulary is not None:
            (tmp / VOCABULARY_FILE).write_text("\n".join(vocabulary) + "\n", "utf-8")
        files = [
            {"name": p.name, "bytes": p.stat().st_size, "sha256": sha256_of(p)}
            for p in sorted(tmp.iterdir())
        ]
        card = build_card(
            run=run,
            spec=task,
            best=best,
            export=exported.model_dump(mode="json"),
            files=files,
            dataset=data.meta,
        )
        (tmp / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n", "utf-8")
        (tmp / CARD_MARKDOWN).write_text(render_card(card), "utf-8")
        names = sorted(p.name for p in tmp.iterdir())
    seconds = time.perf_counter() - started
    log.info(
        "exported iteration %s as %s to %s in %.1f s", best.get("iteration"), fmt, out_dir, seconds
    )
    return ExportResult(
        out_dir=out_dir,
        files=names,
        format=fmt,
        check={k: v.model_dump() for k, v in exported.checks.items()},
        card=card,
        seconds=seconds,
    )
