"""Export end to end: a CNN really trained on digits, real exporters, files checked in this process.

The exported files are loaded here the way a user would (onnxruntime, ``torch.jit.load``,
``build_model`` from the exported ``model.py`` with the safetensors weights) and compared on real
validation samples, preprocessed with the numbers the card gives, against the trained weights (the
tensors of the measured program, ``program.safetensors``).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file, load_model, save_file
from torch import nn

from archsmith.config import Settings
from archsmith.data.prepared_format import load_prepared, save_prepared
from archsmith.errors import InputError
from archsmith.export import ExportError, ExportResult, export_model
from archsmith.sandbox.base import Sandbox, SandboxJob, prepare_work_dir
from archsmith.sandbox.local import LocalSandbox, bwrap_path
from archsmith.sandbox.runner import run_job
from archsmith.scoring.format import FORMAT, PROGRAM_FILE, TENSORS_FILE, VERSION
from archsmith.scoring.handover import model_files
from archsmith.scoring.program import export_program
from archsmith.spec import TaskSpec
from archsmith.tools.rulebook_advice import advise
from archsmith.tools.runtime import ToolRuntime
from archsmith.tools.schemas import EvaluationMetrics, TrainModelInput
from archsmith.tools.train_model import train_model

CNN = """
import torch.nn as nn

def build_model(input_shape, num_classes):
    c = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
    )
"""

#: torch.export refuses a Python branch on a tensor's value; the legacy exporter traces it.
DATA_DEPENDENT = """
import torch.nn as nn

class Net(nn.Module):
    def __init__(self, c, n):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(c * 64, n))

    def forward(self, x):
        if x.abs().sum() >= 0:
            return self.body(x)
        return -self.body(x)

def build_model(input_shape, num_classes):
    return Net(input_shape[0], num_classes)
"""

#: aten::cummax has no ONNX function in either exporter.
NO_ONNX_OP = """
import torch
import torch.nn as nn

class Net(nn.Module):
    def __init__(self, c, n):
        super().__init__()
        self.fc = nn.Linear(c * 64, n)

    def forward(self, x):
        return self.fc(torch.cummax(x.flatten(1), dim=1).values)

def build_model(input_shape, num_classes):
    return Net(input_shape[0], num_classes)
"""

#: Traces (batch 2 takes the branch), but the trace computes something else at any other batch
#: size; TorchScript's compiler handles the branch.
BATCH_SPECIFIC = """
import torch.nn as nn

class Net(nn.Module):
    def __init__(self, c, n):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(c * 64, n))

    def forward(self, x):
        out = self.body(x)
        if x.shape[0] == 2:
            return out * 2
        return out

def build_model(input_shape, num_classes):
    return Net(input_shape[0], num_classes)
"""

#: The same, with a try block TorchScript's compiler refuses: no exporter gives a matching file.
BATCH_SPECIFIC_UNSCRIPTABLE = BATCH_SPECIFIC.replace(
    "        out = self.body(x)\n",
    "        try:\n"
    "            out = self.body(x)\n"
    "        except RuntimeError:\n"
    "            raise\n",
)

DIGITS = {"input_shape": [1, 8, 8], "num_classes": 10}
SPEC = {"dataset": "digits", **DIGITS, "val_accuracy_threshold": 0.9, "fps_threshold": 100.0}
RUN = {
    "run_id": "20260101-000000-test",
    "request": "a digits classifier | fast",
    "status": "finished",
    "llm": "offline",
    "sandbox": "local",
    "device": "cpu",
    "epochs": 1,
    "max_iterations": 3,
    "iterations_done": 2,
    "created_at": 1767225600.0,
    "duration_s": 42.0,
    "planner": "rules",
}


@dataclass
class Trained:
    runtime: ToolRuntime
    best: dict[str, Any]
    model_dir: Path


def _settings(home: Path) -> Settings:
    return Settings(home=home, job_wall_time_s=300, job_memory_mb=4096)


@pytest.fixture(scope="module")
def trained(warm_local_sandbox: LocalSandbox, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A candidate really trained for one epoch, and the history entry the critic would make.

    Only ``train_model`` runs (count_params and measure_energy would add 15 s): what it did not
    measure (FPS, latency, parameters) must show as not measured on the card. The export jobs
    run in the warm sandbox that runs use; the backend is not the point here.
    """
    runtime = ToolRuntime(
        warm_local_sandbox, _settings(tmp_path_factory.mktemp("export") / "home"), device="cpu"
    )
    train = train_model(
        runtime, TrainModelInput(code=CNN, dataset="digits", epochs=1, seed=0, **DIGITS)
    )
    assert train.ok, train.error
    assert train.model_dir is not None
    metrics = EvaluationMetrics(
        train_accuracy=train.train_accuracy or 0.0,
        val_accuracy=train.val_accuracy or 0.0,
        train_energy_kwh_pue=train.train_energy_kwh_pue or 0.0,
        val_energy_kwh_pue=0.0,
        fps=0.0,
        params=0,
    )
    best = {
        "iteration": 2,
        "summary": "two conv layers, batch norm, global pooling",
        "applied": ["IA: deeper", "DP: fewer parameters"],
        "arch": None,
        "code": CNN,
        "metrics": metrics.model_dump(mode="json"),
        "combined_metric": advise(metrics, TaskSpec.model_validate(SPEC)).combined_metric,
        "energy_sources": {"train": train.train_energy_source, "val": None},
        "model_dir": str(train.model_dir),
        "validation": None,
        "fired_rules": [],
        "instructions": [],
    }
    return Trained(runtime, best, train.model_dir)


