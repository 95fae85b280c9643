"""``scoring.timing``: the figures, repeats and spread of throughput and latency readings.

A scripted clock stands in for the machine: each call advances wall time and CPU time by what the
script says, so a pass that another program slowed (wall time without CPU time) is exact.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from archsmith.scoring.timing import Clock, Clocks, Reading, latency, throughput


class Script:
    """Fake clocks: each ``step`` advances wall and CPU seconds by the next scripted pair."""

    def __init__(self, steps: list[tuple[float, float]]) -> None:
        self.wall_s = 0.0
        self.cpu_s = 0.0
        self.steps: Iterator[tuple[float, float]] = iter(steps)
        self.calls = 0

    def step(self) -> None:
        wall, cpu = next(self.steps)
        self.wall_s += wall
        self.cpu_s += cpu
        self.calls += 1

    def clocks(self) -> Clocks:
        return Clocks(wall=lambda: self.wall_s, cpu=lambda: self.cpu_s)


def test_cpu_clock_charges_a_pass_its_cpu_time_over_threads_not_the_wait() -> None:
    """Two threads busy for 0.5 s each: 1 s of CPU time, 0.5 s charged, 200 items/s. A pass that
    waited 1.5 s more for a core held by another program costs no more CPU time."""
    script = Script([(0.5, 1.0), (2.0, 1.0), (0.5, 1.0)])
    found = throughput(
        script.step, 100, threads=2, min_seconds=0.0, min_passes=3, clocks=script.clocks()
    )
    assert found.value == pytest.approx(200.0)
    assert found.repeats == script.calls == 3
    assert found.spread == pytest.approx(0.0)
    assert found.threads == 2
    assert found.wall_value == pytest.approx(200.0)  # the median pass's wall rate
    assert found.wall_seconds == pytest.approx(3.0)
    assert found.method == "median of 3 passes by CPU time over threads, 2 threads"


def test_wall_clock_takes_the_median_pass_so_one_slow_pass_does_not_move_it() -> None:
    script = Script([(1.0, 0.0), (1.0, 0.0), (5.0, 0.0), (1.0, 0.0), (1.0, 0.0)])
    found = throughput(
        script.step,
        50,
        threads=1,
        clock=Clock.WALL,
        min_seconds=0.0,
        min_passes=5,
        clocks=script.clocks(),
    )
    assert found.value == pytest.approx(50.0)
    assert found.median == pytest.approx(50.0)
    assert found.low < found.median  # the slow pass sits in the low tail
    assert found.low == pytest.approx(10.0 + (50.0 - 10.0) * 0.4)  # p10 of [10, 50, 50, 50, 50]
    assert found.high == pytest.approx(50.0)
    assert found.spread == pytest.approx((found.high - found.low) / 50.0)
    assert "wall time" in found.method


def test_throughput_runs_until_min_passes_and_min_seconds_but_not_past_max_passes() -> None:
    script = Script([(0.125, 0.125)] * 100)
    found = throughput(
        script.step, 10, threads=1, min_seconds=1.0, min_passes=3, clocks=script.clocks()
    )
    assert found.repeats == script.calls == 8  # eight passes of 1/8 s make the second
    capped = Script([(0.1, 0.1)] * 100)
    found = throughput(
        capped.step,
        10,
        threads=1,
        min_seconds=5.0,
        min_passes=2,
        max_passes=4,
        clocks=capped.clocks(),
    )
    assert found.repeats == capped.calls == 4
    slow = Script([(2.0, 2.0)] * 10)
    found = throughput(
        slow.step, 10, threads=1, min_seconds=1.0, min_passes=3, clocks=slow.clocks()
    )
    assert found.repeats == slow.calls == 3  # min_passes even when the seconds are spent


def test_sync_runs_before_and_after_each_timed_call() -> None:
    events: list[str] = []
    throughput(
        lambda: events.append("pass"),
        1,
        threads=1,
        min_seconds=0.0,
        min_passes=2,
        sync=lambda: events.append("sync"),
    )
    assert events == ["sync", "pass", "sync"] * 2
    events.clear()
    latency(
        lambda: events.append("call"),
        budget_s=0.0,
        min_repeats=2,
        max_repeats=2,
        sync=lambda: events.append("sync"),
    )
    assert events == ["sync", "call", "sync"] * 2


def test_latency_is_a_low_quantile_so_preempted_calls_do_not_move_it() -> None:
    """Eighteen calls of 1 ms and two preempted for 80 ms: the median would be 1 ms here too, but
    the p10 holds even when nearly half the calls are preempted."""
    times = [0.001] * 11 + [0.080] * 9
    script = Script([(t, t) for t in times])
    found = latency(script.step, threads=2, budget_s=0.0, min_repeats=20, clocks=script.clocks())
    assert found.value == pytest.approx(0.001)
    assert found.low == pytest.approx(0.001)
    assert found.median == pytest.approx(0.001)
    assert found.high == pytest.approx(0.080)
    assert found.repeats == script.calls == 20
    assert found.spread == pytest.approx((0.080 - 0.001) / 0.001)
    assert found.method == "p10 of 20 calls by wall time, 2 threads"
    assert found.wall_value == found.value


def test_latency_by_cpu_time_charges_a_call_on_one_thread_only_its_own_work() -> None:
    """Calls of 1 ms of work, all but one preempted for 80 ms more: CPU time reads the work."""
    steps = [(0.081, 0.001)] * 19 + [(0.001, 0.001)]
    script = Script(steps)
    found = latency(
        script.step,
        threads=1,
        clock=Clock.CPU,
        budget_s=0.0,
        min_repeats=20,
        clocks=script.clocks(),
    )
    assert found.value == pytest.approx(0.001)
    assert found.median == found.high == pytest.approx(0.001)
    assert found.spread == pytest.approx(0.0)
    assert found.wall_value == pytest.approx(0.081)  # the wall clock's p10: preempted calls
    assert found.wall_seconds == pytest.approx(19 * 0.081 + 0.001)
    assert found.method == "p10 of 20 calls by CPU time, 1 threads"
    with pytest.raises(ValueError, match="one thread"):
        latency(lambda: None, threads=2, clock=Clock.CPU)


def test_latency_stops_at_its_budget_or_max_repeats() -> None:
    script = Script([(0.125, 0.125)] * 1000)
    found = latency(
        script.step, budget_s=2.0, min_repeats=10, max_repeats=500, clocks=script.clocks()
    )
    assert found.repeats == 16
    capped = Script([(0.01, 0.01)] * 1000)
    found = latency(
        capped.step, budget_s=100.0, min_repeats=10, max_repeats=30, clocks=capped.clocks()
    )
    assert found.repeats == 30
    assert found.threads is None
    assert found.method == "p10 of 30 calls by wall time"


def test_a_reading_as_fields_names_its_figure_unit_repeats_and_method() -> None:
    reading = Reading(
        value=0.002,
        repeats=40,
        spread=0.5,
        low=0.002,
        median=0.003,
        high=0.0035,
        method="p10 of 40 calls by wall time, 2 threads",
        threads=2,
        wall_value=0.002,
    )
    assert reading.as_fields("latency", unit="ms", scale=1e3) == {
        "latency_ms": pytest.approx(2.0),
        "latency_p10_ms": pytest.approx(2.0),
        "latency_median_ms": pytest.approx(3.0),
        "latency_p90_ms": pytest.approx(3.5),
        "latency_wall_ms": pytest.approx(2.0),
        "latency_repeats": 40,
        "latency_spread": 0.5,
        "latency_method": "p10 of 40 calls by wall time, 2 threads",
        "latency_threads": 2,
    }
    assert set(reading.as_fields("fps")) >= {"fps", "fps_repeats", "fps_spread", "fps_method"}


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        throughput(lambda: None, 0, threads=1)
    with pytest.raises(ValueError, match="min_passes"):
        throughput(lambda: None, 1, threads=1, min_passes=5, max_passes=2)
    with pytest.raises(ValueError, match="quantile"):
        latency(lambda: None, quantile=1.5)


def test_real_clocks_time_a_sleep_by_wall_and_charge_it_no_cpu_time() -> None:
    """A sleeping pass waits, as one waiting for a core does: the wall clock sees 20 ms, the CPU
    clock next to nothing, so its CPU-time rate is far above its wall rate."""
    found = throughput(lambda: time.sleep(0.02), 10, threads=1, min_seconds=0.0, min_passes=3)
    assert found.repeats == 3
    assert found.wall_value == pytest.approx(10 / 0.02, rel=0.5)
    assert found.wall_value <= 10 / 0.02
    assert found.value > 5 * found.wall_value
    walled = latency(lambda: time.sleep(0.005), budget_s=0.0, min_repeats=5)
    assert 0.005 <= walled.value < 0.05
