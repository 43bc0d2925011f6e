"""
The trunk against SIPp (Debian's sip-tester), a real SIP implementation,
over loopback with the real reactor: SIPp as the far end (answer, ring
then answer and hang up, early media in a 183, busy, no answer, a digest
challenge it checks, an INVITE it leaves unanswered so ours is
retransmitted, our re-INVITEs for hold and resume, a 491 to one) and as
a caller (answered, cancelled while ringing, put on hold by our
re-INVITE).  Each SIPp runs in a temporary directory on a free port, is
stopped by its PID, and must exit 0 (its scenario went as written).
"""

from __future__ import annotations

import random
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from mgcpswitch.sip.trunk import IncomingCall, SipTrunk
from tests.support.sip import Peer, Recorder, free_udp_port, line_sdp, settings

SIPP = shutil.which("sipp")

_REPLY = """[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>"""
_SDP = """Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000"""


def _send(text: str) -> str:
    return f"<send><![CDATA[\n\n{text}\n\n]]></send>"


def _ok(sdp: bool = True) -> str:
    return _send(f"SIP/2.0 200 OK\n{_REPLY}\n" + (_SDP if sdp else "Content-Length: 0"))


_OK_BYE = _send("SIP/2.0 200 OK\n[last_Via:]\n[last_From:]\n[last_To:]\n[last_Call-ID:]\n[last_CSeq:]\nContent-Length: 0")
# SIPp refuses a variable it assigns but never uses: one capture per need.
_CAPTURE_PARTIES = (
    '<action><ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="remote"/>'
    '<ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="local"/></action>'
)
# A 200 to a re-INVITE: the dialog's To (its tag) as it came; SDP with a direction.
_REINVITE_OK = "SIP/2.0 200 OK\n[last_Via:]\n[last_From:]\n[last_To:]\n[last_Call-ID:]\n[last_CSeq:]\n" \
    "Contact: <sip:[local_ip]:[local_port];transport=[transport]>\nX-Offer: [$offer]\n"
# SIPp checks the offer's direction itself: the re-INVITE fails its scenario unless its SDP says so.
_EXPECT_DIRECTION = (
    '<action><ereg regexp="a=(sendonly|inactive|sendrecv)" search_in="body" check_it="true" assign_to="offer"/>'
    '</action>'
)
_CAPTURE_CSEQ = '<action><ereg regexp=".*" search_in="hdr" header="CSeq:" check_it="true" assign_to="cseq"/></action>'

