"""NAS-Bench-Macro and NAS-Bench-201: the real tables, small files in their formats, bad files.

Tests on the real tables (the ``macro`` and ``nb201`` fixtures, ``shared_file``) read
../shared/data and skip, saying so, where a file is absent.
"""

from __future__ import annotations

import csv
import itertools
import json
import pickle
import time
from fractions import Fraction
from math import comb
from pathlib import Path
from typing import Any

import pytest
import torch
from benchdata import shared_file
from torch import nn

from archsmith.bench import spaces
from archsmith.bench.base import Arch, Evaluator, Record
from archsmith.bench.objectives import AccuracyObjective
from archsmith.bench.spaces import (
    MACRO_FILE,
    NB201_FILE,
    BenchmarkUnavailable,
    NasBench201,
    NasBenchMacro,
    load_space,
    nb201_params,
)
from archsmith.errors import InputError

# -- the real tables ------------------------------------------------------------------------------


def test_real_sizes_and_every_arch(macro: NasBenchMacro, nb201: NasBench201) -> None:
    assert macro.size() == 6561 == 3**8
    assert nb201.size() == 15625 == 5**6
    assert set(macro.all_archs()) == set(itertools.product(range(3), repeat=8))
    assert set(nb201.all_archs()) == set(itertools.product(range(5), repeat=6))
    assert list(macro.all_archs()) == sorted(macro.all_archs())


def test_real_encode_is_the_files_own_key(macro: NasBenchMacro, nb201: NasBench201) -> None:
    keys = json.loads(shared_file(MACRO_FILE).read_text(encoding="utf-8"))
    assert {macro.encode(a) for a in macro.all_archs()} == set(keys)
    with shared_file(NB201_FILE).open(encoding="utf-8") as fh:
        strings = {row["arch"] for row in csv.DictReader(fh)}
    assert {nb201.encode(a) for a in nb201.all_archs()} == strings


@pytest.mark.parametrize("which", ["macro", "nb201"])
def test_real_round_trip_for_every_arch(which: str, request: pytest.FixtureRequest) -> None:
    space = request.getfixturevalue(which)
    for arch in space.all_archs():
        assert space.decode(space.encode(arch)) == arch


def test_macro_optimum_is_a_tie_of_two(macro: NasBenchMacro) -> None:
    ranks = Evaluator.rank_table(macro, "cifar10", AccuracyObjective(macro, "cifar10"))
    first = {macro.encode(a) for a, r in ranks.items() if r == 1}
    assert first == {"22212220", "22212202"}
    for key in first:
        assert round(macro.record(macro.decode(key), "cifar10").accuracy * 100, 3) == 93.127
    assert min(r for r in ranks.values() if r > 1) == 3  # competition ranking: "1 1 3"


def test_macro_record_fields(macro: NasBenchMacro) -> None:
    smallest = macro.record(macro.decode("00000000"), "cifar10")
    assert smallest.params == min(macro.record(a, "cifar10").params or 0 for a in macro.all_archs())
    assert smallest.flops is not None
    assert smallest.flops > 0
    assert smallest.latency_ms == {}
    assert macro.devices == ()


def test_nb201_maxima(nb201: NasBench201) -> None:
    best = {d: max(nb201.record(a, d).accuracy for a in nb201.all_archs()) for d in nb201.datasets}
    assert {d: round(v * 100, 2) for d, v in best.items()} == {
        "cifar10": 94.37,
        "cifar100": 73.51,
        "imagenet16-120": 47.31,
    }


def test_nb201_latency_only_on_cifar10(nb201: NasBench201) -> None:
    arch = nb201.all_archs()[123]
    assert set(nb201.record(arch, "cifar10").latency_ms) == set(nb201.devices)
    assert nb201.record(arch, "cifar100").latency_ms == {}
    assert nb201.record(arch, "imagenet16-120").latency_ms == {}


def test_nb201_table_params_are_the_formula(nb201: NasBench201) -> None:
    classes = {"cifar10": 10, "cifar100": 100, "imagenet16-120": 120}
    for dataset, k in classes.items():
        counts = [nb201.record(a, dataset).params for a in nb201.all_archs()]
        assert counts == [nb201_params(a, k) for a in nb201.all_archs()]


