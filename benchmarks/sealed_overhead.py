"""What the sealed scoreboard costs per candidate: the jobs and exports that exist only for it.

One candidate is validated, trained and measured the way the agent does it (``check_shapes``,
``count_params``, ``train_model``, ``measure_energy`` in the local sandbox), and every sandbox
job's wall time is recorded. The two-process split adds: the export and its self-check inside the
build job and inside the training job, the ``inspect`` job (shapes, parameters, FLOPs of the
program) and the ``score`` job (accuracies of the program). Training itself (the candidate's
epochs) is timed inside the training job, so the printed share is that of the whole iteration.

    .venv/bin/python benchmarks/sealed_overhead.py [--dataset digits|malaria] [--epochs N]
        [--data-dir ../shared/data] [--max-train N]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from candidate_run import run_candidate

from archsmith.config import Settings
from archsmith.sandbox.local import LocalSandbox
from archsmith.tools.runtime import ToolRuntime

log = logging.getLogger("benchmark")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--max-train", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), data_dir=args.data_dir, device="cpu")
        try:
            run = run_candidate(
                ToolRuntime(LocalSandbox(), settings), args.dataset, args.epochs, args.max_train
            )
        except RuntimeError:
            log.exception("no iteration to measure")
            return 1
    jobs, trained, measured, total = run.jobs, run.trained, run.measured, run.total_s
    by_tool = {j.tool: j for j in jobs}
    export_s = sum(
        float(((by_tool[t].result or {}).get("export") or {}).get("seconds") or 0.0)
        for t in ("build", "train")
    )
    epochs_s = sum(h.seconds for h in trained.history)
    split_s = export_s + by_tool["inspect"].duration_s + by_tool["score"].duration_s
    log.info("%s, %d epochs, %s training samples", args.dataset, args.epochs, trained.train_samples)
    for job in jobs:
        log.info("  %-8s %7.2f s  (%s process)", job.tool, job.duration_s, job.args["process"])
    log.info("  export and its self-check, in build and train: %.2f s", export_s)
    log.info("  training epochs (inside the train job):         %.2f s", epochs_s)
    log.info("iteration %.2f s; the split adds %.2f s (%.1f %% of the iteration): exports %.2f s,"
             " inspect %.2f s, score %.2f s", total, split_s, 100 * split_s / total, export_s,
             by_tool["inspect"].duration_s, by_tool["score"].duration_s)  # fmt: skip
    log.info("val accuracy %.4f, %.0f FPS", trained.val_accuracy or 0.0, measured.fps or 0.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
