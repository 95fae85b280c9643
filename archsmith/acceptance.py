"""On-target acceptance: the files a user takes away, measured where they will run, against the
request.

``accept`` exports the best model (``export.export_model``: the ONNX file is checked against the
measured program by a process without the candidate's code), then a measuring job runs that very
``model.onnx`` on the target (int8: quantised from it, calibrated on training samples only, and
written beside it as ``model.int8.onnx``), on the validation and the held-out test split. The sha256
of the file measured is compared with the file in the export. Each target and hard limit of the
request becomes a row: requested, measured, met or not. The table goes into ``acceptance.json``, the
model card and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from archsmith import judge
from archsmith.errors import InputError
from archsmith.export import CARD_JSON, CARD_MARKDOWN, ExportError, ExportResult, export_model
from archsmith.files import sha256_of
from archsmith.model_card import render_card
from archsmith.spec import TaskSpec
from archsmith.targets import Target
from archsmith.tools.measure_energy import measure_on_target
from archsmith.tools.runtime import ToolRuntime
from archsmith.tools.schemas import TargetFigures, ToolError

__all__ = ["ACCEPTANCE_FILE", "Acceptance", "AcceptanceRow", "accept", "acceptance_rows"]

log = logging.getLogger(__name__)

ACCEPTANCE_FILE = "acceptance.json"
INT8_FILE = "model.int8.onnx"


class AcceptanceRow(BaseModel):
    """One target or limit of the request against what the exported file measured."""

    name: str
    requested: str
    measured: str
    met: bool | None
    hard: bool


class Acceptance(BaseModel):
    """The acceptance of one export on one target."""

    target: str
    measured_on: str
    measured_by: str
    file: str
    sha256: str | None
    rows: list[AcceptanceRow]
    figures: dict[str, Any]
    export: ExportResult

    @property
    def hard_limit_missed(self) -> bool:
        return any(r.hard and r.met is False for r in self.rows)


def acceptance_rows(
    spec: TaskSpec, figures: TargetFigures, params: int | None
) -> list[AcceptanceRow]:
    """Each prioritised target and each hard limit of ``spec`` against ``figures``.

    Hard limits are judged by ``judge.limit_violations`` (the critic's own rule); a target is met
    at or past its threshold, as the rulebook reads it.
    """
    rows: list[AcceptanceRow] = []
    if spec.val_accuracy_priority > 0:
        rows.append(
            AcceptanceRow(
                name="validation accuracy",
                requested=f">= {spec.val_accuracy_threshold:.2%}",
                measured=f"{figures.val_accuracy:.2%}"
                + (
                    f" (held-out test {figures.test_accuracy:.2%})"
                    if figures.test_accuracy is not None
                    else ""
                ),
                met=figures.val_accuracy >= spec.val_accuracy_threshold,
                hard=False,
            )
        )
    if spec.fps_priority > 0:
        rows.append(
            AcceptanceRow(
                name=f"throughput (batch {figures.batch})",
                requested=f">= {spec.fps_threshold:,.0f} FPS",
                measured=f"{figures.fps:,.0f} FPS",
                met=figures.fps >= spec.fps_threshold,
                hard=False,
            )
        )
    limits = (
        ("parameters", spec.max_params, params, "{:,.0f}", "params"),
        ("latency, batch 1 (p50)", spec.max_latency_ms, figures.latency_ms, "{:.3f} ms", "latency"),
        ("model file size", spec.max_model_size_mb, figures.size_mb, "{:.3f} MB", "size"),
    )
    for name, limit, value, fmt, key in limits:
        if limit is None:
            continue
        broken = judge.limit_violations(
            spec,
            params=value if key == "params" else None,
            latency_ms=value if key == "latency" else None,
            model_size_mb=value if key == "size" else None,
        )
        rows.append(
            AcceptanceRow(
                name=name,
                requested=f"<= {fmt.format(limit)}",
                measured=fmt.format(value) if value is not None else "not measured",
                met=None if value is None else not broken,
                hard=True,
            )
        )
    return rows


def accept(
    runtime: ToolRuntime,
    *,
    run: dict[str, Any],
    spec: dict[str, Any],
    best: dict[str, Any],
    target: Target,
    out_dir: Path,
    overwrite: bool = False,
    max_val: int | None = None,
    max_train: int | None = None,
) -> Acceptance:
    """Export ``best`` into ``out_dir`` and measure the exported file on ``target``.

    Raises InputError or ExportError as ``export_model`` does, and ExportError when the file
    cannot be measured on the target (the export stays: it is checked and complete).
    """
    task = TaskSpec.model_validate(spec)
    exported = export_model(
        runtime, run=run, spec=spec, best=best, fmt="onnx", out_dir=out_dir,
        overwrite=overwrite, max_val=max_val, max_train=max_train,
    )  # fmt: skip
    onnx_file = exported.out_dir / "model.onnx"
    data = runtime.prepare(task.dataset, max_train=max_train, max_val=max_val)
    model_dir = Path(str(best["model_dir"]))
    with tempfile.TemporaryDirectory(prefix="archsmith-accept-") as tmp:
        measured_copy = Path(tmp) / "measured.onnx"
        figures = measure_on_target(
            runtime,
            target,
            data,
            model_dir,
            splits=("val", "test"),
            exported=None if target.is_host_torch else onnx_file,
            keep_as=None if target.is_host_torch else measured_copy,
        )
        if isinstance(figures, ToolError):
            raise ExportError(
                f"the exported model was written to {exported.out_dir} but could not be measured"
                f" on {target}: {figures.message}"
            )
        file_name = "program.safetensors (torch)"
        sha = figures.artifact_sha256
        if target.precision == "int8":
            shutil.copyfile(measured_copy, exported.out_dir / INT8_FILE)
            file_name = INT8_FILE
        elif not target.is_host_torch:
            file_name = "model.onnx"
            if sha != sha256_of(onnx_file):
                raise ExportError(
                    f"the file measured on {target} is not the exported model.onnx (sha256"
                    f" {sha} against {sha256_of(onnx_file)}); export again"
                )
    params = (best.get("metrics") or {}).get("params")
    result = Acceptance(
        target=str(target),
        measured_on=figures.machine,
        measured_by=figures.measured_by,
        file=file_name,
        sha256=sha,
        rows=acceptance_rows(task, figures, int(params) if params is not None else None),
        figures=figures.model_dump(mode="json"),
        export=exported,
    )
    _write(exported.out_dir, result)
    return result


def _write(out_dir: Path, result: Acceptance) -> None:
    """``acceptance.json``, and the table in the model card (JSON and Markdown)."""
    record = {
        **result.model_dump(mode="json", exclude={"export"}),
        "hard_limit_missed": result.hard_limit_missed,
    }
    (out_dir / ACCEPTANCE_FILE).write_text(json.dumps(record, indent=2) + "\n", "utf-8")
    card_path = out_dir / CARD_JSON
    try:
        card = json.loads(card_path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"the export's {CARD_JSON} cannot be read: {e}") from e
    card["acceptance"] = record
    listed = {f["name"] for f in card.get("files", [])}
    for path in sorted(out_dir.iterdir()):
        if path.name not in listed and path.name not in (CARD_JSON, CARD_MARKDOWN):
            card["files"].append(
                {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_of(path)}
            )
    card_path.write_text(json.dumps(card, indent=2) + "\n", "utf-8")
    (out_dir / CARD_MARKDOWN).write_text(render_card(card), "utf-8")
