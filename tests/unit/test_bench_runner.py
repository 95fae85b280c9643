"""The benchmark runner, its outputs and its command, on tiny fake spaces, objectives, strategies.

The fakes live at module level so that worker processes (started with spawn) can unpickle them.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from archsmith import judge
from archsmith.bench import runner as runner_module
from archsmith.bench.base import Arch, Evaluator, Objective, Record, Strategy, TabularSpace
from archsmith.bench.config import BenchConfig
from archsmith.bench.output import (
    KEEP_MARKER,
    best_so_far_svg,
    heading,
    markdown,
    render_tables,
    write_outputs,
    write_summary,
)
from archsmith.bench.results import BenchResult, SearchResult, aggregate
from archsmith.bench.runner import run_bench
from archsmith.cli_bench import register
from archsmith.errors import InputError
from archsmith.spec import TaskSpec
from archsmith.tools.schemas import EvaluationMetrics

SVG = "{http://www.w3.org/2000/svg}"


# -- fakes ---------------------------------------------------------------------------------------


class FakeSpace:
    """3 positions x 3 choices = 27 architectures; more of choice 2 is more accurate and larger."""

    def __init__(self, name: str, devices: tuple[str, ...]) -> None:
        self.name = name
        self.positions = 3
        self.choices: tuple[str, ...] = ("a", "b", "c")
        self.datasets: tuple[str, ...] = ("cifar10", "cifar100") if devices else ("cifar10",)
        self.devices = devices
        self._archs = list(itertools.product(range(3), repeat=3))

    def size(self) -> int:
        return len(self._archs)

    def all_archs(self) -> Sequence[Arch]:
        return self._archs

    def encode(self, arch: Arch) -> str:
        return "".join(map(str, arch))

    def decode(self, text: str) -> Arch:
        return tuple(int(c) for c in text)

    def record(self, arch: Arch, dataset: str) -> Record:
        weight = sum(c * (i + 1) for i, c in enumerate(arch))  # 0..12, some ties
        bonus = 0.01 if dataset == "cifar100" else 0.0
        params = 1000 * (1 + sum(arch))
        latency = {d: 2.0 + 3.0 * sum(arch) for d in self.devices}
        return Record(accuracy=0.5 + weight / 30 - bonus, params=params, latency_ms=latency)


class OnlyTimedOn10(FakeSpace):
    """Latency measured on cifar10 only, as NAS-Bench-201's file has it."""

    def record(self, arch: Arch, dataset: str) -> Record:
        record = super().record(arch, dataset)
        if dataset == "cifar10":
            return record
        return Record(accuracy=record.accuracy, params=record.params)


class FakeObjective:
    def __init__(self, key: str, device: str | None, max_latency_ms: float | None, alpha: float):
        self.key = key
        self.device = device
        self.limit = max_latency_ms if max_latency_ms is not None else 14.0
        self.alpha = alpha
        self.name = f"latency:{device}<={self.limit:g}ms" if key == "latency" else key
        self.limits = judge.HardLimits(max_latency_ms=self.limit if key == "latency" else None)

    def feasible(self, record: Record) -> bool:
        if self.key != "latency":
            return True
        assert self.device is not None
        return record.latency_ms[self.device] <= self.limit

    def score(self, record: Record) -> float:
        if not self.feasible(record):
            return -math.inf
        if self.key == "m-factor":
            return record.accuracy / math.pow(record.params or 1, 0.1 * self.alpha)
        return record.accuracy

    def spec(self) -> TaskSpec:
        return TaskSpec(dataset="cifar10", input_shape=[3, 32, 32], num_classes=10)

    def metrics(self, record: Record) -> EvaluationMetrics:
        return EvaluationMetrics.model_construct(
            train_accuracy=record.accuracy, val_accuracy=record.accuracy, train_energy_kwh_pue=0.0,
            val_energy_kwh_pue=0.0, fps=1.0, params=record.params or 0,
        )  # fmt: skip


