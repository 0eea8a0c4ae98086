"""The package's modules import one another in one direction only: no
module imports (at top level or inside a function) one that imports it
back, directly or through others."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "statsmodels_hetmixed"


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path):
    """Package modules imported anywhere in a file (resolved names)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("statsmodels_hetmixed"):
                # "from . import _engine" imports the module _engine (its
                # package is imported first in any case); "from .x import y"
                # imports x, and x.y where y is a module
                if node.module:
                    found.add(target)
                for alias in node.names:
                    found.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names
                         if a.name.startswith("statsmodels_hetmixed"))
    return found


def _graph():
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        # a package's own __init__ is not an edge back to itself
        graph[name] = {t for t in _imports(path) if t in files and t != name}
    return graph


def _cycle(graph):
    colour, stack = {}, []

    def visit(node):
        colour[node] = "grey"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour.get(nxt) == "grey":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in colour:
                found = visit(nxt)
                if found:
                    return found
        colour[node] = "black"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in colour:
            found = visit(node)
            if found:
                return found
    return None


def test_finds_a_cycle_when_there_is_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package():
    graph = _graph()
    assert "statsmodels_hetmixed.model" in graph
    assert "statsmodels_hetmixed.locscale" in graph["statsmodels_hetmixed.model"]
    # package __init__ files import their modules; their modules must not
    # import the package back, which would show up as a cycle here
    assert _cycle(graph) is None, _cycle(graph)