SCENARIOS = {
    # Answer at once; our side hangs up.
    "answer": f'<recv request="INVITE"/>{_ok()}<recv request="ACK"/><recv request="BYE"/>{_OK_BYE}',
    # Ring, answer, then SIPp hangs up (a BYE built from the dialog).
    "ring-answer-hangup": (
        f'<recv request="INVITE" rrs="true">{_CAPTURE_PARTIES}</recv>'
        + _send(f"SIP/2.0 180 Ringing\n{_REPLY}\nContent-Length: 0")
        + '<pause milliseconds="200"/>' + _ok() + '<recv request="ACK"/><pause milliseconds="200"/>'
        + _send("BYE [next_url] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
                "From:[$local];tag=[pid]SIPpTag01[call_number]\nTo:[$remote]\n[last_Call-ID:]\nCSeq: 7 BYE\n"
                "Max-Forwards: 70\nContent-Length: 0")
        + '<recv response="200"/>'
    ),
    # 183 with SDP (early media), then the answer with the same SDP.
    "early-media": (
        '<recv request="INVITE"/>'
        + _send(f"SIP/2.0 183 Session Progress\n{_REPLY}\n{_SDP}") + '<pause milliseconds="200"/>'
        + _ok() + '<recv request="ACK"/><recv request="BYE"/>' + _OK_BYE
    ),
    "busy": '<recv request="INVITE"/>' + _send(f"SIP/2.0 486 Busy Here\n{_REPLY}\nContent-Length: 0")
            + '<recv request="ACK"/>',
    # Ring and never answer: our CANCEL, its 200, the INVITE's 487 and our ACK.
    "no-answer": (
        f'<recv request="INVITE">{_CAPTURE_CSEQ}</recv>'
        + _send(f"SIP/2.0 180 Ringing\n{_REPLY}\nContent-Length: 0")
        + '<recv request="CANCEL"/>' + _OK_BYE
        + _send("SIP/2.0 487 Request Terminated\n[last_Via:]\n[last_From:]\n[last_To:];tag=[pid]SIPpTag01[call_number]\n"
                "[last_Call-ID:]\nCSeq:[$cseq]\nContent-Length: 0")
        + '<recv request="ACK"/>'
    ),
    # A digest challenge, then the credentials checked by SIPp itself.
    "digest": (
        '<recv request="INVITE"/>'
        + _send(f'SIP/2.0 401 Unauthorized\n{_REPLY}\nWWW-Authenticate: Digest realm="sipp.test", '
                'nonce="47364c23432d2e131a5fb210812c", qop="auth"\nContent-Length: 0')
        + '<recv request="ACK"/>'
        + '<recv request="INVITE"><action><verifyauth assign_to="authvalid" username="alice" password="s3cret"/>'
          '</action></recv>'
        + '<nop hide="true" test="authvalid" next="good"/>'
        + _send(f"SIP/2.0 403 Forbidden\n{_REPLY}\nContent-Length: 0") + '<recv request="ACK" next="end"/>'
        + '<label id="good"/>' + _ok() + '<recv request="ACK"/><recv request="BYE"/>' + _OK_BYE
        + '<label id="end"/>'
    ),
    # Hold (a=sendonly offered: SIPp checks it, answers recvonly), then resume.
    "reinvite": (
        f'<recv request="INVITE"/>{_ok()}<recv request="ACK"/>'
        + f'<recv request="INVITE">{_EXPECT_DIRECTION.replace("sendonly|inactive|sendrecv", "sendonly")}</recv>'
        + _send(_REINVITE_OK + _SDP + "\na=recvonly") + '<recv request="ACK"/>'
        + f'<recv request="INVITE">{_EXPECT_DIRECTION.replace("sendonly|inactive|sendrecv", "sendrecv")}</recv>'
        + _send(_REINVITE_OK + _SDP + "\na=sendrecv") + '<recv request="ACK"/>'
        + '<recv request="BYE"/>' + _OK_BYE
    ),
    # The re-INVITE gets 491 (as if SIPp's own crossed it): ours comes again 2.1-4 s later (§14.1).
    "reinvite-491": (
        f'<recv request="INVITE"/>{_ok()}<recv request="ACK"/>'
        + '<recv request="INVITE"/>'
        + _send("SIP/2.0 491 Request Pending\n[last_Via:]\n[last_From:]\n[last_To:]\n[last_Call-ID:]\n"
                "[last_CSeq:]\nContent-Length: 0")
        + '<recv request="ACK"/>'
        + f'<recv request="INVITE">{_EXPECT_DIRECTION}</recv>'
        + _send(_REINVITE_OK + _SDP) + '<recv request="ACK"/>'
        + '<recv request="BYE"/>' + _OK_BYE
    ),
    # The INVITE is left unanswered 1.2 s (as if lost): ours comes again on
    # Timer A, and SIPp absorbs the repeats.  (A 200 repeated after a lost
    # ACK is shown on the memory network: SIPp cannot resend its own 200
    # on purpose.)
    "retransmissions": (
        '<recv request="INVITE"/><pause milliseconds="1200"/>' + _ok() + '<recv request="ACK"/>'
        '<recv request="BYE"/>' + _OK_BYE
    ),
}


def _scenario(name: str, body: str) -> str:
    return f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="{name}">\n{body}\n</scenario>\n'


