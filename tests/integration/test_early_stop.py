"""Early stopping through the real sandbox: pause, measure, stop or resume, and what a run records.

The paused training's state leaves the candidate's work directory only as a checked regular file
(a link or an oversized file is refused), and a resumed training is the uninterrupted one.

The attacks on the host's handover (of the state, of another model) run on every backend
(``sandbox``), each attack's cases on one home the module keeps for it, so that the warm backend's
sandboxes (fixed to a home's prepared data) start once for them, not once per case; the rest run
in the warm local sandbox that runs use (``runtime``, on the module's shared home). A test on a
shared home compares it with what was there before the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_agent_graph import GOOD, ScriptedArchitect

from archsmith.agents.runs import drive, initial_state, open_checkpointer
from archsmith.agents.state import AgentContext
from archsmith.config import RunSettings, Settings
from archsmith.sandbox.base import Sandbox
from archsmith.spec import TaskSpec
from archsmith.tools.runtime import ToolRuntime
from archsmith.tools.schemas import STOPPED_EARLY, TrainModelInput
from archsmith.tools.train_model import EarlyCheck, Verdict, score_program, train_model

CNN = """
import torch.nn as nn

def build_model(input_shape, num_classes):
    c = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(c, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.2),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, num_classes),
    )
"""
#: Sees nothing of its input: its accuracy is that of always answering one class.
BLIND = """
import torch.nn as nn

class Blind(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.fc = nn.Linear(1, n)

    def forward(self, x):
        return self.fc(x.flatten(1)[:, :1] * 0)

def build_model(input_shape, num_classes):
    return Blind(num_classes)
"""
#: Leaves, instead of its training state, a link to a host file (or a file too large to take).
PLANTS = """
import atexit
import os
import torch.nn as nn

def _plant():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train-state.pt")
    if not os.path.exists(path) or not os.path.getsize(path):
        return  # not a paused training job
    try:
        os.remove(path)  # refused: an output is a file the host lent the job
    except OSError:
        pass
    {plant}

atexit.register(_plant)

def build_model(input_shape, num_classes):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))
"""
#: Ignores the pause: at exit, removes its training state and its result's ``paused_at``, as if
#: it had trained to the end (so that a host trusting its account would skip the check).
SKIPS_THE_CHECK = (
    CNN
    + """
import atexit, json, os

def _skip():
    here = os.path.dirname(os.path.abspath(__file__))
    state = os.path.join(here, "train-state.pt")
    if os.path.exists(state):
        open(state, "wb").close()  # an output left empty is none; it cannot be removed
    with open(os.path.join(here, "result.json")) as f:
        real = json.load(f)
    if real.get("result"):
        real["result"]["paused_at"] = None
    with open(os.path.join(here, "result.json"), "w") as f:
        json.dump(real, f)

atexit.register(_skip)
"""
)
DIGITS = {"input_shape": [1, 8, 8], "num_classes": 10}


def _decide(stop: bool, runtime: ToolRuntime, seen: list[dict[str, Any]]) -> Any:
    """A scripted rule that, as the run's does, has the paused program scored."""

    def decide(model_dir: Path, train_energy_kwh_pue: float) -> Verdict:
        data = runtime.prepare("digits")
        scored = score_program(runtime, data, model_dir, ["train", "val"])
        assert scored.ok, scored.error
        figures = scored.result or {}
        seen.append({**figures, "train_energy_kwh_pue": train_energy_kwh_pue})
        return Verdict(
            stop,
            "scripted verdict",
            {"combined_metric_bound": 1.0},
            figures["train_accuracy"],
            figures["val_accuracy"],
        )

    return decide


def _leftovers(settings: Settings) -> list[str]:
    return sorted(p.name for p in settings.jobs_dir.iterdir()) if settings.jobs_dir.is_dir() else []


def _models(settings: Settings) -> set[Path]:
    """The programs kept in the home, trained and validated (``archsmith.home``: validated ones
    in their runtime's ``validated-*`` directory); the module's tests share it: compare with
    before."""
    found = set(settings.models_dir.iterdir()) if settings.models_dir.is_dir() else set()
    validated = {p for p in found if p.name.startswith("validated-")}
    return (found - validated) | {program for d in validated for program in d.iterdir()}


@pytest.fixture(scope="module")
def state_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The home of the attacks on the training state's handover, on every backend."""
    home = tmp_path_factory.mktemp("state-attacks") / "home"
    return Settings(home=home, job_wall_time_s=300, max_model_bytes=200_000)


