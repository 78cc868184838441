"""The package's shape: no import cycle inside ``fsd_jax`` (imports inside functions count),
the library never imports ``configs``, and the leaf modules (``cka.py``, ``losses/``,
``masking.py``) import nothing from the models, training or data layers."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fsd_jax"
LEAVES = ("fsd_jax.cka", "fsd_jax.masking", "fsd_jax.losses", "fsd_jax.distances")
ABOVE_LEAVES = ("fsd_jax.models", "fsd_jax.train", "fsd_jax.data", "fsd_jax.terms")


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module named by an import statement anywhere in the file (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        deps = set()
        for target in _imports(name, path, modules):
            while target and target not in modules:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                deps.add(target)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_the_package():
    assert _cycles(_graph()) == []


def test_the_library_never_imports_configs():
    modules = _modules()
    offenders = {
        name: sorted(t for t in _imports(name, path, modules) if t.split(".")[0] == "configs")
        for name, path in modules.items()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_leaf_modules_import_nothing_above_them():
    graph = _graph()
    bad = {
        name: sorted(d for d in deps if d.startswith(ABOVE_LEAVES))
        for name, deps in graph.items()
        if name.startswith(LEAVES)
    }
    assert {k: v for k, v in bad.items() if v} == {}
    assert "fsd_jax.losses.fsd" in graph and "fsd_jax.cka" in graph["fsd_jax.losses.fsd"]
