"""Shared fixtures (paths of the repository, a minimal valid spec) and the suite's time budget.

The budget: a test whose setup and call take more than ``SLOW_LIMIT_S`` fails unless it is marked
``slow``, and a test marked ``slow`` must say in its docstring why it needs the time. So the suite
cannot grow slower without somebody deciding it should. ``ARCHSMITH_TEST_SLOW_LIMIT_S`` changes
the limit (a slower machine, a profiler); 0 turns the check off.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

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


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked slow must say why: in its docstring, or in the docstring of the class or
    module whose ``pytestmark`` marks it. It fails otherwise (a per-test failure, so that the
    message shows under pytest-xdist too)."""
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
        item.stash[_SETUP_S] = report.duration
        return
    if report.when != "call" or not report.passed or item.get_closest_marker("slow"):
        return
    limit = slow_limit_s()
    took = item.stash.get(_SETUP_S, 0.0) + report.duration
    if limit and took > limit:
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} took {took:.1f} s (setup {item.stash.get(_SETUP_S, 0.0):.1f} s, call"
            f" {report.duration:.1f} s), over the {limit:.0f} s a test may take unmarked. Make it"
            " faster (a shared run, the warm sandbox, less data), or mark it"
            " @pytest.mark.slow and say in its docstring why it needs the time."
        )


_SETUP_S = pytest.StashKey[float]()


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def spec_data() -> dict[str, Any]:
    """The smallest valid TaskSpec as JSON data: everything else takes the paper's defaults."""
    return {"dataset": "cifar10", "input_shape": [3, 32, 32], "num_classes": 10}
