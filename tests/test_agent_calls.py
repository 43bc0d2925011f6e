"""
The call agent end to end on the in-memory network: two simulated gateways
of eight lines each, every call outcome as its own test, each ending with
every connection the switch created deleted and both lines idle.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mgcpswitch.agent.model import CallState, GatewayState, Hook, LineState, ReleaseCause, RouteDecision, RouteRequest
from mgcpswitch.errors import CallControlError
from mgcpswitch.interfaces import ICallControl, ICommandHandler, IPeerListener
from mgcpswitch.mgcp import Command, ConnectionMode, RestartMethod, Verb, encode

from .support.switch import Probe, Switch

A, B = "aaln/1@rgw1", "aaln/3@rgw2"


class Base(SynchronousTestCase):
    def setUp(self) -> None:
        self.switch = Switch()
        self.addCleanup(self.switch.stop)

    def assertIdle(self) -> None:
        self.assertTrue(self.switch.idle(), self.describe())
        self.assertEqual(self.switch.control.calls(), [])

    def describe(self) -> str:
        s = self.switch
        return "; ".join(
            f"{line.name} {line.hook} {sorted(line.signals)} {len(line.connections)} conn / "
            f"{s.line(line.name).state.value}"
            for gateway in (s.gw1, s.gw2) for line in gateway.lines
            if line.hook != "on" or line.signals or line.connections
            or s.line(line.name).state is not LineState.IDLE
        )

    def dial(self, caller: str, number: str) -> Any:
        phone = self.switch.phone(caller)
        phone.off_hook()
        self.switch.run(0.5)
        self.assertIn("L/dl", phone.signals)
        phone.dial(number, gap=0.1)
        self.switch.run(len(number) * 0.1 + 0.5)
        return phone

    def record(self) -> Any:
        [record] = self.switch.recorder.records
        return record


class Registration(Base):
    def test_restart_audit_and_arm_ladder(self) -> None:
        """RSIP restart, then an AUEP and an RQNT per line: each line idle and armed."""
        ladder = self.switch.ladder("127.0.0.2")
        self.assertEqual(ladder[:2], ["RSIP *@rgw1", "200"])
        self.assertEqual(ladder.count("AUEP aaln/1@rgw1"), 1)
        self.assertEqual(ladder.count("RQNT aaln/1@rgw1"), 1)
        self.assertTrue(self.switch.registered())
        self.assertIdle()
        for phone in self.switch.gw1.lines:
            self.assertEqual([str(r.name) for r in phone.requested_events], ["L/hd"])

    def test_interfaces(self) -> None:
        """The service provides ICallControl; its brain is the command handler and peer listener."""
        verifyObject(ICallControl, self.switch.service)
        verifyObject(ICommandHandler, self.switch.control)
        verifyObject(IPeerListener, self.switch.control)


class BasicCall(Base):
    def test_call_between_gateways_and_its_ladder(self) -> None:
        """The full basic call of digest §7, with the exact MGCP ladder on the caller's gateway."""
        s = self.switch
        caller = self.dial("1001", "2003")
        callee = s.phone("2003")
        self.assertTrue(callee.ringing)
        self.assertEqual(callee.caller_id[1], "1001")
        self.assertIn("G/rt", caller.signals)
        self.assertEqual(s.line(A).state, LineState.RINGBACK)
        self.assertEqual(s.line(B).state, LineState.RINGING)
        [conn_a] = caller.connections
        self.assertEqual(conn_a.mode, "recvonly")
        callee.off_hook()
        s.run(0.5)
        [conn_a] = caller.connections
        [conn_b] = callee.connections
        self.assertEqual((conn_a.mode, conn_b.mode), ("sendrecv", "sendrecv"))
        self.assertEqual(conn_a.remote_sdp, conn_b.local_sdp)
        self.assertEqual(conn_b.remote_sdp, conn_a.local_sdp)
        self.assertEqual(conn_a.call_id, conn_b.call_id)
        self.assertFalse(caller.signals)
        self.assertEqual(s.line(A).state, LineState.CONNECTED)
        [call] = s.service.list_calls()
        self.assertEqual(call.state, CallState.CONNECTED)
        caller.on_hook()
        s.run(0.5)
        self.assertIn("L/bz", callee.signals)
        self.assertEqual(s.line(B).state, LineState.BUSY)
        callee.on_hook()
        s.run(0.5)
        self.assertIdle()
        record = self.record()
        self.assertEqual((record.caller, record.callee, record.cause), ("1001", "2003", ReleaseCause.NORMAL))
        self.assertEqual(record.codec, "PCMU")
        self.assertLess(record.start, record.answer)
        self.assertLess(record.answer, record.end)
        self.assertEqual(set(record.caller_stats), {"PS", "OS", "PR", "OR", "PL", "JI", "LA"})
        # The caller's side, after registration: every command and its answer.
        ladder = s.ladder("127.0.0.2")
        ladder = ladder[ladder.index("NTFY aaln/1@rgw1"):]
        self.assertEqual(ladder, [
            "NTFY aaln/1@rgw1", "200",  # off hook
            "RQNT aaln/1@rgw1", "200",  # dial tone, digit map, watch digits and hang-up
            "NTFY aaln/1@rgw1", "200",  # the digits as the map matched them
            "CRCX aaln/1@rgw1", "200",  # recvonly, ringback; watch hang-up
            "MDCX aaln/1@rgw1", "200",  # answered: the callee's SDP, sendrecv, ringback off
            "NTFY aaln/1@rgw1", "200",  # hang-up
            "DLCX aaln/1@rgw1", "250",  # delete, re-arm for off-hook
        ])

    def test_embedded_dial_tone_ladder(self) -> None:
        """
        With embedded_dial_tone the idle request carries the dial-tone request
        (RFC 3435 §2.3.3): the first NTFY already has the off-hook and the
        digits; two transactions fewer, the rest of the call unchanged.
        """
        s = Switch(embedded=True)
        self.addCleanup(s.stop)
        caller = s.phone("1001")
        [armed] = caller.requested_events
        self.assertEqual(str(armed), "L/hd(A,E(R(L/hu(N), D/[0-9#*T](D)),S(L/dl)))")
        caller.off_hook()
        s.run(0.5)
        self.assertIn("L/dl", caller.signals)
        self.assertEqual(s.line(A).state, LineState.IDLE)  # not told yet
        caller.dial("2003", gap=0.1)
        s.run(1.0)
        callee = s.phone("2003")
        self.assertTrue(callee.ringing)
        callee.off_hook()
        s.run(0.5)
        caller.on_hook()
        s.run(0.5)
        callee.on_hook()
        s.run(0.5)
        self.assertTrue(s.idle())
        ladder = s.ladder("127.0.0.2")
        ladder = ladder[ladder.index("NTFY aaln/1@rgw1"):]
        self.assertEqual(ladder, [
            "NTFY aaln/1@rgw1", "200",  # O: L/hd, D/2, D/0, D/0, D/3
            "CRCX aaln/1@rgw1", "200",
            "MDCX aaln/1@rgw1", "200",
            "NTFY aaln/1@rgw1", "200",
            "DLCX aaln/1@rgw1", "250",  # re-arms with the embedded request again
        ])
        self.assertEqual(str(caller.requested_events[0]), str(armed))
        [record] = s.recorder.records
        self.assertEqual(record.cause, ReleaseCause.NORMAL)

    def test_embedded_dial_tone_originate_to_a_dialling_line(self) -> None:
        """With embedded dial tone, click-to-dial to a line that is dialling is refused by its 401."""
        s = Switch(embedded=True)
        self.addCleanup(s.stop)
        dialling = s.phone("1001")
        dialling.off_hook()
        s.run(0.5)
        d = s.service.originate(A, B)
        s.run(0.5)
        self.failureResultOf(d, CallControlError)
        self.assertIn("L/dl", dialling.signals)  # left alone
        dialling.dial("2003", gap=0.1)
        s.run(1.0)
        self.assertTrue(s.phone("2003").ringing)  # its own call goes on
        dialling.on_hook()
        s.run(1.0)
        self.assertTrue(s.idle())

    def test_call_on_one_gateway(self) -> None:
        """A call between two lines of the same gateway connects and releases."""
        s = self.switch
        caller = self.dial("1002", "1005")
        callee = s.phone("1005")
        self.assertTrue(callee.ringing)
        callee.off_hook()
        s.run(0.5)
        self.assertEqual(s.gw1.connection_count(), 2)
        callee.on_hook()
        s.run(0.5)
        self.assertIn("L/bz", caller.signals)
        caller.on_hook()
        s.run(0.5)
        self.assertIdle()
        self.assertEqual(self.record().cause, ReleaseCause.NORMAL)

    def test_dlcx_statistics_kept_in_the_record(self) -> None:
        """The P: statistics of both DLCXs end up in the CDR."""
        s = self.switch
        caller = self.dial("1001", "2003")
        s.phone("2003").off_hook()
        s.run(1.0)
        caller.on_hook()
        s.run(0.5)
        s.phone("2003").on_hook()
        s.run(0.5)
        record = self.record()
        self.assertIn("PS", record.caller_stats)
        self.assertIn("PS", record.callee_stats)


