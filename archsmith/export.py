"""Turn a run's best candidate into files a user can deploy: code, weights, a model file, a card.

The candidate's code was written by an LLM, so loading it with the weights of its measured program,
exporting it and checking the exported file against PyTorch all happen in the sandbox (the
``export`` job, ``archsmith.scoring.export_ops``). The host only copies the files that job is
expected to write from its work directory into ``out_dir`` (all of them or none, through
``archsmith.files.atomic_dir``), never through a link, and writes the model card from numbers that
were measured, each with its unit and, for energy, its source.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from archsmith import __version__
from archsmith.energy import SOURCES, energy_scope
from archsmith.errors import InputError, format_validation_error
from archsmith.files import UntrustedFileError, atomic_dir, open_untrusted
from archsmith.sandbox.base import CandidateError, SandboxResult
from archsmith.scoring.common import EXPORT_ATOL, EXPORT_RTOL
from archsmith.scoring.export_ops import ONNX_FILE, SAFETENSORS_FILE, TORCHSCRIPT_FILE
from archsmith.scoring.handover import model_files
from archsmith.spec import TaskSpec
from archsmith.tools.runtime import PreparedRef, ToolRuntime
from archsmith.tools.schemas import EvaluationMetrics

__all__ = [
    "CARD_JSON",
    "CARD_MARKDOWN",
    "CODE_FILE",
    "ExportError",
    "ExportFormat",
    "ExportResult",
    "build_card",
    "export_model",
    "render_card",
]

log = logging.getLogger(__name__)

ExportFormat = Literal["onnx", "torchscript", "pytorch"]

CODE_FILE = "model.py"
CARD_JSON = "model_card.json"
CARD_MARKDOWN = "MODEL_CARD.md"
VOCABULARY_FILE = "vocabulary.txt"
#: The files the sandbox writes for each format; nothing else is ever copied out of its work dir.
SANDBOX_FILES: dict[str, tuple[str, ...]] = {
    "pytorch": (SAFETENSORS_FILE,),
    "onnx": (SAFETENSORS_FILE, ONNX_FILE),
    "torchscript": (SAFETENSORS_FILE, TORCHSCRIPT_FILE),
}
#: Validation samples the exported file is checked on (the whole split when it is smaller).
CHECK_SAMPLES = 256

#: What each energy source is, as the card says it.


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
            {"name": p.name, "bytes": p.stat().st_size, "sha256": _sha256(p)}
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


# ---------------------------------------------------------------------------------------------
# The model card


def _metric_symbols() -> dict[str, str]:
    """``V_Acc`` for val_accuracy and so on: the paper's symbol opening each description."""
    out: dict[str, str] = {}
    for name, info in EvaluationMetrics.model_fields.items():
        head, sep, _ = (info.description or "").partition(":")
        if sep and " " not in head and head[:1].isupper():
            out[name] = head
    return out


