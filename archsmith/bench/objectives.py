"""What a benchmark search maximises, and the TaskSpec that makes the rulebook chase the same thing.

The targets come from what a user could know, never from where the optimum is, so the rulebook
gets no hint the baselines lack. A target only decides which rules fire (a search spends its whole
budget), so TV_Acc = 1 says "any gain in accuracy is wanted"; it is not the best accuracy of the
table, which would tell the search when it stands on the optimum (the rule would stop firing).

* accuracy: TV_Acc = 1; ``targets_met`` never holds.
* m-factor: TV_Acc = 1 and ``max_params`` = the median parameter count of the space, a size
  limit a user might set without knowing the trade-off's optimum. The accuracy rule (add capacity)
  and the parameter rule (remove it) then both fire on large, inaccurate networks, and Algorithm 2
  settles their conflicting instructions by weight, as in the agent.
* latency: TV_Acc = 1 and ``max_latency_ms`` = the limit (priority 1), which the user gives.

A table holds no training accuracy, so ``metrics`` reports the test accuracy as both training and
validation accuracy. The generalisation gap is then 0: the overfitting rule (gap > OT) cannot fire,
and the spec sets UT = 0 so the underfitting rule (gap < UT) cannot fire either; without that it
would fire on every candidate short of TT_Acc and add "reduce regularisation" advice the table
cannot support. Training accuracy's priority stays 0 (the paper's PT_Acc), so the training
accuracy rule is reported but weighs nothing. FPS and energy priorities are 0: a table measures
neither energy nor throughput (FPS = 1000 / latency is reported when the objective has a device).
"""

from __future__ import annotations

import logging
import math
import statistics

from archsmith import judge
from archsmith.bench.base import Arch, Objective, Record, TabularSpace
from archsmith.data.registry import REGISTRY
from archsmith.errors import InputError
from archsmith.metrics import m_factor
from archsmith.spec import TaskKind, TaskSpec
from archsmith.tools.schemas import EvaluationMetrics

__all__ = [
    "OBJECTIVE_NAMES",
    "AccuracyObjective",
    "LatencyObjective",
    "MFactorObjective",
    "make_objective",
]

logger = logging.getLogger(__name__)

#: What a spec says of a dataset the registry does not know; nothing on a table reads it.
_PLACEHOLDER_SHAPE = (3, 32, 32)
_PLACEHOLDER_CLASSES = 10

#: TV_Acc of every objective: any gain in accuracy is wanted (see the module docstring).
ANY_GAIN = 1.0

#: Names ``make_objective`` accepts.
OBJECTIVE_NAMES: tuple[str, ...] = ("accuracy", "m-factor", "latency")


def _check_dataset(space: TabularSpace, dataset: str) -> None:
    if dataset not in space.datasets:
        raise InputError(
            f"{space.name} has no dataset {dataset!r}; choose one of {', '.join(space.datasets)}"
        )


def _rows(space: TabularSpace, dataset: str) -> list[tuple[Arch, Record]]:
    return [(arch, space.record(arch, dataset)) for arch in space.all_archs()]


def _task_spec(
    dataset: str,
    accuracy_target: float,
    *,
    max_params: int | None = None,
    max_latency_ms: float | None = None,
) -> TaskSpec:
    """The spec every objective shares; only the targets differ (see the module docstring).

    A dataset the registry does not know (a user's own table) gets a placeholder input shape and
    class count: a table's spec only sets the rulebook's thresholds, which never read them.
    """
    info = REGISTRY.get(dataset)
    return TaskSpec(
        dataset=info.name if info else dataset,
        task=info.task if info else TaskKind.IMAGE_CLASSIFICATION,
        input_shape=info.input_shape if info else _PLACEHOLDER_SHAPE,
        num_classes=info.num_classes if info else _PLACEHOLDER_CLASSES,
        val_accuracy_threshold=accuracy_target,
        val_accuracy_priority=1.0,
        train_accuracy_threshold=accuracy_target,
        train_accuracy_priority=0.0,
        underfit_threshold=0.0,
        fps_priority=0.0,
        fps_threshold=1000.0 / max_latency_ms if max_latency_ms is not None else 14000.0,
        train_energy_priority=0.0,
        val_energy_priority=0.0,
        max_params=max_params,
        params_priority=1.0,
        max_latency_ms=max_latency_ms,
        latency_priority=1.0,
    )


def _feasible(limits: judge.Limits, record: Record, latency_ms: float | None = None) -> bool:
    """The judge's limit rule on a row: its parameters, and its latency where the objective
    reads one (an unmeasured figure breaks no limit)."""
    return judge.meets_limits(limits, params=record.params, latency_ms=latency_ms)


