"""Pydantic inputs and outputs of the typed tools; units are in the field names.

These models are the contract between the graph's nodes, the tools and the run store, so they are
strict (unknown fields are errors) and JSON-serialisable (a checkpointer stores them as data).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from archsmith.spec import TaskSpec

__all__ = [
    "MEASURE_BATCH",
    "STOPPED_EARLY",
    "CandidateInput",
    "CheckShapesInput",
    "CheckShapesOutput",
    "ConditionResult",
    "CountParamsOutput",
    "DroppedInstruction",
    "EarlyStopRecord",
    "EpochRecord",
    "EvaluationMetrics",
    "FiredRule",
    "MeasureEnergyInput",
    "MeasureEnergyOutput",
    "NotEvaluatedRule",
    "ResolvedInstruction",
    "RulebookAdviceInput",
    "RulebookAdviceOutput",
    "ToolError",
    "TrainModelInput",
    "TrainModelOutput",
]

_Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
_NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class EvaluationMetrics(BaseModel):
    """The evaluation-based parameters of the paper's Table 2 for one trained candidate.

    A figure that was not measured (a diverged run is never timed) is None, never 0: rules that
    need it do not fire, CM is not computed from it, and views say "not measured". Losses may be
    NaN or infinite: that is how a diverged run reports itself, and the rulebook treats it as
    divergence.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    train_accuracy: _Fraction | None = Field(
        default=None,
        description="T_Acc: training accuracy, a fraction in [0, 1]; None: unmeasured.",
    )
    val_accuracy: _Fraction | None = Field(
        default=None,
        description="V_Acc: validation accuracy, a fraction in [0, 1]; None: unmeasured.",
    )
    train_energy_kwh_pue: _NonNegative | None = Field(
        default=None, description="T_E: energy spent training the candidate, in kWh-PUE (>= 0)."
    )
    val_energy_kwh_pue: _NonNegative | None = Field(
        default=None,
        description="V_E: energy spent evaluating the validation set, in kWh-PUE (>= 0).",
    )
    fps: _NonNegative | None = Field(
        default=None, description="F: inference throughput, in frames per second (>= 0)."
    )
    params: int = Field(ge=0, description="P: number of parameters of the candidate (>= 0).")
    latency_ms: _NonNegative | None = Field(
        default=None, description="Batch-1 inference latency in milliseconds (>= 0), if measured."
    )
    model_size_mb: _NonNegative | None = Field(
        default=None, description="Size of the saved weights in megabytes (>= 0), if measured."
    )
    diverged: bool = Field(
        default=False, description="Whether training diverged (the trainer saw a non-finite loss)."
    )
    train_loss: float | None = Field(
        default=None, description="Final training loss, if known; NaN or infinity means diverged."
    )
    val_loss: float | None = Field(
        default=None, description="Final validation loss, if known; NaN or infinity means diverged."
    )

    @property
    def generalization_gap(self) -> float | None:
        """Training minus validation accuracy: above OT is overfitting, below UT underfitting."""
        if self.train_accuracy is None or self.val_accuracy is None:
            return None
        return self.train_accuracy - self.val_accuracy

    @property
    def is_diverged(self) -> bool:
        """True when the trainer said so or a reported loss is not a finite number."""
        losses = (self.train_loss, self.val_loss)
        return self.diverged or any(x is not None and not math.isfinite(x) for x in losses)


class ConditionResult(BaseModel):
    """One clause of a rule, as evaluated: which metric, which threshold, by how much."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    value: float | bool
    op: Literal["<", ">", "is_true", "is_false"]
    threshold_name: str | None = None
    threshold_symbol: str | None = None
    threshold: float | None = None
    margin: float | None = Field(
        default=None, description="How far the metric is past the threshold (always >= 0)."
    )
    text: str = Field(description="The clause in words, e.g. 'val_accuracy 0.85 < TV_Acc 0.99'.")


class FiredRule(BaseModel):
    """A rule whose conditions all held, with the weight it gave its instructions and why."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str
    description: str
    instructions: list[str]
    weight: float = Field(description="The priority the rule's instructions received.")
    weight_source: str = Field(
        description="Where the weight came from: the paper's symbol (PT_Acc), a spec field, or"
        " 'constant'."
    )
    conditions: list[ConditionResult]
    reason: str = Field(description="One readable line: every clause joined with 'and'.")


