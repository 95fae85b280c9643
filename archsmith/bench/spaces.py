"""NAS-Bench-Macro and NAS-Bench-201 as ``TabularSpace`` tables, read from their published files.

Both files are read once per process and cached on (path, modification time, size), because the
benchmark runner builds many searches over the same table. A space pickles as "reload this file",
so a process pool sends a path, not 47,000 records, and each worker parses the file at most once.

Files are user data: a missing file raises ``BenchmarkUnavailable`` (an ``InputError``) naming the
file, every folder searched and the ``--data-dir`` flag; a malformed file raises ``InputError``
naming the key or line and column, so a truncated download is not mistaken for a small benchmark.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn, SupportsIndex, TypeVar, cast

from archsmith.bench.base import Arch, Record, TabularSpace
from archsmith.data.registry import REGISTRY, find_data_dir
from archsmith.errors import InputError
from archsmith.search.moves import Role

__all__ = [
    "MACRO_FILE",
    "NB201_FILE",
    "SPACE_NAMES",
    "BenchmarkUnavailable",
    "NasBench201",
    "NasBenchMacro",
    "benchmark_search_dirs",
    "load_space",
    "nb201_params",
]

logger = logging.getLogger(__name__)

#: File names as published (see ../shared/data/README.md for their sources).
MACRO_FILE = "nas-bench-macro_cifar10.json"
NB201_FILE = "nb201_acc_plus_hwnasbench_cifar10_latency.csv"

#: Names ``load_space`` accepts, canonical names first.
SPACE_NAMES: tuple[str, ...] = ("nas-bench-macro", "nas-bench-201", "macro", "nb201")

_REPO = Path(__file__).resolve().parents[2]


class BenchmarkUnavailable(InputError):  # noqa: N818 - the name the CLI and runner import
    """A benchmark's table is not in any folder searched."""


def _check_arch(arch: Sequence[int], positions: int, n_choices: int, space: str) -> Arch:
    """``arch`` as a tuple, or a ValueError saying which position is out of range."""
    if len(arch) != positions:
        raise ValueError(f"{space} architectures have {positions} positions, got {len(arch)}")
    out = tuple(int(c) for c in arch)
    for i, c in enumerate(out):
        if not 0 <= c < n_choices:
            raise ValueError(f"{space}: choice {c} at position {i} is not in 0..{n_choices - 1}")
    return out


_S = TypeVar("_S", bound="_TableSpace")


class _TableSpace:
    """What both tables share: records per dataset, a fixed architecture order, pickling by path.

    Loaded spaces are shared through the cache, so their records are read-only by contract.
    """

    name: str
    positions: int
    choices: tuple[str, ...]
    datasets: tuple[str, ...]
    devices: tuple[str, ...]

    def __init__(
        self, records: Mapping[str, Mapping[Arch, Record]], source: Path | None = None
    ) -> None:
        """``records`` maps every dataset of the space to {arch: record}; all share one arch set.

        ``source`` is the file the table came from; with it, pickling sends only the path.
        """
        if set(records) != set(self.datasets):
            raise ValueError(
                f"{self.name} needs records for {self.datasets}, got {tuple(sorted(records))}"
            )
        first = records[self.datasets[0]]
        for dataset in self.datasets[1:]:
            if set(records[dataset]) != set(first):
                raise ValueError(f"{self.name}: {dataset} covers other architectures than the rest")
        if not first:
            raise ValueError(f"{self.name} has no architectures")
        self._records: dict[str, dict[Arch, Record]] = {d: dict(records[d]) for d in self.datasets}
        self._builders: dict[str, Callable[[], dict[Arch, Record]]] = {}
        self._archs: tuple[Arch, ...] = tuple(sorted(first))
        self.source = source

    @classmethod
    def _lazy(
        cls: type[_S],
        archs: Sequence[Arch],
        builders: Mapping[str, Callable[[], dict[Arch, Record]]],
        source: Path | None,
    ) -> _S:
        """A space whose records of a dataset are built on its first lookup.

        Most searches use one dataset, and building 15,625 records per dataset is most of
        NAS-Bench-201's load time.
        """
        self = cls.__new__(cls)
        self._records = {}
        self._builders = dict(builders)
        self._archs = tuple(sorted(archs))
        self.source = source
        return self

    def size(self) -> int:
        """How many architectures the table holds (6,561 and 15,625 for the published files)."""
        return len(self._archs)

    def all_archs(self) -> Sequence[Arch]:
        """Every architecture of the table, in lexicographic order of the choice indices."""
        return self._archs

    def record(self, arch: Arch, dataset: str) -> Record:
        """The table's row; ValueError for an unknown dataset, KeyError for a missing arch."""
        table = self._records.get(dataset)
        if table is None:
            builder = self._builders.get(dataset)
            if builder is None:
                raise ValueError(f"{self.name} has no dataset {dataset!r}; it has {self.datasets}")
            table = self._records[dataset] = builder()  # a racing thread builds the same table
        key = arch if type(arch) is tuple else tuple(arch)
        found = table.get(key)
        if found is None:
            raise KeyError(f"{self.name}: architecture {key} is not in the table")
        return found

    def __repr__(self) -> str:
        where = f" from {self.source}" if self.source is not None else ""
        return f"{type(self).__name__}({self.size()} architectures{where})"

    def __reduce_ex__(self, protocol: SupportsIndex) -> str | tuple[Any, ...]:
        if self.source is None:
            return super().__reduce_ex__(protocol)
        return (_reload, (type(self).__name__, str(self.source)))


