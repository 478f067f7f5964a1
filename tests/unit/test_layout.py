"""The package layout: one package per domain, and imports that run one way (no cycles)."""

from __future__ import annotations

import ast
from pathlib import Path

import ispmon

PACKAGE = Path(ispmon.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _import_graph() -> dict[str, set[str]]:
    """Every ispmon import of every module, including TYPE_CHECKING and function-level ones."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ispmon"):
                submodules = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
                graph[name] |= submodules
                if node.module in modules and len(submodules) < len(node.names):
                    graph[name].add(node.module)
            elif isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names} & modules.keys()
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    assert _cycles(_import_graph()) == []


def test_cycle_finder_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_availability_is_one_package() -> None:
    root_modules = {p.stem for p in PACKAGE.glob("*.py")}
    moved = {"endpoints", "scheduler", "monitor", "outages", "outage_events", "severity", "maintenance"}
    assert not root_modules & moved
    assert moved <= {p.stem for p in (PACKAGE / "availability").glob("*.py")}


def test_domains_do_not_import_the_api() -> None:
    """Domains and services are called by the API, the CLI and Python users; never the reverse."""
    graph = _import_graph()
    for name, imports in graph.items():
        if name.startswith(("ispmon.availability", "ispmon.alerts", "ispmon.services", "ispmon.store")):
            assert not {i for i in imports if i.startswith("ispmon.api")}, name
