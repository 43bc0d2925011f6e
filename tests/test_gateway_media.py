"""
The simulated gateways' media through whole calls, on the in-memory
network: RTP packets of 20 ms between the connections call control sets
up, mixed on the endpoints as RFC 3435 Appendix D says
(L{mgcpswitch.gateway.mixing}), counted by whom they came from.

A line's packets carry its source id (L{line_source}) as SSRC; a
conference connection forwards what the other conference connection
receives with the contributors as CSRC; each connection counts, per
source, what reached its handset (C{ConnectionState.heard}).
"""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.gateway import GatewayConfig, SimulatedGateway
from mgcpswitch.gateway.connection import HEARD_LIMIT
from mgcpswitch.gateway.mixing import line_source
from mgcpswitch.mgcp import Command, SessionDescription, Verb
from mgcpswitch.testing import MemoryNetwork, MemoryReactor

from .support.switch import Switch

A, B, C = "aaln/1@rgw1", "aaln/1@rgw2", "aaln/2@rgw2"
SOURCES = {name: line_source(name) for name in (A, B, C)}


def heard(phone: Any) -> dict[str, int]:
    """Packets the phone's handset heard, by the line they came from (summed over its connections)."""
    names = {source: name for name, source in SOURCES.items()}
    total: dict[str, int] = {}
    for conn in phone.connections:
        for source, packets in conn.heard:
            name = names.get(source, hex(source))
            total[name] = total.get(name, 0) + packets
    return total


