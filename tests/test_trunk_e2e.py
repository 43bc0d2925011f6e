"""
Trunk calls end to end: the whole switch (call control with a
C{[trunk:far]} section, two simulated gateways sending 20 ms RTP and
counting packets, the admin) on the real reactor and loopback ports found
free, and real SIP programs beyond the trunk: SIPp (Debian's sip-tester)
and the softphone baresip, each started in a temporary directory and
stopped by its PID.

Lines call out through the trunk (the dial plan routes C{9xxxx} to
C{trunk:far}, which strips the 9) and the far end calls lines (DID 2001 is
the line aaln/1@rgw2).  Every path ends with both gateways idle (no
connection, every line on hook and silent), no channel nor dialog left on
the trunk, the peer's scenario played as written (SIPp exits 0), and one
call record with the cause that path gives, naming the trunk's party
C{trunk:far}.  Nothing sleeps: each step waits for a condition, with a
deadline.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any, Optional

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from mgcpswitch.agent.model import CallEnded, CallRecord, ReleaseCause

from .support.live import LiveSwitch, wait_until
from .support.sip import free_udp_port
from .support.sip_peers import BARESIP, SIPP, Baresip, sipp, sipp_uac
from .test_sip_sipp import CANCELLING_UAC, SCENARIOS, _scenario

DIGIT_MAP = "digit_map = (1xxx|2xxx|5xxx|9xxxx)"
TRUNK = """
[trunk:far]
address = 127.0.0.1
port = {peer}
local_port = {local}
keepalive_interval = 0
ring_timeout = {ring}
outgoing_strip = 1
max_channels = 4

[dialplan]
9xxxx = trunk:far

# These tests are about the trunk.  The gateways' media runs in the test's
# process beside the switch, so in a full suite the reactor runs late and
# the overload guard may shed a call: two tests here timed out waiting for
# ringing or ringback in full-suite runs, never alone, and a shed call is
# the likeliest cause.  tests/test_agent_overload.py and the browser test
# cover the guard.
[overload]
enabled = no
"""
CALLER, CALLEE = "aaln/1@rgw1", "aaln/1@rgw2"  # numbers 1001 and 2001


class Trunked(TestCase):
    """A live switch whose trunk C{far} faces a peer on C{peer_port}, and what every path must end with."""

    timeout = 120
    program: Optional[str] = SIPP
    missing = "SIPp (Debian sip-tester) is not installed: scripts/run-tests installs it"

    def setUp(self) -> None:
        if self.program is None:
            raise self.skipTest(self.missing)
        self.directory = tempfile.mkdtemp(prefix="mgcpswitch-trunk-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.records: list[CallRecord] = []

    async def switch(self, peer_port: int, ring: float = 30.0) -> LiveSwitch:
        """The switch, its lines registered and idle; records collected from its events."""
        self.trunk_port = free_udp_port()
        live = await LiveSwitch.start(switch_extra=DIGIT_MAP, simulator_extra="media = yes",
                                      sections=TRUNK.format(peer=peer_port, local=self.trunk_port, ring=ring))
        self.addCleanup(live.stop)
        self.addCleanup(live.control.subscribe(self._event))
        self.live = live
        self.trunk = live.control.trunks["far"]
        return live

    def _event(self, event: Any) -> None:
        if isinstance(event, CallEnded):
            self.records.append(event.record)

    def phone(self, endpoint: str) -> Any:
        return self.live.phone(endpoint)

    def connection(self, endpoint: str) -> Any:
        """The gateway's own connection object of the line's only connection (it counts RTP packets)."""
        local, _, domain = endpoint.partition("@")
        gateway = self.live.gateways[domain]
        [connection] = gateway.endpoints[int(local.rpartition("/")[2]) - 1].connections.values()
        return connection

    async def dial_out(self, number: str = "92001") -> Any:
        """Line 1001 lifts, hears dial tone, dials C{number}."""
        phone = self.phone(CALLER)
        await phone.off_hook()
        await phone.when_signal("L/dl").addTimeout(10, reactor)
        await phone.dial(number, gap=0.05)
        return phone

    async def hears(self, phone: Any, signal: str) -> None:
        await phone.when_signal(signal).addTimeout(30, reactor)

    async def exited(self, peer: Any) -> None:
        code = await peer.ended.addTimeout(60, reactor)
        self.assertEqual(code, 0, peer.output.decode(errors="replace")[-3000:])

    async def settled(self, cause: ReleaseCause) -> CallRecord:
        """Every line idle, no connection, no channel nor dialog on the trunk; the one record, with C{cause}."""
        live, trunk = self.live, self.trunk
        await live.wait_until(live.idle, 20, "every line idle, no connection")

        def closed() -> bool:
            view = trunk.view()
            return view.channels_in_use == 0 and view.messages["dialogs"] == 0

        await wait_until(closed, 20, f"no channel nor dialog on the trunk: {trunk.view()}")
        await wait_until(lambda: self.records, 10, "the call's record")
        [record] = self.records
        self.assertIs(record.cause, cause, record)
        return record

    def assert_out(self, record: CallRecord, number: str = "92001") -> None:
        """A call out: line 1001 called the number through the trunk."""
        self.assertEqual((record.caller, record.caller_endpoint, record.callee, record.callee_endpoint),
                         ("1001", CALLER, number, "trunk:far"))

    def assert_in(self, record: CallRecord, caller: str = "0123456", number: str = "2001") -> None:
        """A call in: the trunk's caller called line 2001."""
        self.assertEqual((record.caller, record.caller_endpoint, record.callee, record.callee_endpoint),
                         (caller, "trunk:far", number, CALLEE))