class FakeRandom:
    name = "random"

    def search(self, evaluator: Evaluator, seed: int) -> None:
        rng = random.Random(seed)
        while evaluator.remaining:
            evaluator.evaluate(tuple(rng.randrange(3) for _ in range(3)))


class FakeClimb:
    """Hill climbing, with a trace of why each candidate was chosen (as the rulebook has)."""

    name = "rulebook"

    def __init__(self) -> None:
        self.trace: list[dict[str, Any]] = []

    def search(self, evaluator: Evaluator, seed: int) -> None:
        rng = random.Random(seed * 7919 + 1)
        current = tuple(rng.randrange(3) for _ in range(3))
        while evaluator.remaining:
            e = evaluator.evaluate(current)
            self.trace.append({"arch": list(current), "instructions": ["AMK"], "rank": e.rank})
            pos = rng.randrange(3)
            current = tuple(min(2, c + 1) if i == pos else c for i, c in enumerate(current))


class FakeLazy:
    """Stops after one evaluation: the runner warns and pads its curve."""

    name = "lazy"

    def search(self, evaluator: Evaluator, seed: int) -> None:
        evaluator.evaluate((seed % 3, 0, 0))


class FakeGreedy:
    """Asks past its budget; BudgetExhausted is how it learns to stop."""

    name = "greedy"

    def search(self, evaluator: Evaluator, seed: int) -> None:
        for arch in itertools.cycle([(2, 2, 2), (1, 1, 1), (seed % 3, 1, 2)]):
            evaluator.evaluate(arch)


class FakeChat:
    """Stands for a chat model: not picklable, which is why the llm strategy stays in the main
    process."""

    def __init__(self) -> None:
        self.lock = __import__("threading").Lock()  # makes pickling fail, as real clients do
        self.asked = 0


class FakeLLMStrategy:
    name = "llm"

    def __init__(self, chat: FakeChat) -> None:
        self.chat = chat
        self.llm_calls: list[dict[str, Any]] = []

    def search(self, evaluator: Evaluator, seed: int) -> None:
        rng = random.Random(seed + 100)
        while evaluator.remaining:
            self.chat.asked += 1
            arch = tuple(rng.randrange(3) for _ in range(3))
            self.llm_calls.append({"model": "fake", "prompt": "next?", "response": str(arch)})
            evaluator.evaluate(arch)


class FakeComponents:
    """Two benchmarks ("macro" without devices, "nb201" with pi4 and fpga); ``missing`` names
    benchmarks whose table is "absent"."""

    def __init__(self, missing: tuple[str, ...] = (), llm_ok: bool = True) -> None:
        self.missing = missing
        self.llm_ok = llm_ok

    def strategy_names(self) -> tuple[str, ...]:
        return ("rulebook", "llm", "random", "lazy", "greedy")

    def load_space(self, name: str, data_dir: Path | None) -> TabularSpace:
        if name in self.missing:
            raise InputError(f"the {name} table is not in {data_dir}")
        return FakeSpace(name, ("pi4", "fpga") if name == "nb201" else ())

    def load_space_file(self, path: Path) -> TabularSpace:
        """A file holding just the space's name stands for a user's space."""
        if not Path(path).is_file():
            raise InputError(f"space file {path} does not exist")
        name = Path(path).read_text().strip()
        if not name:
            raise InputError(f"{path}, line 1: the space has no name")
        return FakeSpace(name, ("board",))

    def make_objective(
        self,
        name: str,
        space: TabularSpace,
        dataset: str,
        *,
        device: str | None,
        max_latency_ms: float | None,
        alpha: float,
    ) -> Objective:
        if alpha < 0:
            raise ValueError("alpha must be >= 0")
        return FakeObjective(name, device, max_latency_ms, alpha)

    def make_strategy(self, name: str, *, llm: Any = None) -> Strategy:
        if name == "llm":
            assert isinstance(llm, FakeChat)
            return FakeLLMStrategy(llm)
        assert llm is None
        kinds: dict[str, type[Any]] = {
            "random": FakeRandom,
            "rulebook": FakeClimb,
            "lazy": FakeLazy,
            "greedy": FakeGreedy,
        }
        strategy: Strategy = kinds[name]()
        return strategy

    def make_llm(self, value: str, base_url: str | None) -> Any:
        if not self.llm_ok:
            raise InputError(f"{value} rejected the key")
        return FakeChat()


