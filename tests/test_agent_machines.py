"""
The call and leg machines pair by pair, the rule that only the machines
write the state they describe, and a run of the switch showing that every
row of the line, call and leg tables fires in some path.
"""

from __future__ import annotations

import ast
import pathlib
from typing import Any, Callable

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.agent.calls import (
    CALL_TRANSITIONS,
    LEG_TRANSITIONS,
    Call,
    CallAction,
    CallInput,
    CallMachine,
    LegInput,
    LegState,
)
from mgcpswitch.agent.lines import ANY_STATE, TRANSITIONS
from mgcpswitch.agent.model import CallState, LineState
from mgcpswitch.agent.store import MemoryStore
from mgcpswitch.mgcp import Command, ConnectionMode, RestartMethod, Verb, encode

from .support.switch import CA, Probe, Switch

C, CI, CA_ = CallState, CallInput, CallAction
L, LI = LegState, LegInput

# Both tables written out once more, independently of the code.
CALLS = {
    (C.SETUP, CI.ALERT): (C.ALERTING, CA_.ALERTING),
    (C.ALERTING, CI.ANSWER): (C.CONNECTED, CA_.CONNECTED),
    (C.SETUP, CI.RELEASE): (C.RELEASING, CA_.RELEASE),
    (C.ALERTING, CI.RELEASE): (C.RELEASING, CA_.RELEASE),
    (C.CONNECTED, CI.RELEASE): (C.RELEASING, CA_.RELEASE),
    (C.RELEASING, CI.LEGS_GONE): (C.ENDED, CA_.END),
    (C.SETUP, CI.RESUME): (C.CONNECTED, CA_.NONE),
}
LEGS = {
    (L.NEW, LI.CREATE): L.CREATING,
    (L.NEW, LI.DELETE): L.GONE,
    (L.NEW, LI.ADOPT): L.OPEN,
    (L.CREATING, LI.CREATED): L.OPEN,
    (L.CREATING, LI.FAILED): L.GONE,
    (L.CREATING, LI.TIMED_OUT): L.GONE,
    (L.CREATING, LI.LOST): L.GONE,
    (L.CREATING, LI.CANCEL): L.GONE,
    (L.OPEN, LI.MODIFY): L.MODIFYING,
    (L.OPEN, LI.DELETE): L.DELETING,
    (L.OPEN, LI.LOST): L.GONE,
    (L.MODIFYING, LI.MODIFIED): L.OPEN,
    (L.MODIFYING, LI.FAILED): L.OPEN,
    (L.MODIFYING, LI.TIMED_OUT): L.OPEN,
    (L.MODIFYING, LI.LOST): L.GONE,
    (L.DELETING, LI.DELETED): L.GONE,
    (L.DELETING, LI.DELETE): L.DELETING,
    (L.DELETING, LI.FAILED): L.GONE,
    (L.DELETING, LI.TIMED_OUT): L.GONE,
    (L.DELETING, LI.LOST): L.GONE,
}


class CallTable(SynchronousTestCase):
    def test_every_call_pair(self) -> None:
        """Each (call state, input) pair moves the call as written above, or leaves it alone."""
        machine = CallMachine()
        for state in CallState:
            for event in CallInput:
                call = Call("c", 0.0, "")
                call.state = state
                action = machine.feed(call, event)
                expected = CALLS.get((state, event))
                if expected is None:
                    self.assertEqual((call.state, action), (state, CA_.NONE), (state, event))
                else:
                    self.assertEqual((call.state, action), expected, (state, event))
        self.assertEqual(set(CALL_TRANSITIONS), set(CALLS))

    def test_every_leg_pair(self) -> None:
        """Each (leg state, input) pair moves the leg's connection as written above, or is refused."""
        machine = CallMachine()
        for state in LegState:
            for event in LegInput:
                leg = machine.new_leg(Call("c", 0.0, ""), None, True)
                leg.state = state
                accepted = machine.feed_leg(leg, event)
                expected = LEGS.get((state, event))
                self.assertEqual(accepted, expected is not None, (state, event))
                self.assertEqual(leg.state, expected or state, (state, event))
        self.assertEqual(set(LEG_TRANSITIONS), set(LEGS))

    def test_a_call_always_ends(self) -> None:
        """From every call state but ended, release and then the legs' going end the call."""
        machine = CallMachine()
        for state in (C.SETUP, C.ALERTING, C.CONNECTED, C.RELEASING):
            call = Call("c", 0.0, "")
            call.state = state
            machine.feed(call, CI.RELEASE)
            machine.feed(call, CI.LEGS_GONE)
            self.assertIs(call.state, C.ENDED, state)

    def test_no_leg_state_is_a_trap(self) -> None:
        """Every leg state leads to gone."""
        for start in LegState:
            seen, frontier = {start}, [start]
            while frontier:
                state = frontier.pop()
                for (source, _), target in LEG_TRANSITIONS.items():
                    if source is state and target not in seen:
                        seen.add(target)
                        frontier.append(target)
            self.assertIn(L.GONE, seen, start)

    def test_legs_pair_across_sides(self) -> None:
        """A new leg takes the first unpaired leg of the other side as its peer; a line may hold several."""
        machine = CallMachine()
        call = Call("c", 0.0, "")
        a = machine.new_leg(call, "line-a", True)
        b = machine.new_leg(call, "line-b", False)
        c = machine.new_leg(call, "line-c", False)
        self.assertEqual((a.peer, b.peer, c.peer), (b, a, None))
        self.assertEqual(call.legs, [a, b, c])


