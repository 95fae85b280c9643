"""Mid-run LLM failures through the real clients against the stub server: outages, bad replies.

The architect's client is built as a run builds it (no retries of its own), so every failure goes
through `call_through_outage`, whose waits are shrunk here: a 10-minute window is a setting, and
these tests wait well under a second each.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from stubs import Reply, StubLLMServer, isolate_llm_env

from archsmith.agents.llm_architect import NO_CODE_ERROR, LLMArchitect
from archsmith.llm.failures import LLMOutageError
from archsmith.llm.outage import OutagePolicy, call_through_outage, span
from archsmith.llm.providers import make_llm
from archsmith.spec import TaskSpec

pytestmark = pytest.mark.llm

SPEC = TaskSpec(dataset="digits", input_shape=(1, 8, 8), num_classes=10)
CODE = '''"""Linear probe."""
import torch.nn as nn


def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))
'''
FENCED = f"```python\n{CODE}```"
#: A short window with fast backoff: several retries, well under a second.
QUICK = OutagePolicy(window_s=0.4, base_s=0.01, max_wait_s=0.05)
NO_CHOICES = Reply(body={"id": "chatcmpl-x", "object": "chat.completion", "model": "stub"})


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubLLMServer]:
    isolate_llm_env(monkeypatch)
    with StubLLMServer() as server:
        yield server


def _architect(
    stub: StubLLMServer,
    value: str = "openai:stub-coder",
    policy: OutagePolicy = QUICK,
    timeout_s: float = 30.0,
) -> LLMArchitect:
    url = stub.openai_base_url if value.startswith("openai:") else stub.gemini_base_url
    llm = make_llm(value, base_url=url, timeout_s=timeout_s, max_retries=0)
    assert llm is not None
    return LLMArchitect(llm, model_name=value.partition(":")[2], outage=policy)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "archsmith.llm.outage"
    ]


@pytest.mark.parametrize("value", ["openai:stub-coder", "gemini:stub-gemini"])
def test_an_outage_longer_than_the_window_stops_with_the_reason(
    stub: StubLLMServer, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    stub.always(Reply.error(500))
    with caplog.at_level(logging.WARNING), pytest.raises(LLMOutageError) as raised:
        _architect(stub, value).propose(SPEC, [], None, [], 1)
    message = str(raised.value)
    assert "HTTP 500" in message
    assert "outage window" in message
    tries = len(stub.requests)
    assert tries >= 3  # retried, not given up at the first 500
    warnings = _warnings(caplog)
    assert len(warnings) == tries - 1  # every failure but the last is followed by a wait
    assert all("retrying in" in w and "left of the" in w for w in warnings)
    assert raised.value.__cause__ is not None


def test_a_short_outage_is_waited_out(
    stub: StubLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    stub.script(Reply.error(503), Reply.error(502), Reply.error(429), Reply(text=FENCED))
    with caplog.at_level(logging.WARNING):
        proposal = _architect(stub).propose(SPEC, [], None, [], 1)
    assert proposal.code == CODE
    assert len(stub.requests) == 4
    warnings = _warnings(caplog)
    assert len(warnings) == 3
    assert all(w.startswith("openai:stub-coder failed: HTTP ") for w in warnings)
    assert "HTTP 429" in warnings[2]


def test_a_reply_without_choices_is_retried_as_malformed(
    stub: StubLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    stub.script(NO_CHOICES, Reply(text=FENCED))
    with caplog.at_level(logging.WARNING):
        proposal = _architect(stub).propose(SPEC, [], None, [], 1)
    assert proposal.code == CODE
    (warning,) = _warnings(caplog)
    assert "malformed reply" in warning
    assert "choices" in warning


def test_replies_without_choices_for_the_whole_window_stop_the_run(stub: StubLLMServer) -> None:
    stub.always(NO_CHOICES)
    with pytest.raises(LLMOutageError, match="malformed reply"):
        _architect(stub).propose(SPEC, [], None, [], 1)


def test_an_empty_reply_tells_the_fixer_there_was_no_code(stub: StubLLMServer) -> None:
    stub.script(Reply(text=""))
    proposal = _architect(stub).propose(SPEC, [], None, [], 1)
    assert proposal.summary == "empty reply"
    assert proposal.llm_calls[0].response == ""
    with pytest.raises(Exception, match=r"your reply contained no Python code \(the reply was"):
        exec(compile(proposal.code, "candidate.py", "exec"), {})


def test_a_prose_reply_reaches_the_fixer_as_no_code(stub: StubLLMServer) -> None:
    """The fixer's own reply may be prose too: it must read the same plain error."""
    stub.script(Reply(text="Here is my plan: three conv layers, then pooling."))
    architect = _architect(stub)
    proposal = architect.propose(SPEC, [], None, [], 1)
    with pytest.raises(Exception, match="no Python code") as raised:
        exec(compile(proposal.code, "candidate.py", "exec"), {})
    # The error as the sandbox describes a failing candidate.
    error = {"type": type(raised.value).__name__, "message": str(raised.value), "line": None}
    assert error["type"] == NO_CODE_ERROR
    stub.script(Reply(text=FENCED))
    fixed = architect.repair(SPEC, proposal, error, None, 1)
    assert fixed.code == CODE
    prompt = stub.requests[-1].json["messages"][-1]["content"]
    assert NO_CODE_ERROR in prompt
    assert "your reply contained no Python code" in prompt