class Far(TestCase):
    """SIPp as the far end of a call placed on the trunk."""

    timeout = 90

    def setUp(self) -> None:
        if SIPP is None:
            raise self.skipTest("SIPp (Debian sip-tester) is not installed: scripts/run-tests installs it")  # noqa
        self.directory = tempfile.mkdtemp(prefix="mgcpswitch-sipp-")
        self.addCleanup(shutil.rmtree, self.directory, True)

    def sipp(self, scenario: str, port: int, extra: list[str] = ()) -> Peer:  # type: ignore[assignment]
        path = f"{self.directory}/{scenario}.xml"
        with open(path, "w", encoding="ascii") as f:
            f.write(_scenario(scenario, SCENARIOS[scenario]))
        argv = [SIPP, "-sf", path, "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1", "-mp", str(free_udp_port()),
                "-m", "1", "-nostdin", "-timeout", "60s", "-timeout_error", "-trace_err", *extra]
        return Peer(self, argv, self.directory, "sipp")

    def trunk(self, sipp_port: int, **values: Any) -> SipTrunk:
        trunk = SipTrunk(settings("sipp", 0, sipp_port, **values), reactor, self.incoming, rng=random.Random())
        trunk.startService()
        self.addCleanup(trunk.stopService)
        return trunk

    def incoming(self, call: IncomingCall) -> None:
        self.fail("no call was expected in")

    async def place(self, scenario: str, until: str, **values: Any) -> tuple[Recorder, Any, SipTrunk, Peer]:
        """Start SIPp with C{scenario}, call it, wait for the listener to hear C{until}."""
        port = free_udp_port()
        sipp = self.sipp(scenario, port)
        trunk = self.trunk(port, **values)
        heard: Deferred[None] = Deferred()
        listener = _Waiting(until, heard)
        call = trunk.call("2001", line_sdp(free_udp_port()), listener, caller="1001")
        await heard.addTimeout(45, reactor)
        return listener, call, trunk, sipp

    async def exited(self, sipp: Peer) -> None:
        code = await sipp.ended.addTimeout(45, reactor)
        self.assertEqual(code, 0, sipp.output.decode(errors="replace")[-3000:])

    async def test_answer_then_we_hang_up(self) -> None:
        """SIPp answers at once; our BYE ends the call; SIPp's scenario completes."""
        listener, call, trunk, sipp = await self.place("answer", "answered")
        self.assertEqual(listener.kinds(), ["answered"])
        call.hang_up()
        await self.exited(sipp)
        self.assertEqual(trunk.view().channels_in_use, 0)

    async def test_ring_answer_and_far_end_hangs_up(self) -> None:
        """180, 200, and SIPp's BYE: the listener hears progress, answered, ended."""
        listener, call, trunk, sipp = await self.place("ring-answer-hangup", "ended")
        self.assertEqual(listener.kinds(), [("progress", 180), "answered", ("ended", "far end hung up")])
        await self.exited(sipp)

    async def test_early_media(self) -> None:
        """SIPp's 183 carries SDP: progress(183, sdp) gives its media address before the answer."""
        listener, call, trunk, sipp = await self.place("early-media", "answered")
        self.assertEqual(listener.kinds(), [("progress", 183), "answered"])
        early = listener.events[0][2]
        self.assertIsNotNone(early)
        self.assertEqual(early.rtp_address, listener.events[1][1].rtp_address)
        call.hang_up()
        await self.exited(sipp)

    async def test_busy(self) -> None:
        """SIPp answers 486: failed(486), and SIPp receives our ACK."""
        listener, call, trunk, sipp = await self.place("busy", "failed")
        self.assertEqual(listener.kinds(), [("failed", 486)])
        await self.exited(sipp)

    async def test_no_answer_cancels(self) -> None:
        """SIPp rings forever: after ring_timeout we fail 408 and CANCEL; SIPp sees CANCEL then our ACK of its 487."""
        listener, call, trunk, sipp = await self.place("no-answer", "failed", ring_timeout=4.0)
        self.assertEqual(listener.kinds(), [("progress", 180), ("failed", 408)])
        await self.exited(sipp)
        self.assertEqual(trunk.view().statuses, {"out 408": 1})

    async def test_digest_challenge_checked_by_sipp(self) -> None:
        """SIPp challenges with digest (qop=auth) and verifies our credentials itself: the call connects."""
        listener, call, trunk, sipp = await self.place("digest", "answered", username="alice", password="s3cret")
        call.hang_up()
        await self.exited(sipp)

    async def test_hold_and_resume(self) -> None:
        """Our re-INVITEs: hold (a=sendonly, SIPp checks it and answers recvonly), then resume (sendrecv)."""
        listener, call, trunk, sipp = await self.place("reinvite", "answered")
        port = free_udp_port()
        held = await call.update(line_sdp(port, direction="sendonly")).addTimeout(20, reactor)
        self.assertEqual(held.audio.direction, "recvonly")
        resumed = await call.update(line_sdp(port)).addTimeout(20, reactor)
        self.assertEqual(resumed.audio.direction, "sendrecv")
        self.assertEqual(listener.kinds(), ["answered"])
        call.hang_up()
        await self.exited(sipp)
        self.assertEqual(trunk.view().channels_in_use, 0)

    async def test_reinvite_491_tried_again(self) -> None:
        """SIPp answers our re-INVITE 491: after §14.1's pause (2.1-4 s, we own the Call-ID) it goes again and is answered."""
        listener, call, trunk, sipp = await self.place("reinvite-491", "answered")
        started = reactor.seconds()
        answer = await call.update(line_sdp(free_udp_port())).addTimeout(20, reactor)
        self.assertGreaterEqual(reactor.seconds() - started, 2.1)
        self.assertIsNotNone(answer.rtp_address)
        call.hang_up()
        await self.exited(sipp)

    async def test_retransmissions(self) -> None:
        """SIPp leaves the INVITE unanswered 1.2 s: ours is repeated on Timer A, then the call connects."""
        listener, call, trunk, sipp = await self.place("retransmissions", "answered")
        self.assertGreaterEqual(trunk.view().messages["retransmissions"], 1)
        call.hang_up()
        await self.exited(sipp)


