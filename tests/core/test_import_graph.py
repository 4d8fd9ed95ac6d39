"""The import graph of src/lorakit: dependencies point down a fixed layer order, no file cycles.

Every ``import`` / ``from ... import`` in the package is read with ``ast`` (module level and
inside functions alike; only blocks under ``if TYPE_CHECKING:`` are skipped, they never run).
Each module belongs to a component: its top-level subpackage or module under ``lorakit``
(``lorakit.layers.dense`` -> ``layers``; the package root ``lorakit/__init__.py`` is the public
facade ``lorakit``). A component may import only components of a strictly lower layer in
``LAYERS``, and no set of files may import each other in a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "lorakit"

# Lowest first. A component imports only components of an earlier line; peers on one line
# don't import each other. A new top-level module or subpackage must be placed here.
LAYERS: list[set[str]] = [
    {"errors", "digest", "heap"},  # import nothing from lorakit
    {"paths", "patterns", "extras"},  # safe paths, bounded regexes, optional packages
    {"config", "quant", "distributed", "gguf_cache", "metrics"},  # LoraConfig, quantized storage
    {"model_safety"},  # refusing model folders that would unpickle or run code
    {"model_sources"},  # where models come from (aliases, local, GGUF, hub) and loading them
    {"layers"},  # the LoRA wrappers around one module
    {"targeting"},  # which modules a config adapts
    {"model"},  # adapters in a model: inject / add / set / delete
    {
        "adapter_io",
        "arithmetic",
        "fast_modules",
        "merging",
        "mixed",
        "summary",
    },  # operations on adapted models
    {"inference", "quantized_model", "runconfig"},  # generation, quantized bases, the run config
    {"lorakit", "data"},  # the public facade; data readers, splits, batching
    {"tasks"},
    {"training", "ui"},
    {"serving", "sweep"},
    {"cli"},
    {"__main__", "demo"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def imports_of(source: str, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The package modules that module ``name`` imports (most specific module named)."""
    tree = ast.parse(source)
    skipped = _type_checking_nodes(tree)
    here = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets = [
                f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import lorakit.x.y` of a name, not a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def package_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}
    modules = set(paths)
    return {
        name: imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", modules)
        for name, path in paths.items()
    }


def component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports(graph: Mapping[str, Iterable[str]], layers: list[set[str]]) -> list[str]:
    """Every import that does not go to a strictly lower layer, and every unplaced component."""
    layer_of = {c: i for i, group in enumerate(layers) for c in group}
    problems: list[str] = []
    for module, targets in sorted(graph.items()):
        src = component(module)
        if src not in layer_of:
            problems.append(f"{module}: component {src!r} has no place in LAYERS")
            continue
        for target in sorted(targets):
            dst = component(target)
            if dst == src:
                continue
            if dst not in layer_of:
                problems.append(f"{target}: component {dst!r} has no place in LAYERS")
            elif layer_of[dst] >= layer_of[src]:
                problems.append(f"{module} imports {target}: {src!r} is not above {dst!r}")
    return problems


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected sets of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                found.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_an_upward_import_and_a_cycle() -> None:
    """The checks below can fail: a synthetic graph with one of each is reported."""
    graph = {
        "lorakit.layers.dense": {"lorakit.model"},  # layers -> model: upward
        "lorakit.model": {"lorakit.layers.dense"},
        "lorakit.errors": set(),
        "lorakit.newthing": {"lorakit.errors"},  # not placed in LAYERS
    }
    problems = upward_imports(graph, LAYERS)
    assert any("lorakit.layers.dense imports lorakit.model" in p for p in problems)
    assert any("'newthing' has no place" in p for p in problems)
    assert cycles(graph) == [["lorakit.layers.dense", "lorakit.model"]]
    src = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lorakit.model import x\n"
    assert imports_of(src, "lorakit.layers.dense", False, {"lorakit.model"}) == set()
    src = "def f():\n    from ..model import inject\n"
    assert imports_of(src, "lorakit.layers.dense", False, {"lorakit.model"}) == {"lorakit.model"}


def test_the_graph_is_read() -> None:
    graph = package_graph()
    assert "lorakit.layers.dense" in graph and "lorakit.quant.linear" in graph["lorakit.layers.dense"]
    assert sum(len(t) for t in graph.values()) > 300


def test_no_upward_imports() -> None:
    assert upward_imports(package_graph(), LAYERS) == []


def test_no_file_imports_itself_through_a_circle() -> None:
    assert cycles(package_graph()) == []


def test_no_private_name_is_imported_from_another_component() -> None:
    """Helpers shared across packages have public names (no ``targeting._base_modules``)."""
    private = []
    for path in (SRC / PACKAGE).rglob("*.py"):
        here = component(module_name(path))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(f"{PACKAGE}."):
                for alias in node.names:
                    is_private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if is_private and component(node.module or "") != here:
                        private.append(f"{module_name(path)}: from {node.module} import {alias.name}")
    assert private == []