# -- the random-search anchor, exactly ------------------------------------------------------------


def best_rank_survival(ranks: list[int], k: int, *, replace: bool) -> list[Fraction]:
    """S[r] = P(best rank of k uniform samples >= r) for r = 0 .. max rank + 1, exactly.

    The best of k samples has rank >= r exactly when every sample does: with replacement
    (n_r / N)^k, without C(n_r, k) / C(N, k), where n_r counts the architectures ranked >= r.
    """
    n = len(ranks)
    top = max(ranks)
    at_least = [0] * (top + 2)
    for r in ranks:
        at_least[r] += 1
    for r in range(top, -1, -1):
        at_least[r] += at_least[r + 1]
    if replace:
        return [Fraction(c, n) ** k for c in at_least]
    return [Fraction(comb(c, k), comb(n, k)) for c in at_least]


def mean_and_median(survival: list[Fraction]) -> tuple[Fraction, int]:
    mean = sum(survival[1:], Fraction(0))  # E[X] = sum over r >= 1 of P(X >= r)
    median = next(m for m in range(1, len(survival) - 1) if 1 - survival[m + 1] >= Fraction(1, 2))
    return mean, median


@pytest.mark.parametrize("replace", [True, False])
def test_survival_formula_matches_enumeration(replace: bool) -> None:
    ranks = [1, 1, 3, 4, 4, 4, 7, 8]
    k = 3
    draws = (
        list(itertools.product(range(len(ranks)), repeat=k))
        if replace
        else list(itertools.combinations(range(len(ranks)), k))
    )
    bests = [min(ranks[i] for i in draw) for draw in draws]
    survival = best_rank_survival(ranks, k, replace=replace)
    for r in range(1, max(ranks) + 2):
        assert survival[r] == Fraction(sum(b >= r for b in bests), len(bests))
    mean, _ = mean_and_median(survival)
    assert mean == Fraction(sum(bests), len(bests))


@pytest.mark.parametrize("replace", [True, False])
def test_random_search_anchor_on_macro(macro: NasBenchMacro, replace: bool) -> None:
    """Median best rank of 10 uniform samples ~436-440, mean ~596 (what strategies must beat)."""
    ranks = list(
        Evaluator.rank_table(macro, "cifar10", AccuracyObjective(macro, "cifar10")).values()
    )
    mean, median = mean_and_median(best_rank_survival(ranks, 10, replace=replace))
    assert abs(median - 438) / 438 < 0.02
    assert abs(float(mean) - 596) / 596 < 0.02


# -- small files in the real formats --------------------------------------------------------------

NB201_HEADER = (
    "idx,arch,cifar10_test_acc,cifar100_test_acc,imagenet16_120_test_acc,raspi4_latency_ms,"
    "pixel3_latency_ms,fpga_latency_ms,eyeriss_latency_ms"
)
ROW_CONV = (
    "1,|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
    "skip_connect~2|,93.66,70.29,44.03,54.78,17.24,5.32,7.58"
)
ROW_NONE = "3,|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,10.0,1.0,0.83,2.9,1.06,1.54,3.15"


def macro_entry(acc: Any = 90.0, params: Any = 1_000_000, flops: Any = 5e7) -> dict[str, Any]:
    return {"test_acc": [acc] * 3, "mean_acc": acc, "std": 0.1, "params": params, "flops": flops}


def write_macro(folder: Path, data: Any) -> Path:
    path = folder / MACRO_FILE
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_nb201(folder: Path, *lines: str) -> Path:
    path = folder / NB201_FILE
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_small_macro_file(tmp_path: Path) -> None:
    write_macro(
        tmp_path,
        {
            "00000000": macro_entry(45.5, 387882, 1e6),
            "22212220": macro_entry(93.25, 2_000_000, 9e7),
            "12000000": macro_entry(70.0, 500_000, 2e6),
        },
    )
    space = load_space("macro", tmp_path)
    assert isinstance(space, NasBenchMacro)
    assert space.size() == 3
    assert space.all_archs() == ((0,) * 8, (1, 2, 0, 0, 0, 0, 0, 0), (2, 2, 2, 1, 2, 2, 2, 0))
    assert space.record(space.decode("22212220"), "cifar10") == Record(0.9325, 2_000_000, 9e7)
    assert load_space("nas-bench-macro", tmp_path) is space  # cached
    with pytest.raises(KeyError, match="not in the table"):
        space.record((1,) * 8, "cifar10")
    with pytest.raises(ValueError, match="no dataset 'cifar100'"):
        space.record((0,) * 8, "cifar100")