class LineCallsSipp(Trunked):
    """A line calls out through the trunk to SIPp as the far end (UAS)."""

    async def far(self, scenario: str, ring: float = 30.0, *args: str) -> Any:
        port = free_udp_port()
        peer = sipp(self, self.directory, scenario, _scenario(scenario, SCENARIOS[scenario]), port, *args)
        await self.switch(port, ring)
        return peer

    async def test_answered_and_the_line_hangs_up(self) -> None:
        """
        SIPp answers at once: the line's connection talks to SIPp's media
        (SIPp echoes the line's RTP back: packets both ways); the line hangs
        up: BYE, SIPp's 200; cause normal, the call answered.
        """
        peer = await self.far("answer", 30.0, "-rtp_echo")
        phone = await self.dial_out()
        await phone.when(lambda p: bool(p.connections) and p.connections[0].mode == "sendrecv").addTimeout(30, reactor)
        [connection] = phone.connections
        self.assertEqual(connection.remote_sdp.rtp_address[0], "127.0.0.1")
        media = self.connection(CALLER)
        await wait_until(lambda: media.packets_received >= 25, 20, "RTP echoed back by SIPp")
        phone.on_hook()
        await self.exited(peer)
        record = await self.settled(ReleaseCause.NORMAL)
        self.assert_out(record)
        self.assertIsNotNone(record.answer)
        self.assertGreaterEqual(record.caller_stats["PS"], 25)
        self.assertGreaterEqual(record.caller_stats["PR"], 25)

    async def test_rings_answers_and_sipp_hangs_up(self) -> None:
        """180 gives the line ringback; 200 connects; SIPp's BYE leaves the line with busy tone; cause normal."""
        peer = await self.far("ring-answer-hangup")
        ringback = self.phone(CALLER).when_signal("G/rt")
        phone = await self.dial_out()
        await ringback.addTimeout(30, reactor)
        await phone.when(lambda p: bool(p.connections) and p.connections[0].mode == "sendrecv").addTimeout(30, reactor)
        await self.hears(phone, "L/bz")
        self.assertEqual(phone.connections, ())
        await self.exited(peer)
        phone.on_hook()
        record = await self.settled(ReleaseCause.NORMAL)
        self.assert_out(record)
        self.assertIsNotNone(record.answer)

    async def test_busy(self) -> None:
        """SIPp answers 486: the line hears busy tone, no connection is left; cause busy."""
        peer = await self.far("busy")
        phone = await self.dial_out()
        await self.hears(phone, "L/bz")
        await phone.when(lambda p: not p.connections).addTimeout(10, reactor)
        await self.exited(peer)
        phone.on_hook()
        record = await self.settled(ReleaseCause.BUSY)
        self.assert_out(record)
        self.assertIsNone(record.answer)

    async def test_not_answered(self) -> None:
        """SIPp rings for ever: after the trunk's ring_timeout, CANCEL (SIPp's 487 ACKed); reorder; cause no answer."""
        peer = await self.far("no-answer", ring=3.0)
        phone = await self.dial_out()
        await self.hears(phone, "G/rt")
        await self.hears(phone, "L/ro")
        await self.exited(peer)
        phone.on_hook()
        record = await self.settled(ReleaseCause.NO_ANSWER)
        self.assert_out(record)
        self.assertIsNone(record.answer)

    async def test_the_caller_gives_up_while_it_rings(self) -> None:
        """The line hangs up during ringback: CANCEL, SIPp's 200 and 487, our ACK; cause abandoned."""
        peer = await self.far("no-answer")
        phone = await self.dial_out()
        await self.hears(phone, "G/rt")
        phone.on_hook()
        await self.exited(peer)
        record = await self.settled(ReleaseCause.ABANDONED)
        self.assert_out(record)


