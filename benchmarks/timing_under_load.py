"""Speed figures idle and with another program's CPU-bound process beside them: old and new timing.

The same model (the README's example CNN, ``examples/models/small_cnn.py``, on random 3x32x32
images as malaria's, batches of 256, torch on the threads a sandbox job gets) is timed with
nothing of ours beside it, then with one ``python -c "while True: pass"`` running, in rounds. Each
condition is timed twice in this process:

- **old**: what ``op_speed`` did before ``scoring.timing``: passes over the images until a second
  is spent, images over total wall seconds; batch-1 latency the median of repeated calls.
- **new**: ``scoring.timing`` as ``op_speed`` uses it: each pass charged its CPU time over the
  threads, the median pass; batch-1 latency on one thread, the median of the calls' CPU times
  (their wall-time median is printed beside it).

For each round it prints every reading with its repeats and spread, and loaded / idle for both
methods (1.00 is a figure that holds). The machine is shared: each condition also prints how many
cores other programs kept busy meanwhile (``others``, from ``/proc/stat``, less this process and
the busy loop), so an "idle" reading taken beside other work says so.

    .venv/bin/python benchmarks/timing_under_load.py [--rounds 3] [--images 2560] [--side 32]
        [--threads N] [--min-seconds 1.0]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from archsmith.scoring.common import job_threads
from archsmith.scoring.timing import SPIN_ENV, Clock, Reading, latency, throughput

log = logging.getLogger("benchmark")
REPO = Path(__file__).resolve().parents[1]
BATCH = 256


def small_cnn(side: int) -> nn.Module:
    spec = importlib.util.spec_from_file_location(
        "small_cnn", REPO / "examples/models/small_cnn.py"
    )
    if spec is None or spec.loader is None:
        raise RuntimeError("examples/models/small_cnn.py cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model: nn.Module = module.build_model((3, side, side), 2)
    return model.eval()


class CpuMeter:
    """Cores kept busy by everything (``/proc/stat``) and by this process, over an interval."""

    def __init__(self, hog: subprocess.Popen[bytes] | None) -> None:
        self.hog = hog
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.start = self._read()

    def _read(self) -> tuple[float, float, float, float]:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
        hog = 0.0
        if self.hog is not None:
            with open(f"/proc/{self.hog.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            hog = (int(fields[11]) + int(fields[12])) / self.ticks
        busy = (sum(v) - v[3] - v[4]) / self.ticks
        return time.perf_counter(), busy, time.process_time(), hog

    def others(self) -> float:
        """Cores busy with neither this process nor the busy loop since the meter started."""
        now = self._read()
        wall = now[0] - self.start[0]
        busy, ours, hog = (now[i] - self.start[i] for i in (1, 2, 3))
        return max(0.0, (busy - ours - hog) / wall)


@dataclasses.dataclass
class Figures:
    fps: float
    latency_ms: float
    what: str
    others: float


def old_way(
    one_pass: Callable[[], None], call: Callable[[], object], n: int
) -> tuple[float, float, str]:
    """``op_speed`` before ``scoring.timing``: total images over total wall seconds, and the median
    batch-1 latency (at least 10 calls, half a second)."""
    passes, seconds = 0, 0.0
    while passes == 0 or (seconds < 1.0 and passes < 1000):
        t = time.perf_counter()
        one_pass()
        seconds += time.perf_counter() - t
        passes += 1
    lat: list[float] = []
    spent = 0.0
    while len(lat) < 10 or (spent < 0.5 and len(lat) < 500):
        t = time.perf_counter()
        call()
        dt = time.perf_counter() - t
        lat.append(dt)
        spent += dt
    fps = passes * n / seconds
    return fps, 1e3 * statistics.median(lat), f"{passes} passes, {len(lat)} calls"


def describe(fps: Reading, lat: Reading) -> str:
    return (
        f"{fps.repeats} passes (spread {fps.spread:.2f}, wall {fps.wall_value:7.1f}),"
        f" {lat.repeats} calls on {lat.threads} thread (spread {lat.spread:.2f},"
        f" p10 {1e3 * lat.low:.2f} ms, wall median {1e3 * lat.wall_value:.2f} ms)"
    )


def measure(
    model: nn.Module, x: torch.Tensor, threads: int, min_seconds: float, hog: bool
) -> tuple[Figures, Figures]:
    n = int(x.shape[0])
    x1 = x[:1]

    def one_pass() -> None:
        for i in range(0, n, BATCH):
            model(x[i : i + BATCH]).argmax(dim=1)

    def call() -> object:
        return model(x1)

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if hog else None
    try:
        if busy is not None:
            time.sleep(0.5)  # let it start
        with torch.inference_mode():
            for _ in range(3):
                model(x[:BATCH])
                call()
            meter = CpuMeter(busy)
            fps, lat_ms, what = old_way(one_pass, call, n)
            old = Figures(fps, lat_ms, what, meter.others())
            meter = CpuMeter(busy)
            tp = throughput(one_pass, n, threads=threads, min_seconds=min_seconds)
            torch.set_num_threads(1)  # as op_speed times batch-1 latency
            try:
                for _ in range(5):
                    call()
                lat = latency(
                    call, threads=1, clock=Clock.CPU, quantile=0.5, budget_s=0.5, min_repeats=20
                )
            finally:
                torch.set_num_threads(threads)
            new = Figures(tp.value, 1e3 * lat.value, describe(tp, lat), meter.others())
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    return old, new


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=2560)
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="default: job_threads()")
    parser.add_argument("--min-seconds", type=float, default=1.0)
    args = parser.parse_args()
    if any(os.environ.get(k) != v for k, v in SPIN_ENV.items()):
        # libgomp reads its spin count when it starts: run again with what a sandboxed job gets.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **SPIN_ENV})
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)

    threads = args.threads or job_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = small_cnn(args.side)
    x = torch.randn(args.images, 3, args.side, args.side)
    log.info(
        "small_cnn, %d images of 3x%dx%d in batches of %d, %d torch threads, %d cores; load %s",
        args.images, args.side, args.side, BATCH, threads, os.cpu_count() or 0,
        " ".join(f"{v:.2f}" for v in os.getloadavg()),
    )  # fmt: skip
    ratios: dict[str, list[float]] = {"old fps": [], "new fps": [], "old lat": [], "new lat": []}
    for r in range(1, args.rounds + 1):
        idle_old, idle_new = measure(model, x, threads, args.min_seconds, hog=False)
        load_old, load_new = measure(model, x, threads, args.min_seconds, hog=True)
        for cond, old, new in (("idle", idle_old, idle_new), ("loaded", load_old, load_new)):
            log.info("round %d %-6s old %7.1f FPS %7.2f ms  [%s; others %.2f cores]",
                     r, cond, old.fps, old.latency_ms, old.what, old.others)  # fmt: skip
            log.info("round %d %-6s new %7.1f FPS %7.2f ms  [%s; others %.2f cores]",
                     r, cond, new.fps, new.latency_ms, new.what, new.others)  # fmt: skip
        ratios["old fps"].append(load_old.fps / idle_old.fps)
        ratios["new fps"].append(load_new.fps / idle_new.fps)
        ratios["old lat"].append(load_old.latency_ms / idle_old.latency_ms)
        ratios["new lat"].append(load_new.latency_ms / idle_new.latency_ms)
        log.info("round %d loaded/idle: FPS old %.2f new %.2f; latency old %.2f new %.2f",
                 r, ratios["old fps"][-1], ratios["new fps"][-1],
                 ratios["old lat"][-1], ratios["new lat"][-1])  # fmt: skip
    log.info("loaded/idle over %d rounds (1.00 holds; the requirement is 0.90-1.10 for FPS):",
             args.rounds)  # fmt: skip
    for name, values in ratios.items():
        log.info("  %-8s %s", name, "  ".join(f"{v:.2f}" for v in values))
    log.info("load after: %s", " ".join(f"{v:.2f}" for v in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
