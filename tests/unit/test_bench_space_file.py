"""A user's own tabular benchmark: the space file, its table, and errors with their lines."""

from __future__ import annotations

import itertools
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from benchdata import write_space_file

from archsmith.bench.config import BenchConfig
from archsmith.bench.guided import space_moves
from archsmith.bench.runner import run_bench
from archsmith.bench.space_file import FileSpace, key_lines, load_space_file
from archsmith.errors import InputError

CHOICES = ["none", "skip", "conv1", "conv3"]


def entry(arch: tuple[int, ...]) -> dict[str, Any]:
    """Accuracy grows with convolutions, most at the last position; sizes and latency add up."""
    convs = sum(c >= 2 for c in arch)
    accuracy = 50.0 + 8.0 * convs + 4.0 * (arch[-1] == 3) + (arch[0] == 1)
    params = 1_000 + sum({2: 500, 3: 4_500}.get(c, 0) for c in arch)
    return {
        "accuracy": round(accuracy, 3),
        "params": params,
        "latency_ms": {"board": params / 1_000, "phone": 0.5 + convs},
    }


def write_space(
    folder: Path,
    table: dict[str, Any] | None = None,
    space: dict[str, Any] | None = None,
    positions: int = 3,
) -> Path:
    if table is None:
        table = {
            "".join(map(str, a)): entry(a)
            for a in itertools.product(range(len(CHOICES)), repeat=positions)
        }
    fields = {
        "name": "my-cells",
        "dataset": "cifar10",
        "choices": CHOICES,
        "roles": {"none": "none", "skip": "skip"},
        "accuracy_unit": "percent",
        **(space or {}),
    }
    return write_space_file(folder, table, fields)


def test_a_space_file_is_read_as_a_tabular_space(tmp_path: Path) -> None:
    space = load_space_file(write_space(tmp_path))
    assert isinstance(space, FileSpace)
    assert (space.name, space.positions, space.size()) == ("my-cells", 3, 64)
    assert space.choices == tuple(CHOICES)
    assert space.devices == ("board", "phone")
    assert space.datasets == ("cifar10",)
    record = space.record((3, 3, 3), "cifar10")
    assert record.accuracy == pytest.approx(0.78)
    assert record.params == 14_500
    assert record.latency_ms == {"board": 14.5, "phone": 3.5}
    assert space.decode(space.encode((1, 2, 3))) == (1, 2, 3)
    with pytest.raises(ValueError, match="3 digits from 0 to 3"):
        space.decode("0004")
    assert pickle.loads(pickle.dumps(space)).record((0, 1, 2), "cifar10") == space.record(
        (0, 1, 2), "cifar10"
    )


def test_the_instruction_mapping_comes_from_the_files_order_and_roles(tmp_path: Path) -> None:
    moves = space_moves(load_space_file(write_space(tmp_path)))
    assert moves.describe()["RSC"] == ["skip -> none"]
    assert moves.describe()["AMK"] == ["conv1 -> conv3"]
    assert moves.instruction(3, 1) == "ASC"
    assert moves.instruction(0, 3) == "ACL"


def test_fractions_are_read_as_fractions(tmp_path: Path) -> None:
    table = {
        "".join(map(str, a)): {"accuracy": 0.5 + 0.01 * sum(a)}
        for a in itertools.product(range(4), repeat=2)
    }
    path = write_space(tmp_path, table, {"accuracy_unit": "fraction"})
    space = load_space_file(path)
    assert space.record((3, 3), "cifar10").accuracy == pytest.approx(0.56)
    assert space.record((3, 3), "cifar10").params is None
    assert space.devices == ()


def test_every_strategy_runs_on_a_space_file_end_to_end(tmp_path: Path) -> None:
    path = write_space(tmp_path)
    config = BenchConfig(spaces=[path], seeds=4, budget=6, jobs=1)
    result = run_bench(config)
    assert result.format == 2
    assert [b.benchmark for b in result.benchmarks] == ["my-cells"]
    assert result.benchmarks[0].source == str(path.resolve())
    assert set(result.strategies) == {"rulebook", "random", "evolution", "tpe", "rl"}
    cells = {(a.dataset, a.objective_label) for a in result.aggregates}
    assert cells == {
        ("cifar10", "accuracy"),
        ("cifar10", "m-factor"),
        ("cifar10", "latency:board<=5.5ms"),  # the median latency
    }
    rulebook = [s for s in result.searches if s.strategy == "rulebook"]
    assert all(len(s.best_rank_so_far) == 6 for s in result.searches)
    assert all(s.trace[0]["source"] == "start" for s in rulebook)
    moved = [m for s in rulebook for e in s.trace[1:] for m in e.get("moves", [])]
    assert moved
    assert all(m["edit"].split(" -> ")[0] in CHOICES for m in moved)
    assert "--space" in result.command


def test_a_space_without_sizes_or_latency_runs_accuracy_only(tmp_path: Path) -> None:
    table = {
        "".join(map(str, a)): {"accuracy": 40.0 + sum(a)}
        for a in itertools.product(range(4), repeat=2)
    }
    result = run_bench(
        BenchConfig(spaces=[write_space(tmp_path, table)], seeds=2, budget=3, jobs=1)
    )
    assert {a.objective for a in result.aggregates} == {"accuracy"}
    reasons = {s.name: s.reason for s in result.skipped if s.kind == "objective"}
    assert "no parameter counts" in reasons["m-factor"]
    assert "no measured latency" in reasons["latency"]
    assert all(s.best_m_factor is None for s in result.searches)


