"""LangGraph ecosystem: the graph opens from langgraph.json; LangSmith traces by env vars alone.

LangSmith is reached through its standard variables (LANGSMITH_TRACING, LANGSMITH_API_KEY,
LANGSMITH_ENDPOINT). Here the endpoint is a local HTTP server that records what the real
``langsmith`` client sends while a real offline run goes (for the run without the tracing
variables: the session's shared run, ``finished_run``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from clitools import SCRIPT, env_for
from httprecorder import recording_server
from sharedrun import FinishedRun

ROOT = Path(__file__).resolve().parents[2]


def _one_round(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One short offline round on digits, as a user would start it."""
    return subprocess.run(
        [str(SCRIPT), "run", "build a 1000-FPS digits classifier", "-n", "1", "--epochs", "1",
         "--max-train", "300"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip


@pytest.fixture
def langsmith_stub() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    with recording_server() as stub:
        yield stub


def test_a_run_is_traced_to_langsmith_when_the_user_sets_its_variables(
    tmp_path: Path, langsmith_stub: tuple[str, list[tuple[str, bytes]]]
) -> None:
    url, bodies = langsmith_stub
    env = {
        **env_for(tmp_path),
        "LANGSMITH_TRACING": "true",
        "LANGSMITH_ENDPOINT": url,
        "LANGSMITH_API_KEY": "lsv2-test-key",
        "LANGSMITH_PROJECT": "archsmith-tests",
    }
    result = _one_round(env)
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = result.stdout.split("run ", 1)[1].split(":", 1)[0]
    # Whatever paths this langsmith version posts to (its URL layout is not the point here).
    sent = b"".join(body for _, body in bodies)
    assert sent, f"nothing reached the LangSmith endpoint; requests: {[p for p, _ in bodies]}"
    # The root run, its nodes, and the metadata that finds this archsmith run.
    for needle in (b'"archsmith"', b'"architect"', b'"critic"', b'"evaluate"', run_id.encode()):
        assert needle in sent, needle
    assert b"archsmith-tests" in sent


def test_nothing_is_sent_without_the_variables(finished_run: FinishedRun) -> None:
    """The session's shared run was started with LANGSMITH_ENDPOINT pointing at a recorder and
    no tracing variable: an endpoint alone does not turn tracing on."""
    assert finished_run.langsmith_requests == []
