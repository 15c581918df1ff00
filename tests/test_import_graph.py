"""The import graph of src/gmmgan has no cycle, and no module there is longer than 500 lines.

A cycle (even through an import inside a function) means two modules cannot be understood, tested
or imported one without the other, and an innocent reordering of imports can break it at import
time. The graph is read from the source with ``ast``, so nothing is imported to build it:

- every ``import`` and ``from ... import`` statement counts, at module level or inside a
  function, class or ``if`` block (a lazy import is still a dependency);
- relative imports are resolved against the importing module's package;
- ``from gmmgan.x import name`` is an edge to ``gmmgan.x.name`` when that is a module, else to
  ``gmmgan.x``;
- a package's lazy exports (an ``_EXPORTS`` table of module names that ``__getattr__`` imports
  on first use, as in gmmgan and gmmgan.gan) are edges from the package to those modules: the
  ``importlib.import_module`` call itself is no import statement;
- only edges between gmmgan modules are kept (third-party imports cannot close a cycle here).

Left out: the implicit edge from ``gmmgan.x.y`` to its parent package, whose ``__init__`` Python
runs first. ``gmmgan/mixture/__init__.py`` imports ``gaussian_mixture``, which imports
``gmmgan.mixture._base``; with parent edges, every package that re-exports its own submodules
would be a cycle with each of them, though importing any of them works in any order.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "gmmgan"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under src/gmmgan."""
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _imported_names(tree: ast.AST, module: str, is_package: bool, known: dict[str, Path]) -> set[str]:
    """The gmmgan modules that ``module``'s source imports, anywhere in it."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    edges = set()
    for name in found:
        # `import gmmgan.x.y` names gmmgan.x.y; keep the longest prefix that is one of our modules.
        parts = name.split(".")
        while parts and ".".join(parts) not in known:
            parts.pop()
        if parts and parts[0] == PACKAGE:
            edges.add(".".join(parts))
    edges.discard(module)
    return edges | _lazy_exports(tree, known)


def _lazy_exports(tree: ast.AST, known) -> set[str]:
    """Module names in a module-level ``_EXPORTS = {name: module}`` table (imported on first use)."""
    out = set()
    for node in getattr(tree, "body", ()):
        if (isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict)
                and any(getattr(t, "id", None) == "_EXPORTS" for t in getattr(node, "targets", [getattr(node, "target", None)]))):
            out |= {v.value for v in node.value.values if isinstance(v, ast.Constant) and v.value in known}
    return out


def import_graph() -> dict[str, set[str]]:
    known = _modules()
    return {
        name: _imported_names(ast.parse(path.read_text(), str(path)), name, _is_package(path), known)
        for name, path in known.items()
    }


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
    return sorted(out)


def test_the_walker_sees_lazy_relative_and_from_imports(tmp_path):
    # The walker itself: an import inside a function, a relative import and `from pkg import mod`
    # all count, so a test that finds no cycle is not one that cannot see them.
    known = {"gmmgan.a": None, "gmmgan.a.b": None, "gmmgan.c": None, "gmmgan.d": None}
    src = (
        "import numpy\n"
        "from . import b\n"
        "def f():\n"
        "    from gmmgan.c import thing\n"
        "    import gmmgan.d\n"
    )
    assert _imported_names(ast.parse(src), "gmmgan.a.x", False, known) == {"gmmgan.a.b", "gmmgan.c", "gmmgan.d"}
    lazy = '_EXPORTS = {"f": "gmmgan.a.b", "g": "gmmgan.c"}\n'
    assert _imported_names(ast.parse(lazy), "gmmgan.a", True, known) == {"gmmgan.a.b", "gmmgan.c"}
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_gmmgan():
    graph = import_graph()
    assert graph.get("gmmgan.mixture.gaussian_mixture")  # the walker found the package's edges
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (modules that import each other, directly or not):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_no_module_is_longer_than_500_lines():
    long = {
        str(path.relative_to(SRC)): n
        for path in _modules().values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by what they hold): {long}"
