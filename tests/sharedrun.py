"""A finished offline run that read-only tests (``show``, ``diff``, ``report``, ``export``,
``runs``) share instead of each starting its own: ``archsmith run`` as a user types it, once per
test session.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from clitools import SCRIPT, env_for
from filelock import FileLock
from httprecorder import recording_server

#: The shared run: the README's request, two rounds of six epochs (about 35 s here).
SHARED_RUN_REQUEST = "build a 1000-FPS digits classifier"
SHARED_RUN_ARGS = ("--iterations", "2", "--epochs", "6")


@dataclass(frozen=True)
class FinishedRun:
    """A finished offline run that read-only tests share: ``env_for(base)`` finds its home."""

    base: Path
    run_id: str
    stdout: str
    #: What reached a LangSmith endpoint set (without the tracing variables) during the run.
    langsmith_requests: list[str]


def _start_shared_run(base: Path) -> FinishedRun:
    env = {k: v for k, v in env_for(base).items() if not k.startswith(("LANGSMITH", "LANGCHAIN"))}
    with recording_server() as (url, bodies):
        env["LANGSMITH_ENDPOINT"] = url  # an endpoint alone must not turn tracing on
        result = subprocess.run(
            [str(SCRIPT), "run", SHARED_RUN_REQUEST, *SHARED_RUN_ARGS],
            capture_output=True, text=True, env=env, timeout=900,
        )  # fmt: skip
        requests = [path for path, _ in bodies]
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"run (\S+): ", result.stdout)
    assert found, result.stdout
    return FinishedRun(base, found.group(1), result.stdout, requests)


def shared_finished_run(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """The session's shared run, started on first use.

    Under pytest-xdist the first worker to ask runs it and the others read its record: a file
    lock in the session's temporary directory, which every worker shares.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return _start_shared_run(tmp_path_factory.mktemp("shared-run"))
    root = tmp_path_factory.getbasetemp().parent
    record = root / "shared-run.json"
    with FileLock(str(root / "shared-run.lock")):
        if record.is_file():
            data = json.loads(record.read_text())
            return FinishedRun(Path(data["base"]), data["run_id"], data["stdout"],
                               data["langsmith_requests"])  # fmt: skip
        base = root / "shared-run"
        base.mkdir()
        run = _start_shared_run(base)
        record.write_text(json.dumps({**run.__dict__, "base": str(run.base)}))
        return run
