"""No import cycle in ``archsmith``, between modules or between packages, lazy imports included.

``lint-imports`` (the layers contract in ``pyproject.toml``) checks that no layer imports one above
it, but not cycles inside one layer or one package; and a lazy import inside a function hides a
cycle from Python until the day the function runs first. This finder reads every ``import`` in the
source with ``ast``, wherever it stands (module level, functions, ``if TYPE_CHECKING:``).

What counts as an import of what:

- ``import a.b.c`` imports ``a.b.c``; ``from a.b.c import name`` imports ``a.b.c``; relative imports
  are resolved against the importing module's package.
- ``from a.b import c`` imports ``a.b.c`` when that is a module, and ``a.b`` itself too: the name is
  looked up in the package's namespace (its ``__init__``) first, so a package whose ``__init__``
  imports a submodule that reads names back from the package is a cycle.
- The parent packages Python initialises on the way to a submodule are not counted: that would make
  every package whose ``__init__`` imports anything a cycle with each of its submodules.
"""

from __future__ import annotations

import ast
import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "archsmith"


@dataclass
class ImportGraph:
    """Modules (packages by their ``__init__``) and, for each, the modules it imports.

    ``edges[a][b]`` is where ``a`` first imports ``b``: ``"archsmith/x.py:12"``.
    """

    package: str
    edges: dict[str, dict[str, str]] = field(default_factory=dict)


def _modules(root: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """Every module of ``package`` under ``root``: its dotted name, file and whether a package."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


def _known(name: str, modules: dict[str, tuple[Path, bool]]) -> str | None:
    """The module of ours that ``name`` is or lies in (``a.b.attr``: ``a.b``); None if foreign."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _statements(body: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """Every statement, nested ones included (functions, ``if``, ``try``, ``with``, ``match``):
    imports are statements, so expressions need not be walked (a third of the time)."""
    for statement in body:
        yield statement
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            yield from _statements(getattr(statement, name, ()))


def _imported(
    node: ast.Import | ast.ImportFrom,
    module: str,
    is_package: bool,
    modules: dict[str, tuple[Path, bool]],
) -> list[str]:
    """The modules of ours that one import statement imports."""
    if isinstance(node, ast.Import):
        return [m for a in node.names if (m := _known(a.name, modules))]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    found = []
    target = _known(source, modules)
    if target:
        found.append(target)
    for alias in node.names:
        if f"{source}.{alias.name}" in modules:
            found.append(f"{source}.{alias.name}")
    return found


def import_graph(root: Path, package: str) -> ImportGraph:
    """Every import of every module of ``package`` (a directory under ``root``)."""
    modules = _modules(root, package)
    graph = ImportGraph(package)
    for module, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges = graph.edges.setdefault(module, {})
        for node in _statements(tree.body):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _imported(node, module, is_package, modules):
                if target != module:
                    edges.setdefault(target, f"{path.relative_to(root)}:{node.lineno}")
    return graph


def packages(graph: ImportGraph) -> list[str]:
    """The packages among the graph's modules, the top one included."""
    return sorted({m.rpartition(".")[0] for m in graph.edges} & set(graph.edges))


def siblings(graph: ImportGraph, parent: str) -> ImportGraph:
    """The imports between the children of ``parent`` (its modules and subpackages, each with
    everything under it), each edge with its first import site, module to module."""

    def child(module: str) -> str | None:
        if not module.startswith(parent + "."):
            return None
        return ".".join(module.split(".")[: parent.count(".") + 2])

    found = ImportGraph(graph.package)
    for module, targets in graph.edges.items():
        importer = child(module)
        if importer is None:
            continue
        edges = found.edges.setdefault(importer, {})
        for target, where in targets.items():
            imported = child(target)
            if imported is not None and imported != importer:
                edges.setdefault(imported, f"{where} ({module} -> {target})")
    return found


def _knots(edges: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    knots: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, {}))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(edges.get(succ, {})))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    knot = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        knot.append(member)
                        if member == node:
                            break
                    if len(knot) > 1:
                        knots.append(sorted(knot))
    return sorted(knots)


def _shortest_cycle(edges: dict[str, dict[str, str]], knot: list[str]) -> list[str]:
    """One shortest cycle through the knot's first member, as the nodes in order."""
    start, members = knot[0], set(knot)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for succ in sorted(edges.get(node, {})):
            if succ not in members or succ in came_from:
                continue
            came_from[succ] = node
            if succ == start:
                path = [start]
                while path[-1] != start or len(path) == 1:
                    path.append(came_from[path[-1]])
                return path[::-1]
            queue.append(succ)
    raise AssertionError(f"{knot} is not a cycle")


