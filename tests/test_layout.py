"""The package's architecture as a checked fact: every module sits in one layer, imports go only
down or sideways, and no chain of imports comes back to where it started. Every import counts,
whether at the top of a file, inside a function or under ``TYPE_CHECKING``: each is a dependency
a reader has to hold in mind."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "aggan"

# Bottom to top; README.md's "Layout" lists the modules in this order.
LAYERS: list[tuple[str, set[str]]] = [
    ("foundation", {"errors", "version", "config", "domains", "images", "device", "distributed",
                    "faults"}),
    ("data", {"synthetic", "datasets", "data"}),
    ("networks", {"layers", "networks", "pool", "schedule"}),
    ("metrics", {"metrics", "metrics.table", "metrics.inception", "metrics.fid_kid",
                 "metrics.placement", "metrics.groundtruth"}),
    ("translation", {"translate", "tracking", "metrics.monitor"}),
    ("training", {"losses", "train_state", "checkpoint", "step", "run_folder", "train"}),
    ("inference", {"model_folder", "loading", "pipeline", "export", "evaluate", "demo"}),
    ("interface", {"cli", "__main__", "aggan"}),
]


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package).with_suffix("").parts
    return "aggan" if parts == ("__init__",) else ".".join(p for p in parts if p != "__init__")


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports (``from aggan import x`` names module x where
    x is one, else the package itself)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "aggan":
                found |= {a.name if a.name in modules else "aggan" for a in node.names}
            elif node.module.startswith("aggan."):
                found.add(node.module.removeprefix("aggan."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("aggan.") for a in node.names
                      if a.name.startswith("aggan.")}
    return found - {name}


def import_graph(package: Path) -> dict[str, set[str]]:
    paths = {module_name(p, package): p for p in package.rglob("*.py")}
    return {name: imports_of(path, name, set(paths)) for name, path in paths.items()}


def find_loop(graph: dict[str, set[str]]) -> list[str] | None:
    """One chain of imports that returns to its start, or None."""
    state: dict[str, str] = {}
    chain: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        chain.append(module)
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == "open":
                return [*chain[chain.index(imported):], imported]
            if imported not in state and (loop := visit(imported)):
                return loop
        state[module] = "done"
        chain.pop()
        return None

    for module in sorted(graph):
        if module not in state and (loop := visit(module)):
            return loop
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    layer = {module: index for index, (_, modules) in enumerate(LAYERS) for module in modules}
    return [f"{module} ({LAYERS[layer[module]][0]}) imports {imported} "
            f"({LAYERS[layer[imported]][0]})"
            for module, imported_modules in sorted(graph.items())
            for imported in sorted(imported_modules) if layer[imported] > layer[module]]


def test_every_module_has_a_layer() -> None:
    placed = set().union(*(modules for _, modules in LAYERS))
    assert set(import_graph(PACKAGE)) == placed


def test_no_import_loop() -> None:
    assert find_loop(import_graph(PACKAGE)) is None


def test_imports_only_go_down_the_layers() -> None:
    assert upward_imports(import_graph(PACKAGE)) == []


@pytest.mark.parametrize("where", ["top", "function", "type_checking"])
def test_a_loop_is_found_wherever_the_import_is(tmp_path: Path, where: str) -> None:
    """The checks see through every way of writing an import: a copy of the package with one
    upward import added fails both."""
    copy = tmp_path / "aggan"
    for path in PACKAGE.rglob("*.py"):
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    added = {"top": "from aggan.checkpoint import load_checkpoint\n",
             "function": "def _late():\n    from aggan import checkpoint\n",
             "type_checking": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    import aggan.checkpoint\n"}[where]
    networks = copy / "networks.py"
    networks.write_text(networks.read_text() + "\n" + added)
    graph = import_graph(copy)
    assert find_loop(graph) is not None
    assert upward_imports(graph) == ["networks (networks) imports checkpoint (training)"]