def test_a_timeout_and_its_retry_are_logged_as_warnings(
    stub: StubLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    stub.script(Reply(text="late", delay_s=1.0), Reply(text=FENCED))
    policy = OutagePolicy(window_s=30, base_s=0.01)
    with caplog.at_level(logging.WARNING):
        proposal = _architect(stub, policy=policy, timeout_s=0.3).propose(SPEC, [], None, [], 1)
    assert proposal.code == CODE
    (warning,) = _warnings(caplog)
    assert "no reply before the request timeout" in warning
    assert "retrying in" in warning


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply.error(401, "Incorrect API key provided"), "set OPENAI_API_KEY"),
        (Reply.error(400, "maximum context length exceeded"), "refused the request: HTTP 400"),
    ],
    ids=["rejected-key", "refused-request"],
)
def test_what_waiting_cannot_fix_stops_at_once(
    stub: StubLLMServer, reply: Reply, expected: str
) -> None:
    stub.script(reply)
    stub.always(Reply(text=FENCED))  # would succeed if it were retried
    with pytest.raises(LLMOutageError, match=expected):
        _architect(stub, policy=OutagePolicy(window_s=60, base_s=0.01)).propose(
            SPEC, [], None, [], 1
        )
    assert len(stub.requests) == 1


def test_the_backoff_doubles_and_is_capped_by_what_is_left_of_the_window() -> None:
    """No real sleeping: a fake clock shows the waits the window allows."""
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    def failing() -> str:
        raise ConnectionError("no route to host")

    policy = OutagePolicy(window_s=600, base_s=1, max_wait_s=60)
    with pytest.raises(LLMOutageError, match="over 10 min") as raised:
        call_through_outage(
            failing, name="openai:x", policy=policy, sleep=sleep, clock=lambda: now[0]
        )
    assert waits[:7] == [1, 2, 4, 8, 16, 32, 60]
    assert sum(waits) == pytest.approx(600)
    assert f"failed {len(waits) + 1} times" in str(raised.value)


def test_spans_read_as_people_write_them() -> None:
    assert [span(s) for s in (0.25, 4, 45, 125, 600)] == [
        "0.25 s", "4 s", "45 s", "2 min 5 s", "10 min",
    ]  # fmt: skip


# -- the whole run: outage, clean stop, resume -------------------------------------------------

SCRIPT = Path(sys.executable).parent / "archsmith"
INTENT = {"dataset": "digits", "emphasizes_speed": False, "assumptions": []}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600
    )  # fmt: skip


