"""The shape of the package: no import cycle among ctx/ modules, no module over 400 lines, narrow layers."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "ctx"
MAX_LINES = 400

# A cycle that must stay for a while, as its sorted list of modules, with the reason beside it (none today):
# a cycle not listed here fails the test, and so does a listed one that is gone.
ALLOWED_CYCLES: list[list[str]] = []

# Modules allowed over MAX_LINES, with the reason beside each (none today).
ALLOWED_LONG: set[str] = set()


def module_name(path: Path) -> str:
    """``ctx/a/b.py`` → ``ctx.a.b``; a package's ``__init__.py`` is its own node, named as the package."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path, name: str, known: set[str]) -> Iterator[tuple[str, bool]]:
    """Every module ``path`` imports, top-level or inside a function, with whether it is under ``if TYPE_CHECKING``.

    ``from ctx.a import b`` names ``ctx.a.b`` when that is a module, else ``ctx.a``; relative imports are resolved.
    A string that is exactly a ctx module's name counts as an import of it (``importlib.import_module``).
    Importing ``ctx.a.b`` also runs ``ctx/a/__init__.py``; that edge is left out (the package inits import
    nothing at module level), so a package's own modules can import each other through it.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def walk(node: ast.AST, typing_only: bool) -> Iterator[tuple[str, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child.test):
                for stmt in child.body:
                    yield from one(stmt, True)
                for stmt in child.orelse:
                    yield from one(stmt, typing_only)
            else:
                yield from one(child, typing_only)

    def one(node: ast.AST, typing_only: bool) -> Iterator[tuple[str, bool]]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, typing_only
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub if sub in known else target), typing_only
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value and node.value in known:
            # A module imported by name (importlib.import_module, a list of plugins). Only dotted names: the bare
            # "ctx" is the name of pluggy's project, the entry-point group and the webhook payloads' source too.
            yield node.value, typing_only
        else:
            yield from walk(node, typing_only)

    yield from walk(ast.parse(path.read_text(), str(path)), False)


def graph(include_typing: bool = False) -> dict[str, set[str]]:
    """ctx module → the ctx modules it imports at run time (module level and lazily inside functions);
    with ``include_typing``, the ``if TYPE_CHECKING`` ones too."""
    known = modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target, typing_only in imports(path, name, set(known)):
            if target in known and target != name and (include_typing or not typing_only):
                edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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
    return sorted(found)


def test_the_cycle_finder_finds_a_loop_and_only_loops() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(edges) == [["a", "b", "c"]]


def test_no_import_cycle_among_ctx_modules() -> None:
    found = cycles(graph())
    new = [c for c in found if c not in ALLOWED_CYCLES]
    assert not new, "import cycles among ctx/ modules (module level or lazy in functions):\n" + "\n".join(
        " ↔ ".join(c) for c in new)
    gone = [c for c in ALLOWED_CYCLES if c not in found]
    assert not gone, f"allowed cycles that no longer exist (remove them from ALLOWED_CYCLES): {gone}"


@pytest.mark.parametrize("layer", ["ctx.versions", "ctx.audit"])
def test_versions_and_audit_take_protocols_not_the_workspace(layer: str) -> None:
    edges = graph(include_typing=True)
    for name, targets in edges.items():
        if name == layer or name.startswith(f"{layer}."):
            wide = sorted(t for t in targets if t == "ctx.workspace" or t.startswith("ctx.services"))
            assert not wide, f"{name} imports {wide}: it should take a narrow Protocol"


def test_services_never_import_the_daemon_cli_or_tui() -> None:
    edges = graph(include_typing=True)
    for name, targets in edges.items():
        if name == "ctx.workspace" or name.startswith("ctx.services"):
            above = sorted(t for t in targets if t.startswith(("ctx.daemon", "ctx.cli", "ctx.tui", "ctx.client")))
            assert not above, f"{name} imports {above}: services are called by those, not the other way round"


def test_no_module_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT.parent)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not set(long) - ALLOWED_LONG, f"modules over {MAX_LINES} lines: {long}"
    shortened = ALLOWED_LONG - set(long)
    assert not shortened, f"no longer over {MAX_LINES} lines (remove them from ALLOWED_LONG): {sorted(shortened)}"


if __name__ == "__main__":  # print today's cycles: python tests/test_import_graph.py
    for component in cycles(graph()):
        print(component)
