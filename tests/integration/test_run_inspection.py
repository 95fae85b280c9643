"""After an offline digits run: runs, show, diff, report, export, stop, as users run them.

One real run (the README's request, two rounds: the session's ``finished_run``) is shared by the
module; every command runs as the installed ``archsmith`` script in a subprocess. The report is
opened in Debian's chromium; the exported ONNX file is run with onnxruntime and compared with
PyTorch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import console_errors, external_resources, open_page
from clitools import SCRIPT, env_for
from selenium.webdriver.common.by import By
from sharedrun import SHARED_RUN_REQUEST, FinishedRun

from archsmith.memory.store import SCHEMA_VERSION, RunStore
from archsmith.sandbox.local import bwrap_path

REQUEST = SHARED_RUN_REQUEST


def _cli(
    home: Path, *args: str, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, env={**env_for(home), **env},
        timeout=timeout,
    )  # fmt: skip


@pytest.fixture
def readme_run(finished_run: FinishedRun) -> tuple[Path, str]:
    """(tmp dir whose home holds the shared finished run, its run id); read-only."""
    return finished_run.base, finished_run.run_id


def test_runs_lists_the_run_with_its_best(readme_run: tuple[Path, str]) -> None:
    base, run_id = readme_run
    listed = _cli(base, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    (run,) = json.loads(listed.stdout)
    assert run["run_id"] == run_id
    assert run["request"] == REQUEST
    assert run["status"] == "finished"
    assert run["done"] >= 2
    assert 0.5 < run["best_val_accuracy"] <= 1.0
    assert run["best_fps"] > 0
    assert run["duration_s"] > 0
    table = _cli(base, "runs")
    assert run_id in table.stdout
    assert "finished" in table.stdout


def test_show_tells_the_story_of_the_run_and_of_one_step(readme_run: tuple[Path, str]) -> None:
    base, run_id = readme_run
    whole = _cli(base, "show", run_id)
    assert whole.returncode == 0, whole.stderr
    assert REQUEST in whole.stdout
    assert "Iterations" in whole.stdout
    assert "assumed:" in whole.stdout
    step = _cli(base, "show", run_id[:12], "--iteration", "2")
    assert step.returncode == 0, step.stderr
    assert "Why: the critic's verdict on iteration 1" in step.stdout
    assert "def build_model" in step.stdout
    assert "validation accuracy" in step.stdout
    assert re.search(r"tool calls: build [\d.]+ s ok", step.stdout), step.stdout
    data = json.loads(_cli(base, "show", "latest", "--iteration", "1", "--json").stdout)
    entry = data["iteration"]
    assert entry["iteration"] == 1
    assert entry["fired_rules"], "the critic's reasons are kept"
    assert all(r["reason"] for r in entry["fired_rules"])
    # Every sandbox job, and which side of the scoreboard ran it: the candidate's process built
    # and trained; the measuring process inspected, scored and timed the exported program.
    sides = {c["tool"]: c["args"]["process"] for c in data["tool_calls"]}
    assert sides == {
        "build": "candidate", "train": "candidate",
        "inspect": "measuring", "score": "measuring", "speed": "measuring",
    }  # fmt: skip
    assert all(c["backend"] for c in data["tool_calls"])
    story = json.loads(_cli(base, "show", run_id, "--json").stdout)
    assert story["best"]["is_best"] is True
    # The headline: the best measured once on the held-out test split when the run ended.
    test = story["best"]["test"]
    assert test["ok"] is True
    assert 0.0 <= test["test_accuracy"] <= 1.0
    assert test["test_samples"] == 359  # digits: a 20 % carve-out, never trained or chosen on
    assert story["run"]["best_test_accuracy"] == test["test_accuracy"]  # as `runs --json` says
    assert "test acc" in whole.stdout
    code = Path(story["run"]["directory"]) / "candidates" / "iteration_001.py"
    assert code.read_text() == story["iterations"][0]["code"]


def test_diff_shows_code_and_metric_changes(readme_run: tuple[Path, str]) -> None:
    base, run_id = readme_run
    result = _cli(base, "diff", run_id, "1", "2")
    assert result.returncode == 0, result.stderr
    assert "iteration 1 -> 2" in result.stdout
    assert "validation accuracy" in result.stdout
    assert "combined metric CM" in result.stdout
    story = json.loads(_cli(base, "show", run_id, "--json").stdout)
    one, two = story["iterations"][0], story["iterations"][1]
    if one["code"] != two["code"]:
        assert "--- iteration 1" in result.stdout
        assert "+++ iteration 2" in result.stdout
    delta = two["metrics"]["val_accuracy"] - one["metrics"]["val_accuracy"]
    assert f"{delta:+.4g}" in result.stdout


def test_report_opens_in_a_real_browser(readme_run: tuple[Path, str], tmp_path: Path) -> None:
    base, run_id = readme_run
    out = tmp_path / "report.html"
    result = _cli(base, "report", run_id, "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.as_uri() in result.stdout.replace("\n", "")
    story = json.loads(_cli(base, "show", run_id, "--json").stdout)
    with open_page(out) as driver:
        body = driver.find_element(By.TAG_NAME, "body").text
        assert run_id in body
        assert REQUEST in body
        cards = driver.find_elements(By.CSS_SELECTOR, "section.iteration")
        assert len(cards) == len(story["iterations"])
        assert all(card.is_displayed() for card in cards)
        best = story["best"]["iteration"]
        assert driver.find_elements(By.CSS_SELECTOR, f"#iteration-{best}")
        plots = driver.find_elements(By.TAG_NAME, "svg")
        assert len(plots) >= 4
        assert all(p.size["width"] > 100 and p.size["height"] > 100 for p in plots)
        assert driver.find_elements(By.CSS_SELECTOR, "svg .best")
        assert driver.find_elements(By.CSS_SELECTOR, "svg .threshold")
        assert console_errors(driver) == []
        assert external_resources(driver) == []


def _digits_val(base: Path) -> np.ndarray[Any, Any]:
    from archsmith.data.prepared import prepare_dataset
    from archsmith.data.prepared_format import load_prepared

    path = prepare_dataset("digits", None, base / "home" / "datasets", max_val=64)
    return np.asarray(load_prepared(path).x_val[:64], dtype=np.float32)


def test_export_gives_an_onnx_file_that_matches_pytorch(
    readme_run: tuple[Path, str], tmp_path: Path
) -> None:
    import onnxruntime as ort
    import torch
    from safetensors.torch import load_file

    base, run_id = readme_run
    out = tmp_path / "export"
    result = _cli(base, "export", run_id, "--format", "onnx", "-o", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("model.py", "model.safetensors", "model.onnx", "model_card.json", "MODEL_CARD.md"):
        assert (out / name).is_file(), name
    card = json.loads((out / "model_card.json").read_text())
    story = json.loads(_cli(base, "show", run_id, "--json").stdout)
    best = story["best"]
    assert json.dumps(card).count(str(best["metrics"]["val_accuracy"])[:6]) >= 1
    assert "estimate" in (out / "MODEL_CARD.md").read_text()

    spec = importlib.util.spec_from_file_location("exported_model", out / "model.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build_model([1, 8, 8], 10)
    model.load_state_dict(load_file(str(out / "model.safetensors")))
    model.eval()
    x = _digits_val(base)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    assert (got.argmax(1) == expected.argmax(1)).all()

    again = _cli(base, "export", run_id, "-o", str(out))
    assert again.returncode == 2
    assert "not empty" in again.stderr
    assert (out / "model.onnx").is_file()


def test_bad_run_ids_and_steps_are_clear_errors(readme_run: tuple[Path, str]) -> None:
    base, run_id = readme_run
    for args, message in (
        (("show", "no-such-run"), "no run 'no-such-run'"),
        (("report", "no-such-run"), "recent runs: " + run_id),
        (("resume", "no-such-run"), "recent runs: " + run_id),  # one resolver for all
        (("show", run_id, "--iteration", "99"), "has no iteration 99"),
        (("diff", run_id, "1", "99"), "has no iteration 99"),
        (("stop", run_id), "is not running (status: finished)"),
        (("export", run_id, "--format", "tflite"), "--format must be onnx"),
    ):
        result = _cli(base, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in " ".join(result.stderr.split()), (args, result.stderr)
        assert "Traceback" not in result.stderr


def _copy_home(base: Path, tmp_path: Path) -> Path:
    shutil.copytree(base / "home", tmp_path / "home", ignore=shutil.ignore_patterns("jobs"))
    return tmp_path


def test_a_store_from_a_newer_archsmith_is_refused(
    readme_run: tuple[Path, str], tmp_path: Path
) -> None:
    base = _copy_home(readme_run[0], tmp_path)
    db = base / "home" / "archsmith.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    result = _cli(base, "runs")
    assert result.returncode == 2
    assert "newer archsmith" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_corrupt_store_is_refused_then_rebuilt_from_the_checkpoints(
    readme_run: tuple[Path, str], tmp_path: Path
) -> None:
    base = _copy_home(readme_run[0], tmp_path)
    db = base / "home" / "archsmith.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"\x00garbage" * 4096)
    result = _cli(base, "runs")
    assert result.returncode == 2
    assert "damaged" in result.stderr
    assert db.read_bytes() == b"\x00garbage" * 4096
    # Doing what the message says brings the runs back from their checkpoints.
    db.rename(f"{db}.damaged")
    listed = _cli(base, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    (run,) = json.loads(listed.stdout)
    assert run["run_id"] == readme_run[1]
    assert run["done"] >= 2


def test_a_full_disk_leaves_no_half_report(readme_run: tuple[Path, str], tmp_path: Path) -> None:
    base, run_id = readme_run
    bwrap = bwrap_path()  # the system's or the bundled one
    assert bwrap is not None
    env = {**env_for(base)}
    # The command sees a 64 KiB tmpfs at /mnt/full; the report (hundreds of KB) cannot fit.
    small_disk = [bwrap, "--bind", "/", "/", "--dev", "/dev", "--size", "65536", "--tmpfs",
                  "/mnt/full"]  # fmt: skip
    result = subprocess.run(
        [*small_disk, str(SCRIPT), "report", run_id, "-o", "/mnt/full/report.html"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no space left" in result.stderr
    # A fresh tmpfs would be empty anyway: check inside the same command that nothing was left.
    leftover = subprocess.run(
        [*small_disk, "sh", "-c",
         f"{SCRIPT} report {run_id} -o /mnt/full/report.html; ls -A /mnt/full"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert leftover.stdout == "", leftover.stdout


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_stop_from_another_terminal_then_resume(tmp_path: Path) -> None:
    """``stop`` from a second process while a real run goes, then ``resume`` to the end: a run
    of its own (the shared one is finished), cut after its first step and finished later."""
    proc = subprocess.Popen(
        [str(SCRIPT), "run", REQUEST, "--iterations", "3", "--epochs", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env_for(tmp_path),
        start_new_session=True,
    )  # fmt: skip
    try:
        db = tmp_path / "home" / "archsmith.db"
        _wait_for(db.is_file, 120, "the run store")
        store = RunStore(db)
        _wait_for(lambda: bool(store.run_ids()), 120, "the run's row")
        (run_id,) = store.run_ids()
        # While it goes: commands that need a finished run say so; show works.
        busy = _cli(tmp_path, "export", run_id)
        assert busy.returncode == 2
        assert "still going" in busy.stderr
        assert _cli(tmp_path, "resume", run_id).returncode == 2
        assert _cli(tmp_path, "show", run_id).returncode == 0
        _wait_for(lambda: bool(store.iterations(run_id)), 300, "iteration 1")
        stopped = _cli(tmp_path, "stop", run_id)
        assert stopped.returncode == 0, stopped.stderr
        assert "after its current step" in stopped.stdout
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    assert f"archsmith resume {run_id}" in out
    run = store.get_run(run_id)
    assert run is not None
    assert run["status"] == "stopped"
    done = len(store.iterations(run_id))
    assert 1 <= done < 3
    resumed = _cli(tmp_path, "resume", "latest", timeout=600)  # as `stop latest` resolves it
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final = store.get_run(run_id)
    assert final is not None
    assert final["status"] == "finished"
    numbers = [e["iteration"] for e in store.iterations(run_id)]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) == 3 or final["stop_reason"] == "every prioritised target is met"
