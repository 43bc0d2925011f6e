"""
Conformance of the simulated gateway: the restart procedure and avalanche
control (RFC 3435 §4.4.6, digest §4.8), operator restarts and the service
states of §4.4.5 (digest §2.9), the "disconnected" procedure (§4.4.7,
digest §4.9) and gateway-initiated DLCX (§2.3.8).
"""

from __future__ import annotations

from typing import Any

from mgcpswitch.errors import TransactionTimeout
from mgcpswitch.mgcp import ParamCode as P, Response, RestartMethod, Verb, decode
from mgcpswitch.transaction import TransactionConfig

from .support.gateway import GatewayHarness, GatewayTestCase, ScriptedAgent, sdp


class RestartProcedure(GatewayTestCase):
    """The RSIP at power-up and what happens to commands meanwhile."""

    harness_options = {"start": False}

    def start(self, h: GatewayHarness | None = None) -> GatewayHarness:
        h = h or self.h
        h.gateway.start()
        h.pump()
        return h

    def test_wildcard_restart_at_start(self) -> None:
        """RSIP *@domain RM: restart, no RD, to the provisioned call agent (§4.4.6)."""
        self.start()
        [rsip] = self.h.rsips()
        self.assertEqual((rsip.endpoint, rsip.params[P.RESTART_METHOD]), ("*@rgw1", RestartMethod.RESTART))
        self.assertNotIn(P.RESTART_DELAY, rsip.params)
        self.assertEqual(self.h.gateway.restarts.procedures, set())

    def test_first_rsip_waits_a_random_delay_within_mwd(self) -> None:
        """With MWD 60 s the RSIP goes out once, at a uniform random time in [0, 60]."""
        h = self.harness(start=False, restart_delay=60.0)
        self.addCleanup(self.stop_harness, h)
        self.start(h)
        self.assertEqual(h.rsips(), [])
        h.advance(60)
        [rsip] = h.rsips()
        [sent] = [d for d in h.network.log if d.data.startswith(b"RSIP")]
        self.assertTrue(0 < sent.time <= 60, sent.time)

    def test_command_during_mwd_starts_restart_and_piggybacks(self) -> None:
        """A command before the timer: answered 200 with the RSIP ahead of it; the RSIP also goes on its own."""
        h = self.harness(start=False, restart_delay=600.0)
        self.addCleanup(self.stop_harness, h)
        self.start(h)
        h.agent.hold(Verb.RSIP)
        txid = h.send("RQNT {tx} aaln/1@rgw1 MGCP 1.0", "X: 1", "R: L/hd(N)")
        reply = h.datagram_of(txid)
        self.assertEqual([type(m).__name__ for m in reply], ["Command", "Response"])
        self.assertEqual((reply[0].verb, reply[1].transaction_id, reply[1].code), (Verb.RSIP, txid, 200))
        alone = [decode(d.data) for d in h.network.log if d.data.startswith(b"RSIP")]
        alone = [m for m in alone if len(m) == 1]
        self.assertEqual(len(alone), 1, "the reliable copy was sent alone as well")
        self.assertEqual(alone[0][0].transaction_id, reply[0].transaction_id)

    def test_off_hook_during_mwd_starts_restart(self) -> None:
        """Local activity starts the restart procedure at once (§4.4.6)."""
        h = self.harness(start=False, restart_delay=600.0)
        self.addCleanup(self.stop_harness, h)
        self.start(h)
        h.line(2).off_hook()
        self.assertEqual(len(h.rsips()), 1)

    def test_responses_carry_the_rsip_until_it_is_acknowledged(self) -> None:
        """Every non-audit answer before the RSIP's 2xx has it piggybacked, replays too; audits do not."""
        self.h.agent.hold(Verb.RSIP)
        self.start()
        [rsip] = self.h.rsips()
        txid = self.h.send("CRCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1", "M: recvonly")
        first = self.h.agent.datagrams[-1]
        self.assertEqual([getattr(m, "verb", None) for m in self.h.datagram_of(txid)], [Verb.RSIP, None])
        self.h.send("CRCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1", "M: recvonly", txid=txid)
        self.assertEqual(self.h.agent.datagrams[-1], first, "a retransmission replays RSIP + response")
        audit = self.h.send("AUEP {tx} aaln/1@rgw1 MGCP 1.0")
        self.assertEqual(len(self.h.datagram_of(audit)), 1)
        self.h.agent.reply(rsip)
        self.h.pump()
        later = self.h.send("CRCX {tx} aaln/2@rgw1 MGCP 1.0", "C: A1", "M: recvonly")
        self.assertEqual(len(self.h.datagram_of(later)), 1)

    def test_ntfy_waits_for_the_rsip(self) -> None:
        """An event before the RSIP is acknowledged is notified only after it (RSIP first, §4.4.6)."""
        self.h.agent.hold(Verb.RSIP)
        self.start()
        self.h.request("RQNT {tx} aaln/1@rgw1 MGCP 1.0", "X: 1", "R: L/hd(N)")
        d = self.h.line(1).off_hook()
        self.assertEqual(self.h.ntfys(), [])
        self.h.agent.reply(self.h.rsips()[0])
        self.h.pump()
        self.assertEqual(self.h.observed(self.h.ntfys()[0]), ["L/hd"])
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_4xx_repeats_with_a_new_transaction(self) -> None:
        """A transient error makes the gateway repeat the RSIP (new txid) after a back-off."""
        self.h.agent.answer = lambda c: Response.create(
            405 if len(self.h.agent.commands(Verb.RSIP)) < 3 else 200, c.transaction_id)
        self.start()
        self.h.advance(10)
        rsips = self.h.rsips()
        self.assertEqual(len(rsips), 3)
        self.assertEqual(len({r.transaction_id for r in rsips}), 3)
        self.assertEqual(self.h.gateway.restarts.procedures, set())

    def test_521_redirects_to_the_new_call_agent(self) -> None:
        """521 with N: repeats the restart towards that call agent; NTFYs then go there (§2.3.12)."""
        other = ScriptedAgent()
        self.h.reactor.listenUDP(2727, other, interface="127.0.0.3")
        self.h.agent.answer = lambda c: Response.create(521, c.transaction_id, "Redirect",
                                                        notified_entity="ca2@127.0.0.3:2727")
        self.start()
        [first] = self.h.rsips()
        [second] = other.commands(Verb.RSIP)
        self.assertNotEqual(first.transaction_id, second.transaction_id)
        self.h.request("RQNT {tx} aaln/1@rgw1 MGCP 1.0", "X: 1", "R: L/hd(N)")
        self.h.line(1).off_hook()
        self.h.pump()
        self.assertEqual([c.verb for c in other.commands()], [Verb.RSIP, Verb.NTFY])

    def test_200_with_N_sets_the_notified_entity(self) -> None:
        """A 200 to the RSIP carrying N: moves every endpoint to that call agent."""
        self.h.agent.answer = lambda c: Response.create(200, c.transaction_id, notified_entity="ca@127.0.0.5:2728")
        self.start()
        self.assertEqual({str(line.notified_entity) for line in self.h.gateway.lines}, {"ca@127.0.0.5:2728"})

    def test_5xx_stops_until_a_command_arrives(self) -> None:
        """A permanent error stops the procedure; the next command restarts it (piggybacked)."""
        answers = iter([510, 200])
        self.h.agent.answer = lambda c: Response.create(next(answers, 200), c.transaction_id)
        self.start()
        self.h.advance(1000)
        self.assertEqual(len(self.h.rsips()), 1)
        txid = self.h.send("RQNT {tx} aaln/1@rgw1 MGCP 1.0", "X: 1")
        self.assertEqual(self.h.datagram_of(txid)[0].verb, Verb.RSIP)
        self.assertEqual(len(self.h.rsips()), 2)

    def test_no_answer_goes_disconnected_but_keeps_restart(self) -> None:
        """An unanswered RSIP restart is repeated after [1, Tdinit] then doubling, still RM: restart (§4.4.7)."""
        self.h.agent.answer = lambda c: None
        self.start()
        self.h.advance(20)  # T-MAX: the first transaction gives up
        self.assertEqual(len(self.h.rsips()), 1)
        self.h.advance(15)
        rsips = self.h.rsips()
        self.assertEqual(len(rsips), 2)
        self.assertEqual(rsips[1].params[P.RESTART_METHOD], RestartMethod.RESTART)
        procedure = next(iter(self.h.gateway.restarts.procedures))
        first_wait = procedure.interval
        self.assertTrue(1 <= first_wait <= 15)
        self.h.advance(20 + 2 * first_wait + 0.01)
        self.assertEqual(procedure.interval, 2 * first_wait)
        self.assertEqual(len(self.h.rsips()), 3)


