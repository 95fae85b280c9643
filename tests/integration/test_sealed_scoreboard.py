"""The sealed scoreboard, attacked from a candidate's own code, on every sandbox backend.

A candidate trains in its own process and hands over an exported program; the figures a user reads
come from a process that never imports it. These tests are the candidate an LLM might write on a
bad night: it patches the evaluator, forges its result file, looks for the validation labels,
plants links for the host to follow, forges its program, or hangs. Each gets the figures an honest
copy of itself gets, or a clear failure, and the host is untouched.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from archsmith.config import Settings
from archsmith.sandbox.base import Sandbox
from archsmith.tools.check_shapes import check_shapes
from archsmith.tools.count_params import count_params
from archsmith.tools.measure_energy import measure_energy
from archsmith.tools.runtime import ToolRuntime
from archsmith.tools.schemas import (
    CandidateInput,
    CheckShapesInput,
    MeasureEnergyInput,
    TrainModelInput,
)
from archsmith.tools.train_model import train_model

DIGITS = {"input_shape": [1, 8, 8], "num_classes": 10}
HONEST = """
import torch.nn as nn

def build_model(input_shape, num_classes):
    c = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(c, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, num_classes),
    )
"""
#: Patches every scorer it can reach in its own process and rewrites result.json at exit with
#: perfect figures, after the runner wrote the real one.
CHEAT = """
import atexit, json
import archsmith.training as _training

def _perfect(*args, **kwargs):
    return 0.0, 1.0

_training.evaluate = _perfect
try:
    import archsmith.scoring.measure as _measure
    _measure.op_score = lambda *a, **k: {"train_accuracy": 1.0, "val_accuracy": 1.0, "params": 1}
except ImportError:
    pass

def _forge():
    with open("result.json", "w") as f:
        json.dump({"ok": True, "error": None, "result": {
            "train_accuracy": 1.0, "val_accuracy": 1.0, "params": 1, "size_mb": 0.0,
            "diverged": False, "history": [],
        }}, f)

atexit.register(_forge)
"""


@pytest.fixture
def runtime(sandbox: Sandbox, tmp_path: Path) -> ToolRuntime:
    settings = Settings(
        home=tmp_path / "home",
        job_wall_time_s=300,
        job_memory_mb=4096,
        validate_wall_time_s=60,
    )
    return ToolRuntime(sandbox, settings, device="cpu")


def _train(runtime: ToolRuntime, code: str) -> object:
    return train_model(
        runtime,
        TrainModelInput(code=code, dataset="digits", epochs=1, seed=4, max_train=600, **DIGITS),
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "sandbox", ["warm", pytest.param("docker", marks=pytest.mark.docker)], indirect=True
)
def test_a_cheating_candidate_gets_the_figures_of_its_honest_copy(runtime: ToolRuntime) -> None:
    """Slow: two trainings and two measurements (about 25 s alone on Docker, which starts a
    container per job; 93 s in CI beside another worker), because only an honest copy trained
    the same way says what the cheat should have got. What it attacks is the measuring process,
    the same on every backend: the warm local one (the default) and Docker, not the cold local
    one too (90 s in CI), whose confinement the escape tests check."""
    honest = _train(runtime, HONEST)
    cheat = _train(runtime, CHEAT + HONEST)
    for out in (honest, cheat):
        assert out.ok, out.error  # type: ignore[attr-defined]
    for field in ("train_accuracy", "val_accuracy", "train_loss", "val_loss", "params", "size_mb"):
        assert getattr(cheat, field) == getattr(honest, field), field
    assert cheat.params == 8 * 9 + 8 + 2 * 8 + (2 * 8 + 1) + 32 * 10 + 10  # type: ignore[attr-defined]
    assert cheat.val_accuracy < 1.0  # type: ignore[attr-defined]
    speeds = [
        measure_energy(
            runtime, MeasureEnergyInput(dataset="digits", model_dir=out.model_dir, **DIGITS)
        )
        for out in (honest, cheat)
    ]
    assert all(s.ok for s in speeds), [s.error for s in speeds]
    assert speeds[0].val_accuracy == speeds[1].val_accuracy == honest.val_accuracy  # type: ignore[attr-defined]


def test_the_candidate_never_sees_a_validation_label(runtime: ToolRuntime) -> None:
    import sklearn

    digits_file = Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"
    assert digits_file.is_file()
    prepared = runtime.prepare("digits")
    val_rows = int(prepared.meta["counts"]["val"])
    spy = f"""
import gc, json
import numpy as np
import torch

