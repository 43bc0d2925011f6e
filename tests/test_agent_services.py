"""
The services residential lines expect, each on the in-memory network with
the simulated gateways: the exact MGCP each sends (commands, modes,
signals, requested events), the final state (no connection left, every
line idle), one record per call, and the ways each can fail.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.agent.model import (
    CallForwarded,
    CallsJoined,
    CallTransferred,
    LineServicesChanged,
    LineState,
    ReleaseCause,
)
from mgcpswitch.mgcp import Command, ConnectionMode, Verb, encode

from .support.switch import Probe, Switch

A, B, C = "aaln/1@rgw1", "aaln/1@rgw2", "aaln/2@rgw2"


class Base(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Switch(lines=4, no_answer=60)
        self.addCleanup(self.s.stop)
        self.a, self.b, self.c = self.s.phone("1001"), self.s.phone("2001"), self.s.phone("2002")

    def dial(self, phone: Any, number: str, wait: float = 1.0) -> None:
        if phone.hook == "on":
            phone.off_hook()
            self.s.run(0.5)
        phone.dial(number, gap=0.05)
        self.s.run(wait)

    def talk(self, caller: Any, callee: Any, number: str) -> None:
        self.dial(caller, number)
        self.assertTrue(callee.ringing)
        callee.off_hook()
        self.s.run(0.5)

    def modes(self, phone: Any) -> list[str]:
        return sorted(str(c.mode) for c in phone.connections)

    def finish(self, *phones: Any) -> None:
        for phone in (self.a, self.b, self.c, *phones):
            phone.on_hook()
        self.s.run(2.0)
        self.assertTrue(self.s.idle(), [str(self.s.line(n)) for n in (A, B, C)])
        self.assertEqual(self.s.control.calls(), [])

    def records(self) -> list[tuple[str, str, str]]:
        return [(r.caller, r.callee, r.cause.value) for r in self.s.recorder.records]

    def events(self, kind: type) -> list[Any]:
        return [e for e in self.s.recorder.events if isinstance(e, kind)]

    def state(self, endpoint: str) -> LineState:
        return self.s.line(endpoint).state


class CallWaiting(Base):
    def test_a_flash_before_the_waiting_call_reaches_the_line(self) -> None:
        """
        A flashes after the switch decided C's call waits but before its
        connection is made on A's endpoint (C's own CRCX is still out): the
        flash answers it, and the connection is then made as an answered
        call's (no ringing request to an off-hook line, which would fail
        401): A talks with C, B on hold.
        """
        s, a, b, c = self.s, self.a, self.b, self.c
        self.talk(a, b, "2001")
        c.off_hook()
        s.run(0.5)
        c.dial("1001", gap=0.05)
        while len(s.service.get_endpoint(A).calls) < 2:
            s.run(0.001)
        self.assertEqual(len(a.connections), 1)  # C's connection is not on A's endpoint yet
        a.flash()
        s.run(1.0)
        self.assertEqual(self.modes(a), ["inactive", "sendrecv"])
        [on_c] = [x for x in a.connections if str(x.mode) == "sendrecv"]
        self.assertEqual(on_c.remote_sdp, c.connections[0].local_sdp)
        self.assertEqual(self.modes(c), ["sendrecv"])
        self.assertEqual((a.ringing, self.state(A)), (False, LineState.CONNECTED))
        self.finish()
        self.assertEqual(sorted(r[2] for r in self.records()), ["normal", "normal"])

    def test_wait_answer_swap_and_recall(self) -> None:
        """
        A talks with B; C calls A: A hears the call-waiting tone with C's
        caller ID and C ringback, C's connection on A's endpoint inactive.
        A's flash answers C and holds B (inactive); a second flash swaps.
        A hangs up with a call on hold: the line is rung back, and
        answering talks with the held call again.
        """
        s, a, b, c = self.s, self.a, self.b, self.c
        self.talk(a, b, "2001")
        since = s.mark()
        self.dial(c, "1001")
        self.assertIn("L/wt", a.signals)
        self.assertEqual(a.caller_id[1], "2002")
        self.assertIn("G/rt", c.signals)
        self.assertEqual(self.modes(a), ["inactive", "sendrecv"])
        a.flash()
        s.run(0.5)
        self.assertEqual(self.modes(a), ["inactive", "sendrecv"])
        [on_c] = [x for x in a.connections if str(x.mode) == "sendrecv"]
        self.assertEqual(on_c.remote_sdp, c.connections[0].local_sdp)
        self.assertEqual(self.modes(c), ["sendrecv"])
        self.assertNotIn("G/rt", c.signals)
        a.flash()
        s.run(0.5)
        [on_b] = [x for x in a.connections if str(x.mode) == "sendrecv"]
        self.assertEqual(on_b.remote_sdp, b.connections[0].local_sdp)
        self.assertEqual(s.steps(A, since), [
            "CRCX M:inactive R:L/hu,L/hf S:L/wt,L/ci",  # C waits
            "NTFY O:L/hf",
            "RQNT R:L/hu,L/hf",  # answered: the tone stops; watch hang-up and flash
            "MDCX M:inactive",  # B on hold
            "MDCX M:sendrecv",  # C talks
            "NTFY O:L/hf",
            "RQNT R:L/hu,L/hf",
            "MDCX M:sendrecv",  # B again
            "MDCX M:inactive",  # C on hold
        ])
        since = s.mark()
        a.on_hook()
        s.run(0.5)
        self.assertTrue(a.ringing)  # rung back for C
        self.assertIn("L/bz", b.signals)  # B's call ended with A's hang-up
        self.assertEqual(self.state(A), LineState.RECALLING)
        a.off_hook()
        s.run(0.5)
        self.assertEqual(self.modes(a), ["sendrecv"])
        self.assertEqual(s.steps(A, since), [
            "NTFY O:L/hu", "DLCX", "RQNT R:L/hd S:L/rg", "NTFY O:L/hd", "RQNT R:L/hu,L/hf", "MDCX M:sendrecv",
        ])
        self.finish()
        self.assertEqual(self.records(), [("1001", "2001", "normal"), ("2002", "1001", "normal")])

    def test_the_waiting_caller_gives_up(self) -> None:
        """C hangs up while it waits: its connection on A's endpoint goes; A's call with B goes on."""
        s, a, b, c = self.s, self.a, self.b, self.c
        self.talk(a, b, "2001")
        self.dial(c, "1001")
        c.on_hook()
        s.run(0.5)
        self.assertEqual(self.modes(a), ["sendrecv"])
        self.assertEqual(self.state(A), LineState.CONNECTED)
        self.finish()
        self.assertEqual(self.records()[0], ("2002", "1001", "abandoned"))

    def test_unanswered_waiting_call_times_out(self) -> None:
        """The waiting call is not answered within the no-answer time: it ends, the caller hears reorder."""
        s, a, b, c = self.s, self.a, self.b, self.c
        self.talk(a, b, "2001")
        self.dial(c, "1001")
        s.run(61)
        self.assertIn("L/ro", c.signals)
        self.assertEqual(self.modes(a), ["sendrecv"])
        self.finish()
        self.assertEqual(self.records()[0], ("2002", "1001", "no-answer"))

    def test_the_held_party_hangs_up(self) -> None:
        """B hangs up while on hold: A goes on with C, B's connection is gone."""
        s, a, b, c = self.s, self.a, self.b, self.c
        self.talk(a, b, "2001")
        self.dial(c, "1001")
        a.flash()
        s.run(0.5)
        b.on_hook()
        s.run(0.5)
        self.assertEqual(self.modes(a), ["sendrecv"])
        self.assertEqual(self.state(A), LineState.CONNECTED)
        self.assertEqual(b.connections, ())
        self.finish()

    def test_cancel_call_waiting_for_one_call(self) -> None:
        """A dials *70 then B: during that call, C calling A hears busy instead of waiting."""
        s, a, b, c = self.s, self.a, self.b, self.c
        self.dial(a, "*70", 0.5)
        self.assertIn("L/sl", a.signals)  # the number next
        self.dial(a, "2001")
        b.off_hook()
        s.run(0.5)
        self.dial(c, "1001")
        self.assertIn("L/bz", c.signals)
        self.assertEqual(self.modes(a), ["sendrecv"])
        self.finish()

    def test_call_waiting_off(self) -> None:
        """A line without call waiting is busy when in a call."""
        s, a, b, c = self.s, self.a, self.b, self.c
        s.control.services.change(s.control.registry.endpoint(A), call_waiting=False)
        self.talk(a, b, "2001")
        self.dial(c, "1001")
        self.assertIn("L/bz", c.signals)
        self.finish()

    def test_flash_while_ringback_is_ignored(self) -> None:
        """A flash while the callee still rings has nothing to do: no tone, the call goes on."""
        s, a, b = self.s, self.a, self.b
        self.dial(a, "2001")
        since = s.mark()
        a.flash()
        s.run(0.5)
        self.assertEqual(a.signals, frozenset({"G/rt"}))
        self.assertEqual(s.steps(A, since), ["NTFY O:L/hf", "RQNT R:L/hu,L/hf S:G/rt"])  # the same tone, no other
        b.off_hook()
        s.run(0.5)
        self.assertEqual(self.modes(a), ["sendrecv"])
        self.finish()


