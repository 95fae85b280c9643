"""The ``archsmith`` console script, run as a user runs it: a real process, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from archsmith.tools.schemas import RulebookAdviceOutput

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
SCRIPT = Path(sys.executable).parent / "archsmith"


def archsmith(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1"}
    return subprocess.run(
        [str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


def example(name: str) -> tuple[str, Path, str, Path]:
    return "--metrics", EXAMPLES / name / "metrics.json", "--spec", EXAMPLES / name / "spec.json"


def test_console_script_is_installed() -> None:
    assert SCRIPT.exists(), f"{SCRIPT} missing: install the project with pip install -e ."
    result = archsmith("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("archsmith ")


def test_advise_on_the_papers_worked_example() -> None:
    result = archsmith("advise", *example("paper_example"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "train_accuracy_low" in out
    assert "train_accuracy 0.82 < TT_Acc 0.99 (short by 0.17)" in out
    for code, meaning in [("ACL", "Add convolutional layer"), ("AMK", "Add more kernel"),
                          ("ADL", "Add dense layer"), ("ASC", "Add skip connection")]:  # fmt: skip
        assert code in out
        assert meaning in out
    assert "Combined metric CM = 1.6100" in out


def test_advise_json_on_the_overfitting_example() -> None:
    result = archsmith("advise", *example("overfitting"), "--json")
    assert result.returncode == 0, result.stderr
    advice = RulebookAdviceOutput.model_validate(json.loads(result.stdout))
    fired = {r.rule_id: r for r in advice.fired_rules}
    assert "overfitting" in fired
    assert fired["overfitting"].reason == "generalization_gap 0.134 > OT 0.1 (over by 0.034)"
    kept = [i.code for i in advice.instructions]
    assert {"AD", "AR"} <= set(kept)
    # FPS (PF 0.5) and the parameter limit (1.0) push "reduce" instructions past accuracy's "add".
    assert "RCL" in kept
    assert "ACL" not in kept
    lost = {d.code: d.lost_to for d in advice.dropped if d.lost_to}
    assert lost == {"ACL": "RCL", "AMK": "RK"}


def test_module_entry_point() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "archsmith",
            "advise",
            *map(str, example("paper_example")),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["instructions"][0]["code"] == "ACL"


def _write(tmp_path: Path, name: str, data: Any) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


GOOD_METRICS = json.loads((EXAMPLES / "paper_example" / "metrics.json").read_text())
GOOD_SPEC = json.loads((EXAMPLES / "paper_example" / "spec.json").read_text())


@pytest.mark.parametrize(
    ("metrics", "spec", "expected"),
    [
        (None, GOOD_SPEC, "metrics file {m} does not exist"),
        ('{"train_accuracy": 0.8,', GOOD_SPEC, "metrics file {m} is not valid JSON (line 1"),
        ("[]", GOOD_SPEC, "must hold a JSON object, not list"),
        ({**GOOD_METRICS, "train_accuracy": 82}, GOOD_SPEC,
         "train_accuracy: Input should be less than or equal to 1 (got 82)"),
        ({**GOOD_METRICS, "fsp": 10}, GOOD_SPEC, "fsp: unknown field"),
        ({**GOOD_METRICS, "fps": "fast"}, GOOD_SPEC, "fps: Input should be a valid number"),
        (GOOD_METRICS, {**GOOD_SPEC, "val_accuracy_priority": 1.5},
         "val_accuracy_priority: Input should be less than or equal to 1 (got 1.5); PV_Acc"),
        (GOOD_METRICS, {**GOOD_SPEC, "weight_accuracy": 0},
         "weight_accuracy, weight_energy and weight_fps are all 0"),
        (GOOD_METRICS, {**GOOD_SPEC, "colour": "red"}, "colour: unknown field"),
        (GOOD_METRICS, "", "spec file {s} is not valid JSON"),
    ],
)  # fmt: skip
def test_bad_files_exit_2_with_a_clear_message(
    tmp_path: Path, metrics: Any, spec: Any, expected: str
) -> None:
    m = tmp_path / "metrics.json" if metrics is None else _write(tmp_path, "metrics.json", metrics)
    s = _write(tmp_path, "spec.json", spec)
    result = archsmith("advise", "--metrics", m, "--spec", s)
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert expected.format(m=m, s=s) in message
    assert message.startswith("error:")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_missing_option_is_a_usage_error() -> None:
    result = archsmith("advise", "--metrics", EXAMPLES / "paper_example" / "metrics.json")
    assert result.returncode == 2
    assert "--spec" in result.stderr


def test_rules_lists_table3_and_the_rules() -> None:
    result = archsmith("rules")
    assert result.returncode == 0, result.stderr
    assert "Reduce number of kernel" in result.stdout
    assert "training_diverged" in result.stdout
    as_json = json.loads(archsmith("rules", "--json").stdout)
    assert len(as_json["instructions"]) == 15


def test_custom_rulebook_and_bad_rulebook(tmp_path: Path) -> None:
    data = json.loads(archsmith("rules", "--json").stdout)
    data["rules"] = data["rules"][:1]
    good = _write(tmp_path, "book.json", data)
    result = archsmith("advise", *example("paper_example"), "--rulebook", good, "--json")
    assert result.returncode == 0, result.stderr
    assert [r["rule_id"] for r in json.loads(result.stdout)["fired_rules"]] == [
        "train_accuracy_low"
    ]
    data["instructions"][0]["conflicts_with"] = None
    bad = _write(tmp_path, "bad.json", data)
    result = archsmith("advise", *example("paper_example"), "--rulebook", bad)
    assert result.returncode == 2
    assert "conflicts must be mutual" in result.stderr


LINEAR_MODEL = """
import torch.nn as nn