def bench(components: FakeComponents | None = None, **fields: Any) -> BenchResult:
    fields.setdefault("jobs", 1)
    fields.setdefault("seeds", 3)
    fields.setdefault("budget", 5)
    return run_bench(BenchConfig(**fields), components=components or FakeComponents())


def comparable(result: BenchResult) -> dict[str, Any]:
    """Everything but wall time and the jobs setting."""
    data = result.model_dump(mode="json")
    for s in data["searches"]:
        s.pop("seconds")
    return {k: data[k] for k in ("searches", "aggregates", "skipped", "benchmarks", "strategies")}


# -- the grid ------------------------------------------------------------------------------------


def test_default_grid_runs_what_applies_and_reports_the_rest() -> None:
    result = bench(strategies=None)
    # llm has no LLM configured: skipped with the reason; latency has no devices on macro.
    assert result.strategies == ["rulebook", "random", "lazy", "greedy"]
    skipped = {(s.kind, s.name, s.benchmark, s.dataset): s.reason for s in result.skipped}
    assert "no LLM configured" in skipped[("strategy", "llm", None, None)]
    assert skipped[("objective", "latency", "macro", "cifar10")].startswith("not applicable")
    # Every dataset of a benchmark, by default.
    cells = {(a.benchmark, a.dataset, a.objective) for a in result.aggregates}
    assert cells == {
        ("macro", "cifar10", "accuracy"), ("macro", "cifar10", "m-factor"),
        ("nb201", "cifar10", "accuracy"), ("nb201", "cifar10", "m-factor"),
        ("nb201", "cifar10", "latency"), ("nb201", "cifar100", "accuracy"),
        ("nb201", "cifar100", "m-factor"), ("nb201", "cifar100", "latency"),
    }  # fmt: skip
    assert len(result.searches) == 8 * 4 * 3
    assert result.format == 2
    assert [b.benchmark for b in result.benchmarks] == ["macro", "nb201"]
    assert [b.datasets for b in result.benchmarks] == [["cifar10"], ["cifar10", "cifar100"]]


def test_a_dataset_without_latency_skips_only_the_latency_objective() -> None:
    class NoLatencyOn100(FakeComponents):
        def load_space(self, name: str, data_dir: Path | None) -> TabularSpace:
            return OnlyTimedOn10(name, ("pi4",))

    result = bench(NoLatencyOn100(), benchmarks=["nb201"], strategies=["random"])
    cells = {(a.dataset, a.objective) for a in result.aggregates}
    assert ("cifar100", "latency") not in cells
    assert ("cifar10", "latency") in cells
    (skip,) = [s for s in result.skipped if s.kind == "objective"]
    assert (skip.name, skip.dataset) == ("latency", "cifar100")
    assert "no pi4 latency on cifar100" in skip.reason


