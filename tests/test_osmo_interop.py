"""
Interop of the transaction layer with a real gateway, osmo-mgw, on
loopback: wildcard CRCX -> MDCX with SDP -> DLCX (250 with P:), and
retransmission against its replay cache.

osmo-mgw answers C{K:} with 539 (see ../shared/peers/README.md), so the
peer is configured without response acknowledgements, as an operator would
through its gateway profile.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from mgcpswitch.interfaces import ICommandHandler
from mgcpswitch.mgcp import (
    Command, ConnectionMode, ParamCode, Response, SessionDescription, Verb, decode,
)
from mgcpswitch.transaction import TransactionConfig
from mgcpswitch.transport import CallAgentProtocol

from .support.osmo import active_connections, start_osmo_mgw, vty

MGW_IP = "127.0.0.31"


@implementer(ICommandHandler)
class Refuse:
    def command_received(self, command: Command, source: Any) -> Response:
        return Response.create(504, command.transaction_id, "not expected")


class LossyAgent(CallAgentProtocol):
    """Drops the first N datagrams it receives, or the first N it sends."""

    drop_received = 0
    drop_sent = 0

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        if self.drop_received:
            self.drop_received -= 1
            self.dropped.append(datagram)
            return
        super().datagramReceived(datagram, addr)

    def _write(self, datagram: bytes, address: Any) -> None:
        if self.drop_sent:
            self.drop_sent -= 1
            self.dropped.append(datagram)
            return
        super()._write(datagram, address)


class OsmoMGWInterop(TestCase):
    """The transaction layer against osmo-mgw 1.10 over real UDP."""

    timeout = 60

    def setUp(self) -> None:
        self.mgw = start_osmo_mgw(ip=MGW_IP)
        self.addCleanup(self.mgw.stop)
        self.agent = LossyAgent(reactor, Refuse(), TransactionConfig(initial_rto=0.2))
        self.agent.dropped = []
        port = reactor.listenUDP(0, self.agent, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.agent.transactions.set_peer_options(self.mgw.address, response_acks=False)

    def send(self, command: Command) -> Deferred[Response]:
        return self.agent.send_command(command, self.mgw.address).addTimeout(30, reactor)

    @inlineCallbacks
    def test_crcx_mdcx_dlcx(self) -> Any:
        """Wildcard CRCX gets Z:, I: and SDP; MDCX with SDP gets SDP; DLCX gets 250 with P:."""
        crcx = yield self.send(Command.create(
            Verb.CRCX, 0, "rtpbridge/*@mgw", call_id="c0ffee01",
            local_options="p:20, a:PCMU", mode=ConnectionMode.RECVONLY,
        ))
        self.assertEqual(crcx.code, 200)
        endpoint = crcx.specific_endpoint
        connection = crcx.connection_id
        self.assertTrue(endpoint.startswith("rtpbridge/"))
        self.assertIsNotNone(connection)
        self.assertEqual(crcx.sdp.rtp_address[0], MGW_IP)
        self.assertEqual(crcx.sdp.audio.payload_types, (0,))

        remote = SessionDescription.create(
            "127.0.0.1", 40000, [0], rtpmaps=[], ptime=20, session_id="1", session_version="1"
        )
        mdcx = yield self.send(Command.create(
            Verb.MDCX, 0, endpoint, call_id="c0ffee01", connection_id=connection,
            mode=ConnectionMode.SENDRECV, sdp=remote,
        ))
        self.assertEqual(mdcx.code, 200)
        self.assertIsNotNone(mdcx.sdp)
        self.assertEqual(active_connections(MGW_IP), 1)

        dlcx = yield self.send(Command.create(
            Verb.DLCX, 0, endpoint, call_id="c0ffee01", connection_id=connection,
        ))
        self.assertEqual(dlcx.code, 250)
        stats = dlcx.params.get(ParamCode.CONNECTION_PARAMETERS)
        self.assertEqual(
            sorted(name for name, _ in stats.values), ["JI", "OR", "OS", "PL", "PR", "PS"]
        )
        self.assertEqual(active_connections(MGW_IP), 0)
        self.assertEqual(self.agent.transactions.counters["retransmissions"], 0)

    @inlineCallbacks
    def test_lost_crcx_is_retransmitted_and_executed_once(self) -> Any:
        """Dropping the first CRCX datagram: the retransmission creates exactly one connection."""
        self.agent.drop_sent = 1
        crcx = yield self.send(Command.create(
            Verb.CRCX, 0, "rtpbridge/2@mgw", call_id="c0ffee02", mode=ConnectionMode.RECVONLY,
        ))
        self.assertEqual(crcx.code, 200)
        self.assertEqual(len(self.agent.dropped), 1)
        self.assertEqual(self.agent.transactions.counters["retransmissions"], 1)
        self.assertEqual(active_connections(MGW_IP), 1)
        yield self.send(Command.create(Verb.DLCX, 0, "rtpbridge/2@mgw"))
        self.assertEqual(active_connections(MGW_IP), 0)

    @inlineCallbacks
    def test_lost_response_is_replayed_from_the_gateway_cache(self) -> Any:
        """
        Dropping osmo-mgw's first answer: our retransmission (same bytes, same
        id) is answered from its replay cache with the same connection id,
        and no second connection is created.
        """
        self.agent.drop_received = 1
        crcx = yield self.send(Command.create(
            Verb.CRCX, 0, "rtpbridge/3@mgw", call_id="c0ffee03", mode=ConnectionMode.RECVONLY,
        ))
        self.assertEqual(crcx.code, 200)
        [lost] = self.agent.dropped
        [original] = decode(lost)
        self.assertEqual(original.connection_id, crcx.connection_id)
        self.assertEqual(original.sdp, crcx.sdp)
        self.assertEqual(active_connections(MGW_IP), 1)
        counters = vty(MGW_IP, "show rate-counters skip-zero")[0]
        self.assertIn("retransmitted", counters)
        yield self.send(Command.create(
            Verb.DLCX, 0, "rtpbridge/3@mgw", call_id="c0ffee03", connection_id=crcx.connection_id,
        ))
        self.assertEqual(active_connections(MGW_IP), 0)