class Outcomes(Base):
    def test_callee_busy(self) -> None:
        """Calling a line that is off hook gives busy tone; no connection is made."""
        s = self.switch
        busy = s.phone("2003")
        busy.off_hook()
        s.run(0.5)
        caller = self.dial("1001", "2003")
        self.assertIn("L/bz", caller.signals)
        self.assertEqual(s.line(A).state, LineState.BUSY)
        self.assertEqual(caller.connections, ())
        caller.on_hook()
        busy.on_hook()
        s.run(0.5)
        self.assertIdle()
        self.assertEqual(self.record().cause, ReleaseCause.BUSY)

    def test_unknown_number(self) -> None:
        """A number the dial plan does not know gives reorder tone."""
        s = self.switch
        caller = self.dial("1001", "3999")
        self.assertIn("L/ro", caller.signals)
        self.assertEqual(s.line(A).state, LineState.REORDER)
        caller.on_hook()
        s.run(0.5)
        self.assertIdle()
        self.assertEqual(self.record().cause, ReleaseCause.UNKNOWN_NUMBER)

    def test_no_answer(self) -> None:
        """Ringing past no_answer_timeout ends the call: reorder for the caller, ringing stops."""
        s = self.switch
        caller = self.dial("1001", "2003")
        callee = s.phone("2003")
        s.run(29.0)
        self.assertTrue(callee.ringing)
        s.run(1.5)
        self.assertFalse(callee.ringing)
        self.assertIn("L/ro", caller.signals)
        self.assertEqual(s.gw1.connection_count() + s.gw2.connection_count(), 0)
        caller.on_hook()
        s.run(0.5)
        self.assertIdle()
        self.assertEqual(self.record().cause, ReleaseCause.NO_ANSWER)

    def test_abandon_while_dialling(self) -> None:
        """Hanging up after dial tone, before the number is complete, leaves the line idle."""
        s = self.switch
        phone = s.phone("1001")
        phone.off_hook()
        s.run(0.5)
        phone.dial("20", gap=0.1)
        s.run(0.5)
        phone.on_hook()
        s.run(0.5)
        self.assertIdle()
        self.assertEqual(s.recorder.records, [])

    def test_abandon_while_ringing(self) -> None:
        """The caller hangs up while the callee rings: both connections deleted, both idle."""
        s = self.switch
        caller = self.dial("1001", "2003")
        self.assertTrue(s.phone("2003").ringing)
        caller.on_hook()
        s.run(0.5)
        self.assertFalse(s.phone("2003").ringing)
        self.assertIdle()
        self.assertEqual(self.record().cause, ReleaseCause.ABANDONED)

    def test_callee_picks_up_while_its_ringing_is_cancelled(self) -> None:
        """
        The race the soak found: the caller abandons, our DLCX (re-arming the
        callee for off-hook) executes but its answer is lost, the callee picks
        up and notifies.  When the replayed answer arrives, the callee gets
        dial tone instead of being left waiting for a request.
        """
        s = self.switch
        caller = self.dial("1001", "2003")
        callee = s.phone("2003")
        s.network.drop_next(lambda data: data.startswith(b"250 "))
        caller.on_hook()
        s.run(0.05)
        self.assertEqual(callee.connections, ())  # the DLCX ran on the gateway
        callee.off_hook()
        s.run(2.0)
        self.assertIn("L/dl", callee.signals)
        self.assertEqual(s.line(B).state, LineState.COLLECTING)
        callee.on_hook()
        s.run(0.5)
        self.assertIdle()

    def test_callee_hangs_up_first(self) -> None:
        """After answer the callee hangs up: the caller hears busy tone until it hangs up."""
        s = self.switch
        caller = self.dial("1001", "2003")
        callee = s.phone("2003")
        callee.off_hook()
        s.run(0.5)
        callee.on_hook()
        s.run(0.5)
        self.assertIn("L/bz", caller.signals)
        self.assertEqual(caller.connections, ())
        caller.on_hook()
        s.run(0.5)
        self.assertIdle()
        self.assertEqual(self.record().cause, ReleaseCause.NORMAL)

    def test_gateway_error_mid_setup(self) -> None:
        """The callee's gateway refuses the CRCX (540): the caller's connection is deleted, reorder."""
        s = self.switch
        # Fill the callee line's connections from a rogue source so our CRCX gets 540.
        rogue = s.network.bind(("127.0.0.9", 2727), Probe())
        for n in (1, 2):
            rogue.write(encode(Command.create(
                Verb.CRCX, 900 + n, B, call_id="beef", mode=ConnectionMode.INACTIVE,
            )), ("127.0.0.3", 2427))
        s.run(0.2)
        self.assertEqual(s.gw2.connection_count(), 2)
        caller = self.dial("1001", "2003")
        self.assertIn("L/ro", caller.signals)
        self.assertEqual(caller.connections, ())
        caller.on_hook()
        s.run(0.5)
        self.assertEqual(self.record().cause, ReleaseCause.GATEWAY_ERROR)
        self.assertEqual(s.gw1.connection_count(), 0)
        self.assertEqual(s.line(A).state, LineState.IDLE)

    def test_gateway_times_out_mid_call(self) -> None:
        """
        The callee's gateway goes silent during a call: the caller's side is
        released at once; the connection left on the silent gateway is
        deleted by the audit when it answers again.
        """
        s = self.switch
        caller = self.dial("1001", "2003")
        callee = s.phone("2003")
        callee.off_hook()
        s.run(0.5)
        s.network.set_link(("127.0.0.1", 2727), ("127.0.0.3", 2427), loss=1.0)
        s.network.set_link(("127.0.0.3", 2427), ("127.0.0.1", 2727), loss=1.0)
        caller.on_hook()
        s.run(25)  # the DLCX to rgw2 times out
        self.assertEqual(s.gw1.connection_count(), 0)
        self.assertEqual(s.line(A).state, LineState.IDLE)
        self.assertEqual(s.control.gateway("rgw2").state, GatewayState.DOWN)
        self.assertEqual(self.record().cause, ReleaseCause.NORMAL)
        callee.on_hook()
        s.network.set_link(("127.0.0.1", 2727), ("127.0.0.3", 2427), loss=0.0)
        s.network.set_link(("127.0.0.3", 2427), ("127.0.0.1", 2727), loss=0.0)
        s.run(40)  # keepalive answers; audit deletes the stale connection
        self.assertEqual(s.control.gateway("rgw2").state, GatewayState.UP)
        self.assertIdle()

    def test_lost_crcx_answers_leave_no_connection(self) -> None:
        """
        Every answer to the callee's CRCX is lost (the gateway created the
        connection; the agent never learns its id): the setup times out, the
        call is released, and an audit finds and deletes the connection.
        """
        s = self.switch
        s.network.drop_next(  # the callee gateway's CRCX answers (its SDP has its address)
            lambda data: data.startswith(b"200 ") and b"IN IP4 127.0.0.3" in data, count=1000
        )
        caller = self.dial("1001", "2003")
        self.assertEqual(s.gw2.connection_count(), 1)  # created on the gateway, unknown to us
        s.run(25)
        # Timed out, or declared down first (Max2 repetitions): either way released.
        self.assertIn(self.record().cause, (ReleaseCause.GATEWAY_TIMEOUT, ReleaseCause.GATEWAY_RESTART))
        s.network._drops.clear()
        caller.on_hook()
        s.run(40)
        self.assertEqual(s.gw2.connection_count(), 0)
        self.assertGreaterEqual(s.control.counters["stale_connections"], 1)
        self.assertIdle()

    def test_gateway_restart_mid_call(self) -> None:
        """The callee's gateway restarts during a call: the call ends, its lines are re-armed."""
        s = self.switch
        caller = self.dial("1001", "2003")
        s.phone("2003").off_hook()
        s.run(0.5)
        s.gw2.restart(RestartMethod.RESTART)
        s.run(1.0)
        self.assertEqual(caller.connections, ())
        self.assertTrue({"L/bz", "L/ro"} & caller.signals)
        self.assertEqual(self.record().cause, ReleaseCause.GATEWAY_RESTART)
        caller.on_hook()
        s.phone("2003").on_hook()
        s.run(1.0)
        self.assertIdle()

    def test_gateway_deletes_a_connection(self) -> None:
        """A line failure (gateway DLCX with E:) ends the call and deletes the other side."""
        s = self.switch
        caller = self.dial("1001", "2003")
        s.phone("2003").off_hook()
        s.run(0.5)
        s.gw2.fail_line(3, 900)
        s.run(1.0)
        self.assertEqual(caller.connections, ())
        self.assertEqual(self.record().cause, ReleaseCause.GATEWAY_ERROR)