class NotEvaluatedRule(BaseModel):
    """A rule that could not be checked, e.g. a limit the spec does not set."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str
    reason: str
    unmeasured: bool = Field(
        default=False,
        description="True when it carries weight and a metric it needs was not measured: its"
        " target is unknown, so not met.",
    )


class ResolvedInstruction(BaseModel):
    """An instruction kept by conflict resolution, for the architect to apply."""

    model_config = ConfigDict(extra="forbid")

    code: str
    meaning: str
    weight: float = Field(gt=0.0)
    raised_by: list[str] = Field(description="Ids of the rules that raised it.")


class DroppedInstruction(BaseModel):
    """An instruction that was raised but not kept, and why (weight <= 0 or a heavier partner)."""

    model_config = ConfigDict(extra="forbid")

    code: str
    meaning: str
    weight: float
    raised_by: list[str]
    reason: str
    lost_to: str | None = Field(default=None, description="The conflicting partner that was kept.")


class RulebookAdviceInput(BaseModel):
    """Input of ``rulebook_advice``: one candidate's measured metrics and the user's TaskSpec."""

    model_config = ConfigDict(extra="forbid")

    metrics: EvaluationMetrics
    spec: TaskSpec


class RulebookAdviceOutput(BaseModel):
    """Output of ``rulebook_advice``: what to change next, why, and how good this candidate is."""

    model_config = ConfigDict(extra="forbid")

    instructions: list[ResolvedInstruction] = Field(
        description="Resolved instructions, heaviest first (Algorithm 2's output)."
    )
    dropped: list[DroppedInstruction]
    fired_rules: list[FiredRule]
    not_evaluated: list[NotEvaluatedRule]
    combined_metric: float | None = Field(
        description="CM of Eq. 1 for this candidate; None when a figure it weighs was not measured."
    )
    normalized_fps: float | None = Field(description="NF used in CM; None: FPS not measured.")
    normalized_train_energy: float | None = Field(description="T_NE used in CM.")
    normalized_val_energy: float | None = Field(description="V_NE used in CM.")
    limit_violations: list[str] = Field(
        default_factory=list,
        description="The spec's hard limits (max_params, max_latency_ms, max_model_size_mb) this"
        " candidate breaks, each as a readable line; empty when it meets them all.",
    )
    targets_met: bool = Field(
        description="True when no rule with a positive weight fired and none was left unchecked"
        " for want of a measurement: all prioritised targets met."
    )


# -- the sandboxed tools ---------------------------------------------------------------------------

#: The batch the measuring process scores and times in: accuracy and FPS in the same batches.
MEASURE_BATCH = 256


class ToolError(BaseModel):
    """Why a tool's call on a candidate failed: the error's type, its message, the code's line."""

    model_config = ConfigDict(extra="forbid")

    type: str
    message: str
    line: int | None = Field(default=None, description="Line in the candidate's code, if known.")


class CandidateInput(BaseModel):
    """The candidate: its module text and the shapes its ``build_model`` is called with."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Module text defining build_model(input_shape, num_classes).")
    input_shape: list[Annotated[int, Field(gt=0)]] = Field(
        min_length=1,
        description="One sample's shape without the batch dimension, e.g. [3, 32, 32].",
    )
    num_classes: int = Field(ge=2, description="Number of output classes.")
    task: Literal["image_classification", "text_classification"] = "image_classification"
    vocab_size: int | None = Field(
        default=None, gt=1, description="Token-id range of text inputs (text tasks only)."
    )


class CheckShapesInput(CandidateInput):
    """Input of ``check_shapes``."""

    batch_size: int = Field(default=2, ge=1, le=64, description="Dummy batch size.")


class CheckShapesOutput(BaseModel):
    """Output of ``check_shapes``: the output shape and whether it is (batch, num_classes)."""

    model_config = ConfigDict(extra="forbid")

    ok: bool
    error: ToolError | None = None
    output_shape: list[int] | None = None
    expected_shape: list[int] | None = None
    matches: bool = False
    sandbox_wall_time_s: float = 0.0


class CountParamsOutput(BaseModel):
    """Output of ``count_params``."""

    model_config = ConfigDict(extra="forbid")

    ok: bool
    error: ToolError | None = None
    params: int | None = None
    trainable_params: int | None = None
    size_mb: float | None = Field(
        default=None, description="Every tensor the program holds, in 1e6 bytes."
    )
    flops_per_sample: int | None = Field(
        default=None, description="FLOPs of one forward pass of one sample (torch's counter)."
    )
    sandbox_wall_time_s: float = 0.0


class TrainModelInput(CandidateInput):
    """Input of ``train_model``: the candidate, the dataset and the recipe's knobs."""

    dataset: str = Field(
        description="Dataset name or alias from the registry, or the TaskSpec's dataset as it is"
        " (the absolute path of the user's own data)."
    )
    epochs: int = Field(default=5, ge=1, le=10_000)
    time_budget_s: float | None = Field(
        default=None, gt=0, description="Stop training after this many seconds (checked per step)."
    )
    seed: int = Field(default=0, ge=0, description="Seed of initialisation, order, augmentation.")
    split_seed: int = Field(
        default=0, ge=0, description="Seed of the train/validation split; keep it fixed per run."
    )
    batch_size: int = Field(default=128, ge=1, le=65_536)
    optimizer: Literal["sgd", "adam"] | None = Field(
        default=None, description="Default: SGD for images, Adam for text (the paper's)."
    )
    lr: float | None = Field(default=None, gt=0, description="Default: 0.025 SGD, 1e-3 Adam.")
    augment: bool = True
    max_train: int | None = Field(default=None, ge=1, description="Subsample the training split.")
    max_val: int | None = Field(default=None, ge=1, description="Subsample the validation split.")


