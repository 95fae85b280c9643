"""Shared fixtures (paths of the repository, a minimal valid spec) and the suite's time budget.

The budget: a test whose setup and call take more than ``SLOW_LIMIT_S`` fails unless it is marked
``slow``, and a test marked ``slow`` must say in its docstring why it needs the time. So the suite
cannot grow slower without somebody deciding it should. A shared fixture (module or session
scope, such as the finished run several test modules read) is set up once for many tests, so its
time is not charged to the test that happens to come first: it has its own budget,
``SHARED_LIMIT_FACTOR`` times the limit, and one past that fails the test that set it up.
``ARCHSMITH_TEST_SLOW_LIMIT_S`` changes the limit (a slower machine, a profiler); 0 turns the
check off.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, ClassVar

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

if "PYTEST_XDIST_WORKER" in os.environ:
    # pytest-xdist starts its workers with COLUMNS=80 and LINES set. The CLI's consoles are made
    # when archsmith.cli_common is first imported, and rich fixes a console's width to COLUMNS
    # if it is set then: tests that set COLUMNS for a wide table would get 80 columns or not
    # depending on which test imported the CLI first. Without them, as in a serial run, the
    # consoles read the environment each time they print.
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)

#: Seconds of setup plus call that a test not marked ``slow`` may take.
SLOW_LIMIT_S = 60.0

#: A shared fixture may take this many times the limit to set up: it serves several tests.
SHARED_LIMIT_FACTOR = 2.0


def slow_limit_s() -> float:
    """The limit in force: ``ARCHSMITH_TEST_SLOW_LIMIT_S`` when set, else ``SLOW_LIMIT_S``."""
    raw = os.environ.get("ARCHSMITH_TEST_SLOW_LIMIT_S", "").strip()
    if not raw:
        return SLOW_LIMIT_S
    try:
        value = float(raw)
    except ValueError as e:
        raise pytest.UsageError(
            f"ARCHSMITH_TEST_SLOW_LIMIT_S={raw!r} is not a number of seconds"
            " (0 turns the check off)"
        ) from e
    if value < 0:
        raise pytest.UsageError(f"ARCHSMITH_TEST_SLOW_LIMIT_S={raw!r} must not be negative")
    return value


class _SharedSetup:
    """Seconds spent this test's setup on outermost shared (non-function) fixtures, by name."""

    depth = 0
    seconds: ClassVar[dict[str, float]] = {}


class _SharedFixtureTimer:
    """Times the shared fixtures a test's setup builds (the outermost: nested ones are in it).

    A plugin, not a conftest hook: pytest calls ``pytest_fixture_setup`` through the hooks of the
    fixture's node, and a session fixture's node is the session, which sees only the root's
    conftest, not this one."""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef[Any]) -> Generator[None]:
        if fixturedef.scope == "function":
            yield
            return
        _SharedSetup.depth += 1
        start = time.perf_counter()
        try:
            yield
        finally:
            _SharedSetup.depth -= 1
            if _SharedSetup.depth == 0:
                name = fixturedef.argname
                _SharedSetup.seconds[name] = (
                    _SharedSetup.seconds.get(name, 0.0) + time.perf_counter() - start
                )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_SharedFixtureTimer(), "archsmith-shared-fixture-timer")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked slow must say why: in its docstring, or in the docstring of the class or
    module whose ``pytestmark`` marks it. It fails otherwise (a per-test failure, so that the
    message shows under pytest-xdist too)."""
    _SharedSetup.depth = 0
    _SharedSetup.seconds = {}
    for node, _ in item.iter_markers_with_node("slow"):
        owner = getattr(node, "function", None) or getattr(node, "obj", None)
        if not (getattr(owner, "__doc__", None) or "").strip():
            pytest.fail(
                f"{node.nodeid.split('[', 1)[0]} is marked slow but does not say why: a test"
                " marked slow must say in its docstring (or its module's or class's, for a mark"
                " there) why it needs the time",
                pytrace=False,
            )
        return


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[Any]:
    """Fail a passing test whose setup and call took longer than the limit, unless marked slow."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when == "setup":
        shared = dict(_SharedSetup.seconds)
        item.stash[_SETUP_S] = max(0.0, report.duration - sum(shared.values()))
        item.stash[_SHARED_S] = shared
        return
    if report.when != "call" or not report.passed:
        return
    limit = slow_limit_s()
    if not limit:
        return
    over_shared = {
        name: s for name, s in item.stash.get(_SHARED_S, {}).items()
        if s > limit * SHARED_LIMIT_FACTOR
    }  # fmt: skip
    if over_shared:
        name, seconds = max(over_shared.items(), key=lambda kv: kv[1])
        report.outcome = "failed"
        report.longrepr = (
            f"the shared fixture {name!r} took {seconds:.1f} s to set up (for {item.nodeid}),"
            f" over the {limit * SHARED_LIMIT_FACTOR:.0f} s a shared fixture may take. Make it"
            " faster (fewer rounds, less data, the warm sandbox)."
        )
        return
    if item.get_closest_marker("slow"):
        return
    took = item.stash.get(_SETUP_S, 0.0) + report.duration
    if took > limit:
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} took {took:.1f} s (setup {item.stash.get(_SETUP_S, 0.0):.1f} s"
            f" without shared fixtures, call {report.duration:.1f} s), over the {limit:.0f} s a"
            " test may take unmarked. Make it faster (a shared run, the warm sandbox, less"
            " data), or mark it @pytest.mark.slow and say in its docstring why it needs the time."
        )


_SETUP_S = pytest.StashKey[float]()
_SHARED_S = pytest.StashKey[dict[str, float]]()


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def spec_data() -> dict[str, Any]:
    """The smallest valid TaskSpec as JSON data: everything else takes the paper's defaults."""
    return {"dataset": "cifar10", "input_shape": [3, 32, 32], "num_classes": 10}