def find_cycles(graph: ImportGraph) -> list[str]:
    """Each knot of modules that import one another, spelled out with one of its cycles."""
    found = []
    for knot in _knots(graph.edges):
        cycle = _shortest_cycle(graph.edges, knot)
        steps = [f"    {a} -> {b}  [{graph.edges[a][b]}]" for a, b in itertools.pairwise(cycle)]
        found.append(f"{', '.join(knot)}:\n" + "\n".join(steps))
    return found


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return import_graph(ROOT, PACKAGE)


def test_no_cycle_between_modules(graph: ImportGraph) -> None:
    """A module never ends up importing itself, through any chain of imports, lazy or not."""
    cycles = find_cycles(graph)
    assert not cycles, "import cycles between modules:\n" + "\n".join(cycles)


def test_no_cycle_between_packages(graph: ImportGraph) -> None:
    """No package reaches back into one that imports it, even through modules that are
    themselves free of cycles: at every level, between the children of each package."""
    cycles = [
        f"in {parent}: {cycle}"
        for parent in packages(graph)
        for cycle in find_cycles(siblings(graph, parent))
    ]
    assert not cycles, "import cycles between packages:\n" + "\n".join(cycles)


def test_the_finder_reads_the_real_package(graph: ImportGraph) -> None:
    """The finder sees the imports it is meant to check (a guard against it finding nothing)."""
    assert "archsmith.sandbox.runner" in graph.edges["archsmith.sandbox.zygote"]
    assert "archsmith.scoring.failures" in graph.edges["archsmith.sandbox.runner"]
    assert "archsmith.errors" in graph.edges["archsmith.files"]


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    """A package free of cycles, with every form of import the finder resolves."""
    _write(
        tmp_path,
        {
            "toy/__init__.py": "from toy.base import Base\n",
            "toy/base.py": "import os\n\nclass Base: ...\n",
            "toy/util.py": "from . import base\nfrom .base import Base\n",
            "toy/sub/__init__.py": "",
            "toy/sub/leaf.py": (
                "from typing import TYPE_CHECKING\n"
                "from ..util import base\n"
                "from toy.base import Base\n"
                "if TYPE_CHECKING:\n"
                "    from toy import util\n"
                "def late():\n"
                "    import toy.util\n"
            ),
        },
    )
    return tmp_path


def test_finder_finds_no_false_cycle(toy: Path) -> None:
    """Parent packages initialised on the way to a submodule are not imports of them."""
    graph = import_graph(toy, "toy")
    assert find_cycles(graph) == []
    assert all(find_cycles(siblings(graph, parent)) == [] for parent in packages(graph))
    assert graph.edges["toy.util"] == {"toy": "toy/util.py:1", "toy.base": "toy/util.py:1"}
    assert set(graph.edges["toy.sub.leaf"]) == {"toy", "toy.util", "toy.base"}


def test_finder_finds_a_module_level_cycle(toy: Path) -> None:
    _write(toy, {"toy/base.py": "from toy.sub.leaf import late\n"})
    (cycle,) = find_cycles(import_graph(toy, "toy"))
    assert cycle.startswith("toy, toy.base, toy.sub.leaf, toy.util:")
    assert "toy.base -> toy.sub.leaf  [toy/base.py:1]" in cycle


def test_finder_finds_a_lazy_cycle(toy: Path) -> None:
    """An import inside a function closes a cycle as much as one at the top."""
    _write(toy, {"toy/base.py": "def later():\n    from toy.sub import leaf\n"})
    (cycle,) = find_cycles(import_graph(toy, "toy"))
    assert "toy.base -> toy.sub.leaf  [toy/base.py:2]" in cycle


def test_finder_finds_a_cycle_through_a_package_init(toy: Path) -> None:
    """``__init__`` imports a submodule that reads a name back from the package."""
    _write(
        toy, {"toy/__init__.py": "import toy.base\n", "toy/base.py": "from toy import VERSION\n"}
    )
    (cycle,) = find_cycles(import_graph(toy, "toy"))
    assert cycle.startswith("toy, toy.base:")


def test_finder_finds_a_cycle_between_packages(toy: Path) -> None:
    """Modules free of cycles can still tie two packages into one."""
    _write(
        toy,
        {
            "toy/other/__init__.py": "",
            "toy/other/one.py": "from toy.sub.leaf import late\n",
            "toy/other/two.py": "",
            "toy/sub/more.py": "from toy.other import two\n",
        },
    )
    graph = import_graph(toy, "toy")
    assert find_cycles(graph) == []
    assert packages(graph) == ["toy", "toy.other", "toy.sub"]
    assert find_cycles(siblings(graph, "toy.sub")) == []
    (cycle,) = find_cycles(siblings(graph, "toy"))
    assert cycle.startswith("toy.other, toy.sub:")
    assert "(toy.other.one -> toy.sub.leaf)" in cycle