def test_small_nb201_file(tmp_path: Path) -> None:
    write_nb201(tmp_path, NB201_HEADER, ROW_CONV, ROW_NONE)
    space = load_space("NB201", tmp_path)
    assert isinstance(space, NasBench201)
    assert space.size() == 2
    none = space.decode("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert none == (0,) * 6
    conv = space.decode(ROW_CONV.split(",")[1])
    assert conv == (3, 3, 4, 1, 3, 1)
    rec = space.record(conv, "cifar10")
    assert rec.accuracy == pytest.approx(0.9366)
    assert rec.latency_ms == pytest.approx(
        {"pi4": 54.78, "pixel3": 17.24, "fpga": 5.32, "eyeriss": 7.58}
    )
    assert rec.params == nb201_params(conv, 10)
    assert space.record(conv, "cifar100").params == nb201_params(conv, 100)
    assert space.record(none, "imagenet16-120") == Record(0.0083, 80456)


def test_file_change_is_read_again(tmp_path: Path) -> None:
    write_macro(tmp_path, {"00000000": macro_entry(45.0)})
    first = load_space("macro", tmp_path)
    write_macro(tmp_path, {"00000000": macro_entry(45.0), "11111111": macro_entry(80.0)})
    second = load_space("macro", tmp_path)
    assert (first.size(), second.size()) == (1, 2)


def test_pickles_as_a_path(tmp_path: Path) -> None:
    write_nb201(tmp_path, NB201_HEADER, ROW_CONV, ROW_NONE)
    space = load_space("nb201", tmp_path)
    data = pickle.dumps(space)
    assert len(data) < 1000
    assert pickle.loads(data) is space  # same process: the cache answers


def test_space_without_a_file_pickles_its_records() -> None:
    records: dict[Arch, Record] = {(0,) * 8: Record(0.5, 10), (1,) * 8: Record(0.7, 20)}
    space = NasBenchMacro({"cifar10": records})
    copy = pickle.loads(pickle.dumps(space))
    assert copy.all_archs() == space.all_archs()
    assert copy.record((1,) * 8, "cifar10") == Record(0.7, 20)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "non-empty JSON object"),
        ({}, "non-empty JSON object"),
        ({"0000000": macro_entry()}, r"key '0000000'.*8 digits"),
        ({"00000003": macro_entry()}, r"key '00000003'"),
        ({"00000000": 5}, "must be an object"),
        ({"00000000": {"params": 10}}, r"key '00000000': mean_acc is missing"),
        ({"00000000": macro_entry(acc="abc")}, r"key '00000000', mean_acc.*'abc' is not a number"),
        ({"00000000": macro_entry(acc=150.0)}, r"mean_acc \(percent\).*in \[0, 100\]"),
        ({"00000000": macro_entry(params=1.5)}, "not a whole number"),
        ({"00000000": macro_entry(params=0)}, r"params: 0 must be"),
        ({"00000000": macro_entry(flops=None)}, None),  # flops are optional
    ],
)
def test_bad_macro_files(tmp_path: Path, data: Any, message: str | None) -> None:
    path = write_macro(tmp_path, data)
    if message is None:
        assert NasBenchMacro.from_file(path).record((0,) * 8, "cifar10").flops is None
        return
    with pytest.raises(InputError, match=message):
        NasBenchMacro.from_file(path)