class SippCallsALine(Trunked):
    """SIPp as the caller (UAC) through the trunk to a line."""

    async def caller(self, xml: str, number: str = "2001", *args: str) -> Any:
        port = free_udp_port()
        await self.switch(port)
        return sipp(self, self.directory, "caller", xml, port, f"127.0.0.1:{self.trunk_port}", "-s", number, *args)

    async def test_a_line_rings_answers_and_sipp_hangs_up(self) -> None:
        """
        The line rings with SIPp's number as caller ID; it answers (200
        with its SDP, SIPp's ACK); SIPp's BYE after a second leaves the line
        with busy tone; cause normal.
        """
        peer = await self.caller(sipp_uac("0123456"), "2001", "-d", "1000")
        phone = self.phone(CALLEE)
        await phone.when(lambda p: p.ringing).addTimeout(30, reactor)
        self.assertEqual(phone.caller_id[1], "0123456")
        await phone.off_hook()
        await phone.when(lambda p: bool(p.connections) and p.connections[0].mode == "sendrecv").addTimeout(30, reactor)
        await self.hears(phone, "L/bz")
        await self.exited(peer)
        phone.on_hook()
        record = await self.settled(ReleaseCause.NORMAL)
        self.assert_in(record)
        self.assertIsNotNone(record.answer)

    async def test_a_busy_line(self) -> None:
        """Line 2001 is off hook: SIPp's INVITE gets 486 (SIPp ACKs it); cause busy."""
        port = free_udp_port()
        await self.switch(port)
        phone = self.phone(CALLEE)
        await phone.off_hook()
        await self.hears(phone, "L/dl")
        peer = sipp(self, self.directory, "busy", sipp_uac("0123456", refused=486), port, f"127.0.0.1:{self.trunk_port}", "-s", "2001")
        await self.exited(peer)
        phone.on_hook()
        record = await self.settled(ReleaseCause.BUSY)
        self.assert_in(record)

    async def test_an_unknown_number(self) -> None:
        """5555 is nobody's number: 404; cause unknown number; no line was touched."""
        peer = await self.caller(sipp_uac("0123456", refused=404), "5555")
        await self.exited(peer)
        record = await self.settled(ReleaseCause.UNKNOWN_NUMBER)
        self.assertEqual((record.caller, record.caller_endpoint, record.callee, record.callee_endpoint),
                         ("0123456", "trunk:far", "5555", None))

    async def test_sipp_gives_up_while_the_line_rings(self) -> None:
        """SIPp CANCELs while line 2001 rings: it stops ringing; 200, 487, SIPp's ACK; cause abandoned."""
        port = free_udp_port()
        await self.switch(port)
        phone = self.phone(CALLEE)
        ringing = phone.when(lambda p: p.ringing)
        peer = sipp(self, self.directory, "cancel", CANCELLING_UAC, port, f"127.0.0.1:{self.trunk_port}")
        await ringing.addTimeout(30, reactor)
        await self.exited(peer)
        await phone.when(lambda p: not p.ringing).addTimeout(10, reactor)
        record = await self.settled(ReleaseCause.ABANDONED)
        self.assert_in(record, caller="555")


