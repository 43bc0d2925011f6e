"""
A registration storm (issue 15): a wildcard RSIP's lines are reset and
queued for audit a slice of endpoints a reactor turn, not all in one;
every line is still audited once and armed once; an RSIP
during another's bookkeeping is handled as if the first had finished;
calls on the other gateway go on meanwhile.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.agent import registry as registry_module
from mgcpswitch.agent.model import GatewayState, LineState, ReleaseCause
from mgcpswitch.mgcp import Command, Verb, decode

from .support.switch import CA, Switch

LINES = 250  # two and a half slices


class Turns:
    """Endpoints the registry's bookkeeping touched, per turn of it (and outside any: the RSIP's own turn)."""

    def __init__(self, s: Switch) -> None:
        registry = s.control.registry
        listener = registry._listener
        self.turns: list[int] = []
        self.outside = 0
        self._in_turn = False
        run_turn = registry._run_turn

        def turn() -> None:
            self.turns.append(0)
            self._in_turn = True
            try:
                run_turn()
            finally:
                self._in_turn = False

        registry._run_turn = turn  # type: ignore[method-assign]  # count what each turn does
        for name in ("endpoints_lost", "auditing"):
            setattr(listener, name, self._counting(getattr(listener, name)))

    def _counting(self, method: Any) -> Any:
        def counted(endpoints: Any, *args: Any) -> None:
            endpoints = list(endpoints)
            if self._in_turn:
                self.turns[-1] += len(endpoints)
            else:
                self.outside += len(endpoints)
            method(endpoints, *args)
        return counted


def rsip(s: Switch, endpoint: str, method: str, **params: Any) -> Any:
    """An RSIP as rgw1 sends it (from its own socket); the answer's Deferred."""
    return s.gw1.protocol.send_command(
        Command.create(Verb.RSIP, 0, endpoint, restart_method=method, **params), CA
    )


def commands(s: Switch, since: int, verb: str) -> Counter[str]:
    """How many C{verb} commands the agent sent each endpoint since the mark."""
    seen: Counter[str] = Counter()
    for d in s.network.log[since:]:
        if d.fate != "delivered" or d.source != CA:
            continue
        for message in decode(d.data):
            if str(getattr(message, "verb", "")) == verb:
                seen[str(message.endpoint).lower()] += 1
    return seen