def test_macro_file_not_json_or_duplicated(tmp_path: Path) -> None:
    path = tmp_path / MACRO_FILE
    path.write_text('{"00000000": {"mean_acc": 50,\n "params": }', encoding="utf-8")
    with pytest.raises(InputError, match=r"line 2, column \d+: not valid JSON"):
        NasBenchMacro.from_file(path)
    entry = json.dumps(macro_entry())
    path.write_text(f'{{"00000000": {entry}, "00000000": {entry}}}', encoding="utf-8")
    with pytest.raises(InputError, match="key '00000000' appears twice"):
        NasBenchMacro.from_file(path)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ((), "is empty"),
        ((NB201_HEADER,), "no rows"),
        (
            (NB201_HEADER.replace(",pixel3_latency_ms", ""), ROW_CONV),
            "line 1: column.s. pixel3_latency_ms missing",
        ),
        ((NB201_HEADER, ROW_CONV, ROW_NONE.replace("none~1|+", "none~2|+")), "line 3, column arch"),
        (
            (NB201_HEADER, ROW_NONE.replace("none~0|+|none~0", "none~0|+|conv~0")),
            "unknown operation",
        ),
        ((NB201_HEADER, ROW_NONE.replace(",10.0,", ",abc,")), r"line 2, column cifar10_test_acc"),
        ((NB201_HEADER, ROW_NONE.replace(",10.0,", ",101,")), r"in \[0, 100\]"),
        ((NB201_HEADER, ROW_NONE.replace(",2.9,", ",nan,")), "column raspi4_latency_ms"),
        ((NB201_HEADER, ROW_NONE.replace(",1.54,", ",0,")), r"fpga_latency_ms: '0' must be > 0"),
        ((NB201_HEADER, ROW_NONE + ",extra"), "line 2: 10 fields, the header has 9"),
        ((NB201_HEADER, ROW_NONE, ROW_NONE), "line 3: architecture .* also on line 2"),
    ],
)
def test_bad_nb201_files(tmp_path: Path, lines: tuple[str, ...], message: str) -> None:
    path = write_nb201(tmp_path, *lines) if lines else tmp_path / NB201_FILE
    if not lines:
        path.write_text("", encoding="utf-8")
    with pytest.raises(InputError, match=message):
        NasBench201.from_file(path)


def test_missing_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkUnavailable) as info:
        load_space("nb201", tmp_path)
    text = str(info.value)
    assert NB201_FILE in text
    assert str(tmp_path) in text
    assert "--data-dir" in text
    assert isinstance(info.value, InputError)
    with pytest.raises(BenchmarkUnavailable, match=MACRO_FILE):
        NasBenchMacro.from_file(tmp_path / MACRO_FILE)


def test_search_order_without_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configured = tmp_path / "configured"
    configured.mkdir()
    work = tmp_path / "work" / "project"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)  # no .env here, and ../shared/data beside it does not exist
    monkeypatch.setattr(spaces, "_REPO", tmp_path / "repo" / "main")
    monkeypatch.setenv("ARCHSMITH_DATA_DIR", str(configured))
    with pytest.raises(BenchmarkUnavailable) as info:
        load_space("macro", None)
    for folder in (configured, tmp_path / "work" / "shared" / "data", tmp_path / "repo" / "shared"):
        assert str(folder) in str(info.value)
    shared = tmp_path / "work" / "shared" / "data"
    shared.mkdir(parents=True)
    write_macro(shared, {"00000000": macro_entry()})
    assert load_space("macro", None).size() == 1  # found beside the working directory
    write_macro(configured, {"00000000": macro_entry(), "00000001": macro_entry()})
    assert load_space("macro", None).size() == 2  # the configured folder comes first


def test_unknown_space_name(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"unknown benchmark space 'nb101'.*nas-bench-201"):
        load_space("nb101", tmp_path)


# -- encode / decode ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["0000000", "000000003", "0000000a", "", "0,0,0,0,0,0,0,0"],
)
def test_macro_decode_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="NAS-Bench-Macro key"):
        NasBenchMacro({"cifar10": {(0,) * 8: Record(0.5, 1)}}).decode(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("|none~0|+|none~0|none~1|", "3 nodes"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none~1|", "must read <op>~2"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none2|", "must read <op>~2"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|conv~2|", "unknown operation 'conv'"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1"),
    ],
)
def test_nb201_decode_rejects(text: str, message: str) -> None:
    space = NasBench201.__new__(NasBench201)
    with pytest.raises(ValueError, match=message):
        space.decode(text)


