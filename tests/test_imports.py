"""
The layering of C{disperse}: no two of its packages (or top-level modules)
import each other, directly or through others.

Every import counts, including those inside functions and under
C{TYPE_CHECKING}: a cycle that only the type checker sees is still two
packages that cannot be read, tested or replaced apart.
"""

from __future__ import annotations

import ast
from pathlib import Path

import disperse

ROOT = Path(disperse.__file__).parent


def _unit(module: str) -> str | None:
    """
    The package (or top-level module) of C{disperse} that C{module} belongs
    to: C{disperse.cluster.peer.client} belongs to C{disperse.cluster}.
    """
    parts = module.split(".")
    if parts[0] != "disperse" or len(parts) < 2:
        return None
    return ".".join(parts[:2])


def _moduleName(path: Path) -> str:
    relative = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(path: Path, module: str) -> set[str]:
    """
    The modules C{path} (the source of C{module}) imports, absolute.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            # "from disperse import node" imports the module disperse.node.
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def importGraph() -> dict[str, set[str]]:
    """
    Which units of C{disperse} each unit imports (itself excluded).
    """
    graph: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        module = _moduleName(path)
        unit = _unit(module)
        if unit is None:
            continue
        edges = graph.setdefault(unit, set())
        for name in _imported(path, module):
            other = _unit(name)
            if other is not None and other != unit and _exists(other):
                edges.add(other)
    return graph


def _exists(unit: str) -> bool:
    name = unit.split(".", 1)[1]
    return (ROOT / name).is_dir() or (ROOT / f"{name}.py").is_file()


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """
    One cycle through each strongly connected group of units that has
    more than one unit, as the list of units along it.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    onStack: set[str] = set()
    groups: list[list[str]] = []

    def visit(unit: str) -> None:
        index[unit] = low[unit] = len(index)
        stack.append(unit)
        onStack.add(unit)
        for other in sorted(graph.get(unit, ())):
            if other not in index:
                visit(other)
                low[unit] = min(low[unit], low[other])
            elif other in onStack:
                low[unit] = min(low[unit], index[other])
        if low[unit] == index[unit]:
            group = []
            while True:
                member = stack.pop()
                onStack.discard(member)
                group.append(member)
                if member == unit:
                    break
            if len(group) > 1:
                groups.append(_cycleThrough(sorted(group), graph))

    for unit in sorted(graph):
        if unit not in index:
            visit(unit)
    return groups


def _cycleThrough(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    # A shortest way from the group's first unit back to itself, inside
    # the group: the path a reader follows to see the cycle.
    members = set(group)
    start = group[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for unit in frontier:
            for other in sorted(graph.get(unit, set()) & members):
                if other == start:
                    return paths[unit] + [start]
                if other not in paths:
                    paths[other] = paths[unit] + [other]
                    following.append(other)
        frontier = following
    return group


def test_cycleFinder() -> None:
    """
    The finder reports a cycle of any length, and none where imports go
    one way.
    """
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b", "a"]]


def test_graphSeesEveryImportForm(tmp_path: Path) -> None:
    """
    Relative imports, C{from package import module} and imports inside
    functions all count.
    """
    source = tmp_path / "mod.py"
    source.write_text(
        "from . import sibling\n"
        "from ..store import Store\n"
        "def f():\n"
        "    import disperse.web.api\n",
        encoding="utf-8",
    )
    names = _imported(source, "disperse.cluster.mod")
    assert {"disperse.cluster.sibling", "disperse.store", "disperse.web.api"} <= (names)


def test_noCyclesBetweenPackages() -> None:
    """
    No package of C{disperse} imports, through any chain, a package that
    imports it.
    """
    graph = importGraph()
    assert "disperse.store" in graph and "disperse.cluster" in graph
    found = [" -> ".join(cycle) for cycle in cycles(graph)]
    assert found == [], "import cycles between packages:\n" + "\n".join(found)