@pytest.fixture(scope="module")
def swap_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The home of the candidates that train another model than they validated, on every
    backend."""
    home = tmp_path_factory.mktemp("swap-attacks") / "home"
    return Settings(home=home, job_wall_time_s=300)


def test_a_candidate_that_goes_on_is_trained_exactly_as_without_the_check(
    runtime: ToolRuntime,
) -> None:
    settings = runtime.settings
    inp = TrainModelInput(code=CNN, dataset="digits", epochs=3, seed=5, **DIGITS)
    runtime.validation_for(inp)  # as a run does before training (check_shapes, count_params)
    models_before = _models(settings)
    plain = train_model(runtime, inp)
    seen: list[dict[str, Any]] = []
    checked = train_model(
        runtime, inp, check=EarlyCheck(epoch=1, rule="test", decide=_decide(False, runtime, seen))
    )
    assert plain.ok, plain.error
    assert checked.ok, checked.error
    # Paused after epoch 1, measured, resumed from the state the first job left: the same model.
    assert checked.val_accuracy == plain.val_accuracy
    assert checked.val_loss == plain.val_loss
    assert checked.train_accuracy == plain.train_accuracy
    assert [h.epoch for h in checked.history] == [1, 2, 3]
    assert checked.epochs_completed == 3
    record = checked.early_stop
    assert record is not None
    assert not record.stopped
    assert (record.epoch, record.epochs, record.reason) == (1, 3, "scripted verdict")
    # The rule was given the epoch-1 program and the energy of the training so far.
    (figures,) = seen
    assert (figures["train_accuracy"], figures["val_accuracy"]) == (
        record.train_accuracy,
        record.val_accuracy,
    )
    assert checked.train_energy_kwh_pue is not None
    assert 0 < figures["train_energy_kwh_pue"] < checked.train_energy_kwh_pue
    assert record.val_accuracy is not None
    assert 0.0 < record.val_accuracy <= 1.0
    # Nothing of the pause is left: no held state, no program of the paused model.
    assert _leftovers(settings) == []
    assert _models(settings) - models_before == {plain.model_dir, checked.model_dir}


def test_a_stopped_candidate_has_its_figures_at_the_check_and_no_model(
    runtime: ToolRuntime,
) -> None:
    settings = runtime.settings
    inp = TrainModelInput(code=CNN, dataset="digits", epochs=4, **DIGITS)
    runtime.validation_for(inp)  # as a run does before training (check_shapes, count_params)
    models_before = _models(settings)
    jobs: list[Any] = []
    runtime.on_call = jobs.append
    out = train_model(
        runtime, inp, check=EarlyCheck(epoch=1, rule="test", decide=_decide(True, runtime, []))
    )
    assert out.ok, out.error
    assert out.early_stop is not None
    assert out.early_stop.stopped
    assert out.model_dir is None
    assert out.val_accuracy is None
    assert [h.epoch for h in out.history] == [1]
    assert out.train_energy_kwh_pue is not None
    assert out.train_energy_kwh_pue > 0
    assert [j.tool for j in jobs] == ["train", "score"]
    assert jobs[0].args["stop_after"] == 1
    assert _leftovers(settings) == []
    assert _models(settings) == models_before


@pytest.mark.parametrize(
    ("plant", "taken"),
    [
        # train-state.pt is a file the host lent the job: a link cannot take its place, so the
        # paused state is the job's own and training goes on.
        ("os.symlink({secret!r}, path)", True),
        ("open(path, 'wb').write(b'x' * (3 * 200_000 + 1))", False),
    ],
    ids=["link-to-a-host-file", "oversized"],
)
def test_a_state_file_the_host_cannot_take_fails_the_candidate(
    sandbox: Sandbox, state_settings: Settings, tmp_path: Path, plant: str, taken: bool
) -> None:
    settings = state_settings
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret\n")
    code = PLANTS.format(plant=plant.format(secret=str(secret)))
    runtime = ToolRuntime(sandbox, settings, device="cpu")
    inp = TrainModelInput(code=code, dataset="digits", epochs=2, **DIGITS)
    runtime.validation_for(inp)
    jobs: list[Any] = []
    runtime.on_call = jobs.append
    # Where the state is taken, the check stops the candidate: the taking is what is tested, and
    # a resumed training would double the test's time.
    decide = _decide(taken, runtime, [])
    out = train_model(runtime, inp, check=EarlyCheck(epoch=1, rule="test", decide=decide))
    assert _leftovers(settings) == []
    assert secret.read_text() == "host secret\n"
    if taken:
        assert out.ok, out.error
        assert out.early_stop is not None
        assert out.early_stop.stopped
        assert [j.tool for j in jobs] == ["train", "score"]
        return
    assert not out.ok
    assert out.error is not None
    assert out.error.type == "InvalidTrainState"
    assert "train-state.pt" in out.error.message
    # No second job ever got the file, and nothing of it stayed on the host.
    assert [j.tool for j in jobs] == ["train"]


@pytest.mark.parametrize("stop", [True, False], ids=["stopped", "goes-on"])
def test_a_candidate_that_ignores_the_pause_is_checked_all_the_same(
    runtime: ToolRuntime, stop: bool
) -> None:
    """The host decides that training pauses: a job that says it did not (and leaves no state)
    has the program it handed over checked; stopped, it has no model; going on, that checked
    program is its final one, and no second training job runs. (The host's decision is the same
    whatever the backend: the warm sandbox runs use.)"""
    settings = runtime.settings
    models_before = _models(settings)
    inp = TrainModelInput(code=SKIPS_THE_CHECK, dataset="digits", epochs=3, **DIGITS)
    validated = runtime.validation_for(inp).program
    assert validated is not None
    jobs: list[Any] = []
    runtime.on_call = jobs.append
    seen: list[dict[str, Any]] = []
    out = train_model(
        runtime, inp, check=EarlyCheck(epoch=1, rule="test", decide=_decide(stop, runtime, seen))
    )
    assert out.ok, out.error
    assert len(seen) == 1  # the check ran
    assert out.early_stop is not None
    assert out.early_stop.stopped is stop
    assert [j.tool for j in jobs] == ["train", "score"] + ([] if stop else ["score"])
    assert validated.directory in _models(settings)
    kept = _models(settings) - models_before - {validated.directory}
    if stop:
        assert out.model_dir is None
        assert kept == set()
    else:
        assert out.model_dir is not None
        assert kept == {out.model_dir}
    assert _leftovers(settings) == []


#: Validated and paused as a small linear model; resumed (its training state handed back), the
#: CNN: so that the check would time the linear model and the CNN would be scored and kept.
SWAPS_AT_RESUME = """
import os
import torch.nn as nn
import torch.optim

