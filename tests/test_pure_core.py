"""
The architecture guard of the protocol core (ARCHITECTURE.md, layer 1):
C{mgcpswitch.mgcp} is pure Python, with no Twisted import, no I/O and no
clock, so that it can be reused, fuzzed and benchmarked on its own.

The check runs in a fresh interpreter: the test process itself has Twisted
loaded (trial), so only a subprocess can see what the core pulls in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import mgcpswitch

ROOT = Path(mgcpswitch.__file__).resolve().parent.parent

#: Imports every module of the core, then reports what got loaded.
_PROBE = r"""
import json, pkgutil, sys
import mgcpswitch.mgcp as core
names = [core.__name__] + sorted(
    m.name for m in pkgutil.walk_packages(core.__path__, core.__name__ + ".")
)
for name in names:
    __import__(name)
print(json.dumps({
    "modules": names,
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("twisted", "zope")),
    "io": sorted(m for m in sys.modules if m in ("socket", "asyncio", "select", "selectors", "ssl")),
}))
"""


def _probe() -> dict[str, list[str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"importing the core failed:\n{result.stderr}")
    return json.loads(result.stdout)  # type: ignore[no-any-return]


class PureCoreTests(SynchronousTestCase):
    """Nothing in C{mgcpswitch.mgcp} imports Twisted."""

    def test_no_twisted(self) -> None:
        """
        Importing every module of C{mgcpswitch.mgcp} loads no module of the
        C{twisted} (or C{zope}) packages.
        """
        report = _probe()
        self.assertIn("mgcpswitch.mgcp._codec", report["modules"])
        self.assertEqual([], [m for m in report["loaded"] if m.startswith("twisted")])
        self.assertEqual([], report["loaded"])

    def test_no_network_modules(self) -> None:
        """The core does no I/O: it imports neither sockets nor an event loop."""
        self.assertEqual([], _probe()["io"])
