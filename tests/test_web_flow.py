"""
A call's ladder as a flow graph and as a pcap (issue 17): columns and
arrows with retransmissions and piggybacked messages (pure, from frozen
views), the pcap's bytes, the routes C{/api/calls/ID/flow} and
C{/api/calls/ID/ladder.pcap}, and the pcap read back by tshark's MGCP
dissector: every datagram is MGCP with the right verbs, codes, transaction
ids, addresses, ports and times.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import struct
import tempfile
from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.agent.model import LadderEntry
from mgcpswitch.web import WebSettings, make_site
from mgcpswitch.web.flow import Datagram, build_flow, parse_address
from mgcpswitch.web.pcap import LINKTYPE_RAW, _checksum, pcap
from treq.testing import StubTreq

from .support.fake_control import GW1, GW2, T0, FakeCallControl
from .support.web import CHECKSUM_GOOD, FLOW, WebCase, flow_call, require_tshark, tshark_frames

A, B = f"aaln/3@{GW1}", f"aaln/1@{GW2}"
AGENT = ("127.0.0.9", 2727)


def gateways() -> dict[str, object]:
    return {g.name: g for g in FakeCallControl().list_gateways()}


def records(data: bytes) -> list[tuple[float, bytes]]:
    """A classic pcap's records: (time, packet)."""
    magic, major, minor, _, _, snaplen, linktype = struct.unpack("<IHHiIII", data[:24])
    assert (magic, major, minor, linktype) == (0xA1B2C3D4, 2, 4, LINKTYPE_RAW)
    out, offset = [], 24
    while offset < len(data):
        seconds, micros, length, original = struct.unpack("<IIII", data[offset:offset + 16])
        assert length == original
        out.append((seconds + micros / 1e6, data[offset + 16:offset + 16 + length]))
        offset += 16 + length
    return out


def checksum_ok(data: bytes) -> bool:
    """A header (or pseudo-header and segment) whose Internet checksum verifies: it sums to zero."""
    return _checksum(data) == 0


class Flows(SynchronousTestCase):
    def test_columns_and_messages(self) -> None:
        """The caller's endpoint, the agent, the callee's; one message per entry, marked as recorded."""
        flow = build_flow(flow_call(T0), gateways(), AGENT)
        self.assertEqual([(c.key, c.address) for c in flow.columns],
                         [(A, "127.0.0.1:2427"), ("agent", "127.0.0.1:2727"), (B, "127.0.0.2:2427")])
        self.assertEqual([(m.label, m.source, m.target, m.retransmission, m.piggybacked) for m in flow.messages], FLOW)
        self.assertEqual([round(m.offset, 3) for m in flow.messages][:3], [0.0, 0.2, 0.25])
        self.assertEqual([m.transaction_id for m in flow.messages][5:7], ["77", "77"])
        self.assertEqual((flow.messages[0].verb, flow.messages[2].code), ("CRCX", 200))

    def test_datagrams(self) -> None:
        """Piggybacked messages share a datagram (joined by a '.' line); the others have one each."""
        flow = build_flow(flow_call(T0), gateways(), AGENT)
        self.assertEqual(len(flow.datagrams), 9)
        self.assertEqual([m.datagram for m in flow.messages], [0, 1, 2, 3, 4, 5, 6, 6, 7, 8])
        joined = flow.datagrams[6]
        self.assertEqual(joined.payload.split(b".\r\n"), [b"200 77 OK\r\n", b"RQNT 2003 aaln/1@gw2.example.net "
                                                         b"MGCP 1.0\r\nX: 2\r\nR: L/hu\r\n"])
        self.assertEqual((joined.source, joined.destination), (("127.0.0.1", 2727), ("127.0.0.2", 2427)))

    def test_addresses_fall_back(self) -> None:
        """Entries without addresses use the gateway's view and the agent's address (or 0.0.0.0)."""
        flow = build_flow(flow_call(T0), gateways(), AGENT)
        self.assertEqual(flow.datagrams[7].source, ("127.0.0.2", 2427))  # from the view of gw2
        self.assertEqual(flow.datagrams[8].source, AGENT)
        unknown = build_flow(flow_call(T0), {}, None)
        self.assertEqual(unknown.datagrams[8].source, ("0.0.0.0", 2727))
        self.assertEqual(unknown.datagrams[8].destination, ("0.0.0.0", 2427))

    def test_retransmission_derived(self) -> None:
        """Unmarked, the same message sent again the same way is still a retransmission."""
        call = flow_call(T0)
        call = replace(call, ladder=tuple(replace(e, retransmission=False) for e in call.ladder))
        self.assertEqual([m.retransmission for m in build_flow(call, gateways(), AGENT).messages],
                         [m[3] for m in FLOW])

    def test_transaction_id_spaces(self) -> None:
        """The gateway's txid 2001 (NTFY) and the agent's 2001 (CRCX) name different endpoints."""
        call = flow_call(T0)
        extra = (
            LadderEntry(T0 + 1, "in", GW2, "", f"NTFY 2001 {B} MGCP 1.0\r\nO: L/hu\r\n"),
            LadderEntry(T0 + 1.01, "out", GW2, "", "200 2001 OK\r\n"),
        )
        flow = build_flow(replace(call, ladder=call.ladder + extra), gateways(), AGENT)
        self.assertEqual([(m.source, m.target) for m in flow.messages[-2:]], [(B, "agent"), ("agent", B)])
        self.assertEqual((flow.messages[2].source, flow.messages[2].target), (A, "agent"))

    def test_empty_ladder(self) -> None:
        """A call without messages has the agent's column only."""
        flow = build_flow(replace(flow_call(T0), ladder=()), gateways(), AGENT)
        self.assertEqual(([c.key for c in flow.columns], flow.messages, flow.datagrams), (["agent"], (), ()))

    def test_parse_address(self) -> None:
        """host:port, IPv6 bracketed or not (the port follows the last colon); garbage is None."""
        cases = {
            "127.0.0.1:2727": ("127.0.0.1", 2727), "[::1]:2427": ("::1", 2427), "::1:2427": ("::1", 2427),
            "gw.example.net:2427": None, "127.0.0.1": None, "[::1]": None, "": None, None: None,
        }
        for text, expected in cases.items():
            self.assertEqual(parse_address(text), expected, text)