class DialPlanAnswers(Base):
    """
    The router calls the dial plan directly and takes a Deferred only when
    it gets one: an answer at once, a later answer and a failure (raised,
    or a failed Deferred) each lead where they did through maybeDeferred.
    """

    def _later(self) -> list[tuple[Deferred[RouteDecision], RouteDecision]]:
        static = self.switch.control.dial_plan
        pending: list[tuple[Deferred[RouteDecision], RouteDecision]] = []

        class Later:
            def route(self, request: RouteRequest) -> Deferred[RouteDecision]:
                d: Deferred[RouteDecision] = Deferred()
                pending.append((d, static.route(request)))
                return d

        self.switch.control.dial_plan = Later()
        return pending

    def test_a_later_answer_places_the_call(self) -> None:
        pending = self._later()
        caller = self.dial("1001", "2003")
        self.assertEqual(self.switch.line(A).state, LineState.ROUTING)
        d, decision = pending.pop()
        d.callback(decision)
        self.switch.run(0.5)
        self.assertTrue(self.switch.phone("2003").ringing)
        caller.on_hook()
        self.switch.run(1.0)
        self.assertIdle()
        self.assertEqual(self.record().cause, ReleaseCause.ABANDONED)

    def test_a_later_answer_after_the_caller_gave_up_is_dropped(self) -> None:
        pending = self._later()
        caller = self.dial("1001", "2003")
        caller.on_hook()
        self.switch.run(0.5)
        d, decision = pending.pop()
        d.callback(decision)
        self.switch.run(0.5)
        self.assertFalse(self.switch.phone("2003").ringing)
        self.assertIdle()

    def _failing(self, later: bool) -> None:
        class Broken:
            def route(self, request: RouteRequest) -> Any:
                if later:
                    d: Deferred[RouteDecision] = Deferred()
                    d.errback(RuntimeError("dial plan down"))
                    return d
                raise RuntimeError("dial plan down")

        control = self.switch.control
        control.dial_plan = Broken()
        caller = self.dial("1001", "2003")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIn("L/ro", caller.signals)
        self.assertEqual(self.switch.line(A).state, LineState.REORDER)
        self.assertEqual(control.outcomes["rejected"], 1)
        caller.on_hook()
        self.switch.run(0.5)
        self.assertIdle()

    def test_a_dial_plan_that_raises_gives_reorder(self) -> None:
        self._failing(later=False)

    def test_a_failed_deferred_gives_reorder(self) -> None:
        self._failing(later=True)