class HoldAndRecall(Base):
    def hold(self) -> None:
        """A talks with B, then flashes: B on hold, A hears recall dial tone."""
        self.talk(self.a, self.b, "2001")
        self.a.flash()
        self.s.run(0.5)
        self.assertIn("L/sl", self.a.signals)

    def back_to_b(self) -> None:
        self.assertEqual(self.state(A), LineState.CONNECTED)
        self.assertEqual(self.modes(self.a), ["sendrecv"])
        self.assertEqual(self.a.connections[0].remote_sdp, self.b.connections[0].local_sdp)

    def test_flash_twice_goes_back(self) -> None:
        """A flash puts B on hold; a second flash before dialling takes B back."""
        s, a = self.s, self.a
        self.hold()
        self.assertEqual(self.state(A), LineState.COLLECTING)
        a.flash()
        s.run(0.5)
        self.back_to_b()
        self.assertNotIn("L/sl", a.signals)
        self.finish()

    def test_hang_up_instead_of_dialling_rings_back(self) -> None:
        """A hangs up at the recall dial tone: rung back, and answering talks with B."""
        s, a = self.s, self.a
        self.hold()
        a.on_hook()
        s.run(0.5)
        self.assertTrue(a.ringing)
        a.off_hook()
        s.run(0.5)
        self.back_to_b()
        self.finish()

    def test_before_the_dial_tone_is_confirmed(self) -> None:
        """The recall dial tone's answer is late: a flash then still takes B back, a hang-up rings back."""
        s, a = self.s, self.a
        self.talk(a, self.b, "2001")
        for then in ("flash", "hang up"):
            _lose_next_rqnt_answer(s)
            a.flash()
            s.run(0.015)
            self.assertEqual(self.state(A), LineState.DIAL_TONE)
            if then == "flash":
                a.flash()
                s.run(1.0)
                self.back_to_b()
            else:
                a.on_hook()
                s.run(1.0)
                self.assertTrue(a.ringing)
                a.off_hook()
                s.run(0.5)
                self.back_to_b()
        self.finish()

    def test_consultation_busy_then_hang_up(self) -> None:
        """The party A consults is busy: A hangs up at the busy tone and is rung back for B."""
        s, a, c = self.s, self.a, self.c
        c.off_hook()
        s.run(0.5)
        self.hold()
        self.dial(a, "2002")
        self.assertIn("L/bz", a.signals)
        a.on_hook()
        s.run(0.5)
        self.assertTrue(a.ringing)
        a.off_hook()
        s.run(0.5)
        self.back_to_b()
        self.finish()

    def test_consultation_unknown_then_flash(self) -> None:
        """An unknown number at the recall dial tone: reorder, and a flash takes B back."""
        s, a = self.s, self.a
        self.hold()
        self.dial(a, "3999")
        self.assertIn("L/ro", a.signals)
        a.flash()
        s.run(0.5)
        self.back_to_b()
        self.finish()

    def test_the_talking_party_leaves_while_another_is_held(self) -> None:
        """
        A answered C's waiting call (B on hold); C hangs up: A hears busy
        tone, holding B; then B hangs up too: A hears busy tone, no call.
        """
        s, a, b, c = self.s, self.a, self.b, self.c
        self.talk(a, b, "2001")
        self.dial(c, "1001")
        a.flash()
        s.run(0.5)
        c.on_hook()
        s.run(0.5)
        self.assertEqual(self.state(A), LineState.HOLDING)
        self.assertIn("L/bz", a.signals)
        b.on_hook()
        s.run(0.5)
        self.assertEqual(self.state(A), LineState.BUSY)
        self.assertEqual(a.connections, ())
        self.finish()

    def test_holding_then_hang_up(self) -> None:
        """A holds B alone and hangs up: rung back; B gives up while it rings: A is idle again."""
        s, a, b, c = self.s, self.a, self.b, self.c
        self.talk(a, b, "2001")
        self.dial(c, "1001")
        a.flash()
        s.run(0.5)
        c.on_hook()
        s.run(0.5)
        a.on_hook()
        s.run(0.5)
        self.assertEqual(self.state(A), LineState.RECALLING)
        self.assertTrue(a.ringing)
        b.on_hook()
        s.run(0.5)
        self.assertFalse(a.ringing)
        self.assertEqual(self.state(A), LineState.IDLE)
        self.finish()

    def test_recall_unanswered(self) -> None:
        """Nobody answers the recall: after recall_timeout the held call ends, the line is idle."""
        s, a, b = self.s, self.a, self.b
        self.hold()
        a.on_hook()
        s.run(0.5)
        self.assertTrue(a.ringing)
        s.run(61)
        self.assertFalse(a.ringing)
        self.assertEqual(b.connections, ())
        self.finish()
        self.assertEqual(self.records()[-1][2], "no-answer")