def test_user_spaces_run_alone_or_beside_the_named_benchmarks(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text("mine")
    result = bench(spaces=[path], strategies=["random"])
    assert [b.benchmark for b in result.benchmarks] == ["mine"]
    assert result.benchmarks[0].source == str(path)
    assert {a.objective_label for a in result.aggregates} == {
        "accuracy",
        "m-factor",
        "latency:board<=14ms",
    }  # fmt: skip; the space's first device
    both = bench(spaces=[path], benchmarks=["macro"], strategies=["random"], jobs=2)
    assert [b.benchmark for b in both.benchmarks] == ["macro", "mine"]
    assert "--space" in both.command
    (tmp_path / "bad.json").write_text("")
    with pytest.raises(InputError, match="line 1: the space has no name"):
        bench(spaces=[tmp_path / "bad.json"])
    (tmp_path / "clash.json").write_text("macro")
    with pytest.raises(InputError, match="named 'macro', as another benchmark is"):
        bench(spaces=[tmp_path / "clash.json"], benchmarks=["macro"])


def test_a_search_result_says_what_was_found_and_how_fast() -> None:
    result = bench(
        benchmarks=["nb201"], objectives=["latency"], strategies=["rulebook"], seeds=[4],
        datasets={"nb201": "cifar10"},
    )  # fmt: skip
    (s,) = result.searches
    space = FakeSpace("nb201", ("pi4", "fpga"))
    objective = FakeObjective("latency", "pi4", None, 1.0)
    ranks = Evaluator.rank_table(space, "cifar10", objective)
    best = space.decode(s.best_arch)
    record = space.record(best, "cifar10")
    assert s.evaluations == 5
    assert s.best_rank == ranks[best]
    assert s.best_rank_so_far[-1] == s.best_rank
    assert s.best_rank_so_far == sorted(s.best_rank_so_far, reverse=True)
    assert s.best_accuracy == record.accuracy
    assert s.feasible == objective.feasible(record)
    assert s.best_score == (objective.score(record) if s.feasible else None)
    m_factor = FakeObjective("m-factor", None, None, 1.0).score(record)
    assert s.best_m_factor == pytest.approx(m_factor)
    assert s.objective_label == "latency:pi4<=14ms"
    assert len(s.trace) == 5
    assert s.trace[0]["instructions"] == ["AMK"]
    assert s.seconds >= 0


def test_an_infeasible_best_has_no_score_and_does_not_meet_the_constraint() -> None:
    result = bench(
        benchmarks=["nb201"], objectives=["latency"], strategies=["random"], max_latency_ms=1.0,
        datasets={"nb201": "cifar10"},
    )  # fmt: skip
    assert all(not s.feasible and s.best_score is None for s in result.searches)
    assert result.aggregates[0].feasible_fraction == 0.0
    json.loads(result.model_dump_json())  # no -inf in the JSON


def test_results_do_not_depend_on_the_number_of_workers() -> None:
    fields: dict[str, Any] = {"seeds": 4, "budget": 6, "strategies": ["rulebook", "random"]}
    one = bench(jobs=1, **fields)
    reports: list[tuple[int, int]] = []
    two = run_bench(
        BenchConfig(jobs=2, **fields),
        lambda done, total: reports.append((done, total)),
        components=FakeComponents(),
    )
    assert comparable(one) == comparable(two)
    assert [s.seed for s in one.searches[:4]] == [0, 1, 2, 3]
    # Progress comes from this thread, counting up to every search of the grid.
    assert reports[0] == (0, 64)
    assert reports[-1] == (64, 64)
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)


def test_ranks_are_computed_once_per_cell_and_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = Evaluator.rank_table

    def counting(space: TabularSpace, dataset: str, objective: Objective) -> dict[Arch, int]:
        calls.append(f"{space.name}/{dataset}/{objective.name}")
        return original(space, dataset, objective)

    monkeypatch.setattr(Evaluator, "rank_table", staticmethod(counting))
    result = bench(strategies=["random", "rulebook"], seeds=5)
    assert len(result.searches) == 8 * 2 * 5
    assert sorted(calls) == sorted(
        ["macro/cifar10/accuracy", "macro/cifar10/m-factor", "nb201/cifar10/accuracy",
         "nb201/cifar10/m-factor", "nb201/cifar10/latency:pi4<=14ms",
         "nb201/cifar100/accuracy", "nb201/cifar100/m-factor",
         "nb201/cifar100/latency:pi4<=14ms"]
    )  # fmt: skip


