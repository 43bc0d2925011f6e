"""
A running switch on loopback, in the test's process, on the real reactor:
what C{twistd mgcpswitch} builds (L{mgcpswitch.tap.build_switch}: call
control, two simulated gateways of eight lines, the web admin), from an INI
text that puts every socket on 127.0.0.1 on ports free at the time.

L{LiveSwitch.start} starts the services and waits (polling on the reactor,
with a deadline; nothing sleeps) until both gateways have registered and are
up.  L{LiveSwitch.auto_answer} makes the simulated phones lift the handset
when they ring, as a subscriber would.  L{LiveSwitch.stop} stops the
services, closes the admin's open connections (a browser's event stream)
and waits until they are gone, so trial finds the reactor clean.

For trial C{TestCase}s (tests/test_web_browser.py, tests/test_ctl_real.py).
"""

from __future__ import annotations

import socket
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater

from mgcpswitch.config import Settings, parse_settings
from mgcpswitch.tap import build_switch

from .loopback import TrackingFactory

__all__ = ["LiveSwitch", "free_ports", "switch_ini", "wait_until"]

INI = """\
[switch]
interface = 127.0.0.1
port = {agent}
observers = {observers}
keepalive_interval = 15
no_answer_timeout = 30
{switch_extra}
[store]
url = memory

[web]
listen = tcp:{web}:interface=127.0.0.1
{web_extra}
[gateway:rgw1]
address = 127.0.0.1
port = {gw1}
lines = 8
numbers = 1001-1008

[gateway:rgw2]
address = 127.0.0.1
port = {gw2}
lines = 8
numbers = 2001-2008

[simulator]
gateways = rgw1, rgw2
{simulator_extra}
{plugins}{sections}"""


