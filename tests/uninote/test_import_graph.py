"""The package's import graph: no import cycles, and the library never reaches training code.

Every ``import`` statement counts, function-local ones too (they hide an arrow, they do not remove
it); only ``if TYPE_CHECKING:`` blocks are skipped, since they never run.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ("uninote.model", "uninote.index", "uninote.data")  # importable on a box that never trains
ABOVE_LIBRARY = ("uninote.train", "uninote.service", "uninote.cli", "uninote.worker")


def _module_names(root: Path, package: str) -> dict[str, Path]:
    names = {}
    for path in (root / package).rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _runtime_imports(tree: ast.AST):
    """Import nodes that can run: everything except the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """``module -> modules of the package it imports``; ``from pkg import submodule`` points at
    the submodule, ``from module import name`` at the module."""
    modules = _module_names(root, package)

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(known(a.name) for a in node.names)
                continue
            source = node.module or ""
            if node.level:
                source = ".".join(base[:len(base) - node.level + 1] + ([source] if source else []))
            for alias in node.names:
                full = f"{source}.{alias.name}"
                targets.add(full if full in modules else known(source))
        graph[name] = targets - {None, name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
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
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT, "uninote")


def test_no_two_modules_import_each_other(graph):
    assert "uninote.model.features" in graph and graph["uninote.data.native"]
    assert cycles(graph) == []


@pytest.mark.parametrize("package", LIBRARY)
def test_library_never_reaches_training_or_serving_code(graph, package):
    modules = [m for m in graph if m == package or m.startswith(package + ".")]
    assert modules
    reached = {m: sorted(t for t in reachable(graph, m) if t.startswith(ABOVE_LIBRARY)) for m in modules}
    assert {m: t for m, t in reached.items() if t} == {}


def test_the_checks_see_function_local_and_relative_imports_but_not_type_checking_ones(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub import a\n")
    (pkg / "sub" / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from . import a\nfrom pkg.train import x\n")
    (pkg / "sub" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub import a\n")
    (pkg / "train.py").write_text("x = 1\n")
    g = import_graph(tmp_path, "pkg")
    assert g["pkg.sub.a"] == {"pkg.sub.b"} and g["pkg.sub.b"] == {"pkg.sub.a", "pkg.train"}
    assert g["pkg.sub.c"] == set() and g["pkg.sub"] == {"pkg.sub.a"}
    assert cycles(g) == [["pkg.sub.a", "pkg.sub.b"]]
    assert "pkg.train" in reachable(g, "pkg.sub") and "pkg.train" not in reachable(g, "pkg.sub.c")