def _number(value: Any) -> float | None:
    """A finite number, or None for what was not measured (absent, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _energy(value: Any, source: Any) -> dict[str, Any]:
    """An energy figure, its source and its scope (what the counter covers, or that it is an
    estimate); without a source the figure is not a measurement at all.

    A source this version does not know is passed on under its own name, claiming nothing.
    """
    entry: dict[str, Any] = {"value": None, "unit": "kWh-PUE", "source": None, "scope": None}
    if not isinstance(source, str) or not source:
        return {**entry, "measured": False, "note": "not measured"}
    info = SOURCES.get(source)
    measured = info.measured if info is not None else None
    if info is None:
        note = f"{source}: source as recorded"
    elif info.measured:
        note = f"{source}: measured, {info.how}"
    else:
        note = f"{source}: {info.how}, not a measurement"
    scope = energy_scope(source)
    return {
        **entry,
        "value": _number(value),
        "source": source,
        "scope": scope,
        "measured": measured,
        # The scope beside the figure: a GPU-only figure is not the machine's energy.
        "note": note if source == "estimate" else f"{note}; {scope}",
    }


def _metrics(best: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The best candidate's measured numbers with units; what was not measured is None.

    The critic stores 0.0 for a figure it did not get; a throughput of 0 frames/s is not a
    measurement, so it is reported as not measured.
    """
    m = best.get("metrics") or {}
    v = best.get("validation") or {}
    sources = best.get("energy_sources") or {}
    symbols = _metric_symbols()
    fps = _number(m.get("fps"))
    params = _number(v.get("params")) if v.get("params") is not None else _number(m.get("params"))
    size = v.get("size_mb") if v.get("size_mb") is not None else m.get("model_size_mb")
    test = best.get("test") or {}
    out: dict[str, dict[str, Any]] = {
        "test_accuracy": {
            "value": _number(test.get("test_accuracy")) if test.get("ok") else None,
            "unit": "fraction",
            "note": "on the held-out test split ("
            + str(test.get("split") or "source not recorded")
            + "), measured once when the run ended; no decision read it",
        },
        "val_accuracy": {
            "value": _number(m.get("val_accuracy")),
            "unit": "fraction",
            "note": "on the validation split, after training; the search chose the model on it,"
            " so it is optimistic",
        },
        "train_accuracy": {
            "value": _number(m.get("train_accuracy")),
            "unit": "fraction",
            "note": "on the training split, after training",
        },
        "fps": {
            "value": fps if fps else None,
            "unit": "frames/s",
            "note": "inference throughput over the validation split",
        },
        "latency_ms": {
            "value": _number(m.get("latency_ms")),
            "unit": "ms",
            "note": "batch-1 inference latency, median",
        },
        "train_energy_kwh_pue": _energy(m.get("train_energy_kwh_pue"), sources.get("train")),
        "val_energy_kwh_pue": _energy(m.get("val_energy_kwh_pue"), sources.get("val")),
        "params": {
            "value": int(params) if params else None,
            "unit": "parameters",
            "note": "all parameters of the model",
        },
        "model_size_mb": {
            "value": _number(size),
            "unit": "MB",
            "note": "parameters and buffers, 10^6 bytes",
        },
        "flops_per_sample": {
            "value": _number(v.get("flops_per_sample")),
            "unit": "FLOPs",
            "note": "one forward pass of one sample",
        },
        "combined_metric": {
            "value": _number(best.get("combined_metric")),
            "unit": "CM",
            "note": "the paper's combined metric (Eq. 1) the search ranked by",
        },
    }
    for name, entry in out.items():
        if name in symbols:
            entry["symbol"] = symbols[name]
    return out


#: (what, threshold field, priority field, metric, direction): the targets the card checks.
_TARGETS = (
    (
        "validation accuracy",
        "val_accuracy_threshold",
        "val_accuracy_priority",
        "val_accuracy",
        ">=",
    ),
    (
        "training accuracy",
        "train_accuracy_threshold",
        "train_accuracy_priority",
        "train_accuracy",
        ">=",
    ),
    ("inference throughput", "fps_threshold", "fps_priority", "fps", ">="),
    (
        "training energy",
        "train_energy_threshold_kwh_pue",
        "train_energy_priority",
        "train_energy_kwh_pue",
        "<=",
    ),
    (
        "validation energy",
        "val_energy_threshold_kwh_pue",
        "val_energy_priority",
        "val_energy_kwh_pue",
        "<=",
    ),
    ("parameters", "max_params", "params_priority", "params", "<="),
    ("batch-1 latency", "max_latency_ms", "latency_priority", "latency_ms", "<="),
    ("model size", "max_model_size_mb", "model_size_priority", "model_size_mb", "<="),
)


