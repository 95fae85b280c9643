"""``archsmith bench`` as a user runs it: the real command on the real NAS-Bench-Macro table."""

from __future__ import annotations

import importlib.util
import itertools
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from benchdata import write_space_file
from clitools import SCRIPT, env_for
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from archsmith.bench.components import RealComponents

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
MACRO = DATA / "nas-bench-macro_cifar10.json"
SVG = "{http://www.w3.org/2000/svg}"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("archsmith.bench.spaces") is None
        or importlib.util.find_spec("archsmith.bench.strategies") is None
        or importlib.util.find_spec("archsmith.bench.objectives") is None,
        reason="archsmith.bench.spaces, .objectives or .strategies is not there yet",
    ),
    pytest.mark.skipif(not MACRO.is_file(), reason=f"{MACRO} is absent (no shared data here)"),
]


class ScriptedLLM(RealComponents):
    """The package's components, but a chat model that answers from a script, offline."""

    def make_llm(self, value: str, base_url: str | None) -> Any:
        answers = ("22212220", "11111111", "22222222", "12121212", "01201201")
        return FakeListChatModel(responses=[f"ARCH: {a}" for a in answers])


GRID = ["-b", "macro", "-O", "accuracy", "-s", "random", "-s", "evolution", "--seeds", "5"]


def bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "bench", "--data-dir", str(DATA), *args],
        capture_output=True,
        text=True,
        env=env_for(tmp_path),
        cwd=tmp_path,
        timeout=300,
    )


def searches(out: Path) -> list[dict[str, Any]]:
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = data["searches"]
    for s in found:
        s.pop("seconds")
    return found


def test_a_small_grid_on_nas_bench_macro(tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = bench(tmp_path, *GRID, "-j", "2", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "Best rank after 10 evaluations over 5 seeds" in result.stdout
    for word in ("nas-bench-macro", "random", "evolution", "results.json"):
        assert word in result.stdout
    assert "10/10" in result.stderr  # the progress bar finished

    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert data["format"] == 2
    assert data["command"].startswith("archsmith bench -b macro -O accuracy")
    assert len(data["searches"]) == 2 * 5
    for s in data["searches"]:
        assert s["evaluations"] == 10, s
        assert len(s["best_rank_so_far"]) == 10
        assert all(1 <= r <= 6561 for r in s["best_rank_so_far"])
        assert s["best_rank_so_far"] == sorted(s["best_rank_so_far"], reverse=True)
        assert s["best_rank"] == s["best_rank_so_far"][-1]
        assert len(s["best_arch"]) == 8
        assert set(s["best_arch"]) <= set("012")
        assert 0 < s["best_accuracy"] < 1
        assert s["best_m_factor"] is not None
    assert [(a["strategy"], a["seeds"]) for a in data["aggregates"]] == [
        ("random", 5),
        ("evolution", 5),
    ]
    assert {s["kind"] for s in data["skipped"]} <= {"strategy"}  # llm: no key in this env

    md = (out / "results.md").read_text(encoding="utf-8")
    assert data["command"] in md
    assert "![best rank so far](best_so_far_macro_cifar10_accuracy.svg)" in md
    root = ET.parse(out / "best_so_far_macro_cifar10_accuracy.svg").getroot()
    paths = root.findall(f".//{SVG}path")
    assert [p.get("class") for p in paths] == ["median", "median"]
    strategies = [g.get("data-strategy") for g in root.findall(f".//{SVG}g[@class='strategy']")]
    assert strategies == ["random", "evolution"]

    # The same grid on one process gives the same searches.
    again = tmp_path / "again"
    result = bench(tmp_path, *GRID, "-j", "1", "-o", str(again))
    assert result.returncode == 0, result.stderr
    assert searches(again) == searches(out)


def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = bench(tmp_path, "-b", "macro", "-s", "llm", "-o", str(out))
    assert result.returncode == 2, result.stderr
    assert "needs an LLM" in result.stderr
    result = bench(tmp_path, "-b", "macro", "-O", "latency", "-o", str(out))
    assert result.returncode == 2, result.stderr
    assert "not applicable" in result.stderr
    assert not out.exists()
    assert not (tmp_path / "bench-results").exists()


def write_space(folder: Path) -> Path:
    """A space file and its table, written from a small made-up table of 4 positions."""
    table = {}
    for arch in itertools.product(range(3), repeat=4):
        convs = sum(c > 0 for c in arch)
        table["".join(map(str, arch))] = {
            "accuracy": 60.0 + 5.0 * convs + 2.0 * (arch[0] == 2) - 3.0 * (arch[-1] == 2),
            "params": 1_000 + 800 * sum(arch),
            "latency_ms": {"mcu": 1.0 + 2.0 * sum(arch)},
        }
    fields = {
        "name": "tiny-cells",
        "dataset": "sensor-data",
        "choices": ["identity", "conv3", "conv5"],
        "roles": {"identity": "identity"},
        "accuracy_unit": "percent",
    }
    return write_space_file(folder, table, fields)


def test_a_users_space_file_runs_every_strategy(tmp_path: Path) -> None:
    out = tmp_path / "results"
    space = write_space(tmp_path)
    result = bench(tmp_path, "--space", str(space), "--seeds", "3", "--budget", "8", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "tiny-cells, sensor-data, accuracy (81 architectures)" in " ".join(result.stdout.split())
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [b["benchmark"] for b in data["benchmarks"]] == ["tiny-cells"]
    assert data["strategies"] == ["rulebook", "random", "evolution", "tpe", "rl"]
    assert {a["objective"] for a in data["aggregates"]} == {"accuracy", "m-factor", "latency"}
    assert all(s["evaluations"] == 8 for s in data["searches"])
    rulebook = [s for s in data["searches"] if s["strategy"] == "rulebook"]
    edits = {m["edit"] for s in rulebook for e in s["trace"] for m in e.get("moves", [])}
    assert edits
    assert all(e.split(" -> ")[0] in ("identity", "conv3", "conv5") for e in edits)


def test_a_bad_space_file_exits_2_with_the_line(tmp_path: Path) -> None:
    space = write_space(tmp_path)
    table = json.loads((tmp_path / "table.json").read_text())
    table["0003"] = table.pop("0002")
    (tmp_path / "table.json").write_text(json.dumps(table, indent=1))
    out = tmp_path / "results"
    result = bench(tmp_path, "--space", str(space), "-o", str(out))
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "table.json, line" in message
    assert "'0003' is not a code of this space" in message
    assert not out.exists()


@pytest.mark.llm
def test_the_llm_strategy_runs_in_the_main_process_beside_the_workers() -> None:
    """The real GENIUS strategy with a scripted chat model (not picklable, so never shipped to a
    worker) next to a pooled baseline."""
    from archsmith.bench.config import BenchConfig
    from archsmith.bench.runner import run_bench

    config = BenchConfig(
        benchmarks=["macro"], objectives=["accuracy"], strategies=["llm", "random"], seeds=2,
        budget=5, data_dir=DATA, llm="openai:scripted", jobs=2,
    )  # fmt: skip
    result = run_bench(config, components=ScriptedLLM())
    llm = [s for s in result.searches if s.strategy == "llm"]
    assert [s.seed for s in llm] == [0, 1]
    assert all(s.evaluations == 5 for s in result.searches)
    assert all(len(s.llm_calls) >= 5 for s in llm)
    assert llm[0].best_arch == "22212220"
    assert llm[0].best_rank == 1  # the table's best, tied with 22212202
    assert [a.strategy for a in result.aggregates] == ["llm", "random"]
