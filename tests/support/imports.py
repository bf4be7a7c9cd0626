"""Read a Python file's imports with `ast` (no code runs), wherever in the file they are."""

from __future__ import annotations

import ast
from pathlib import Path


def imported_names(path: Path) -> set[str]:
    """Every module name the file imports, inside functions too; `from a import b` gives a and
    a.b (b may be a module). Relative imports are left out: imgclf uses none."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_graph(source: Path, package: str) -> dict[str, set[str]]:
    """Module name -> the package's modules it imports (type-hint imports included).

    source is the folder that holds the package (src/); `from a import b` counts as importing
    a.b where that is a module, else a. A package does not count as importing its own modules.
    """
    files = {}
    for path in (source / package).rglob("*.py"):
        parts = path.relative_to(source).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in files.items():
        reached = {found for found in imported_names(path) if found in files}
        # `from a import b` also names a: drop a where a.b is the module imported.
        reached -= {
            parent for parent in reached if any(r.startswith(parent + ".") for r in reached)
        }
        graph[name] = {found for found in reached if found != name}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or round a longer loop."""
    reaches = {name: _reachable(graph, name) for name in graph}
    circles = {
        tuple(sorted(other for other in reaches[name] if name in reaches[other]))
        for name in graph
        if name in reaches[name]
    }
    return sorted(list(circle) for circle in circles)


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), list(graph[start])
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    return seen
