"""What the scoreboard's seals cost per candidate: the operator allowlist, the graph comparison,
the tripwire's digests and the timed passes' kept answers.

One candidate (the README's example CNN) is validated, trained and measured in warm sandboxes as an
iteration does it, and its trained program is kept. In this process, on that program:

* the loader (``load_program``) with the allowlist's checks, against the same loader with them
  turned off (``check_operator`` and ``check_call`` replaced by no-ops): a candidate's program is
  loaded five times (the build and training jobs' self-checks, ``inspect``, ``score``, ``speed``);
* ``graph_difference`` of the trained program against the validated one (once per training job);
* the tripwire (``measure._Tripwire``: a blake2b digest of every tensor the program holds and of
  the split it is fed, before and after the work): each measuring job of an iteration
  (``inspect``, ``score``, ``speed``, with the host's arguments) with it, against the same job
  with it turned off, interleaved, and the digests' own seconds;
* the speed job's kept answers: a timed pass over the validation split that keeps each batch's
  argmax, against one that does not (FPS of each, interleaved), and the check that every pass
  answered as the first.

The added seconds are printed against the iteration's wall time.

    .venv/bin/python benchmarks/seal_checks.py [--dataset digits|malaria] [--data-dir DIR]
        [--epochs N] [--max-train N] [--repeats 20] [--job-repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from candidate_run import run_candidate

import archsmith.scoring.measure as measure_module
import archsmith.scoring.program as program_module
from archsmith.agents.session import auto_epochs
from archsmith.config import Settings
from archsmith.sandbox.local import LocalSandbox
from archsmith.scoring.handover import graph_difference
from archsmith.scoring.program import load_program
from archsmith.tools.runtime import PreparedRef, ToolRuntime
from archsmith.tools.schemas import MEASURE_BATCH, CandidateInput

log = logging.getLogger("benchmark")
#: Times a candidate's program is loaded: two self-checks, inspect, score, speed.
LOADS_PER_CANDIDATE = 5
#: The measuring jobs of an iteration, each with the tripwire once.
MEASURING_JOBS = ("inspect", "score", "speed")


def median_s(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


class _Unchecked:
    """The tripwire turned off: no digest is taken, nothing is compared."""

    def __init__(self, module: Any, inputs: Any) -> None:
        pass

    def check(self) -> None:
        pass


class _Timed(measure_module._Tripwire):
    """The tripwire, adding the seconds its digests take to ``seconds``."""

    seconds = 0.0

    def __init__(self, module: Any, inputs: Any) -> None:
        started = time.perf_counter()
        super().__init__(module, inputs)
        _Timed.seconds += time.perf_counter() - started

    def check(self) -> None:
        started = time.perf_counter()
        super().check()
        _Timed.seconds += time.perf_counter() - started


def measuring_job(tool: str, data: PreparedRef, model_dir: Path) -> Callable[[], Any]:
    """One measuring job as the host asks for it, run in this process on ``model_dir``."""
    job = {"device": "cpu", "dataset_path": str(data.path)}
    args: dict[str, Any] = {
        "inspect": {
            "input_shape": data.input_shape,
            "num_classes": data.num_classes,
            "task": data.meta["task"],
        },
        "score": {"batch_size": MEASURE_BATCH, "splits": ["train", "val"]},
        "speed": {"batch_size": MEASURE_BATCH},
    }[tool]
    op = getattr(measure_module, f"op_{tool}")
    return lambda: op(args, job, model_dir)


def tripwire_cost(
    data: PreparedRef, model_dir: Path, repeats: int
) -> dict[str, tuple[float, float, float]]:
    """Per measuring job: median seconds with the tripwire, without it, and of its digests."""
    real = measure_module._Tripwire
    out: dict[str, tuple[float, float, float]] = {}
    try:
        for tool in MEASURING_JOBS:
            run = measuring_job(tool, data, model_dir)
            run()  # warm: the first load and the data's first read are not the tripwire's
            sealed, bare, digests = [], [], []
            for _ in range(repeats):
                measure_module._Tripwire = _Timed  # type: ignore[misc]
                _Timed.seconds = 0.0
                sealed.append(median_s(run, 1))
                digests.append(_Timed.seconds)
                measure_module._Tripwire = _Unchecked  # type: ignore[misc,assignment]
                bare.append(median_s(run, 1))
            out[tool] = tuple(statistics.median(v) for v in (sealed, bare, digests))  # type: ignore[assignment]
    finally:
        measure_module._Tripwire = real  # type: ignore[misc]
    return out


def kept_answers_cost(
    data: PreparedRef, model_dir: Path, repeats: int
) -> tuple[float, float, float]:
    """FPS of a timed pass that keeps its answers and of one that does not (medians of
    ``repeats`` interleaved rounds of one second each), and the seconds the passes' check takes."""
    import torch

    from archsmith.data.prepared_format import load_prepared
    from archsmith.scoring.common import timed
    from archsmith.training import DeviceData

    cpu = torch.device("cpu")
    prepared = load_prepared(data.path)
    dev = DeviceData(
        prepared.x_train, prepared.y_train, prepared.x_val, prepared.y_val, cpu,
        is_text=prepared.task == "text_classification", keep_train=False,
    )  # fmt: skip
    module, _ = load_program(model_dir, "cpu")
    n, batch = int(dev.x_val.shape[0]), MEASURE_BATCH
    answers: list[list[torch.Tensor]] = []

    def kept() -> None:
        got: list[torch.Tensor] = []
        with torch.inference_mode():
            for i in range(0, n, batch):
                got.append(module(dev.prepare(dev.x_val[i : i + batch])).argmax(dim=1))
        answers.append(got)

    def bare() -> None:
        with torch.inference_mode():
            for i in range(0, n, batch):
                module(dev.prepare(dev.x_val[i : i + batch]))

    def fps(one_pass: Callable[[], None]) -> float:
        passes, seconds = 0, 0.0
        while passes == 0 or seconds < 1.0:
            seconds += timed(one_pass, cpu)
            passes += 1
        return passes * n / seconds

    bare()
    kept()
    with_answers, without = [], []
    for _ in range(repeats):
        answers.clear()
        with_answers.append(fps(kept))
        without.append(fps(bare))
    check = median_s(lambda: measure_module._passes_agree(answers, cpu), repeats)
    return statistics.median(with_answers), statistics.median(without), check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--job-repeats", type=int, default=5, help="rounds of each measuring job (and FPS rounds)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), data_dir=args.data_dir, device="cpu")
        sandbox = LocalSandbox(warm=True)
        runtime = ToolRuntime(sandbox, settings)
        try:
            data = runtime.prepare(args.dataset, max_train=args.max_train)
            epochs = args.epochs or auto_epochs(int(data.meta["counts"]["train"]))
            run = run_candidate(runtime, args.dataset, epochs, args.max_train)
            trained_dir = run.trained.model_dir
            validated = runtime.validation_for(
                CandidateInput(
                    code=(Path(__file__).parents[1] / "examples/models/small_cnn.py").read_text(),
                    input_shape=data.input_shape,
                    num_classes=data.num_classes,
                )
            ).program
            if trained_dir is None or validated is None:
                log.error("the candidate left no program to measure on")
                return 1
            checked = median_s(lambda: load_program(trained_dir, "cpu"), args.repeats)
            real = program_module.check_operator, program_module.check_call
            program_module.check_operator = lambda *a: None  # type: ignore[assignment]
            program_module.check_call = lambda *a: None  # type: ignore[assignment]
            try:
                unchecked = median_s(lambda: load_program(trained_dir, "cpu"), args.repeats)
            finally:
                program_module.check_operator, program_module.check_call = real
            reference = validated.directory
            compared = median_s(lambda: graph_difference(trained_dir, reference), args.repeats)
            jobs = tripwire_cost(data, trained_dir, args.job_repeats)
            fps_kept, fps_bare, agree_s = kept_answers_cost(data, trained_dir, args.job_repeats)
        finally:
            sandbox.close()
    added = LOADS_PER_CANDIDATE * (checked - unchecked) + compared
    log.info("%s, %d epochs: iteration %.2f s (the example CNN, warm sandboxes)",
             args.dataset, epochs, run.total_s)  # fmt: skip
    log.info("load_program: %.2f ms with the allowlist, %.2f ms without (x%.3f)",
             1e3 * checked, 1e3 * unchecked, checked / unchecked)  # fmt: skip
    log.info("graph_difference: %.2f ms", 1e3 * compared)
    log.info("added per candidate: %.1f ms = %.3f %% of the iteration",
             1e3 * added, 100 * added / run.total_s)  # fmt: skip
    log.info("tripwire, per measuring job (median of %d, interleaved):", args.job_repeats)
    for tool, (sealed, bare, digests) in jobs.items():
        log.info("  %-7s %.1f ms with it, %.1f ms without (x%.3f); its digests %.1f ms",
                 tool, 1e3 * sealed, 1e3 * bare, sealed / bare, 1e3 * digests)  # fmt: skip
    hashing = sum(digests for _, _, digests in jobs.values())
    log.info("tripwire per candidate (%s): %.1f ms of digests = %.3f %% of the iteration",
             ", ".join(jobs), 1e3 * hashing, 100 * hashing / run.total_s)  # fmt: skip
    log.info("speed job, answers kept: %.0f FPS, not kept: %.0f FPS (x%.4f); the passes'"
             " check %.2f ms", fps_kept, fps_bare, fps_kept / fps_bare, 1e3 * agree_s)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
