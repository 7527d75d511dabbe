"""Every module of pytshark_ext imports on its own, and the modules import each other without a cycle.

A cycle works only as long as each side imports the other late enough (inside a function, or after
the names the other needs); reordering a file then breaks an unrelated command with an ImportError
or a half-initialised module. So the graph here counts every import statement, function-local ones
included: a cycle hidden inside a function is still a cycle.
"""
from __future__ import annotations

import ast
import os
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytshark_ext

PACKAGE = pytshark_ext.__name__
PACKAGE_DIR = Path(pytshark_ext.__file__).resolve().parent


def _modules() -> Dict[str, Path]:
    """{dotted name: source file} for the package and every module under it."""
    found = {PACKAGE: PACKAGE_DIR / "__init__.py"}
    for info in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix=PACKAGE + "."):
        folder = Path(info.module_finder.path)
        leaf = info.name.rsplit(".", 1)[1]
        found[info.name] = folder / leaf / "__init__.py" if info.ispkg else folder / f"{leaf}.py"
    return found


MODULES = _modules()


def _imported(module: str, path: Path) -> Set[str]:
    """The package modules `module` imports, from every import statement in its source."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # `from .x import y` imports module x.y when there is one, else takes the name y from x
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                       for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t in MODULES and t != module)
    return out


def _tangles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The groups of modules that import each other, directly or round a cycle (the strongly
    connected components of more than one module, Tarjan's algorithm), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    groups: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def test_the_walk_finds_the_modules():
    # the walk itself must work, or the tests below check nothing
    for name in ("pytshark_ext.tshark", "pytshark_ext.cli", "pytshark_ext.render.json"):
        assert name in MODULES
    assert all(p.is_file() for p in MODULES.values())


def test_tangle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}
    assert _tangles(graph) == [["a", "b", "c"], ["d", "e"]]
    assert _tangles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_cycle():
    graph = {name: _imported(name, path) for name, path in MODULES.items()}
    tangles = _tangles(graph)
    assert tangles == [], "modules importing each other: " + "; ".join(" <-> ".join(g) for g in tangles)


def test_every_module_imports_cold():
    # one fresh interpreter per module (started together: the whole lot takes about as long as
    # the slowest one), so that no module works only because another one was imported first
    # this checkout's package first (not an installed copy elsewhere, e.g. an editable install)
    path = os.pathsep.join(filter(None, [str(PACKAGE_DIR.parent), os.environ.get("PYTHONPATH")]))
    procs = {name: subprocess.Popen([sys.executable, "-c", f"import {name}"], env=dict(os.environ, PYTHONPATH=path),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in MODULES}
    failed = {}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=60)
        if proc.returncode:
            failed[name] = err.strip().splitlines()[-1:]
    assert failed == {}
