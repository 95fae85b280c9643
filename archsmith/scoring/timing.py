"""How speed is timed: the one home for throughput and latency figures that hold under load.

The measuring process shares its machine with other work (other candidates, other runs, whatever
else the person runs), and a plain wall clock reads that work as the model's slowness: one
``python -c "while True: pass"`` beside a two-thread job on two cores cut a small CNN's
throughput by half or more, and its median batch-1 latency from about 0.5 ms to tens of ms
(``benchmarks/timing_under_load.py`` measures it). So:

- **Throughput** is charged by CPU time: each pass's items over the process's CPU seconds divided
  by the threads the work ran on, the median over passes. A thread waiting for a core that another
  program holds uses no CPU time, so the figure describes the work on ``threads`` cores of its
  own; with nothing else running it is the wall figure (each thread of a batched pass is busy, or
  spins at a barrier, for the whole pass). What load still costs is CPU time itself: OpenMP's
  threads spin at each barrier while a peer waits for a core, and that spinning is charged. The
  wall figure of the same passes is kept beside it (``wall_value``). A GPU does its work on no
  CPU's clock, so GPU work is timed by the wall clock (``Clock.WALL``).
- **Latency** is a low quantile of the calls' wall times (the tenth percentile by default): a
  batch-1 call is shorter than a scheduler's time slice, so most calls run untouched even when
  another program shares the cores, and a low quantile reads those. That holds for a call on one
  thread; time batch-1 calls on one thread (the caller sets it: ``torch.set_num_threads``, a
  session's intra-op threads). On two threads of two cores with one busy loop beside them, a
  0.65 ms call took 85-200 ms, nearly every call: the threads meet at every operator, one of them
  is off its core, and the other spins for it, so CPU time reads the same 40 ms per thread and no
  quantile helps. On one thread a call may be charged its CPU time (``Clock.CPU``), which other
  programs' turns on the core do not add to. What no clock in the process removes is the core
  running slower: on a shared two-vCPU VM the same call's CPU time moved between 0.6 and 1.1 ms
  with the vCPU it ran on and the host's other work, idle or loaded alike. archsmith reports
  the median (``quantile=0.5``) of one-thread CPU times, as its latency figures always said.

Charging CPU time leaves one cost of load in the figure: OpenMP's threads spin at each barrier
while a peer waits for a core, and the spinning is charged. libgomp spins 300,000 times by default
before it sleeps; every sandboxed job runs with ``SPIN_ENV`` (30,000), measured by
``benchmarks/timing_under_load.py`` on this project's 2-core machine with one busy loop beside the
job: loaded / idle FPS 0.78-0.86 with the default, 0.95-1.16 with 30,000 (0.84-0.91 with 100,000),
and the idle wall-clock FPS no lower.

Every figure is a ``Reading``: the figure, how many repeats it came from, their spread and
quantiles, the method and the thread count, so a figure never travels without what it describes.
The callables are plain functions (a torch module, an onnxruntime or OpenVINO session alike); a
``sync`` drains a device's queue before and after each timed call. Nothing else should run in the
process while it is timed: process CPU time counts every thread.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = ["SPIN_ENV", "Clock", "Clocks", "Reading", "latency", "throughput"]


class Clock(Enum):
    """What a throughput pass is charged: process CPU time over threads, or wall time."""

    CPU = "cpu"
    WALL = "wall"


@dataclass(frozen=True)
class Clocks:
    """The clocks read (injected in tests): a monotonic wall clock and the process's CPU time."""

    wall: Callable[[], float] = time.perf_counter
    cpu: Callable[[], float] = time.process_time


#: The environment every sandboxed job gets (both backends): libgomp's threads spin this many
#: times at a barrier before they sleep (its default: 300,000), so that spinning for a peer another
#: program holds off its core is not charged to the model as CPU time.
SPIN_ENV: dict[str, str] = {"GOMP_SPINCOUNT": "30000"}


@dataclass(frozen=True)
class Reading:
    """One timed figure with what it came from.

    ``value`` is the figure (items per second for a throughput, seconds for a latency); ``low``,
    ``median`` and ``high`` are the 10th, 50th and 90th percentiles of the per-repeat figures in
    the same unit, ``spread`` is ``(high - low) / median``; ``wall_value`` is the figure the wall
    clock gives for the same repeats (equal to ``value`` for a wall-clock method).
    """

    value: float
    repeats: int
    spread: float
    low: float
    median: float
    high: float
    method: str
    threads: int | None
    wall_value: float
    #: Seconds the repeats took by the wall clock (the budget they used).
    wall_seconds: float = field(default=0.0)

    def as_fields(self, prefix: str, *, unit: str = "", scale: float = 1.0) -> dict[str, Any]:
        """The reading as a result's fields: ``{prefix}{unit}`` is the figure (times ``scale``),
        beside it its repeats, spread, quantiles, method, threads and wall-clock figure."""
        suffix = f"_{unit}" if unit else ""
        return {
            f"{prefix}{suffix}": self.value * scale,
            f"{prefix}_p10{suffix}": self.low * scale,
            f"{prefix}_median{suffix}": self.median * scale,
            f"{prefix}_p90{suffix}": self.high * scale,
            f"{prefix}_wall{suffix}": self.wall_value * scale,
            f"{prefix}_repeats": self.repeats,
            f"{prefix}_spread": self.spread,
            f"{prefix}_method": self.method,
            f"{prefix}_threads": self.threads,
        }