class Disconnected(GatewayTestCase):
    """The disconnected procedure after an NTFY the call agent never answered (§4.4.7)."""

    def lose_the_call_agent(self) -> Any:
        self.h.agent.hold(Verb.NTFY, Verb.RSIP)
        self.rqnt("aaln/1", "X: 1", "R: L/hd(N)")
        d = self.h.line(1).off_hook()
        self.h.advance(20)  # the NTFY transaction times out
        self.failureResultOf(d, TransactionTimeout)

    def test_rsip_disconnected_with_RD(self) -> None:
        """After a uniform [1, Tdinit] wait: RSIP RM: disconnected, RD: seconds disconnected, new txid."""
        self.lose_the_call_agent()
        self.assertEqual(self.h.rsips()[1:], [])
        self.assertEqual(str(self.auep("aaln/1", "F: RM").params[P.RESTART_METHOD]), "disconnected")
        self.h.advance(15)
        [rsip] = self.h.rsips()[1:]
        self.assertEqual((rsip.endpoint, rsip.params[P.RESTART_METHOD]), ("aaln/1@rgw1", RestartMethod.DISCONNECTED))
        sent = [d.time for d in self.h.network.log if d.data.startswith(b"RSIP")][1]
        self.assertEqual(rsip.params[P.RESTART_DELAY], int(sent - 20))
        self.h.agent.reply(rsip)
        self.h.pump()
        self.assertEqual(str(self.auep("aaln/1", "F: RM,B/NS").params[P.RESTART_METHOD]), "restart")
        self.assertEqual(self.h.line(1).notification_state.value, "ls",
                         "the lost NTFY's notification state ended with the procedure")

    def test_wait_doubles_up_to_tdmax(self) -> None:
        """Each failed attempt doubles the wait, capped at Tdmax."""
        h = self.harness(tdinit=2.0, tdmax=10.0, transaction=TransactionConfig(t_max=1.0))
        self.addCleanup(self.stop_harness, h)
        h.agent.hold(Verb.NTFY, Verb.RSIP)
        h.request("RQNT {tx} aaln/1@rgw1 MGCP 1.0", "X: 1", "R: L/hd(N)")
        d = h.line(1).off_hook()
        h.advance(120)
        self.failureResultOf(d, TransactionTimeout)
        firsts: dict[int, float] = {}
        for d in h.network.log:
            [message] = decode(d.data)
            if getattr(message, "verb", None) is Verb.RSIP and message.endpoint == "aaln/1@rgw1":
                firsts.setdefault(message.transaction_id, d.time)
        starts = sorted(firsts.values())
        # Waits between attempts (minus the 1 s each transaction lasts): the
        # first in [1, Tdinit] came before the first RSIP, then 2x, 4x, ... up to Tdmax.
        gaps = [round(b - a - 1.0, 6) for a, b in zip(starts, starts[1:])]
        self.assertTrue(2 <= gaps[0] <= 4, gaps)
        self.assertAlmostEqual(gaps[1], 2 * gaps[0], places=5)
        self.assertEqual(gaps[-3:], [10.0, 10.0, 10.0])

    def test_command_while_disconnected_gets_the_rsip_first(self) -> None:
        """A command is answered [RSIP disconnected + response]; the same RSIP goes to the NE reliably."""
        self.lose_the_call_agent()
        txid = self.h.send("RQNT {tx} aaln/1@rgw1 MGCP 1.0", "X: 2", "R: L/hu(N)")
        rsip, response = self.h.datagram_of(txid)
        self.assertEqual((rsip.verb, rsip.params[P.RESTART_METHOD]), (Verb.RSIP, RestartMethod.DISCONNECTED))
        self.assertEqual((response.transaction_id, response.code), (txid, 200))
        alone = [decode(d.data) for d in self.h.network.log if d.data.startswith(b"RSIP")]
        alone = [m[0].transaction_id for m in alone if len(m) == 1 and m[0].endpoint == "aaln/1@rgw1"]
        self.assertIn(rsip.transaction_id, alone, "the same RSIP (txid) sent on its own to the notified entity")

    def test_local_activity_counts_only_after_tdmin(self) -> None:
        """An off-hook within Tdmin of the disconnection does not start the procedure; later it does."""
        h = self.harness(tdinit=600.0, tdmax=600.0, tdmin=15.0)
        self.addCleanup(self.stop_harness, h)
        h.agent.hold(Verb.NTFY, Verb.RSIP)
        h.request("RQNT {tx} aaln/1@rgw1 MGCP 1.0", "X: 1", "R: L/hd(N)", "T: L/hu")
        d = h.line(1).off_hook()
        h.advance(20)
        self.failureResultOf(d, TransactionTimeout)
        wait = next(iter(h.gateway.restarts.procedures)).interval
        self.assertGreater(wait, 30, "seeded: the random wait is long enough to see activity work")
        h.line(1).on_hook()
        self.assertEqual(len(h.rsips()), 1)
        h.advance(15)
        h.line(1).off_hook()
        self.assertEqual(len(h.rsips()), 2)
        self.assertEqual(h.rsips()[-1].params[P.RESTART_METHOD], RestartMethod.DISCONNECTED)


