"""
The SIP trunk on an in-memory network under one Clock: two trunks calling
each other, or a trunk against a scripted peer (tests.support.sip.RawPeer).
Every test ends with L{settle}: the clock is run until no timer is left,
and no channel, dialog or transaction remains on either side.
"""

from __future__ import annotations

from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mgcpswitch.config import parse_settings
from mgcpswitch.interfaces import IIncomingCall, IOutgoingCall, ITrunk, ITrunkFactory
from mgcpswitch.plugin import PluginContext, available, build_trunks
from mgcpswitch.sip import CSeq, NameAddress, Request, SipUri, authorization, decode, parse_challenge
from mgcpswitch.sip.trunk import IncomingCall, SipTrunk
from mgcpswitch.testing import MemoryReactor, run_timers
from mgcpswitch.trunk import RegistrationState, TrunkState
from tests.support.sip import RawPeer, Recorder, line_sdp, settings, settle, trunk_pair


class Answering:
    """An incoming handler: ring, then answer after C{delay} (or do C{then} instead)."""

    def __init__(self, reactor: MemoryReactor, delay: float = 1.0, then: str = "answer", code: int = 486) -> None:
        self.reactor = reactor
        self.delay = delay
        self.then = then
        self.code = code
        self.calls: list[IncomingCall] = []
        self.listener = Recorder()

    def __call__(self, call: IncomingCall) -> None:
        self.calls.append(call)
        call.listener = self.listener
        call.ringing()
        if self.then == "answer":
            self.reactor.callLater(self.delay, call.answer, line_sdp(6000))
        elif self.then == "reject":
            self.reactor.callLater(self.delay, call.reject, self.code)


