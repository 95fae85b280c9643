"""LangGraph Studio runs the graph, not only draws it.

Studio starts a run with what its input form holds (a request) and no run context; the graph
named in ``langgraph.json`` builds one from the settings and the environment. The slow test starts
the CLI's real in-memory server (``langgraph dev``) on 127.0.0.1 and posts a run through its HTTP
API, as Studio does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from archsmith.agents.graph import build_graph
from archsmith.agents.offline.architect import OfflineArchitect
from archsmith.agents.state import AgentContext
from archsmith.agents.studio import build_studio_graph, studio_context
from archsmith.config import RunSettings
from archsmith.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
LANGGRAPH = Path(sys.executable).parent / "langgraph"
#: Keys that would make the default architect an LLM one; Studio's test run is offline.
_KEYS = ("OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY")


@pytest.fixture
def no_llm_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in _KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ARCHSMITH_HOME", str(tmp_path / "home"))


def test_the_studio_graph_has_the_run_graphs_shape() -> None:
    studio = build_studio_graph().get_graph(xray=True).draw_mermaid()
    assert studio == build_graph().get_graph(xray=True).draw_mermaid()


def test_langgraph_json_names_the_studio_graph() -> None:
    config = json.loads((ROOT / "langgraph.json").read_text())
    module, _, name = config["graphs"]["archsmith"].partition(":")
    assert (module, name) == ("archsmith.agents.studio", "graph")


@pytest.mark.usefixtures("no_llm_keys")
def test_a_run_without_context_gets_one_from_settings_and_environment() -> None:
    built = studio_context(None, "thread-a")
    assert isinstance(built.architect, OfflineArchitect)  # no key set: offline, as `run` does
    assert built.llm is None
    assert built.tools.sandbox.name == "local"
    assert built.settings.epochs is None  # by the dataset's size, as `run` chooses them
    assert built.settings.llm == "offline"
    # One per thread: a search's nodes share the architect that remembers what it proposed.
    assert studio_context(None, "thread-a") is built
    assert studio_context(None, "thread-b") is not built


@pytest.mark.usefixtures("no_llm_keys")
def test_studio_context_fields_and_a_given_context_are_honoured() -> None:
    built = studio_context({"epochs": 2, "max_train": 64, "max_val": 32}, "thread-c")
    assert (built.epochs, built.settings.max_train, built.settings.max_val) == (2, 64, 32)
    # The context form as LangGraph hands it over: the dataclass itself.
    same = studio_context(RunSettings(epochs=2, max_train=64, max_val=32), "thread-c")
    assert same is built
    given = AgentContext(tools=built.tools, architect=built.architect)
    assert studio_context(given, "thread-c") is given
    with pytest.raises(InputError, match="unknown context field"):
        studio_context({"epoch": 2}, "thread-d")


@pytest.mark.usefixtures("no_llm_keys")
def test_a_field_studio_leaves_out_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As `archsmith run` takes them: ARCHSMITH_<FIELD> for what the form leaves unset."""
    monkeypatch.setenv("ARCHSMITH_EPOCHS", "4")
    monkeypatch.setenv("ARCHSMITH_MAX_VAL", "50")
    built = studio_context({"max_val": 20}, "thread-h")
    assert (built.epochs, built.settings.max_val) == (4, 20)
    monkeypatch.setenv("ARCHSMITH_EPOCHS", "four")
    with pytest.raises(InputError, match="ARCHSMITH_EPOCHS='four'"):
        studio_context(None, "thread-i")


@pytest.mark.usefixtures("no_llm_keys")
def test_studio_can_turn_early_stopping_on() -> None:
    assert studio_context(None, "thread-e").early_stop is None
    built = studio_context({"early_stop": True, "early_stop_margin": 0.05}, "thread-f")
    assert built.early_stop is not None
    assert built.early_stop.margin == 0.05
    with pytest.raises(InputError, match=r"early_stop_margin=2\.0: between 0 and 1"):
        studio_context({"early_stop": True, "early_stop_margin": 2.0}, "thread-g")


# -- the real server ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _request(url: str, body: dict[str, Any] | None = None, timeout: float = 10) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        headers={"content-type": "application/json"},
        method="POST" if data else "GET",
    )
    with urllib.request.urlopen(req, timeout=timeout) as reply:
        return json.loads(reply.read())


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[str]:
    """``langgraph dev`` with its in-memory server on 127.0.0.1, as a developer starts it."""
    pytest.importorskip(
        "langgraph_api",
        reason="langgraph-cli[inmem] is not installed (pip install -c constraints.txt -e '.[dev]')",
    )
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in _KEYS}
    env.update(
        ARCHSMITH_HOME=str(tmp_path / "home"),
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGSMITH_TRACING="false",
        NO_PROXY="127.0.0.1,localhost",
    )
    log = (tmp_path / "server.log").open("w")
    # Run from a scratch directory: the server keeps its in-memory store there on exit.
    server = subprocess.Popen(
        [
            str(LANGGRAPH), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1",
            "--port", str(port), "--config", str(ROOT / "langgraph.json"),
        ],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                pytest.fail(f"langgraph dev exited early:\n{(tmp_path / 'server.log').read_text()}")
            try:
                if _request(f"{url}/ok", timeout=2).get("ok"):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"langgraph dev never answered on {url}")
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=20)
        log.close()


@pytest.mark.slow
def test_langgraph_dev_runs_a_digits_search_from_the_input_form(dev_server: str) -> None:
    """The real ``langgraph dev`` server (its own process, its own imports) runs one offline
    round of the graph from Studio's input form: the only test of the graph under Studio."""
    (assistant,) = _request(f"{dev_server}/assistants/search", {"graph_id": "archsmith"})
    schemas = _request(f"{dev_server}/assistants/{assistant['assistant_id']}/schemas")
    assert "request" in schemas["input_schema"]["properties"]  # the forms Studio draws
    assert "iterations" in schemas["context_schema"]["properties"]
    # What Studio posts: the request from its input form, the run's settings from its context
    # form (the rest from the environment).
    final = _request(
        f"{dev_server}/runs/wait",
        {
            "assistant_id": "archsmith",
            "input": {"request": "a digits classifier"},
            "context": {"iterations": 1, "epochs": 5},
        },
        timeout=900,
    )
    assert "__error__" not in final, final.get("__error__")
    assert final["spec"]["dataset"] == "digits"
    assert final["planner"] == "offline"
    assert final["stop_reason"] == "reached 1 iterations"
    (entry,) = final["history"]
    assert entry["status"] == "evaluated"
    assert entry["metrics"]["val_accuracy"] > 0.2  # trained, not a constant guess
    assert final["best"]["iteration"] == 1