def _quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (linear between order statistics)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _spread(low: float, median: float, high: float) -> float:
    return (high - low) / median if median > 0 else math.inf


def throughput(
    run_pass: Callable[[], object],
    items_per_pass: int,
    *,
    threads: int,
    clock: Clock = Clock.CPU,
    min_seconds: float = 1.0,
    min_passes: int = 3,
    max_passes: int = 1000,
    sync: Callable[[], None] | None = None,
    clocks: Clocks | None = None,
) -> Reading:
    """Items per second of ``run_pass``, which does ``items_per_pass`` items on ``threads`` threads.

    Runs passes until ``min_passes`` have run and ``min_seconds`` of wall time are spent, or
    ``max_passes`` have run. Each pass is charged its wall time, or (``Clock.CPU``) the process's
    CPU time over ``threads``; the figure is the median of the passes' rates, so a pass that
    another program slowed does not move it.
    """
    if items_per_pass <= 0 or threads <= 0:
        raise ValueError("items_per_pass and threads must be positive")
    if not 1 <= min_passes <= max_passes:
        raise ValueError("need 1 <= min_passes <= max_passes")
    c = clocks or Clocks()
    charged: list[float] = []
    walls: list[float] = []
    while len(charged) < min_passes or (sum(walls) < min_seconds and len(charged) < max_passes):
        if sync is not None:
            sync()
        cpu0, wall0 = c.cpu(), c.wall()
        run_pass()
        if sync is not None:
            sync()
        wall = c.wall() - wall0
        cpu = c.cpu() - cpu0
        walls.append(wall)
        charged.append(cpu / threads if clock is Clock.CPU else wall)
    rates = [items_per_pass / s if s > 0 else math.inf for s in charged]
    wall_rates = [items_per_pass / s if s > 0 else math.inf for s in walls]
    low, median, high = (_quantile(rates, q) for q in (0.1, 0.5, 0.9))
    what = "CPU time over threads" if clock is Clock.CPU else "wall time"
    return Reading(
        value=median,
        repeats=len(rates),
        spread=_spread(low, median, high),
        low=low,
        median=median,
        high=high,
        method=f"median of {len(rates)} passes by {what}, {threads} threads",
        threads=threads,
        wall_value=statistics.median(wall_rates),
        wall_seconds=sum(walls),
    )


def latency(
    call: Callable[[], object],
    *,
    threads: int | None = None,
    clock: Clock = Clock.WALL,
    quantile: float = 0.1,
    budget_s: float = 0.5,
    min_repeats: int = 20,
    max_repeats: int = 500,
    sync: Callable[[], None] | None = None,
    clocks: Clocks | None = None,
) -> Reading:
    """Seconds one ``call`` takes: the ``quantile`` of its times over repeated calls.

    Calls until ``min_repeats`` have run and ``budget_s`` of wall time is spent, or
    ``max_repeats`` have run. Each call is charged its wall time, or (``Clock.CPU``, for a call
    on one thread only) the process's CPU time, which a turn of another program on the core does
    not add to. The figure is a low quantile, not the median: a call slowed by another program is
    the outlier, not the call.
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError("quantile must be within [0, 1]")
    if not 1 <= min_repeats <= max_repeats:
        raise ValueError("need 1 <= min_repeats <= max_repeats")
    if clock is Clock.CPU and threads != 1:
        raise ValueError("a latency by CPU time needs calls on one thread (threads=1)")
    c = clocks or Clocks()
    charged: list[float] = []
    walls: list[float] = []
    while len(charged) < min_repeats or (sum(walls) < budget_s and len(charged) < max_repeats):
        if sync is not None:
            sync()
        cpu0, wall0 = c.cpu(), c.wall()
        call()
        if sync is not None:
            sync()
        wall = c.wall() - wall0
        cpu = c.cpu() - cpu0
        walls.append(wall)
        charged.append(cpu if clock is Clock.CPU else wall)
    low, median, high = (_quantile(charged, q) for q in (0.1, 0.5, 0.9))
    on = f", {threads} threads" if threads is not None else ""
    what = "CPU time" if clock is Clock.CPU else "wall time"
    return Reading(
        value=_quantile(charged, quantile),
        repeats=len(charged),
        spread=_spread(low, median, high),
        low=low,
        median=median,
        high=high,
        method=f"p{round(quantile * 100):g} of {len(charged)} calls by {what}{on}",
        threads=threads,
        wall_value=_quantile(walls, quantile),
        wall_seconds=sum(walls),
    )