@functools.cache
def _macro_codes() -> dict[str, Arch]:
    """Every key of the space and its arch: decoding is one dict lookup (6,561 entries)."""
    return {"".join(map(str, a)): a for a in itertools.product(range(3), repeat=8)}


def _macro_decode(text: str) -> Arch:
    found = _macro_codes().get(text)
    if found is None:
        raise ValueError(
            f"{text!r} is not a NAS-Bench-Macro key: it must be 8 digits from 0, 1, 2"
            " (0 Identity, 1 MB3_K3, 2 MB6_K5), e.g. '22212220'"
        )
    return found


class NasBenchMacro(_TableSpace):
    """NAS-Bench-Macro (Su et al.; GENIUS section 4.1): 8 layers x 3 blocks = 6,561 CIFAR-10 nets.

    Choice 0 is Identity, 1 a MobileNetV2 inverted residual block with kernel 3 and expansion 3,
    2 the same with kernel 5 and expansion 6. The table's key is the 8 choice digits
    ('22212220'), which is also ``encode``'s text. Accuracy is the mean test accuracy of 3 seeds;
    params and FLOPs come from the table. There is no latency.
    """

    name: str = "nas-bench-macro"
    positions: int = 8
    choices: tuple[str, ...] = ("Identity", "MB3_K3", "MB6_K5")
    datasets: tuple[str, ...] = ("cifar10",)
    devices: tuple[str, ...] = ()
    #: From least to most capacity: Identity (the layer is skipped) < MB3_K3 < MB6_K5.
    capacity: tuple[int, ...] = (0, 1, 2)
    roles: Mapping[int, Role] = MappingProxyType({0: "identity"})

    def encode(self, arch: Arch) -> str:
        """The table's key: one digit per layer."""
        return "".join(str(c) for c in _check_arch(arch, 8, 3, self.name))

    def decode(self, text: str) -> Arch:
        """The inverse of ``encode``; ValueError unless ``text`` is 8 digits from 0, 1, 2."""
        return _macro_decode(text)

    @classmethod
    def from_file(cls, path: Path) -> NasBenchMacro:
        """The table in ``path`` (cached while the file is unchanged)."""
        return cast(NasBenchMacro, _load_cached("NasBenchMacro", *_file_key(path, MACRO_FILE)))


#: NAS-Bench-201's cell edges in the order of its architecture string: (to node, from node).
NB201_EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
_NB201_CHOICES = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
_NB201_KERNEL = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}  # the other operations have no weights
_NB201_WIDTHS = (16, 32, 64)
_NB201_CELLS_PER_STAGE = 5


