"""The shape of the package: no import cycles among lamina's modules.

The graph counts every import a module can run: at the top, in functions (lazy
imports) and in ``try`` blocks; only ``if TYPE_CHECKING:`` blocks are left out. An
edge goes to the module imported (``from .a import b`` goes to ``a.b`` when that is a
module, else to ``a``); importing a submodule is not counted as importing its
package's ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lamina

SRC = Path(lamina.__file__).parent

#: Cycles still allowed (a cycle found must lie within one of these); this list only
#: shrinks, and it is empty since the one-folder-per-middleware step of issue 15.
LEFT: list[set[str]] = []


def module_names() -> dict[str, Path]:
    names = {}
    for path in SRC.rglob("*.py"):
        parts = ["lamina", *path.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported(name: str, path: Path, modules: set[str]) -> set[str]:
    """The lamina modules that ``name`` (at ``path``) imports, outside TYPE_CHECKING."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def nearest_module(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = nearest_module(alias.name)
                if target:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
                elif base in modules:
                    found.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imported(name, path, set(modules)) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_graph_sees_lazy_imports_and_skips_type_checking() -> None:
    graph = import_graph()
    assert "lamina.orchestration.config" in graph["lamina.orchestration.orchestrator"]
    assert "lamina.backends.base" in graph["lamina.orchestration.config"]  # a lazy import
    assert "lamina._core" not in graph["lamina._errors"]  # under TYPE_CHECKING only


def test_no_import_cycles() -> None:
    new = [c for c in cycles(import_graph()) if not any(set(c) <= left for left in LEFT)]
    assert not new, "import cycles:\n" + "\n".join(f"{len(c)} modules: {', '.join(c)}" for c in new)


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
