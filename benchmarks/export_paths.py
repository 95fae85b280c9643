"""The export a build job runs, by torch's one-trace path against its public two-step path.

As a warm sandbox runs it: one process imports torch and runs the warm-up (``scoring.warmup``),
then forks a child per export, so every export is a later one in a fresh copy of that process.
Children alternate between the one-trace path (``_export(pre_dispatch=False)``, what
``export_program`` uses) and the public path (``export`` then ``run_decompositions({})``, what it
falls back to); each exports the README's example CNN and writes the program. Prints the median
of each and their ratio.

    .venv/bin/python benchmarks/export_paths.py [--shape 3 64 64] [--repeats 6]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from archsmith.scoring import program
from archsmith.scoring.candidate import build
from archsmith.scoring.warmup import warm_up

log = logging.getLogger("benchmark")
MODEL = Path(__file__).resolve().parents[1] / "examples" / "models" / "small_cnn.py"


def _child_export(shape: list[int], one_trace: bool, out: int) -> None:
    """In a forked child: export once, write the seconds to ``out``, exit."""
    code = 1
    try:
        if not one_trace:
            program._one_trace_export = lambda: None  # type: ignore[assignment]
        model = build(str(MODEL), shape, 10).eval()
        example = torch.randn(2, *shape)
        with tempfile.TemporaryDirectory() as out_dir:
            started = time.perf_counter()
            program.export_program(model, example, Path(out_dir))
            os.write(out, f"{time.perf_counter() - started}".encode())
        code = 0
    finally:
        os._exit(code)


def timed_export(shape: list[int], one_trace: bool) -> float:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        _child_export(shape, one_trace, write)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    seconds = os.read(read, 64)
    os.close(read)
    if os.waitstatus_to_exitcode(status) != 0 or not seconds:
        raise RuntimeError("the export failed in the child (see its traceback above)")
    return float(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[3, 64, 64])
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if program._one_trace_export() is None:
        log.error("this torch (%s) has no one-trace export path to compare", torch.__version__)
        return 1
    torch.set_num_threads(1)  # as a warm sandbox's server does before forking
    with tempfile.TemporaryDirectory() as scratch:
        warm_up(Path(scratch))
    times: dict[str, list[float]] = {"one trace": [], "public": []}
    try:
        for _ in range(args.repeats):
            times["one trace"].append(timed_export(args.shape, True))
            times["public"].append(timed_export(args.shape, False))
    except RuntimeError:
        log.exception("no export to measure")
        return 1
    medians = {path: statistics.median(t) for path, t in times.items()}
    for path, t in times.items():
        log.info("%-9s median %.3f s  (%s)", path, medians[path], ", ".join(f"{x:.2f}" for x in t))
    log.info("the one-trace export takes %.2fx the time of the public path's (shape %s, %d each)",
             medians["one trace"] / medians["public"], args.shape, args.repeats)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
