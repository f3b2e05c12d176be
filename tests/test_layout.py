"""The package's layout holds: no import cycles, kernels pure, wings import only what
ARCHITECTURE.md allows them to."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ruinmap"

#: wing -> the wings it may import (ARCHITECTURE.md, "What each wing may import")
ALLOWED: dict[str, set[str]] = {
    "kernels": set(),
    "cluster.settings": set(),
    "cluster.storage": {"cluster.geo", "cluster.settings"},
    "cluster.geo": set(),
    "cluster.compute": {"cluster.settings"},
    "cluster.methods": {"kernels", "cluster.storage", "cluster.geo"},
    "cluster.ingest": {"kernels", "cluster.storage", "cluster.geo", "cluster.compute",
                       "cluster.settings"},
    "cluster.outputs": {"kernels", "cluster.storage", "cluster.geo"},
    "cluster.validation": {"kernels", "cluster.storage", "cluster.geo", "cluster.methods",
                           "cluster.outputs"},
    "cluster.job": {"kernels", "cluster.storage", "cluster.geo", "cluster.compute",
                    "cluster.settings", "cluster.methods", "cluster.ingest",
                    "cluster.outputs", "cluster.validation"},
    "cluster.service": {"cluster.storage", "cluster.compute", "cluster.settings",
                        "cluster.methods", "cluster.ingest", "cluster.job",
                        "cluster.validation"},
}
#: libraries a kernel must not touch: kernels are pure numba and NumPy
NOT_IN_KERNELS = ("dask", "distributed", "xarray", "zarr", "rasterio", "rioxarray",
                  "geopandas", "ruinmap.cluster")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("ruinmap", *path.relative_to(PACKAGE).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> Iterator[str]:
    """Every absolute import target of a module (all levels, deferred imports included)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


@functools.cache
def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = set()
        for target in _imports(path):
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(f"{target}."):
                targets.add(target)
        graph[name] = targets
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
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def _wing(module: str) -> str | None:
    rest = module.removeprefix("ruinmap.")
    for wing in sorted(ALLOWED, key=len, reverse=True):
        if rest == wing or rest.startswith(f"{wing}."):
            return wing
    return None


def test_there_is_no_import_cycle() -> None:
    # package __init__ files re-export their wing: an edge into one is an edge into the wing
    graph = {m: {t for t in ts if not MODULES[t].name == "__init__.py"}
             for m, ts in _graph().items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _wing(m) == "kernels"))
def test_kernels_are_pure(module: str) -> None:
    bad = sorted({t for t in _imports(MODULES[module]) if t.startswith(NOT_IN_KERNELS)})
    assert bad == [], f"{module} imports {bad}: kernels are pure numba and NumPy"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _wing(m) is not None))
def test_each_wing_imports_only_what_it_may(module: str) -> None:
    wing = _wing(module)
    assert wing is not None
    used = {_wing(t) for t in _graph()[module]} - {None, wing}
    assert used <= ALLOWED[wing], f"{module} ({wing}) imports {sorted(used - ALLOWED[wing])}"


def test_no_module_outside_a_wing_hides_in_cluster() -> None:
    loose = sorted(m for m in MODULES if m.startswith("ruinmap.cluster.") and _wing(m) is None)
    assert loose == []