class ThreeWay(Base):
    def test_join_then_a_party_leaves(self) -> None:
        """
        A talks with B, flashes (B on hold, recall dial tone), dials C, C
        answers, A flashes again: A's two connections are in confrnce mode
        (its gateway mixes them). B hangs up: A and C talk on.
        """
        s, a, b, c = self.s, self.a, self.b, self.c
        self.talk(a, b, "2001")
        since = s.mark()
        a.flash()
        s.run(0.5)
        self.assertIn("L/sl", a.signals)
        self.assertEqual(self.state(A), LineState.COLLECTING)
        self.dial(a, "2002")
        self.assertTrue(c.ringing)
        c.off_hook()
        s.run(0.5)
        a.flash()
        s.run(0.5)
        self.assertEqual(self.state(A), LineState.CONFERENCE)
        self.assertEqual(self.modes(a), ["confrnce", "confrnce"])
        self.assertEqual((self.modes(b), self.modes(c)), (["sendrecv"], ["sendrecv"]))
        self.assertEqual(s.steps(A, since), [
            "NTFY O:L/hf",
            "RQNT R:L/hu,L/hf,D/[0-9#*T] S:L/sl",  # recall dial tone, digits, flash
            "MDCX M:inactive",  # B held
            "NTFY O:D/2,D/0,D/0,D/2",
            "CRCX M:recvonly R:L/hu,L/hf S:G/rt",  # ringback from the CRCX on
            "MDCX M:sendrecv R:L/hu,L/hf",
            "NTFY O:L/hf",
            "RQNT R:L/hu,L/hf",
            "MDCX M:confrnce",
            "MDCX M:confrnce",
        ])
        self.assertEqual(len(self.events(CallsJoined)), 1)
        b.on_hook()
        s.run(0.5)
        self.assertEqual(self.state(A), LineState.CONNECTED)
        self.assertEqual(self.modes(a), ["sendrecv"])
        self.finish()
        self.assertEqual(sorted(self.records()), [("1001", "2001", "normal"), ("1001", "2002", "normal")])

    def test_initiator_hangs_up_releases_both(self) -> None:
        """The initiator of a three-way call hangs up: both calls end (no transfer-on-hangup)."""
        s, a, b, c = self.s, self.a, self.b, self.c
        self.talk(a, b, "2001")
        a.flash()
        s.run(0.5)
        self.dial(a, "2002")
        c.off_hook()
        s.run(0.5)
        a.flash()
        s.run(0.5)
        a.on_hook()
        s.run(1.0)
        self.assertEqual((b.connections, c.connections), ((), ()))
        self.assertIn("L/bz", b.signals)
        self.finish()

    def test_transfer_on_hangup(self) -> None:
        """With transfer-on-hangup, the initiator's hang-up leaves B and C talking to each other."""
        s, a, b, c = self.s, self.a, self.b, self.c
        s.control.services.change(s.control.registry.endpoint(A), transfer_on_hangup=True)
        self.talk(a, b, "2001")
        a.flash()
        s.run(0.5)
        self.dial(a, "2002")
        c.off_hook()
        s.run(0.5)
        a.flash()
        s.run(0.5)
        a.on_hook()
        s.run(1.0)
        self.assertEqual(b.connections[0].remote_sdp, c.connections[0].local_sdp)
        self.assertEqual(c.connections[0].remote_sdp, b.connections[0].local_sdp)
        self.finish()

    def test_join_while_the_third_party_rings(self) -> None:
        """A flash while C still rings joins already: when C answers, the three hear each other."""
        s, a, b, c = self.s, self.a, self.b, self.c
        self.talk(a, b, "2001")
        a.flash()
        s.run(0.5)
        self.dial(a, "2002")
        self.assertTrue(c.ringing)
        a.flash()
        s.run(0.5)
        self.assertEqual(self.state(A), LineState.CONFERENCE)
        c.off_hook()
        s.run(0.5)
        self.assertEqual(self.modes(a), ["confrnce", "confrnce"])
        self.assertEqual(self.modes(c), ["sendrecv"])
        self.finish()

    def test_without_three_way_a_flash_gives_the_consultation_up(self) -> None:
        """Three-way off (transfer on): a flash while C rings ends that call and takes B back."""
        s, a, b, c = self.s, self.a, self.b, self.c
        s.control.services.change(s.control.registry.endpoint(A), three_way=False)
        self.talk(a, b, "2001")
        a.flash()
        s.run(0.5)
        self.dial(a, "2002")
        a.flash()
        s.run(0.5)
        self.assertFalse(c.ringing)
        self.assertEqual(self.state(A), LineState.CONNECTED)
        self.assertEqual(a.connections[0].remote_sdp, b.connections[0].local_sdp)
        self.finish()

    def test_flash_drops_the_third_party(self) -> None:
        """In a three-way call, a flash drops the party added last: back to A and B."""
        s, a, b, c = self.s, self.a, self.b, self.c
        self.talk(a, b, "2001")
        a.flash()
        s.run(0.5)
        self.dial(a, "2002")
        c.off_hook()
        s.run(0.5)
        a.flash()
        s.run(0.5)
        a.flash()
        s.run(0.5)
        self.assertEqual(self.state(A), LineState.CONNECTED)
        self.assertEqual(self.modes(a), ["sendrecv"])
        self.assertEqual(c.connections, ())
        self.assertEqual(a.connections[0].remote_sdp, b.connections[0].local_sdp)
        self.finish()

    def test_third_party_busy_then_back(self) -> None:
        """The third party is busy: busy tone, and a flash brings the held call back."""
        s, a, b, c = self.s, self.a, self.b, self.c
        c.off_hook()
        s.run(0.5)
        self.talk(a, b, "2001")
        a.flash()
        s.run(0.5)
        self.dial(a, "2002")
        self.assertIn("L/bz", a.signals)
        a.flash()
        s.run(0.5)
        self.assertEqual(self.state(A), LineState.CONNECTED)
        self.assertEqual(self.modes(a), ["sendrecv"])
        self.finish()
        self.assertIn(("1001", "2002", "busy"), self.records())

    def test_third_party_unknown(self) -> None:
        """An unknown third number: reorder; hanging up rings the line back for the held call."""
        s, a, b = self.s, self.a, self.b
        self.talk(a, b, "2001")
        a.flash()
        s.run(0.5)
        self.dial(a, "3999")
        self.assertIn("L/ro", a.signals)
        a.on_hook()
        s.run(0.5)
        self.assertTrue(a.ringing)
        a.off_hook()
        s.run(0.5)
        self.assertEqual(a.connections[0].remote_sdp, b.connections[0].local_sdp)
        self.finish()

    def test_gateway_error_on_the_consultation_call(self) -> None:
        """C's gateway refuses the CRCX: the consultation call fails, the held call is kept."""
        s, a, b = self.s, self.a, self.b
        rogue = s.network.bind(("127.0.0.9", 2727), Probe())
        for n in (1, 2):  # C's endpoint is full: 540
            rogue.write(encode(Command.create(
                Verb.CRCX, 900 + n, C, call_id="beef", mode=ConnectionMode.INACTIVE)), ("127.0.0.3", 2427))
        s.run(0.2)
        self.talk(a, b, "2001")
        a.flash()
        s.run(0.5)
        self.dial(a, "2002")
        self.assertIn("L/ro", a.signals)
        a.flash()
        s.run(0.5)
        self.assertEqual(self.modes(a), ["sendrecv"])
        rogue.write(encode(Command.create(Verb.DLCX, 910, C, call_id="beef")), ("127.0.0.3", 2427))
        s.run(0.2)
        self.finish()
        self.assertIn(("1001", "2002", "gateway-error"), self.records())