class EpochRecord(BaseModel):
    """One epoch of training, as the candidate's own process reported it.

    Loss and accuracy on the (augmented) batches it trained on; its process has no validation
    split, so ``val_loss`` and ``val_accuracy`` are empty. Not a measured figure: the measured ones
    are ``TrainModelOutput``'s.
    """

    model_config = ConfigDict(extra="forbid")

    epoch: int
    train_loss: float | None
    train_accuracy: float
    val_loss: float | None = None
    val_accuracy: float | None = None
    seconds: float


#: The history status of a candidate the early-stopping rule stopped.
STOPPED_EARLY = "stopped early"


class EarlyStopRecord(BaseModel):
    """The early-stopping check of one candidate: its figures at the check and the verdict.

    The accuracies are measured by the measuring process on the program the candidate exported at
    ``epoch`` (the same ``score`` job as at the end); ``bound`` says what the rule computed from
    them and from the best's figures (``archsmith.agents.early_stop``).
    """

    model_config = ConfigDict(extra="forbid")

    epoch: int = Field(ge=1, description="Epochs trained when checked.")
    epochs: int = Field(ge=1, description="Epochs of the full schedule.")
    train_accuracy: float | None = Field(default=None, description="T_Acc at the check.")
    val_accuracy: float | None = Field(default=None, description="V_Acc at the check.")
    stopped: bool = Field(description="True: the candidate was not trained any further.")
    rule: str = Field(description="The rule and its settings.")
    reason: str = Field(description="Why it stopped or went on, with the figures.")
    bound: dict[str, float] | None = Field(
        default=None, description="The bound on its final figures, and the best's CM."
    )


class TrainModelOutput(BaseModel):
    """Output of ``train_model``: measured accuracy and loss, energy, and the trained model.

    Accuracies, losses, parameters and size are measured by the measuring process on the program
    the candidate exported; training energy and ``wall_time_s`` by the host around the whole
    training job. ``history``, ``epochs_completed`` and ``train_samples_per_s`` are the candidate
    process's own account.
    """

    model_config = ConfigDict(extra="forbid")

    ok: bool
    error: ToolError | None = None
    history: list[EpochRecord] = Field(default_factory=list)
    train_accuracy: float | None = Field(default=None, description="T_Acc, eval mode, fraction.")
    val_accuracy: float | None = Field(default=None, description="V_Acc, fraction.")
    train_loss: float | None = None
    val_loss: float | None = None
    params: int | None = Field(
        default=None,
        description="Numbers the trained program holds: parameters, buffers and constants.",
    )
    size_mb: float | None = Field(
        default=None, description="Every tensor the program holds, in 1e6 bytes."
    )
    diverged: bool = False
    stopped_by_budget: bool = False
    epochs_completed: int = 0
    wall_time_s: float | None = Field(
        default=None, description="The training job's wall time, seen from the host."
    )
    train_samples_per_s: float | None = None
    train_energy_j: float | None = None
    train_energy_kwh_pue: float | None = None
    train_energy_source: str | None = Field(default=None, description="nvml, rapl or estimate.")
    train_energy_detail: str | None = None
    model_dir: Path | None = Field(
        default=None,
        description="Host directory of the trained model (program.json, program.safetensors).",
    )
    device: str | None = None
    train_samples: int | None = None
    val_samples: int | None = None
    sandbox_wall_time_s: float = 0.0
    early_stop: EarlyStopRecord | None = Field(
        default=None,
        description="The early-stopping check, when one was made; stopped: no final figures.",
    )