def _table_metrics(record: Record, device: str | None) -> EvaluationMetrics:
    """A row as the critic's metrics: test accuracy as both accuracies, no energy."""
    latency = record.latency_ms.get(device) if device is not None else None
    return EvaluationMetrics(
        train_accuracy=record.accuracy,
        val_accuracy=record.accuracy,
        train_energy_kwh_pue=0.0,
        val_energy_kwh_pue=0.0,
        fps=1000.0 / latency if latency else 0.0,
        params=record.params or 0,
        latency_ms=latency,
    )


class AccuracyObjective:
    """Maximise the table's test accuracy (GENIUS's and the LEMONADE paper's objective)."""

    def __init__(self, space: TabularSpace, dataset: str) -> None:
        _check_dataset(space, dataset)
        self.name = "accuracy"
        self.space = space
        self.dataset = dataset
        self.best_accuracy = max(record.accuracy for _, record in _rows(space, dataset))
        self.limits = judge.HardLimits()
        self._spec = _task_spec(dataset, ANY_GAIN)

    def score(self, record: Record) -> float:
        """The accuracy, a fraction."""
        return record.accuracy

    def feasible(self, record: Record) -> bool:
        """Always: accuracy has no constraint (no hard limits)."""
        return _feasible(self.limits, record)

    def spec(self) -> TaskSpec:
        """TV_Acc = 1: val_accuracy_low fires on every architecture, asking for more accuracy."""
        return self._spec

    def metrics(self, record: Record) -> EvaluationMetrics:
        """The row as the critic's metrics (see the module docstring)."""
        return _table_metrics(record, None)


class MFactorObjective:
    """Maximise the M-factor (M-factor paper, Eq. 6 for alpha = 1, Eq. 8 otherwise).

    M_alpha = (1 + alpha) A S' / (alpha A + S') with S' = P_min / P, and P_min, as the paper
    defines it, the parameters of the smallest model of the search space on this dataset:
    NAS-Bench-Macro's all-Identity network '00000000' (387,882 parameters, 45.4 % accuracy);
    NAS-Bench-201's cells without a convolution (73,306 on CIFAR-10, 79,156 on CIFAR-100, 80,456
    on ImageNet16-120, where the classifier is larger). The smallest model is often a poor one;
    it only fixes the scale of S', as in the paper.

    The spec's targets are any gain in accuracy and the space's median parameter count (see the
    module docstring): a user's kind of limit, not the optimum's size, which would tell the
    rulebook where the answer is. ``optimum`` is kept for reports and tests only.
    """

    def __init__(self, space: TabularSpace, dataset: str, alpha: float = 1.0) -> None:
        _check_dataset(space, dataset)
        if not (math.isfinite(alpha) and alpha >= 0.0):
            raise InputError(f"alpha must be a finite number >= 0, got {alpha!r}")
        rows = _rows(space, dataset)
        unknown = [arch for arch, record in rows if record.params is None]
        if unknown:
            raise InputError(
                f"the M-factor needs parameter counts; {space.name} has none for"
                f" {len(unknown)} architecture(s), e.g. {space.encode(unknown[0])}"
            )
        self.name = "m-factor" if alpha == 1.0 else f"m-factor(alpha={alpha:g})"
        self.space = space
        self.dataset = dataset
        self.alpha = float(alpha)
        self.min_params = min(record.params or 0 for _, record in rows)
        best_arch, best = max(rows, key=lambda row: self.score(row[1]))
        self.optimum: Arch = best_arch
        if best.params is None:  # excluded above; keeps the type checker and -O runs honest
            raise InputError(f"{space.name}: no parameter count for {space.encode(best_arch)}")
        median_params = statistics.median_low(record.params or 0 for _, record in rows)
        # The spec's max_params steers the rulebook; it is no hard limit of the objective.
        self.limits = judge.HardLimits()
        self._spec = _task_spec(dataset, ANY_GAIN, max_params=median_params)
        logger.debug(
            "%s on %s/%s: P_min %d, optimum %s (accuracy %.4f, %d params)",
            self.name,
            space.name,
            dataset,
            self.min_params,
            space.encode(best_arch),
            best.accuracy,
            best.params,
        )

    def score(self, record: Record) -> float:
        """M_alpha of the row; a ValueError if the row has no parameter count."""
        if record.params is None:
            raise ValueError("the M-factor needs the record's parameter count, which is unknown")
        return m_factor(record.accuracy, record.params, self.min_params, self.alpha)

    def feasible(self, record: Record) -> bool:
        """Always: the M-factor trades size against accuracy instead of constraining either."""
        return _feasible(self.limits, record)

    def spec(self) -> TaskSpec:
        """TV_Acc = 1, max_params = the median size (see the class docstring)."""
        return self._spec

    def metrics(self, record: Record) -> EvaluationMetrics:
        """The row as the critic's metrics (see the module docstring)."""
        return _table_metrics(record, None)


