"""
A whole switch on the in-memory network: a L{CallControlService} and
simulated gateways, all on one L{MemoryReactor} clock.  No sockets, no
waiting: tests advance the clock.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Optional

from zope.interface import implementer

from mgcpswitch.agent.dialplan import StaticDialPlan
from mgcpswitch.agent.model import CallEnded, GatewayState, LineState
from mgcpswitch.agent.profiles import DEFAULT_PROFILE, OSMO_MGW_PROFILE
from mgcpswitch.agent.service import CallControlService
from mgcpswitch.config import parse_settings
from mgcpswitch.gateway import GatewayConfig, SimulatedGateway
from mgcpswitch.interfaces import ICallObserver
from mgcpswitch.mgcp import decode
from mgcpswitch.testing import MemoryNetwork, MemoryReactor
from mgcpswitch.transaction import TransactionConfig

CA = ("127.0.0.1", 2727)

INI = """
[switch]
interface = 127.0.0.1
port = 2727
observers =
keepalive_interval = {keepalive}
no_answer_timeout = {no_answer}
embedded_dial_tone = {embedded}
ended_calls_kept = {kept}
dynamic_gateways = {dynamic}
{switch_extra}

[transactions]
rto_max = {rto_max}

[gateway:rgw1]
address = 127.0.0.2
lines = {lines}
numbers = 1001-{last1}