class Storm(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Switch(lines=LINES)
        self.addCleanup(self.s.stop)

    def test_a_wildcard_rsip_is_done_a_slice_a_turn(self) -> None:
        """
        RSIP restart *@rgw1 of 250 lines: no turn resets or queues more than
        a slice of them, the RSIP's own turn none; each line is audited
        once and armed once, and the gateway is up with every line idle.
        """
        s = self.s
        turns = Turns(s)
        mark = s.mark()
        d = rsip(s, "*@rgw1", "restart")
        s.run(3.0)
        self.assertEqual(self.successResultOf(d).code, 200)
        self.assertEqual(turns.outside, 0)
        self.assertLessEqual(max(turns.turns), registry_module.SLICE)
        self.assertEqual(sum(turns.turns), 2 * LINES)  # each line reset when lost, and when its audit begins
        names = {f"aaln/{n}@rgw1" for n in range(1, LINES + 1)}
        self.assertEqual(commands(s, mark, "AUEP"), Counter(dict.fromkeys(names, 1)))
        self.assertEqual(commands(s, mark, "RQNT"), Counter(dict.fromkeys(names, 1)))
        self.assertIs(s.control.gateway("rgw1").state, GatewayState.UP)
        self.assertTrue(s.idle())

    def test_a_restart_during_a_restart_audits_once(self) -> None:
        """
        Two RSIP restarts of the gateway in one turn (the second before the
        first's lines are all reset): the first's bookkeeping is finished
        when the second comes, its audit is superseded, and each line is
        audited once and armed once.
        """
        s = self.s
        mark = s.mark()
        first, second = rsip(s, "*@rgw1", "restart"), rsip(s, "*@rgw1", "restart")
        s.run(3.0)
        self.assertEqual(self.successResultOf(first).code, 200)
        self.assertEqual(self.successResultOf(second).code, 200)
        names = {f"aaln/{n}@rgw1" for n in range(1, LINES + 1)}
        self.assertEqual(commands(s, mark, "AUEP"), Counter(dict.fromkeys(names, 1)))
        self.assertEqual(commands(s, mark, "RQNT"), Counter(dict.fromkeys(names, 1)))
        self.assertIs(s.control.gateway("rgw1").state, GatewayState.UP)
        self.assertTrue(s.idle())

    def test_forced_during_a_restart_takes_every_line_out(self) -> None:
        """
        RSIP forced right after a restart (§2.3.12): no line is audited,
        the gateway is down at once (no call is routed to a line not yet
        reset), and every line ends out of service; a later restart brings
        them all back.
        """
        s = self.s
        mark = s.mark()
        rsip(s, "*@rgw1", "restart")
        forced = rsip(s, "*@rgw1", "forced")
        s.run(0.002)  # both delivered, the bookkeeping not finished
        self.assertIs(s.control.gateway("rgw1").state, GatewayState.DOWN)
        s.run(3.0)
        self.assertEqual(self.successResultOf(forced).code, 200)
        self.assertEqual(commands(s, mark, "AUEP"), Counter())
        self.assertEqual({s.line(f"aaln/{n}@rgw1").state for n in range(1, LINES + 1)},
                         {LineState.OUT_OF_SERVICE})
        rsip(s, "*@rgw1", "restart")
        s.run(3.0)
        self.assertIs(s.control.gateway("rgw1").state, GatewayState.UP)
        self.assertTrue(s.idle())


class CallsDuringAStorm(SynchronousTestCase):
    def test_a_call_on_the_other_gateway_completes(self) -> None:
        """
        While rgw1's 250 lines register (100 ms each way: the audits take
        seconds), a call between two lines of rgw2 is set up, talks and
        ends normally.
        """
        s = Switch(lines=LINES)
        self.addCleanup(s.stop)
        s.network.latency = 0.1
        gateway = s.control.gateway("rgw1")
        rsip(s, "*@rgw1", "restart")
        caller, callee = s.phone("2001"), s.phone("2002")
        caller.off_hook()
        s.run(0.5)
        caller.dial("2002", gap=0.05)
        s.run(1.0)
        callee.off_hook()
        s.run(0.5)
        self.assertIs(gateway.state, GatewayState.REGISTERING)
        self.assertTrue(gateway.audit_queue)
        self.assertEqual((len(caller.connections), len(callee.connections)), (1, 1))
        caller.on_hook()
        callee.on_hook()
        s.run(8.0)
        self.assertEqual([r.cause for r in s.recorder.records], [ReleaseCause.NORMAL])
        self.assertIs(gateway.state, GatewayState.UP)
        self.assertTrue(s.idle())

    def test_the_guard_knows_lines_are_resynchronising(self) -> None:
        """
        The overload guard is told when the agent's work is lines
        resynchronising (reset, queued, audited), not calls: from the RSIP
        until the last audit has answered.
        """
        s = Switch(lines=LINES)
        self.addCleanup(s.stop)
        s.network.latency = 0.1
        resynchronising = s.control.overload._background
        self.assertFalse(resynchronising())
        rsip(s, "*@rgw1", "restart")
        s.run(0.15)  # the RSIP in, its lines being reset
        self.assertTrue(resynchronising())
        s.run(1.0)
        self.assertTrue(resynchronising())
        s.run(8.0)
        self.assertIs(s.control.gateway("rgw1").state, GatewayState.UP)
        self.assertFalse(resynchronising())

    def test_lines_reset_by_a_forced_restart_are_resynchronising(self) -> None:
        """
        A forced RSIP takes the gateway down and its lines are reset a
        slice a turn: that bookkeeping is not calls' work either.
        """
        s = Switch(lines=LINES)
        self.addCleanup(s.stop)
        registry = s.control.registry
        resynchronising = s.control.overload._background
        seen = []
        run_turn = registry._run_turn

        def turn() -> None:
            seen.append(resynchronising())
            run_turn()

        registry._run_turn = turn  # type: ignore[method-assign]
        rsip(s, "*@rgw1", "forced")
        s.run(1.0)
        self.assertIs(s.control.gateway("rgw1").state, GatewayState.DOWN)
        self.assertEqual(seen, [True, True, True])  # three slices of 100, 100 and 50 lines
        self.assertFalse(resynchronising())

    def test_a_self_healing_audit_is_not_resynchronising(self) -> None:
        """
        A keepalive's audit of a stuck line of a gateway that is up is the
        calls' own upkeep, not a resynchronisation: the guard's CPU ceiling
        stays on while it is in flight (before, any audit in flight
        suspended it, at every keepalive that found a stuck line).
        """
        s = Switch(lines=LINES, keepalive=5.0)
        self.addCleanup(s.stop)
        s.run(3.0)
        gateway = s.control.gateway("rgw1")
        self.assertIs(gateway.state, GatewayState.UP)
        registry = s.control.registry
        resynchronising = s.control.overload._background
        self.assertFalse(resynchronising())
        stuck = next(iter(gateway.endpoints.values()))
        stuck.needs_audit = True
        s.network.latency = 0.5  # the audit stays in flight long enough to look
        before = s.control.counters["reaudits"]
        for _ in range(800):
            s.run(0.01)
            if registry._audits_in_flight:
                break
        self.assertEqual(registry._audits_in_flight, 1)
        self.assertEqual(s.control.counters["reaudits"], before + 1)
        self.assertIs(gateway.state, GatewayState.UP)
        self.assertFalse(resynchronising())
        s.run(2.0)
        self.assertEqual(registry._audits_in_flight, 0)
        self.assertFalse(stuck.needs_audit)
