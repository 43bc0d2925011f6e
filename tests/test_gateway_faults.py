"""
Conformance of the simulated gateway: retransmissions and duplicates (RFC
3435 §3.5, §4.1-§4.5; digest §4.1-§4.5), and the fault injection that
reliability tests build on (drop, duplicate, delay, slow answers).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import gatherResults
from zope.interface import implementer

from mgcpswitch.gateway import FaultConfig
from mgcpswitch.gateway.faults import FaultyGatewayProtocol
from mgcpswitch.interfaces import ICommandHandler
from mgcpswitch.mgcp import Command, ParamCode, Response, Verb, decode
from mgcpswitch.transaction import TransactionConfig
from mgcpswitch.transport import CallAgentProtocol, GatewayProtocol

from .support.gateway import GW, GatewayTestCase


@implementer(ICommandHandler)
class Accept:
    def command_received(self, command: Command, source: Any) -> Response:
        return Response.create(200, command.transaction_id)


class Duplicates(GatewayTestCase):
    """At-most-once execution (§3.5.1): replays from the response cache."""

    def test_retransmitted_command_is_replayed_not_executed(self) -> None:
        """The same CRCX twice: one connection, byte-identical answers."""
        txid = self.h.send("CRCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1", "M: recvonly")
        first = self.h.agent.datagrams[-1]
        self.h.send("CRCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1", "M: recvonly", txid=txid)
        self.assertEqual(self.h.agent.datagrams[-1], first)
        self.assertEqual(len(self.h.line(1).connections), 1)

    def test_duplicates_are_keyed_by_transaction_id_alone(self) -> None:
        """A gateway keys commands by txid, whatever the source (§4.1): the replay goes to the new source."""
        txid = self.h.send("CRCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1", "M: recvonly")
        self.h.send("CRCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1", "M: recvonly", txid=txid,
                    source=("127.0.0.7", 2727))
        replies = [d for d in self.h.network.log
                   if d.source == GW and d.data.startswith(b"200") and d.fate == "delivered"]
        self.assertEqual([d.destination for d in replies], [("127.0.0.1", 2727), ("127.0.0.7", 2727)])
        self.assertEqual(self.h.gateway.connection_count(), 1)

    def test_history_expires_after_t_hist(self) -> None:
        """After T-HIST the transaction id is forgotten; the history table is empty again."""
        txid = self.h.send("CRCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1", "M: recvonly")
        self.assertGreater(self.h.gateway.protocol.transactions.snapshot()["history"], 0)
        self.h.advance(31)
        self.assertEqual(self.h.gateway.protocol.transactions.snapshot()["history"], 0)
        self.h.send("CRCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1", "M: recvonly", txid=txid)
        self.assertEqual(len(self.h.line(1).connections), 2, "executed again: a new transaction")

    def test_response_ack_purges_the_cached_response(self) -> None:
        """Once K: confirms a response, a late duplicate is silently discarded (§3.5.1)."""
        txid = self.h.send("AUEP {tx} aaln/1@rgw1 MGCP 1.0")
        self.h.request("AUEP {tx} aaln/2@rgw1 MGCP 1.0", f"K: {txid}")
        count = len(self.h.agent.datagrams)
        self.h.send("AUEP {tx} aaln/1@rgw1 MGCP 1.0", txid=txid)
        self.assertEqual(len(self.h.agent.datagrams), count)

    def test_ntfy_retransmission_uses_backoff(self) -> None:
        """An unanswered NTFY is repeated with the same bytes at growing intervals (§4.3)."""
        self.h.agent.hold(Verb.NTFY)
        self.rqnt("aaln/1", "X: 1", "R: L/hd(N)")
        d = self.h.line(1).off_hook()
        self.h.advance(5)
        sent = [x for x in self.h.network.log if x.data.startswith(b"NTFY")]
        self.assertEqual(len({x.data for x in sent}), 1)
        gaps = [b.time - a.time for a, b in zip(sent, sent[1:])]
        self.assertTrue(all(b >= a * 0.99 for a, b in zip(gaps, gaps[1:])), gaps)
        self.h.agent.reply(self.h.ntfys()[0])
        self.h.pump()
        self.assertEqual(self.successResultOf(d).code, 200)


class DatagramFaults(GatewayTestCase):
    """Dropped, duplicated and delayed datagrams, from a seeded generator."""

    harness_options = {"start": False}

    def agent(self, h: Any) -> CallAgentProtocol:
        """A call agent with a real transaction layer (it retransmits) on port 2728."""
        agent = CallAgentProtocol(h.reactor, Accept(), TransactionConfig())
        port = h.reactor.listenUDP(2728, agent, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return agent

    def test_no_faults_no_wrapper(self) -> None:
        """Without datagram faults the plain GatewayProtocol is used."""
        self.assertIs(type(self.h.gateway.protocol), GatewayProtocol)

    def test_drops_are_recovered_by_retransmission(self) -> None:
        """With 30% loss each way every AUEP still completes; the losses are counted."""
        h = self.harness(faults=FaultConfig(drop=0.3, seed=7))
        self.addCleanup(self.stop_harness, h)
        self.assertIsInstance(h.gateway.protocol, FaultyGatewayProtocol)
        h.gateway.start()
        agent = self.agent(h)
        ds = [agent.send_command(Command.create(Verb.AUEP, 0, "aaln/1@rgw1"), GW) for _ in range(30)]
        h.advance(30)
        self.assertEqual({r.code for r in self.successResultOf(gatherResults(ds))}, {200})
        counters = h.gateway.protocol.fault_counters
        self.assertGreater(counters["received_dropped"] + counters["sent_dropped"], 5)

    def test_duplicates_execute_once(self) -> None:
        """Every datagram doubled: each CRCX still makes one connection."""
        h = self.harness(faults=FaultConfig(duplicate=1.0, seed=1))
        self.addCleanup(self.stop_harness, h)
        h.gateway.start()
        h.pump()
        self.assertEqual(h.request("CRCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1", "M: recvonly").code, 200)
        self.assertEqual(len(h.line(1).connections), 1)
        self.assertGreaterEqual(h.gateway.protocol.fault_counters["received_duplicated"], 1)
        self.assertEqual(len(h.agent.responses(1001)), 4, "twice the reply to each of two copies")

    def test_delay_holds_datagrams_back(self) -> None:
        """A delayed datagram arrives delay_seconds later (on the clock)."""
        h = self.harness(faults=FaultConfig(delay=1.0, delay_seconds=0.5, seed=1))
        self.addCleanup(self.stop_harness, h)
        h.gateway.start()
        h.pump()
        self.assertEqual(h.rsips(), [])
        h.advance(0.5)
        self.assertEqual(len(h.rsips()), 1)
        txid = h.send("AUEP {tx} aaln/1@rgw1 MGCP 1.0")
        h.advance(0.99)
        self.assertEqual(h.agent.responses(txid), [])
        h.advance(0.01)
        self.assertEqual(h.agent.responses(txid)[0].code, 200)


class SlowAnswers(GatewayTestCase):
    """Slow commands: provisional 100, the final with K:, and the 407 aborts of §4.4.4."""

    harness_options = {"faults": FaultConfig(slow_answer=1.0, slow_seconds=2.0, seed=1)}

    def test_provisional_then_final_with_empty_K(self) -> None:
        """100 at once; the final after 2 s carries K: and is repeated until the 000 (§3.5.6)."""
        txid = self.h.send("CRCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1", "M: recvonly")
        self.h.advance(0)
        self.assertEqual([r.code for r in self.h.agent.responses(txid)], [100])
        self.assertEqual(self.h.gateway.connection_count(), 0, "nothing is done before the answer")
        self.h.advance(2)
        final = self.h.agent.responses(txid)[-1]
        self.assertEqual(final.code, 200)
        self.assertEqual(final.params.get(ParamCode.RESPONSE_ACK), ())
        self.h.advance(0.2)
        self.assertEqual(len([r for r in self.h.agent.responses(txid) if r.code == 200]), 2)
        self.h.send_raw(b"000 %d\r\n" % txid)
        self.h.advance(5)
        self.assertEqual(len([r for r in self.h.agent.responses(txid) if r.code == 200]), 2)

    def test_duplicate_of_an_executing_command_gets_100(self) -> None:
        """A retransmission while the command still executes is answered 100 (§3.5.1)."""
        txid = self.h.send("AUEP {tx} aaln/1@rgw1 MGCP 1.0")
        self.h.advance(0)
        self.h.send("AUEP {tx} aaln/1@rgw1 MGCP 1.0", txid=txid)
        self.assertEqual([r.code for r in self.h.agent.responses(txid)], [100, 100])

    def test_dlcx_aborts_a_pending_crcx(self) -> None:
        """A DLCX for the endpoint aborts the CRCX still executing: 407, and no connection (§4.4.4)."""
        crcx = self.h.send("CRCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1", "M: recvonly")
        dlcx = self.h.send("DLCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1")
        self.h.advance(2)
        self.assertEqual(self.h.agent.responses(crcx)[-1].code, 407)
        self.assertEqual(self.h.agent.responses(dlcx)[-1].code, 250)
        self.assertEqual(self.h.gateway.connection_count(), 0)
        self.assertEqual(self.h.gateway._slow, {}, "nothing is left pending")

    def test_newer_rqnt_aborts_the_older(self) -> None:
        """Two RQNTs on one endpoint: the older one is answered 407, the newer executed."""
        first = self.h.send("RQNT {tx} aaln/1@rgw1 MGCP 1.0", "X: 1", "R: L/hd(N)")
        second = self.h.send("RQNT {tx} aaln/1@rgw1 MGCP 1.0", "X: 2", "R: L/hd(N)")
        self.h.advance(2)
        self.assertEqual(self.h.agent.responses(first)[-1].code, 407)
        self.assertEqual(self.h.agent.responses(second)[-1].code, 200)
        self.assertEqual(self.h.line(1).request_id, "2")
        self.assertEqual([d.verb for d in decode(self.h.agent.datagrams[0])], [Verb.RSIP])
