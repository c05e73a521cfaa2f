"""The package's import graph: no two subpackages (or top-level modules) import each other.

Read from the source with ``ast`` (nothing is imported or run), function-level imports
included: a lazy import is still a dependency. Data flows one way: sources → prepare → data →
models → train → evaluate → export → track → serve, with shared modules (errors, io, imaging,
config, …) below them and the CLI on top.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dermsight"


def _unit(path: Path) -> str:
    """The subpackage or top-level module ``path`` belongs to ('serve', 'imaging', ...)."""
    first = path.relative_to(PACKAGE).parts[0]
    return first.removesuffix(".py")


def _imported_units(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(("dermsight", *path.relative_to(PACKAGE).parent.parts))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this file's package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base]) if base else ".".join(parts)
            names.add(base)
            if base == "dermsight":  # from dermsight import io, DISCLAIMER
                names.update(f"dermsight.{alias.name}" for alias in node.names)
    units = set()
    for name in names:
        parts = name.split(".")
        if parts[0] != "dermsight" or len(parts) < 2:
            continue
        if (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file():
            units.add(parts[1])
    return units


def import_graph() -> dict[str, dict[str, list[str]]]:
    """unit → {imported unit: [files that import it]}, without a unit's imports of itself and
    of the package root (``dermsight/__init__.py``: the version and the disclaimer)."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent == PACKAGE and path.name == "__init__.py":
            continue
        src = _unit(path)
        edges = graph.setdefault(src, {})
        for dst in _imported_units(path) - {src}:
            edges.setdefault(dst, []).append(str(path.relative_to(PACKAGE)))
    return graph


def _cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle of units (first unit repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(unit: str) -> list[str] | None:
        state[unit] = 1
        stack.append(unit)
        for dst in sorted(graph.get(unit, {})):
            if state.get(dst) == 1:
                return [*stack[stack.index(dst):], dst]
            if dst not in state and (found := visit(dst)):
                return found
        stack.pop()
        state[unit] = 2
        return None

    for unit in sorted(graph):
        if unit not in state and (found := visit(unit)):
            return found
    return None


def test_the_graph_sees_the_known_dependencies():
    graph = import_graph()
    assert "imaging" in graph["serve"] and "imaging" in graph["prepare"]
    assert "track" in graph["serve"] and "sources" in graph["track"]
    assert "config" in graph["data"]


def test_no_two_subpackages_import_each_other():
    graph = import_graph()
    cycle = _cycle(graph)
    if cycle:
        where = [f"{a} -> {b}: {', '.join(graph[a][b])}" for a, b in zip(cycle, cycle[1:])]
        raise AssertionError("import cycle " + " -> ".join(cycle) + "\n" + "\n".join(where))


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b": []}, "b": {}, "c": {"a": [], "b": []}}) is None


MAX_MODULE_LINES = 500
"""A module past this many lines mixes concerns (issue 17: ``evaluate/run.py`` had grown to 800
and was split by concern); split it rather than raising the limit."""


def long_modules(limit: int = MAX_MODULE_LINES) -> dict[str, int]:
    """Modules of the package with more than ``limit`` lines: {path: lines}."""
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines())
             for p in sorted(PACKAGE.rglob("*.py"))}
    return {path: n for path, n in sizes.items() if n > limit}


def test_no_module_is_too_long():
    assert long_modules() == {}, f"split these modules (> {MAX_MODULE_LINES} lines)"


def test_the_size_check_sees_long_modules():
    assert "serve/engine.py" in long_modules(limit=100)