class MeasureEnergyInput(BaseModel):
    """Input of ``measure_energy``: the trained model (a program, not code) and its dataset."""

    model_config = ConfigDict(extra="forbid")

    model_dir: Path = Field(description="The model_dir train_model returned.")
    input_shape: list[Annotated[int, Field(gt=0)]] = Field(
        min_length=1, description="One sample's shape without the batch dimension."
    )
    num_classes: int = Field(ge=2, description="Number of output classes.")
    task: Literal["image_classification", "text_classification"] = "image_classification"
    vocab_size: int | None = Field(default=None, gt=1)
    dataset: str = Field(
        description="Dataset name or alias from the registry, or the TaskSpec's dataset as it is"
        " (the absolute path of the user's own data)."
    )
    batch_size: int = Field(
        default=MEASURE_BATCH, ge=1, le=65_536, description="Throughput batch size."
    )
    split_seed: int = Field(default=0, ge=0, description="The split train_model used.")
    max_val: int | None = Field(default=None, ge=1)
    target: str | None = Field(
        default=None,
        description="Also measure on this deployment target (RUNTIME[:key=value,...]; see"
        " `archsmith targets`); None: torch on this machine only.",
    )


class TargetFigures(BaseModel):
    """A model's figures on its deployment target, each saying where it was measured."""

    model_config = ConfigDict(extra="ignore")

    target: str = Field(description="The target as written canonically.")
    runtime: str
    runtime_version: str | None = None
    threads: int
    batch: int = Field(description="The throughput batch; latency is batch 1.")
    precision: str
    fps: float = Field(description="Samples per second at the target batch.")
    fps_repeats: int | None = None
    fps_spread: float | None = None
    fps_method: str | None = None
    latency_ms: float = Field(description="Batch-1 latency, median (p50).")
    latency_p90_ms: float
    latency_repeats: int | None = None
    latency_spread: float | None = None
    latency_method: str | None = None
    size_mb: float = Field(description="The model file's size (MB, 10^6 bytes).")
    peak_memory_mb: float | None = Field(
        default=None, description="The measuring process's peak RSS while the runtime ran (MiB)."
    )
    val_accuracy: float = Field(description="Validation accuracy as the runtime answers it.")
    val_samples: int
    test_accuracy: float | None = None
    machine: str = Field(description="The machine it ran on (this one, or the device's).")
    measured_by: str = Field(default="this machine", description="'this machine' or a device URL.")
    built: dict[str, Any] = Field(default_factory=dict)
    artifact_sha256: str | None = None


class MeasureEnergyOutput(BaseModel):
    """Output of ``measure_energy``: speed and energy of inference, each energy with its source."""

    model_config = ConfigDict(extra="forbid")

    ok: bool
    error: ToolError | None = None
    fps: float | None = Field(
        default=None,
        description="Images per second at batch_size: the median pass, charged its CPU time over"
        " the threads on a CPU (fps_wall: by the wall clock).",
    )
    fps_wall: float | None = None
    fps_repeats: int | None = None
    fps_spread: float | None = Field(default=None, description="(p90 - p10) / median of passes.")
    fps_method: str | None = None
    fps_threads: int | None = None
    latency_ms: float | None = Field(
        default=None,
        description="Median batch-1 latency on latency_threads (one: CPU time on a CPU).",
    )
    latency_p90_ms: float | None = None
    latency_wall_ms: float | None = None
    latency_repeats: int | None = None
    latency_spread: float | None = None
    latency_method: str | None = None
    latency_threads: int | None = None
    energy_per_image_j: float | None = None
    energy_per_image_kwh_pue: float | None = None
    val_energy_j: float | None = Field(default=None, description="V_E: one pass over validation.")
    val_energy_kwh_pue: float | None = None
    val_energy_source: str | None = Field(default=None, description="nvml, rapl or estimate.")
    val_energy_detail: str | None = None
    val_accuracy: float | None = Field(
        default=None,
        description="V_Acc of the timed passes' own answers; the host holds it to the score job's.",
    )
    val_samples: int | None = Field(default=None, description="Validation samples each pass ran.")
    device: str | None = None
    target: TargetFigures | None = Field(
        default=None, description="The figures on the deployment target, when one is set."
    )
    sandbox_wall_time_s: float = 0.0
