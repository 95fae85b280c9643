"""What a request asks for, before it becomes a TaskSpec: the intent and the emphasis settings.

``PlanIntent`` is the one shape both front ends produce (the offline phrase reader and the LLM's
structured output), so the spec builder checks and completes them the same way.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from archsmith.data.registry import REGISTRY

__all__ = [
    "EMPHASIS_PRIORITY",
    "REAL_TIME_FPS",
    "TRAIN_ENERGY_PRIORITY",
    "WEIGHTS_ACCURACY_ENERGY",
    "WEIGHTS_ACCURACY_ENERGY_FPS",
    "WEIGHTS_ACCURACY_FPS",
    "WEIGHTS_ACCURACY_ONLY",
    "PlanIntent",
    "Weights",
    "fmt",
    "known_datasets_message",
]

Weights = tuple[float, float, float]  # (W_A, W_E, W_F)

WEIGHTS_ACCURACY_ONLY: Weights = (1.0, 0.0, 0.0)
WEIGHTS_ACCURACY_ENERGY: Weights = (0.5, 0.5, 0.0)
WEIGHTS_ACCURACY_ENERGY_FPS: Weights = (0.7, 0.1, 0.2)
WEIGHTS_ACCURACY_FPS: Weights = (0.8, 0.0, 0.2)

#: FPS assumed for "real-time": video frame rate.
REAL_TIME_FPS = 30.0
#: PF or PV_E when the request emphasises speed or energy.
EMPHASIS_PRIORITY = 1.0
#: PT_E when the request emphasises energy: training energy matters, but less than deployment's.
TRAIN_ENERGY_PRIORITY = 0.5


class PlanIntent(BaseModel):
    """What a request asks for, before it becomes a TaskSpec; the LLM's structured output.

    Deliberately loose (no ranges): range and consistency checks happen in one place when the
    intent becomes a TaskSpec, so the LLM gets the same readable error the offline parser would.
    """

    model_config = ConfigDict(extra="ignore")

    dataset: str = Field(
        description="The dataset the request names: a known dataset's name or one of its aliases,"
        " or the path of the user's own data exactly as the request writes it."
    )
    val_accuracy_threshold: float | None = Field(
        default=None,
        description=(
            "Validation accuracy target as a fraction in (0, 1], e.g. 0.95 for '95 %'; null if the"
            " request gives none."
        ),
    )
    fps_threshold: float | None = Field(
        default=None,
        description=(
            "Minimum inference throughput in frames per second; 30 for 'real-time'; null if none."
        ),
    )
    max_params: int | None = Field(
        default=None, description="Largest number of parameters allowed, e.g. 100000; null if none."
    )
    max_model_size_mb: float | None = Field(
        default=None, description="Largest model size in megabytes (500 KB = 0.5); null if none."
    )
    max_latency_ms: float | None = Field(
        default=None, description="Largest batch-1 inference latency in milliseconds; null if none."
    )
    emphasizes_energy: bool = Field(
        default=False,
        description="True if the request stresses energy: energy-efficient, low power, battery,"
        " green, edge or embedded devices.",
    )
    emphasizes_speed: bool = Field(
        default=False,
        description="True if the request stresses speed: fast, real-time, an FPS target, edge or"
        " embedded devices.",
    )
    weight_accuracy: float | None = Field(
        default=None, description="W_A in [0, 1] only if the request states weights; else null."
    )
    weight_energy: float | None = Field(
        default=None, description="W_E in [0, 1] only if the request states weights; else null."
    )
    weight_fps: float | None = Field(
        default=None, description="W_F in [0, 1] only if the request states weights; else null."
    )
    assumptions: list[str] = Field(
        default_factory=list,
        description="Every assumption made in reading the request, one plain sentence each.",
    )


def fmt(x: float) -> str:
    """A number as a person writes it: 100,000 not 100000.0, 0.95 not 0.9500."""
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:g}"


def known_datasets_message() -> str:
    lines = [
        f"  {info.name}: {', '.join(repr(a) for a in info.aliases)}" for info in REGISTRY.values()
    ]
    return (
        "Known datasets and their aliases:\n"
        + "\n".join(lines)
        + "\nOr your own data, by its path in the request or --dataset PATH: a folder of class"
        " folders of images ('the cell images in ./cells'), an .npz of images and labels, or a"
        " .csv or .jsonl of text and label."
    )