class LatencyObjective:
    """Maximise accuracy among architectures whose latency on ``device`` is within a limit.

    An architecture over the limit scores ``-inf`` and so ranks last. Without a limit the median
    latency of the space on the device is used (the lower median, a measured value), so about
    half the space is feasible and the name says the limit: ``latency:pi4<=25.68ms`` on
    NAS-Bench-201's CIFAR-10 table.
    """

    def __init__(
        self,
        space: TabularSpace,
        dataset: str,
        device: str,
        max_latency_ms: float | None = None,
    ) -> None:
        _check_dataset(space, dataset)
        if not space.devices:
            raise InputError(
                f"{space.name} has no measured latency; the latency objective needs a space"
                " with devices, e.g. nas-bench-201"
            )
        if device not in space.devices:
            raise InputError(
                f"{space.name} has no latency for device {device!r}; known devices:"
                f" {', '.join(space.devices)}"
            )
        rows = _rows(space, dataset)
        missing = [arch for arch, record in rows if device not in record.latency_ms]
        if missing:
            raise InputError(
                f"{space.name} has no {device} latency on {dataset} (e.g. for"
                f" {space.encode(missing[0])}); its latencies were measured for"
                f" {', '.join(d for d in space.datasets if self._timed(space, d, device))}"
            )
        latencies = [record.latency_ms[device] for _, record in rows]
        if max_latency_ms is None:
            limit = statistics.median_low(latencies)
        elif math.isfinite(max_latency_ms) and max_latency_ms > 0.0:
            limit = float(max_latency_ms)
        else:
            raise InputError(f"max_latency_ms must be a finite number > 0, got {max_latency_ms!r}")
        limits = judge.HardLimits(max_latency_ms=limit)
        feasible = [r for _, r in rows if _feasible(limits, r, r.latency_ms[device])]
        if not feasible:
            raise InputError(
                f"no architecture of {space.name} runs within {limit:g} ms on {device}; the"
                f" fastest takes {min(latencies):g} ms"
            )
        self.name = f"latency:{device}<={limit:.4g}ms"
        self.space = space
        self.dataset = dataset
        self.device = device
        self.max_latency_ms = limit
        self.limits = limits
        self.feasible_count = len(feasible)
        self.best_feasible_accuracy = max(record.accuracy for record in feasible)
        self._spec = _task_spec(dataset, ANY_GAIN, max_latency_ms=limit)

    @staticmethod
    def _timed(space: TabularSpace, dataset: str, device: str) -> bool:
        archs = space.all_archs()
        return bool(archs) and device in space.record(archs[0], dataset).latency_ms

    def _latency(self, record: Record) -> float:
        latency = record.latency_ms.get(self.device)
        if latency is None:
            raise ValueError(f"the record has no latency for {self.device}")
        return latency

    def score(self, record: Record) -> float:
        """The accuracy within the limit, ``-inf`` over it."""
        return record.accuracy if self.feasible(record) else -math.inf

    def feasible(self, record: Record) -> bool:
        """Whether the latency on the device is at most the limit."""
        return _feasible(self.limits, record, self._latency(record))

    def spec(self) -> TaskSpec:
        """TV_Acc = 1, max_latency_ms = the limit with priority 1."""
        return self._spec

    def metrics(self, record: Record) -> EvaluationMetrics:
        """The row as the critic's metrics, with the device's latency and FPS = 1000 / latency."""
        return _table_metrics(record, self.device)


def make_objective(
    name: str,
    space: TabularSpace,
    dataset: str,
    *,
    device: str | None = None,
    max_latency_ms: float | None = None,
    alpha: float = 1.0,
) -> Objective:
    """The objective called ``name``: "accuracy", "m-factor" or "latency".

    ``device`` and ``max_latency_ms`` belong to "latency" (the device is required there; the limit
    defaults to the median latency) and ``alpha`` to "m-factor"; giving them to another objective
    is an error rather than silently ignored.
    """
    key = name.strip().lower().replace("_", "-")
    if key == "mfactor":
        key = "m-factor"
    if key not in OBJECTIVE_NAMES:
        raise InputError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVE_NAMES)}")
    if key != "latency" and (device is not None or max_latency_ms is not None):
        raise InputError(
            f"device and max_latency_ms apply to the latency objective only, not to {key!r}"
        )
    if key != "m-factor" and alpha != 1.0:
        raise InputError(f"alpha applies to the m-factor objective only, not to {key!r}")
    if key == "accuracy":
        return AccuracyObjective(space, dataset)
    if key == "m-factor":
        return MFactorObjective(space, dataset, alpha=alpha)
    if device is None:
        known = ", ".join(space.devices) or "none in this space"
        raise InputError(f"the latency objective needs a device; known devices: {known}")
    return LatencyObjective(space, dataset, device, max_latency_ms)
