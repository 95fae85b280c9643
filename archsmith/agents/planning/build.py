"""The spec builder: a ``PlanIntent`` -> a validated TaskSpec and every assumption behind it.

Weights (W_A, W_E, W_F) by emphasis:

* nothing said about energy or speed: 1 / 0 / 0 (the paper's accuracy-only setting);
* energy words only ("energy-efficient", "low power", "battery", "green"): 0.5 / 0.5 / 0
  (the paper's accuracy-energy setting);
* energy and speed, or an edge/embedded/mobile target: 0.7 / 0.1 / 0.2 (the paper's
  accuracy-energy-FPS setting);
* speed only (an FPS target, "real-time", "fast"): 0.8 / 0 / 0.2 (not in the paper: accuracy
  stays dominant, FPS gets the same share as in the paper's three-way setting).

Speed emphasis also sets PF = 1 so the rulebook acts on the FPS target; energy emphasis sets
PV_E = 1 (deployment energy, what those words are about) and PT_E = 0.5.

Targets that cannot be met together are warned about here too (`plan_warnings`), before any work.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from archsmith.agents.interfaces import PlanRefusedError, PlanResult
from archsmith.agents.planning.choice import OwnData, own_data
from archsmith.agents.planning.intent import (
    EMPHASIS_PRIORITY,
    TRAIN_ENERGY_PRIORITY,
    WEIGHTS_ACCURACY_ENERGY,
    WEIGHTS_ACCURACY_ENERGY_FPS,
    WEIGHTS_ACCURACY_FPS,
    WEIGHTS_ACCURACY_ONLY,
    PlanIntent,
    Weights,
    fmt,
)
from archsmith.agents.planning.phrases import find_datasets
from archsmith.data.registry import REGISTRY, DatasetInfo, DatasetNotFoundError, resolve_dataset
from archsmith.data.user import dataset_argument, looks_like_path
from archsmith.errors import InputError, format_validation_error
from archsmith.spec import BYTES_PER_PARAM, PAPER_DEFAULTS, TaskSpec

__all__ = ["build_result", "plan_warnings"]

logger = logging.getLogger(__name__)


def _resolve(name: str) -> DatasetInfo:
    """The registry entry the intent names, trying the name itself, then aliases inside it."""
    try:
        return resolve_dataset(name)
    except DatasetNotFoundError as e:
        hits = {hit.dataset for hit in find_datasets(name.lower())}
        if len(hits) == 1:
            return REGISTRY[hits.pop()]
        raise PlanRefusedError(
            f"dataset: {e} Name one of them, e.g. 'a 1000-FPS malaria classifier'."
        ) from e


def _weights_for(energy: bool, speed: bool) -> tuple[Weights, str]:
    if energy and speed:
        return WEIGHTS_ACCURACY_ENERGY_FPS, (
            "the paper's accuracy-energy-FPS setting, because the request stresses speed and energy"
        )
    if energy:
        return WEIGHTS_ACCURACY_ENERGY, (
            "the paper's accuracy-energy setting, because the request stresses energy"
        )
    if speed:
        return WEIGHTS_ACCURACY_FPS, (
            "accuracy first with FPS weighted as in the paper's three-way setting, because the"
            " request stresses speed but not energy"
        )
    return WEIGHTS_ACCURACY_ONLY, (
        "the paper's accuracy-only setting, because the request says nothing about speed or energy"
    )


def _check_intent(intent: PlanIntent) -> None:
    """Refuse values the TaskSpec would accept but that cannot be what the user meant."""
    acc = intent.val_accuracy_threshold
    if acc is not None and not 0.0 < acc <= 1.0:
        raise PlanRefusedError(
            f"val_accuracy_threshold: an accuracy target of {fmt(acc)} cannot be reached or means"
            " nothing; give a fraction in (0, 1], e.g. 0.95 for 95 %"
        )
    limits: list[tuple[str, float | None, str]] = [
        ("fps_threshold", intent.fps_threshold, "an FPS target"),
        ("max_params", intent.max_params, "a parameter limit"),
        ("max_model_size_mb", intent.max_model_size_mb, "a model size limit"),
        ("max_latency_ms", intent.max_latency_ms, "a latency limit"),
    ]
    for field, value, what in limits:
        if value is not None and value <= 0:
            raise PlanRefusedError(
                f"{field}: {what} of {fmt(value)} cannot be met by any model; give a value > 0"
            )


def build_result(
    intent: PlanIntent,
    notes: list[str],
    source: str,
    *,
    own: OwnData | None = None,
    image_size: int | None = None,
    cache_dir: Path | None = None,
) -> PlanResult:
    """Turn an intent into a validated TaskSpec and the full list of assumptions.

    ``own`` is the user's data when ``--dataset`` or the request's words named a path; an LLM
    that answers with a path the words' scan did not see has it read here, the same way.
    """
    _check_intent(intent)
    if own is None and looks_like_path(intent.dataset):
        try:
            name = dataset_argument(intent.dataset, image_size=image_size)
        except InputError as e:
            raise PlanRefusedError(f"dataset: {e}") from e
        own = own_data(name, cache_dir)
    assumptions = list(notes) + [a for a in intent.assumptions if a not in notes]
    if own is not None:
        fields: dict[str, Any] = dict(own.fields)
        assumptions += own.assumptions
    else:
        info = _resolve(intent.dataset)
        if image_size is not None:
            raise PlanRefusedError(
                f"--image-size applies to your own image data; {info.name} has a fixed input"
                f" shape {list(info.input_shape)}"
            )
        assumptions.append(
            f"Dataset {info.name}: {info.task.value}, input shape {list(info.input_shape)},"
            f" {info.num_classes} classes (from the dataset registry)."
        )
        fields = {
            "dataset": info.name,
            "task": info.task,
            "input_shape": info.input_shape,
            "num_classes": info.num_classes,
        }

    acc = intent.val_accuracy_threshold
    if acc is None:
        tv = PAPER_DEFAULTS["val_accuracy_threshold"]
        assumptions.append(f"No accuracy target given: using the paper's TV_Acc = {fmt(tv)}.")
    else:
        fields["val_accuracy_threshold"] = acc
        assumptions.append(
            f"Validation accuracy target TV_Acc = {fmt(acc)} with the paper's priority PV_Acc = 1."
        )
        tt = PAPER_DEFAULTS["train_accuracy_threshold"]
        if acc > tt:
            fields["train_accuracy_threshold"] = acc
            assumptions.append(
                f"Training accuracy target TT_Acc raised to {fmt(acc)} to match TV_Acc, since"
                " training accuracy below the validation target would count as underfitting."
            )

    weights_given = (intent.weight_accuracy, intent.weight_energy, intent.weight_fps)
    speed = intent.emphasizes_speed or intent.fps_threshold is not None
    energy = intent.emphasizes_energy
    if any(w is not None for w in weights_given):
        wa, we, wf = (0.0 if w is None else w for w in weights_given)
        assumptions.append(
            f"Weights as stated: accuracy {fmt(wa)}, energy {fmt(we)}, FPS {fmt(wf)}."
        )
        speed = speed or wf > 0
        energy = energy or we > 0
    else:
        (wa, we, wf), why = _weights_for(energy, speed)
        assumptions.append(
            f"Weights set to accuracy {fmt(wa)}, energy {fmt(we)}, FPS {fmt(wf)} ({why})."
        )
    fields.update(weight_accuracy=wa, weight_energy=we, weight_fps=wf)

    if speed:
        fields["fps_priority"] = EMPHASIS_PRIORITY
        if intent.fps_threshold is None:
            tf = PAPER_DEFAULTS["fps_threshold"]
            assumptions.append(
                f"Speed matters but no FPS target given: using the paper's TF = {fmt(tf)} FPS"
                f" with priority PF = {fmt(EMPHASIS_PRIORITY)}."
            )
        else:
            fields["fps_threshold"] = intent.fps_threshold
            assumptions.append(
                f"FPS target TF = {fmt(intent.fps_threshold)} with priority"
                f" PF = {fmt(EMPHASIS_PRIORITY)}, since the request asks for it."
            )
    else:
        assumptions.append("No FPS target or speed emphasis: FPS is not pursued (PF = 0).")

    if energy:
        fields["val_energy_priority"] = EMPHASIS_PRIORITY
        fields["train_energy_priority"] = TRAIN_ENERGY_PRIORITY
        assumptions.append(
            f"Energy priorities set to PV_E = {fmt(EMPHASIS_PRIORITY)} (inference) and"
            f" PT_E = {fmt(TRAIN_ENERGY_PRIORITY)} (training) against the paper's budgets of"
            f" {fmt(PAPER_DEFAULTS['val_energy_threshold_kwh_pue'])} kWh-PUE."
        )

    limits = {
        "max_params": intent.max_params,
        "max_model_size_mb": intent.max_model_size_mb,
        "max_latency_ms": intent.max_latency_ms,
    }
    fields.update({k: v for k, v in limits.items() if v is not None})
    if all(v is None for v in limits.values()):
        assumptions.append("No parameter, model size or latency limit given: none is enforced.")
    else:
        units = {"max_params": "parameters", "max_model_size_mb": "MB", "max_latency_ms": "ms"}
        stated = ", ".join(f"{fmt(v)} {units[k]}" for k, v in limits.items() if v is not None)
        assumptions.append(f"Hard limits (at most, each with priority 1): {stated}.")
    assumptions.append(
        "Other thresholds (TT_Acc, energy budgets, overfit OT, underfit UT) are the paper's"
        " defaults unless stated above."
    )

    try:
        spec = TaskSpec(**fields)
    except ValidationError as e:
        raise PlanRefusedError(
            f"the request gives an invalid task spec:\n{format_validation_error(e, TaskSpec)}"
        ) from e
    logger.info("planned %s from %s with %d assumptions", spec.dataset, source, len(assumptions))
    return PlanResult(spec=spec, assumptions=assumptions, source=source)


#: Parameters a classifier's output needs at the very least: a weight and a bias for each class,
#: even on one learned feature; fewer cannot give every class its own region of the input.
_MIN_PARAMS_PER_CLASS = 2


def plan_warnings(spec: TaskSpec) -> list[str]:
    """Targets that are plainly unreachable together, each with the reason; the run may still go.

    Said before any work, because a night spent on "99.9 % accuracy with at most 10 parameters"
    ends with no candidate meeting its targets. Only bounds that hold for every model are used
    (an output layer's minimum), so a warning is never a guess about what search might find.
    """
    acc = spec.val_accuracy_threshold
    classes = spec.num_classes
    if acc <= 1.0 / classes:
        return []  # a target at chance level asks nothing of the parameters
    floor = _MIN_PARAMS_PER_CLASS * classes
    why = (
        f"a classifier for {classes} classes needs at least {floor:,} parameters (a weight and a"
        f" bias for each class, even on a single learned feature) to tell the classes apart at"
        f" all, let alone reach the validation accuracy target TV_Acc = {fmt(acc)}"
    )
    warnings = []
    if spec.max_params is not None and spec.max_params < floor:
        warnings.append(
            f"max_params = {fmt(spec.max_params)} and TV_Acc = {fmt(acc)} cannot both be met:"
            f" {why}. Allow more parameters or lower the accuracy target."
        )
    if spec.max_model_size_mb is not None:
        room = int(spec.max_model_size_mb * 1e6 // BYTES_PER_PARAM)
        if room < floor:
            warnings.append(
                f"max_model_size_mb = {fmt(spec.max_model_size_mb)} and TV_Acc = {fmt(acc)}"
                f" cannot both be met: {fmt(spec.max_model_size_mb)} MB holds {room:,} float32"
                f" parameters, and {why}. Allow a larger model or lower the accuracy target."
            )
    return warnings