def test_the_llm_strategy_runs_here_next_to_the_workers() -> None:
    result = bench(
        benchmarks=["macro"], objectives=["accuracy"], strategies=["llm", "random"],
        llm="openai:gpt-4o", jobs=2,
    )  # fmt: skip
    llm = [s for s in result.searches if s.strategy == "llm"]
    assert len(llm) == 3
    assert all(len(s.llm_calls) == 5 for s in llm)
    assert all(s.llm_calls == [] for s in result.searches if s.strategy == "random")
    assert [s.strategy for s in result.searches] == ["llm"] * 3 + ["random"] * 3


def test_an_llm_asked_for_but_not_configured_is_refused_before_any_work() -> None:
    reports: list[tuple[int, int]] = []
    with pytest.raises(InputError, match="needs an LLM"):
        run_bench(
            BenchConfig(strategies=["llm", "random"], seeds=2, jobs=1),
            lambda done, total: reports.append((done, total)),
            components=FakeComponents(),
        )
    assert reports == []
    with pytest.raises(InputError, match="needs an LLM"):
        bench(strategies=["llm"], llm="offline")


def test_an_llm_that_fails_its_check_stops_the_grid_before_it_starts() -> None:
    with pytest.raises(InputError, match="rejected the key"):
        bench(strategies=None, llm="openai:gpt-4o", components=FakeComponents(llm_ok=False))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"benchmarks": ["nb101"]}, "unknown benchmark 'nb101'; choose from macro, nb201"),
        ({"objectives": ["speed"]}, "unknown objective 'speed'"),
        ({"strategies": ["bayes"]}, "unknown strategy 'bayes'"),
        ({"datasets": {"nb301": "cifar10"}}, "--dataset names benchmark\\(s\\) 'nb301'"),
        ({"benchmarks": ["macro"], "datasets": {"macro": "cifar100"}}, "no dataset 'cifar100'"),
        ({"objectives": ["latency"], "device": "tpu"}, "unknown device 'tpu'.*pi4, fpga"),
        ({"benchmarks": ["macro"], "objectives": ["latency"]}, "nothing to run.*not applicable"),
        ({"alpha": -1.0}, "objective m-factor on macro: alpha must be >= 0"),
    ],
)
def test_bad_input_is_refused_before_any_search(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        bench(**fields)


def test_a_missing_table_fails_only_when_asked_for() -> None:
    parts = FakeComponents(missing=("nb201",))
    result = bench(parts, strategies=["random"])
    assert {a.benchmark for a in result.aggregates} == {"macro"}
    assert any(s.kind == "benchmark" and s.name == "nb201" for s in result.skipped)
    with pytest.raises(InputError, match="nb201 table is not in"):
        bench(parts, benchmarks=["nb201"])
    with pytest.raises(InputError, match="no benchmark can run here"):
        bench(FakeComponents(missing=("macro", "nb201")))


def test_a_dataset_missing_from_one_default_benchmark_skips_only_that_one() -> None:
    result = bench(datasets={"macro": "cifar100", "nb201": ["cifar100"]}, strategies=["random"])
    assert {(a.benchmark, a.dataset) for a in result.aggregates} == {("nb201", "cifar100")}
    assert any("no dataset 'cifar100'" in s.reason for s in result.skipped)


@pytest.mark.parametrize(
    "fields",
    [{"budget": 0}, {"seeds": 0}, {"seeds": []}, {"seeds": [1, 1]}, {"jobs": 0},
     {"benchmarks": []}, {"max_latency_ms": 0}, {"colour": "red"}],
)  # fmt: skip
def test_config_refuses_nonsense(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="validation error"):
        BenchConfig(**fields)


def test_short_and_overlong_searches_are_handled(caplog: pytest.LogCaptureFixture) -> None:
    result = bench(benchmarks=["macro"], objectives=["accuracy"], strategies=["lazy", "greedy"])
    lazy = [s for s in result.searches if s.strategy == "lazy"]
    greedy = [s for s in result.searches if s.strategy == "greedy"]
    assert all(s.evaluations == 1 for s in lazy)
    assert all(s.evaluations == 5 for s in greedy)
    assert "left 4 of 5 evaluations unspent" in caplog.text
    curve = next(a for a in result.aggregates if a.strategy == "lazy").curve_median
    assert len(curve) == 5
    assert len(set(curve)) == 1


def test_the_command_reproduces_the_config() -> None:
    config = BenchConfig(
        benchmarks=["nb201"], objectives=["latency"], strategies=["random", "tpe"], seeds=[0, 3],
        budget=7, datasets={"nb201": "cifar100"}, device="fpga", max_latency_ms=2.5,
        data_dir=Path("/data dir"), llm="openai:gpt-4o", jobs=3,
    )  # fmt: skip
    assert config.command() == (
        "archsmith bench -b nb201 -O latency -s random -s tpe --seeds 0,3 --budget 7"
        " --dataset nb201=cifar100 --device fpga --max-latency-ms 2.5 --data-dir '/data dir'"
        " --llm openai:gpt-4o"
    )
    several = BenchConfig(datasets={"nb201": ["cifar10", "cifar100"]}, spaces=[Path("my.json")])
    assert several.command() == (
        "archsmith bench --seeds 20 --budget 10 --dataset nb201=cifar10,cifar100 --space my.json"
    )
    assert BenchConfig(seeds=5, objectives=["accuracy"]).command() == (
        "archsmith bench -O accuracy --seeds 5 --budget 10"
    )


# -- aggregation ---------------------------------------------------------------------------------


def search(rank: int, curve: list[int], *, seed: int, feasible: bool = True) -> SearchResult:
    return SearchResult(
        strategy="s", benchmark="macro", dataset="cifar10", objective="accuracy",
        objective_label="accuracy", seed=seed, evaluations=len(curve), best_arch="000",
        best_rank=rank, best_accuracy=0.9 - rank / 100, best_score=0.9, best_m_factor=None,
        feasible=feasible, best_rank_so_far=curve, seconds=0.0,
    )  # fmt: skip


def test_aggregates_use_numpys_linear_quartiles_and_keep_the_mean() -> None:
    group = [
        search(1, [9, 1, 1], seed=0),
        search(2, [5, 2, 2], seed=1),
        search(3, [3, 3, 3], seed=2, feasible=False),
        search(10, [10, 10], seed=3),  # stopped early: its last best rank carries on
    ]
    (a,) = aggregate(group, {"macro": 27}, budget=3)
    assert (a.best_rank_q25, a.best_rank_median, a.best_rank_q75) == (1.75, 2.5, 4.75)
    assert a.best_rank_mean == 4.0
    assert (a.best_rank_min, a.best_rank_max) == (1, 10)
    assert a.best_accuracy_median == pytest.approx(0.875)
    assert a.best_accuracy_mean == pytest.approx((0.89 + 0.88 + 0.87 + 0.80) / 4)
    assert a.m_factor_median is None
    assert a.feasible_fraction == 0.75
    assert a.curve_median == [7.0, 2.5, 2.5]
    assert a.curve_q25 == [4.5, 1.75, 1.75]
    assert a.curve_q75 == [9.25, 4.75, 4.75]
    assert (a.seeds, a.space_size) == (4, 27)


# -- outputs -------------------------------------------------------------------------------------


def test_outputs_are_written_and_read_back(tmp_path: Path) -> None:
    result = bench(strategies=None)
    paths = write_outputs(result, tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == sorted(
        ["results.json", "results.md", "best_so_far_macro_cifar10_accuracy.svg",
         "best_so_far_macro_cifar10_m-factor.svg", "best_so_far_nb201_cifar10_accuracy.svg",
         "best_so_far_nb201_cifar10_m-factor.svg", "best_so_far_nb201_cifar10_latency.svg",
         "best_so_far_nb201_cifar100_accuracy.svg", "best_so_far_nb201_cifar100_m-factor.svg",
         "best_so_far_nb201_cifar100_latency.svg"]
    )  # fmt: skip
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["format"] == 2
    assert data["command"] == result.command
    assert BenchResult.model_validate(data) == result
    md = (tmp_path / "out" / "results.md").read_text()
    assert result.command in md
    assert "25th-75th percentile, numpy's default linear interpolation" in md
    assert "![best rank so far](best_so_far_nb201_cifar100_latency.svg)" in md
    assert "objective latency on macro cifar10 not run: not applicable" in md
    assert "strategy llm not run: no LLM configured" in md
    assert md.count("| rulebook |") + md.count("| **rulebook** |") == 8
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left


def test_the_plot_has_a_median_line_and_a_band_per_strategy() -> None:
    result = bench(strategies=["rulebook", "random", "greedy"], seeds=5, budget=8)
    root = ET.fromstring(best_so_far_svg(result, "nb201", "cifar10", "accuracy"))
    assert root.tag == f"{SVG}svg"
    assert root.get("data-dataset") == "cifar10"
    paths = root.findall(f".//{SVG}path")
    assert [p.get("class") for p in paths] == ["median"] * 3
    groups = root.findall(f".//{SVG}g[@class='strategy']")
    assert [g.get("data-strategy") for g in groups] == ["rulebook", "random", "greedy"]
    assert all(len(g.findall(f"{SVG}polygon")) == 1 for g in groups)
    assert all(len(g.findall(f"{SVG}circle")) == 8 for g in groups)
    legend = [t.text for t in root.findall(f".//{SVG}g[@class='legend']//{SVG}text")]
    assert legend == ["rulebook", "random", "greedy"]
    labels = [t.text for t in root.findall(f".//{SVG}text") if "axis-label" in t.get("class", "")]
    assert labels == [
        "evaluations (median line, 25th-75th percentile band over 5 seeds)",
        "best rank so far (log scale; 1 = best)",
    ]
    assert root.find(f"{SVG}style") is not None
    assert "href" not in ET.tostring(root, encoding="unicode")  # self-contained
    # The median line goes down (or stays): a best-so-far curve never rises.
    d = paths[0].get("d", "")
    ys = [float(pt.split(",")[1]) for pt in d.lstrip("M").split(" L")]
    assert ys == sorted(ys)


def test_the_plot_of_a_one_evaluation_budget_still_draws() -> None:
    result = bench(benchmarks=["macro"], objectives=["accuracy"], strategies=["random"], budget=1)
    root = ET.fromstring(best_so_far_svg(result, "macro", "cifar10", "accuracy"))
    assert len(root.findall(f".//{SVG}path")) == 1


def test_the_terminal_tables_have_a_row_per_strategy_and_fit_80_columns() -> None:
    from rich.console import Console

    result = bench(strategies=["rulebook", "random"], datasets={"nb201": "cifar10"})
    console = Console(width=80, record=True, color_system=None)
    console.print(heading(result))
    tables = render_tables(result)
    assert len(tables) == 5
    for table in tables:
        console.print(table)
    text = console.export_text()
    assert "Best rank after 5 evaluations over 3 seeds" in text
    assert "nb201, cifar10, latency:pi4<=14ms (27 architectures)" in text
    assert text.count("rulebook") == 5
    assert max(len(line) for line in text.splitlines()) <= 80
    assert markdown(result).count("## ") == 5 + 1  # five cells and "Not run"


def test_the_summary_page_keeps_what_is_written_by_hand(tmp_path: Path) -> None:
    result = bench(strategies=["rulebook", "random"])
    out, page = tmp_path / "docs" / "bench", tmp_path / "docs" / "benchmarks.md"
    write_outputs(result, out)
    page.write_text(f"stale table\n{KEEP_MARKER}\n## Notes\n\nmine\n")
    write_summary(result, page, out, "archsmith bench --seeds 3")
    text = page.read_text()
    generated, kept = text.split(KEEP_MARKER)
    assert "stale table" not in generated
    assert kept == "\n## Notes\n\nmine\n"
    assert f"archsmith bench --seeds 3 --summary {page}" in generated
    assert "](bench/best_so_far_nb201_cifar100_latency.svg)" in generated
    rows = [line for line in generated.splitlines() if line.startswith("| nb201 ")]
    assert len(rows) == 2 * 6  # six nb201 cells, in the per-strategy and the rulebook tables
    assert "| benchmark, dataset, objective | size | rulebook | random |" in generated
    write_summary(result, page, out, "archsmith bench --seeds 3")
    assert page.read_text() == text  # writing it again changes nothing


# -- the command ---------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    """``archsmith bench`` on the fakes, with no LLM key in the environment."""
    monkeypatch.setattr(runner_module, "RealComponents", FakeComponents)
    for key in ("OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Group mode, as in the real application."""

    register(app)
    return app


def test_the_command_prints_the_table_and_writes_the_files(
    cli: typer.Typer, tmp_path: Path
) -> None:
    out = tmp_path / "res"
    args = ["bench", "-b", "nb201", "-s", "random", "-s", "rulebook", "--seeds", "3", "-j", "1"]
    result = CliRunner().invoke(cli, [*args, "--budget", "4", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "Best rank after 4 evaluations over 3 seeds" in result.output
    assert "searches" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "best_so_far_nb201_cifar100_accuracy.svg", "best_so_far_nb201_cifar100_latency.svg",
        "best_so_far_nb201_cifar100_m-factor.svg", "best_so_far_nb201_cifar10_accuracy.svg",
        "best_so_far_nb201_cifar10_latency.svg", "best_so_far_nb201_cifar10_m-factor.svg",
        "results.json", "results.md",
    ]  # fmt: skip
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["strategies"] == ["random", "rulebook"]
    assert len(data["searches"]) == 6 * 2 * 3


def test_the_command_writes_a_summary_page(cli: typer.Typer, tmp_path: Path) -> None:
    page = tmp_path / "bench.md"
    args = ["bench", "-b", "macro", "-s", "random", "--seeds", "2", "-j", "1"]
    result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "o"), "--summary", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert f"-o {tmp_path / 'o'} --summary {page}" in text
    assert KEEP_MARKER in text
    bad = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "p"), "--summary", str(tmp_path)])
    assert bad.exit_code == 2
    assert "is not a file" in bad.output