def _relu_conv_bn(c_in: int, c_out: int, kernel: int) -> int:
    """ReLU, Conv2d without bias, BatchNorm2d with affine weight and bias."""
    return c_in * c_out * kernel * kernel + 2 * c_out


def nb201_params(arch: Arch, num_classes: int) -> int:
    """Exact parameter count of NAS-Bench-201's network for the cell ``arch``.

    The network (Dong & Yang 2020, the ``TinyNetwork`` of their code): a 3x3 stem conv 3->16 with
    BatchNorm; three stages of 5 cells at 16, 32, 64 channels; between stages a ResNet basic
    block (ReLU-Conv3x3/2-BN, ReLU-Conv3x3-BN, shortcut AvgPool2x2 + Conv1x1 without bias); then
    BatchNorm + ReLU, global average pooling and a linear classifier. In a cell, ``nor_conv_kxk`` is
    ReLU-Conv(kxk, no bias)-BN(affine); none, skip_connect and avg_pool_3x3 carry no weights.

    Checked against (1) ``numel`` of that network built in PyTorch for several cells
    (tests/unit/test_bench_spaces.py) and (2) the published extremes of NAS-Bench-201's
    "params" field as other code bases tabulate them: 0.073306 / 1.531546 M on CIFAR-10,
    0.079156 / 1.537396 M on CIFAR-100, 0.080456 / 1.538696 M on ImageNet16-120 (all-none
    and all-conv3x3 cells; e.g. the min/max table of an EvoXBench NAS-Bench-201 wrapper).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    width = _NB201_WIDTHS[-1]
    return _nb201_body_params(arch) + width * num_classes + num_classes


def _nb201_body_params(arch: Arch) -> int:
    """Everything but the classifier: stem, cells, reduction blocks and the last BatchNorm."""
    arch = _check_arch(arch, len(NB201_EDGES), len(_NB201_CHOICES), "nas-bench-201")
    return _NB201_BASE_PARAMS + sum(_NB201_OP_PARAMS[c] for c in arch)


def _nb201_body_params_by_layer(arch: Arch) -> int:
    """``_nb201_body_params`` layer by layer, as the network is built; the tables come from it."""
    total = _relu_conv_bn(3, _NB201_WIDTHS[0], 3)  # the stem: Conv-BN, the same count
    previous = _NB201_WIDTHS[0]
    for width in _NB201_WIDTHS:
        if width != previous:  # reduction block between stages
            total += _relu_conv_bn(previous, width, 3) + _relu_conv_bn(width, width, 3)
            total += previous * width  # AvgPool + Conv1x1 shortcut, no bias
        cell = sum(
            _relu_conv_bn(width, width, _NB201_KERNEL[_NB201_CHOICES[c]])
            for c in arch
            if _NB201_CHOICES[c] in _NB201_KERNEL
        )
        total += _NB201_CELLS_PER_STAGE * cell
        previous = width
    return total + 2 * previous  # the last BatchNorm


# The count is linear in the edges' operations: all-none plus what each operation adds per edge.
_NB201_BASE_PARAMS = _nb201_body_params_by_layer((0,) * len(NB201_EDGES))
_NB201_OP_PARAMS = tuple(
    _nb201_body_params_by_layer((c,) + (0,) * (len(NB201_EDGES) - 1)) - _NB201_BASE_PARAMS
    for c in range(len(_NB201_CHOICES))
)
_NB201_EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|none~2|"


@functools.cache
def _nb201_codes() -> dict[str, Arch]:
    """Every cell string of the space and its arch: decoding is one dict lookup (15,625)."""
    o = _NB201_CHOICES
    return {
        f"|{o[a]}~0|+|{o[b]}~0|{o[c]}~1|+|{o[d]}~0|{o[e]}~1|{o[f]}~2|": (a, b, c, d, e, f)
        for a, b, c, d, e, f in itertools.product(range(len(o)), repeat=len(NB201_EDGES))
    }


def _nb201_decode(text: str) -> Arch:
    found = _nb201_codes().get(text)
    if found is not None:
        return found
    parts = text.strip().split("+")
    if len(parts) != 3:
        raise ValueError(
            f"{text!r} is not a NAS-Bench-201 cell: it needs 3 nodes joined by '+', e.g."
            f" {_NB201_EXAMPLE!r}"
        )
    out: list[int] = []
    for node, part in enumerate(parts, start=1):
        edges = part.split("|")
        if len(edges) != node + 2 or edges[0] or edges[-1]:
            raise ValueError(
                f"{text!r}: node {node} is {part!r}; it needs {node} edge(s) between '|', e.g."
                f" {_NB201_EXAMPLE!r}"
            )
        for src, edge in enumerate(edges[1:-1]):
            op, sep, origin = edge.partition("~")
            if not sep or origin != str(src):
                raise ValueError(f"{text!r}: edge {edge!r} of node {node} must read <op>~{src}")
            if op not in _NB201_CHOICES:
                raise ValueError(
                    f"{text!r}: unknown operation {op!r}; known: {', '.join(_NB201_CHOICES)}"
                )
            out.append(_NB201_CHOICES.index(op))
    return tuple(out)


class NasBench201(_TableSpace):
    """NAS-Bench-201 (Dong & Yang 2020): a 4-node cell, 6 edges x 5 operations = 15,625 nets.

    ``arch[i]`` is the operation on edge ``NB201_EDGES[i]`` (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2),
    the order of the benchmark's string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``. Accuracies are
    200-epoch test accuracies (NATS-Bench); params are computed by ``nb201_params`` since the file
    has none; FLOPs are not given. The file's latencies are HW-NAS-Bench's CIFAR-10 measurements,
    so only the cifar10 records carry them: the other datasets' networks differ (a larger
    classifier; 16x16 inputs for ImageNet16-120), and reusing CIFAR-10's figures would pass
    estimates off as measurements.
    """

    name: str = "nas-bench-201"
    positions: int = 6
    choices: tuple[str, ...] = _NB201_CHOICES
    datasets: tuple[str, ...] = ("cifar10", "cifar100", "imagenet16-120")
    devices: tuple[str, ...] = ("pi4", "pixel3", "fpga", "eyeriss")
    #: From least to most capacity: none < skip_connect < avg_pool_3x3 < nor_conv_1x1 <
    #: nor_conv_3x3 (pooling has no weights; a 3x3 kernel has nine times a 1x1's).
    capacity: tuple[int, ...] = (0, 1, 4, 2, 3)
    roles: Mapping[int, Role] = MappingProxyType({0: "none", 1: "skip"})

    def encode(self, arch: Arch) -> str:
        """The benchmark's architecture string."""
        arch = _check_arch(arch, self.positions, len(self.choices), self.name)
        nodes: list[str] = []
        for node in (1, 2, 3):
            edges = [
                f"{self.choices[c]}~{src}"
                for c, (dst, src) in zip(arch, NB201_EDGES, strict=True)
                if dst == node
            ]
            nodes.append("|" + "|".join(edges) + "|")
        return "+".join(nodes)

    def decode(self, text: str) -> Arch:
        """The inverse of ``encode``; ValueError naming the part of ``text`` that is wrong."""
        return _nb201_decode(text)

    @classmethod
    def from_file(cls, path: Path) -> NasBench201:
        """The table in ``path`` (cached while the file is unchanged)."""
        return cast(NasBench201, _load_cached("NasBench201", *_file_key(path, NB201_FILE)))


