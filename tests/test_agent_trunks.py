"""
Calls beyond a SIP trunk, through call control, on the in-memory network:
lines of the simulated gateways call out through the switch's trunk to a
far SIP user agent (another SipTrunk, scripted by each test) and are called
from it.  Each path ends with no connection on the gateways, no channel,
dialog or transaction on either trunk, and the record its cause asks for.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.agent.model import CallState, LineState, ReleaseCause
from mgcpswitch.agent.trunks import cause_of_status, status_of_cause
from mgcpswitch.sip.calls import SDP_TYPE
from mgcpswitch.sip.sdp import make_answer
from mgcpswitch.sip.trunk import SipTrunk

from .support.sip import Recorder, line_sdp, settings
from .support.switch import Switch

TRUNK = """
[trunk:provider]
address = 127.0.0.1
port = 5070
local_port = 5060
keepalive_interval = 0
ring_timeout = 30

[dialplan]
9x.T = trunk:provider
"""


class Far:
    """The SIP user agent beyond the trunk: a SipTrunk on 127.0.0.1:5070 doing what the test says."""

    def __init__(self, s: Switch) -> None:
        self.calls: list[Any] = []
        self.script: Callable[[Any], None] = lambda call: None
        self.trunk = SipTrunk(settings("far", 5070, 5060), s.reactor, self._incoming, rng=random.Random(7))
        self.trunk.startService()

    def _incoming(self, call: Any) -> None:
        call.listener = Recorder()
        self.calls.append(call)
        self.script(call)

    def call(self, number: str, caller: str = "0123456") -> Recorder:
        recorder = Recorder()
        self.trunk.call(number, line_sdp(6000, "127.0.0.50"), recorder, caller=caller)
        return recorder


class Trunked(SynchronousTestCase):
    #: Called with each switch made, before it starts (test_agent_machines watches the tables' rows).
    on_switch: Any = None

    def switch(self, **options: Any) -> tuple[Switch, Far]:
        s = Switch(switch_extra="digit_map = (1xxx|2xxx|5xxx|9x.T|*xx)", rgw2_extra=TRUNK, start=False, **options)
        if self.on_switch is not None:
            self.on_switch(s)
        s.start()
        far = Far(s)
        self.made = getattr(self, "made", []) + [(s, far)]
        self.addCleanup(s.stop)
        self.addCleanup(far.trunk.stopService)
        return s, far

    def settled(self, s: Switch, far: Far, seconds: float = 40.0) -> None:
        """Every line idle and armed, no connection, nothing of any call left on either trunk."""
        s.run(seconds)
        self.assertTrue(s.idle())
        for trunk in (far.trunk, s.service.trunks["provider"]):
            view = trunk.view()
            self.assertEqual((view.channels_in_use, view.messages["dialogs"], view.messages["transactions"]),
                             (0, 0, 0), trunk.name)

    def record(self, s: Switch) -> Any:
        [record] = s.recorder.records
        return record

    def dial_out(self, s: Switch, number: str = "90123", caller: str = "1001") -> Any:
        phone = s.phone(caller)
        phone.off_hook()
        s.run(0.5)
        phone.dial(number, gap=0.05)
        s.run(5.0)  # 9x.T: the digit map's timer (4 s) ends the number
        return phone


class CallsOut(Trunked):
    def test_ringing_then_answered(self) -> None:
        """
        The line's connection is made first and its SDP is the INVITE's
        offer; 180 gives ringback; 200 connects the line to the far media;
        the caller's hang-up sends BYE; one record, cause normal.
        """
        s, far = self.switch()
        far.script = lambda call: call.ringing()
        phone = self.dial_out(s)
        [incoming] = far.calls
        self.assertEqual(incoming.number, "90123")
        self.assertEqual(incoming.caller, "1001")
        [connection] = phone.connections
        self.assertEqual(incoming.offer_sdp.audio.port, connection.local_sdp.audio.port)
        self.assertIn("G/rt", {str(x) for x in phone.signals})
        self.assertEqual(connection.mode, "recvonly")
        incoming.answer(line_sdp(7000, "127.0.0.60"))
        s.run(0.5)
        [connection] = phone.connections
        self.assertEqual((connection.mode, connection.remote_sdp.audio.port), ("sendrecv", 7000))
        self.assertNotIn("G/rt", {str(x) for x in phone.signals})
        self.assertIs(s.line("aaln/1@rgw1").state, LineState.CONNECTED)
        phone.on_hook()
        s.run(0.5)
        self.assertEqual(incoming.listener.kinds()[-1], ("ended", "far end hung up"))
        self.settled(s, far)
        record = self.record(s)
        self.assertEqual((record.cause, record.caller, record.callee, record.callee_endpoint),
                         (ReleaseCause.NORMAL, "1001", "90123", "trunk:provider"))
        self.assertIsNotNone(record.answer)

    def test_the_ladder_shows_sip_beside_mgcp(self) -> None:
        """
        The call's ladder has the trunk's SIP messages in time order among
        the MGCP ones, and the admin's flow and pcap of it are built.
        """
        from mgcpswitch.web.flow import build_flow
        from mgcpswitch.web.pcap import pcap

        s, far = self.switch()
        far.script = lambda call: (call.ringing(), call.answer(line_sdp(7000, "127.0.0.60")))
        phone = self.dial_out(s)
        [call] = s.service.list_calls()
        ladder = s.service.get_call(call.call_id).ladder
        summaries = [(e.gateway, e.summary) for e in ladder]
        sip = [summary for gateway, summary in summaries if gateway == "trunk:provider"]
        self.assertEqual([x.split()[0] for x in sip], ["INVITE", "SIP/2.0", "SIP/2.0", "SIP/2.0", "ACK"])
        first_crcx = next(i for i, (g, x) in enumerate(summaries) if x.startswith("CRCX"))
        invite = next(i for i, (g, x) in enumerate(summaries) if x.startswith("INVITE"))
        self.assertLess(first_crcx, invite)  # the line's connection first: its SDP is the offer
        self.assertEqual([e.time for e in ladder], sorted(e.time for e in ladder))
        flow = build_flow(s.service.get_call(call.call_id), {g.name: g for g in s.service.list_gateways()})
        self.assertIn("trunk:provider", [c.key for c in flow.columns])
        self.assertIn(180, [m.code for m in flow.messages])
        self.assertIn(b"INVITE sip:90123@127.0.0.1:5070 SIP/2.0", pcap(flow.datagrams))
        phone.on_hook()
        self.settled(s, far)

    def test_early_media(self) -> None:
        """A 183 with SDP: the caller's connection receives the far end's media, with no ringback of ours."""
        s, far = self.switch()
        def early(call: Any) -> None:  # a far end playing its own tones: 183 with its SDP
            sdp = make_answer(call.offer_sdp, line_sdp(7100, "127.0.0.61"), ("PCMU", "PCMA"), call.origin)
            call._respond(183, contact=(far.trunk.contact,), headers=(SDP_TYPE,), body=str(sdp).encode())

        far.script = early
        phone = self.dial_out(s)
        [connection] = phone.connections
        self.assertEqual((connection.mode, connection.remote_sdp.audio.port), ("recvonly", 7100))
        self.assertNotIn("G/rt", {str(x) for x in phone.signals})
        far.calls[0].answer(line_sdp(7100, "127.0.0.61"))
        s.run(0.5)
        self.assertEqual(phone.connections[0].mode, "sendrecv")
        far.calls[0].hang_up()  # the far end hangs up: the caller hears busy tone
        s.run(0.5)
        self.assertEqual(phone.connections, ())
        self.assertIn("L/bz", {str(x) for x in phone.signals})
        phone.on_hook()
        self.settled(s, far)
        self.assertIs(self.record(s).cause, ReleaseCause.NORMAL)

    def test_failures_give_the_tone_and_cause_a_caller_expects(self) -> None:
        """486 gives busy tone; 404 and 503 reorder; each with its cause and no connection left."""
        for status, tone, cause in ((486, "L/bz", ReleaseCause.BUSY), (404, "L/ro", ReleaseCause.UNKNOWN_NUMBER),
                                    (503, "L/ro", ReleaseCause.CONGESTION)):
            s, far = self.switch()
            far.script = lambda call, status=status: call.reject(status)
            phone = self.dial_out(s)
            self.assertEqual(phone.connections, (), status)
            self.assertIn(tone, {str(x) for x in phone.signals}, status)
            phone.on_hook()
            self.settled(s, far)
            self.assertIs(self.record(s).cause, cause, status)

    def test_the_caller_gives_up_while_it_rings(self) -> None:
        """Hang-up before the answer: CANCEL (the far end hears it), no connection left, cause abandoned."""
        s, far = self.switch()
        far.script = lambda call: call.ringing()
        phone = self.dial_out(s)
        phone.on_hook()
        s.run(1.0)
        self.assertEqual(far.calls[0].listener.kinds(), ["cancelled"])
        self.settled(s, far)
        self.assertIs(self.record(s).cause, ReleaseCause.ABANDONED)

    def test_no_codec_in_common(self) -> None:
        """The far end refuses the offer (488): reorder, cause codec mismatch."""
        s, far = self.switch()
        far.script = lambda call: call.reject(488)
        phone = self.dial_out(s)
        self.assertIn("L/ro", {str(x) for x in phone.signals})
        phone.on_hook()
        self.settled(s, far)
        self.assertIs(self.record(s).cause, ReleaseCause.CODEC_MISMATCH)


class CallsIn(Trunked):
    def test_a_line_is_rung_and_answers(self) -> None:
        """
        A call for 2001 rings its line with the caller's number; 180 goes
        back; the answer sends 200 with the line's SDP; the far end's BYE
        leaves the line with busy tone.
        """
        s, far = self.switch()
        recorder = far.call("2001")
        s.run(1.0)
        phone = s.phone("2001")
        self.assertTrue(phone.ringing)
        self.assertEqual(phone.caller_id[1], "0123456")
        self.assertEqual(recorder.kinds(), [("progress", 180)])
        phone.off_hook()
        s.run(0.5)
        [connection] = phone.connections
        self.assertEqual((connection.mode, connection.remote_sdp.audio.port), ("sendrecv", 6000))
        [_, answered] = recorder.events
        self.assertEqual(answered[1].audio.port, connection.local_sdp.audio.port)
        [call] = s.service.list_calls()
        self.assertEqual((call.state, call.caller, call.callee), (CallState.CONNECTED, "trunk:provider", "aaln/1@rgw2"))
        [far_call] = far.trunk.channels
        far_call.hang_up()
        s.run(0.5)
        self.assertIn("L/bz", {str(x) for x in phone.signals})
        phone.on_hook()
        self.settled(s, far)
        record = self.record(s)
        self.assertEqual((record.cause, record.caller, record.caller_endpoint, record.callee),
                         (ReleaseCause.NORMAL, "0123456", "trunk:provider", "2001"))

    def test_refusals(self) -> None:
        """A busy line: 486; an unknown number: 404; each with its record."""
        s, far = self.switch()
        busy = s.phone("2001")
        busy.off_hook()
        s.run(0.5)
        to_busy, to_nowhere = far.call("2001"), far.call("5555")
        s.run(1.0)
        self.assertEqual([e[:2] for e in to_busy.events], [("failed", 486)])
        self.assertEqual([e[:2] for e in to_nowhere.events], [("failed", 404)])
        busy.on_hook()
        self.settled(s, far)
        self.assertEqual(sorted(r.cause.value for r in s.recorder.records), ["busy", "unknown-number"])

    def test_the_caller_gives_up(self) -> None:
        """CANCEL while the line rings: it stops ringing, its connection goes, cause abandoned."""
        s, far = self.switch()
        far.call("2001")
        s.run(1.0)
        self.assertTrue(s.phone("2001").ringing)
        [outgoing] = far.trunk.channels
        outgoing.cancel()
        s.run(1.0)
        self.assertFalse(s.phone("2001").ringing)
        self.settled(s, far)
        self.assertIs(self.record(s).cause, ReleaseCause.ABANDONED)

    def test_not_answered(self) -> None:
        """The line lets it ring past the no-answer time: 480 to the caller, cause no answer."""
        s, far = self.switch(no_answer=5)
        recorder = far.call("2001")
        s.run(6.0)
        self.assertEqual(recorder.events[-1][:2], ("failed", 480))
        self.settled(s, far)
        self.assertIs(self.record(s).cause, ReleaseCause.NO_ANSWER)

    def test_forwarded_to_another_line(self) -> None:
        """The line called forwards all its calls: the other line rings, and the record says so."""
        s, far = self.switch()
        s.service.set_line_services("2001", {"forward_always": "2002"})
        far.call("2001")
        s.run(1.0)
        self.assertFalse(s.phone("2001").ringing)
        self.assertTrue(s.phone("2002").ringing)
        s.phone("2002").off_hook()
        s.run(0.5)
        s.phone("2002").on_hook()
        self.settled(s, far)
        record = self.record(s)
        self.assertEqual((record.forwarded_from, record.callee_endpoint), ("aaln/1@rgw2", "aaln/2@rgw2"))


class Services(Trunked):
    def test_transfer_moves_the_trunk_party(self) -> None:
        """
        A call in talks with 2001; 2001 flashes, calls 2002, which answers,
        and hangs up: the trunk's caller and 2002 talk, the trunk's side
        moved by a re-INVITE offering 2002's media; 2002 hangs up: BYE.
        """
        s, far = self.switch()
        recorder = far.call("2001")
        s.run(1.0)
        a, b = s.phone("2001"), s.phone("2002")
        a.off_hook()
        s.run(0.5)
        a.flash()
        s.run(0.5)
        a.dial("2002", gap=0.05)
        s.run(1.0)
        b.off_hook()
        s.run(0.5)
        a.on_hook()
        s.run(1.0)
        [moved] = [e[1] for e in recorder.events if e[0] == "media_changed"]
        [on_b] = b.connections
        self.assertEqual((moved.audio.port, on_b.remote_sdp.audio.port), (on_b.local_sdp.audio.port, 6000))
        self.assertEqual((on_b.mode, a.connections), ("sendrecv", ()))
        b.on_hook()
        s.run(1.0)
        self.assertEqual(recorder.events[-1][:2], ("ended", "far end hung up"))
        self.settled(s, far)
        records = {(r.caller, r.callee, r.cause.value, r.transferred_by) for r in s.recorder.records}
        self.assertEqual(records, {
            ("0123456", "2001", "transferred", None), ("2001", "2002", "transferred", None),
            ("0123456", "2002", "normal", "aaln/1@rgw2"),
        })


class Causes(SynchronousTestCase):
    def test_both_ways(self) -> None:
        """What each status means to a caller, and what each cause tells a trunk's caller."""
        self.assertEqual([cause_of_status(c).value for c in (486, 600, 404, 484, 480, 408, 488, 503, 500, 403, 302)],
                         ["busy", "busy", "unknown-number", "unknown-number", "no-answer", "no-answer",
                          "codec-mismatch", "congestion", "congestion", "rejected", "rejected"])
        self.assertEqual([status_of_cause(c) for c in (ReleaseCause.BUSY, ReleaseCause.DND,
                                                       ReleaseCause.UNKNOWN_NUMBER, ReleaseCause.NO_ANSWER,
                                                       ReleaseCause.FORWARD_LOOP, ReleaseCause.GATEWAY_ERROR, None)],
                         [486, 486, 404, 480, 482, 503, 480])
