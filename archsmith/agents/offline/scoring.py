"""What the offline architect's search sees of a description, and how it scores predictions.

The shared search (`archsmith.search.policy`) fits a surrogate on the history's descriptions
(``description_features``) and what was measured of them (``observed_metrics``), predicts the
same of each candidate edit, and scores the prediction by the judge's CM (``spec_score``), so
the search and the critic cannot disagree on what "better" is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from archsmith import judge
from archsmith.agents.offline.description import (
    MAX_DENSE_LAYERS,
    MAX_DROPOUT,
    MAX_LAYERS_PER_STAGE,
    MAX_STAGE_DROPOUT,
    MAX_STAGES,
    Arch,
    estimate_flops,
    estimate_params,
)
from archsmith.search.surrogate import Matrix
from archsmith.spec import TaskSpec
from archsmith.tools.schemas import EvaluationMetrics

__all__ = [
    "FEATURE_PRIOR_SD",
    "description_features",
    "observed_metrics",
    "spec_score",
    "surrogate_targets",
]

#: Prior sd of each description feature's weight (features are scaled to about 0-1); untuned:
#: no benchmark of trained candidates is large enough to tune it on.
FEATURE_PRIOR_SD = 0.5


def description_features(arch: Arch) -> Matrix:
    """What the surrogate sees of a description, each scaled to about 0-1."""
    convs = sum(s.layers for s in arch.stages)
    return np.asarray(
        [
            math.log10(max(estimate_params(arch), 1)) / 7.0,
            math.log10(max(estimate_flops(arch), 1)) / 10.0,
            convs / (MAX_STAGES * MAX_LAYERS_PER_STAGE),
            len(arch.stages) / MAX_STAGES,
            sum(s.residual for s in arch.stages) / MAX_STAGES,
            sum(s.kernel for s in arch.stages) / (5 * len(arch.stages)),
            len(arch.head) / MAX_DENSE_LAYERS,
            arch.dropout / MAX_DROPOUT,
            arch.stage_dropout / MAX_STAGE_DROPOUT,
            1.0 if arch.init == "kaiming" else 0.0,
        ],
        dtype=float,
    )


def observed_metrics(metrics: EvaluationMetrics) -> dict[str, float]:
    """What the surrogate models of a trained candidate; FPS on a log scale, as FLOPs act.

    A figure that was not measured is left out, not modelled as 0.
    """
    out = {
        name: float(value)
        for name, value in (
            ("train_accuracy", metrics.train_accuracy),
            ("val_accuracy", metrics.val_accuracy),
            ("train_energy_kwh_pue", metrics.train_energy_kwh_pue),
            ("val_energy_kwh_pue", metrics.val_energy_kwh_pue),
            ("latency_ms", metrics.latency_ms),
        )
        if value is not None
    }
    if metrics.fps is not None:
        out["log_fps"] = math.log(max(metrics.fps, 1e-6))
    return out


def surrogate_targets(observed: Sequence[Mapping[str, float]]) -> list[judge.Target]:
    """Accuracies as qualities; FPS (on a log scale, at unit scale), energies and latency at
    their expected values."""
    return judge.targets(
        observed,
        qualities=["train_accuracy", "val_accuracy"],
        fixed=[judge.Target("log_fps", 1.0)],
        costs=["train_energy_kwh_pue", "val_energy_kwh_pue", "latency_ms"],
    )


def spec_score(spec: TaskSpec, metrics: Mapping[str, float]) -> float:
    """CM (Eq. 1) of predicted metrics, ``-inf`` past a hard limit of the spec, 0 when nothing
    is known yet (every candidate is then alike and the rules' weights decide).

    The judge's CM and limits, so the search and the critic cannot disagree on what "better" is;
    the size of a model not yet measured is its parameters' (``judge.estimated_size_mb``).
    """
    params = metrics.get("params")
    size_mb = None if params is None else judge.estimated_size_mb(params)
    latency = metrics.get("latency_ms")
    if judge.limit_violations(spec, params, latency, size_mb):
        return -math.inf
    if "val_accuracy" not in metrics:
        return 0.0
    # A CM that needs a figure nothing predicts yet is unknown, like the rest at the start.
    cm = judge.measured_combined_metric(
        spec,
        train_accuracy=metrics.get("train_accuracy", metrics["val_accuracy"]),
        val_accuracy=metrics["val_accuracy"],
        fps=math.exp(metrics["log_fps"]) if "log_fps" in metrics else None,
        train_energy_kwh_pue=metrics.get("train_energy_kwh_pue"),
        val_energy_kwh_pue=metrics.get("val_energy_kwh_pue"),
    )
    return 0.0 if cm is None else cm