class Transfer(Base):
    def test_consultative(self) -> None:
        """
        A talks with B, consults C (who answers), hangs up: B and C talk,
        each connection's remote SDP the other's local; the records show
        the transfer.
        """
        s, a, b, c = self.s, self.a, self.b, self.c
        self.talk(a, b, "2001")
        a.flash()
        s.run(0.5)
        self.dial(a, "2002")
        c.off_hook()
        s.run(0.5)
        since = s.mark()
        a.on_hook()
        s.run(1.0)
        self.assertEqual(a.connections, ())
        self.assertEqual(b.connections[0].remote_sdp, c.connections[0].local_sdp)
        self.assertEqual(c.connections[0].remote_sdp, b.connections[0].local_sdp)
        self.assertEqual((self.modes(b), self.modes(c)), (["sendrecv"], ["sendrecv"]))
        self.assertEqual(s.steps(B, since), ["MDCX M:sendrecv"])
        [event] = self.events(CallTransferred)
        self.assertEqual(event.by, A)
        self.finish()
        records = {r.call_id: r for r in s.recorder.records}
        new = records[event.call.call_id]
        self.assertEqual((new.caller, new.callee, new.transferred_by), ("2001", "2002", A))
        self.assertEqual({records[i].cause for i in event.calls}, {ReleaseCause.TRANSFERRED})
        self.assertTrue(all(records[i].related == (new.call_id,) for i in event.calls))

    def test_blind(self) -> None:
        """A hangs up while C still rings: B hears ringback until C answers, then they talk."""
        s, a, b, c = self.s, self.a, self.b, self.c
        self.talk(a, b, "2001")
        a.flash()
        s.run(0.5)
        self.dial(a, "2002")
        a.on_hook()
        s.run(1.0)
        self.assertIn("G/rt", b.signals)
        self.assertEqual(self.state(B), LineState.RINGBACK)
        self.assertTrue(c.ringing)
        c.off_hook()
        s.run(0.5)
        self.assertEqual(self.state(B), LineState.CONNECTED)
        self.assertEqual(b.connections[0].remote_sdp, c.connections[0].local_sdp)
        self.finish()

    def test_transfer_off_recalls(self) -> None:
        """Without transfer, hanging up with a consultation call ends it and rings the line back for B."""
        s, a, b, c = self.s, self.a, self.b, self.c
        s.control.services.change(s.control.registry.endpoint(A), transfer=False)
        self.talk(a, b, "2001")
        a.flash()
        s.run(0.5)
        self.dial(a, "2002")
        c.off_hook()
        s.run(0.5)
        a.on_hook()
        s.run(1.0)
        self.assertTrue(a.ringing)
        self.assertEqual(c.connections, ())
        a.off_hook()
        s.run(0.5)
        self.assertEqual(a.connections[0].remote_sdp, b.connections[0].local_sdp)
        self.finish()