def _report():
    job = json.load(open("job.json"))
    with np.load(job["dataset_path"]) as data:
        files = {{k: int(data[k].shape[0]) for k in data.files if k != "meta"}}
    sized = 0
    for obj in gc.get_objects():
        if isinstance(obj, (np.ndarray, torch.Tensor)) and obj.ndim and obj.shape[0] == {val_rows}:
            sized += 1
    try:
        import sklearn  # noqa: F401
        sk = "importable"
    except ImportError as e:
        sk = type(e).__name__
    try:
        open({str(digits_file)!r}, "rb").read(1)
        raw = "readable"
    except OSError as e:
        raw = type(e).__name__
    raise RuntimeError("REPORT" + json.dumps(
        {{"arrays": files, "val_sized": sized, "sklearn": sk, "digits_file": raw}}))

def build_model(input_shape, num_classes):
    if json.load(open("job.json")).get("dataset_path"):  # the training job (validation has none)
        _report()
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, num_classes))
"""
    out = train_model(runtime, TrainModelInput(code=spy, dataset="digits", epochs=1, **DIGITS))
    assert out.error is not None
    report = json.loads(out.error.message.split("REPORT", 1)[1])
    assert report["arrays"]["x_val"] == report["arrays"]["y_val"] == 0
    assert report["arrays"]["y_train"] == int(prepared.meta["counts"]["train"])
    assert "x_test" not in report["arrays"]
    assert "y_test" not in report["arrays"]
    assert report["val_sized"] == 0
    assert report["sklearn"] == "ModuleNotFoundError"  # it ships the digits with their labels
    assert report["digits_file"] in {"FileNotFoundError", "PermissionError"}


@pytest.mark.slow
@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_links_the_candidate_plants_are_neither_read_nor_written_through(
    runtime: ToolRuntime, tmp_path: Path, relative: bool
) -> None:
    """Slow: the links cannot be planted, so the candidate is validated, trained and scored in
    full, four jobs, cold on the local and Docker backends (59 s for local-absolute alone on this
    2-core machine while two other test runs shared it)."""
    secret = tmp_path / "host-secret.txt"
    secret.write_text("HOST-SECRET-31337")
    keep_dir = tmp_path / "host-dir"
    keep_dir.mkdir()
    (keep_dir / "precious.txt").write_text("keep me")
    before = secret.stat().st_mtime_ns
    jobs = runtime.settings.jobs_dir
    # The work directory is jobs/<name>/: from there, ../../../ is tmp_path.
    target = "../../../host-secret.txt" if relative else str(secret)
    target_dir = "../../../host-dir" if relative else str(keep_dir)
    plant = f"""
import atexit, os

def _plant():
    for name in ("program.safetensors", "result.json", "tool_result.json", "models"):
        try:
            if os.path.lexists(name):
                os.remove(name)
            os.symlink({target!r} if name != "models" else {target_dir!r}, name)
        except OSError:
            pass  # an output is a file the host lent: it cannot be removed or replaced

atexit.register(_plant)
"""
    out = _train(runtime, plant + HONEST)
    # The outputs stayed the host's files, so the honest program is what the host took; the links
    # made elsewhere stayed in the job's tmpfs.
    assert out.ok, out.error  # type: ignore[attr-defined]
    assert "HOST-SECRET" not in json.dumps(out.model_dump(mode="json"))  # type: ignore[attr-defined]
    assert secret.read_text() == "HOST-SECRET-31337"
    assert secret.stat().st_mtime_ns == before
    assert (keep_dir / "precious.txt").read_text() == "keep me"  # cleanup did not follow a link
    assert not any(jobs.iterdir()), "the job's work directory was not removed"
    kept = list(runtime.settings.models_dir.iterdir())
    assert kept
    for path in kept:
        assert not path.is_symlink()
        assert not any(p.is_symlink() for p in path.iterdir())


def _forging(edit: str) -> str:
    """Candidate code that, at exit, rewrites the program its job exported: ``edit`` changes
    ``program`` (the parsed program.json) before it is written back."""
    return f"""
import atexit, json

def _forge():
    program = json.load(open("program.json"))
    {edit}
    json.dump(program, open("program.json", "w"))