# -- reading the files ----------------------------------------------------------------------------


def _file_key(path: Path, expected: str) -> tuple[str, int, int]:
    """Resolved path, mtime and size: the cache key, so an edited file is read again."""
    resolved = Path(path).expanduser().resolve()
    try:
        stat = resolved.stat()
    except FileNotFoundError as e:
        raise BenchmarkUnavailable(
            f"benchmark table {resolved} does not exist (expected a file like {expected});"
            " pass --data-dir DIR with the folder that holds it"
        ) from e
    except OSError as e:
        raise InputError(f"cannot read benchmark table {resolved}: {e.strerror}") from e
    if not resolved.is_file():
        raise InputError(f"benchmark table {resolved} is not a file")
    return str(resolved), stat.st_mtime_ns, stat.st_size


def read_text(path: Path, what: str = "benchmark table") -> str:
    """A user's file as text; an InputError naming ``what`` it is otherwise."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise InputError(f"{what} {path} does not exist") from e
    except IsADirectoryError as e:
        raise InputError(f"{what} {path} is a directory; give a JSON file") from e
    except UnicodeDecodeError as e:
        raise InputError(f"{what} {path} is not UTF-8 text: {e.reason}") from e
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror}") from e


def json_with_repeats(text: str, path: Path, what: str) -> tuple[Any, list[str]]:
    """The parsed JSON, and every key that repeats within one of its objects (``json`` keeps the
    last silently, which would hide a broken table)."""
    repeated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(items)
        if len(out) != len(items):
            seen: set[str] = set()
            for k, _ in items:
                if k in seen:
                    repeated.append(k)
                seen.add(k)
        return out

    try:
        return json.loads(text, object_pairs_hook=pairs), repeated
    except json.JSONDecodeError as e:
        raise InputError(
            f"{what} {path}, line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})"
        ) from e


def _number(value: object, where: str, *, low: float, high: float = math.inf) -> float:
    """A finite number in [low, high], else an InputError saying where and what was found."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"{where}: {value!r} is not a number")
    try:
        x = float(value)
    except ValueError as e:
        raise InputError(f"{where}: {value!r} is not a number") from e
    if low <= x <= high and x != math.inf:  # NaN fails the comparison
        return x
    bounds = f">= {low:g}" if math.isinf(high) else f"in [{low:g}, {high:g}]"
    raise InputError(f"{where}: {value!r} must be a finite number {bounds}")


