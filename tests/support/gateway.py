"""
A harness for the simulated gateway's conformance tests: a L{SimulatedGateway}
on a L{MemoryReactor}, and a scripted call agent on the same in-memory
network that sends raw MGCP datagrams, records everything the gateway sends
and answers the gateway's commands (200 by default, or what the test
scripts).  No sockets, no real time.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.gateway import GatewayConfig, SimulatedGateway
from mgcpswitch.mgcp import Command, ParamCode, Response, Verb, decode, encode
from mgcpswitch.testing import MemoryReactor, run_timers

GW = ("127.0.0.2", 2427)
CA = ("127.0.0.1", 2727)
DOMAIN = "rgw1"


class ScriptedAgent(DatagramProtocol):
    """
    The call agent side: sends raw text, keeps every message received, and
    answers commands with C{answer(command) -> Response | None} (None:
    stay silent).
    """

    def __init__(self) -> None:
        self.received: list[tuple[Any, Any]] = []  # (message, source)
        self.datagrams: list[bytes] = []
        self.answer: Callable[[Command], Response | None] = lambda c: Response.create(
            200, c.transaction_id, "OK"
        )

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        self.datagrams.append(datagram)
        for message in decode(datagram):
            self.received.append((message, addr))
            if isinstance(message, Command):
                response = self.answer(message)
                if response is not None:
                    self.transport.write(encode(response), addr)

    def hold(self, *verbs: Verb) -> None:
        """Stop answering commands of these verbs (answer them later with L{reply})."""
        answer = self.answer

        def holding(command: Command) -> Response | None:
            return None if command.verb in verbs else answer(command)

        self.answer = holding

    def reply(self, command: Command, code: int = 200, **params: Any) -> None:
        """Answer a held command now, to where commands come from."""
        source = next(addr for m, addr in self.received if m is command)
        self.transport.write(encode(Response.create(code, command.transaction_id, **params)), source)

    def commands(self, verb: Verb | None = None) -> list[Command]:
        """Commands received, retransmissions left out (first copy of each txid)."""
        seen: set[int] = set()
        out = []
        for m, _ in self.received:
            if isinstance(m, Command) and (verb is None or m.verb is verb) and m.transaction_id not in seen:
                seen.add(m.transaction_id)
                out.append(m)
        return out

    def responses(self, txid: int) -> list[Response]:
        return [m for m, _ in self.received if isinstance(m, Response) and m.transaction_id == txid]


class GatewayHarness:
    """
    A gateway and a scripted call agent on one clock.  C{request()} sends
    a command as raw text (lines joined with CRLF, C{{tx}} replaced by a
    fresh transaction id) and returns the final response.
    """

    def __init__(self, *, lines: int = 4, start: bool = True, seed: int = 1,
                 agent_address: tuple[str, int] = CA, resolver: Any = None, **config: Any) -> None:
        self.reactor = MemoryReactor()
        self.network = self.reactor.network
        config.setdefault("interface", GW[0])
        config.setdefault("port", GW[1])
        config.setdefault("call_agent", CA)
        config.setdefault("domain", DOMAIN)
        self.config = GatewayConfig(lines=lines, **config)
        self.gateway = SimulatedGateway(self.reactor, self.config, random=random.Random(seed), resolver=resolver)
        self.agent = ScriptedAgent()
        self.agent_port = self.reactor.listenUDP(agent_address[1], self.agent, interface=agent_address[0])
        self.agent_address = agent_address
        self._txid = 1000
        if start:
            self.gateway.start()
            self.pump()

    # -- time -------------------------------------------------------------

    def pump(self) -> None:
        """Deliver everything due now."""
        self.network.pump()

    def advance(self, seconds: float) -> None:
        """Move the clock, running every timer on the way exactly at its time."""
        run_timers(self.reactor, until=self.reactor.seconds() + seconds)
        self.pump()

    # -- sending ----------------------------------------------------------

    def next_txid(self) -> int:
        self._txid += 1
        return self._txid

    def send(self, *lines: str, sdp: str | None = None, txid: int | None = None,
             source: tuple[str, int] | None = None) -> int:
        """Send a raw command (C{{tx}} in the first line is the transaction id)."""
        txid = txid if txid is not None else self.next_txid()
        text = "\r\n".join(lines).replace("{tx}", str(txid)) + "\r\n"
        if sdp is not None:
            text += "\r\n" + sdp.replace("\r\n", "\n").strip("\n").replace("\n", "\r\n") + "\r\n"
        self.send_raw(text.encode(), source)
        return txid

    def send_raw(self, data: bytes, source: tuple[str, int] | None = None) -> None:
        if source is None or tuple(source) == self.agent_address:
            self.agent.transport.write(data, GW)
        else:
            self.network.send(tuple(source), GW, data)
        self.pump()

    def request(self, *lines: str, sdp: str | None = None) -> Response:
        """Send and return the final response (fails the test if none came)."""
        txid = self.send(*lines, sdp=sdp)
        return self.response(txid)

    def datagram_of(self, txid: int) -> list[Any]:
        """The messages of the (last) datagram that carried the response to C{txid}."""
        for data in reversed(self.agent.datagrams):
            messages = decode(data)
            if any(isinstance(m, Response) and m.transaction_id == txid for m in messages):
                return messages
        raise AssertionError(f"no response to {txid}")

    def response(self, txid: int) -> Response:
        finals = [r for r in self.agent.responses(txid) if r.code >= 200]
        if not finals:
            raise AssertionError(f"no final response to {txid}: {self.agent.datagrams[-3:]!r}")
        return finals[-1]

    # -- reading ----------------------------------------------------------

    def ntfys(self) -> list[Command]:
        """NTFYs the agent received (after delivering what is due)."""
        self.pump()
        return self.agent.commands(Verb.NTFY)

    def rsips(self) -> list[Command]:
        self.pump()
        return self.agent.commands(Verb.RSIP)

    def observed(self, ntfy: Command) -> list[str]:
        return [str(e) for e in ntfy.params.get(ParamCode.OBSERVED_EVENTS, ())]

    def line(self, n: int = 1) -> Any:
        return self.gateway.line(n)

    def stop(self) -> None:
        """Stop the gateway and the agent; no timer may be left."""
        self.gateway.stop()
        self.agent_port.stopListening()
        self.pump()


SDP_REMOTE = """v=0
o=- 1 1 IN IP4 127.0.0.9
s=-
c=IN IP4 127.0.0.9
t=0 0
m=audio 40000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=ptime:20
"""


def sdp(port: int = 40000, pts: str = "0", host: str = "127.0.0.9", extra: str = "") -> str:
    """A remote descriptor (static payload types need no rtpmap)."""
    return (f"v=0\no=- 1 1 IN IP4 {host}\ns=-\nc=IN IP4 {host}\nt=0 0\n"
            f"m=audio {port} RTP/AVP {pts}\n{extra}")



class GatewayTestCase(SynchronousTestCase):
    """
    Each test gets C{self.h}, a started L{GatewayHarness} (C{harness}
    keywords from C{self.harness_options}); after the test the gateway is
    stopped and no delayed call may be left on the clock.
    """

    harness_options: dict[str, Any] = {}

    def setUp(self) -> None:
        self.h = self.harness()
        self.addCleanup(self.stop_harness, self.h)

    def harness(self, **options: Any) -> GatewayHarness:
        merged = dict(self.harness_options)
        merged.update(options)
        return GatewayHarness(**merged)

    def stop_harness(self, h: GatewayHarness) -> None:
        h.stop()
        self.assertEqual(h.reactor.getDelayedCalls(), [], "a timer outlived the gateway")

    # shortcuts
    def rqnt(self, endpoint: str = "aaln/1", *lines: str) -> Response:
        return self.h.request(f"RQNT {{tx}} {endpoint}@{DOMAIN} MGCP 1.0", *lines)

    def crcx(self, endpoint: str = "aaln/1", *lines: str, sdp: str | None = None) -> Response:
        return self.h.request(f"CRCX {{tx}} {endpoint}@{DOMAIN} MGCP 1.0", *lines, sdp=sdp)

    def auep(self, endpoint: str = "aaln/1", *lines: str) -> Response:
        return self.h.request(f"AUEP {{tx}} {endpoint}@{DOMAIN} MGCP 1.0", *lines)
