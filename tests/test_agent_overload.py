"""
Overload control (issue 15): the guard that watches the reactor's
lateness and admits a shrinking share of new calls, and what call control
does with a call it sheds (reorder at once, a record with cause overload,
calls already admitted untouched).  Lateness is made by advancing the
clock past the probe, as a busy reactor would run it late; the process's
CPU time is given by the test (by default it advances with the clock: an
agent busy all the time).
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Callable, Optional

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.agent.model import LineState, ReleaseCause
from mgcpswitch.agent.overload import OverloadGuard, OverloadState
from mgcpswitch.config import OverloadSettings, parse_settings

from .support.switch import Switch


class Guard(SynchronousTestCase):
    def guard(self, cpu: Optional[Callable[[], float]] = None,
              **options: object) -> tuple[Clock, OverloadGuard, list[OverloadState]]:
        clock = Clock()
        changes: list[OverloadState] = []
        guard = OverloadGuard(clock, OverloadSettings(**options), random.Random(1), changes.append,  # type: ignore[arg-type]
                              cpu=clock.seconds if cpu is None else cpu)
        guard.start()
        self.addCleanup(guard.stop)
        return clock, guard, changes

    def test_on_time_admits_everything(self) -> None:
        """
        A reactor on time: every call admitted, the state normal, one probe
        pending, and the CPU clock (a system call) never read.
        """
        reads = []
        clock, guard, changes = self.guard(cpu=lambda: reads.append(1) or 0.0)
        for _ in range(100):
            clock.advance(0.02)
        self.assertEqual(reads, [])
        self.assertEqual([guard.admit() for _ in range(1000)].count(True), 1000)
        self.assertEqual((guard.state, changes, len(clock.getDelayedCalls())), (OverloadState.NORMAL, [], 1))

    def test_lateness_sheds_then_recovers(self) -> None:
        """
        Probes 100 ms late: the share admitted falls (to the floor, not
        below), the state turns overloaded once; on time again, it climbs
        back to every call.
        """
        clock, guard, changes = self.guard()
        for _ in range(60):
            clock.advance(0.12)  # each probe runs 100 ms after it was due
        self.assertEqual(guard.state, OverloadState.OVERLOADED)
        self.assertAlmostEqual(guard.share, 0.02)
        admitted = [guard.admit() for _ in range(10_000)].count(True)
        self.assertTrue(100 < admitted < 350, admitted)  # about 2 %
        for _ in range(200):
            clock.advance(0.02)
        self.assertEqual((guard.state, guard.share), (OverloadState.NORMAL, 1.0))
        self.assertEqual(changes, [OverloadState.OVERLOADED, OverloadState.NORMAL])
        self.assertEqual(guard.snapshot()["episodes"], 1)
        self.assertEqual(guard.snapshot()["calls_shed"], 10_000 - admitted)

    def test_one_log_line_each_way(self) -> None:
        """
        The log says when overload starts and when it ends, one line each
        with figures (lateness and share; duration, calls shed of offered,
        lowest share), and nothing per shed call.
        """
        clock, guard, _ = self.guard()
        with capturedLogs() as events:
            for _ in range(30):
                clock.advance(0.12)
                for _ in range(10):
                    guard.admit()
            for _ in range(200):
                clock.advance(0.02)
        lines = [formatEvent(e) for e in events if e.get("log_namespace", "").endswith("OverloadGuard")]
        self.assertEqual(len(lines), 2, lines)
        self.assertRegex(lines[0], r"^overloaded: the reactor runs \d+ ms late \(target 30 ms\); admitting \d+% of new calls$")
        snapshot = guard.snapshot()
        self.assertRegex(lines[1], rf"^no longer overloaded after \d+\.\d s: {snapshot['calls_shed']} of \d+ new calls shed "
                                   r"\(lowest share admitted \d+%\); every new call is admitted again$")
        self.assertGreater(snapshot["calls_shed"], 100)

    def test_lateness_while_the_agent_idles_is_not_overload(self) -> None:
        """
        Probes 100 ms late while the process uses a tenth of a core (the
        machine busy with others, the agent waiting for a core): nothing is
        shed, since shedding would not make the agent any faster.
        """
        cpu = [0.0]
        clock, guard, changes = self.guard(cpu=lambda: cpu[0])
        for _ in range(60):
            cpu[0] += 0.012
            clock.advance(0.12)
        self.assertEqual((guard.share, guard.state, changes), (1.0, OverloadState.NORMAL, []))
        self.assertGreater(guard.lateness, 0.05)
        self.assertAlmostEqual(guard.busy, 0.1, places=2)

    def test_sheds_once_the_agent_is_busy_too(self) -> None:
        """The same lateness sheds once the process uses most of a core (busy = 0.5 by default)."""
        cpu = [0.0]
        clock, guard, changes = self.guard(cpu=lambda: cpu[0])
        for _ in range(30):
            cpu[0] += 0.012
            clock.advance(0.12)
        for _ in range(30):
            cpu[0] += 0.1
            clock.advance(0.12)
        self.assertEqual((guard.state, changes), (OverloadState.OVERLOADED, [OverloadState.OVERLOADED]))
        self.assertLess(guard.share, 0.5)

    def test_a_single_late_turn_is_not_overload(self) -> None:
        """One turn of 50 ms (a garbage collection, say) is smoothed away: nothing is shed."""
        clock, guard, changes = self.guard()
        clock.advance(0.07)
        for _ in range(50):
            clock.advance(0.02)
        self.assertEqual((guard.share, changes), (1.0, []))

    def test_disabled(self) -> None:
        """enabled = no: no probe runs, every call is admitted."""
        clock, guard, _ = self.guard(enabled=False)
        self.assertEqual(clock.getDelayedCalls(), [])
        guard.observe(10.0)  # even if told the reactor is late, the share is what decides
        self.assertTrue(guard.admit() or guard.share < 1)

    def test_config(self) -> None:
        """[overload] keys are read and checked."""
        settings = parse_settings("[overload]\ntarget = 0.05\ntone = busy\nbusy = 0.7\n")
        self.assertEqual((settings.overload.target, settings.overload.tone, settings.overload.busy),
                         (0.05, "busy", 0.7))
        self.assertRaises(Exception, parse_settings, "[overload]\ndecrease = 1.5\n")
        self.assertRaises(Exception, parse_settings, "[overload]\nbusy = 2\n")


class Shedding(SynchronousTestCase):
    def test_a_shed_call_gets_reorder_and_a_record(self) -> None:
        """
        Overloaded, a new call is refused at once with reorder tone and a
        record (cause overload) and no connection; a call admitted before
        talks on and ends normally.
        """
        s = Switch()
        self.addCleanup(s.stop)
        a, b = s.phone("1001"), s.phone("2001")
        a.off_hook()
        s.run(0.5)
        a.dial("2001", gap=0.05)
        s.run(1.0)
        b.off_hook()
        s.run(0.5)
        guard = s.control.overload
        guard.stop()  # no probe: the share stays where the test puts it
        guard.settings = replace(guard.settings, floor=0.0)
        guard.share = 0.0  # as after a long run of late probes
        c = s.phone("1002")
        c.off_hook()
        s.run(0.5)
        c.dial("2002", gap=0.05)
        s.run(0.5)
        self.assertIn("L/ro", {str(x) for x in c.signals})
        self.assertEqual((c.connections, s.phone("2002").ringing), ((), False))
        self.assertIs(s.line("aaln/2@rgw1").state, LineState.REORDER)
        self.assertEqual(len(a.connections) + len(b.connections), 2)
        a.on_hook()
        b.on_hook()
        c.on_hook()
        s.run(1.0)
        self.assertEqual(sorted(r.cause.value for r in s.recorder.records), ["normal", "overload"])
        stats = s.service.transaction_stats()["overload"]
        self.assertEqual((stats["calls_shed"], stats["admitted_share"]), (1, 0.0))
        self.assertTrue(s.idle())
        self.assertIs(ReleaseCause("overload"), ReleaseCause.OVERLOAD)
