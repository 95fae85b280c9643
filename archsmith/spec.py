"""The task specification: what the user asks for, with the LEMONADE paper's parameters.

Every user-defined parameter of the paper's Table 2 is a field with a readable name; its
description carries the paper's symbol (``val_accuracy_threshold`` is TV_Acc) so a person reading a
trace can map it back to the paper. Defaults are the paper's (section "Experimental analysis").
Invalid values are rejected with a message that names the field and its allowed range, because a
spec that silently clamps a typo would steer an overnight search the wrong way.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from archsmith.errors import load_json_model

__all__ = [
    "BYTES_PER_PARAM",
    "PAPER_DEFAULTS",
    "TaskKind",
    "TaskSpec",
    "load_spec",
]


class TaskKind(str, Enum):
    """What the model has to do with its input."""

    IMAGE_CLASSIFICATION = "image_classification"
    TEXT_CLASSIFICATION = "text_classification"


Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Priority = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]

#: Bytes per parameter of a float32 checkpoint: a model's size before it is measured.
BYTES_PER_PARAM = 4

#: The paper's user-defined metric values, used for every experiment it reports.
PAPER_DEFAULTS: dict[str, float] = {
    "train_accuracy_priority": 0.0,  # PT_Acc
    "val_accuracy_priority": 1.0,  # PV_Acc
    "train_accuracy_threshold": 0.99,  # TT_Acc
    "val_accuracy_threshold": 0.99,  # TV_Acc
    "fps_priority": 0.0,  # PF
    "fps_threshold": 14000.0,  # TF
    "train_energy_priority": 0.0,  # PT_E
    "train_energy_threshold_kwh_pue": 1e-3,  # TT_E
    "val_energy_priority": 0.0,  # PV_E
    "val_energy_threshold_kwh_pue": 1e-3,  # TV_E
    "overfit_threshold": 0.10,  # OT
    "underfit_threshold": 0.05,  # UT
}


class TaskSpec(BaseModel):
    """A validated task: dataset, shapes, the paper's thresholds and priorities, CM weights, limits.

    Priorities (P*) weigh the instructions a rule raises when its threshold (T*) is missed; the
    weights (W_*) weigh accuracy, FPS and energy in the combined metric CM (Eq. 1) that picks the
    best candidate. Hard limits are optional and raise instructions only when set; which a model
    breaks is the judge's rule (``archsmith.judge.limit_violations``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    # What the task is.
    dataset: str = Field(
        min_length=1,
        description="Dataset name from the registry, or the absolute path of the user's own data"
        " (a folder of class folders of images, an .npz, a .csv or .jsonl; '?image_size=N' after"
        " it when an image size was asked), so a resumed run prepares the same data (TS).",
    )
    task: TaskKind = Field(
        default=TaskKind.IMAGE_CLASSIFICATION,
        description="Task kind (TS): image_classification or text_classification.",
    )
    input_shape: tuple[Annotated[int, Field(gt=0)], ...] = Field(
        min_length=1,
        description="Shape of one input sample without the batch dimension (TS), e.g. [3, 32, 32].",
    )
    num_classes: int = Field(ge=2, description="Number of output classes (TS).")

    # Table 2: accuracy.
    train_accuracy_threshold: Fraction = Field(
        default=PAPER_DEFAULTS["train_accuracy_threshold"],
        description="TT_Acc: training accuracy the model should reach, a fraction in [0, 1].",
    )
    train_accuracy_priority: Priority = Field(
        default=PAPER_DEFAULTS["train_accuracy_priority"],
        description="PT_Acc: priority of training accuracy, in [0, 1].",
    )
    val_accuracy_threshold: Fraction = Field(
        default=PAPER_DEFAULTS["val_accuracy_threshold"],
        description="TV_Acc: validation accuracy the model should reach, a fraction in [0, 1].",
    )
    val_accuracy_priority: Priority = Field(
        default=PAPER_DEFAULTS["val_accuracy_priority"],
        description="PV_Acc: priority of validation accuracy, in [0, 1].",
    )
    # Table 2: speed.
    fps_threshold: float = Field(
        default=PAPER_DEFAULTS["fps_threshold"],
        gt=0.0,
        allow_inf_nan=False,
        description="TF: inference throughput the model should reach, in frames per second (> 0).",
    )
    fps_priority: Priority = Field(
        default=PAPER_DEFAULTS["fps_priority"],
        description="PF: priority of the FPS target, in [0, 1].",
    )
    # Table 2: energy.
    train_energy_threshold_kwh_pue: float = Field(
        default=PAPER_DEFAULTS["train_energy_threshold_kwh_pue"],
        gt=0.0,
        allow_inf_nan=False,
        description="TT_E: energy budget for training one candidate, in kWh-PUE (> 0).",
    )
    train_energy_priority: Priority = Field(
        default=PAPER_DEFAULTS["train_energy_priority"],
        description="PT_E: priority of the training energy budget, in [0, 1].",
    )
    val_energy_threshold_kwh_pue: float = Field(
        default=PAPER_DEFAULTS["val_energy_threshold_kwh_pue"],
        gt=0.0,
        allow_inf_nan=False,
        description="TV_E: energy budget for evaluating the validation set, in kWh-PUE (> 0).",
    )
    val_energy_priority: Priority = Field(
        default=PAPER_DEFAULTS["val_energy_priority"],
        description="PV_E: priority of the validation energy budget, in [0, 1].",
    )
    # Table 2: generalisation.
    overfit_threshold: Fraction = Field(
        default=PAPER_DEFAULTS["overfit_threshold"],
        description="OT: train minus validation accuracy above this is overfitting, in [0, 1].",
    )
    underfit_threshold: Fraction = Field(
        default=PAPER_DEFAULTS["underfit_threshold"],
        description=(
            "UT: train minus validation accuracy below this, with training accuracy under TT_Acc,"
            " is underfitting, in [0, 1]."
        ),
    )
    # Eq. 1 weights.
    weight_accuracy: Priority = Field(
        default=1.0, description="W_A: weight of accuracy in the combined metric CM, in [0, 1]."
    )
    weight_energy: Priority = Field(
        default=0.0, description="W_E: weight of energy in the combined metric CM, in [0, 1]."
    )
    weight_fps: Priority = Field(
        default=0.0, description="W_F: weight of FPS in the combined metric CM, in [0, 1]."
    )
    # Hard limits (not in the paper's Table 2; edge deployments need them).
    max_params: int | None = Field(
        default=None, gt=0, description="Largest number of parameters allowed (> 0), or none."
    )
    max_latency_ms: float | None = Field(
        default=None,
        gt=0.0,
        allow_inf_nan=False,
        description="Largest batch-1 inference latency allowed, in milliseconds (> 0), or none.",
    )
    max_model_size_mb: float | None = Field(
        default=None,
        gt=0.0,
        allow_inf_nan=False,
        description="Largest model size allowed, in megabytes (> 0), or none.",
    )
    params_priority: Priority = Field(
        default=1.0, description="Priority of the parameter limit when it is set, in [0, 1]."
    )
    latency_priority: Priority = Field(
        default=1.0, description="Priority of the latency limit when it is set, in [0, 1]."
    )
    model_size_priority: Priority = Field(
        default=1.0, description="Priority of the model size limit when it is set, in [0, 1]."
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> TaskSpec:
        if self.weight_accuracy + self.weight_energy + self.weight_fps <= 0.0:
            raise ValueError(
                "weight_accuracy, weight_energy and weight_fps are all 0: the combined metric CM"
                " would rank every candidate equal; give at least one a value in (0, 1]"
            )
        if self.overfit_threshold < self.underfit_threshold:
            raise ValueError(
                f"overfit_threshold (OT={self.overfit_threshold}) is below underfit_threshold"
                f" (UT={self.underfit_threshold}): a model could be over- and underfitting at once;"
                " make OT >= UT"
            )
        if self.task is TaskKind.IMAGE_CLASSIFICATION and len(self.input_shape) != 3:
            raise ValueError(
                f"input_shape {list(self.input_shape)} has {len(self.input_shape)} dimensions;"
                " image classification needs [channels, height, width]"
            )
        if self.task is TaskKind.TEXT_CLASSIFICATION and len(self.input_shape) != 1:
            raise ValueError(
                f"input_shape {list(self.input_shape)} has {len(self.input_shape)} dimensions;"
                " text classification needs [sequence_length]"
            )
        return self

    @classmethod
    def symbols(cls) -> dict[str, str]:
        """Map each field to the paper's symbol its description starts with (e.g. TV_Acc)."""
        out: dict[str, str] = {}
        for name, info in cls.model_fields.items():
            desc = info.description or ""
            head, sep, _ = desc.partition(":")
            if sep and " " not in head and head[:1].isupper():
                out[name] = head
        return out


def load_spec(path: Path) -> TaskSpec:
    """Read and validate a TaskSpec from a JSON file, raising InputError with a readable message."""
    return load_json_model(path, TaskSpec, "spec")