def test_the_command_can_print_json(cli: typer.Typer, tmp_path: Path) -> None:
    args = ["bench", "-b", "macro", "-O", "accuracy", "-s", "random", "--seeds", "2", "--json"]
    result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "o"), "-j", "1"])
    assert result.exit_code == 0, result.output
    start = result.output.index("{")
    data = json.loads(result.output[start : result.output.rindex("}") + 1])
    assert data["format"] == 2
    assert len(data["searches"]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-b", "nb101"], "unknown benchmark 'nb101'"),
        (["-O", "speed"], "unknown objective 'speed'"),
        (["-s", "bayes"], "unknown strategy 'bayes'"),
        (["-s", "llm"], "needs an LLM"),
        (["--budget", "0"], "budget: Input should be greater than or equal to 1"),
        (["--seeds", "many"], "--seeds must be a count"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--dataset", "macro="], "--dataset must be NAME[,NAME] or BENCHMARK=NAME[,NAME]"),
        (["--dataset", "=cifar10"], "--dataset must be NAME[,NAME] or BENCHMARK=NAME[,NAME]"),
        (["--space", "/nonexistent/space.json"], "space.json"),
        (["--llm", "claude"], "invalid LLM 'claude'"),
        (["-j", "0"], "jobs: Input should be greater than or equal to 1"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    cli: typer.Typer, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "res"
    result = CliRunner().invoke(cli, ["bench", "-j", "1", *args, "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not out.exists()


def test_an_output_that_is_a_file_is_refused_before_the_run(
    cli: typer.Typer, tmp_path: Path
) -> None:
    (tmp_path / "taken").write_text("x")
    result = CliRunner().invoke(cli, ["bench", "-o", str(tmp_path / "taken")])
    assert result.exit_code == 2
    assert "is not a directory" in result.output