class OperatorRestart(GatewayTestCase):
    """Operator restarts and the service-state table (§2.3.12, §4.4.5)."""

    def test_forced_takes_everything_out_of_service(self) -> None:
        """RSIP forced without RD; connections gone; non-audit commands 501; audits still answered."""
        self.crcx("aaln/1", "C: A1", "M: recvonly")
        d = self.h.gateway.restart(RestartMethod.FORCED)
        self.h.pump()
        self.assertEqual(self.successResultOf(d).code, 200)
        rsip = self.h.rsips()[-1]
        self.assertEqual((rsip.endpoint, rsip.params[P.RESTART_METHOD]), ("*@rgw1", RestartMethod.FORCED))
        self.assertNotIn(P.RESTART_DELAY, rsip.params)
        self.assertEqual(self.h.gateway.connection_count(), 0)
        r = self.crcx("aaln/1", "C: A1", "M: recvonly")
        self.assertEqual(r.code, 501)
        self.assertEqual(len(decode(self.h.agent.datagrams[-1])), 1, "501 carries no RSIP")
        self.assertEqual(self.auep("aaln/1", "F: RM").params[P.RESTART_METHOD], RestartMethod.FORCED)
        self.h.gateway.restart()
        self.h.pump()
        self.assertEqual(self.crcx("aaln/1", "C: A1", "M: recvonly").code, 200)

    def test_restart_with_delay(self) -> None:
        """restart RD 30: out of service (501) for 30 s, then an updated RSIP restart and 200s."""
        self.h.gateway.restart(RestartMethod.RESTART, delay=30)
        self.h.pump()
        self.assertEqual(self.h.rsips()[-1].params[P.RESTART_DELAY], 30)
        self.assertEqual(self.rqnt("aaln/1", "X: 1").code, 501)
        self.assertEqual(self.auep("aaln/1", "F: RD").params[P.RESTART_DELAY], 30)
        self.h.advance(30)
        rsip = self.h.rsips()[-1]
        self.assertEqual((rsip.params[P.RESTART_METHOD], P.RESTART_DELAY in rsip.params),
                         (RestartMethod.RESTART, False))
        self.assertEqual(self.rqnt("aaln/1", "X: 1").code, 200)

    def test_graceful_with_delay(self) -> None:
        """graceful RD 10: calls go on, commands succeed; after 10 s RSIP forced and 501."""
        self.crcx("aaln/1", "C: A1", "M: recvonly")
        self.h.gateway.restart(RestartMethod.GRACEFUL, delay=10)
        self.h.pump()
        self.assertEqual(self.h.rsips()[-1].params[P.RESTART_DELAY], 10)
        self.assertEqual(self.crcx("aaln/2", "C: A2", "M: recvonly").code, 200)
        self.assertEqual(self.auep("aaln/1", "F: RM").params[P.RESTART_METHOD], RestartMethod.GRACEFUL)
        self.h.advance(10)
        self.assertEqual(self.h.rsips()[-1].params[P.RESTART_METHOD], RestartMethod.FORCED)
        self.assertEqual(self.h.gateway.connection_count(), 0)
        self.assertEqual(self.rqnt("aaln/1", "X: 1").code, 501)

    def test_graceful_without_delay_waits_for_calls(self) -> None:
        """graceful RD 0: an idle line goes out at once, a busy one when its last connection goes."""
        cid = self.crcx("aaln/1", "C: A1", "M: recvonly").connection_id
        self.h.gateway.restart(RestartMethod.GRACEFUL)
        self.h.pump()
        self.assertEqual([line.in_service for line in self.h.gateway.lines], [True, False, False, False])
        self.assertEqual(self.h.request("DLCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1", f"I: {cid}").code, 250)
        self.assertFalse(self.h.line(1).in_service)
        self.h.gateway.restart(RestartMethod.CANCEL_GRACEFUL)
        self.h.pump()
        self.assertEqual(self.h.rsips()[-1].params[P.RESTART_METHOD], RestartMethod.CANCEL_GRACEFUL)
        self.assertTrue(all(line.in_service for line in self.h.gateway.lines))
        self.assertEqual(self.auep("aaln/1", "F: RM").params[P.RESTART_METHOD], RestartMethod.RESTART)

    def test_restart_resets_the_endpoints(self) -> None:
        """A restart clears signals, connections, the request (X: 0) and the notified entity."""
        self.crcx("aaln/1", "C: A1", "M: recvonly")
        self.rqnt("aaln/1", "X: 9", "S: L/rg", "N: ca@127.0.0.9:2727")
        self.h.gateway.restart()
        line = self.h.line(1)
        self.assertEqual((line.connections, line.signals, line.request_id), ((), set(), "0"))
        self.assertEqual(str(line.notified_entity), "127.0.0.1:2727")
        self.assertRaises(ValueError, self.h.gateway.restart, RestartMethod.DISCONNECTED)