def test_encode_rejects_bad_archs() -> None:
    space = NasBench201.__new__(NasBench201)
    with pytest.raises(ValueError, match="6 positions"):
        space.encode((0, 0, 0))
    with pytest.raises(ValueError, match="choice 5 at position 1"):
        space.encode((0, 5, 0, 0, 0, 0))
    assert space.decode(" " + space.encode((1, 2, 3, 4, 0, 1)) + "\n") == (1, 2, 3, 4, 0, 1)


# -- NAS-Bench-201's parameter count against the network itself -----------------------------------

EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def relu_conv_bn(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Module:
    return nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(c_out, affine=True),
    )


class Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.0


def operation(name: str, c: int) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    return relu_conv_bn(c, c, 1 if name == "nor_conv_1x1" else 3, 1)


class Cell(nn.Module):
    def __init__(self, arch: Arch, c: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(operation(OPS[a], c) for a in arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in (1, 2, 3):
            inputs = [self.edges[i](nodes[s]) for i, (d, s) in enumerate(EDGES) if d == node]
            nodes.append(torch.stack(inputs).sum(0))
        return nodes[-1]


class ResNetBasicBlock(nn.Module):
    """NAS-Bench-201's reduction block between stages."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = relu_conv_bn(c_in, c_out, 3, 2)
        self.conv_b = relu_conv_bn(c_out, c_out, 3, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv_b(self.conv_a(x)) + self.downsample(x)
        return out


def nb201_network(arch: Arch, num_classes: int) -> nn.Module:
    """NAS-Bench-201's TinyNetwork: stem, 3 x 5 cells at C = 16, 32, 64, BN-ReLU, pool, linear."""
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)]
    for stage, c in enumerate((16, 32, 64)):
        if stage:
            layers.append(ResNetBasicBlock(c // 2, c))
        layers += [Cell(arch, c) for _ in range(5)]
    layers += [
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    ]
    return nn.Sequential(*layers)


CELLS = [
    (0, 0, 0, 0, 0, 0),
    (3, 3, 3, 3, 3, 3),
    (2, 2, 2, 2, 2, 2),
    (3, 3, 4, 1, 3, 1),
    (4, 1, 2, 0, 3, 2),
    (1, 0, 4, 2, 1, 4),
]


@pytest.mark.parametrize("arch", CELLS)
@pytest.mark.parametrize("num_classes", [10, 100, 120])
def test_params_equal_the_networks_numel(arch: Arch, num_classes: int) -> None:
    net = nb201_network(arch, num_classes)
    assert nb201_params(arch, num_classes) == sum(p.numel() for p in net.parameters())


def test_reference_network_runs() -> None:
    net = nb201_network((3, 3, 4, 1, 3, 1), 10).eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("num_classes", "smallest", "largest"),
    # NAS-Bench-201's published "params" range (in M): 0.073306-1.531546 (CIFAR-10),
    # 0.079156-1.537396 (CIFAR-100), 0.080456-1.538696 (ImageNet16-120).
    [(10, 73306, 1531546), (100, 79156, 1537396), (120, 80456, 1538696)],
)
def test_params_extremes_are_the_published_ones(
    num_classes: int, smallest: int, largest: int
) -> None:
    counts = [nb201_params(a, num_classes) for a in itertools.product(range(5), repeat=6)]
    assert (min(counts), max(counts)) == (smallest, largest)
    assert nb201_params((0,) * 6, num_classes) == smallest
    assert nb201_params((3,) * 6, num_classes) == largest


# -- load time ------------------------------------------------------------------------------------


def test_real_tables_load_quickly() -> None:
    """A guard against accidentally slow parsing (measured ~0.1 s and ~0.3 s on an idle core)."""
    for parse, name in ((spaces._parse_macro, MACRO_FILE), (spaces._parse_nb201, NB201_FILE)):
        path = shared_file(name)
        start = time.perf_counter()
        space = parse(path)
        space.record(space.all_archs()[0], "cifar10")
        assert time.perf_counter() - start < 3.0