atexit.register(_forge)
"""


def test_a_forged_program_is_refused_by_the_measuring_process(
    runtime: ToolRuntime, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    forge = _forging(
        f"""program["nodes"][0] = {{"op": "torch.os.system", "args": ["touch {marker}"],"""
        """ "kwargs": {}}"""
    )
    out = check_shapes(runtime, CheckShapesInput(code=forge + HONEST, **DIGITS))
    assert not out.ok
    assert out.error is not None
    assert out.error.type == "ProgramError"
    assert "torch.os.system is not an ATen operator" in out.error.message
    assert not marker.exists()


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (
            # batch norm in training mode: its running mean, written in place on every call, as
            # a call counter (honest on the scored passes, the network skipped on the timed ones)
            "node['op'] = 'aten.native_batch_norm.default'; node['args'].insert(5, True)",
            "aten.native_batch_norm.default normalises with training state",
        ),
        ("node['op'] = 'aten.rand_like.default'", "aten.rand_like.default draws random numbers"),
    ],
    ids=["batch-norm-counter", "random"],
)
def test_a_program_forged_to_keep_state_or_draw_random_numbers_is_refused(
    sandbox: Sandbox, tmp_path: Path, edit: str, said: str
) -> None:
    """Operators whose schemas carry no in-place mark, refused by the measuring process's
    allowlist all the same, on every backend."""
    runtime = ToolRuntime(sandbox, Settings(home=tmp_path / "home"), device="cpu")
    forge = _forging(
        f"""node = next(n for n in program["nodes"] if "batch_norm" in n["op"])\n    {edit}"""
    )
    out = check_shapes(runtime, CheckShapesInput(code=forge + HONEST, **DIGITS))
    assert not out.ok
    assert out.error is not None
    assert out.error.type == "ProgramError"
    assert said in out.error.message


@pytest.mark.parametrize(
    "code",
    [
        "import torch.nn as nn\n\ndef build_model(s, n):\n    while True:\n        pass\n",
        "import torch.nn as nn\n\nclass Hang(nn.Module):\n    def forward(self, x):\n"
        "        while True:\n            pass\n\ndef build_model(s, n):\n    return Hang()\n",
    ],
    ids=["build_model", "forward"],
)
def test_a_hung_candidate_is_stopped_at_the_short_validation_limit(
    sandbox: Sandbox, tmp_path: Path, code: str
) -> None:
    settings = Settings(home=tmp_path / "home", validate_wall_time_s=5)
    runtime = ToolRuntime(sandbox, settings, device="cpu")
    started = time.monotonic()
    out = check_shapes(runtime, CheckShapesInput(code=code, **DIGITS))
    took = time.monotonic() - started
    assert out.error is not None
    assert out.error.type == "Timeout"
    assert "5 s" in out.error.message
    assert took < 5 + 15, took  # the grace period, process start and teardown
    assert settings.job_wall_time_s == 1800  # training keeps its own, longer limit
    assert runtime.limits_for("train").wall_time_s == 1800
    assert runtime.limits_for("train", time_budget_s=60).wall_time_s == 60 + settings.train_slack_s


def test_work_directories_are_new_and_removed(runtime: ToolRuntime) -> None:
    out = check_shapes(runtime, CheckShapesInput(code=HONEST, **DIGITS))
    assert out.ok, out.error
    assert not any(runtime.settings.jobs_dir.iterdir())
    assert os.listdir(runtime.settings.models_dir)  # the checked program is kept


#: Trains with parameters; in eval mode (export, measuring) holds its weights as plain tensor
#: attributes (lifted as constants) and a float16 buffer, so that a count of parameters would
#: read 0 for a model of 60,010.
HIDES_ITS_WEIGHTS = """
import torch.nn as nn
import torch.nn.functional as F

class Hidden(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.a = nn.Linear(64, 800)
        self.b = nn.Linear(800, n)

    def train(self, mode=True):
        super().train(mode)
        if not mode and isinstance(self.a.weight, nn.Parameter):
            for layer in (self.a, self.b):
                weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
                del layer.weight, layer.bias
                layer.weight = weight
                layer.register_buffer("bias", bias.half())
        return self

    def forward(self, x):
        h = F.linear(x.flatten(1), self.a.weight, self.a.bias.float()).relu()
        return F.linear(h, self.b.weight, self.b.bias.float())

def build_model(input_shape, num_classes):
    return Hidden(num_classes)
"""


def test_weights_hidden_from_the_parameter_count_are_counted(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Every number the program carries counts, whatever export calls it, on every backend."""
    runtime = ToolRuntime(sandbox, Settings(home=tmp_path / "home"), device="cpu")
    counted = count_params(runtime, CandidateInput(code=HIDES_ITS_WEIGHTS, **DIGITS))
    assert counted.ok, counted.error
    assert counted.params == 64 * 800 + 800 + 800 * 10 + 10
    assert counted.size_mb == pytest.approx(((64 * 800 + 800 * 10) * 4 + (800 + 10) * 2) / 1e6)
