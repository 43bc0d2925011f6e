"""
Our re-INVITEs: C{update(sdp)} on answered calls both ways (RFC 3261
§14, RFC 3264 §8), on the memory network under one Clock, between two
trunks or against a scripted peer (tests.support.sip.RawPeer).  Every
test ends with L{settle}: no timer, channel, dialog or transaction left.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.mgcp import SessionDescription
from mgcpswitch.sip import CSeq, NameAddress, Request, Response, SipUri, authorization, parse_challenge
from mgcpswitch.sip.reinvite import MAX_GLARE_RETRIES
from mgcpswitch.sip.trunk import IncomingCall, SipTrunk
from mgcpswitch.testing import MemoryReactor, run_timers
from mgcpswitch.trunk import TrunkCallError
from tests.support.sip import RawPeer, Recorder, line_sdp, settings, settle, trunk_pair

SDP = ("Content-Type", "application/sdp")
PEER_CONTACT = (NameAddress(SipUri(host="127.0.0.1", port=5070)),)


def version(sdp: SessionDescription | bytes) -> int:
    """The o= line's version."""
    if isinstance(sdp, bytes):
        sdp = SessionDescription.parse(sdp.decode())
    assert sdp.origin is not None
    return int(sdp.origin.version)


def direction(sdp: SessionDescription | bytes) -> str | None:
    if isinstance(sdp, bytes):
        sdp = SessionDescription.parse(sdp.decode())
    assert sdp.audio is not None
    return sdp.audio.direction


def failed(case: SynchronousTestCase, deferred: Any, code: int, ended: bool) -> TrunkCallError:
    """The TrunkCallError C{deferred} failed with, checked to be C{code} and C{ended}."""
    error = case.failureResultOf(deferred, TrunkCallError).value
    case.assertEqual((error.code, error.ended), (code, ended), str(error))
    return error  # type: ignore[no-any-return]


class Answering:
    """An incoming handler that answers at once with a line on port 6000."""

    def __init__(self) -> None:
        self.calls: list[IncomingCall] = []
        self.listener = Recorder()

    def __call__(self, call: IncomingCall) -> None:
        self.calls.append(call)
        call.listener = self.listener
        call.answer(line_sdp(6000))


