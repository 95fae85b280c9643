"""Fixed cost per candidate: everything an iteration spends besides training steps and measuring.

One candidate (the README's example CNN) is validated, trained and measured as an iteration does
it, first with a new sandbox per job (cold, as before warm sandboxes), then in warm sandboxes, in
the same process and on the same prepared data. The fixed cost is the iteration's wall time minus
the training epochs (timed inside the training job) and minus the measuring work of the ``score``
and ``speed`` jobs (timed inside them, after their data and program are loaded): starting
sandboxes and Python, imports, loading data, building, exporting and checking programs, the
host's handover. Warm sandboxes start once per run: the first warm candidate pays for that, later
ones do not; each is printed, and the median of the later ones. Epochs default to what a run picks
for the dataset (``auto_epochs``).

    .venv/bin/python benchmarks/fixed_cost.py [--dataset digits|malaria] [--data-dir ../shared/data]
        [--epochs N] [--max-train N] [--repeats 5] [--later 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from candidate_run import MODEL, CandidateRun, run_candidate

from archsmith.agents.session import auto_epochs
from archsmith.config import Settings
from archsmith.sandbox.base import SandboxJob
from archsmith.sandbox.local import LocalSandbox
from archsmith.tools.runtime import ToolRuntime

log = logging.getLogger("benchmark")
REPO = Path(__file__).resolve().parents[1]


def fixed_s(run: CandidateRun) -> float:
    measuring = sum(
        float((run.job(t).result or {}).get("work_seconds") or 0.0) for t in ("score", "speed")
    )
    return run.total_s - run.epochs_s - measuring


def report(label: str, run: CandidateRun) -> float:
    fixed = fixed_s(run)
    jobs = ", ".join(f"{j.tool} {j.duration_s:.2f}" for j in run.jobs)
    log.info("%-34s iteration %7.2f s, epochs %7.2f s, fixed %6.2f s = %5.1f %%  [%s]",
             label, run.total_s, run.epochs_s, fixed, 100 * fixed / run.total_s, jobs)  # fmt: skip
    return fixed


def job_start(sandbox: LocalSandbox, repeats: int) -> list[float]:
    """Wall time of a ``build`` job of a one-layer model: starting, importing torch and the
    candidate, one forward pass and a tiny export; little else."""
    code = (
        "import torch.nn as nn\n"
        "def build_model(s, n):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, n))\n"
    )
    args = {"input_shape": [1, 8, 8], "num_classes": 10}
    times = []
    for _ in range(repeats):
        job = SandboxJob(tool="build", code=code, args=args)
        t = time.perf_counter()
        result = sandbox.run(job)
        times.append(time.perf_counter() - t)
        if not result.ok:
            raise RuntimeError(f"the build job failed: {result.error}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--later", type=int, default=3, help="later warm candidates measured (median printed)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    data_dir = args.data_dir if args.data_dir.is_dir() else None
    cold_box = LocalSandbox()
    warm_box = LocalSandbox(bwrap=cold_box.bwrap, warm=True)
    try:
        with tempfile.TemporaryDirectory() as home:
            settings = Settings(home=Path(home), data_dir=data_dir, device="cpu")
            cold = ToolRuntime(cold_box, settings)
            data = cold.prepare(args.dataset, max_train=args.max_train)
            train_samples = int(data.meta["counts"]["train"])
            epochs = args.epochs or auto_epochs(train_samples)
            log.info("%s: %d training samples, %d epochs per candidate", args.dataset,
                     train_samples, epochs)  # fmt: skip
            runs = {
                "cold (a new sandbox per job)": run_candidate(
                    cold, args.dataset, epochs, args.max_train
                )
            }
            warm = ToolRuntime(warm_box, settings)
            runs["warm, first candidate of a run"] = run_candidate(
                warm, args.dataset, epochs, args.max_train
            )
            # Other candidates' code (a comment apart), so their validation jobs run too.
            for n in range(1, args.later + 1):
                later = MODEL.read_text() + f"\n# candidate {n + 1}\n"
                runs[f"warm, later candidate {n}"] = run_candidate(
                    warm, args.dataset, epochs, args.max_train, later
                )
        fixed = {label: report(label, run) for label, run in runs.items()}
        later_runs = [run for label, run in runs.items() if label.startswith("warm, later")]
        after = statistics.median(fixed_s(run) for run in later_runs)
        share = statistics.median(fixed_s(run) / run.total_s for run in later_runs)
        before = fixed["cold (a new sandbox per job)"]
        log.info("fixed cost per candidate: %.2f s cold; warm, later candidates (median of %d):"
                 " %.2f s = %.1f %% of an iteration; %.1fx less than cold", before,
                 len(later_runs), after, 100 * share, before / after)  # fmt: skip
        cold_start = job_start(cold_box, args.repeats)
        warm_start = job_start(warm_box, args.repeats)
        log.info("a build job of a one-layer model: cold median %.3f s, warm median %.3f s"
                 " (%d repeats)",
                 statistics.median(cold_start), statistics.median(warm_start),
                 args.repeats)  # fmt: skip
    except RuntimeError:
        log.exception("no iteration to measure")
        return 1
    finally:
        warm_box.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
