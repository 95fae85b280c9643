"""The candidate's process: the only place its code is imported.

``build`` checks that the module builds a model of the right output shape and that the model exports
as a program (``archsmith.scoring.program``); ``train`` trains it on the training split, the only
split this process is given, and exports the trained program. Neither reports a figure a user reads:
what this process says about itself (its loss per epoch) is kept as the candidate's own account,
and every accuracy, size, speed and energy figure comes from the measuring process or the host.

A failure of the candidate is raised (the runner turns it into a structured error with the line in
the candidate) or, when a partial result is worth keeping, returned under ``_candidate_error``.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from archsmith.scoring.common import (
    ContractError,
    compare,
    dummy_input,
    setup,
)
from archsmith.scoring.format import TRAIN_STATE_FILE, VALIDATED_FILES, ProgramError

__all__ = ["ExportError", "build", "load_candidate", "op_build", "op_train"]

log = logging.getLogger(__name__)

#: Images whose meaning changes when mirrored: no horizontal flip when training on them.
_NO_HFLIP = frozenset({"digits"})
#: Training samples the exported program is checked on against the trained model.
_CHECK_SAMPLES = 64


class ExportError(Exception):
    """The model cannot be exported as a program, or its program does not compute what it does."""


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


def export_checked(
    model: nn.Module, sample: torch.Tensor, work_dir: Path, validated: Path | None = None
) -> dict[str, Any]:
    """Export ``model`` and prove the program computes what the model computes on ``sample``.

    The proof runs here, beside the candidate, so it only helps an honest candidate: a model whose
    program differs (a branch torch.export baked in) hears it now, with the reason, instead of
    being measured as something it is not. With ``validated`` (the directory holding the
    ``VALIDATED_FILES``), the validated program is first refilled with the model's tensors
    (``refill_program``); only when that does not fit or does not pass the proof is the model
    exported again.
    """
    from archsmith.scoring.program import export_program, refill_program

    started = time.perf_counter()
    model = model.to("cpu").eval()
    sample = sample.to("cpu")
    batches = [sample, sample[:1]]
    with torch.no_grad():
        reference = [model(b).detach().double().numpy() for b in batches]
        again = model(batches[0]).detach().double().numpy()
    if not (again.shape == reference[0].shape and _same(again, reference[0])):
        raise ExportError(
            "the model's forward gives different outputs for the same input in eval mode (a random"
            " operation such as F.dropout(x, p) without training=self.training, or torch.rand):"
            " a model must compute the same thing every time to be measured"
        )
    refill_problem = None
    if validated is not None:
        program_file, tensors_file = (validated / name for name in VALIDATED_FILES)
        try:
            info = refill_program(model, program_file, tensors_file, work_dir)
            check = _proof(work_dir, batches, reference)
            if check["passed"]:
                return {**info, "check": check, "seconds": time.perf_counter() - started}
            refill_problem = check["problem"] or f"outputs differ by {check['max_abs_diff']:.3g}"
        except ProgramError as e:
            refill_problem = str(e)
        log.info("the validated program does not fit the trained model (%s): exporting it again",
                 refill_problem)  # fmt: skip
    try:
        info = export_program(model, sample[:2], work_dir)
        check = _proof(work_dir, batches, reference)
    except ProgramError as e:
        raise ExportError(str(e)) from e
    if not check["passed"]:
        why = check["problem"] or f"outputs differ by up to {check['max_abs_diff']:.3g}"
        raise ExportError(
            f"the exported program does not compute what the model computes ({why});"
            " a branch on tensor values or on the batch size was fixed when the model was"
            " exported: compute the same thing for every input"
        )
    if refill_problem is not None:
        info["refill_problem"] = refill_problem
    return {**info, "check": check, "seconds": time.perf_counter() - started}


def _proof(work_dir: Path, batches: list[torch.Tensor], reference: list[Any]) -> dict[str, Any]:
    """The program in ``work_dir`` run on ``batches`` against the model's outputs."""
    from archsmith.scoring.program import load_program

    program, _ = load_program(work_dir, "cpu")
    with torch.no_grad():
        return compare(program, batches, reference, same_nonfinite=True)


def _same(a: Any, b: Any) -> bool:
    """Equal up to float noise, NaN where NaN is."""
    import numpy as np

    return bool(np.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True))


def _shape_error(got: list[int], expected: list[int]) -> dict[str, Any]:
    return {
        "type": "ShapeMismatch",
        "message": f"the model's output has shape {got}; expected {expected} (batch, num_classes)",
        "line": None,
        "traceback": None,
    }


def op_build(
    args: dict[str, Any], job: dict[str, Any], candidate: str, work_dir: Path
) -> dict[str, Any]:
    """Build the model, run a dummy batch, and export the (untrained) model as a program."""
    torch.manual_seed(0)
    model = build(candidate, args["input_shape"], args["num_classes"]).eval()
    x = dummy_input(args, 2, torch.device("cpu"))
    with torch.no_grad():
        out = model(x)
    if not isinstance(out, torch.Tensor):
        raise ContractError(f"the model's forward returned {type(out).__name__}, not a Tensor")
    expected = [2, int(args["num_classes"])]
    got = list(out.shape)
    result: dict[str, Any] = {
        "output_shape": got,
        "expected_shape": expected,
        "matches": got == expected,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    if got != expected:
        result["_candidate_error"] = _shape_error(got, expected)
        return result
    result["export"] = export_checked(model, x, work_dir)
    return result


def op_train(
    args: dict[str, Any], job: dict[str, Any], candidate: str, work_dir: Path
) -> dict[str, Any]:
    """Train with the recipe of ``archsmith.training`` on the training split, then export.

    Only the training split is in this process's dataset file; its figures per epoch are the
    candidate's own account of its training (loss and accuracy on the batches it trained on).
    ``stop_after``: pause after that epoch, leave the training state in ``TRAIN_STATE_FILE`` and
    export the model as it is then (for the host's early-stopping check); ``resume``: go on from
    the state file the host copied in.
    """
    from archsmith.training import DeviceData, TrainConfig, train

    device, data, is_text = setup(job)
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
        train_eval_samples=0,
        stop_after=int(args["stop_after"]) if args.get("stop_after") else None,
    )
    torch.manual_seed(cfg.seed)
    model = build(candidate, list(data.input_shape), data.num_classes)
    dev_data = DeviceData(
        data.x_train, data.y_train, data.x_val, data.y_val, device, is_text=is_text
    )
    resume = None
    if args.get("resume"):
        resume = torch.load(work_dir / TRAIN_STATE_FILE, map_location=device, weights_only=True)
    report = train(model, dev_data, cfg, resume=resume)
    if report.checkpoint is not None:
        torch.save(report.checkpoint, work_dir / TRAIN_STATE_FILE)
    result = report.as_dict()
    result["train_samples"] = int(data.x_train.shape[0])
    if report.diverged:
        result["_candidate_error"] = {
            "type": "NonFiniteLoss",
            "message": "training diverged: the loss became NaN or infinite"
            f" in epoch {report.epochs_completed}",
            "line": None,
            "traceback": None,
        }
        return result
    with torch.no_grad():
        sample = dev_data.prepare(dev_data.x_train[:_CHECK_SAMPLES]).to("cpu")
    if sample.shape[0] < 2:
        sample = torch.cat([sample, sample])
    given = all((work_dir / name).is_file() for name in VALIDATED_FILES)
    result["export"] = export_checked(model, sample, work_dir, work_dir if given else None)
    return result
