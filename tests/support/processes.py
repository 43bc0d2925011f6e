"""
Real processes for the tests that need them (tests/test_loss_processes.py,
tests/test_cdr_processes.py): the switch as C{twistd -n mgcpswitch
--no-simulator} and the load tool as C{mgcpload}, started with the running
reactor's C{spawnProcess} and stopped by their PID; the switch's admin read
with treq.  Waiting is polling on the reactor with a deadline (nothing
sleeps), as in L{tests.support.live}.

For trial C{TestCase}s; each test gets a temporary directory and cleans up
every process it started.
"""

from __future__ import annotations

import os
import sys
from inspect import isawaitable
from typing import Any, Callable, Optional

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.web.client import HTTPConnectionPool

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

__all__ = ["Child", "SwitchProcess", "mgcpload", "poll", "ROOT"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _twistd() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


async def poll(fetch: Callable[[], Any], check: Callable[[Any], bool], timeout: float,
               what: str, interval: float = 0.2) -> Any:
    """
    Fetch (a function, or a coroutine function: awaited), then
    C{check(value)}, every C{interval} seconds until it holds
    (return that value) or C{timeout} seconds passed (AssertionError naming
    C{what} and the last value).  A fetch that fails counts as not yet.
    """
    deadline = reactor.seconds() + timeout
    value: Any = None
    while True:
        try:
            value = fetch()
            if isawaitable(value):
                value = await value
            if check(value):
                return value
        except Exception as e:  # noqa: BLE001 - not listening yet, or a reading cut short
            value = e
        if reactor.seconds() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last: {value!r}"[:2000])
        await deferLater(reactor, interval, lambda: None)


class Child(ProcessProtocol):
    """A process we started: its output and its end; L{stop} ends it by PID."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.out = b""
        self.err = b""
        self.reason: Optional[Failure] = None
        self._ended: list[Deferred[Any]] = []
        self._lines: list[tuple[bytes, Deferred[float]]] = []

    @classmethod
    def spawn(cls, name: str, argv: list[str], cwd: str) -> Child:
        child = cls(name)
        reactor.spawnProcess(child, argv[0], argv, env=_env(), path=cwd)
        return child

    @property
    def pid(self) -> int:
        return self.transport.pid  # type: ignore[no-any-return,union-attr]

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.out += data

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self.err += data
        waiting = []
        for text, d in self._lines:
            if text in self.err:
                d.callback(reactor.seconds())
            else:
                waiting.append((text, d))
        self._lines = waiting

    def said(self, text: bytes) -> Deferred[float]:
        """Fires with the reactor's time when C{text} has appeared on its stderr."""
        d: Deferred[float] = Deferred()
        if text in self.err:
            d.callback(reactor.seconds())
        else:
            self._lines.append((text, d))
        return d

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        self.reason = reason
        for text, d in self._lines:
            d.errback(AssertionError(f"{self.name} ended before saying {text!r}: {self.err[-2000:]!r}"))
        self._lines = []
        for d in self._ended:
            d.callback(None)
        self._ended = []

    def ended(self) -> Deferred[None]:
        """Fires (with None) when it has ended; C{reason} and L{exit_code} say how."""
        d: Deferred[None] = Deferred()
        if self.reason is not None:
            d.callback(None)
        else:
            self._ended.append(d)
        return d

    def exit_code(self) -> Optional[int]:
        return getattr(self.reason.value, "exitCode", None) if self.reason is not None else None

    def signal(self, name: str) -> None:
        if self.reason is None:
            self.transport.signalProcess(name)  # type: ignore[union-attr]

    async def stop(self) -> None:
        """SIGTERM by its PID, then SIGKILL should it not end within 10 s; fires when it has ended."""
        for name in ("TERM", "KILL"):
            if self.reason is not None:
                return
            self.signal(name)
            try:
                await self.ended().addTimeout(10, reactor)
            except Exception:  # noqa: BLE001 - not ended yet: the next signal
                continue


class SwitchProcess:
    """C{twistd -n mgcpswitch --config FILE --no-simulator} in C{directory}; its admin on C{web}."""

    def __init__(self, directory: str, config: str, web: int) -> None:
        self.directory = directory
        self.config = config
        self.url = f"http://127.0.0.1:{web}"
        self.log = os.path.join(directory, "switch.log")
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.child: Optional[Child] = None

    def start(self) -> None:
        argv = _twistd() + ["-n", "--pidfile=", "--logfile", self.log, "mgcpswitch", "--config", self.config,
                            "--no-simulator"]
        self.child = Child.spawn("the switch", argv, self.directory)

    async def get(self, path: str) -> Any:
        response = await treq.get(self.url + path, pool=self.pool, timeout=10, reactor=reactor)
        if response.code != 200:
            raise AssertionError(f"GET {path}: {response.code}")
        return await response.json()

    async def ready(self, timeout: float = 30.0) -> None:
        """Fires when the admin answers; fails at once if the process ended."""
        async def fetch() -> Any:
            if self.child is not None and self.child.reason is not None:
                raise SystemExit(f"the switch ended: {self.child.reason.value}\n{self.log_text()[-3000:]}")
            return await self.get("/api/stats")

        await poll(fetch, lambda stats: True, timeout, "the switch's admin")

    async def view(self) -> dict[str, Any]:
        """Its endpoints and gateways, summed up: what is not idle (on hook, no call, no connection)."""
        endpoints = (await self.get("/api/endpoints"))["endpoints"]
        gateways = (await self.get("/api/gateways"))["gateways"]
        return {
            "endpoints": len(endpoints),
            "not_idle": [(e["name"], e["state"], e["hook"], len(e["connections"]), e["call_id"]) for e in endpoints
                         if e["state"] != "idle" or e["hook"] != "on" or e["connections"] or e["call_id"]],
            "gateways_not_up": [(g["name"], g["state"]) for g in gateways if g["state"] != "up"],
        }

    def log_text(self) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return "(no log)"

    async def stop(self) -> None:
        if self.child is not None:
            await self.child.stop()
        await self.pool.closeCachedConnections()


def mgcpload(args: list[str], cwd: str) -> Child:
    """C{mgcpload ARGS} (the checkout's script with this Python)."""
    return Child.spawn("mgcpload", [sys.executable, os.path.join(ROOT, "scripts", "mgcpload")] + args, cwd)