class Forwarding(Base):
    def test_star_codes_set_and_clear(self) -> None:
        """*72 then a number: stutter dial tone, then G/cf; calls go there; *73 clears it."""
        s, a, b, c = self.s, self.a, self.b, self.c
        since = s.mark()
        self.dial(b, "*72", 0.5)
        self.dial(b, "2002", 0.2)
        self.assertIn("G/cf", b.signals)
        self.assertEqual(s.steps(B, since)[-3:], ["RQNT R:L/hu,D/[0-9#*T] S:L/sl", "NTFY O:D/2,D/0,D/0,D/2",
                                                  "RQNT R:L/hu S:G/cf"])
        self.assertEqual(s.control.registry.endpoint(B).services.forward_always, "2002")
        self.assertEqual(len(self.events(LineServicesChanged)), 1)
        b.on_hook()
        s.run(0.5)
        self.dial(a, "2001")
        self.assertFalse(b.ringing)
        self.assertTrue(c.ringing)
        c.off_hook()
        s.run(0.5)
        a.on_hook()
        s.run(0.5)
        self.dial(b, "*73", 0.2)
        self.assertIn("G/cf", b.signals)
        self.assertIsNone(s.control.registry.endpoint(B).services.forward_always)
        self.finish()
        record = s.recorder.records[0]
        self.assertEqual((record.callee, record.forwarded_from), ("2002", B))
        self.assertEqual(self.events(CallForwarded)[0].reason, "always")

    def test_on_busy_and_dnd(self) -> None:
        """Forward on busy sends a caller on; do-not-disturb gives busy, or forwards on busy when set."""
        s, a, b, c = self.s, self.a, self.b, self.c
        services = s.control.services
        services.change(s.control.registry.endpoint(B), forward_busy="2002")
        b.off_hook()
        s.run(0.5)
        self.dial(a, "2001")
        self.assertTrue(c.ringing)
        a.on_hook()
        b.on_hook()
        s.run(0.5)
        self.dial(c, "*78", 0.2)  # C: do not disturb
        c.on_hook()
        s.run(0.5)
        self.dial(a, "2002")
        self.assertIn("L/bz", a.signals)
        self.assertEqual(s.recorder.records[-1].cause, ReleaseCause.DND)
        a.on_hook()
        s.run(0.5)
        services.change(s.control.registry.endpoint(C), forward_busy="2001")
        self.dial(a, "2002")
        self.assertTrue(b.ringing)
        self.finish()

    def test_on_no_answer(self) -> None:
        """B lets it ring: after 20 s C rings instead, A still hears ringback; C answers."""
        s, a, b, c = self.s, self.a, self.b, self.c
        s.control.services.change(s.control.registry.endpoint(B), forward_no_answer="2002")
        self.dial(a, "2001")
        s.run(19)
        self.assertTrue(b.ringing)
        s.run(1.5)
        self.assertFalse(b.ringing)
        self.assertEqual(b.connections, ())
        self.assertTrue(c.ringing)
        self.assertIn("G/rt", a.signals)
        c.off_hook()
        s.run(0.5)
        self.assertEqual(a.connections[0].remote_sdp, c.connections[0].local_sdp)
        self.finish()
        [record] = s.recorder.records
        self.assertEqual((record.callee, record.forwarded_from, record.cause), ("2002", B, ReleaseCause.NORMAL))

    def test_loops_and_chains_are_bounded(self) -> None:
        """A forwarding loop is refused at once with reorder; so is a chain longer than the limit."""
        s, a = self.s, self.a
        services, registry = s.control.services, s.control.registry
        services.change(registry.endpoint(B), forward_always="2002")
        services.change(registry.endpoint(C), forward_always="2001")
        self.dial(a, "2001")
        self.assertIn("L/ro", a.signals)
        self.assertEqual(s.recorder.records[-1].cause, ReleaseCause.FORWARD_LOOP)
        a.on_hook()
        s.run(0.5)
        chain = ["2001", "2002", "2003", "2004", "1002", "1003", "1004"]
        for here, there in zip(chain, chain[1:]):
            services.change(s.control.line(_endpoint(here)).endpoint, forward_always=there)
        self.dial(a, "2001")
        self.assertIn("L/ro", a.signals)
        self.assertEqual(s.recorder.records[-1].cause, ReleaseCause.FORWARD_LOOP)
        self.assertEqual(s.control.counters["forward_loops"], 2)
        self.finish()