CANCELLING_UAC = _scenario("cancel", (
    _send("INVITE sip:2001@[remote_ip]:[remote_port] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
          "From: <sip:555@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\nTo: <sip:2001@[remote_ip]:[remote_port]>\n"
          "Call-ID: [call_id]\nCSeq: 1 INVITE\nContact: <sip:555@[local_ip]:[local_port]>\nMax-Forwards: 70\n"
          "Content-Type: application/sdp\nContent-Length: [len]\n\nv=0\no=user1 1 1 IN IP[local_ip_type] [local_ip]\ns=-\n"
          "c=IN IP[media_ip_type] [media_ip]\nt=0 0\nm=audio [media_port] RTP/AVP 0\na=rtpmap:0 PCMU/8000")
    + '<recv response="100" optional="true"/><recv response="180"/><pause milliseconds="300"/>'
    + _send("CANCEL sip:2001@[remote_ip]:[remote_port] SIP/2.0\n[last_Via:]\nFrom: <sip:555@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n"
            "To: <sip:2001@[remote_ip]:[remote_port]>\nCall-ID: [call_id]\nCSeq: 1 CANCEL\nMax-Forwards: 70\nContent-Length: 0")
    + '<recv response="200"/><recv response="487"/>'
    + _send("ACK sip:2001@[remote_ip]:[remote_port] SIP/2.0\n[last_Via:]\nFrom: <sip:555@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n"
            "[last_To:]\nCall-ID: [call_id]\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0")
))

# SIPp calls in; once answered and ACKed it is put on hold by our re-INVITE
# (it checks a=sendonly, answers recvonly), then hangs up with a BYE built
# from the re-INVITE's From and To.
_FROM_SIPP = "From: <sip:555@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]"
HELD_UAC = _scenario("held", (
    _send("INVITE sip:2001@[remote_ip]:[remote_port] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
          f"{_FROM_SIPP}\nTo: <sip:2001@[remote_ip]:[remote_port]>\n"
          "Call-ID: [call_id]\nCSeq: 1 INVITE\nContact: <sip:555@[local_ip]:[local_port]>\nMax-Forwards: 70\n"
          "Content-Type: application/sdp\nContent-Length: [len]\n\nv=0\no=user1 1 1 IN IP[local_ip_type] [local_ip]\ns=-\n"
          "c=IN IP[media_ip_type] [media_ip]\nt=0 0\nm=audio [media_port] RTP/AVP 0\na=rtpmap:0 PCMU/8000")
    + '<recv response="100" optional="true"/><recv response="200"/>'
    + _send("ACK sip:2001@[remote_ip]:[remote_port] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
            f"{_FROM_SIPP}\nTo: <sip:2001@[remote_ip]:[remote_port]>[peer_tag_param]\nCall-ID: [call_id]\n"
            "CSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0")
    + '<recv request="INVITE" rrs="true"><action>'
      '<ereg regexp="a=sendonly" search_in="body" check_it="true" assign_to="offer"/>'
      '<ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="remote"/>'
      '<ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="local"/></action></recv>'
    + _send(_REINVITE_OK + _SDP + "\na=recvonly") + '<recv request="ACK"/><pause milliseconds="200"/>'
    + _send("BYE [next_url] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
            "From:[$local]\nTo:[$remote]\nCall-ID: [call_id]\nCSeq: 2 BYE\nMax-Forwards: 70\nContent-Length: 0")
    + '<recv response="200"/>'
))


