"""The suite's time budget (tests/conftest.py), run on a small suite in a child pytest.

The budget is the one thing that stops the suite from growing slower unnoticed, so it is tested
as it acts, with a limit of 1 s: a slow unmarked test fails, a shared fixture's setup is not
charged to the test that comes first, a shared fixture past its own budget fails, and a slow mark
must give its reason. One child run covers all four (a child pytest takes seconds to start).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The shared fixtures, in a conftest below the one under test (as tests/integration's is): a
#: session fixture's setup is seen only by hooks that reach the session, not a conftest's.
FIXTURES = """
import time
import pytest

@pytest.fixture(scope="session")
def shared_in_budget():
    time.sleep(1.3)

@pytest.fixture(scope="module")
def shared_over_budget():
    time.sleep(2.3)
"""

SUITE = '''
import time
import pytest

def test_first_user_of_a_shared_fixture(shared_in_budget):
    pass

def test_second_user_of_a_shared_fixture(shared_in_budget):
    pass

def test_slow_and_unmarked():
    time.sleep(1.3)

def test_user_of_a_slow_shared_fixture(shared_over_budget):
    pass

@pytest.mark.slow
def test_marked_without_reason():
    pass

@pytest.mark.slow
def test_marked_with_reason():
    """Sleeps past the limit on purpose."""
    time.sleep(1.3)
'''


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each child test's name, mapped to PASSED or FAILED plus its message."""
    tmp_path = tmp_path_factory.mktemp("budget")
    below = tmp_path / "tests" / "integration"
    below.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "tests" / "conftest.py", tmp_path / "tests" / "conftest.py")
    (below / "conftest.py").write_text(FIXTURES)
    (below / "test_suite.py").write_text(SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n")
    env = {**os.environ, "ARCHSMITH_TEST_SLOW_LIMIT_S": "1"}
    env.pop("PYTEST_XDIST_WORKER", None)
    report = tmp_path / "report.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "0", "-q",
         f"--junitxml={report}", "tests"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert report.is_file(), done.stdout + done.stderr
    found = {}
    for case in ElementTree.parse(report).iter("testcase"):
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        found[case.attrib["name"]] = (
            "PASSED" if bad is None else f"FAILED {bad.attrib.get('message', '')}"
        )
    assert len(found) == 6, done.stdout + done.stderr
    return found


def test_a_shared_fixture_is_not_charged_to_the_test_that_comes_first(
    outcomes: dict[str, str],
) -> None:
    assert outcomes["test_first_user_of_a_shared_fixture"] == "PASSED"
    assert outcomes["test_second_user_of_a_shared_fixture"] == "PASSED"


def test_an_unmarked_test_over_the_limit_fails_and_says_what_to_do(
    outcomes: dict[str, str],
) -> None:
    said = outcomes["test_slow_and_unmarked"]
    assert said.startswith("FAILED"), said
    assert "over the 1 s a test may take unmarked" in said, said
    assert outcomes["test_marked_with_reason"] == "PASSED"


def test_a_shared_fixture_over_its_own_budget_fails(outcomes: dict[str, str]) -> None:
    said = outcomes["test_user_of_a_slow_shared_fixture"]
    assert said.startswith("FAILED"), said
    assert "the shared fixture 'shared_over_budget' took" in said, said
    assert "over the 2 s a shared fixture may take" in said, said


def test_a_slow_mark_without_a_reason_fails(outcomes: dict[str, str]) -> None:
    said = outcomes["test_marked_without_reason"]
    assert "is marked slow but does not say why" in said, said