def build_model(input_shape, num_classes):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))
"""


def _home_env(tmp_path: Path) -> dict[str, str]:
    return {"ARCHSMITH_HOME": str(tmp_path / "home"), "ARCHSMITH_DEVICE": "cpu"}


def archsmith_env(extra: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1", **extra}
    return subprocess.run(
        [str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env, timeout=600
    )


def test_datasets_lists_the_registry(tmp_path: Path) -> None:
    result = archsmith_env(_home_env(tmp_path), "datasets", "--json", "--data-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {
        "digits", "synthetic", "malaria", "cifar10", "cifar100", "eurosat", "imagenet16-120",
        "imdb",
    }  # fmt: skip
    assert rows["digits"]["available"] is True
    assert rows["cifar100"]["available"] is False
    assert "Looked in" in rows["cifar100"]["source"]


def test_evaluate_a_model_file_on_digits(tmp_path: Path) -> None:
    model = tmp_path / "model.py"
    model.write_text(LINEAR_MODEL)
    result = archsmith_env(
        _home_env(tmp_path), "evaluate", model, "--dataset", "digits", "--epochs", "2", "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert list(report) == ["check_shapes", "count_params", "train_model", "measure_energy"]
    assert report["count_params"]["params"] == 650
    assert len(report["train_model"]["history"]) == 2
    assert report["measure_energy"]["fps"] > 0
    assert "epoch 2: on its training batches" in " ".join(result.stderr.split())


def test_evaluate_reports_the_candidates_error(tmp_path: Path) -> None:
    model = tmp_path / "model.py"
    model.write_text(
        "import torch.nn as nn\n\ndef build_model(s, n):\n    return nn.Linear(3, n)\n"
    )
    result = archsmith_env(_home_env(tmp_path), "evaluate", model, "--dataset", "digits")
    assert result.returncode == 1
    assert "candidate failed: RuntimeError" in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "missing.py"], "cannot read model file missing.py"),
        (["evaluate", "{model}", "--dataset", "mnist-ish"], "unknown dataset"),
        (["evaluate", "{model}", "--dataset", "cifar100", "--data-dir", "{tmp}"], "was not found"),
        (["evaluate", "{model}", "--sandbox", "vm"], "--sandbox must be local, docker or none"),
    ],
)
def test_evaluate_bad_input_exits_2(tmp_path: Path, args: list[str], message: str) -> None:
    model = tmp_path / "model.py"
    model.write_text(LINEAR_MODEL)
    argv = [a.format(model=model, tmp=tmp_path) for a in args]
    result = archsmith_env(_home_env(tmp_path), *argv)
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.split()).lower() or message in result.stderr