class Caller(TestCase):
    """SIPp as the caller: its built-in UAC (the trunk answers with canned SDP), one that CANCELs, one we put on hold."""

    timeout = 90

    async def sipp_calls(self, scenario: list[str], incoming: Any) -> SipTrunk:
        """
        A trunk whose calls in go to C{incoming}, called by SIPp with
        C{scenario} (C{["-sn", "uac", ...]}, or the XML of one); SIPp must
        exit 0.
        """
        if SIPP is None:
            raise self.skipTest("SIPp (Debian sip-tester) is not installed: scripts/run-tests installs it")
        directory = tempfile.mkdtemp(prefix="mgcpswitch-sipp-")
        self.addCleanup(shutil.rmtree, directory, True)
        if scenario[0].startswith("<?xml"):
            with open(f"{directory}/scenario.xml", "w", encoding="ascii") as f:
                f.write(scenario[0])
            scenario = ["-sf", f"{directory}/scenario.xml", "-trace_err"]
        sipp_port = free_udp_port()
        trunk = SipTrunk(settings("in", 0, sipp_port), reactor, incoming, rng=random.Random())
        trunk.startService()
        self.addCleanup(trunk.stopService)
        sipp = Peer(self, [SIPP, *scenario, f"127.0.0.1:{trunk.agent.port}", "-i", "127.0.0.1",
                           "-p", str(sipp_port), "-mi", "127.0.0.1", "-mp", str(free_udp_port()), "-m", "1",
                           "-nostdin", "-timeout", "60s", "-timeout_error"], directory, "sipp")
        code = await sipp.ended.addTimeout(45, reactor)
        self.assertEqual(code, 0, sipp.output.decode(errors="replace")[-3000:])
        return trunk

    async def test_sipp_cancels(self) -> None:
        """SIPp's INVITE rings; it CANCELs: 200, 487, its ACK; the listener hears cancelled; no channel is left."""
        listener = Recorder()

        def incoming(call: IncomingCall) -> None:
            call.listener = listener
            call.ringing()

        trunk = await self.sipp_calls([CANCELLING_UAC], incoming)
        self.assertEqual(listener.events, [("cancelled",)])
        self.assertEqual(trunk.view().channels_in_use, 0)
        self.assertEqual(trunk.view().statuses, {"in 487": 1})

    async def test_sipp_calls_in(self) -> None:
        """SIPp's uac scenario: INVITE, our 180 and 200, its ACK, then its BYE; the handler hears ended."""
        calls: list[IncomingCall] = []
        listener = Recorder()

        def incoming(call: IncomingCall) -> None:
            calls.append(call)
            call.listener = listener
            call.ringing()
            call.answer(line_sdp(free_udp_port()))

        trunk = await self.sipp_calls(["-sn", "uac", "-s", "2001", "-d", "300"], incoming)
        self.assertEqual(calls[0].number, "2001")
        self.assertEqual(listener.events, [("ended", "far end hung up")])
        self.assertEqual(trunk.view().channels_in_use, 0)

    async def test_we_put_sipp_on_hold(self) -> None:
        """SIPp calls in; the answered call's update(sendonly), asked before SIPp's ACK, goes after it; SIPp answers recvonly, then hangs up."""
        listener = Recorder()
        updates: list[Deferred[Any]] = []

        def incoming(call: IncomingCall) -> None:
            call.listener = listener
            port = free_udp_port()
            call.answer(line_sdp(port))
            updates.append(call.update(line_sdp(port, direction="sendonly")))

        trunk = await self.sipp_calls([HELD_UAC], incoming)
        answer = await updates[0]
        self.assertEqual(answer.audio.direction, "recvonly")
        self.assertEqual(listener.events, [("ended", "far end hung up")])
        self.assertEqual(trunk.view().channels_in_use, 0)


class _Waiting(Recorder):
    """A recorder that fires C{heard} when it is told C{until}."""

    def __init__(self, until: str, heard: Deferred[None]) -> None:
        super().__init__()
        self.until = until
        self.heard = heard

    def _note(self) -> None:
        if self.events[-1][0] == self.until and not self.heard.called:
            self.heard.callback(None)

    def progress(self, code: int, sdp: Any) -> None:
        super().progress(code, sdp)
        self._note()

    def answered(self, sdp: Any) -> None:
        super().answered(sdp)
        self._note()

    def failed(self, code: int, reason: str) -> None:
        super().failed(code, reason)
        self._note()

    def ended(self, reason: str) -> None:
        super().ended(reason)
        self._note()

