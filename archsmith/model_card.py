"""The model card of an export: what the run measured and the export checked, as data and as text.

``build_card`` gathers it (each figure with its unit and, for energy, its source; the spec's
targets from the rulebook's one table, each met or missed); ``render_card`` writes it for a
person as ``MODEL_CARD.md``. ``archsmith.export`` writes both beside the exported files.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from archsmith import __version__
from archsmith.energy import SOURCES, energy_scope
from archsmith.scoring.export_ops import ONNX_FILE, SAFETENSORS_FILE, TORCHSCRIPT_FILE
from archsmith.spec import TaskSpec
from archsmith.tools.rulebook import default_rulebook
from archsmith.tools.schemas import EvaluationMetrics

__all__ = ["VOCABULARY_FILE", "build_card", "render_card"]

#: The exported vocabulary of a text model: line i holds the word of id i + 1.
VOCABULARY_FILE = "vocabulary.txt"


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


def _targets(spec: TaskSpec, metrics: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each threshold of the spec that is set, its priority, the measured value and whether met."""
    symbols = TaskSpec.symbols()
    rows = []
    for target in default_rulebook().targets:
        threshold = getattr(spec, target.threshold)
        if threshold is None:
            continue
        measured = metrics[target.metric]["value"]
        rows.append(
            {
                "target": target.name,
                "field": target.threshold,
                "symbol": symbols.get(target.threshold),
                "threshold": threshold,
                "comparison": target.direction,
                "unit": metrics[target.metric]["unit"],
                "priority": getattr(spec, target.priority),
                "priority_symbol": symbols.get(target.priority),
                "measured": measured,
                "met": None if measured is None else target.met(measured, threshold),
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


def _acceptance_lines(acc: dict[str, Any]) -> list[str]:
    """The on-target acceptance table, saying where it was measured."""
    figures = acc["figures"]
    where = (
        f"on this machine ({acc['measured_on']}), not on the deployment device"
        if acc["measured_by"] == "this machine"
        else f"on the device at {acc['measured_by']} ({acc['measured_on']})"
    )
    lines = [
        "",
        f"## Acceptance on {acc['target']}",
        "",
        f"`{acc['file']}` (sha256 `{acc['sha256']}`) measured with {figures['runtime']}"
        f" {figures.get('runtime_version')}, {figures['threads']} thread(s), {where}.",
        "",
        "| request | requested | measured | met |",
        "|---|---|---|---|",
    ]
    for row in acc["rows"]:
        met = "not measured" if row["met"] is None else ("yes" if row["met"] else "**no**")
        kind = " (hard limit)" if row["hard"] else ""
        lines.append(
            f"| {_cell(row['name'])}{kind} | {_cell(row['requested'])} |"
            f" {_cell(row['measured'])} | {met} |"
        )
    return lines


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
    if card.get("acceptance"):
        lines += _acceptance_lines(card["acceptance"])
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