def _parse_macro(path: Path) -> NasBenchMacro:
    data, duplicates = json_with_repeats(read_text(path), path, "NAS-Bench-Macro table")
    if duplicates:
        raise InputError(f"NAS-Bench-Macro table {path}: key {duplicates[0]!r} appears twice")
    if not isinstance(data, dict) or not data:
        raise InputError(
            f"NAS-Bench-Macro table {path} must be a non-empty JSON object of"
            " '<8 digits>': {mean_acc, params, flops, ...}"
        )
    records: dict[Arch, Record] = {}
    for key, value in data.items():
        where = f"NAS-Bench-Macro table {path}, key {key!r}"
        try:
            arch = _macro_decode(key)
        except ValueError as e:
            raise InputError(f"{where}: {e}") from e
        if not isinstance(value, dict):
            raise InputError(f"{where}: the value must be an object with mean_acc and params")
        for field in ("mean_acc", "params"):
            if field not in value:
                raise InputError(f"{where}: {field} is missing")
        acc = _number(value["mean_acc"], f"{where}, mean_acc (percent)", low=0.0, high=100.0)
        params = _number(value["params"], f"{where}, params", low=1.0)
        if not params.is_integer():
            raise InputError(f"{where}, params: {value['params']!r} is not a whole number")
        flops = value.get("flops")
        records[arch] = Record(
            accuracy=acc / 100.0,
            params=int(params),
            flops=None if flops is None else _number(flops, f"{where}, flops", low=0.0),
        )
    return NasBenchMacro({"cifar10": records}, source=path)


_NB201_ACCURACY_COLUMNS = {
    "cifar10": "cifar10_test_acc",
    "cifar100": "cifar100_test_acc",
    "imagenet16-120": "imagenet16_120_test_acc",
}
_NB201_LATENCY_COLUMNS = {
    "pi4": "raspi4_latency_ms",
    "pixel3": "pixel3_latency_ms",
    "fpga": "fpga_latency_ms",
    "eyeriss": "eyeriss_latency_ms",
}


#: HW-NAS-Bench measured latency with CIFAR-10 inputs; the other datasets' records carry none.
_NB201_LATENCY_DATASET = "cifar10"