class Operator(Base):
    def test_originate_rings_first_then_second(self) -> None:
        """originate(a, b) rings a; when a answers, b rings; b answers: connected."""
        s = self.switch
        d = s.service.originate(A, B)
        s.run(0.5)
        call_id = self.successResultOf(d)
        first, second = s.phone("1001"), s.phone("2003")
        self.assertTrue(first.ringing)
        self.assertFalse(second.ringing)
        first.off_hook()
        s.run(0.5)
        self.assertTrue(second.ringing)
        second.off_hook()
        s.run(0.5)
        self.assertEqual(s.service.get_call(call_id).state, CallState.CONNECTED)
        hung = s.service.hangup(call_id)
        s.run(0.5)
        self.successResultOf(hung)
        self.assertEqual(first.connections + second.connections, ())
        self.assertEqual(self.record().cause, ReleaseCause.ADMIN)
        first.on_hook()
        second.on_hook()
        s.run(0.5)
        self.assertIdle()

    def test_originate_into_a_phone_picked_up_meanwhile(self) -> None:
        """
        The first party lifts the handset just as we ring it (the gateway
        answers 401): that counts as its answer, and the second party rings.
        """
        s = self.switch
        first, second = s.phone("1001"), s.phone("2003")
        first.off_hook()  # its NTFY is still on the way when we ring
        d = s.service.originate(A, B)
        s.run(1.0)
        call_id = self.successResultOf(d)
        self.assertTrue(second.ringing)
        self.assertIn("G/rt", first.signals)
        second.off_hook()
        s.run(0.5)
        self.assertEqual(s.service.get_call(call_id).state, CallState.CONNECTED)
        first.on_hook()
        s.run(0.5)
        second.on_hook()
        s.run(0.5)
        self.assertIdle()

    def test_originate_refusals(self) -> None:
        """Unknown or busy endpoints are refused with CallControlError."""
        s = self.switch
        self.failureResultOf(s.service.originate("aaln/9@rgw1", B), CallControlError)
        s.phone("2003").off_hook()
        s.run(0.5)
        self.failureResultOf(s.service.originate(A, B), CallControlError)
        self.failureResultOf(s.service.hangup("nosuchcall"), CallControlError)

    def test_audit_endpoint(self) -> None:
        """audit_endpoint sends AUEP and reports the hook state the gateway gives."""
        s = self.switch
        s.phone("1001").off_hook()
        s.run(0.5)
        d = s.service.audit_endpoint(A)
        s.run(0.5)
        self.assertEqual(self.successResultOf(d).hook, Hook.OFF)

    def test_gateway_out_of_service(self) -> None:
        """A gateway taken out of service takes no new calls; back in, it is audited."""
        s = self.switch
        d = s.service.set_gateway_in_service("rgw2", False)
        self.assertEqual(self.successResultOf(d).state, GatewayState.OUT_OF_SERVICE)
        caller = self.dial("1001", "2003")
        self.assertIn("L/bz", caller.signals)
        caller.on_hook()
        s.run(0.5)
        s.service.set_gateway_in_service("rgw2", True)
        s.run(1.0)
        self.assertEqual(s.control.gateway("rgw2").state, GatewayState.UP)
        self.assertIdle()

    def test_ladder_of_a_call(self) -> None:
        """get_call returns the call's MGCP messages, in order, as text."""
        s = self.switch
        caller = self.dial("1001", "2003")
        [call] = s.service.list_calls()
        view = s.service.get_call(call.call_id)
        summaries = [e.summary.split()[0] for e in view.ladder]
        self.assertEqual(summaries, ["CRCX", "200", "CRCX", "200"])  # the caller's (with ringback), the callee's
        self.assertTrue(all(e.text.endswith("\r\n") for e in view.ladder))
        caller.on_hook()
        s.run(0.5)