def free_ports(kind: int, count: int) -> list[int]:
    """
    C{count} distinct loopback ports nothing is bound to (C{kind}: SOCK_DGRAM
    or SOCK_STREAM): bound together on port 0, then released for the switch.
    """
    sockets = [socket.socket(socket.AF_INET, kind) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def switch_ini(web_extra: str = "", cdr_path: str | None = None, switch_extra: str = "",
               simulator_extra: str = "", sections: str = "") -> tuple[str, dict[str, int]]:
    """
    The configuration of a loopback switch on free ports (UDP for the call
    agent and the two gateways, TCP for the admin), and the ports by role.
    With C{cdr_path}, CDRs go to that SQLite file; else no observer.
    C{switch_extra} and C{simulator_extra} are more keys of C{[switch]} and
    C{[simulator]} (C{media = yes}), C{sections} more sections (a trunk).
    """
    agent, gw1, gw2 = free_ports(socket.SOCK_DGRAM, 3)
    [web] = free_ports(socket.SOCK_STREAM, 1)
    ports = {"agent": agent, "gw1": gw1, "gw2": gw2, "web": web}
    plugins = f"\n[plugin:cdr-sqlite]\npath = {cdr_path}\nflush_interval = 0.1\n" if cdr_path else ""
    text = INI.format(
        observers="cdr-sqlite" if cdr_path else "", web_extra=web_extra, plugins=plugins,
        switch_extra=switch_extra, simulator_extra=simulator_extra, sections=sections, **ports
    )
    return text, ports


async def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    """
    Check C{predicate()} on every turn of C{interval} seconds of the reactor
    until it is truthy (return its value) or C{timeout} seconds have passed
    (raise AssertionError naming C{what}).
    """
    deadline = reactor.seconds() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if reactor.seconds() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await deferLater(reactor, interval, lambda: None)


class LiveSwitch:
    """The services of a whole switch, running on loopback."""

    def __init__(self, settings: Settings, ports: dict[str, int]) -> None:
        self.settings = settings
        self.ports = ports
        self.url = f"http://127.0.0.1:{ports['web']}"
        self.service = build_switch(reactor, settings, simulate=True, web=True)
        #: the L{mgcpswitch.agent.service.CallControlService} (an ICallControl)
        self.control = self.service.getServiceNamed("call-control")
        self.gateways = {
            name: self.service.getServiceNamed(f"gateway:{name}").gateway for name in ("rgw1", "rgw2")
        }
        # Count the admin's connections, to close them when stopping.
        web = self.service.getServiceNamed("web")
        self._connections = TrackingFactory(web.factory)
        web.factory = self._connections
        self._waits: list[Deferred[Any]] = []
        self.running = False

    @classmethod
    async def start(cls, web_extra: str = "", cdr_path: str | None = None, timeout: float = 10.0,
                    **ini: str) -> LiveSwitch:
        """
        Build and start a switch on free loopback ports; fire when both
        gateways are up.  C{ini}: the other arguments of L{switch_ini}.
        """
        text, ports = switch_ini(web_extra, cdr_path, **ini)
        switch = cls(parse_settings(text, "<live switch>"), ports)
        switch.service.startService()
        switch.running = True
        try:
            await switch.wait_until(switch.registered, timeout, "both gateways up")
        except BaseException:
            await switch.stop()
            raise
        return switch

    # -- reading ------------------------------------------------------------

    def registered(self) -> bool:
        """Both gateways up and every line audited idle."""
        return all(g.state.value == "up" for g in self.control.list_gateways()) and all(
            e.state.value == "idle" for e in self.control.list_endpoints()
        )

    def phone(self, endpoint: str) -> Any:
        """The simulated phone (a L{mgcpswitch.gateway.line.Line}) of an endpoint name."""
        local, _, domain = endpoint.partition("@")
        return self.gateways[domain].line(int(local.rpartition("/")[2]))

    def phones(self) -> list[Any]:
        return [line for gateway in self.gateways.values() for line in gateway.lines]

    def idle(self) -> bool:
        """Every line idle at the switch, on hook and silent, and no connection on either gateway."""
        if any(g.connection_count() for g in self.gateways.values()):
            return False
        if any(line.hook != "on" or line.signals for line in self.phones()):
            return False
        if self.control.list_calls() and any(c.state.value != "ended" for c in self.control.list_calls()):
            return False
        endpoints = self.control.list_endpoints()
        return len(endpoints) == 16 and all(
            e.state.value == "idle" and e.hook.value == "on" and not e.connections for e in endpoints
        )

    def describe(self) -> str:
        """The lines that are not idle, for failure messages."""
        return "; ".join(
            f"{e.name} {e.state.value} hook {e.hook.value} {len(e.connections)} conn / phone "
            f"{self.phone(e.name).hook} {sorted(str(s) for s in self.phone(e.name).signals)} "
            f"{len(self.phone(e.name).connections)} conn"
            for e in self.control.list_endpoints()
            if e.state.value != "idle" or e.connections or self.phone(e.name).hook != "on"
            or self.phone(e.name).signals or self.phone(e.name).connections
        ) or "all idle"

    # -- acting ---------------------------------------------------------------

    def auto_answer(self) -> None:
        """Every phone lifts its handset when it rings (again after each hang-up)."""
        for line in self.phones():
            self._answer_when_ringing(line)

    def _answer_when_ringing(self, line: Any) -> None:
        if not self.running:
            return
        d = line.when(lambda l: l.ringing and l.hook == "on")
        self._waits.append(d)

        def ringing(line: Any) -> Deferred[Any]:
            self._waits.remove(d)
            line.off_hook()
            after = line.when(lambda l: l.hook == "on")
            self._waits.append(after)

            def hung_up(line: Any) -> None:
                self._waits.remove(after)
                self._answer_when_ringing(line)

            return after.addCallback(hung_up)

        d.addCallback(ringing).addErrback(lambda f: f.trap(CancelledError))

    async def hang_up_all(self, timeout: float = 10.0) -> None:
        """Every phone off hook hangs up; fire when all 16 lines are idle again."""
        for line in self.phones():
            if line.hook == "off":
                line.on_hook()
        await self.wait_until(self.idle, timeout, "every line idle")

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
        try:
            return await wait_until(predicate, timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}; lines: {self.describe()}") from None

    async def stop(self) -> None:
        """Stop every service; close the admin's connections; fire when all is closed."""
        if not self.running:
            return
        self.running = False
        for d in list(self._waits):
            d.cancel()
        self._waits.clear()
        await self.service.stopService()
        self._connections.abort_all()
        await self._connections.all_closed().addTimeout(10, reactor)
