"""
Architecture guards read from the source (ARCHITECTURE.md, "Dependencies
point down"): no import circle anywhere in C{mgcpswitch}, no module
outside the protocol core imports a private name of it, and every
C{test-case-name} header names a test module that exists.

Both read every import statement with C{ast}, including those under
C{if TYPE_CHECKING:} and inside functions: a circle that only the type
checker sees is still two modules that cannot be read one without the
other.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator

from twisted.trial.unittest import SynchronousTestCase

import mgcpswitch

PACKAGE = Path(mgcpswitch.__file__).resolve().parent
ROOT = PACKAGE.parent

#: Tests whose subject is one private module of the core may open it (white box).
WHITE_BOX = {"tests/test_digitmap.py": {"mgcpswitch.mgcp._digitmap"}}


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(path: Path, name: str) -> Iterator[tuple[str, str | None]]:
    """(module, imported name or None) for every import statement of a file."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                yield module, alias.name


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a submodule counts, and so does its package)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module, imported in _imports(path, name):
            for target in (module, f"{module}.{imported}" if imported else None):
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


class ImportCircleTests(SynchronousTestCase):
    def test_finder_sees_a_circle(self) -> None:
        """The circle finder reports a circle of three and leaves the tail out."""
        graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
        self.assertEqual(circles(graph), [["a", "b", "c"]])

    def test_no_circle_in_the_package(self) -> None:
        """
        No module of mgcpswitch reaches itself through its imports: in the
        core, messages build on the parameter table, never the other way
        round; in the gateway, the parts receive narrow contexts instead
        of importing the gateway.
        """
        graph = import_graph()
        self.assertIn("mgcpswitch.mgcp._params", graph["mgcpswitch.mgcp._message"])
        self.assertIn("mgcpswitch.gateway.endpoint", graph["mgcpswitch.gateway.gateway"])
        self.assertEqual(circles(graph), [])


class TestCaseNameTests(SynchronousTestCase):
    def test_test_case_names_exist(self) -> None:
        """Every C{test-case-name} header names test modules that exist (trial and editors run them)."""
        named = 0
        missing = []
        for path in sorted(PACKAGE.rglob("*.py")):
            first = path.read_text(encoding="utf-8").split("\n", 1)[0]
            if "test-case-name:" not in first:
                continue
            for module in first.split("test-case-name:", 1)[1].split("-*-", 1)[0].strip().split(","):
                named += 1
                if not (ROOT / (module.strip().replace(".", "/") + ".py")).is_file():
                    missing.append(f"{path.relative_to(ROOT)}: {module.strip()}")
        self.assertGreater(named, 50)
        self.assertEqual(missing, [])


class PrivateCoreNameTests(SynchronousTestCase):
    def test_nothing_outside_the_core_imports_its_private_names(self) -> None:
        """
        Outside C{mgcpswitch/mgcp/}, in the package, the tests, the
        benchmarks and the scripts, every import from the core names a
        public module and a public name (C{mgcpswitch.mgcp} publishes what
        the fast paths need).
        """
        files = [p for p in PACKAGE.rglob("*.py") if "mgcp" not in p.relative_to(PACKAGE).parts[:1]]
        files += sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
        files += [p for p in (ROOT / "scripts").iterdir() if p.read_bytes().startswith(b"#!/usr/bin/env python")]
        self.assertGreater(len(files), 40)
        offences = []
        for path in files:
            rel = path.relative_to(ROOT).as_posix()
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            allowed = WHITE_BOX.get(rel, set())
            for module, imported in _imports(path, name):
                if not module.startswith("mgcpswitch.mgcp"):
                    continue
                full = f"{module}.{imported}" if imported else module
                parts = full.split(".")[2:]
                if any(part.startswith("_") for part in parts) and not any(
                    full == a or module == a for a in allowed
                ):
                    offences.append(f"{rel}: {full}")
        self.assertEqual(offences, [])
