"""The house rules a newcomer relies on: no import circle, modules of readable size, and
the engine holding the loop alone."""

from __future__ import annotations

import ast
from pathlib import Path

import streamwatch

PACKAGE = Path(streamwatch.__file__).parent
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports: anywhere in it (inside functions and
    for type checking too), each with the packages whose ``__init__`` it runs; not the
    packages that hold ``name`` itself."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    edges: set[str] = set()
    for target in found:
        parts = target.split(".")
        edges.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
    return {m for m in edges & known.keys() if m != name and not name.startswith(m + ".")}


def test_the_package_imports_without_a_circle() -> None:
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert len(graph) > 60
    assert "streamwatch.pipeline.engine" in graph["streamwatch.daemon"]
    state: dict[str, int] = {}  # 1: on the path, 2: done
    circles: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert circles == []


def test_every_module_is_of_readable_size() -> None:
    tools = {str(path): path for path in (PACKAGE.parent / "tools").rglob("*.py")}
    sizes = {name: len(path.read_text().splitlines()) for name, path in (modules() | tools).items()}
    assert len(tools) >= 3
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_the_engine_holds_the_loop_and_builds_its_owners() -> None:
    engine = (PACKAGE / "pipeline" / "engine.py").read_text()
    tree = ast.parse(engine)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert [c.name for c in classes] == ["Engine"]
    methods = {n.name for n in classes[0].body if isinstance(n, ast.FunctionDef)}
    assert methods <= {"__init__", "stop", "run", "_loop", "process", "finish", "conclude"} | {
        "_save",
        "_drain",
        "_drain_budget",
    }