class BetweenTrunks(SynchronousTestCase):
    """A (5060) calls B (5070), B answers; then either side updates."""

    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.net = self.reactor.network
        self.handler = Answering()
        self.a, self.b = trunk_pair(self.reactor, incoming_b=self.handler)
        self.listener = Recorder()
        self.call = self.a.call("2001", line_sdp(4000), self.listener)
        self.net.run(1)
        self.assertEqual(self.listener.kinds(), ["answered"])
        self.incoming = self.handler.calls[0]

    def invites(self, source: int) -> list[bytes]:
        return [m for m in self.net.messages(source=("127.0.0.1", source)) if m.startswith(b"INVITE")]

    def body(self, message: bytes) -> bytes:
        return message.split(b"\r\n\r\n", 1)[1]

    def hang_up(self) -> None:
        self.call.hang_up()
        self.net.run(1)
        settle(self.reactor, self.a, self.b)

    def test_hold_and_resume_from_the_caller(self) -> None:
        """update(sendonly) holds: B answers recvonly and hears media_changed; resume goes back to sendrecv; o= rises 1, 2, 3."""
        held = self.call.update(line_sdp(4000, direction="sendonly"))
        self.net.run(1)
        answer = self.successResultOf(held)
        self.assertEqual((direction(answer), answer.rtp_address), ("recvonly", ("127.0.0.1", 6000)))
        self.assertEqual(self.handler.listener.kinds(), ["media_changed"])
        self.assertEqual(direction(self.handler.listener.events[0][1]), "sendonly")
        resumed = self.call.update(line_sdp(4000))
        self.net.run(1)
        self.assertEqual(direction(self.successResultOf(resumed)), "sendrecv")
        first, hold, resume = self.invites(5060)
        self.assertEqual([version(self.body(m)) for m in (first, hold, resume)], [1, 2, 3])
        self.assertIn(b"CSeq: 2 INVITE", hold)
        self.assertIn(b"a=sendonly", self.body(hold))
        self.assertEqual(self.listener.kinds(), ["answered"])  # our own update is no media_changed
        self.hang_up()

    def test_same_sdp_keeps_the_version(self) -> None:
        """§8: an offer that changes nothing keeps the o= version."""
        same = self.call.update(line_sdp(4000))
        self.net.run(1)
        self.successResultOf(same)
        self.assertEqual([version(self.body(m)) for m in self.invites(5060)], [1, 1])
        self.hang_up()

    def test_update_from_the_callee(self) -> None:
        """The incoming side moves its line (a transfer): A hears media_changed with the new port; B gets A's answer."""
        moved = self.incoming.update(line_sdp(6100))
        self.net.run(1)
        answer = self.successResultOf(moved)
        self.assertEqual(answer.rtp_address, ("127.0.0.1", 4000))
        self.assertEqual(self.listener.events[-1][0], "media_changed")
        self.assertEqual(self.listener.events[-1][1].rtp_address, ("127.0.0.1", 6100))
        [reinvite] = self.invites(5070)
        self.assertIn(b"CSeq: 1 INVITE", reinvite)  # the callee's own first request in the dialog
        self.hang_up()

    def test_updates_go_in_turn(self) -> None:
        """Two updates asked at once: the second re-INVITE goes only after the first is answered and ACKed."""
        self.net.latency = 0.01
        first = self.call.update(line_sdp(4000, direction="sendonly"))
        second = self.call.update(line_sdp(4002))
        self.net.run(0.015)
        self.assertEqual(len(self.invites(5060)), 2)  # the first INVITE and one re-INVITE
        self.net.run(1)
        self.assertEqual(direction(self.successResultOf(first)), "recvonly")
        self.assertEqual(direction(self.successResultOf(second)), "sendrecv")
        self.assertEqual(self.handler.listener.events[-1][1].rtp_address, ("127.0.0.1", 4002))
        self.hang_up()

    def test_glare_both_retry(self) -> None:
        """Both sides re-INVITE at once: each gets 491, B (not the Call-ID's owner) tries again first, then A."""
        self.net.latency = 0.01
        mine = self.call.update(line_sdp(4000, direction="sendonly"))
        theirs = self.incoming.update(line_sdp(6100))
        self.net.run(0.1)
        responses = [m for m in self.net.messages() if m.startswith(b"SIP/2.0 491")]
        self.assertEqual(len(responses), 2)
        self.assertNoResult(mine)
        self.assertNoResult(theirs)
        self.net.run(5)
        self.assertEqual(direction(self.successResultOf(mine)), "recvonly")
        self.assertEqual(self.successResultOf(theirs).rtp_address, ("127.0.0.1", 4000))
        a_sent, b_sent = self.invites(5060)[1:], self.invites(5070)
        times = {d.data: d.time for d in self.net.log}
        self.assertTrue(times[b_sent[1]] - times[b_sent[0]] <= 2.1, times[b_sent[1]])
        self.assertTrue(2.1 <= times[a_sent[1]] - times[a_sent[0]] <= 4.1, times[a_sent[1]])
        self.hang_up()

    def test_update_before_the_answer_and_after_the_end_fails_at_once(self) -> None:
        """Before the answer: 500 at once; after the end: 481 with ended; no codec: 488; nothing sent, nothing raised."""
        listener = Recorder()
        early = self.a.call("2002", line_sdp(4010), listener)
        failure = failed(self, early.update(line_sdp(4010)), 500, False)
        sent = len(self.net.log)
        failure = failed(self, self.call.update(line_sdp(4000, pts=(18,))), 488, False)
        self.assertEqual(len(self.net.log), sent)
        self.net.run(1)
        early.hang_up()
        self.call.hang_up()
        failure = failed(self, self.call.update(line_sdp(4000)), 481, True)
        self.net.run(1)
        failure = failed(self, self.incoming.update(line_sdp(4000)), 481, True)
        self.assertIn("ended", str(failure))
        settle(self.reactor, self.a, self.b)

    def test_lost_ack_is_sent_again(self) -> None:
        """Our ACK of the re-INVITE's 200 is lost: B sends its 200 again, we ACK it again."""
        self.net.drop_next(lambda data: data.startswith(b"ACK"))
        held = self.call.update(line_sdp(4000, direction="sendonly"))
        self.net.run(2)
        self.successResultOf(held)
        acks = [m for m in self.net.messages(source=("127.0.0.1", 5060)) if m.startswith(b"ACK")]
        self.assertEqual([a.split(b"CSeq: ")[1].split(b"\r\n")[0] for a in acks], [b"1 ACK", b"2 ACK"])
        self.assertEqual(self.handler.listener.kinds(), ["media_changed"])
        self.hang_up()