@pytest.mark.slow
def test_an_outage_stops_the_run_resumably_and_resume_finishes_it(
    tmp_path: Path, stub: StubLLMServer
) -> None:
    """500 on every try through the real langchain-openai client, then the provider recovers.

    Slow: two real CLI runs (the one the outage stops and the resume that finishes it), each
    with its warm sandboxes; the only end-to-end test of an outage."""
    env = {**os.environ, "ARCHSMITH_HOME": str(tmp_path / "home"), "COLUMNS": "250"}
    stub.script(Reply(text="ok"), Reply(text=json.dumps(INTENT)))  # preflight, planner
    stub.always(Reply.error(500, "the provider is down"))
    run = _cli(
        env, "run", "a digits classifier", "--llm", "openai:stub-coder",
        "--base-url", stub.openai_base_url, "--iterations", "1", "--epochs", "1",
        "--max-train", "256", "--max-val", "128", "--llm-outage-window", "1s",
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 5, output
    assert "Traceback" not in output
    assert "retrying in" in run.stderr
    assert "outage window" in run.stderr
    assert "LLM unavailable" in run.stderr
    assert "the provider is down" in run.stderr
    rid = run.stdout.split("run ", 1)[1].split(":", 1)[0].strip()
    assert f"archsmith resume {rid}" in run.stderr
    outage_requests = len(stub.requests) - 2
    assert outage_requests >= 3

    story = json.loads(_cli(env, "show", rid, "--json").stdout)
    assert story["run"]["status"] == "stopped"
    assert story["run"]["stop_reason"].startswith("LLM unavailable: ")
    assert "HTTP 500" in story["run"]["stop_reason"]
    assert story["iterations"] == []
    shown = _cli(env, "show", rid)
    assert "LLM unavailable" in shown.stdout, shown.stdout
    listed = _cli(env, "runs")
    assert "stopped: LLM unavailable" in listed.stdout, listed.stdout

    stub.always(None)  # the provider recovers
    stub.script(Reply(text="ok"), Reply(text=FENCED))  # preflight, the architect
    resumed = _cli(env, "resume", rid)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    story = json.loads(_cli(env, "show", rid, "--json").stdout)
    assert story["run"]["status"] == "finished"
    assert [e["status"] for e in story["iterations"]] == ["evaluated"]
    assert story["iterations"][0]["code"] == CODE
    assert "LLM unavailable" not in (story["run"]["stop_reason"] or "")


# -- configuration: flag, environment, what a run keeps --------------------------------------------


def test_timeout_and_window_come_from_the_environment_or_the_run(
    stub: StubLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archsmith.agents.session import _architect, new_meta
    from archsmith.config import RunSettings

    monkeypatch.setenv("ARCHSMITH_LLM_TIMEOUT_S", "7")
    monkeypatch.setenv("ARCHSMITH_LLM_OUTAGE_WINDOW_S", "42")
    run = RunSettings.from_env(llm="openai:stub", base_url=stub.openai_base_url)
    meta = new_meta("x", run)
    architect = _architect(meta)
    assert isinstance(architect, LLMArchitect)
    assert architect.llm.request_timeout == 7
    assert architect.llm.max_retries == 0  # every retry is ours
    assert architect.outage.window_s == 42
    # A resumed run keeps what it was started with, whatever the environment says then.
    kept = meta.model_copy(
        update={"settings": meta.settings.replace(llm_timeout_s=3.0, llm_outage_window_s=60.0)}
    )
    architect = _architect(kept)
    assert architect.llm.request_timeout == 3
    assert architect.outage.window_s == 60


def test_a_bad_llm_timeout_flag_is_bad_input() -> None:
    from typer.testing import CliRunner

    from archsmith.cli import app

    result = CliRunner().invoke(
        app, ["run", "a digits classifier", "--llm", "offline", "--llm-timeout", "soon"]
    )
    assert result.exit_code == 2
    assert "cannot read 'soon' as a duration" in result.output
