"""What the scoreboard's seals cost per candidate: the operator allowlist and the graph comparison.

One candidate (the README's example CNN) is validated, trained and measured in warm sandboxes as an
iteration does it, and its trained program is kept. In this process, on that program:

* the loader (``load_program``) with the allowlist's checks, against the same loader with them
  turned off (``check_operator`` and ``check_call`` replaced by no-ops): a candidate's program is
  loaded five times (the build and training jobs' self-checks, ``inspect``, ``score``, ``speed``);
* ``graph_difference`` of the trained program against the validated one (once per training job).

The added seconds are printed against the iteration's wall time.

    .venv/bin/python benchmarks/seal_checks.py [--dataset digits|malaria] [--data-dir DIR]
        [--epochs N] [--max-train N] [--repeats 20]
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

import archsmith.scoring.program as program_module
from archsmith.agents.session import auto_epochs
from archsmith.config import Settings
from archsmith.sandbox.local import LocalSandbox
from archsmith.scoring.handover import graph_difference
from archsmith.scoring.program import load_program
from archsmith.tools.runtime import ToolRuntime
from archsmith.tools.schemas import CandidateInput

log = logging.getLogger("benchmark")
#: Times a candidate's program is loaded: two self-checks, inspect, score, speed.
LOADS_PER_CANDIDATE = 5


def median_s(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=20)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