# Every training job is lent a train-state.pt; a resumed one's holds the paused state.
STATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train-state.pt")
RESUMED = os.path.exists(STATE) and os.path.getsize(STATE) > 0
if RESUMED:  # the paused linear model's state does not fit the CNN: load what fits, if anything
    _load = nn.Module.load_state_dict
    nn.Module.load_state_dict = lambda self, state, strict=True, assign=False: _load(
        self, state, strict=False
    )
    torch.optim.Optimizer.load_state_dict = lambda self, state: None

def build_model(input_shape, num_classes):
    c, h, w = input_shape
    if RESUMED:
        return nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * h * w, num_classes),
        )
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))
"""
#: A linear model in the validation job (no training data loaded yet), a CNN in training: so that
#: count_params and the FLOPs would describe a model other than the one trained and measured.
SWAPS_IN_TRAINING = """
import sys
import torch.nn as nn

def build_model(input_shape, num_classes):
    c, h, w = input_shape
    if any("train" in f.f_code.co_name for f in _frames()):
        return nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(32 * h * w, num_classes),
        )
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))

def _frames():
    f = sys._getframe(1)
    while f is not None:
        yield f
        f = f.f_back
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("code", "check"), [(SWAPS_AT_RESUME, True), (SWAPS_IN_TRAINING, False)],
    ids=["another-model-after-the-pause", "another-model-in-training"],
)  # fmt: skip
def test_a_candidate_that_trains_another_model_than_it_validated_fails(
    sandbox: Sandbox, swap_settings: Settings, code: str, check: bool
) -> None:
    """One program from validation to the end: what count_params counted, what the early check
    timed and what is scored are one graph, or the candidate fails and keeps no model.

    Slow: a whole training job with an early-stopping check, then a refused handover, on each
    backend; on Docker it took 66.8 s and 70.2 s in the last two CI runs."""
    settings = swap_settings
    models_before = _models(settings)
    runtime = ToolRuntime(sandbox, settings, device="cpu")
    inp = TrainModelInput(code=code, dataset="digits", epochs=2, **DIGITS)
    validated = runtime.validation_for(inp).program
    assert validated is not None
    assert validated.params == 64 * 10 + 10  # the linear model
    seen: list[dict[str, Any]] = []
    early = EarlyCheck(epoch=1, rule="test", decide=_decide(False, runtime, seen))
    out = train_model(runtime, inp, check=early if check else None)
    assert not out.ok
    assert out.error is not None
    assert out.error.type == "ProgramMismatch", out.error
    assert "is not the program that was validated" in out.error.message
    assert out.model_dir is None
    assert out.params is None
    if check:  # the check saw the linear model; the CNN that followed was refused
        assert len(seen) == 1
    assert validated.directory in _models(settings)
    assert _models(settings) - models_before <= {validated.directory}
    assert _leftovers(settings) == []


