"""The package's import graph: every module imports alone, and no module imports one that (in
turn, at any depth) imports it back."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import inverse_air

PACKAGE = Path(inverse_air.__file__).resolve().parent


def module_files() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its ``__init__.py``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports_of(name: str, source: str, is_package: bool, modules) -> set[str]:
    """The package's modules that module ``name`` (its code ``source``) imports anywhere
    (inside functions too: a loop through a deferred import is still a loop), except under
    ``if TYPE_CHECKING:``."""
    here = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in _walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(here[:len(here) - node.level + 1] + [node.module or ""]).strip(".") \
                if node.level else node.module
            for a in node.names:  # "from . import kinds" names a module, "from .kinds import KINDS" a name in one
                target = f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                if target in modules:
                    found.add(target)
    return found - {name}


def _walk(tree):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        yield node
        yield from _walk(node)


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path.read_text(), path.name == "__init__.py", modules)
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One loop of ``graph`` (its modules in order, the first repeated at the end), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (loop := visit(nxt)):
                return loop
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (loop := visit(node)):
            return loop
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert "inverse_air.kinds" in graph["inverse_air.checkpoint"]  # the graph sees imports at all
    assert "inverse_air.air" not in graph["inverse_air.kinds"]  # ... but not those for type checking
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_graph_and_the_cycle_finder_see_what_they_should():
    """What the test above relies on: deferred imports count, type-checking ones do not, and a
    loop is found."""
    modules = {"p", "p.a", "p.b", "p.c", "p.sub", "p.sub.d"}
    code = ("from typing import TYPE_CHECKING\nfrom . import b\nif TYPE_CHECKING:\n    from .c import C\n"
            "def f():\n    from .sub.d import D\n    import p.c\n")
    assert imports_of("p.a", code, False, modules) == {"p.b", "p.sub.d", "p.c"}
    assert imports_of("p.a", code.replace("    import p.c\n", ""), False, modules) == {"p.b", "p.sub.d"}
    assert imports_of("p.sub", "from .. import a\nfrom .d import D\n", True, modules) == {"p.a", "p.sub.d"}
    graph = {"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a"}}
    assert find_cycle(graph) is None
    assert find_cycle({**graph, "c": {"a"}}) == ["a", "b", "c", "a"]


# Each module imported in a fresh process of its own (forked from one that has imported the
# third-party libraries only, which would otherwise take most of the time): a module that works
# only when another was imported first, or that an import loop leaves half-initialized, fails.
ALONE = """
import os, sys, traceback
import numpy, torch, PIL.Image, typer, tqdm, scipy.optimize
try:
    import pytorch3d.renderer
except ImportError:
    pass
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            __import__(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status:
        failed.append(name)
print("failed:", failed)
sys.exit(1 if failed else 0)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks a process per module")
def test_every_module_imports_alone():
    names = [n for n in module_files() if n != "inverse_air.__main__"]  # __main__ runs the CLI
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", ALONE, *names], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "failed: []" in done.stdout
