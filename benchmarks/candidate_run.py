"""One candidate through the agent's four tools, as an iteration runs it (shared by benchmarks).

``check_shapes``, ``count_params``, ``train_model`` and ``measure_energy`` on the README's example
CNN, in whatever sandbox the runtime holds; every sandbox job is recorded with its wall time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from archsmith.memory.store import ToolCallRecord
from archsmith.tools.check_shapes import check_shapes
from archsmith.tools.count_params import count_params
from archsmith.tools.measure_energy import measure_energy
from archsmith.tools.runtime import ToolRuntime
from archsmith.tools.schemas import (
    CandidateInput,
    CheckShapesInput,
    MeasureEnergyInput,
    MeasureEnergyOutput,
    TrainModelInput,
    TrainModelOutput,
)
from archsmith.tools.train_model import train_model

MODEL = Path(__file__).resolve().parents[1] / "examples" / "models" / "small_cnn.py"


@dataclass
class CandidateRun:
    """What one candidate's iteration did, and how long it took in all."""

    jobs: list[ToolCallRecord]
    trained: TrainModelOutput
    measured: MeasureEnergyOutput
    total_s: float

    def job(self, tool: str) -> ToolCallRecord:
        return next(j for j in self.jobs if j.tool == tool)

    @property
    def epochs_s(self) -> float:
        """Training epochs, timed inside the training job."""
        return sum(h.seconds for h in self.trained.history)


def run_candidate(
    runtime: ToolRuntime, dataset: str, epochs: int, max_train: int | None, code: str | None = None
) -> CandidateRun:
    """Validate, train and measure one candidate; raises when any step fails."""
    jobs: list[ToolCallRecord] = []
    runtime.on_call = jobs.append
    data = runtime.prepare(dataset, max_train=max_train)
    runtime.training_view(data)  # prepared once per run, like the dataset itself
    runtime.expect_data(data)  # as the run's validate node does: its sandboxes start with the data
    base = {
        "code": code or MODEL.read_text(),
        "input_shape": data.input_shape,
        "num_classes": data.num_classes,
    }
    started = time.perf_counter()
    shapes = check_shapes(runtime, CheckShapesInput(**base))
    params = count_params(runtime, CandidateInput(**base))
    trained = train_model(
        runtime, TrainModelInput(**base, dataset=dataset, epochs=epochs, max_train=max_train)
    )
    if not (shapes.ok and params.ok and trained.ok and trained.model_dir is not None):
        raise RuntimeError(f"the candidate failed: {shapes.error or params.error or trained.error}")
    measured = measure_energy(
        runtime,
        MeasureEnergyInput(
            dataset=dataset,
            model_dir=trained.model_dir,
            input_shape=data.input_shape,
            num_classes=data.num_classes,
        ),
    )
    if not measured.ok:
        raise RuntimeError(f"measuring failed: {measured.error}")
    return CandidateRun(jobs, trained, measured, time.perf_counter() - started)