class CalleeUpdatesBeforeTheAck(SynchronousTestCase):
    def test_update_waits_for_the_ack(self) -> None:
        """§14.1: an update asked between B's 200 and A's ACK waits for the ACK, then goes."""
        reactor = MemoryReactor()
        net = reactor.network
        net.latency = 0.05
        updates: list[Any] = []

        def incoming(call: IncomingCall) -> None:
            call.answer(line_sdp(6000))
            updates.append(call.update(line_sdp(6100)))

        a, b = trunk_pair(reactor, incoming_b=incoming)
        listener = Recorder()
        call = a.call("2001", line_sdp(4000), listener)
        net.run(1)
        log = [(d.time, d.data.split(b" ", 1)[0]) for d in net.log if d.source == ("127.0.0.1", 5070)
               or d.data.startswith(b"ACK")]
        kinds = [kind for _, kind in log]
        self.assertLess(kinds.index(b"ACK"), kinds.index(b"INVITE"))
        self.assertEqual(self.successResultOf(updates[0]).rtp_address, ("127.0.0.1", 4000))
        self.assertEqual(listener.kinds(), ["answered", "media_changed"])
        call.hang_up()
        net.run(1)
        settle(reactor, a, b)


class AgainstAScriptedPeer(SynchronousTestCase):
    """The trunk's call answered by a RawPeer, which then answers our re-INVITEs as each test says."""

    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.net = self.reactor.network
        self.peer = RawPeer(self.reactor)

    def answered(self, **values: Any) -> tuple[Any, Recorder, SipTrunk]:
        trunk = SipTrunk(settings("a", 5060, 5070, **values), self.reactor, lambda call: None, rng=random.Random(3))
        trunk.startService()
        listener = Recorder()
        call = trunk.call("2001", line_sdp(), listener)
        self.net.run(0.1)
        invite = self.peer.messages("INVITE")[0]
        self.ok = self.peer.reply(invite, 200, to_tag="t", contact=PEER_CONTACT, headers=(SDP,),
                                  body=str(line_sdp(7000)).encode())
        self.net.run(0.1)
        self.assertEqual(listener.kinds(), ["answered"])
        return call, listener, trunk

    def reinvites(self) -> list[Request]:
        return [m for m in self.peer.messages("INVITE") if m.to.tag is not None]

    def answer(self, request: Request, code: int, sdp: SessionDescription | None = None, **kwargs: Any) -> Response:
        body = {"headers": (SDP,), "body": str(sdp).encode()} if sdp is not None else {}
        response = self.peer.reply(request, code, contact=PEER_CONTACT, **body, **kwargs)
        self.net.run(0.1)
        return response

    def bye_answered(self) -> None:
        """Answer our BYE, so the test can settle."""
        [bye] = self.peer.messages("BYE")
        self.peer.reply(bye, 200)

    def hang_up(self, call: Any, trunk: SipTrunk) -> None:
        """Our BYE, answered; then nothing may be left."""
        call.hang_up()
        self.net.run(0.1)
        self.bye_answered()
        settle(self.reactor, trunk)

    def test_refused_update_keeps_the_session(self) -> None:
        """488 to the re-INVITE: the Deferred fails 488, not ended; the next offer reuses the version (§14.1)."""
        call, listener, trunk = self.answered()
        refused = call.update(line_sdp(4002))
        self.net.run(0.1)
        self.answer(self.reinvites()[0], 488)
        failed(self, refused, 488, False)
        again = call.update(line_sdp(4004))
        self.net.run(0.1)
        first, second = self.reinvites()
        self.assertEqual((version(first.body), version(second.body)), (2, 2))
        self.assertEqual(second.cseq, CSeq(3, "INVITE"))
        self.answer(second, 200, line_sdp(7000))
        self.assertEqual(self.successResultOf(again).rtp_address, ("127.0.0.1", 7000))
        self.assertEqual(listener.kinds(), ["answered"])
        trunk.stopService()
        self.net.run(0.1)
        self.bye_answered()
        settle(self.reactor, trunk)

    def test_491_tried_again_then_given_up(self) -> None:
        """Every re-INVITE answered 491: tried again after 2.1-4 s (we own the Call-ID), then failed 491; the call goes on."""
        call, listener, trunk = self.answered()
        self.peer.on_message = lambda m, s: (
            self.peer.reply(m, 491) if isinstance(m, Request) and m.method == "INVITE" and m.to.tag else None)
        pending = call.update(line_sdp(4002))
        self.net.run(20, step=0.05)
        failed(self, pending, 491, False)
        sent = [d.time for d in self.net.log if d.data.startswith(b"INVITE") and b"tag=t" in d.data]
        self.assertEqual(len(sent), 1 + MAX_GLARE_RETRIES)
        for before, after in zip(sent, sent[1:]):
            self.assertTrue(2.1 <= after - before <= 4.0 + 0.1, sent)
        self.assertEqual(len({m.cseq.seq for m in self.reinvites()}), 1 + MAX_GLARE_RETRIES)
        self.assertEqual(trunk.view().channels_in_use, 1)
        self.assertEqual(listener.kinds(), ["answered"])
        self.hang_up(call, trunk)

    def test_481_ends_the_call_without_bye(self) -> None:
        """481 to the re-INVITE: the dialog is gone; the Deferred fails (ended), then the listener hears ended; no BYE."""
        call, listener, trunk = self.answered()
        lost = call.update(line_sdp(4002))
        self.net.run(0.1)
        order: list[str] = []
        lost.addErrback(lambda f: order.append(f"failed {f.value.code}"))
        original = listener.ended
        listener.ended = lambda reason: (order.append("ended"), original(reason))  # type: ignore[method-assign]
        self.answer(self.reinvites()[0], 481)
        self.assertEqual(order, ["failed 481", "ended"])
        self.assertEqual(self.peer.messages("BYE"), [])
        self.assertEqual(trunk.view().channels_in_use, 0)
        settle(self.reactor, trunk)

    def test_408_ends_the_call_with_bye(self) -> None:
        """408 to the re-INVITE: the Deferred fails 408 (ended), the listener hears ended, and a BYE goes."""
        call, listener, trunk = self.answered()
        lost = call.update(line_sdp(4002))
        self.net.run(0.1)
        self.answer(self.reinvites()[0], 408)
        failed(self, lost, 408, True)
        self.assertEqual(listener.events[-1][0], "ended")
        self.bye_answered()
        settle(self.reactor, trunk)

    def test_no_response_ends_the_call(self) -> None:
        """A silent peer: the re-INVITE is repeated on Timer A, then at Timer B the call ends (408, BYE)."""
        call, listener, trunk = self.answered()
        lost = call.update(line_sdp(4002))
        run_timers(self.reactor, until=self.reactor.seconds() + 31.9)
        self.assertNoResult(lost)
        self.assertEqual(len(self.reinvites()), 7)
        run_timers(self.reactor, until=self.reactor.seconds() + 0.2)
        failed(self, lost, 408, True)
        self.assertEqual(listener.events[-1][0], "ended")
        self.bye_answered()
        settle(self.reactor, trunk)

    def test_answer_with_a_wrong_direction_ends_the_call(self) -> None:
        """§6.1: sendrecv does not answer a sendonly offer: the 200 is ACKed, then BYE; the Deferred fails 488 (ended)."""
        call, listener, trunk = self.answered()
        held = call.update(line_sdp(4000, direction="sendonly"))
        self.net.run(0.1)
        self.answer(self.reinvites()[0], 200, line_sdp(7000, direction="sendrecv"))
        failure = failed(self, held, 488, True)
        self.assertIn("sendrecv does not answer sendonly", failure.reason)
        self.assertEqual(len(self.peer.messages("ACK")), 2)
        self.assertEqual(listener.events[-1][0], "ended")
        self.bye_answered()
        settle(self.reactor, trunk)

    def test_inactive_hold(self) -> None:
        """Hold as a=inactive: offered inactive, answered inactive, accepted; the 200's Contact becomes the target."""
        call, listener, trunk = self.answered()
        held = call.update(line_sdp(4000, direction="inactive"))
        self.net.run(0.1)
        reinvite = self.reinvites()[0]
        self.assertEqual(direction(reinvite.body), "inactive")
        moved = (NameAddress(SipUri(host="127.0.0.2", port=5070)),)
        self.peer.reply(reinvite, 200, contact=moved, headers=(SDP,), body=str(line_sdp(7000, direction="inactive")).encode())
        self.net.run(0.1)
        self.assertEqual(direction(self.successResultOf(held)), "inactive")
        [ack] = [m for m in self.net.log if m.data.startswith(b"ACK") and b"CSeq: 2 ACK" in m.data
                 and m.fate == "delivered"]
        self.assertEqual(ack.destination, ("127.0.0.2", 5070))  # §12.2.1.2: the 2xx refreshed the target
        self.assertEqual(ack.data.split(b" ")[1], b"sip:127.0.0.2:5070")
        self.peer.port.stopListening()
        call.hang_up()
        settle(self.reactor, trunk)

    def test_challenge_answered(self) -> None:
        """A 401 to the re-INVITE: sent again with credentials and the next CSeq; the 200 is the answer."""
        call, listener, trunk = self.answered(username="alice", password="s3cret")
        pending = call.update(line_sdp(4002))
        self.net.run(0.1)
        challenge = 'Digest realm="sip.example", nonce="re1", qop="auth"'
        self.answer(self.reinvites()[0], 401, headers=(("WWW-Authenticate", challenge),))
        first, second = self.reinvites()
        self.assertEqual((first.cseq.seq, second.cseq.seq), (2, 3))
        sent = second.header("Authorization")
        expected = authorization(parse_challenge(challenge), method="INVITE", uri=str(second.uri),  # type: ignore[arg-type]
                                 username="alice", password="s3cret", cnonce=sent.split('cnonce="')[1].split('"')[0])
        self.assertEqual(sent, expected)
        self.assertEqual(second.body, first.body)
        self.answer(second, 200, line_sdp(7002))
        self.assertEqual(self.successResultOf(pending).rtp_address, ("127.0.0.1", 7002))
        self.hang_up(call, trunk)

    def test_second_challenge_for_the_same_nonce_fails(self) -> None:
        """A wrong password: the second 401 for the same nonce fails the update with 401; the call goes on."""
        call, listener, trunk = self.answered(username="alice", password="wrong")
        pending = call.update(line_sdp(4002))
        challenge = (("WWW-Authenticate", 'Digest realm="r", nonce="same"'),)
        for _ in range(2):
            self.net.run(0.1)
            self.answer(self.reinvites()[-1], 401, headers=challenge)
        failed(self, pending, 401, False)
        self.assertEqual(len(self.reinvites()), 2)
        self.hang_up(call, trunk)

    def peer_reinvite(self, seq: int, sdp: SessionDescription) -> Request:
        """The peer's own re-INVITE in the dialog."""
        invite = self.peer.messages("INVITE")[0]
        via = replace(invite.via[0], host="127.0.0.1", port=5070, params=(("branch", f"z9hG4bKpeer{seq}"),))
        request = Request(method="INVITE", uri=invite.contact[0].uri, via=(via,), from_=self.ok.to, to=invite.from_,
                          call_id=invite.call_id, cseq=CSeq(seq, "INVITE"), contact=PEER_CONTACT, headers=(SDP,),
                          body=str(sdp).encode())
        self.peer.send(request)
        self.net.run(0.1)
        return request

    def test_peer_reinvite_while_ours_is_out_gets_491(self) -> None:
        """§14.2: the peer's re-INVITE while ours waits for its answer gets 491; ours then completes."""
        call, listener, trunk = self.answered()
        pending = call.update(line_sdp(4002))
        self.net.run(0.1)
        theirs = self.peer_reinvite(1, line_sdp(7004))
        [glare] = [m for m in self.peer.messages("response") if m.branch == theirs.branch and m.code >= 200]
        self.assertEqual(glare.code, 491)
        self.answer(self.reinvites()[0], 200, line_sdp(7000))
        self.successResultOf(pending)
        self.assertEqual(listener.kinds(), ["answered"])
        self.hang_up(call, trunk)

    def test_ours_waits_for_the_peers(self) -> None:
        """§14.1: the peer's re-INVITE is answered 200; an update asked before its ACK goes once the ACK comes (a second re-INVITE meanwhile: 500)."""
        call, listener, trunk = self.answered()
        theirs = self.peer_reinvite(1, line_sdp(7004))
        self.assertEqual(listener.kinds(), ["answered", "media_changed"])
        pending = call.update(line_sdp(4002))
        self.net.run(0.1)
        self.assertEqual(self.reinvites(), [])
        again = self.peer_reinvite(2, line_sdp(7006))  # §14.2: theirs unfinished: 500 and Retry-After
        [busy] = [m for m in self.peer.messages("response") if m.branch == again.branch and m.code >= 200]
        self.assertEqual(busy.code, 500)
        self.assertTrue(0 <= int(busy.header("Retry-After")) <= 10)
        [ok] = [m for m in self.peer.messages("response") if m.branch == theirs.branch and m.code == 200]
        ack = Request(method="ACK", uri=theirs.uri, via=(replace(theirs.via[0], params=(("branch", "z9hG4bKack"),)),),
                      from_=theirs.from_, to=ok.to, call_id=theirs.call_id, cseq=CSeq(1, "ACK"))
        self.peer.send(ack)
        self.net.run(0.1)
        [ours] = self.reinvites()
        self.answer(ours, 200, line_sdp(7004))
        self.assertEqual(self.successResultOf(pending).rtp_address, ("127.0.0.1", 7004))
        self.hang_up(call, trunk)

    def test_peer_hangs_up_while_ours_is_out(self) -> None:
        """The peer's BYE while our re-INVITE is out: the Deferred fails 481 (ended), the listener hears ended; its late 487 is absorbed."""
        call, listener, trunk = self.answered()
        pending = call.update(line_sdp(4002))
        queued = call.update(line_sdp(4004))
        self.net.run(0.1)
        invite = self.peer.messages("INVITE")[0]
        bye = Request(method="BYE", uri=invite.contact[0].uri, via=(replace(invite.via[0], port=5070, params=(("branch", "z9hG4bKbye"),)),),
                      from_=self.ok.to, to=invite.from_, call_id=invite.call_id, cseq=CSeq(2, "BYE"))
        self.peer.send(bye)
        self.net.run(0.1)
        for deferred in (pending, queued):
            failed(self, deferred, 481, True)
        self.assertEqual(listener.events[-1], ("ended", "far end hung up"))
        self.answer(self.reinvites()[0], 487)
        self.assertEqual(len(self.peer.messages("ACK")), 2)  # the 200's, then the 487's (by the transaction)
        settle(self.reactor, trunk)

    def test_we_hang_up_while_ours_is_out(self) -> None:
        """hang_up() with a re-INVITE out: its Deferred fails at once (ended); a late 200 is still ACKed (§13.2.2.4)."""
        call, listener, trunk = self.answered()
        pending = call.update(line_sdp(4002))
        self.net.run(0.1)
        call.hang_up()
        failed(self, pending, 481, True)
        self.answer(self.reinvites()[0], 200, line_sdp(7000))
        acks = self.peer.messages("ACK")
        self.assertEqual([a.cseq.seq for a in acks], [1, 2])
        self.bye_answered()
        self.assertEqual(listener.kinds(), ["answered"])
        settle(self.reactor, trunk)