# -- errors, with their lines ---------------------------------------------------------------------


def full_table() -> dict[str, Any]:
    return {"".join(map(str, a)): entry(a) for a in itertools.product(range(4), repeat=3)}


def line_of(path: Path, needle: str, nth: int = 0) -> int:
    lines = [i for i, text in enumerate(path.read_text().splitlines(), 1) if needle in text]
    return lines[nth]


def test_a_missing_architecture_is_named(tmp_path: Path) -> None:
    table = full_table()
    del table["213"]
    with pytest.raises(InputError, match=r"has 63 of the 64 .*add the missing ones, e.g. 213"):
        load_space_file(write_space(tmp_path, table))


def test_a_bad_code_is_reported_with_its_line(tmp_path: Path) -> None:
    table = full_table()
    table["0x1"] = entry((0, 0, 1))
    path = write_space(tmp_path, table)
    line = line_of(tmp_path / "table.json", '"0x1"')
    with pytest.raises(InputError, match=rf"table.json, line {line}: '0x1' is not a code"):
        load_space_file(path)


def test_a_code_of_another_length_is_reported(tmp_path: Path) -> None:
    table = full_table()
    table["0123"] = entry((0, 1, 2))
    with pytest.raises(InputError, match="must be 3 digits"):
        load_space_file(write_space(tmp_path, table))


def test_an_unknown_field_of_a_record_is_reported_with_its_line(tmp_path: Path) -> None:
    table = full_table()
    table["123"] = {**table["123"], "paramz": 5}
    path = write_space(tmp_path, table)
    line = line_of(tmp_path / "table.json", '"paramz"')
    with pytest.raises(InputError, match=rf"line {line}: unknown field 'paramz' in 123"):
        load_space_file(path)


def test_an_unknown_field_of_the_space_file_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write_space(tmp_path, space={"choises": CHOICES})
    line = line_of(path, '"choises"')
    with pytest.raises(InputError, match=rf"space.json, line {line}: unknown field 'choises'"):
        load_space_file(path)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"accuracy_unit": "percentage"}, 'accuracy_unit must be "percent" or "fraction"'),
        ({"roles": {"conv9": "skip"}}, "roles names 'conv9', which is not one of the choices"),
        ({"roles": {"none": "cut"}}, "role 'cut' of 'none' must be one of none, identity, skip"),
        ({"roles": {"none": "none", "skip": "none"}}, "each role may name one choice only"),
        ({"choices": ["a"]}, "choices must be a list of 2 to 10"),
        ({"choices": ["a", "b", "a", "c"]}, "choice 'a' is listed twice"),
        ({"name": "nb201"}, "not a built-in benchmark's name"),
        ({"table": "elsewhere.json"}, "elsewhere.json does not exist"),
    ],
)
def test_bad_space_fields_say_what_to_fix(
    tmp_path: Path, space: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        load_space_file(write_space(tmp_path, space=space))


def test_missing_space_fields_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"name": "x", "choices": CHOICES}))
    with pytest.raises(InputError, match="field\\(s\\) dataset, table, accuracy_unit missing"):
        load_space_file(path)


def test_invalid_json_gives_line_and_column(tmp_path: Path) -> None:
    path = write_space(tmp_path)
    (tmp_path / "table.json").write_text('{\n  "000": {"accuracy": 50,}\n}')
    with pytest.raises(InputError, match=r"table.json, line 2, column \d+: not valid JSON"):
        load_space_file(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"accuracy": 120.0}, "accuracy of 123 must be a number from 0 to 100"),
        ({"accuracy": "91"}, "accuracy of 123 must be a number"),
        ({"params": 10.5}, "params of 123 must be a whole number"),
        ({"latency_ms": {"board": -1.0, "phone": 1.0}}, "latency of 123 on 'board' must be"),
        ({"latency_ms": {"board": 1.0}}, "every entry needs the same devices"),
    ],
)
def test_bad_records_say_what_to_fix(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    table = full_table()
    table["123"] = {**table["123"], **change}
    with pytest.raises(InputError, match=message):
        load_space_file(write_space(tmp_path, table))


def test_params_for_some_entries_only_is_refused(tmp_path: Path) -> None:
    table = full_table()
    table["222"] = {"accuracy": 50.0, "latency_ms": table["222"]["latency_ms"]}
    with pytest.raises(InputError, match="give params for every entry or none"):
        load_space_file(write_space(tmp_path, table))


def test_a_repeated_key_is_reported_at_its_second_line(tmp_path: Path) -> None:
    path = write_space(tmp_path)
    text = (tmp_path / "table.json").read_text()
    (tmp_path / "table.json").write_text(text.replace('"001"', '"000"', 1))
    line = line_of(tmp_path / "table.json", '"000"', nth=1)
    with pytest.raises(InputError, match=rf"line {line}: '000' appears twice"):
        load_space_file(path)


def test_key_lines_follow_nesting() -> None:
    text = '{\n "a": {\n  "b": 1,\n  "c": [1, {"d": 2}]\n },\n "e": "x:y"\n}'
    lines = key_lines(text)
    assert lines[("a",)] == [2]
    assert lines[("a", "b")] == [3]
    assert lines[("a", "c")] == [4]
    assert lines[("e",)] == [6]
    assert ("a", "c", "d") not in lines  # deeper than asked