# -- only the machines write the state they describe ---------------------------

AGENT = pathlib.Path(__file__).resolve().parent.parent / "mgcpswitch" / "agent"
WRITERS = {"state": {"lines.py", "calls.py", "registry.py", "overload.py", "gateways.py"}, "hook": {"lines.py"}}


def _writes(attribute: str) -> list[tuple[str, int]]:
    """(file, line) of every assignment to C{<something>.<attribute>} in the agent package."""
    found = []
    for path in sorted(AGENT.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            targets: list[Any] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            for target in targets:
                for element in ast.walk(target):
                    if isinstance(element, ast.Attribute) and element.attr == attribute:
                        found.append((path.name, node.lineno))
    return found


class StateWriters(SynchronousTestCase):
    def test_states_are_written_by_their_machines_only(self) -> None:
        """
        A line's state and hook are written in lines.py only (the line
        machine), a call's and a leg's in calls.py (the call machine), a
        gateway's in registry.py (gateways.py only gives a new one its first), the overload guard's its own: the
        coordinator feeds inputs, it never sets a state.
        """
        for attribute, allowed in WRITERS.items():
            writes = _writes(attribute)
            self.assertTrue(writes, attribute)  # the check sees the machines' own writes
            self.assertEqual([w for w in writes if w[0] not in allowed], [], attribute)

    def test_registry_writes_gateway_state_in_one_place(self) -> None:
        """Within the registry, a gateway's state changes through set_state (which reports it)."""
        source = (AGENT / "registry.py").read_text()
        self.assertEqual(source.count("gateway.state = "), 1)
        # gateways.py only gives a new Gateway its first state, in its constructor.
        self.assertEqual([line.strip() for line in (AGENT / "gateways.py").read_text().splitlines()
                          if ".state = " in line], ["self.state = GatewayState.UNKNOWN"])


# -- every row fires --------------------------------------------------------------


class EveryRowFires(SynchronousTestCase):
    """
    Paths of the switch on the in-memory network, each a scenario of its
    own; together they make every row of the three tables fire (a row no
    path reaches is dead and must go).
    """

    def setUp(self) -> None:
        self.lines: set[Any] = set()
        self.calls: set[Any] = set()
        self.legs: set[Any] = set()

    def switch(self, **options: Any) -> Switch:
        s = Switch(start=False, **options)
        self.watch(s)
        s.start()
        self.addCleanup(s.stop)
        return s

    def watch(self, s: Switch) -> None:
        s.control.lines.fired = lambda state, event: self.lines.add((state, event))
        s.control.machine.fired_call = lambda state, event: self.calls.add((state, event))
        s.control.machine.fired_leg = lambda state, event: self.legs.add((state, event))

    def test_every_row_fires(self) -> None:
        """Every row of the line, call and leg tables, and every any-state input, fires in some path."""
        for name in sorted(dir(self)):
            if name.startswith("path_"):
                getattr(self, name)()
        any_state = {event for (_, event) in self.lines if event in ANY_STATE}
        explicit = {pair for pair in self.lines if pair in TRANSITIONS}
        missing = {
            "line": _names(set(TRANSITIONS) - explicit),
            "any state": sorted(e.value for e in set(ANY_STATE) - any_state),
            "call": _names(set(CALL_TRANSITIONS) - self.calls),
            "leg": _names(set(LEG_TRANSITIONS) - self.legs),
        }
        self.assertEqual(missing, {"line": [], "any state": [], "call": [], "leg": []})

    # Each path leaves every line idle and no connection behind.

    def settle(self, s: Switch) -> None:
        for n in range(1, len(s.gw1.lines) + 1):
            for number in (f"1{n:03d}", f"2{n:03d}"):
                s.phone(number).on_hook()
        s.run(60)
        self.assertTrue(s.idle(), [str(s.line(f"aaln/{n}@rgw{g}")) for g in (1, 2) for n in (1, 2, 3, 4)])

    def dial(self, s: Switch, caller: str, number: str, wait: float = 1.0) -> Any:
        phone = s.phone(caller)
        phone.off_hook()
        s.run(0.5)
        phone.dial(number, gap=0.05)
        s.run(wait)
        return phone

    def path_basic_calls(self) -> None:
        """Answered calls, each party hanging up first; busy, unknown number, abandons, no answer."""
        s = self.switch(no_answer=5)
        self.dial(s, "1001", "2001")
        s.phone("2001").off_hook()
        s.run(0.5)
        s.phone("1001").on_hook()  # the callee hears busy tone, then hangs up
        s.run(0.5)
        self.dial(s, "1002", "2002")
        s.phone("2002").off_hook()
        s.run(0.5)
        s.phone("2002").on_hook()
        s.run(0.5)
        self.dial(s, "1003", "1002")  # off hook: busy
        self.dial(s, "1004", "3999")  # unknown: reorder
        self.settle(s)
        self.dial(s, "1001", "2001")
        s.phone("1001").on_hook()  # abandons while the callee rings
        phone = s.phone("1002")
        phone.off_hook()
        s.run(0.5)
        phone.dial("20", gap=0.05)
        s.run(0.3)
        phone.on_hook()  # abandons while dialling
        self.dial(s, "1003", "2003")
        s.run(6)  # no answer: reorder for the caller
        self.settle(s)

    def path_embedded_dial_tone(self) -> None:
        """The idle request embeds dial tone: the first NTFY brings the off-hook and the digits."""
        s = self.switch(embedded=True)
        phone = s.phone("1001")
        phone.off_hook()
        s.run(0.5)
        phone.dial("2001", gap=0.05)
        s.run(1.0)
        s.phone("2001").off_hook()
        s.run(0.5)
        self.settle(s)
        # Click-to-dial to a line that is dialling on its own: refused, left alone.
        s.phone("1002").off_hook()
        s.run(0.5)
        s.service.originate("aaln/2@rgw1", "aaln/2@rgw2").addErrback(lambda f: None)
        s.run(1.0)
        self.settle(s)

    def path_unexpected_hook_events(self) -> None:
        """
        An L/hd our view did not expect (the gateway notified it and waits
        for a request) in each tone state: the line starts over with dial
        tone.  The first answer to a dial-tone RQNT is lost each time, so
        the line is still waiting for it.
        """
        s = self.switch()
        ntfy = _notifier(s)
        ntfy("aaln/2@rgw1", "L/hu")  # a stale hang-up for an idle line: armed again
        s.run(0.5)
        phone = s.phone("1001")
        _drop_answers(s, b"RQNT", count=1)
        phone.off_hook()
        s.run(0.01)
        self.assertIs(s.line("aaln/1@rgw1").state, LineState.DIAL_TONE)
        ntfy("aaln/1@rgw1")
        s.run(0.5)
        ntfy("aaln/1@rgw1")  # collecting
        s.run(0.5)
        phone.dial("1001", gap=0.05)  # itself: busy
        s.run(1.0)
        self.assertIs(s.line("aaln/1@rgw1").state, LineState.BUSY)
        ntfy("aaln/1@rgw1")
        s.run(0.5)
        phone.dial("3999", gap=0.05)
        s.run(1.0)
        self.assertIs(s.line("aaln/1@rgw1").state, LineState.REORDER)
        ntfy("aaln/1@rgw1")
        s.run(0.5)
        self.settle(s)
        phone.off_hook()  # a star code's confirmation tone, then an L/hd the line did not expect
        s.run(0.5)
        phone.dial("*78", gap=0.05)
        s.run(1.0)
        self.assertIs(s.line("aaln/1@rgw1").state, LineState.CONFIRMED)
        ntfy("aaln/1@rgw1")
        s.run(0.5)
        phone.on_hook()
        s.run(0.5)
        phone.off_hook()
        s.run(0.5)
        phone.dial("*79", gap=0.05)
        s.run(1.0)
        self.settle(s)
        # On hook again before the dial tone is confirmed.
        _drop_answers(s, b"RQNT", count=1)
        phone.off_hook()
        s.run(0.01)
        phone.on_hook()
        self.settle(s)

    def path_digits_before_dial_tone_confirmed(self) -> None:
        """The dial-tone RQNT's answer is lost; the digits arrive before its retransmission's."""
        s = self.switch()
        _drop_answers(s, b"RQNT", count=1)
        phone = s.phone("1001")
        phone.off_hook()
        s.run(0.015)  # the RQNT ran on the gateway; its answer is lost
        phone.dial("2001", gap=0.01)
        s.run(1.0)
        self.settle(s)

    def path_hook_changes_while_releasing(self) -> None:
        """
        The two parties hang up together: each hears of the other's release
        with its DLCX in flight, and a DLCX whose request the hook change
        made wrong is sent again.
        """
        s = self.switch(latency=0.05)
        self.dial(s, "1001", "2001")
        s.phone("2001").off_hook()
        s.run(0.5)
        s.phone("2001").on_hook()
        s.run(0.06)
        s.phone("1001").on_hook()
        self.settle(s)
        # The callee picks up just as its ringing is cancelled.
        self.dial(s, "1002", "2002")
        s.network.drop_next(lambda data: data.startswith(b"250 "))
        s.phone("1002").on_hook()
        s.run(0.1)
        s.phone("2002").off_hook()
        s.run(2.0)
        self.settle(s)

    def path_caller_hangs_up_during_setup(self) -> None:
        """
        The caller hangs up while its connection is being created, while
        the callee's is (its line still routing), and while the answer's
        MDCX is on its way to it.
        """
        s = self.switch(latency=0.2)
        phone = self.dial(s, "1001", "2001", wait=0.0)
        s.run(0.25)
        phone.on_hook()
        self.settle(s)
        phone = self.dial(s, "1002", "2002", wait=0.0)
        s.run(0.85)  # the callee's CRCX is on its way
        self.assertIs(s.line("aaln/2@rgw1").state, LineState.ROUTING)
        phone.on_hook()
        self.settle(s)
        phone = self.dial(s, "1003", "2003")
        s.phone("2003").off_hook()
        s.run(0.3)  # the answer's MDCX is on its way to the caller
        phone.on_hook()
        self.settle(s)

    def path_callee_off_hook_before_it_rings(self) -> None:
        """
        The callee lifts its handset after the call was routed to it but
        before its CRCX arrives (which answers 401): the call is busy, and
        the callee, who is placing a call of its own, gets dial tone.
        """
        s = self.switch(latency=0.05)
        self.dial(s, "1001", "2001", wait=0.27)  # the last digit went 0.12 s ago
        s.phone("2001").off_hook()
        s.run(1.0)
        self.assertIn("L/dl", s.phone("2001").signals)
        self.settle(s)

    def path_caller_connection_refused(self) -> None:
        """The caller's own gateway refuses its CRCX: reorder, nothing to delete."""
        s = self.switch()
        _fill(s, "aaln/1@rgw1", ("127.0.0.2", 2427))
        self.dial(s, "1001", "2001")
        self.assertIs(s.line("aaln/1@rgw1").state, LineState.REORDER)
        _clear(s, "aaln/1@rgw1", ("127.0.0.2", 2427))
        self.settle(s)

    def path_originate(self) -> None:
        """Click-to-dial: answered; the second party busy by then; picked up as we ring."""
        s = self.switch()
        s.service.originate("aaln/1@rgw1", "aaln/1@rgw2")
        s.run(0.5)
        s.phone("1001").off_hook()
        s.run(0.5)
        s.phone("2001").off_hook()
        s.run(0.5)
        self.settle(s)
        s.service.originate("aaln/2@rgw1", "aaln/2@rgw2")
        s.run(0.5)
        s.phone("2002").off_hook()  # busy before the first party answers
        s.run(0.5)
        s.phone("1002").off_hook()
        s.run(0.5)
        self.settle(s)
        s.phone("1003").off_hook()
        s.service.originate("aaln/3@rgw1", "aaln/3@rgw2")
        s.run(1.0)
        self.settle(s)

    def path_gateway_failures(self) -> None:
        """
        A gateway restarts (with a CRCX, then an MDCX in flight), deletes a
        connection itself, takes its endpoints out by force, answers a DLCX
        with an error, goes silent mid-call and mid-modification.
        """
        s = self.switch(latency=0.05)
        self.dial(s, "1001", "2001")
        s.phone("2001").off_hook()
        s.run(0.5)
        s.gw2.restart(RestartMethod.RESTART)  # the callee's side is lost
        s.run(1.0)
        self.settle(s)
        self.dial(s, "1002", "2002", wait=0.0)
        s.run(0.2)  # the caller's CRCX is in flight
        s.gw1.restart(RestartMethod.RESTART)
        s.run(1.0)
        self.settle(s)
        self.dial(s, "1003", "2003")
        s.phone("2003").off_hook()
        s.run(0.07)  # the answer's MDCX to the caller is in flight
        s.gw1.restart(RestartMethod.RESTART)
        s.run(1.0)
        self.settle(s)
        self.dial(s, "1001", "2001")
        s.phone("2001").off_hook()
        s.run(0.5)
        s.gw2.fail_line(1, 900)
        s.run(1.0)
        s.gw2.restore_line(1)
        s.run(1.0)
        self.settle(s)
        self.dial(s, "1002", "2002")
        s.phone("2002").off_hook()
        s.run(0.5)
        _forge_answer(s, b"250 ", b"510", ("127.0.0.3", 2427))
        s.phone("1002").on_hook()
        s.run(1.0)
        self.settle(s)
        s.gw2.restart(RestartMethod.RESTART, delay=2)  # its lines restart for 2 s
        s.run(3.0)
        self.dial(s, "1004", "2004")
        s.run(0.5)
        s.gw2.restart(RestartMethod.FORCED)
        s.run(1.0)
        s.gw2.restart(RestartMethod.RESTART)
        s.run(1.0)
        self.settle(s)
        # A restart while a DLCX is in flight.
        self.dial(s, "1001", "2001")
        s.phone("2001").off_hook()
        s.run(0.5)
        s.phone("1001").on_hook()
        s.run(0.07)  # its DLCX is on the way
        s.gw1.restart(RestartMethod.RESTART)
        s.run(1.0)
        self.settle(s)
        # Silent while creating: every CRCX answer from rgw2 is lost.
        _drop_answers(s, b"CRCX", b"127.0.0.3")
        self.dial(s, "1004", "2004")
        s.run(30)
        s.network._drops.clear()
        self.settle(s)
        # Silent mid-modification: every MDCX answer from rgw1 is lost.
        _drop_answers(s, b"MDCX")
        self.dial(s, "1001", "2001")
        s.phone("2001").off_hook()
        s.run(30)
        s.network._drops.clear()
        self.settle(s)
        # Silent mid-release: the DLCX to rgw2 times out.
        self.dial(s, "1003", "2003")
        s.phone("2003").off_hook()
        s.run(0.5)
        s.network.set_link(CA, ("127.0.0.3", 2427), loss=1.0)
        s.phone("1003").on_hook()
        s.run(30)
        s.network.set_link(CA, ("127.0.0.3", 2427), loss=0.0)
        s.run(40)
        self.settle(s)

    def path_agent_restart(self) -> None:
        """The agent restarts while a call talks: it takes the call back from its checkpoint."""
        s = self.switch(store=MemoryStore())
        self.dial(s, "1001", "2001")
        s.phone("2001").off_hook()
        s.run(0.5)
        s.restart_agent(down=1.0, prepare=self.watch)
        s.run(3.0)
        self.assertIs(s.line("aaln/1@rgw1").state, LineState.CONNECTED)
        self.settle(s)

    def path_services(self) -> None:
        """Every scenario of the services' tests (call waiting, three-way, transfer, forwarding, ...)."""
        from . import test_agent_services as services

        for kind in (services.CallWaiting, services.HoldAndRecall, services.ThreeWay, services.Transfer,
                     services.Forwarding, services.MessageWaiting, services.CallerId):
            for name in sorted(n for n in dir(kind) if n.startswith("test_")):
                case = kind(name)
                case.setUp()
                self.watch(case.s)
                try:
                    getattr(case, name)()
                finally:
                    case.s.stop()

    def path_trunks(self) -> None:
        """Every scenario of the trunk tests: calls out (answered, failed, cancelled) and in."""
        from . import test_agent_trunks as trunks

        for kind in (trunks.CallsOut, trunks.CallsIn, trunks.Services):
            for name in sorted(n for n in dir(kind) if n.startswith("test_")):
                case = kind(name)
                case.on_switch = self.watch
                try:
                    getattr(case, name)()
                finally:
                    for s, far in getattr(case, "made", []):
                        far.trunk.stopService()
                        s.stop()

    def path_operator(self) -> None:
        """The operator hangs a call up, and takes a gateway out of service and back."""
        s = self.switch()
        d = s.service.originate("aaln/1@rgw1", "aaln/1@rgw2")
        s.run(0.5)
        s.phone("1001").off_hook()
        s.run(0.5)
        s.phone("2001").off_hook()
        s.run(0.5)
        s.service.hangup(self.successResultOf(d))
        s.run(0.5)
        self.settle(s)
        s.service.set_gateway_in_service("rgw2", False)
        s.run(0.5)
        s.service.set_gateway_in_service("rgw2", True)
        s.run(1.0)
        self.settle(s)


def _names(pairs: set[Any]) -> list[tuple[str, str]]:
    return sorted((state.value, event.value) for state, event in pairs)


def _drop_answers(s: Switch, verb: bytes, sdp_address: bytes = b"", count: int = 1_000_000) -> None:
    """Lose the next C{count} answers to the agent's commands of C{verb} (all: until the drops are cleared)."""
    txids: set[bytes] = set()

    def answer(data: bytes) -> bool:
        for line in data.splitlines():  # piggybacked commands too
            if line.startswith(verb + b" "):
                txids.add(line.split()[1])
        return data[:3].isdigit() and data.split()[1] in txids and sdp_address in data

    s.network.drop_next(answer, count=count)


def _notifier(s: Switch) -> Callable[..., None]:
    """Send an NTFY (O: L/hd, or another event) for an endpoint from its gateway's own socket."""
    txids = iter(range(900_000, 1_000_000))

    def ntfy(endpoint: str, event: str = "L/hd") -> None:
        gateway = s.gw1 if endpoint.endswith("rgw1") else s.gw2
        line = s.line(endpoint)
        gateway.protocol.transport.write(encode(Command.create(
            Verb.NTFY, next(txids), endpoint, request_id=line.request_id, observed_events=event,
        )), CA)

    return ntfy


def _fill(s: Switch, endpoint: str, gateway: tuple[str, int]) -> None:
    """Two connections from a stranger: the endpoint has no room for another (540)."""
    port = s.network.bind(("127.0.0.9", 2727), Probe())
    for n in (1, 2):
        port.write(encode(Command.create(
            Verb.CRCX, 800 + n, endpoint, call_id="beef", mode=ConnectionMode.INACTIVE,
        )), gateway)
    s.run(0.2)


def _clear(s: Switch, endpoint: str, gateway: tuple[str, int]) -> None:
    port = s.network.ports[("127.0.0.9", 2727)]
    port.write(encode(Command.create(Verb.DLCX, 810, endpoint, call_id="beef")), gateway)
    s.run(0.2)
    s.network.unbind(("127.0.0.9", 2727))


def _forge_answer(s: Switch, prefix: bytes, code: bytes, gateway: tuple[str, int]) -> None:
    """The gateway's next answer starting with C{prefix} becomes C{code} (an error) instead."""
    port = s.network.ports[gateway]

    def forge(data: bytes) -> bool:
        if not data.startswith(prefix):
            return False
        txid = data.split()[1]
        s.reactor.callLater(0, port.write, code + b" " + txid + b" forged\r\n", CA)
        return True

    s.network.drop_next(forge)




class Codec(SynchronousTestCase):
    def test_first_codec(self) -> None:
        """The call's codec is the first format of the callee's answer: static, mapped, or none."""
        from mgcpswitch.agent.calls import first_codec
        from mgcpswitch.mgcp import SessionDescription

        def sdp(m: str, *attributes: str) -> SessionDescription:
            return SessionDescription.parse("v=0\nc=IN IP4 192.0.2.1\nm=" + m + "\n" + "".join(a + "\n" for a in attributes))

        self.assertEqual(first_codec(sdp("audio 4000 RTP/AVP 8 0")), "PCMA")
        self.assertEqual(first_codec(sdp("audio 4000 RTP/AVP 97 0", "a=rtpmap:97 opus/48000/2")), "opus")
        self.assertIsNone(first_codec(sdp("audio 4000 RTP/AVP 97")))
        self.assertIsNone(first_codec(sdp("video 4000 RTP/AVP 31")))