def _nb201_row_error(row: list[str], col: Mapping[str, int], where: str) -> NoReturn:
    """Raise the InputError that names the first bad number of a row the fast check rejected."""
    for c in _NB201_ACCURACY_COLUMNS.values():
        _number(row[col[c]], f"{where}, column {c} (percent)", low=0.0, high=100.0)
    for c in _NB201_LATENCY_COLUMNS.values():
        if _number(row[col[c]], f"{where}, column {c}", low=0.0) <= 0.0:
            raise InputError(f"{where}, column {c}: {row[col[c]]!r} must be > 0 ms")
    raise InputError(f"{where}: a number is out of range")  # unreachable: a check above fails


def _parse_nb201(path: Path) -> NasBench201:
    reader = csv.reader(io.StringIO(read_text(path)))
    header = next(reader, None)
    if header is None:
        raise InputError(f"NAS-Bench-201 table {path} is empty; it needs a header line")
    header = [h.strip().lstrip("\ufeff") for h in header]
    needed = ["arch", *_NB201_ACCURACY_COLUMNS.values(), *_NB201_LATENCY_COLUMNS.values()]
    missing = [c for c in needed if c not in header]
    if missing:
        raise InputError(
            f"NAS-Bench-201 table {path}, line 1: column(s) {', '.join(missing)} missing; the"
            f" header needs {', '.join(needed)}"
        )
    col = {name: header.index(name) for name in needed}
    arch_col = col["arch"]
    acc_cols = [col[c] for c in _NB201_ACCURACY_COLUMNS.values()]
    latency_cols = [col[c] for c in _NB201_LATENCY_COLUMNS.values()]
    devices = tuple(_NB201_LATENCY_COLUMNS)
    archs: list[Arch] = []
    params: list[int] = []  # without the classifier, which depends on the dataset
    accuracies: list[list[float]] = [[] for _ in acc_cols]
    latencies: list[dict[str, float]] = []
    codes = _nb201_codes()
    lines: dict[Arch, int] = {}
    # The loop is the load time of the benchmark: plain float() and range checks, and the
    # careful, message-building checks only for a row that fails them.
    for row in reader:
        if not row:
            continue
        line = reader.line_num
        if len(row) != len(header):
            raise InputError(
                f"NAS-Bench-201 table {path}, line {line}: {len(row)} fields, the header has"
                f" {len(header)}"
            )
        arch = codes.get(row[arch_col])
        if arch is None:
            try:
                arch = _nb201_decode(row[arch_col])
            except ValueError as e:
                raise InputError(
                    f"NAS-Bench-201 table {path}, line {line}, column arch: {e}"
                ) from e
        if arch in lines:
            raise InputError(
                f"NAS-Bench-201 table {path}, line {line}: architecture {row[arch_col]} is also"
                f" on line {lines[arch]}"
            )
        lines[arch] = line
        try:
            accs = [float(row[i]) for i in acc_cols]
            measured = [float(row[i]) for i in latency_cols]
        except ValueError:
            accs = measured = []
        if (
            len(accs) != len(acc_cols)
            or not all(0.0 <= a <= 100.0 for a in accs)
            or not all(0.0 < x < math.inf for x in measured)
        ):
            _nb201_row_error(row, col, f"NAS-Bench-201 table {path}, line {line}")
        archs.append(arch)
        params.append(_NB201_BASE_PARAMS + sum(_NB201_OP_PARAMS[c] for c in arch))
        for column, acc in zip(accuracies, accs, strict=True):
            column.append(acc / 100.0)
        latencies.append(dict(zip(devices, measured, strict=True)))
    if not lines:
        raise InputError(f"NAS-Bench-201 table {path} has a header but no rows")
    width = _NB201_WIDTHS[-1]
    builders = {
        dataset: functools.partial(
            _nb201_records,
            archs,
            column,
            params,
            width * REGISTRY[dataset].num_classes + REGISTRY[dataset].num_classes,
            latencies if dataset == _NB201_LATENCY_DATASET else None,
        )
        for dataset, column in zip(_NB201_ACCURACY_COLUMNS, accuracies, strict=True)
    }
    return NasBench201._lazy(archs, builders, source=path)