@pytest.fixture(scope="module")
def val(trained: Trained) -> tuple[np.ndarray, np.ndarray]:
    data = load_prepared(trained.runtime.prepare("digits").path)
    return data.x_val, data.y_val


def _normalise(x: np.ndarray, card: dict[str, Any]) -> np.ndarray:
    """The preprocessing exactly as the card describes it."""
    pre = card["preprocessing"]
    mean = np.array(pre["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.array(pre["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    out: np.ndarray = (x.astype(np.float32) - mean) / std
    return out


def _rebuilt(out_dir: Path) -> nn.Module:
    """``build_model`` from the exported model.py, with the exported safetensors weights."""
    spec = importlib.util.spec_from_file_location(f"exported_{out_dir.name}", out_dir / "model.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model: nn.Module = module.build_model((1, 8, 8), 10)
    load_model(model, str(out_dir / "model.safetensors"))
    return model.eval()


def _trained_model(code: str, model_dir: Path) -> nn.Module:
    """The candidate with the tensors of its measured program, loaded here in the test."""
    namespace: dict[str, Any] = {}
    exec(compile(code, "candidate", "exec"), namespace)
    model: nn.Module = namespace["build_model"]((1, 8, 8), 10)
    tensors = load_file(str(model_dir / TENSORS_FILE))
    aliases = json.loads((model_dir / PROGRAM_FILE).read_text())["aliases"]
    tensors.update({alias: tensors[name] for alias, name in aliases.items()})
    model.load_state_dict({k: v for k, v in tensors.items() if k in model.state_dict()})
    return model.eval()


def _logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        out: np.ndarray = model(torch.from_numpy(x)).numpy()
    return out


def _export(trained: Trained, out_dir: Path, fmt: Any, **best: Any) -> ExportResult:
    return export_model(
        trained.runtime,
        run=RUN,
        spec=SPEC,
        best={**trained.best, **best},
        fmt=fmt,
        out_dir=out_dir,
    )


def test_onnx_export_matches_pytorch_on_real_samples(
    trained: Trained, val: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    out_dir = tmp_path / "onnx"
    result = _export(trained, out_dir, "onnx")
    assert sorted(p.name for p in out_dir.iterdir()) == result.files
    assert result.files == [
        "MODEL_CARD.md",
        "model.onnx",
        "model.py",
        "model.safetensors",
        "model_card.json",
    ]
    card = json.loads((out_dir / "model_card.json").read_text())
    assert card == result.card
    assert card["export"]["exporter"] == "dynamo"
    assert card["export"]["fallback_reason"] is None
    assert card["export"]["opset"] == 18
    assert result.check["onnx"]["passed"]
    assert result.check["onnx"]["max_abs_diff"] < 1e-4
    assert result.check["onnx"]["argmax_agree"]
    assert result.check["onnx"]["samples"] == 256
    assert result.check["safetensors"]["max_abs_diff"] == 0.0
    # Checked again by the host's measuring process, without the candidate's code.
    verified = card["export"]["verified"]
    assert verified["safetensors"] == {
        "tensors": len(load_file(str(out_dir / "model.safetensors"))),
        "equal": True,
    }
    assert verified["onnx"]["passed"]
    assert verified["onnx"]["split"] == "val"
    assert verified["onnx"]["samples"] == 256
    assert card["input"] == {"name": "input", "shape": ["batch", 1, 8, 8], "dtype": "float32"}

    x_raw, y = val
    x = _normalise(x_raw, card)
    session = ort.InferenceSession(str(out_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(["logits"], {"input": x})[0]
    rebuilt = _logits(_rebuilt(out_dir), x)
    trained_logits = _logits(_trained_model(CNN, trained.model_dir), x)
    np.testing.assert_array_equal(rebuilt, trained_logits)
    np.testing.assert_allclose(onnx_logits, trained_logits, atol=1e-4, rtol=1e-3)
    assert (onnx_logits.argmax(1) == trained_logits.argmax(1)).all()
    # A symbolic batch: one sample and an odd batch size run too.
    for n in (1, 7):
        part = session.run(["logits"], {"input": x[:n]})[0]
        np.testing.assert_allclose(part, trained_logits[:n], atol=1e-4, rtol=1e-3)
    # The card's preprocessing is the one training used: the file reproduces the measured accuracy.
    accuracy = float((onnx_logits.argmax(1) == y).mean())
    assert accuracy == pytest.approx(card["metrics"]["val_accuracy"]["value"], abs=1.5 / len(y))

    metrics = card["metrics"]
    assert metrics["val_accuracy"]["value"] == trained.best["metrics"]["val_accuracy"]
    assert metrics["val_accuracy"]["symbol"] == "V_Acc"
    assert metrics["train_accuracy"]["value"] == trained.best["metrics"]["train_accuracy"]
    assert metrics["combined_metric"]["value"] == trained.best["combined_metric"]
    energy = metrics["train_energy_kwh_pue"]
    assert energy["source"] == "estimate"  # no RAPL or NVML counter here
    assert energy["measured"] is False
    assert energy["value"] == trained.best["metrics"]["train_energy_kwh_pue"] > 0
    # Not measured is said, not filled with the critic's zeros.
    for name in ("val_energy_kwh_pue", "fps", "params", "flops_per_sample", "latency_ms"):
        assert metrics[name]["value"] is None, name
    assert card["provenance"]["iteration"] == 2
    assert card["provenance"]["applied"] == ["IA: deeper", "DP: fewer parameters"]
    assert {t["symbol"] for t in card["targets"]} >= {"TV_Acc", "TF", "TT_E", "TV_E"}
    files = {f["name"]: f for f in card["files"]}
    assert set(files) == {"model.onnx", "model.py", "model.safetensors"}
    assert files["model.onnx"]["bytes"] == (out_dir / "model.onnx").stat().st_size
    md = (out_dir / "MODEL_CARD.md").read_text()
    assert "not a measurement" in md
    assert "Estimates, not measurements:** train_energy_kwh_pue." in md
    assert "| fps | F | not measured | frames/s |" in md
    assert "a digits classifier \\| fast" in md
    assert "onnxruntime" in card["usage"]
    assert "pytorch" in card["usage"]
    # The export job's directory (a copy of the weights and the files) is gone once copied.
    assert [p for p in trained.runtime.settings.jobs_dir.iterdir() if "-export-" in p.name] == []


def test_torchscript_export_loads_and_matches(
    trained: Trained, val: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    out_dir = tmp_path / "ts"
    result = _export(trained, out_dir, "torchscript")
    assert "model.torchscript.pt" in result.files
    assert "model.onnx" not in result.files
    assert result.card["export"]["exporter"] == "torch.jit.trace"
    assert result.check["torchscript"]["passed"]
    x = _normalise(val[0], result.card)
    loaded = torch.jit.load(str(out_dir / "model.torchscript.pt")).eval()
    expected = _logits(_trained_model(CNN, trained.model_dir), x)
    with torch.inference_mode():
        for n in (len(x), 1, 5):
            got = loaded(torch.from_numpy(x[:n])).numpy()
            np.testing.assert_allclose(got, expected[:n], atol=1e-4, rtol=1e-3)


def test_pytorch_export_replaces_a_folder_only_when_asked(trained: Trained, tmp_path: Path) -> None:
    out_dir = tmp_path / "pt"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="is not empty"):
        _export(trained, out_dir, "pytorch")
    assert (out_dir / "keep.txt").read_text() == "mine"
    result = export_model(
        trained.runtime,
        run=RUN,
        spec=SPEC,
        best=trained.best,
        fmt="pytorch",
        out_dir=out_dir,
        overwrite=True,
    )
    assert result.files == ["MODEL_CARD.md", "model.py", "model.safetensors", "model_card.json"]
    assert not (out_dir / "keep.txt").exists()
    assert result.card["export"]["exporter"] is None
    assert set(result.check) == {"safetensors"}
    assert "onnxruntime" not in result.card["usage"]
    assert [p.name for p in tmp_path.iterdir()] == ["pt"]  # no temporary or old folder left


def test_a_missing_model_says_which_and_what_to_do(trained: Trained, tmp_path: Path) -> None:
    gone = tmp_path / "models" / "20260101-000000-0"
    with pytest.raises(InputError, match="re-trained") as info:
        _export(trained, tmp_path / "out", "onnx", model_dir=str(gone))
    assert str(gone) in str(info.value)
    assert "archsmith evaluate model.py --dataset digits" in str(info.value)
    with pytest.raises(InputError, match="no trained model"):
        _export(trained, tmp_path / "out", "onnx", model_dir=None)
    # A run from before the sealed scoreboard kept weights only: the same answer.
    with pytest.raises(InputError, match="no trained model"):
        _export(trained, tmp_path / "out", "onnx", model_dir=None, weights_path="/x/weights.pt")
    assert not (tmp_path / "out").exists()


class _Body(nn.Module):
    """What the test candidates with a ``body`` compute at a batch of any size but 2, without
    the branch torch.export refuses: their measured program, under the candidates' own names."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return out


def _untrained_model_dir(code: str, directory: Path) -> Path:
    """Seeded initial tensors of a test candidate, kept as the host keeps a measured program.

    These candidates exist to test exporters that torch.export itself would refuse, so their
    program is exported from what they compute without the branch (``_Body``); the host checks
    the exported files against it. One with no ``body`` keeps an empty graph: its export fails
    before any check.
    """
    torch.manual_seed(0)
    namespace: dict[str, Any] = {}
    exec(compile(code, "candidate", "exec"), namespace)
    model = namespace["build_model"]((1, 8, 8), 10)
    if hasattr(model, "body"):
        export_program(_Body(model.body).eval(), torch.rand(2, 1, 8, 8), directory)
        return directory
    state = model.state_dict()
    directory.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(directory / TENSORS_FILE))
    program = {
        "format": FORMAT,
        "version": VERSION,
        "input": {"dtype": "float32", "shape": [None, 1, 8, 8]},
        "tensors": {k: "parameter" for k in state},
        "aliases": {},
        "nodes": [],
        "output": None,
    }
    (directory / PROGRAM_FILE).write_text(json.dumps(program))
    return directory


def test_dynamo_failure_falls_back_to_the_legacy_exporter(
    trained: Trained, val: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    weights = _untrained_model_dir(DATA_DEPENDENT, tmp_path / "model")
    out_dir = tmp_path / "out"
    result = _export(trained, out_dir, "onnx", code=DATA_DEPENDENT, model_dir=str(weights))
    export = result.card["export"]
    assert export["exporter"] == "legacy"
    assert "data-dependent" in export["fallback_reason"]
    assert [a["exporter"] for a in export["attempts"]] == ["dynamo", "legacy"]
    assert export["attempts"][0]["line"] == 10  # the `if` on a tensor's value
    assert any("TracerWarning" in w for w in export["warnings"])
    assert "fell back" in (out_dir / "MODEL_CARD.md").read_text()
    x = _normalise(val[0], result.card)
    session = ort.InferenceSession(str(out_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = _logits(_trained_model(DATA_DEPENDENT, weights), x)
    np.testing.assert_allclose(session.run(None, {"input": x})[0], expected, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize(
    ("code", "fmt", "message"),
    [
        pytest.param(
            BATCH_SPECIFIC_UNSCRIPTABLE,
            "torchscript",
            "differs from the trained PyTorch model by up to",
            id="trace-mismatch",
        ),
        pytest.param(NO_ONNX_OP, "onnx", "cummax", id="no-onnx-function"),
    ],
)
def test_unexportable_candidate_fails_cleanly(
    trained: Trained, tmp_path: Path, code: str, fmt: str, message: str
) -> None:
    weights = _untrained_model_dir(code, tmp_path / "model")
    parent = tmp_path / "exports"
    parent.mkdir()
    with pytest.raises(ExportError, match=message) as info:
        _export(trained, parent / "out", fmt, code=code, model_dir=str(weights))
    assert info.value.error is not None
    assert info.value.error.type == "ExportError"
    assert "pytorch" in str(info.value)  # the way out
    assert list(parent.iterdir()) == []
    assert list(trained.runtime.settings.jobs_dir.iterdir()) == []  # nothing left behind


def test_wrong_trace_falls_back_to_torchscript_compiler(
    trained: Trained, val: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    weights = _untrained_model_dir(BATCH_SPECIFIC, tmp_path / "model")
    out_dir = tmp_path / "out"
    result = _export(trained, out_dir, "torchscript", code=BATCH_SPECIFIC, model_dir=str(weights))
    export = result.card["export"]
    assert export["exporter"] == "torch.jit.script"
    assert "differs from the trained PyTorch model" in export["fallback_reason"]
    x = _normalise(val[0], result.card)
    loaded = torch.jit.load(str(out_dir / "model.torchscript.pt")).eval()
    model = _trained_model(BATCH_SPECIFIC, weights)
    with torch.inference_mode():
        for n in (len(x), 2, 1):  # the compiled file keeps the branch: batch 2 doubles
            got = loaded(torch.from_numpy(x[:n])).numpy()
            np.testing.assert_allclose(got, _logits(model, x[:n]), atol=1e-4, rtol=1e-3)


_FULL_DISK = """
import json, sys
from pathlib import Path
from archsmith.config import Settings
from archsmith.errors import InputError
from archsmith.export import export_model
from archsmith.sandbox.local import LocalSandbox
from archsmith.tools.runtime import ToolRuntime

a = json.loads(sys.argv[1])
runtime = ToolRuntime(LocalSandbox(), Settings(**a["settings"]), device="cpu")
try:
    export_model(runtime, run=a["run"], spec=a["spec"], best=a["best"], fmt="pytorch",
                 out_dir=Path("/out/model"))
    error = None
except InputError as e:
    error = str(e)
print(json.dumps({"error": error, "left": sorted(p.name for p in Path("/out").iterdir())}))
"""


def test_full_disk_leaves_nothing_behind(trained: Trained, tmp_path: Path) -> None:
    """The export writes into a 64 KiB tmpfs; the weights alone (about 80 kB) do not fit."""
    bwrap = bwrap_path()
    assert bwrap is not None
    mount = [bwrap, "--dev-bind", "/", "/", "--size", "65536", "--tmpfs", "/out", "--"]
    probe = subprocess.run([*mount, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs with bubblewrap here: {probe.stderr.strip()}")
    settings = trained.runtime.settings
    args = {
        "settings": {
            "home": str(settings.home),
            "job_wall_time_s": 300,
            "job_memory_mb": 4096,
        },
        "run": RUN,
        "spec": SPEC,
        "best": trained.best,
    }
    started = time.perf_counter()
    proc = subprocess.run(
        [*mount, sys.executable, "-c", _FULL_DISK, json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["error"] is not None
    assert "no space left" in report["error"]
    assert "nothing was written" in report["error"]
    assert report["left"] == []
    assert time.perf_counter() - started < 120


def test_text_model_exports_with_int64_token_ids(tmp_path: Path) -> None:
    """The export op itself on a small prepared text dataset: int64 ids in, tied weights kept."""
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(30)]
    arrays = {
        "x_train": rng.integers(0, 32, size=(40, 12), dtype=np.int64),
        "y_train": rng.integers(0, 2, size=40).astype(np.int64),
        "x_val": rng.integers(0, 32, size=(9, 12), dtype=np.int64),
        "y_val": rng.integers(0, 2, size=9).astype(np.int64),
    }
    meta = {
        "name": "tiny-text",
        "task": "text_classification",
        "input_shape": [12],
        "num_classes": 2,
        "class_names": ["neg", "pos"],
        "vocab_size": 32,
    }
    data = save_prepared(tmp_path / "tiny.npz", arrays, meta, vocab)
    code = (
        "import torch.nn as nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, n):\n"
        "        super().__init__()\n"
        "        self.emb = nn.Embedding(32, 8, padding_idx=0)\n"
        "        self.a = nn.Linear(8, 8)\n"
        "        self.b = nn.Linear(8, 8)\n"
        "        self.b.weight = self.a.weight  # tied: one tensor under two names\n"
        "        self.fc = nn.Linear(8, n)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(self.b(self.a(self.emb(x).mean(dim=1)).relu()))\n\n"
        "def build_model(input_shape, num_classes):\n"
        "    return Net(num_classes)\n"
    )
    torch.manual_seed(0)
    namespace: dict[str, Any] = {}
    exec(compile(code, "candidate", "exec"), namespace)
    model = namespace["build_model"]((12,), 2).eval()
    from archsmith.scoring.program import export_program

    export_program(model, torch.from_numpy(arrays["x_train"][:2]), tmp_path / "model")
    job = SandboxJob(
        tool="export",
        args={"format": "onnx"},
        code=code,
        dataset_path=data,
        input_files=model_files(tmp_path / "model"),
    )
    work = tmp_path / "work"
    prepare_work_dir(job, work, dataset_in_sandbox=str(data))
    payload = run_job(work)
    assert payload["ok"], payload["error"]
    result = payload["result"]
    assert result["input"] == {"name": "input", "shape": ["batch", 12], "dtype": "int64"}
    assert result["preprocessing"]["kind"] == "token_ids"
    assert result["checks"]["onnx"]["samples"] == 40  # the training split: all the job has
    session = ort.InferenceSession(str(work / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(int64)"
    x = arrays["x_val"]
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"input": x})[0], expected, atol=1e-4, rtol=1e-3)
    # The tied tensor is stored once and restored under both names.
    fresh = namespace["build_model"]((12,), 2).eval()
    load_model(fresh, str(work / "model.safetensors"))
    assert fresh.b.weight is fresh.a.weight
    torch.testing.assert_close(fresh.a.weight, model.a.weight)


#: The honest CNN, whose export job rewrites a file after its own checks passed, keeping its
#: size (the host compares sizes): the last layer's weights zeroed (idempotent: the candidate
#: module is imported more than once in an export job, so the handler runs more than once).
TAMPERS = (
    CNN
    + """
import atexit, os

_HERE = os.path.dirname(os.path.abspath(__file__))

def _tamper():
    {body}

atexit.register(_tamper)
"""
)
_TAMPER_ONNX = """path = os.path.join(_HERE, "model.onnx")
    if not os.path.exists(path):
        return
    import numpy as np
    import onnx
    from onnx import numpy_helper
    model = onnx.load(path)
    for init in model.graph.initializer:
        if init.name == "8.weight":
            zero = np.zeros_like(numpy_helper.to_array(init))
            init.CopyFrom(numpy_helper.from_array(zero, init.name))
    onnx.save(model, path)"""
_TAMPER_WEIGHTS = """path = os.path.join(_HERE, "model.safetensors")
    if not os.path.exists(path):
        return
    import json, struct
    with open(path, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        begin, end = json.loads(f.read(n))["8.weight"]["data_offsets"]
        f.seek(8 + n + begin)
        f.write(bytes(end - begin))"""


@pytest.mark.parametrize(
    ("fmt", "body", "said"),
    [("onnx", _TAMPER_ONNX, "the onnx file does not compute"),
     ("pytorch", _TAMPER_WEIGHTS, "model.safetensors' 8.weight is not the measured")],
    ids=["onnx-rewritten", "weights-rewritten"],
)  # fmt: skip
def test_a_file_rewritten_after_the_export_checks_is_refused_and_nothing_is_written(
    sandbox: Sandbox, trained: Trained, tmp_path: Path, fmt: str, body: str, said: str
) -> None:
    """The export job runs the candidate's code, so its checks are its own account; the host's
    measuring process checks the files again and nothing reaches the user."""
    runtime = ToolRuntime(sandbox, _settings(tmp_path / "home"), device="cpu")
    parent = tmp_path / "exports"
    parent.mkdir()
    with pytest.raises(ExportError, match=said):
        export_model(
            runtime, run=RUN, spec=SPEC, best={**trained.best, "code": TAMPERS.format(body=body)},
            fmt=fmt, out_dir=parent / "out",
        )  # fmt: skip
    assert list(parent.iterdir()) == []
    assert list(runtime.settings.jobs_dir.iterdir()) == []
