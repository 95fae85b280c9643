"""One context: `RunSettings` is how a run goes, filled by the CLI, Studio and tests alike, and
kept by the run's record; `Settings` is the machine's, and no field is in both."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from archsmith.agents.runs import RunMeta, load_meta, save_meta
from archsmith.agents.state import AgentContext
from archsmith.config import (
    DEFAULT_EARLY_STOP_MARGIN,
    DEFAULT_ITERATIONS,
    DEFAULT_LLM_TIMEOUT_S,
    DEFAULT_MAX_FIX_ATTEMPTS,
    RunSettings,
    Settings,
)
from archsmith.errors import InputError
from archsmith.home import run_dir


def test_no_setting_is_both_the_runs_and_the_machines() -> None:
    run = {f.name for f in dataclasses.fields(RunSettings)}
    assert run & set(Settings.model_fields) == set()


def test_the_defaults_are_the_named_constants() -> None:
    run = RunSettings()
    assert run.iterations == DEFAULT_ITERATIONS
    assert run.max_fix_attempts == DEFAULT_MAX_FIX_ATTEMPTS
    assert run.early_stop_margin == DEFAULT_EARLY_STOP_MARGIN
    assert run.epochs is None  # chosen by the dataset's size once planned


def test_from_env_fills_what_the_caller_leaves_out(tmp_path: Path) -> None:
    env = {
        "ARCHSMITH_EPOCHS": "3",
        "ARCHSMITH_SANDBOX": "none",
        "ARCHSMITH_EARLY_STOP": "yes",
        "ARCHSMITH_BUDGET_S": "90.5",
        "ARCHSMITH_ITERATIONS": "7",
        "ARCHSMITH_SANDBOX_IMAGE": "not-a-run-setting",
    }
    run = RunSettings.from_env(env, iterations=2, max_val=None)
    assert (run.epochs, run.sandbox, run.early_stop, run.budget_s) == (3, "none", True, 90.5)
    assert run.iterations == 2  # given wins over the environment
    assert run.max_val is None  # None counts as not given, and the environment has none


def test_a_plain_constructor_reads_nothing_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A test, or a resumed run's record, gets exactly what it names."""
    monkeypatch.setenv("ARCHSMITH_EPOCHS", "9")
    assert RunSettings().epochs is None
    assert RunSettings.from_env().epochs == 9


def test_from_env_reads_a_dotenv_file_under_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("ARCHSMITH_EPOCHS=4\nARCHSMITH_MAX_TRAIN=100\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARCHSMITH_EPOCHS", raising=False)
    monkeypatch.setenv("ARCHSMITH_MAX_TRAIN", "200")
    run = RunSettings.from_env()
    assert (run.epochs, run.max_train) == (4, 200)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"ARCHSMITH_EPOCHS": "five"}, "ARCHSMITH_EPOCHS='five' is not a epochs value"),
        ({"ARCHSMITH_EARLY_STOP": "maybe"}, "use true or false"),
        ({"ARCHSMITH_SANDBOX": "vm"}, "sandbox='vm': use local, docker or none"),
        ({"ARCHSMITH_EPOCHS": "0"}, "epochs=0: at least 1"),
        ({"ARCHSMITH_EARLY_STOP_MARGIN": "1.5"}, "early_stop_margin=1.5: between 0 and 1"),
        ({"ARCHSMITH_LLM_TIMEOUT_S": "-1"}, "llm_timeout_s=-1.0: must be positive"),
    ],
)
def test_a_bad_value_is_bad_input_naming_it(env: dict[str, str], says: str) -> None:
    with pytest.raises(InputError, match=says.replace("(", r"\(").replace(".", r"\.")):
        RunSettings.from_env(env)


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(InputError) as caught:
        RunSettings(iterations=0, workers=0, max_val=0)
    assert all(f in str(caught.value) for f in ("iterations=0", "workers=0", "max_val=0"))


def test_an_unknown_field_is_refused() -> None:
    with pytest.raises(TypeError, match="no field epoch"):
        RunSettings.from_env({}, epoch=2)


def test_the_run_record_keeps_its_settings_and_reads_older_flat_ones(tmp_path: Path) -> None:
    meta = RunMeta(run_id="r1", request="x", settings=RunSettings(llm="offline", epochs=2))
    save_meta(run_dir(tmp_path, "r1"), meta)
    assert load_meta(tmp_path, "r1").settings == meta.settings
    # run.json as runs started before RunSettings wrote it: the settings beside the record.
    older = {
        "run_id": "r0", "request": "y", "llm": "offline", "sandbox": "none", "device": "cpu",
        "epochs": 12, "iterations": 4, "early_stop": True, "early_stop_margin": 0.05,
        "llm_timeout_s": None, "llm_outage_window_s": 30.0, "checkpoint_url": None,
        "status": "finished", "stop_reason": "reached 4 iterations", "pid": 1,
    }  # fmt: skip
    run_dir(tmp_path, "r0").mkdir(parents=True)
    (run_dir(tmp_path, "r0") / "run.json").write_text(json.dumps(older))
    kept = load_meta(tmp_path, "r0")
    assert kept.settings == RunSettings(
        llm="offline", sandbox="none", device="cpu", epochs=12, iterations=4, early_stop=True,
        early_stop_margin=0.05, llm_outage_window_s=30.0,
    )  # fmt: skip
    assert kept.settings.llm_timeout_s == DEFAULT_LLM_TIMEOUT_S  # None meant the default
    assert (kept.status, kept.stop_reason) == ("finished", "reached 4 iterations")


def test_a_run_record_names_its_llm() -> None:
    with pytest.raises(ValueError, match="name its LLM"):
        RunMeta(run_id="r", request="x", settings=RunSettings())


def test_the_context_reads_the_settings() -> None:
    context = AgentContext(tools=None, settings=RunSettings(epochs=3))  # type: ignore[arg-type]
    assert context.epochs == 3
    assert context.early_stop is None
    stopping = AgentContext(
        tools=None,  # type: ignore[arg-type]
        settings=RunSettings(epochs=3, early_stop=True, early_stop_margin=0.1),
    )
    assert stopping.early_stop is not None
    assert stopping.early_stop.margin == 0.1
    with pytest.raises(RuntimeError, match="settled by the planner"):
        _ = AgentContext(tools=None, settings=RunSettings()).epochs  # type: ignore[arg-type]
