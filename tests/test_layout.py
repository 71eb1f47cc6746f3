"""The layout holds: layers import one way, no cycles, rooms of a livable size, and the
README's layout section names what is in the tree."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("cxsweep", "tasks", "workers", "console", "devtools")
# Which packages each may import (besides itself): the layers, top to bottom.
ALLOWED = {
    "cxsweep": set(),
    "tasks": {"cxsweep"},
    "workers": {"cxsweep", "tasks"},
    "devtools": {"cxsweep"},
    "console": {"cxsweep", "tasks", "workers", "devtools"},
}
LONG_MODULE = 500


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules ``name`` imports, at any depth of its code (lazy imports count)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            # ``from package import module`` imports the module; ``from module import
            # name`` the module the name is in.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def test_layers_import_one_way() -> None:
    wrong = []
    for name, targets in graph().items():
        top = name.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if other != top and other not in ALLOWED[top]:
                wrong.append(f"{name} -> {target}")
    assert wrong == []


def test_no_import_cycles() -> None:
    edges = graph()
    # Tarjan's strongly connected components: any component of more than one module is
    # a cycle (a package importing its own submodules is one too, so it is left out).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges[node]:
            if target.startswith(node + "."):
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in edges:
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_domain_loads_no_celery() -> None:
    domain = [name for name in modules() if name.split(".")[0] == "cxsweep"]
    code = (
        "import importlib, sys\n"
        f"for name in {domain!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('celery', 'kombu', 'workers', 'tasks', 'console', 'devtools'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("name", sorted(modules()))
def test_a_long_module_says_why(name: str) -> None:
    path = modules()[name]
    lines = path.read_text().splitlines()
    if len(lines) <= LONG_MODULE:
        return
    head = "\n".join(lines[:30])
    assert re.search(r"^Long because", head, re.M), (
        f"{path.relative_to(REPO)} has {len(lines)} lines: split it, or say at its top"
        " why it is one module ('Long because ...' in its docstring)"
    )


def test_the_readme_layout_names_the_tree() -> None:
    """Every module of the five packages is named in the README's layout section, and
    every path named there exists."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    pattern = "`((?:" + "|".join(PACKAGES) + r")/[\w/]*\.py)`"
    named = set(re.findall(pattern, section))
    on_disk = {
        str(path.relative_to(REPO))
        for package in PACKAGES
        for path in (REPO / package).rglob("*.py")
        if path.name != "__init__.py"
    }
    assert sorted(on_disk - named) == [], "modules the README's layout does not name"
    assert sorted(named - on_disk) == [], "the README's layout names modules that are gone"