class Pcaps(SynchronousTestCase):
    def test_records(self) -> None:
        """One record per datagram, at its time to the microsecond, with valid IPv4 and UDP checksums."""
        flow = build_flow(flow_call(T0), gateways(), AGENT)
        found = records(pcap(flow.datagrams))
        self.assertEqual(len(found), 9)
        self.assertEqual([round(t - T0, 6) for t, _ in found][:3], [0.0, 0.2, 0.25])
        for (time, packet), datagram in zip(found, flow.datagrams):
            self.assertEqual(packet[0] >> 4, 4)
            self.assertTrue(checksum_ok(packet[:20]))
            self.assertEqual(packet[28:], datagram.payload)
            src, dst = packet[12:16], packet[16:20]
            pseudo = src + dst + struct.pack("!BBH", 0, 17, len(packet) - 20)
            self.assertTrue(checksum_ok(pseudo + packet[20:]))
            self.assertEqual(struct.unpack("!HH", packet[20:24]), (datagram.source[1], datagram.destination[1]))

    def test_ipv6_and_mixed(self) -> None:
        """IPv6 datagrams get an IPv6 header; a v4 side facing a v6 one is written v4-mapped."""
        datagrams = [
            Datagram(T0, ("::1", 2727), ("::1", 2427), b"AUEP 1 aaln/1@gw MGCP 1.0\r\n"),
            Datagram(T0 + 1, ("127.0.0.1", 2727), ("::1", 2427), b"AUEP 2 aaln/1@gw MGCP 1.0\r\n"),
        ]
        for (_, packet), datagram in zip(records(pcap(datagrams)), datagrams):
            self.assertEqual(packet[0] >> 4, 6)
            src = ipaddress.IPv6Address(packet[8:24])
            self.assertEqual(str(src), "::1" if datagram.source[0] == "::1" else "::ffff:7f00:1")
            pseudo = packet[8:40] + struct.pack("!I3xB", len(packet) - 40, 17)
            self.assertTrue(checksum_ok(pseudo + packet[40:]))
            self.assertEqual(packet[48:], datagram.payload)


