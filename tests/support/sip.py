"""
Helpers for the SIP trunk tests: trunks on a L{MemoryNetwork}, listeners
that record what they are told, and a gateway's SDP.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from zope.interface import implementer

from mgcpswitch.config import TrunkSettings
from mgcpswitch.interfaces import IIncomingCallListener, IOutgoingCallListener
from mgcpswitch.mgcp import RtpMap, SessionDescription
from mgcpswitch.sip.trunk import SipTrunk
from mgcpswitch.testing import MemoryReactor, run_timers

__all__ = ["Recorder", "line_sdp", "settings", "trunk_pair", "settle", "TELEPHONE_EVENT"]

TELEPHONE_EVENT = RtpMap(101, "telephone-event", 8000)


def line_sdp(port: int = 4000, address: str = "127.0.0.1", pts: tuple[int, ...] = (0, 8, 101),
             direction: str | None = None) -> SessionDescription:
    """An SDP like a gateway's CRCX answer: PCMU, PCMA and telephone-event (C{direction} for hold)."""
    maps = [RtpMap(0, "PCMU", 8000), RtpMap(8, "PCMA", 8000), TELEPHONE_EVENT]
    return SessionDescription.create(address, port, pts, rtpmaps=[m for m in maps if m.payload_type in pts],
                                     fmtp={101: "0-15"} if 101 in pts else None, ptime=20, direction=direction)


def settings(name: str, local_port: int, peer_port: int, **values: Any) -> TrunkSettings:
    base = TrunkSettings(name=name, address="127.0.0.1", port=peer_port, local_port=local_port,
                         keepalive_interval=0.0)
    return replace(base, **values)


@implementer(IOutgoingCallListener, IIncomingCallListener)
class Recorder:
    """Records every notification as a tuple, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def progress(self, code: int, sdp: SessionDescription | None) -> None:
        self.events.append(("progress", code, sdp))

    def answered(self, sdp: SessionDescription) -> None:
        self.events.append(("answered", sdp))

    def failed(self, code: int, reason: str) -> None:
        self.events.append(("failed", code, reason))

    def ended(self, reason: str) -> None:
        self.events.append(("ended", reason))

    def cancelled(self) -> None:
        self.events.append(("cancelled",))

    def media_changed(self, sdp: SessionDescription) -> None:
        self.events.append(("media_changed", sdp))

    def kinds(self) -> list[Any]:
        return [e[0] if e[0] in ("answered", "cancelled", "media_changed") else e[:2] for e in self.events]


def trunk_pair(reactor: MemoryReactor, *, a: dict[str, Any] | None = None, b: dict[str, Any] | None = None,
               incoming_a: Any = None, incoming_b: Any = None, seed: int = 1) -> tuple[SipTrunk, SipTrunk]:
    """Two started trunks facing each other: A on 5060, B on 5070."""
    trunk_a = SipTrunk(settings("a", 5060, 5070, **(a or {})), reactor, incoming_a or (lambda call: None),
                       rng=random.Random(seed))
    trunk_b = SipTrunk(settings("b", 5070, 5060, **(b or {})), reactor, incoming_b or (lambda call: None),
                       rng=random.Random(seed + 1))
    trunk_a.startService()
    trunk_b.startService()
    return trunk_a, trunk_b


def settle(reactor: MemoryReactor, *trunks: SipTrunk) -> None:
    """Run every timer out; then nothing of any call may be left on the trunks."""
    run_timers(reactor)
    for trunk in trunks:
        view = trunk.view()
        assert view.channels_in_use == 0, view
        assert view.messages["dialogs"] == 0, view
        assert view.messages["transactions"] == 0, view
    assert reactor.getDelayedCalls() == [], reactor.getDelayedCalls()


class RawPeer:
    """
    A scripted SIP peer on the memory network: records what it receives
    (decoded) and answers as the test says, like SIPp does on a socket.
    """

    def __init__(self, reactor: MemoryReactor, port: int = 5070) -> None:
        from twisted.internet.protocol import DatagramProtocol

        peer = self

        class _Protocol(DatagramProtocol):
            def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
                from mgcpswitch.sip import decode

                peer.received.append((decode(data), tuple(addr)))
                if peer.on_message is not None:
                    peer.on_message(peer.received[-1][0], tuple(addr))

        self.received: list[tuple[Any, tuple[str, int]]] = []
        self.on_message: Any = None
        self.port = reactor.listenUDP(port, _Protocol(), interface="127.0.0.1")

    def messages(self, kind: str | None = None) -> list[Any]:
        """What arrived: requests of method C{kind} (or responses with kind "response"), in order."""
        from mgcpswitch.sip import Response

        out = []
        for message, _ in self.received:
            if kind is None or (kind == "response" and isinstance(message, Response)) or \
                    getattr(message, "method", None) == kind:
                out.append(message)
        return out

    def send(self, message: Any, address: tuple[str, int] = ("127.0.0.1", 5060)) -> None:
        from mgcpswitch.sip import encode

        self.port.write(encode(message), address)

    def reply(self, request: Any, code: int, **kwargs: Any) -> Any:
        from mgcpswitch.sip import response_to

        response = response_to(request, code, **kwargs)
        self.send(response)
        return response


def free_udp_port() -> int:
    """
    A UDP port free on 127.0.0.1 now, for a program the test starts:
    taken below the kernel's ephemeral range, so that a socket the test
    binds to port 0 meanwhile cannot get it first.
    """
    import random as _random
    import socket

    for _ in range(200):
        port = _random.randrange(26000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free UDP port in 26000-31999")


class Peer:
    """
    A real program started by the test in a temporary directory, its output
    in files there: C{ended} fires with its exit code; L{stop} ends it by
    its PID (the test's cleanup does, if it still runs).
    """

    def __init__(self, testcase: Any, argv: list[str], directory: str, name: str) -> None:
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred
        from twisted.internet.protocol import ProcessProtocol

        self.ended: Deferred[int] = Deferred()
        self.output = bytearray()
        peer = self

        class _Protocol(ProcessProtocol):
            def outReceived(self, data: bytes) -> None:  # noqa: N802
                peer.output.extend(data[-20000:])
                del peer.output[:-200000]

            errReceived = outReceived

            def processEnded(self, reason: Any) -> None:  # noqa: N802
                peer.running = False
                peer.ended.callback(reason.value.exitCode)

        self.running = True
        self.process = reactor.spawnProcess(_Protocol(), argv[0], argv, env={"HOME": directory, "PATH": "/usr/bin:/bin"},
                                            path=directory)
        self.pid = self.process.pid
        self.name = name
        testcase.addCleanup(self.stop)

    def stop(self) -> Any:
        """End the program (SIGTERM to its PID, SIGKILL after 5 s) and wait for it."""
        from twisted.internet import reactor

        if not self.running:
            return None
        self.process.signalProcess("TERM")
        killer = reactor.callLater(5, lambda: self.running and self.process.signalProcess("KILL"))
        self.ended.addBoth(lambda result: (killer.active() and killer.cancel(), result)[1])
        return self.ended
