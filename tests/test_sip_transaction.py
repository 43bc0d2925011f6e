"""
RFC 3261 §17 transactions (mgcpswitch.sip.transaction) timer by timer on
a Clock, with a recorded wire: what is written, when, and that every
transaction leaves the table when its last timer fires.  Also the guard
that the SIP protocol core imports no Twisted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.sip import CSeq, NameAddress, Request, Response, SipUri, Via, decode, response_to
from mgcpswitch.sip.transaction import ClientTransaction, SipTimers, State, TransactionLayer
from mgcpswitch.testing import run_timers

ROOT = Path(__file__).resolve().parent.parent


def _request(method: str, branch: str = "z9hG4bKt1") -> Request:
    return Request(
        method=method, uri=SipUri(host="192.0.2.2", user="2001"),
        via=(Via("UDP", "192.0.2.1", 5060, (("branch", branch),)),),
        from_=NameAddress(SipUri(host="192.0.2.1", user="a")).with_tag("f"), to=NameAddress(SipUri(host="192.0.2.2")),
        call_id="c1", cseq=CSeq(1, method), max_forwards=70,
    )


class Wire:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, bytes]] = []

    def __call__(self, data: bytes, address: tuple[str, int]) -> None:
        self.sent.append((round(self.clock.seconds(), 3), data))

    def times(self, start: bytes) -> list[float]:
        return [t for t, data in self.sent if data.startswith(start)]


class User:
    def __init__(self) -> None:
        self.responses: list[int] = []
        self.timeouts = 0

    def response_received(self, transaction: ClientTransaction, response: Response) -> None:
        self.responses.append(response.code)

    def timed_out(self, transaction: ClientTransaction) -> None:
        self.timeouts += 1


class Transactions(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.wire = Wire(self.clock)
        self.layer = TransactionLayer(self.clock, self.wire, SipTimers())
        self.user = User()

    def tearDown(self) -> None:
        run_timers(self.clock)
        self.assertEqual((self.layer.clients, self.layer.servers), ({}, {}))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_non_invite_client_e_f(self) -> None:
        """NICT: E doubles from T1 to T2 (0.5, 1, 2, 4, 4, ...); F times out at 64*T1 and tells the user once."""
        self.layer.send(_request("OPTIONS"), ("192.0.2.2", 5060), self.user)
        run_timers(self.clock, until=40)
        self.assertEqual(self.wire.times(b"OPTIONS")[:7], [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5])
        self.assertEqual(self.wire.times(b"OPTIONS")[-1], 31.5)
        self.assertEqual(self.user.timeouts, 1)

    def test_non_invite_client_proceeding_and_k(self) -> None:
        """A 1xx moves E to T2; the final response stops it; K (T4) absorbs repeats, then the entry goes."""
        request = _request("BYE")
        self.layer.send(request, ("192.0.2.2", 5060), self.user)
        self.layer.response_received(response_to(request, 100))
        run_timers(self.clock, until=5)
        self.assertEqual(self.wire.times(b"BYE"), [0.0, 0.5, 4.5])
        self.layer.response_received(response_to(request, 200))
        self.assertTrue(self.layer.response_received(response_to(request, 200)))  # absorbed in Completed
        self.assertEqual(self.user.responses, [100, 200])
        run_timers(self.clock, until=9.9)
        self.assertEqual(len(self.layer.clients), 1)
        run_timers(self.clock, until=10.1)
        self.assertEqual(self.layer.clients, {})

    def test_invite_client_non_2xx_acked_and_d(self) -> None:
        """ICT: a 486 is ACKed by the transaction (same branch, To with tag); its repeat is ACKed again; D ends it."""
        request = _request("INVITE")
        self.layer.send(request, ("192.0.2.2", 5060), self.user)
        busy = response_to(request, 486, to_tag="x")
        self.layer.response_received(busy)
        self.layer.response_received(busy)
        acks = [decode(data) for _, data in self.wire.sent if data.startswith(b"ACK")]
        self.assertEqual(len(acks), 2)
        ack = acks[0]
        assert isinstance(ack, Request)
        self.assertEqual((ack.branch, ack.to.tag, ack.cseq), (request.branch, "x", CSeq(1, "ACK")))
        self.assertEqual(self.user.responses, [486])
        run_timers(self.clock, until=31.9)
        self.assertEqual(len(self.layer.clients), 1)

    def test_invite_client_accepted_passes_each_2xx(self) -> None:
        """RFC 6026: after a 2xx the ICT waits 64*T1 (M) and hands every repeated 2xx to its user."""
        request = _request("INVITE")
        transaction = self.layer.send(request, ("192.0.2.2", 5060), self.user)
        ok = response_to(request, 200, to_tag="y")
        self.layer.response_received(ok)
        self.assertIs(transaction.state, State.ACCEPTED)
        self.layer.response_received(ok)
        self.assertEqual(self.user.responses, [200, 200])
        self.assertEqual(self.wire.times(b"ACK"), [])  # the core ACKs a 2xx

    def test_invite_server_g_h_and_ack(self) -> None:
        """IST: 100 at once; a 486 repeated on G (T1 doubling to T2) until the ACK; I (T4) then ends it."""
        request = _request("INVITE")
        server = self.layer.request_received(request, ("192.0.2.1", 5060))
        assert server is not None
        self.assertEqual(self.wire.times(b"SIP/2.0 100"), [0.0])
        self.assertIsNone(self.layer.request_received(request, ("192.0.2.1", 5060)))  # a repeat: 100 again
        self.assertEqual(self.wire.times(b"SIP/2.0 100"), [0.0, 0.0])
        server.respond(response_to(request, 486, to_tag="z"))
        run_timers(self.clock, until=8)
        self.assertEqual(self.wire.times(b"SIP/2.0 486"), [0.0, 0.5, 1.5, 3.5, 7.5])
        ack = replace(request, method="ACK", cseq=CSeq(1, "ACK"))
        self.assertTrue(self.layer.ack_received(ack))
        self.assertIs(server.state, State.CONFIRMED)
        run_timers(self.clock, until=20)
        self.assertEqual(self.wire.times(b"SIP/2.0 486")[-1], 7.5)

    def test_invite_server_h_without_ack(self) -> None:
        """No ACK: H (64*T1) ends the transaction and tells whoever asked."""
        request = _request("INVITE")
        server = self.layer.request_received(request, ("192.0.2.1", 5060))
        assert server is not None
        lost: list[bool] = []
        server.on_no_ack = lambda: lost.append(True)
        server.respond(response_to(request, 603, to_tag="z"))
        run_timers(self.clock, until=32.1)
        self.assertEqual(lost, [True])
        self.assertEqual(self.layer.servers, {})

    def test_non_invite_server_j_and_cancel_match(self) -> None:
        """NIST: repeats get the final answer again until J; a CANCEL finds its INVITE by branch; a 2xx's ACK is the core's."""
        invite = _request("INVITE", branch="z9hG4bKinv")
        server = self.layer.request_received(invite, ("192.0.2.1", 5060))
        cancel = replace(invite, method="CANCEL", cseq=CSeq(1, "CANCEL"))
        self.assertIs(self.layer.invite_for(cancel), server)
        bye = _request("BYE", branch="z9hG4bKbye")
        nist = self.layer.request_received(bye, ("192.0.2.1", 5060))
        assert nist is not None and server is not None
        nist.respond(response_to(bye, 200))
        self.layer.request_received(bye, ("192.0.2.1", 5060))
        self.assertEqual(len(self.wire.times(b"SIP/2.0 200")), 2)
        server.respond(response_to(invite, 200, to_tag="q"))
        ack = replace(invite, method="ACK", cseq=CSeq(1, "ACK"), via=(replace(invite.via[0], params=(("branch", "z9hG4bKack"),)),))
        self.assertFalse(self.layer.ack_received(ack))

    def test_responses_go_where_via_says(self) -> None:
        """§18.2.2 and RFC 3581: to received and rport when present, else Via's host and port."""
        from mgcpswitch.sip.transaction import response_destination

        request = _request("OPTIONS")
        self.assertEqual(response_destination(request, ("198.51.100.1", 7)), ("192.0.2.1", 5060))
        natted = replace(request, via=(request.via[0].with_params(received="198.51.100.1", rport="40000"),))
        self.assertEqual(response_destination(natted, ("198.51.100.1", 40000)), ("198.51.100.1", 40000))

    def test_timer_values_are_checked(self) -> None:
        """T1 above T2 (or not positive) is refused where the timers are made."""
        self.assertRaises(ValueError, SipTimers, t1=5.0, t2=4.0)
        self.assertRaises(ValueError, SipTimers, t1=0.0)


class PureCore(SynchronousTestCase):
    def test_no_twisted_in_the_sip_core(self) -> None:
        """Importing mgcpswitch.sip (message, uri, headers, sdp, digest) loads no Twisted and no socket module."""
        probe = (
            "import json, sys, mgcpswitch.sip, mgcpswitch.sip.message, mgcpswitch.sip.sdp, mgcpswitch.sip.digest\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('twisted', 'zope', 'socket', 'asyncio'))))"
        )
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60,
                                check=True)
        self.assertEqual(json.loads(result.stdout), [])