class MessageWaiting(Base):
    def test_indicator_stutter_and_refresh(self) -> None:
        """
        A message waits: the idle line shows L/vmwi at once, its next
        off-hook hears stutter dial tone (L/sl), and after its gateway
        restarts the indicator is shown again (RFC 3660).
        """
        s, a = self.s, self.a
        s.control.operator.set_message_waiting(A, True)
        s.run(0.5)
        self.assertIn("L/vmwi", a.signals)
        a.off_hook()
        s.run(0.5)
        self.assertIn("L/sl", a.signals)
        a.on_hook()
        s.run(0.5)
        s.gw1.restart()
        s.run(2.0)
        self.assertIn("L/vmwi", a.signals)
        s.control.operator.set_message_waiting("1001", False)  # by number too
        s.run(0.5)
        self.assertNotIn("L/vmwi", a.signals)
        self.finish()


class Faces(Base):
    def test_the_operator_changes_services(self) -> None:
        """set_line_services by endpoint or number; unknown lines, fields and bad values are refused."""
        from mgcpswitch.errors import CallControlError

        s = self.s
        view = self.successResultOf(s.service.set_line_services("2001", {"forward_busy": "2002", "dnd": True}))
        self.assertEqual((view.services.forward_busy, view.services.dnd), ("2002", True))
        self.assertEqual(s.service.get_endpoint(B).services.dnd, True)
        for name, changes in (("9999", {"dnd": True}), (B, {"dnd": "yes"}), (B, {"forward_always": "20x1"}),
                              (B, {"colour": "red"}), (B, {"name": 'a "b"'})):
            self.failureResultOf(s.service.set_line_services(name, changes), CallControlError)
        self.finish()

    def test_a_voicemail_plugin_drives_message_waiting(self) -> None:
        """An observer providing IMessageWaitingSource is handed IMessageWaiting at start and sets the flag."""
        from zope.interface import implementer
        from zope.interface.verify import verifyObject

        from mgcpswitch.agent.dialplan import StaticDialPlan
        from mgcpswitch.agent.service import CallControlService
        from mgcpswitch.interfaces import ICallObserver, IMessageWaiting, IMessageWaitingSource

        @implementer(ICallObserver, IMessageWaitingSource)
        class Voicemail:
            name = "voicemail"
            mwi: Any = None

            def call_event(self, event: Any) -> None:
                pass

            def attach(self, message_waiting: Any) -> None:
                self.mwi = message_waiting

        s = self.s
        s.service.stopService()
        voicemail = Voicemail()
        verifyObject(IMessageWaitingSource, voicemail)
        service = CallControlService(s.reactor, s.settings, StaticDialPlan.from_settings(s.settings), s.profiles,
                                     [voicemail])
        service.startService()
        self.addCleanup(service.stopService)
        s.run(3.0)
        verifyObject(IMessageWaiting, voicemail.mwi)
        voicemail.mwi.set_message_waiting("1001", True)
        s.run(0.5)
        self.assertIn("L/vmwi", self.a.signals)