def _targets(spec: TaskSpec, metrics: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each threshold of the spec that is set, its priority, the measured value and whether met."""
    symbols = TaskSpec.symbols()
    rows = []
    for what, field, priority, metric, op in _TARGETS:
        threshold = getattr(spec, field)
        if threshold is None:
            continue
        measured = metrics[metric]["value"]
        met = (
            None
            if measured is None
            else (measured >= threshold if op == ">=" else measured <= threshold)
        )
        rows.append(
            {
                "target": what,
                "field": field,
                "symbol": symbols.get(field),
                "threshold": threshold,
                "comparison": op,
                "unit": metrics[metric]["unit"],
                "priority": getattr(spec, priority),
                "priority_symbol": symbols.get(priority),
                "measured": measured,
                "met": met,
            }
        )
    return rows


def _usage(export: dict[str, Any], spec: TaskSpec) -> dict[str, str]:
    """Short, runnable snippets built from this export's own names, shapes and statistics."""
    inp, outp, pre = export["input"], export["output"], export["preprocessing"]
    shape = tuple(spec.input_shape)
    if pre.get("kind") == "normalize":
        prepare = (
            f"# images: uint8, shape (batch, {', '.join(map(str, shape))}), channels first\n"
            f"mean = np.array({pre['mean']!r}, dtype=np.float32).reshape(1, -1, 1, 1)\n"
            f"std = np.array({pre['std']!r}, dtype=np.float32).reshape(1, -1, 1, 1)\n"
            "x = (images.astype(np.float32) - mean) / std\n"
        )
    else:
        prepare = (
            f"# x: int64 token ids of shape (batch, {shape[0]}); the word on line i of"
            " vocabulary.txt\n# has id i + 1 (line 1 is id 2), 0 pads, 1 is any other word\n"
            "x = token_ids.astype(np.int64)\n"
        )
    usage = {}
    if export["format"] == "onnx":
        usage["onnxruntime"] = (
            "import numpy as np\nimport onnxruntime as ort\n\n"
            f'session = ort.InferenceSession("{ONNX_FILE}", providers=["CPUExecutionProvider"])\n'
            + prepare
            + f'logits = session.run(["{outp["name"]}"], {{"{inp["name"]}": x}})[0]\n'
            "predicted = logits.argmax(axis=1)\n"
        )
    if export["format"] == "torchscript":
        usage["torchscript"] = (
            "import numpy as np\nimport torch\n\n"
            f'model = torch.jit.load("{TORCHSCRIPT_FILE}").eval()\n'
            + prepare
            + "with torch.inference_mode():\n    logits = model(torch.from_numpy(x))\n"
            "predicted = logits.argmax(dim=1)\n"
        )
    usage["pytorch"] = (
        "import numpy as np\nimport torch\nfrom safetensors.torch import load_model\n\n"
        "from model import build_model  # model.py from this folder\n\n"
        f"model = build_model({shape!r}, {spec.num_classes})\n"
        f'load_model(model, "{SAFETENSORS_FILE}")  # also restores tied weights\n'
        "model.eval()\n"
        + prepare
        + "with torch.inference_mode():\n    logits = model(torch.from_numpy(x))\n"
        "predicted = logits.argmax(dim=1)\n"
    )
    return usage


def build_card(
    *,
    run: dict[str, Any],
    spec: TaskSpec,
    best: dict[str, Any],
    export: dict[str, Any],
    files: list[dict[str, Any]],
    dataset: dict[str, Any],
) -> dict[str, Any]:
    """The model card as data: only what the run measured and the export checked, with units."""
    metrics = _metrics(best)
    iteration = best.get("iteration")
    done = run.get("iterations_done")
    total = run.get("max_iterations")
    return {
        "card_version": 1,
        "title": f"{spec.dataset} {spec.task.value.replace('_', ' ')} model from archsmith run"
        f" {run.get('run_id', '?')}",
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "archsmith_version": __version__,
        "task": {
            "dataset": spec.dataset,
            "dataset_source": dataset.get("source"),
            "task": spec.task.value,
            "input_shape": list(spec.input_shape),
            "num_classes": spec.num_classes,
            "class_names": list(dataset.get("class_names") or []),
        },
        "spec": spec.model_dump(mode="json"),
        "spec_symbols": TaskSpec.symbols(),
        "targets": _targets(spec, metrics),
        "metrics": metrics,
        "measured_on": {
            "device": run.get("device"),
            "sandbox": run.get("sandbox"),
            "epochs": run.get("epochs"),
            "validation_samples": (dataset.get("counts") or {}).get("val"),
        },
        "provenance": {
            "run_id": run.get("run_id"),
            "request": run.get("request"),
            "status": run.get("status"),
            "architect": run.get("llm") or "offline",
            "planner": run.get("planner"),
            "iteration": iteration,
            "iterations_done": done,
            "max_iterations": total,
            "summary": best.get("summary"),
            "applied": [str(a) for a in best.get("applied") or []],
            "run_created_at": run.get("created_at"),
            "run_duration_s": run.get("duration_s"),
        },
        "export": {
            "format": export["format"],
            "exporter": export["exporter"],
            "fallback_reason": export["fallback_reason"],
            "attempts": export["attempts"],
            "opset": export["opset"],
            "checks": export["checks"],
            "warnings": export["warnings"],
            "versions": export["versions"],
            "verified": export.get("verified"),
        },
        "input": export["input"],
        "output": export["output"],
        "preprocessing": export["preprocessing"],
        "files": files,
        "usage": _usage(export, spec),
    }


def _cell(value: Any) -> str:
    """A table cell: no line breaks, no column separators."""
    return str(value).replace("|", "\\|").replace("\n", " ").strip()


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "not measured"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if unit == "fraction" and isinstance(value, float):
        return f"{value:.4f} ({value * 100:.2f} %)"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _shape(shape: list[Any]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def render_card(card: dict[str, Any]) -> str:
    """MODEL_CARD.md: the card's data for a person, in the order a deployer needs it."""
    task, prov, exp = card["task"], card["provenance"], card["export"]
    inp, outp, pre = card["input"], card["output"], card["preprocessing"]
    lines = [f"# {card['title']}", ""]
    of = f" of {prov['iterations_done']}" if prov.get("iterations_done") is not None else ""
    kind = task["task"].replace("_", " ")
    lines += [
        f"{'An' if kind[:1] in 'aeiou' else 'A'} {kind} model for **{task['dataset']}**"
        f" ({task['num_classes']} classes, input {_shape(task['input_shape'])}), candidate of"
        " iteration"
        f" {prov['iteration']}{of} of archsmith run `{prov['run_id']}`, exported as"
        f" **{exp['format']}** on {card['exported_at']} (archsmith {card['archsmith_version']}).",
        "",
        "## Files",
        "",
        "| file | bytes | sha256 |",
        "|---|---:|---|",
    ]
    lines += [f"| `{f['name']}` | {f['bytes']:,} | `{f['sha256']}` |" for f in card["files"]]
    lines += ["", "## Input and output", ""]
    lines.append(
        f"- input `{inp['name']}`: {inp['dtype']}, shape {_shape(inp['shape'])} (`batch`: any size)"
    )
    lines.append(
        f"- output `{outp['name']}`: {outp['dtype']}, shape {_shape(outp['shape'])}, one logit"
        " per class; the predicted class is the argmax"
    )
    if task["class_names"]:
        lines.append(f"- classes, in output order: {', '.join(map(str, task['class_names']))}")
    if pre.get("kind") == "normalize":
        lines.append(
            "- preprocessing: uint8 pixels, channels first, as archsmith prepares"
            f" {task['dataset']} (values 0..255); x = (pixels - mean[c]) / std[c] with mean"
            f" {pre['mean']} and std {pre['std']} ({pre['statistics']}). The exported model does"
            " not include this step."
        )
    else:
        lines.append(
            f"- preprocessing: token ids (int64), sequences of {pre.get('sequence_length')}, padded"
            f" with {pre.get('pad_id')} at the end; {pre.get('oov_id')} stands for a word outside"
            f" the vocabulary of {pre.get('vocab_size')} ids (`{VOCABULARY_FILE}`: line i holds"
            " the word of id i + 1)."
        )
    measured = card["measured_on"]
    lines += ["", "## Measured performance", ""]
    epochs = measured.get("epochs")
    lines.append(
        "Measured by archsmith during the search, on device"
        f" `{measured.get('device') or 'unknown'}` ({measured.get('sandbox') or 'unknown'}"
        " sandbox)"
        + (f", after {epochs} training epoch{'s' if epochs != 1 else ''}" if epochs else "")
        + ". Nothing here is projected; an estimate says so."
    )
    lines += ["", "| metric | symbol | value | unit | how |", "|---|---|---|---|---|"]
    for name, m in card["metrics"].items():
        how = m.get("note", "")
        value = _fmt(m["value"], m["unit"])
        lines.append(
            f"| {name} | {_cell(m.get('symbol', ''))} | {value} | {m['unit']} | {_cell(how)} |"
        )
    estimates = [n for n, m in card["metrics"].items() if m.get("source") == "estimate"]
    if estimates:
        lines += ["", f"**Estimates, not measurements:** {', '.join(estimates)}."]
    if card["targets"]:
        lines += ["", "## Targets of the task", ""]
        lines += [
            "| target | symbol | threshold | priority | measured | met |",
            "|---|---|---|---|---|---|",
        ]
        for t in card["targets"]:
            symbol = t["symbol"] or t["field"]
            priority = f"{t['priority']:g}" + (
                f" ({t['priority_symbol']})" if t["priority_symbol"] else ""
            )
            lines.append(
                f"| {t['target']} | {symbol} | {t['comparison']} {_fmt(t['threshold'])}"
                f" {t['unit']} | {priority} | {_fmt(t['measured'], t['unit'])} |"
                f" {'not measured' if t['met'] is None else _fmt(t['met'])} |"
            )
    lines += ["", "## How it was found", ""]
    lines.append(f"- run `{prov['run_id']}` ({prov.get('status')}), request:")
    lines.append(f"  > {_cell(prov.get('request') or '')}")
    lines.append(f"- architect: {prov['architect']}; planner: {prov.get('planner') or 'unknown'}")
    total = f" (at most {prov['max_iterations']})" if prov.get("max_iterations") else ""
    summary = _cell(prov.get("summary") or "")
    lines.append(
        f"- iteration {prov['iteration']}{of}{total}" + (f": {summary}" if summary else "")
    )
    if prov["applied"]:
        lines.append("- instructions the architect applied: " + "; ".join(prov["applied"]))
    lines += ["", "## Export check", ""]
    exporter = exp["exporter"] or "none (code and safetensors weights only)"
    lines.append(
        f"- exporter: {exporter}" + (f", ONNX opset {exp['opset']}" if exp["opset"] else "")
    )
    if exp["fallback_reason"]:
        lines.append(
            f"- fell back from the preferred exporter because: {_cell(exp['fallback_reason'])}"
        )
    lines += [
        "",
        "Each file was compared with the trained model in eager PyTorch on real validation"
        " samples, in the sandbox; an element passes when |file - eager| <= atol + rtol * |eager|.",
        "",
        "| file | max abs diff | argmax agrees | samples | batch sizes | atol | rtol |",
        "|---|---:|---|---:|---|---:|---:|",
    ]
    for name, c in exp["checks"].items():
        agree = "yes" if c["argmax_agree"] else f"no ({c['argmax_disagreements']} differ)"
        lines.append(
            f"| {name} | {c['max_abs_diff']:.3g} | {agree} | {c['samples']} |"
            f" {', '.join(map(str, c['batch_sizes']))} | {c['atol']:g} | {c['rtol']:g} |"
        )
    if exp["warnings"]:
        lines += [
            "",
            "Warnings while exporting (a tracer's warning means the file follows the"
            " path the example took through the code):",
            "",
        ]
        lines += [f"- {_cell(w)}" for w in exp["warnings"]]
    lines += ["", "## Usage", ""]
    titles = {"onnxruntime": "ONNX Runtime", "torchscript": "TorchScript", "pytorch": "PyTorch"}
    for key, snippet in card["usage"].items():
        lines += [f"### {titles.get(key, key)}", "", "```python", snippet.rstrip(), "```", ""]
    return "\n".join(lines).rstrip() + "\n"