class Security(Base):
    def test_unconfigured_source_changes_nothing(self) -> None:
        """Commands from an address that is no gateway's are dropped and counted."""
        s = self.switch
        rogue = s.network.bind(("127.0.0.66", 2427), Probe())
        rogue.write(b"NTFY 77 aaln/1@rgw1 MGCP 1.0\r\nX: 1\r\nO: L/hd\r\n", ("127.0.0.1", 2727))
        rogue.write(b"RSIP 78 *@rgw1 MGCP 1.0\r\nRM: forced\r\n", ("127.0.0.1", 2727))
        s.run(0.5)
        self.assertEqual(s.control.counters["dropped_unknown_source"], 2)
        self.assertEqual(s.line(A).state, LineState.IDLE)
        self.assertEqual(s.control.gateway("rgw1").state, GatewayState.UP)

    def test_wrong_gateway_address_is_refused(self) -> None:
        """A command naming rgw1's endpoint sent from rgw2's address is refused (500) and counted."""
        s = self.switch
        s.gw2.protocol.transport.write(
            b"NTFY 79 aaln/1@rgw1 MGCP 1.0\r\nX: 1\r\nO: L/hd\r\n", ("127.0.0.1", 2727)
        )
        s.run(0.5)
        self.assertEqual(s.control.counters["refused_wrong_gateway"], 1)
        self.assertEqual(s.line(A).state, LineState.IDLE)
        self.assertEqual(s.phone("1001").signals, frozenset())