class WithBaresip(Trunked):
    """
    baresip beyond the trunk, talking with a simulated line: real RTP both
    ways, counted by the gateway (its connection, and the record's P:
    statistics from the DLCX) and by baresip (the frames it decoded and
    encoded).
    """

    program = BARESIP
    missing = "baresip is not installed: scripts/run-tests installs it"

    async def talk(self, endpoint: str, baresip: Baresip) -> tuple[int, int]:
        """Wait until the line's connection has sent and received 100 packets; hang up; the counts."""
        media = self.connection(endpoint)
        await wait_until(lambda: media.packets_sent >= 100 and media.packets_received >= 100, 30,
                         f"RTP both ways between the line and baresip:\n{baresip.log()}")
        phone = self.phone(endpoint)
        phone.on_hook()
        await phone.when(lambda p: not p.connections).addTimeout(10, reactor)
        return media.packets_sent, media.packets_received

    async def check_media(self, record_stats: dict[str, int], sent: int, received: int, baresip: Baresip) -> None:
        assert baresip.peer is not None
        await baresip.peer.stop()
        heard = baresip.packets()
        self.assertEqual((record_stats["PS"], record_stats["PR"]), (sent, received))
        # Both ways, and neither side counts more than the other sent.
        self.assertGreaterEqual(heard["received"], 75, baresip.log())  # less what its jitter buffer held
        self.assertLessEqual(heard["received"], sent)
        self.assertGreaterEqual(heard["sent"], received)

    async def test_a_line_calls_baresip(self) -> None:
        """Line 1001 dials 94000: baresip answers by itself; RTP both ways; the line hangs up (BYE); cause normal."""
        baresip = Baresip(self, self.directory, "4000")
        baresip.start()
        await self.switch(baresip.port)
        await wait_until(baresip.ready, 30, "baresip ready")
        phone = await self.dial_out("94000")
        await phone.when(lambda p: bool(p.connections) and p.connections[0].mode == "sendrecv").addTimeout(30, reactor)
        sent, received = await self.talk(CALLER, baresip)
        record = await self.settled(ReleaseCause.NORMAL)
        self.assert_out(record, "94000")
        await self.check_media(record.caller_stats, sent, received, baresip)

    async def test_baresip_calls_a_line(self) -> None:
        """baresip dials 2001 at the trunk: the line rings with baresip's number, answers; RTP both ways; cause normal."""
        baresip = Baresip(self, self.directory, "4000")
        await self.switch(baresip.port)
        baresip.start(f"/dial sip:2001@127.0.0.1:{self.trunk_port}")
        phone = self.phone(CALLEE)
        await phone.when(lambda p: p.ringing).addTimeout(30, reactor)
        self.assertEqual(phone.caller_id[1], "4000")
        await phone.off_hook()
        sent, received = await self.talk(CALLEE, baresip)
        record = await self.settled(ReleaseCause.NORMAL)
        self.assert_in(record, caller="4000")
        await self.check_media(record.callee_stats, sent, received, baresip)
