"""Imports point down only: every module of ``deepclust/`` is parsed (never imported), its imports drawn as a graph
of modules and of packages, and the graph checked against the layers below.

An import inside a function counts like one at the top of the module: a lazy import is a dependency too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "deepclust"

# Lowest first. Each entry is a package or a module directly under deepclust/ ("__init__" is deepclust itself:
# the front door, above every layer, loading ``deepclust.api`` on first use).
# A module may import its own layer and the ones before it, never a later one; within a layer the package graph
# (checked below) must still have no loop.
LAYERS: list[tuple[str, set[str]]] = [
    ("version", {"version", "moved_modules"}),  # moved_modules: old module paths, imports no deepclust module
    ("faults", {"faults"}),  # errors.py (the error types), transient.py (what is worth retrying)
    ("storage", {"storage"}),  # urls, lock, workspace, manifests, manifest_log
    ("audio", {"audio"}),  # files, blocks, downmix, reasons
    ("pipeline", {"pipeline"}),  # the domain-free stage framework: store, plan, driver
    ("features", {"features"}),
    ("model", {"model", "pretrained"}),
    ("metrics", {"metrics"}),
    ("corpora/mixing", {"corpora", "mixing"}),
    ("training", {"training"}),
    ("separation", {"separation"}),
    ("evaluation", {"evaluation"}),
    ("reports", {"reports"}),
    ("archive", {"archive"}),  # the separation job: config, job, processes
    ("api", {"api"}),  # deepclust.separate / load_model / Separator
    ("stages", {"stages"}),  # one module per stage, above every domain
    ("recipe", {"recipe"}),  # the registry and order of the stages, the end-to-end config, reproduce
    ("cli", {"cli", "__main__"}),
    ("front door", {"__init__"}),
]

# Never imported by the library: the Prefect side sits above it (flows -> tasks -> deepclust); flows/ and tasks/
# install as deepclust.flows and deepclust.tasks (pyproject.toml), so both spellings are caught.
FORBIDDEN = {"flows", "tasks", "prefect", "prefect_dask", "deepclust.flows", "deepclust.tasks"}


def forbidden(name: str) -> bool:
    return name.split(".")[0] in FORBIDDEN or ".".join(name.split(".")[:2]) in FORBIDDEN


def module_name(path: Path) -> str:
    parts = ("deepclust",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def unit_of(module: str) -> str:
    """The package or top-level module a module belongs to: ``deepclust.stages.corpus`` -> ``stages``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def resolve(name: str) -> str:
    """The deepclust module an imported name lives in (its longest prefix that is a module)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports_of(module: str) -> list[tuple[str, int]]:
    """Every ``(imported name, line)`` of a module, absolute; ``from X import Y`` gives ``X.Y``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def module_edges() -> list[tuple[str, str, int]]:
    """``(importer, imported deepclust module, line)`` for every import of one deepclust module by another."""
    edges = set()
    for module in MODULES:
        for name, line in imports_of(module):
            if name.split(".")[0] == "deepclust":
                target = resolve(name)
                if target != module:
                    edges.add((module, target, line))
    return sorted(edges)


def where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(PACKAGE.parent)}:{line}"


LAYER_OF = {unit: index for index, (_, units) in enumerate(LAYERS) for unit in units}


def test_every_package_and_top_level_module_has_a_declared_layer():
    undeclared = sorted({unit_of(m) for m in MODULES} - set(LAYER_OF))
    assert not undeclared, f"put these in LAYERS (tests/test_import_layers.py): {undeclared}"


def test_no_import_runs_up_the_layers():
    upward = [
        f"{where(a, line)}: {a} ({LAYERS[LAYER_OF[unit_of(a)]][0]}) -> {b} ({LAYERS[LAYER_OF[unit_of(b)]][0]})"
        for a, b, line in module_edges()
        if unit_of(a) in LAYER_OF and unit_of(b) in LAYER_OF and LAYER_OF[unit_of(b)] > LAYER_OF[unit_of(a)]
    ]
    assert not upward, (
        "imports that run up the layers (lowest first: "
        + " < ".join(name for name, _ in LAYERS)
        + "):\n"
        + "\n".join(upward)
    )


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of a directed graph as ``[a, b, ..., a]``, or None when it is a DAG."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == "open":
                return path[path.index(successor) :] + [successor]
            if successor not in state:
                cycle = visit(successor)
                if cycle:
                    return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_package_graph_has_no_loop():
    graph: dict[str, set[str]] = defaultdict(set)
    because: dict[tuple[str, str], list[str]] = defaultdict(list)
    for a, b, line in module_edges():
        if unit_of(a) != unit_of(b):
            graph[unit_of(a)].add(unit_of(b))
            because[unit_of(a), unit_of(b)].append(f"{where(a, line)}: {a} -> {b}")
    cycle = find_cycle(graph)
    if cycle:
        steps = [f"  {x} -> {y}:\n    " + "\n    ".join(because[x, y]) for x, y in zip(cycle, cycle[1:])]
        pytest.fail("a package-level import loop: " + " -> ".join(cycle) + "\n" + "\n".join(steps))


# Packages made of what were loose modules at the top of deepclust/ (issue 28): the package graph above saw a loop
# between those modules; within a package it cannot, so the module graph inside each of these is checked instead.
MODULE_LOOP_FREE = ("faults", "storage", "audio", "archive")


@pytest.mark.parametrize("package", MODULE_LOOP_FREE)
def test_the_modules_of_a_low_package_import_each_other_without_a_loop(package):
    graph: dict[str, set[str]] = defaultdict(set)
    because: dict[tuple[str, str], list[str]] = defaultdict(list)
    for a, b, line in module_edges():
        if unit_of(a) == unit_of(b) == package:
            graph[a].add(b)
            because[a, b].append(where(a, line))
    cycle = find_cycle(graph)
    if cycle:
        steps = [f"  {x} -> {y}: " + ", ".join(because[x, y]) for x, y in zip(cycle, cycle[1:])]
        pytest.fail(f"a module import loop in deepclust/{package}/: " + " -> ".join(cycle) + "\n" + "\n".join(steps))


def test_the_library_never_imports_prefect_flows_or_tasks():
    offending = sorted(
        {
            f"{where(module, line)}: {module} imports {name}"
            for module in MODULES
            for name, line in imports_of(module)
            if forbidden(name)
        }
    )
    assert not offending, "the library imports the Prefect side:\n" + "\n".join(offending)


def test_the_checks_see_a_loop_and_an_upward_import():
    """The graph code itself: a loop is found, a DAG passes, and today's modules resolve as expected."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    edges = {(a, b) for a, b, _ in module_edges()}
    assert ("deepclust.recipe.registry", "deepclust.stages.corpus") in edges  # from ... import STAGE as CORPUS
    assert ("deepclust.stages.separate", "deepclust.stages.train") in edges  # a lazy import, inside a function
    assert LAYER_OF["stages"] > LAYER_OF["archive"] > LAYER_OF["separation"] > LAYER_OF["pipeline"]
