"""
The layering guard of ARCHITECTURE.md: dependencies point down, faces →
configuration → call control and the core.  Call control
(C{mgcpswitch/agent/}) and the configuration (C{mgcpswitch/config.py})
must not reach the web admin (C{mgcpswitch.web}), not even through a
function-level import or another module.

The check reads the source: every C{import} statement of a module
(wherever it stands, so a lazy import inside a function counts) and, from
there, of every C{mgcpswitch} module it names, transitively.  Importing in
a subprocess would miss the lazy imports that run only on some paths.
"""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import mgcpswitch

PACKAGE = Path(mgcpswitch.__file__).resolve().parent


def module_file(name: str) -> Path | None:
    """The source file of the mgcpswitch module C{name}, or None if it is not one."""
    parts = name.split(".")
    if parts[0] != "mgcpswitch":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imports(name: str) -> set[str]:
    """The mgcpswitch modules that module C{name} imports, with their parent packages."""
    path = module_file(name)
    assert path is not None, name
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.add(source)
            # "from package import name": name may be a submodule.
            found.update(f"{source}.{alias.name}" for alias in node.names
                         if module_file(f"{source}.{alias.name}") is not None)
    out = set()
    for module in found:
        parts = module.split(".")
        out.update(".".join(parts[:n]) for n in range(1, len(parts) + 1))
    return {module for module in out if module_file(module) is not None}


def chains(start: str) -> dict[str, list[str]]:
    """Every mgcpswitch module C{start} reaches, with one chain of imports leading to it."""
    reached = {start: [start]}
    todo = [start]
    while todo:
        current = todo.pop()
        for module in sorted(imports(current)):
            if module not in reached:
                reached[module] = reached[current] + [module]
                todo.append(module)
    return reached


class Layering(SynchronousTestCase):
    def test_agent_and_config_do_not_reach_the_web(self) -> None:
        """
        No module of C{mgcpswitch/agent/}, nor C{mgcpswitch/config.py},
        imports C{mgcpswitch.web} directly or through other modules.
        """
        starts = ["mgcpswitch.config"] + sorted(
            module_name(path) for path in (PACKAGE / "agent").glob("*.py")
        )
        self.assertIn("mgcpswitch.agent.control", starts)
        bad = {}
        for start in starts:
            for module, chain in chains(start).items():
                if module == "mgcpswitch.web" or module.startswith("mgcpswitch.web."):
                    bad[start] = " -> ".join(chain)
                    break
        self.assertEqual(bad, {})

    def test_the_reader_follows_lazy_and_relative_imports(self) -> None:
        """
        The guard sees what it must: a function-level relative import
        (C{from ..config import ...} in call control) and the web admin's
        own imports, so an empty answer above means something.
        """
        self.assertIn("mgcpswitch.config", imports("mgcpswitch.agent.control"))
        self.assertIn("mgcpswitch.web.settings", chains("mgcpswitch.web.site"))
        self.assertIn("mgcpswitch.web", chains("mgcpswitch.tap"))