class CallerId(Base):
    def test_name_and_private(self) -> None:
        """The caller's name from its services; a private line shows P for both."""
        s, a, b = self.s, self.a, self.b
        s.control.services.change(s.control.registry.endpoint(A), name="Ada Lovelace")
        self.dial(a, "2001")
        self.assertEqual(b.caller_id[1:], ("1001", "Ada Lovelace"))
        a.on_hook()
        s.run(0.5)
        s.control.services.change(s.control.registry.endpoint(A), private=True)
        self.dial(a, "2001")
        self.assertEqual(b.caller_id[1:], ("P", "P"))
        self.finish()


def _lose_next_rqnt_answer(s: Switch) -> None:
    """The gateway's next answer to an RQNT of the agent is lost (it is retransmitted later)."""
    txids: set[bytes] = set()

    def answer(data: bytes) -> bool:
        for line in data.splitlines():
            if line.startswith(b"RQNT "):
                txids.add(line.split()[1])
        return data[:3].isdigit() and data.split()[1] in txids

    s.network.drop_next(answer)


def _endpoint(number: str) -> str:
    return f"aaln/{int(number[1:])}@rgw{number[0]}"




class Soak(SynchronousTestCase):
    def test_services_at_random_with_loss(self) -> None:
        """
        2,000 calls mixing the services at random (basic calls, call
        waiting and swaps, three-way, blind and consultative transfers,
        forwarding set by star codes, do-not-disturb) with 20 % datagram
        loss each way: afterwards no connection is left on either gateway,
        every line is idle, and every call has exactly one record.
        """
        import random

        s = Switch(lines=8, loss=0.2, seed=13, rto_max=1.0, no_answer=30, ended_calls_kept=1)
        self.addCleanup(s.stop)
        rng = random.Random(7)
        numbers = [f"{g}{n:03d}" for g in (1, 2) for n in range(1, 9)]
        phone = s.phone

        def idle_numbers() -> list[str]:
            return [n for n in numbers if phone(n).hook == "on" and not phone(n).ringing]

        def call(caller: str, callee: str, answer: bool = True) -> None:
            p = phone(caller)
            if p.hook == "on":
                p.off_hook()
                s.run(1.0)
            p.dial(callee, gap=0.05)
            s.run(2.0)
            if answer and phone(callee).ringing:
                phone(callee).off_hook()
                s.run(1.0)

        def hang_up_all() -> None:
            for n in numbers:
                phone(n).on_hook()
            s.run(3.0)

        for round_ in range(1350):
            free = idle_numbers()
            if len(free) < 4:
                hang_up_all()
                continue
            a, b, c = rng.sample(free, 3)
            kind = rng.random()
            if kind < 0.25:  # basic
                call(a, b, answer=rng.random() < 0.8)
                s.run(rng.uniform(0.5, 2))
                phone(rng.choice((a, b))).on_hook()
                s.run(1.0)
            elif kind < 0.45:  # call waiting, maybe answered and swapped
                call(a, b)
                call(c, a, answer=False)
                for _ in range(rng.randrange(3)):
                    phone(a).flash()
                    s.run(1.0)
                phone(rng.choice((a, b, c))).on_hook()
                s.run(1.5)
            elif kind < 0.65:  # three-way
                call(a, b)
                phone(a).flash()
                s.run(1.0)
                call(a, c, answer=rng.random() < 0.8)
                phone(a).flash()
                s.run(1.0)
                phone(rng.choice((a, b, c))).on_hook()
                s.run(1.5)
            elif kind < 0.85:  # transfer, blind or consultative
                call(a, b)
                phone(a).flash()
                s.run(1.0)
                call(a, c, answer=rng.random() < 0.5)
                phone(a).on_hook()
                s.run(2.0)
                if phone(c).ringing:
                    phone(c).off_hook()
                    s.run(1.0)
            else:  # forwarding and do-not-disturb, by star codes
                code = rng.choice(("*72", "*90", "*92", "*78"))
                p = phone(b)
                p.off_hook()
                s.run(1.0)
                p.dial(code, gap=0.05)
                s.run(1.5)
                if code != "*78":
                    p.dial(c, gap=0.05)
                    s.run(1.5)
                p.on_hook()
                s.run(1.0)
                call(a, b, answer=False)
                s.run(rng.choice((2.0, 25.0)))
                for n in (a, b, c):
                    if phone(n).ringing:
                        phone(n).off_hook()
                        s.run(1.0)
                        break
                hang_up_all()
                p.off_hook()
                s.run(1.0)
                p.dial("*73" if code == "*72" else "*91" if code == "*90" else "*93" if code == "*92" else "*79",
                       gap=0.05)
                s.run(1.5)
                p.on_hook()
                s.run(1.0)
            if round_ % 10 == 9:
                hang_up_all()
        hang_up_all()
        s.run(60)
        s.network.loss = 0.0
        hang_up_all()
        s.run(90)
        self.assertEqual(s.gw1.connection_count() + s.gw2.connection_count(), 0, "leaked connections")
        self.assertTrue(s.idle(), [str(s.line(f"aaln/{n}@rgw{g}")) for g in (1, 2) for n in range(1, 9)
                                   if s.line(f"aaln/{n}@rgw{g}").state is not LineState.IDLE])
        self.assertEqual(s.control.calls(), [])
        records = s.recorder.records
        self.assertEqual(len(records), s.control.counters["calls_started"])
        self.assertEqual(len({r.call_id for r in records}), len(records))
        self.assertGreaterEqual(len(records), 2000)
        counters = s.control.counters
        for service in ("calls_waiting", "conferences", "transfers", "feature_codes"):
            self.assertGreater(counters[service], 20, service)
        self.assertGreater(s.service.protocol.transactions.counters["retransmissions"], 2000)