def test_training_an_unvalidated_candidate_validates_it_first(runtime: ToolRuntime) -> None:
    """train_model called on its own (no check_shapes or count_params before) still compares
    the trained program with a validated one."""
    jobs: list[Any] = []
    runtime.on_call = jobs.append
    code = CNN.replace("nn.Dropout(0.2)", "nn.Dropout(0.25)")  # not validated in this module
    out = train_model(runtime, TrainModelInput(code=code, dataset="digits", epochs=1, **DIGITS))
    assert out.ok, out.error
    assert [j.tool for j in jobs] == ["build", "inspect", "train", "score"]


def test_a_run_records_a_stopped_candidate_and_never_makes_it_the_best(
    tmp_path: Path, runtime: ToolRuntime
) -> None:
    # An FPS target no model meets here, so the run does not end at its first candidate.
    spec = TaskSpec(
        dataset="synthetic",
        input_shape=(3, 16, 16),
        num_classes=4,
        fps_threshold=1e9,
        fps_priority=1.0,
    )
    arch = ScriptedArchitect(proposals=[GOOD.format(width=32), BLIND, GOOD.format(width=48)],
                             repairs=[])  # fmt: skip
    tools = runtime
    jobs: list[Any] = []
    tools.on_call = jobs.append
    # A wide margin: the third candidate (another seed) goes on even if it starts slower.
    run = RunSettings(epochs=3, iterations=3, early_stop=True, early_stop_margin=0.2)
    ctx = AgentContext(tools=tools, settings=run, architect=arch)
    state0 = initial_state("test", spec.model_dump(mode="json"))
    with open_checkpointer(tmp_path / "run", None) as saver:
        state = drive(saver, "early", ctx, state0, lambda *_: None)
    history = state["history"]
    assert [h["status"] for h in history] == ["evaluated", STOPPED_EARLY, "evaluated"], [
        (h["status"], h.get("early_stop")) for h in history
    ]
    first, blind, third = history
    assert first["early_stop"]["reason"] == "no best yet to compare with"
    check = blind["early_stop"]
    assert check["stopped"]
    assert check["epoch"] == 1
    assert check["epochs"] == 3
    assert "below the best's" in check["reason"]
    assert check["bound"]["combined_metric_bound"] < check["bound"]["best_combined_metric"]
    assert blind["combined_metric"] is None
    assert blind["is_best"] is False
    assert blind["model_dir"] is None
    assert blind["metrics"]["val_accuracy"] is None
    assert blind["metrics"]["params"] == 4 + 4  # Linear(1, 4): known from validation
    # The stopped one was measured once at the check and never timed for speed or energy.
    starts = [i for i, j in enumerate(jobs) if j.tool == "build"]
    assert len(starts) == 3
    # Each candidate is scored and timed once at the check, on the paused program; the one that
    # goes on is scored again when trained, not timed again (the same graph, the same figures).
    measuring = ("train", "score", "speed")
    second = [j.tool for j in jobs[starts[1] : starts[2]] if j.tool in measuring]
    assert second == ["train", "score", "speed"]
    last = [j.tool for j in jobs[starts[2] :] if j.tool in measuring]
    assert last[:5] == ["train", "score", "speed", "train", "score"]
    assert third["measurement"]["speed_and_energy"].startswith("exclusive, on the program paused")
    assert third["metrics"]["fps"] > 0
    assert blind["metrics"]["fps"] > 0  # its speed, measured at the check, is on record
    assert state["best"] is not None
    assert state["best"]["iteration"] in (1, 3)
    assert state["best"]["early_stop"]["epoch"] == 1
    assert "2" not in state["test_results"]
    assert third["early_stop"]["bound"] is not None  # compared with the best's curve
