"""The shape of the house: no import cycles in pipeline/ or engines/, engines/ never imports pipeline/,
modules stay small and rooms hold about a dozen modules. Read from the source (ast), nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "engines")
MAX_MODULE_LINES = 320
MAX_MODULES_PER_FOLDER = 14


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imported_modules(path: Path, known: dict[str, Path]) -> set[str]:
    """Every project module `path` imports anywhere in it (top level, functions, TYPE_CHECKING)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return {m for m in found if m in known}


def import_graph() -> dict[str, set[str]]:
    known = project_modules()
    return {name: imported_modules(path, known) - {name} for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None; iterative DFS with colours."""
    colour = dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done
    for start in sorted(graph):
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour[child] == 1:
                return [*path[path.index(child) :], child]
            elif colour[child] == 0:
                colour[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
        ({"a": {"a2"}, "a2": set(), "x": {"y"}, "y": {"z"}, "z": {"x"}}, ["x", "y", "z", "x"]),
    ],
)
def test_find_cycle_on_hand_built_graphs(graph, cycle):
    assert find_cycle(graph) == cycle


def test_no_import_cycle_in_pipeline_or_engines():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_engines_never_import_pipeline():
    wrong = {m: sorted(i for i in deps if i.startswith("pipeline")) for m, deps in import_graph().items()}
    wrong = {m: deps for m, deps in wrong.items() if m.startswith("engines") and deps}
    assert not wrong, f"engines/ imports pipeline/: {wrong}"


def test_modules_are_small_and_rooms_hold_about_a_dozen():
    sizes = {p: len(p.read_text().splitlines()) for p in project_modules().values()}
    big = {str(p.relative_to(REPO)): n for p, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"
    folders: dict[Path, int] = {}
    for p in sizes:
        folders[p.parent] = folders.get(p.parent, 0) + (p.name != "__init__.py")
    crowded = {str(f.relative_to(REPO)): n for f, n in folders.items() if n > MAX_MODULES_PER_FOLDER}
    assert not crowded, f"folders with more than {MAX_MODULES_PER_FOLDER} modules: {crowded}"


def test_no_module_imports_another_modules_private_names():
    known = project_modules()
    leaks = []
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in known and node.module != name:
                leaks += [f"{name} <- {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not leaks, f"private names imported across modules: {leaks}"