class Soak(SynchronousTestCase):
    def test_thousand_random_calls_at_20_percent_loss(self) -> None:
        """
        1,000 random calls with 20 % datagram loss each way: every call ends
        cleanly, an audit of each gateway then shows no connection and every
        line idle, and there is one CDR per call.  Only the last ended call
        is kept, so each call is unlinked from its legs at once while late
        answers for it may still arrive.
        """
        s = Switch(lines=8, loss=0.2, seed=11, rto_max=1.0, ended_calls_kept=1)
        self.addCleanup(s.stop)
        rng = random.Random(5)
        numbers = [f"{g}{n:03d}" for g in (1, 2) for n in range(1, 9)]
        attempts = 0
        for round_ in range(1000):
            idle = [n for n in numbers if s.phone(n).hook == "on" and not s.phone(n).ringing]
            caller = rng.choice(idle)
            callee = rng.choice([n for n in numbers if n != caller])
            phone = s.phone(caller)
            phone.off_hook()
            s.run(1.5)
            phone.dial(callee, gap=0.05)
            s.run(2.5)
            attempts += 1
            target = s.phone(callee)
            if target.ringing and rng.random() < 0.8:
                target.off_hook()
                s.run(rng.uniform(0.5, 3))
                (target if rng.random() < 0.5 else phone).on_hook()
                s.run(1.5)
            phone.on_hook()
            target.on_hook()
            s.run(2.0)
        s.run(60)
        s.network.loss = 0.0
        s.run(60)
        self.assertEqual(s.gw1.connection_count() + s.gw2.connection_count(), 0, "leaked connections")
        self.assertTrue(s.idle(), Base.describe(type("x", (), {"switch": s})()))
        self.assertEqual(len(s.control.calls()), 0)
        records = s.recorder.records
        self.assertEqual(len(records), s.control.counters["calls_started"])
        self.assertGreaterEqual(len(records), 900)
        answered = [r for r in records if r.answer is not None]
        self.assertGreater(len(answered), 500)
        # The loss was real: both sides retransmitted a lot.
        self.assertGreater(s.service.protocol.transactions.counters["retransmissions"], 2000)
        self.assertGreater(s.gw1.protocol.transactions.counters["retransmissions"], 500)