class ThreeWayAndTransfer(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Switch(lines=4, gateway_config={"media": True})
        self.addCleanup(self.s.stop)
        self.a, self.b, self.c = self.s.phone("1001"), self.s.phone("2001"), self.s.phone("2002")

    def call(self, caller: Any, callee: Any, number: str) -> None:
        if caller.hook == "on":
            caller.off_hook()
            self.s.run(0.5)
        caller.dial(number, gap=0.05)
        self.s.run(1.0)
        self.assertTrue(callee.ringing)
        callee.off_hook()
        self.s.run(0.5)

    def growth(self, seconds: float = 1.0) -> dict[str, dict[str, int]]:
        """How many packets each handset heard from each line during C{seconds} of clock."""
        phones = {A: self.a, B: self.b, C: self.c}
        before = {name: heard(phone) for name, phone in phones.items()}
        self.s.run(seconds)
        after = {name: heard(phone) for name, phone in phones.items()}
        return {
            name: {src: n - before[name].get(src, 0) for src, n in after[name].items() if n - before[name].get(src, 0)}
            for name in phones
        }

    def test_three_way_each_hears_the_other_two_then_transfer(self) -> None:
        """
        A talks with B, flashes, calls C, flashes again: A's two
        connections are in confrnce mode and, over one second, each of the
        three hears the other two (about 50 packets a second from each;
        nobody hears itself).  A hangs up with transfer-on-hangup: B and C
        hear each other, A nobody; all hang up: no connection left.
        """
        s, a, b, c = self.s, self.a, self.b, self.c
        s.control.services.change(s.control.registry.endpoint(A), transfer_on_hangup=True)
        self.call(a, b, "2001")
        self.assertEqual({name: sorted(srcs) for name, srcs in self.growth().items()}, {A: [B], B: [A], C: []})
        a.flash()
        s.run(0.5)
        self.call(a, c, "2002")
        a.flash()
        s.run(0.5)
        self.assertEqual(sorted(str(conn.mode) for conn in a.connections), ["confrnce", "confrnce"])
        grown = self.growth()
        self.assertEqual({name: sorted(srcs) for name, srcs in grown.items()},
                         {A: [B, C], B: [A, C], C: [A, B]})
        for name, sources in grown.items():
            for source, packets in sources.items():
                self.assertTrue(45 <= packets <= 55, (name, source, packets))
        forwarded = sorted(conn.forwarded for conn in a.connections)
        self.assertTrue(forwarded[0] > 45, forwarded)

        a.on_hook()
        s.run(1.0)
        self.assertEqual(a.connections, ())
        grown = self.growth()
        self.assertEqual({name: sorted(srcs) for name, srcs in grown.items()}, {A: [], B: [C], C: [B]})
        b.on_hook()
        c.on_hook()
        s.run(2.0)
        self.assertTrue(s.idle())
        self.assertEqual((s.gw1.connection_count(), s.gw2.connection_count()), (0, 0))

    def test_held_party_hears_nothing(self) -> None:
        """While A consults C, B (held: inactive) hears nobody and nobody hears B; A and C hear each other."""
        s, a, b, c = self.s, self.a, self.b, self.c
        self.call(a, b, "2001")
        a.flash()
        s.run(0.5)
        self.call(a, c, "2002")
        grown = self.growth()
        self.assertEqual({name: sorted(srcs) for name, srcs in grown.items()}, {A: [C], B: [], C: [A]})
        for phone in (a, b, c):
            phone.on_hook()
        s.run(2.0)
        self.assertTrue(s.idle())


class Packets(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.network = MemoryNetwork(self.reactor)
        self.reactor.network = self.network
        self.gateway = SimulatedGateway(self.reactor, GatewayConfig(lines=2, port=2427, media=True,
                                                                     restart_delay=0.0))
        self.gateway.start()
        self.addCleanup(self.gateway.stop)
        self.txid = 100

    def crcx(self, line: int, mode: str, sdp: Any = None) -> Any:
        self.txid += 1
        command = Command.create(Verb.CRCX, self.txid, f"aaln/{line}@rgw1", call_id="C1", mode=mode, sdp=sdp)
        answer = self.gateway.command_received(command, ("127.0.0.1", 2727))
        return getattr(answer, "response", answer)

    def sink(self) -> tuple[list[bytes], SessionDescription]:
        """A UDP socket at 127.0.0.9:40000 on the memory network: the datagrams it gets, and its SDP."""
        received: list[bytes] = []

        class Sink(DatagramProtocol):
            def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
                received.append(data)

        port = self.reactor.listenUDP(40000, Sink(), interface="127.0.0.9")
        self.addCleanup(port.stopListening)
        sdp = SessionDescription.parse(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"
        )
        return received, sdp

    def test_loopback_holds_the_handset_back(self) -> None:
        """
        A connection in loopback beside a sendrecv one (§2.3.1): the
        sendrecv connection sends nothing of the handset; alone, the same
        line's sendrecv connection talks.
        """
        received, sdp = self.sink()
        self.assertEqual(self.crcx(1, "loopback").code, 200)
        talking = self.crcx(1, "sendrecv", sdp)
        self.network.run(0.2)
        self.assertEqual(received, [])
        self.assertEqual(self.gateway.endpoints[0].connections[talking.connection_id].packets_sent, 0)
        self.crcx(2, "sendrecv", sdp)
        self.network.run(0.2)
        self.assertTrue(len(received) >= 8, len(received))

    def test_packets_name_their_sources(self) -> None:
        """
        A line's packets carry its source id as SSRC and no CSRC; a packet a
        conference connection forwards carries the forwarding line's SSRC,
        the sending connection's next sequence number and the original
        contributors as CSRC (RFC 3550 §5.1); a CSRC list longer than the
        packet is dropped uncounted.
        """
        received, sdp = self.sink()
        first = self.crcx(1, "confrnce", sdp)
        second = self.crcx(1, "confrnce", sdp)
        self.assertEqual((first.code, second.code), (200, 200))
        ep = self.gateway.endpoints[0]
        conn1 = ep.connections[first.connection_id]
        conn2 = ep.connections[second.connection_id]
        self.network.run(0.1)
        own = [p for p in received if struct.unpack_from("!I", p, 8)[0] == line_source("aaln/1@rgw1")]
        self.assertTrue(own and all(p[0] == 0x80 for p in own), "the line's own audio: no CSRC")
        received.clear()
        sent_before = conn2.packets_sent
        # One packet from a stranger (SSRC 7) to the first connection: forwarded out of the second.
        conn1.rtp_received(struct.pack("!BBHII", 0x80, 0, 1, 0, 7) + b"\xff" * 160, ("127.0.0.9", 40000))
        self.network.pump()
        [forwarded] = [p for p in received if p[0] & 0x0F]
        version, pt, seq, _, ssrc, csrc = struct.unpack_from("!BBHIII", forwarded)
        self.assertEqual((version, ssrc, csrc, seq), (0x81, line_source("aaln/1@rgw1"), 7, sent_before & 0xFFFF))
        self.assertEqual(len(forwarded), 16 + 160)
        self.assertEqual((conn1.forwarded, dict(conn1.heard)), (1, {7: 1}))
        # A CSRC count the packet cannot hold.
        conn1.rtp_received(struct.pack("!BBHII", 0x8F, 0, 2, 0, 7), ("127.0.0.9", 40000))
        self.assertEqual((conn1.packets_received, conn1.forwarded), (1, 1))

    def test_heard_is_bounded(self) -> None:
        """A stray sender cycling SSRCs: every packet is counted, but C{heard} keeps HEARD_LIMIT sources."""
        answer = self.crcx(2, "recvonly")
        conn = self.gateway.endpoints[1].connections[answer.connection_id]
        for ssrc in range(HEARD_LIMIT + 8):
            conn.rtp_received(struct.pack("!BBHII", 0x80, 0, ssrc, 0, ssrc) + b"\xff" * 160, ("127.0.0.9", 1))
        conn.rtp_received(struct.pack("!BBHII", 0x80, 0, 99, 0, 0) + b"\xff" * 160, ("127.0.0.9", 1))
        self.assertEqual((conn.packets_received, len(conn.heard), conn.heard[0]), (HEARD_LIMIT + 9, HEARD_LIMIT, 2))