class GatewayDLCX(GatewayTestCase):
    """A broken line: gateway-initiated DLCX (§2.3.8)."""

    def test_fail_line_deletes_with_reason_and_statistics(self) -> None:
        """Each connection: DLCX with C:, I:, E: 900 and P:, in one datagram; then 501, E audited."""
        a = self.crcx("aaln/1", "C: A1", "M: recvonly").connection_id
        b = self.crcx("aaln/1", "C: B2", "M: sendrecv", sdp=sdp()).connection_id
        d = self.h.gateway.fail_line(1)
        self.h.pump()
        self.assertEqual([r.code for r in self.successResultOf(d)], [200, 200])
        dlcxs = self.h.agent.commands(Verb.DLCX)
        self.assertEqual([(c.call_id, c.connection_id) for c in dlcxs], [("A1", a), ("B2", b)])
        self.assertEqual(str(dlcxs[0].params[P.REASON_CODE]), "900 Endpoint malfunctioning")
        self.assertEqual(dlcxs[0].params[P.CONNECTION_PARAMETERS].get("PS"), 0)
        self.assertEqual(len(decode(next(x.data for x in self.h.network.log if x.data.startswith(b"DLCX")))), 2)
        self.assertEqual(self.rqnt("aaln/1", "X: 1").code, 501)
        self.assertEqual(self.auep("aaln/1", "F: E").params[P.REASON_CODE].code, 900)
        self.assertEqual(self.h.request("DLCX {tx} *@rgw1 MGCP 1.0").code, 250, "a wildcard skips it")

    def test_restore_line(self) -> None:
        """A repaired line announces itself with RSIP restart and takes commands again."""
        self.h.gateway.fail_line(2, reason=905)
        self.h.gateway.restore_line(2)
        self.h.pump()
        rsip = self.h.rsips()[-1]
        self.assertEqual((rsip.endpoint, rsip.params[P.RESTART_METHOD]), ("aaln/2@rgw1", RestartMethod.RESTART))
        self.assertEqual(self.rqnt("aaln/2", "X: 1").code, 200)
        self.assertEqual(self.auep("aaln/2", "F: E").params[P.REASON_CODE].code, 0)