class Routes(WebCase):
    def setUp(self) -> None:
        super().setUp()
        self.fake.calls["c9"] = flow_call(self.clock.seconds() - 10)

    def test_flow(self) -> None:
        """GET /api/calls/ID/flow: the call without its ladder, the columns and the messages."""
        body = self.request("GET", "/api/calls/c9/flow").json()
        self.assertEqual(body["call"]["call_id"], "c9")
        self.assertNotIn("ladder", body["call"])
        self.assertEqual([c["key"] for c in body["columns"]], [A, "agent", B])
        self.assertEqual(
            [(m["label"], m["source"], m["target"], m["retransmission"], m["piggybacked"]) for m in body["messages"]],
            FLOW,
        )
        self.assertEqual(body["messages"][5]["direction"], "in")
        self.assertError(self.request("GET", "/api/calls/nope/flow"), 404, "not-found", "'nope'")

    def test_pcap(self) -> None:
        """GET /api/calls/ID/ladder.pcap: a pcap attachment named after the call."""
        answer = self.request("GET", "/api/calls/c9/ladder.pcap")
        self.assertEqual(answer.code, 200)
        self.assertEqual(answer.header("content-type"), "application/vnd.tcpdump.pcap")
        self.assertEqual(answer.header("content-disposition"), 'attachment; filename="call-c9.pcap"')
        self.assertEqual(len(records(answer.body)), 9)
        self.assertError(self.request("GET", "/api/calls/nope/ladder.pcap"), 404, "not-found")

    def test_agent_address(self) -> None:
        """make_site's agent tells the flow where the agent listens, for entries that did not record it."""
        site = make_site(self.fake, WebSettings(), self.clock, agent=lambda: ("127.0.0.5", 2999))
        done: list[object] = []
        stub = StubTreq(site.resource)
        stub.get("http://admin.test/api/calls/c9/ladder.pcap").addCallback(lambda r: r.content()).addCallback(
            done.append)
        stub.flush()
        [(_, last)] = records(done[0])[-1:]
        self.assertEqual((str(ipaddress.IPv4Address(last[12:16])), struct.unpack("!H", last[20:22])[0]),
                         ("127.0.0.5", 2999))


class Tshark(WebCase):
    """The pcap read by Wireshark's MGCP dissector."""

    def test_every_message_is_mgcp(self) -> None:
        """tshark decodes every datagram as MGCP with its verbs or codes, txids, addresses, ports and times."""
        require_tshark()
        started = self.clock.seconds() - 10
        self.fake.calls["c9"] = flow_call(started)
        answer = self.request("GET", "/api/calls/c9/ladder.pcap")
        directory = tempfile.mkdtemp(prefix="mgcpswitch-pcap-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "c9.pcap")
        with open(path, "wb") as f:
            f.write(answer.body)
        frames = tshark_frames(path)
        self.assertEqual(len(frames), 9)
        for frame in frames:
            self.assertRegex(frame["frame.protocols"][0], r"^raw:ip:udp:mgcp(:sdp)?$")
            self.assertEqual((frame["ip.checksum.status"], frame["udp.checksum.status"]),
                             ([CHECKSUM_GOOD], [CHECKSUM_GOOD]))
        seen = [(f["mgcp.req.verb"], f["mgcp.rsp.rspcode"], f["mgcp.transid"]) for f in frames]
        self.assertEqual(seen, [
            (["CRCX"], [], ["2001"]), (["CRCX"], [], ["2001"]), ([], ["200"], ["2001"]),
            (["CRCX"], [], ["2002"]), ([], ["200"], ["2002"]), (["NTFY"], [], ["77"]),
            (["RQNT"], ["200"], ["77", "2003"]),  # piggybacked: the response, then the command
            ([], ["200"], ["2003"]), (["MDCX"], [], ["2004"]),
        ])
        self.assertEqual([(f["ip.src"], f["udp.srcport"], f["ip.dst"], f["udp.dstport"]) for f in frames][2:4], [
            (["127.0.0.1"], ["2427"], ["127.0.0.1"], ["2727"]),
            (["127.0.0.1"], ["2727"], ["127.0.0.2"], ["2427"]),
        ])
        self.assertEqual(frames[5]["mgcp.req.endpoint"], [B])
        times = [float(f["frame.time_epoch"][0]) - started for f in frames]
        self.assertEqual([round(t, 3) for t in times], [0.0, 0.2, 0.25, 0.3, 0.31, 0.4, 0.41, 0.45, 0.5])

    def test_ipv6(self) -> None:
        """IPv6 datagrams (and a v4 side written v4-mapped) are MGCP to tshark, checksums good."""
        require_tshark()
        directory = tempfile.mkdtemp(prefix="mgcpswitch-pcap-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "v6.pcap")
        with open(path, "wb") as f:
            f.write(pcap([
                Datagram(T0, ("::1", 2727), ("::1", 2427), b"AUEP 1 aaln/1@gw MGCP 1.0\r\n"),
                Datagram(T0 + 1, ("::1", 2427), ("127.0.0.1", 2727), b"200 1 OK\r\n"),
            ]))
        frames = tshark_frames(path)
        self.assertEqual([(f["ipv6.src"], f["ipv6.dst"], f["mgcp.transid"], f["udp.checksum.status"]) for f in frames], [
            (["::1"], ["::1"], ["1"], [CHECKSUM_GOOD]),
            (["::1"], ["::ffff:127.0.0.1"], ["1"], [CHECKSUM_GOOD]),
        ])
        self.assertEqual((frames[0]["mgcp.req.verb"], frames[1]["mgcp.rsp.rspcode"]), (["AUEP"], ["200"]))