def _nb201_records(
    archs: list[Arch],
    accuracies: list[float],
    params: list[int],
    classifier: int,
    latencies: list[dict[str, float]] | None,
) -> dict[Arch, Record]:
    """One dataset's records from the parsed columns."""
    if latencies is None:
        return {
            a: Record(accuracy=acc, params=p + classifier)
            for a, acc, p in zip(archs, accuracies, params, strict=True)
        }
    return {
        a: Record(accuracy=acc, params=p + classifier, latency_ms=lat)
        for a, acc, p, lat in zip(archs, accuracies, params, latencies, strict=True)
    }


_PARSERS: dict[str, Callable[[Path], NasBenchMacro | NasBench201]] = {
    "NasBenchMacro": _parse_macro,
    "NasBench201": _parse_nb201,
}


@functools.lru_cache(maxsize=16)
def _load_cached(kind: str, path: str, mtime_ns: int, size: int) -> NasBenchMacro | NasBench201:
    """Parse once per (file, version); ``mtime_ns`` and ``size`` only key the cache."""
    start = time.perf_counter()
    space = _PARSERS[kind](Path(path))
    logger.info(
        "read %s from %s: %d architectures in %.3f s",
        space.name,
        path,
        space.size(),
        time.perf_counter() - start,
    )
    return space


def _reload(kind: str, path: str) -> NasBenchMacro | NasBench201:
    """Unpickling: read the table again (once per process, through the cache)."""
    return _load_cached(kind, *_file_key(Path(path), Path(path).name))


# -- finding the files ----------------------------------------------------------------------------

_BY_NAME: dict[str, tuple[str, str, str]] = {
    # name -> (parser kind, file name, where the file comes from)
    "nas-bench-macro": (
        "NasBenchMacro",
        MACRO_FILE,
        "github.com/xiusu/NAS-Bench-Macro, data/nas-bench-macro_cifar10.json",
    ),
    "nas-bench-201": (
        "NasBench201",
        NB201_FILE,
        "NATS-Bench test accuracies joined with HW-NAS-Bench latencies on the architecture string"
        " (columns arch, cifar10_test_acc, cifar100_test_acc, imagenet16_120_test_acc,"
        " raspi4_latency_ms, pixel3_latency_ms, fpga_latency_ms, eyeriss_latency_ms)",
    ),
}
_ALIASES = {"macro": "nas-bench-macro", "nb201": "nas-bench-201"}


def benchmark_search_dirs(data_dir: Path | None) -> list[Path]:
    """Where ``load_space`` looks, in order.

    An explicit ``data_dir`` is the only place searched: a user who names a folder wants that
    file, not a copy found elsewhere. Without it: ``ARCHSMITH_DATA_DIR`` (``find_data_dir``),
    then ``../shared/data`` beside the working directory and beside this repository, where the
    project's tests and benchmarks keep the published files.
    """
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    candidates: list[Path] = []
    configured = find_data_dir(None)
    if configured is not None:
        candidates.append(configured)
    candidates += [Path.cwd().parent / "shared" / "data", _REPO.parent / "shared" / "data"]
    unique: list[Path] = []
    for folder in candidates:
        if all(folder.resolve() != u.resolve() for u in unique):
            unique.append(folder)
    return unique


def load_space(name: str, data_dir: Path | None = None) -> TabularSpace:
    """The space called ``name`` ("macro" / "nas-bench-macro", "nb201" / "nas-bench-201").

    Looks in ``benchmark_search_dirs(data_dir)``; the table is parsed once per process.
    """
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _BY_NAME:
        raise InputError(f"unknown benchmark space {name!r}; known: {', '.join(SPACE_NAMES)}")
    kind, file_name, origin = _BY_NAME[key]
    folders = benchmark_search_dirs(data_dir)
    for folder in folders:
        path = folder / file_name
        if path.is_file():
            return _load_cached(kind, *_file_key(path, file_name))
    searched = ", ".join(str(f) for f in folders)
    raise BenchmarkUnavailable(
        f"the {key} table {file_name} is not in {searched}. Put it in a folder and pass"
        f" --data-dir DIR (or set ARCHSMITH_DATA_DIR=DIR). The file: {origin}."
    )