[gateway:rgw2]
address = 127.0.0.3
lines = {lines}
numbers = 2001-{last2}
{rgw2_extra}
"""


@implementer(ICallObserver)
class Recorder:
    """Records every event, and the CDRs."""

    name = "recorder"

    def __init__(self) -> None:
        self.events: list[Any] = []

    def call_event(self, event: Any) -> None:
        self.events.append(event)

    @property
    def records(self) -> list[Any]:
        return [e.record for e in self.events if isinstance(e, CallEnded)]


class Switch:
    """The call agent plus two simulated gateways of N lines each."""

    def __init__(
        self,
        lines: int = 8,
        loss: float = 0.0,
        seed: int = 0,
        no_answer: float = 30.0,
        rto_max: float = 4.0,
        latency: float = 0.001,
        gateway_config: Optional[dict[str, Any]] = None,
        start: bool = True,
        embedded: bool = False,
        ended_calls_kept: int = 100,
        dynamic: bool = False,
        keepalive: float = 15.0,
        store: Any = None,
        switch_extra: str = "",
        rgw2_extra: str = "",
        profiles: Optional[dict[str, Any]] = None,
    ) -> None:
        self.reactor = MemoryReactor()
        self.network = MemoryNetwork(self.reactor, latency=latency, loss=loss, seed=seed)
        self.reactor.network = self.network
        self.settings = parse_settings(INI.format(
            lines=lines, last1=1000 + lines, last2=2000 + lines, no_answer=no_answer,
            rto_max=rto_max, embedded="yes" if embedded else "no", kept=ended_calls_kept,
            dynamic="yes" if dynamic else "no", keepalive=keepalive,
            switch_extra=switch_extra, rgw2_extra=rgw2_extra,
        ))
        self.profiles = {"default": DEFAULT_PROFILE, "osmo-mgw": OSMO_MGW_PROFILE, **(profiles or {})}
        self.recorder = Recorder()
        self.seed = seed
        self.store = store
        self.service = self._agent()
        self.control = self.service.control
        extra = gateway_config or {}
        transaction = TransactionConfig(rto_max=rto_max)
        self.gw1 = SimulatedGateway(self.reactor, GatewayConfig(
            domain="rgw1", lines=lines, port=2427, interface="127.0.0.2", call_agent=CA,
            restart_delay=0.0, transaction=transaction, **extra,
        ), random=random.Random(seed + 1))
        self.gw2 = SimulatedGateway(self.reactor, GatewayConfig(
            domain="rgw2", lines=lines, port=2427, interface="127.0.0.3", call_agent=CA,
            restart_delay=0.0, transaction=transaction, **extra,
        ), random=random.Random(seed + 2))
        if start:
            self.start()

    def _agent(self) -> CallControlService:
        return CallControlService(
            self.reactor, self.settings, StaticDialPlan.from_settings(self.settings),
            self.profiles, [self.recorder],
            random_source=random.Random(self.seed), store=self.store,
        )

    def restart_agent(self, down: float = 0.0, store: Any = None,
                      prepare: Optional[Callable[[Switch], None]] = None) -> None:
        """
        The call agent process dies (no goodbye to the gateways) and a new
        one starts on the same address after C{down} seconds, with C{store}
        (default: the one given to the switch, as a database on disk would
        be) and a new random generator; C{prepare(switch)} runs before the
        new agent starts.
        """
        self.service.stopService()
        self.network.run(down)
        self.seed += 100
        if store is not None:
            self.store = store
        self.service = self._agent()
        self.control = self.service.control
        if prepare is not None:
            prepare(self)
        self.service.startService()

    def start(self) -> None:
        self.service.startService()
        self.gw1.start()
        self.gw2.start()
        self.run(1.0)

    def run(self, seconds: float, step: float = 0.01) -> None:
        self.network.run(seconds, step)

    def stop(self) -> None:
        self.gw1.stop()
        self.gw2.stop()
        self.service.stopService()
        self.network.pump()

    def line(self, name: str) -> Any:
        """The switch's view of an endpoint (a control Line)."""
        return self.control.line(name)

    def phone(self, number: str) -> Any:
        """The simulated phone with this directory number."""
        gateway = self.gw1 if number.startswith("1") else self.gw2
        return gateway.line(int(number[1:]))

    def idle(self) -> bool:
        """Every line idle at the switch and on hook, with no connection, on both gateways."""
        for gateway in (self.gw1, self.gw2):
            if gateway.connection_count():
                return False
            for line in gateway.lines:
                if line.hook != "on" or line.signals:
                    return False
        return all(
            self.control.line(f"aaln/{n}@{g}").state is LineState.IDLE
            for g in ("rgw1", "rgw2") for n in range(1, len(self.gw1.lines) + 1)
        )

    def ladder(self, gateway: str = "127.0.0.2") -> list[str]:
        """First lines of every message delivered to or from a gateway address, in order."""
        out = []
        for d in self.network.log:
            if d.fate not in ("delivered", "duplicated"):
                continue
            if gateway in (d.source[0], d.destination[0]):
                for message in decode(d.data):
                    text = getattr(message, "verb", None)
                    if text is not None:
                        out.append(f"{message.verb} {message.endpoint}")
                    else:
                        out.append(f"{getattr(message, 'code', '?')}")
        return out

    def mark(self) -> int:
        """A place in the network's log: L{steps} reads from there."""
        return len(self.network.log)

    def steps(self, endpoint: str, since: int = 0) -> list[str]:
        """
        The commands the agent sent to one endpoint and what it was told,
        from C{since}, in order: C{"CRCX M:inactive R:L/hu,L/hf S:L/wt,L/ci"},
        C{"NTFY O:L/hf"}, C{"DLCX"} (response codes left out).
        """
        from mgcpswitch.mgcp import ParamCode as P

        out = []
        for d in self.network.log[since:]:
            if d.fate not in ("delivered", "duplicated"):
                continue
            for message in decode(d.data):
                if getattr(message, "verb", None) is None or str(message.endpoint).lower() != endpoint.lower():
                    continue
                parts = [str(message.verb)]
                params = message.params
                mode = params.get(P.CONNECTION_MODE)
                if mode is not None:
                    parts.append(f"M:{mode}")
                events = params.get(P.REQUESTED_EVENTS)
                if events is not None and P.REQUEST_ID in params:
                    parts.append("R:" + ",".join(str(e.name) for e in events))
                signals = params.get(P.SIGNAL_REQUESTS)
                if signals:
                    parts.append("S:" + ",".join(str(x.name) for x in signals))
                observed = params.get(P.OBSERVED_EVENTS)
                if observed:
                    parts.append("O:" + ",".join(str(e.name) for e in observed))
                out.append(" ".join(parts))
        return out

    def registered(self) -> bool:
        return all(
            g.state is GatewayState.UP for g in (self.control.gateway("rgw1"), self.control.gateway("rgw2"))
        )


class Probe:
    """A datagram protocol on the memory network that records what it receives, decoded."""

    transport: Any = None

    def __init__(self) -> None:
        self.received: list[Any] = []

    def makeConnection(self, transport: Any) -> None:  # noqa: N802
        self.transport = transport

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        self.received.extend(decode(data))

    def doStop(self) -> None:  # noqa: N802
        pass


def talking(s: Any, caller: str, callee: str) -> tuple[Any, Any]:
    """
    C{caller} calls C{callee}, who answers, on C{s} (a L{Switch}, or any
    harness with C{phone} and C{run}): the two phones, each with its
    connection.
    """
    a, b = s.phone(caller), s.phone(callee)
    a.off_hook()
    s.run(0.5)
    a.dial(callee, gap=0.05)
    s.run(1.0)
    b.off_hook()
    s.run(0.5)
    if len(a.connections) + len(b.connections) != 2:
        raise AssertionError(f"{caller} -> {callee} is not talking: {a.connections}, {b.connections}")
    return a, b
