"""
The driving API of the simulated gateway (L{Line}): off-hook, dialling,
flash, hang-up and waiting on the clock; reading ringing, tones and
connections; and a whole call between two lines, as the demo and the load
tool will drive it (digest §7).
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError

from mgcpswitch.gateway import ConnectionState, GatewayConfig, Line, SimulatedGateway
from mgcpswitch.mgcp import Command, ParamCode as P, Verb
from mgcpswitch.testing import MemoryReactor
from mgcpswitch.transaction import Reply

from .support.gateway import GatewayTestCase, sdp


class Driving(GatewayTestCase):
    """Actions and their Deferreds."""

    def test_off_hook_fires_with_the_ntfy_response(self) -> None:
        """off_hook() fires when the NTFY it caused is answered; with None when it caused none."""
        self.assertIsNone(self.successResultOf(self.h.line(2).off_hook()))
        self.rqnt("aaln/1", "X: 1", "R: L/hd(N)")
        self.h.agent.hold(Verb.NTFY)
        d = self.h.line(1).off_hook()
        self.h.pump()
        self.assertNoResult(d)
        self.h.agent.reply(self.h.ntfys()[0])
        self.h.pump()
        self.assertEqual(self.successResultOf(d).code, 200)
        self.assertIsNone(self.successResultOf(self.h.line(1).off_hook()), "already off hook")

    def test_dial_presses_digits_gap_apart_on_the_clock(self) -> None:
        """dial() sends one digit per gap and fires after the last NTFY was answered."""
        line = self.h.line(1)
        line.off_hook()
        self.rqnt("aaln/1", "X: 1", "R: D/[0-9](N)", "Q: loop")
        d = line.dial("123", gap=0.25)
        self.h.pump()
        self.assertNoResult(d)
        self.h.advance(0.5)
        self.assertEqual(self.successResultOf(d).code, 200)
        times = [x.time for x in self.h.network.log if x.data.startswith(b"NTFY")]
        self.assertEqual(times, [0.0, 0.25, 0.5])

    def test_bad_actions_raise(self) -> None:
        """Dialling or flashing on-hook, or an unknown digit, is a programming error."""
        line = self.h.line(1)
        self.assertRaises(ValueError, line.dial, "1")
        self.assertRaises(ValueError, line.flash)
        line.off_hook()
        self.assertRaises(ValueError, line.dial, "12x")

    def test_when_waits_for_a_state(self) -> None:
        """when()/when_signal() fire after the change that makes them true; cancel forgets them."""
        line = self.h.line(1)
        d = line.when_signal("L/rg")
        forgotten = line.when(lambda l: l.hook == "off")
        self.assertNoResult(d)
        forgotten.cancel()
        self.failureResultOf(forgotten, CancelledError)
        self.rqnt("aaln/1", "X: 1", "S: L/rg")
        self.assertIs(self.successResultOf(d), line)
        self.assertIs(self.successResultOf(line.when(lambda l: l.ringing)), line)
        self.assertEqual(self.h.gateway.endpoints[0].waiters, [])

    def test_reading_the_line(self) -> None:
        """name, hook, tone, connections with SDP, request id, digit map, service, history."""
        line = self.h.line(3)
        self.assertIsInstance(line, Line)
        self.assertEqual((line.name, line.number, line.hook, line.in_service), ("aaln/3@rgw1", 3, "on", True))
        line.off_hook()
        self.rqnt("aaln/3", "X: 7", "R: L/hu(N)", "S: L/dl", "D: (xx)")
        cid = self.crcx("aaln/3", "C: A1", "M: sendrecv", sdp=sdp(41000)).connection_id
        self.assertEqual((line.tone, line.request_id, str(line.digit_map)), ("L/dl", "7", "(xx)"))
        [conn] = line.connections
        self.assertIsInstance(conn, ConnectionState)
        self.assertEqual((conn.connection_id, conn.remote_sdp.rtp_address), (cid, ("127.0.0.9", 41000)))
        self.assertEqual(conn.local_sdp.rtp_address, ("127.0.0.2", conn.rtp_port))
        texts = [text for _, text in line.history]
        self.assertIn("off-hook", texts)
        self.assertTrue(any(t.startswith(f"connection {cid} created") for t in texts))


class WholeCall(GatewayTestCase):
    """The canonical residential call of digest §7, lines 1 and 2 of one gateway."""

    def test_call_between_two_lines(self) -> None:
        """Off-hook, dial tone, digits, CRCX x2, ringing, answer, full duplex, hang-ups, DLCX 250."""
        h = self.h
        a, b = h.line(1), h.line(2)
        self.rqnt("aaln/*", "X: 10", "R: L/hd(N)")
        a.off_hook()
        self.assertEqual(h.observed(h.ntfys()[-1]), ["L/hd"])
        self.rqnt("aaln/1", "X: 11", "R: L/hu(N), D/[0-9#*T](D)", "S: L/dl", "D: (2xx|911)")
        self.assertEqual(a.tone, "L/dl")
        a.dial("201", gap=0.2)
        h.advance(0.4)
        self.assertEqual(h.observed(h.ntfys()[-1]), ["D/2", "D/0", "D/1"])
        self.assertIsNone(a.tone)
        self.rqnt("aaln/1", "X: 12", "R: L/hu(N)")
        ca = self.crcx("aaln/1", "C: CA11", "L: p:20, a:PCMU", "M: recvonly")
        cb = self.crcx("aaln/2", "C: CA11", "L: p:20, a:PCMU", "M: sendrecv", "X: 20",
                       "R: L/hd(N)", "S: L/rg", sdp=str(ca.sdp))
        self.assertTrue(b.ringing)
        r = h.request("MDCX {tx} aaln/1@rgw1 MGCP 1.0", "C: CA11", f"I: {ca.connection_id}", "M: recvonly",
                      sdp=str(cb.sdp))
        self.assertEqual(r.code, 200)
        self.rqnt("aaln/1", "X: 13", "R: L/hu(N)", "S: G/rt")
        self.assertEqual(a.tone, "G/rt")
        b.off_hook()
        self.assertFalse(b.ringing)
        self.assertEqual(h.ntfys()[-1].request_id, "20")
        self.rqnt("aaln/2", "X: 21", "R: L/hu(N)")
        self.rqnt("aaln/1", "X: 14", "R: L/hu(N)")
        self.assertIsNone(a.tone)
        r = h.request("MDCX {tx} aaln/1@rgw1 MGCP 1.0", "C: CA11", f"I: {ca.connection_id}", "M: sendrecv")
        self.assertEqual((r.code, r.sdp), (200, None))
        self.assertEqual([c.mode for c in (a.connections + b.connections)], ["sendrecv", "sendrecv"])
        self.assertEqual((a.connections[0].remote_sdp.rtp_address[1], b.connections[0].remote_sdp.rtp_address[1]),
                         (b.connections[0].rtp_port, a.connections[0].rtp_port))
        b.on_hook()
        self.assertEqual(h.observed(h.ntfys()[-1]), ["L/hu"])
        for line, conn in (("aaln/2", cb), ("aaln/1", ca)):
            r = h.request(f"DLCX {{tx}} {line}@rgw1 MGCP 1.0", "C: CA11", f"I: {conn.connection_id}")
            self.assertEqual(r.code, 250)
            self.assertIn(P.CONNECTION_PARAMETERS, r.params)
        a.on_hook()
        self.assertEqual(h.ntfys()[-1].request_id, "14")
        self.assertEqual(h.gateway.connection_count(), 0)


class Media(GatewayTestCase):
    """RTP ports: real, bound-nothing, and real packets with media=True."""

    harness_options = {"media": True}

    def test_media_flows_and_is_counted(self) -> None:
        """Two sendrecv connections pointed at each other exchange 20 ms packets; P: counts them."""
        a = self.crcx("aaln/1", "C: C1", "M: recvonly", "L: a:PCMU")
        b = self.crcx("aaln/2", "C: C1", "M: sendrecv", "L: a:PCMU", sdp=str(a.sdp))
        self.h.request("MDCX {tx} aaln/1@rgw1 MGCP 1.0", "C: C1", f"I: {a.connection_id}", "M: sendrecv",
                       sdp=str(b.sdp))
        self.h.advance(1.0)
        sent_by_b = self.h.gateway.endpoints[1].connections[b.connection_id].packets_sent
        r = self.h.request("DLCX {tx} aaln/1@rgw1 MGCP 1.0", "C: C1", f"I: {a.connection_id}")
        stats = r.params[P.CONNECTION_PARAMETERS].as_dict()
        self.assertTrue(49 <= stats["PS"] <= 52, stats)  # one packet per 20 ms of clock
        self.assertEqual(stats["OS"], stats["PS"] * 160)
        self.assertEqual((stats["PR"], stats["OR"], stats["PL"]), (sent_by_b, sent_by_b * 160, 0))
        self.assertTrue(49 <= sent_by_b <= 52)

    def test_no_rtp_binds_nothing(self) -> None:
        """rtp=False hands out port numbers without binding; thousands of connections cost no socket."""
        reactor = MemoryReactor()
        gateway = SimulatedGateway(reactor, GatewayConfig(lines=600, rtp=False, port=2427, history_limit=0))
        gateway.start()
        ports = set()
        txid = 1000
        for line in gateway.lines:
            for call in ("A", "B"):
                txid += 1
                crcx = Command.create(Verb.CRCX, txid, line.name, call_id=call, mode="recvonly")
                answer = gateway.command_received(crcx, ("127.0.0.1", 2727))
                # The RSIP is still unanswered (nobody listens): it rides ahead of each answer.
                self.assertIsInstance(answer, Reply)
                ports.add(answer.response.sdp.rtp_address[1])
        self.assertEqual((gateway.connection_count(), len(ports)), (1200, 1200))
        self.assertEqual(len(reactor.network.ports), 1, "only the MGCP socket")
        self.assertTrue(all(p % 2 == 0 for p in ports))
        gateway.stop()
        reactor.network.pump()
        self.assertEqual(reactor.getDelayedCalls(), [])