class Calls(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.net = self.reactor.network

    def pair(self, then: str = "answer", **kwargs: object) -> tuple[SipTrunk, SipTrunk, Answering]:
        handler = Answering(self.reactor, then=then, **kwargs)  # type: ignore[arg-type]
        a, b = trunk_pair(self.reactor, incoming_b=handler)
        return a, b, handler

    def test_call_answered_then_hung_up(self) -> None:
        """Ringing, answered with B's SDP (its port), hung up by A: B hears ended; the call and interfaces check."""
        a, b, handler = self.pair()
        listener = Recorder()
        call = a.call("2001", line_sdp(4000), listener, caller="1001")
        verifyObject(IOutgoingCall, call)
        verifyObject(ITrunk, a)
        self.net.run(2)
        self.assertEqual(listener.kinds(), [("progress", 180), "answered"])
        self.assertEqual(listener.events[1][1].rtp_address, ("127.0.0.1", 6000))
        incoming = handler.calls[0]
        verifyObject(IIncomingCall, incoming)
        self.assertEqual((incoming.number, incoming.caller, incoming.offer_sdp.audio.port), ("2001", "1001", 4000))
        self.assertEqual(a.view().channels_in_use, 1)
        call.hang_up()
        self.net.run(1)
        self.assertEqual(handler.listener.events, [("ended", "far end hung up")])
        self.assertEqual(listener.kinds(), [("progress", 180), "answered"])
        self.assertEqual((a.view().statuses, b.view().statuses), ({"out 200": 1}, {"in 200": 1}))
        settle(self.reactor, a, b)

    def test_listener_hangs_up_inside_answered(self) -> None:
        """A listener may hang up from inside answered(): the trunk's state is already the call's."""
        a, b, handler = self.pair()

        class HangsUp(Recorder):
            def answered(self, sdp: object) -> None:
                super().answered(sdp)  # type: ignore[arg-type]
                call.hang_up()

        listener = HangsUp()
        call = a.call("2001", line_sdp(), listener)
        self.net.run(2)
        self.assertEqual(handler.listener.events, [("ended", "far end hung up")])
        settle(self.reactor, a, b)

    def test_callee_hangs_up_before_the_ack(self) -> None:
        """§15: B hangs up between its 200 and the ACK: the BYE waits for the ACK, then goes."""
        a, b, handler = self.pair(delay=0)
        self.net.latency = 0.05
        listener = Recorder()
        a.call("2001", line_sdp(), listener)
        while not handler.calls or b.view().answered_in == 0:
            self.reactor.advance(0.01)
        handler.calls[0].hang_up()
        self.assertEqual([m for m in self.net.messages(source=("127.0.0.1", 5070)) if m.startswith(b"BYE")], [])
        self.net.run(1)
        self.assertEqual(listener.kinds(), [("progress", 180), "answered", ("ended", "far end hung up")])
        settle(self.reactor, a, b)

    def test_far_end_hangs_up(self) -> None:
        """B hangs up an answered call: A's listener is told ended."""
        a, b, handler = self.pair()
        listener = Recorder()
        a.call("2001", line_sdp(), listener)
        self.net.run(2)
        handler.calls[0].hang_up()
        self.net.run(1)
        self.assertEqual(listener.events[-1], ("ended", "far end hung up"))
        settle(self.reactor, a, b)

    def test_busy(self) -> None:
        """B rejects 486: A fails with 486; the ACK of the non-2xx comes from A's transaction."""
        a, b, _ = self.pair(then="reject", code=486)
        listener = Recorder()
        a.call("2001", line_sdp(), listener)
        self.net.run(2)
        self.assertEqual(listener.kinds(), [("progress", 180), ("failed", 486)])
        self.assertEqual(len([m for m in self.net.messages() if m.startswith(b"ACK")]), 1)
        settle(self.reactor, a, b)

    def test_caller_cancels(self) -> None:
        """A cancels while B rings: CANCEL, 487, B's listener is told cancelled, A's nothing more."""
        a, b, handler = self.pair(delay=10)
        listener = Recorder()
        call = a.call("2001", line_sdp(), listener)
        self.net.run(1)
        call.cancel()
        self.net.run(1)
        self.assertEqual(handler.listener.events, [("cancelled",)])
        self.assertEqual(listener.kinds(), [("progress", 180)])
        self.assertEqual(b.view().statuses, {"in 487": 1})
        settle(self.reactor, a, b)

    def test_no_answer(self) -> None:
        """Nobody answers within ring_timeout: A fails 408 and CANCELs; B's call is cancelled."""
        handler = Answering(self.reactor, then="nothing")
        a, b = trunk_pair(self.reactor, a={"ring_timeout": 20.0}, incoming_b=handler)
        listener = Recorder()
        a.call("2001", line_sdp(), listener)
        self.net.run(21)
        self.assertEqual(listener.kinds(), [("progress", 180), ("failed", 408)])
        self.assertEqual(handler.listener.events, [("cancelled",)])
        settle(self.reactor, a, b)

    def test_lost_200_and_lost_ack(self) -> None:
        """The first 200 and the first ACK are lost: B sends its 200 again (T1), A ACKs each; the call connects."""
        a, b, handler = self.pair()
        self.net.drop_next(lambda data: data.startswith(b"SIP/2.0 200") and b"INVITE" in data.split(b"\r\n\r\n")[0])
        self.net.drop_next(lambda data: data.startswith(b"ACK"))
        listener = Recorder()
        a.call("2001", line_sdp(), listener)
        self.net.run(4)
        self.assertEqual(listener.kinds(), [("progress", 180), "answered"])
        self.assertGreaterEqual(b.view().messages["retransmissions"], 2)
        self.assertEqual(handler.listener.events, [])
        handler.calls[0].hang_up()
        self.net.run(1)
        settle(self.reactor, a, b)

    def test_no_ack(self) -> None:
        """No ACK ever reaches B: after 64*T1 B sends BYE and tells its listener; A hears ended."""
        a, b, handler = self.pair()
        self.net.drop_next(lambda data: data.startswith(b"ACK"), count=1000)
        listener = Recorder()
        a.call("2001", line_sdp(), listener)
        self.net.run(40)
        self.assertEqual(handler.listener.events, [("ended", "no ACK from the caller")])
        self.assertEqual(listener.events[-1], ("ended", "no ACK"))
        settle(self.reactor, a, b)

    def test_channel_limits(self) -> None:
        """Beyond max_channels: an outgoing call fails 503 on a later turn; an incoming one is refused 503."""
        handler = Answering(self.reactor)
        a, b = trunk_pair(self.reactor, a={"max_channels": 2}, b={"max_channels": 1}, incoming_b=handler)
        first, second, third = Recorder(), Recorder(), Recorder()
        a.call("2001", line_sdp(), first)
        a.call("2002", line_sdp(), second)
        a.call("2003", line_sdp(), third)
        self.assertEqual(third.events, [])
        self.net.run(2)
        self.assertEqual(third.events, [("failed", 503, "every channel of the trunk is busy")])
        self.assertEqual(second.kinds(), [("failed", 503)])
        self.assertEqual(first.kinds(), [("progress", 180), "answered"])
        self.assertEqual((a.view().refused_full, b.view().refused_full), (1, 1))
        handler.calls[0].hang_up()
        self.net.run(1)
        settle(self.reactor, a, b)

    def test_no_common_codec(self) -> None:
        """The line offers only codecs the trunk refuses: 488 on a later turn, nothing sent."""
        a, b = trunk_pair(self.reactor, a={"codecs": ("G729",)})
        listener = Recorder()
        a.call("2001", line_sdp(), listener)
        self.reactor.advance(0)
        self.assertEqual(listener.kinds(), [("failed", 488)])
        self.assertEqual(self.net.messages(), [])
        settle(self.reactor, a, b)


class AgainstAScriptedPeer(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.net = self.reactor.network
        self.peer = RawPeer(self.reactor)

    def trunk(self, **values: object) -> SipTrunk:
        import random

        trunk = SipTrunk(settings("a", 5060, 5070, **values), self.reactor, lambda call: None, rng=random.Random(3))
        trunk.startService()
        return trunk

    def test_invite_retransmitted_on_timer_a_until_timer_b(self) -> None:
        """A silent peer: the same INVITE at 0, 0.5, 1.5, 3.5, ... (A doubling), then 408 at 64*T1."""
        trunk = self.trunk()
        listener = Recorder()
        trunk.call("2001", line_sdp(), listener)
        run_timers(self.reactor, until=31.9)
        self.assertEqual(listener.events, [])
        run_timers(self.reactor, until=32.1)
        self.assertEqual(listener.events, [("failed", 408, "no response from the peer")])
        times = [round(d.time, 2) for d in self.net.log if d.data.startswith(b"INVITE")]
        self.assertEqual(times, [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5])
        self.assertEqual(len({d.data for d in self.net.log if d.data.startswith(b"INVITE")}), 1)
        settle(self.reactor, trunk)

    def test_digest_challenge(self) -> None:
        """A 401 with SHA-256 first: the INVITE again, CSeq 2, same Call-ID, with the RFC 8760 credentials; then 200."""
        trunk = self.trunk(username="alice", password="s3cret")
        challenge_value = 'Digest realm="sip.example", nonce="n0nce", algorithm=SHA-256, qop="auth"'

        def answer(message: object, source: tuple[str, int]) -> None:
            if isinstance(message, Request) and message.method == "INVITE":
                if message.cseq.seq == 1:
                    self.peer.reply(message, 401, to_tag="p1", headers=(
                        ("WWW-Authenticate", challenge_value),
                        ("WWW-Authenticate", 'Digest realm="sip.example", nonce="n0nce", algorithm=MD5'),
                    ))
                else:
                    self.peer.reply(message, 200, to_tag="p2", contact=(NameAddress(SipUri(host="127.0.0.1", port=5070)),),
                                    headers=(("Content-Type", "application/sdp"),), body=str(line_sdp(7000)).encode())

        self.peer.on_message = answer
        listener = Recorder()
        trunk.call("2001", line_sdp(), listener)
        self.net.run(1)
        first, second = self.peer.messages("INVITE")
        self.assertEqual((second.cseq.seq, second.call_id, second.from_), (2, first.call_id, first.from_))
        sent = second.header("Authorization")
        expected = authorization(parse_challenge(challenge_value), method="INVITE", uri=str(second.uri),  # type: ignore[arg-type]
                                 username="alice", password="s3cret", cnonce=sent.split('cnonce="')[1].split('"')[0])
        self.assertEqual(sent, expected)
        self.assertIn("algorithm=SHA-256", sent)
        self.assertEqual(listener.kinds(), ["answered"])
        self.assertEqual(len(self.peer.messages("ACK")), 2)  # the 401's, then the 200's
        trunk.stopService()
        settle(self.reactor, trunk)

    def test_wrong_password_fails(self) -> None:
        """A second challenge for the same nonce: the trunk gives up with the 401."""
        trunk = self.trunk(username="alice", password="wrong")
        self.peer.on_message = lambda m, s: (
            self.peer.reply(m, 401, to_tag="x", headers=(("WWW-Authenticate", 'Digest realm="r", nonce="same"'),))
            if isinstance(m, Request) and m.method == "INVITE" else None)
        listener = Recorder()
        trunk.call("2001", line_sdp(), listener)
        self.net.run(1)
        self.assertEqual(listener.kinds(), [("failed", 401)])
        self.assertEqual(len(self.peer.messages("INVITE")), 2)
        settle(self.reactor, trunk)

    def test_cancel_waits_for_a_provisional(self) -> None:
        """§9.1: cancel() before any provisional sends no CANCEL; it goes when the 180 arrives, then 487."""
        trunk = self.trunk()
        listener = Recorder()
        call = trunk.call("2001", line_sdp(), listener)
        self.net.run(0.1)
        call.cancel()
        self.net.run(0.1)
        self.assertEqual(self.peer.messages("CANCEL"), [])
        invite = self.peer.messages("INVITE")[0]
        self.peer.reply(invite, 180, to_tag="r")
        self.net.run(0.1)
        [cancel] = self.peer.messages("CANCEL")
        self.assertEqual((cancel.branch, cancel.cseq), (invite.branch, CSeq(1, "CANCEL")))
        self.peer.reply(cancel, 200)
        self.peer.reply(invite, 487, to_tag="r")
        self.net.run(1)
        self.assertEqual(listener.events, [])
        settle(self.reactor, trunk)

    def test_cancelled_invite_never_answered_is_given_up(self) -> None:
        """§9.1: the CANCEL is answered but the INVITE never is: 64*T1 later the call is gone, nothing told."""
        trunk = self.trunk()
        listener = Recorder()
        call = trunk.call("2001", line_sdp(), listener)
        self.net.run(0.1)
        invite = self.peer.messages("INVITE")[0]
        self.peer.reply(invite, 180, to_tag="r")
        self.net.run(0.1)
        call.cancel()
        self.net.run(0.1)
        [cancel] = self.peer.messages("CANCEL")
        self.peer.reply(cancel, 200)
        run_timers(self.reactor, until=31)
        self.assertEqual(trunk.view().channels_in_use, 1)
        run_timers(self.reactor, until=33)
        self.assertEqual(trunk.view().channels_in_use, 0)
        self.assertEqual(listener.kinds(), [("progress", 180)])
        self.assertEqual(trunk.view().statuses, {"out 487": 1})
        settle(self.reactor, trunk)

    def test_forked_second_200_is_acked_and_ended(self) -> None:
        """Two 2xx with different tags (a fork): the first connects, the second is ACKed then BYEd (§13.2.2.4)."""
        trunk = self.trunk()
        listener = Recorder()
        trunk.call("2001", line_sdp(), listener)
        self.net.run(0.1)
        invite = self.peer.messages("INVITE")[0]
        body = str(line_sdp(7000)).encode()
        for tag in ("one", "two"):
            self.peer.reply(invite, 200, to_tag=tag, headers=(("Content-Type", "application/sdp"),), body=body)
        self.net.run(0.1)
        self.assertEqual(listener.kinds(), ["answered"])
        self.assertEqual([m.to.tag for m in self.peer.messages("ACK")], ["one", "two"])
        [bye] = self.peer.messages("BYE")
        self.assertEqual(bye.to.tag, "two")
        self.peer.reply(bye, 200)
        trunk.stopService()
        settle(self.reactor, trunk)

    def test_reinvite_moves_media(self) -> None:
        """The peer re-INVITEs with a new port: 200 with our answer (version raised only if it changed); media_changed."""
        trunk = self.trunk()
        listener = Recorder()
        trunk.call("2001", line_sdp(), listener)
        self.net.run(0.1)
        invite = self.peer.messages("INVITE")[0]
        contact = (NameAddress(SipUri(host="127.0.0.1", port=5070)),)
        sdp = ("Content-Type", "application/sdp")
        ok = self.peer.reply(invite, 200, to_tag="t", contact=contact, headers=(sdp,), body=str(line_sdp(7000)).encode())
        self.net.run(0.1)
        reinvite = Request(method="INVITE", uri=invite.contact[0].uri, via=(replace(invite.via[0], host="127.0.0.1", port=5070, params=(("branch", "z9hG4bKre"),)),),
                           from_=ok.to, to=invite.from_, call_id=invite.call_id, cseq=CSeq(1, "INVITE"),
                           contact=contact, headers=(sdp,), body=str(line_sdp(7002)).encode())
        self.peer.send(reinvite)
        self.net.run(0.1)
        self.assertEqual(listener.events[-1][0], "media_changed")
        self.assertEqual(listener.events[-1][1].rtp_address, ("127.0.0.1", 7002))
        answer = [m for m in self.peer.messages("response") if m.cseq.method == "INVITE" and m.code == 200][-1]
        self.assertEqual(decode(b"x") is not None, True)
        self.assertIn(b"m=audio 4000", answer.body)
        trunk.stopService()
        settle(self.reactor, trunk)

    def test_keepalive_marks_up_and_down(self) -> None:
        """OPTIONS every interval: a response marks the trunk up; silence (Timer F) down, and calls then fail 503."""
        trunk = self.trunk(keepalive_interval=10.0)
        self.peer.on_message = lambda m, s: self.peer.reply(m, 200) if getattr(m, "method", "") == "OPTIONS" else None
        self.net.run(0.1)
        self.assertEqual(trunk.view().state, TrunkState.UP)
        self.peer.on_message = None
        self.net.run(45, step=0.5)
        self.assertEqual(trunk.view().state, TrunkState.DOWN)
        listener = Recorder()
        trunk.call("2001", line_sdp(), listener)
        self.reactor.advance(0)
        self.assertEqual(listener.events, [("failed", 503, "the trunk is down")])
        trunk.stopService()
        settle(self.reactor, trunk)

    def test_registration_with_digest_and_refresh(self) -> None:
        """REGISTER, 401, again with credentials, 200 granting 120 s: refreshed at 60 s; stopping unregisters."""
        trunk = self.trunk(registrar=("127.0.0.1", 5070), username="bob", password="pw", register_expiry=3600)

        def registrar(message: object, source: tuple[str, int]) -> None:
            if isinstance(message, Request) and message.method == "REGISTER":
                if message.header("Authorization") is None:
                    self.peer.reply(message, 401, to_tag="r", headers=(("WWW-Authenticate", 'Digest realm="r", nonce="x1", qop="auth"'),))
                else:
                    contact = replace(message.contact[0], params=(("expires", "120"),))
                    self.peer.reply(message, 200, to_tag="r", contact=(contact,))

        self.peer.on_message = registrar
        self.net.run(1)
        self.assertEqual(trunk.view().registration, RegistrationState.REGISTERED)
        self.assertEqual(len(self.peer.messages("REGISTER")), 2)
        self.net.run(60, step=1)
        registers = self.peer.messages("REGISTER")
        self.assertEqual(len(registers), 4)  # the refresh, challenged again
        self.assertEqual({r.call_id for r in registers}, {registers[0].call_id})
        self.assertEqual([r.cseq.seq for r in registers], [1, 2, 3, 4])
        trunk.stopService()
        self.net.pump()
        self.assertEqual(self.peer.messages("REGISTER")[-1].header("Expires"), "0")
        settle(self.reactor, trunk)


class Refusals(SynchronousTestCase):
    """What the trunk answers to requests it will not take."""

    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.net = self.reactor.network
        self.peer = RawPeer(self.reactor)
        import random

        self.offered: list[IncomingCall] = []
        self.trunk = SipTrunk(settings("a", 5060, 5070, codecs=("PCMU",)), self.reactor, self.offered.append,
                              rng=random.Random(4))
        self.trunk.startService()

    def status(self, request: Request) -> int:
        self.peer.send(request)
        self.net.run(0.1)
        mine = [m for m in self.peer.messages("response") if m.branch == request.branch]
        return mine[-1].code  # type: ignore[no-any-return]

    def invite(self, **changes: object) -> Request:
        sdp = str(line_sdp(7000)).encode()
        request = Request(
            method="INVITE", uri=SipUri(host="127.0.0.1", user="2001", port=5060),
            via=(decode(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK%d\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n" % len(self.peer.received)).via[0],),  # type: ignore[union-attr]
            from_=NameAddress(SipUri(host="127.0.0.1", user="555")).with_tag("f"), to=NameAddress(SipUri(host="127.0.0.1", user="2001")),
            call_id=f"c{len(self.peer.received)}", cseq=CSeq(1, "INVITE"), max_forwards=70,
            contact=(NameAddress(SipUri(host="127.0.0.1", port=5070)),), headers=(("Content-Type", "application/sdp"),), body=sdp,
        )
        return replace(request, **changes)  # type: ignore[arg-type]

    def test_refusals(self) -> None:
        """416 tel:, 415 a body not SDP, 400 a broken SDP, 488 no codec, 420 Require, 483 Max-Forwards 0, 481, 405, 501."""
        self.assertEqual(self.status(self.invite(uri=decode(b"INVITE tel:+1 SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n").uri)), 416)  # type: ignore[union-attr]
        self.assertEqual(self.status(self.invite(headers=(("Content-Type", "text/plain"),))), 415)
        self.assertEqual(self.status(self.invite(body=b"v=1\r\n")), 400)
        self.assertEqual(self.status(self.invite(body=str(line_sdp(7000, pts=(8,))).encode())), 488)
        self.assertEqual(self.status(self.invite(headers=(("Content-Type", "application/sdp"), ("Require", "100rel")))), 420)
        self.assertEqual(self.status(self.invite(max_forwards=0)), 483)
        self.assertEqual(self.status(self.invite(method="BYE", cseq=CSeq(2, "BYE"))), 481)
        self.assertEqual(self.status(self.invite(method="SUBSCRIBE", cseq=CSeq(2, "SUBSCRIBE"))), 405)
        self.assertEqual(self.status(self.invite(method="FROB", cseq=CSeq(2, "FROB"))), 501)
        self.assertEqual(self.status(self.invite(method="OPTIONS", cseq=CSeq(2, "OPTIONS"))), 200)
        self.assertEqual(self.offered, [])
        self.assertEqual(self.status(self.invite()), 100)  # offered to call control, which does nothing
        self.assertEqual(self.offered[0].number, "2001")
        self.offered[0].reject(404)
        self.net.run(0.1)
        self.assertIn(404, [m.code for m in self.peer.messages("response")])
        self.trunk.stopService()
        settle(self.reactor, self.trunk)

    def test_malformed_request_answered_400(self) -> None:
        """A request with a broken CSeq is answered 400 by the user agent, copying its Via and Call-ID."""
        self.peer.port.write(b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKm\r\n"
                             b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: m1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: x\r\n\r\n",
                             ("127.0.0.1", 5060))
        self.net.run(0.1)
        [answer] = self.peer.messages("response")
        self.assertEqual((answer.code, answer.call_id), (400, "m1"))
        self.assertEqual(self.trunk.view().messages["malformed"], 1)

    def test_source_not_allowed(self) -> None:
        """An INVITE from an address the trunk does not allow is refused 403."""
        self.trunk.allowed = ()
        self.assertEqual(self.status(self.invite()), 403)
        self.assertEqual(self.offered, [])


class Configuration(SynchronousTestCase):
    def test_plugin_and_config(self) -> None:
        """[trunk:NAME] is read into TrunkSettings; the sip kind is a discovered plugin that builds an ITrunk."""
        settings_ = parse_settings("[trunk:provider]\naddress = 127.0.0.1\nport = 5070\nlocal_port = 0\n"
                                   "outgoing_strip = 1\noutgoing_prefix = +44\n")
        [trunk_settings] = settings_.trunks
        self.assertEqual(trunk_settings.rewrite_out("901234"), "+4401234")
        factory = available(ITrunkFactory)["sip"]
        verifyObject(ITrunkFactory, factory)
        reactor = MemoryReactor()
        trunks = build_trunks(settings_, PluginContext(reactor=reactor, settings=settings_), lambda name, call: None)
        verifyObject(ITrunk, trunks["provider"])
        self.assertEqual(trunks["provider"].view().to_json()["peer"], "127.0.0.1:5070")

    def test_unknown_kind(self) -> None:
        """A kind no plugin provides is an error naming the section and key."""
        from mgcpswitch.errors import ConfigError

        settings_ = parse_settings("[trunk:x]\naddress = 127.0.0.1\nkind = h323\n")
        error = self.assertRaises(ConfigError, build_trunks, settings_, PluginContext(reactor=MemoryReactor()), print)
        self.assertIn("trunk:x", str(error))
        self.assertIn("kind", str(error))


class ConfigurationErrors(SynchronousTestCase):
    def test_mistakes_name_section_and_key(self) -> None:
        """Each mistake in a [trunk:NAME] section is one error naming the section and the key to fix."""
        from mgcpswitch.errors import ConfigError

        cases = {
            "[trunk:p]\nport = 5070\n": ("[trunk:p] address", "required"),
            "[trunk:p]\naddress = 127.0.0.1\ntransport = tcp\n": ("[trunk:p] transport", "only udp"),
            "[trunk:p]\naddress = 127.0.0.1\ncolour = red\n": ("[trunk:p] colour", "unknown key"),
            "[trunk:p]\naddress = 127.0.0.1\npassword = x\n": ("[trunk:p] username", "needs a username"),
            "[trunk:p]\naddress = 127.0.0.1\nregistrar = 127.0.0.1:99999\n": ("[trunk:p] registrar", "65535"),
            "[trunk:p]\naddress = peer.example\n": ("[trunk:p] address", "not an IP address"),
            "[trunk:p]\naddress = 127.0.0.1\noutgoing_prefix = 9#\n": ("[trunk:p] outgoing_prefix", "digits"),
            "[trunk:p]\naddress = 127.0.0.1\nlocal_port = 2727\n": ("[trunk:p] local_port", "MGCP port"),
            "[trunk:p]\naddress = 127.0.0.1\n[trunk:q]\naddress = 127.0.0.2\n": ("[trunk:q] local_port", "already"),
            "[trunk:a b]\naddress = 127.0.0.1\n": ("[trunk:a b]", "not a trunk name"),
        }
        for text, (where, what) in cases.items():
            error = self.assertRaises(ConfigError, parse_settings, text)
            self.assertIn(where, str(error), text)
            self.assertIn(what, str(error), text)
