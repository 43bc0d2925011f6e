"""
Overload control (issue 15): the guard that watches the reactor's
lateness and admits a shrinking share of new calls, and what call control
does with a call it sheds (reorder at once, a record with cause overload,
calls already admitted untouched).  Lateness is made by advancing the
clock past the probe, as a busy reactor would run it late; the process's
CPU time is given by the test (by default it advances at 0.6 of the
clock: an agent busy, below the CPU ceiling).
"""

from __future__ import annotations

import random
import re
from dataclasses import replace
from typing import Any, Callable, Optional

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from mgcpswitch.agent import commands as cmd
from mgcpswitch.agent.model import CallState, LineState, ReleaseCause
from mgcpswitch.agent.overload import OverloadGuard, OverloadState
from mgcpswitch.config import OverloadSettings, parse_settings
from mgcpswitch.mgcp import decode, encode

from .support.switch import Switch, talking


class Guard(SynchronousTestCase):
    def guard(self, cpu: Optional[Callable[[], float]] = None,
              **options: object) -> tuple[Clock, OverloadGuard, list[OverloadState]]:
        clock = Clock()
        changes: list[OverloadState] = []
        guard = OverloadGuard(clock, OverloadSettings(**options), random.Random(1), changes.append,  # type: ignore[arg-type]
                              cpu=(lambda: clock.seconds() * 0.6) if cpu is None else cpu, wall=clock.seconds)
        guard.start()
        self.addCleanup(guard.stop)
        return clock, guard, changes

    def test_on_time_admits_everything(self) -> None:
        """
        A reactor on time: every call admitted, the state normal, one probe
        pending, and the CPU clock read once per probe (and at the start).
        """
        reads = []
        clock, guard, changes = self.guard(cpu=lambda: reads.append(1) or 0.0)
        for _ in range(100):
            clock.advance(0.02)
        self.assertEqual(len(reads), 101)
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
        self.assertRegex(lines[0], r"^overloaded: the agent uses \d+% of a core \(ceiling 80%\), the reactor runs \d+ ms late "
                                   r"\(target 30 ms\), 0 datagrams dropped unread; admitting \d+% of new calls$")
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

    def test_the_cpu_ceiling_leads(self) -> None:
        """
        The agent uses a whole core and its probes run 10 ms late (a third
        of the target): no spare capacity, so the share falls before the
        lateness reaches the target, a few per cent a probe (the signal is
        continuous); between the ceiling and the headroom below it (75 %)
        the share holds; at 50 % (on time) it grows back.  Probes on time
        with the CPU at the ceiling shed nothing: under a simulated clock
        (tests, in-process benchmarks) CPU over clock time means nothing.
        """
        cpu = [0.0]
        clock, guard, changes = self.guard(cpu=lambda: cpu[0])

        def run(probes: int, share_of_core: float, late: float = 0.0) -> None:
            for _ in range(probes):
                cpu[0] += (0.02 + late) * share_of_core
                clock.advance(0.02 + late)

        run(50, 1.0)
        self.assertEqual((guard.share, changes), (1.0, []))  # on time: a simulated clock, say

        run(50, 0.65)  # at the knee: 65 % of a core, every call admitted
        self.assertEqual((guard.share, changes), (1.0, []))
        run(6, 1.0, late=0.01)
        self.assertEqual(changes, [OverloadState.OVERLOADED])  # within 180 ms
        run(8, 1.0, late=0.01)
        self.assertLess(guard.share, 0.5)
        self.assertGreater(guard.share, 0.05)  # about 0.8 a probe, not the 0.7 of a late one
        self.assertLess(guard.late, 0.03)
        run(20, 0.75, late=0.01)
        held = guard.share
        run(20, 0.75, late=0.01)
        self.assertEqual(guard.share, held)
        run(150, 0.5)
        self.assertEqual((guard.share, changes), (1.0, [OverloadState.OVERLOADED, OverloadState.NORMAL]))

    def test_a_simulated_clock_is_never_busy(self) -> None:
        """
        A clock that is not real time (a test's, an in-process benchmark's):
        the process's CPU over its seconds means nothing, so however the
        CPU clock runs, the agent counts as idle and nothing is shed.
        """
        clock = Clock()
        cpu = [0.0]
        guard = OverloadGuard(clock, OverloadSettings(), random.Random(1), cpu=lambda: cpu[0], wall=lambda: 0.0)
        guard.start()
        self.addCleanup(guard.stop)
        for _ in range(100):
            cpu[0] += 0.1
            clock.advance(0.03)  # 10 ms late each time
        self.assertEqual((guard.share, guard.busy), (1.0, 0.0))

    def offer(self, clock: Clock, guard: OverloadGuard, rate: float, seconds: float) -> tuple[int, int]:
        """Offer C{rate} new calls a second, evenly spread, for C{seconds}: (admitted, shed)."""
        admitted = shed = 0
        for _ in range(round(rate * seconds)):
            clock.advance(1 / rate)
            if guard.admit():
                admitted += 1
            else:
                shed += 1
        return admitted, shed

    def costly(self, fixed: float = 0.0, **options: object) -> tuple[Clock, OverloadGuard, list[OverloadState]]:
        """
        A guard whose agent spends 2 ms of CPU per call admitted, 0.3 ms per
        call shed, and C{fixed} of a core on other work.
        """
        made: list[tuple[Clock, OverloadGuard]] = []

        def cpu() -> float:
            if not made:
                return 0.0
            clock, guard = made[0]
            return clock.seconds() * fixed + guard.admitted * 0.002 + guard.shed * 0.0003

        clock, guard, changes = self.guard(cpu=cpu, **options)
        made.append((clock, guard))
        return clock, guard, changes

    def test_the_rate_refuses_a_surge_from_its_first_call(self) -> None:
        """
        At 300 calls/s (60 % of a core at 2 ms a call) the guard learns the
        cost and sets the rate that fits under the 80 % ceiling (400 a
        second) and refuses nothing.  Offered four times that, it refuses
        the excess from the first 100 ms on, on time, before any lateness:
        it admits what fits under the ceiling once the calls shed are paid
        for (0.15 of one each), about 260 a second, and the agent stays
        at the ceiling.  Back at 300, at most a call or two is refused while
        the calls/s shed it pays for fade (0.9 left more room than 0.8 for
        that), none after, and after a second without a refusal the state
        is normal again.
        """
        clock, guard, changes = self.costly()
        self.assertEqual(self.offer(clock, guard, 300, 5), (1500, 0))
        assert guard.rate is not None and guard.cost is not None
        self.assertApproximates(guard.cost, 0.002, 0.0002)
        self.assertApproximates(guard.rate, 400, 40)
        self.assertEqual(changes, [])

        admitted, shed = self.offer(clock, guard, 1200, 0.1)
        self.assertLess(admitted, 0.1 * 400 + 0.1 * 400 + 1)  # the rate and its burst, no more
        self.assertEqual(changes, [OverloadState.OVERLOADED])
        self.assertEqual(guard.share, 1.0)  # no lateness: the rate alone refused them
        admitted, shed = self.offer(clock, guard, 1200, 10)
        self.assertApproximates(admitted / 10, 259, 25)  # 0.8 = 2 ms x admitted + 0.3 ms x the rest
        self.assertApproximates(guard.busy, 0.8, 0.05)
        self.assertEqual(guard.capped, guard.shed)

        self.assertLessEqual(self.offer(clock, guard, 300, 1.0)[1], 2)
        self.assertEqual(self.offer(clock, guard, 300, 1.0), (300, 0))
        self.assertEqual(changes, [OverloadState.OVERLOADED, OverloadState.NORMAL])
        snapshot = guard.snapshot()
        self.assertEqual((snapshot["calls_refused_by_rate"], snapshot["state"]), (guard.capped, "normal"))
        self.assertApproximates(snapshot["cpu_per_call_ms"], 2.0, 0.2)

    def test_the_calls_ending_do_not_raise_the_cost(self) -> None:
        """
        A call's work comes in two parts, its setup when admitted and its
        release when it ends (here 0.9 ms and, a second later, 0.6 ms: 1.5
        ms, so 533 calls a second fit under the ceiling).  When new calls
        stop coming, the releases of the calls still up go on for a second
        while the calls admitted fall to none: read as the calls' cost,
        that second would make them look several times dearer, and the
        next calls would be refused under a rate far below what fits.
        Offered 400 a second, then nothing for three seconds, then 480: the
        cost stays the call's and not one of the 480 is refused.
        """
        clock, guard, changes, offer = self.two_part_calls()
        self.assertEqual(offer(400, 5), 0)
        assert guard.cost is not None
        self.assertApproximates(guard.cost, 0.0015, 0.00015)
        clock.pump([0.02] * 150)  # three seconds without a new call
        self.assertApproximates(guard.cost, 0.0015, 0.00015)
        self.assertEqual(offer(480, 3), 0)
        self.assertEqual(changes, [])

    def two_part_calls(self, fixed: float = 0.0) -> tuple[Clock, OverloadGuard, list[OverloadState],
                                                          Callable[[float, float], int]]:
        """
        A guard whose agent spends 0.9 ms of CPU on a call when it admits
        it and 0.6 ms a second later (its release), and C{fixed} of a core
        on other work; and C{offer(rate, seconds)}, which offers new calls
        evenly spread and returns how many were refused.
        """
        admitted_at: list[float] = []
        made: list[tuple[Clock, OverloadGuard]] = []

        def cpu() -> float:
            if not made:
                return 0.0
            clock, guard = made[0]
            ended = sum(1 for t in admitted_at if t <= clock.seconds() - 1.0)
            return clock.seconds() * fixed + guard.admitted * 0.0009 + ended * 0.0006

        clock, guard, changes = self.guard(cpu=cpu)
        made.append((clock, guard))

        def offer(rate: float, seconds: float) -> int:
            refused = 0
            for _ in range(round(rate * seconds)):
                clock.advance(1 / rate)
                if guard.admit():
                    admitted_at.append(clock.seconds())
                else:
                    refused += 1
            return refused

        return clock, guard, changes, offer

    def test_rising_calls_are_read(self) -> None:
        """
        With fixed work beside the calls (10 % of a core), the cost read at
        200 calls/s is 2 ms, too high for more calls: the rate it gives is
        400 a second.  Offered 440 a second, which fits (0.1 + 440 x 1.5
        ms = 0.76 of a core), the guard reads the cost while the calls rise
        and refuses only the first few.
        """
        clock, guard, changes, offer = self.two_part_calls(fixed=0.1)
        self.assertEqual(offer(200, 5), 0)
        assert guard.rate is not None
        self.assertApproximates(guard.rate, 400, 20)
        self.assertLess(offer(440, 3), 20)
        self.assertEqual(offer(440, 3), 0)

    def test_with_a_rate_the_share_answers_alarms_only(self) -> None:
        """
        Once there is a rate, the agent at the ceiling with the reactor a
        little late (10 ms: a third of the target) keeps the share at one:
        the rate holds the CPU; two probes late past the target still cut
        the share, which grows back on time even with the agent at the
        ceiling.
        """
        clock, guard, _ = self.costly()
        self.offer(clock, guard, 300, 5)
        self.assertIsNotNone(guard.rate)
        for _ in range(50):
            guard.observe(0.01, 0.95)
        self.assertEqual(guard.share, 1.0)
        guard.observe(0.05, 0.95)
        guard.observe(0.05, 0.95)
        self.assertEqual(guard.share, 0.7)
        for _ in range(50):
            guard.observe(0.0, 0.95)
        self.assertEqual(guard.share, 1.0)

    def test_the_rate_rises_with_the_calls(self) -> None:
        """
        The cost learned at 100 calls/s reads high when the agent has other
        work too (a fixed 20 % of a core here): 4 ms a call, not 2, so the
        first rate is low (200 a second).  Offered 280 a second, which fits
        under the ceiling, the agent admits the rate, stays below the
        ceiling, reads a lower cost and raises the rate, until every call
        is admitted again.
        """
        clock, guard, _ = self.costly(fixed=0.2)
        self.offer(clock, guard, 100, 5)
        assert guard.rate is not None
        self.assertApproximates(guard.rate, 200, 10)
        admitted, _ = self.offer(clock, guard, 280, 1)
        self.assertLess(admitted, 250)
        self.offer(clock, guard, 280, 10)
        self.assertEqual(self.offer(clock, guard, 280, 1), (280, 0))
        self.assertLess(guard.busy, 0.8)

    def test_a_surge_from_idle(self) -> None:
        """
        From idle, the cost is read only once calls have come at 50+ a second
        for a second (before, the CPU share lags the calls admitted), and
        then the rate settles where the agent is at the ceiling.
        """
        clock, guard, _ = self.costly()
        self.assertEqual(self.offer(clock, guard, 1000, 0.9), (900, 0))
        self.assertIsNone(guard.rate)
        self.offer(clock, guard, 1000, 5)
        admitted, _ = self.offer(clock, guard, 1000, 1)
        self.assertApproximates(admitted, 294, 25)  # 0.8 = 2 ms x admitted + 0.3 ms x the rest
        self.assertApproximates(guard.busy, 0.8, 0.05)

    def test_no_rate_without_a_measure(self) -> None:
        """
        No rate is set under a simulated clock (the CPU share means
        nothing), with capacity = no, or below 50 calls/s admitted.
        """
        clock = Clock()
        simulated = OverloadGuard(clock, OverloadSettings(), random.Random(1), cpu=lambda: clock.seconds(),
                                  wall=lambda: 0.0)
        simulated.start()
        self.addCleanup(simulated.stop)
        self.offer(clock, simulated, 300, 2)
        _, off, _ = self.costly(capacity=False)
        self.offer(off._clock, off, 300, 2)  # type: ignore[arg-type]
        slow_clock, slow, _ = self.costly()
        self.offer(slow_clock, slow, 40, 2)
        self.assertEqual((simulated.rate, off.rate, slow.rate), (None, None, None))
        self.assertEqual(simulated.snapshot()["admission_rate"], None)

    def test_a_single_late_turn_is_not_overload(self) -> None:
        """One turn of 50 ms (a garbage collection, say) is smoothed away: nothing is shed."""
        clock, guard, changes = self.guard()
        clock.advance(0.07)
        for _ in range(50):
            clock.advance(0.02)
        self.assertEqual((guard.share, changes), (1.0, []))

    def test_a_long_turn_alone_is_not_overload(self) -> None:
        """
        One turn of 150 ms (five times the target: a batch of records
        written, say) between probes on time: nothing is shed; it takes two
        late probes in a row, as a backlog gives.
        """
        clock, guard, changes = self.guard()
        clock.advance(0.17)
        for _ in range(50):
            clock.advance(0.02)
        self.assertEqual((guard.share, changes), (1.0, []))

    def test_drops_cut_at_once(self) -> None:
        """
        A probe on time that saw the kernel drop datagrams at the agent's
        socket (its receive buffer full): the share is cut at once, by
        C{decrease}, with no second probe; the drops are counted and shown
        with the bytes queued.  Drops while the agent idles (waiting for a
        core on a machine busy with others) shed nothing, as lateness then.
        """
        kernel = [0, 5]  # bytes queued, drops so far (a u32 that wraps)
        clock, guard, changes = self.guard()
        guard.watch(lambda: (kernel[0], kernel[1]))
        clock.advance(0.02)
        self.assertEqual((guard.share, guard.dropped), (1.0, 0))  # the drops before it watched are not ours
        kernel[:] = [212_480, 5 + 134]
        clock.advance(0.02)
        self.assertEqual((guard.share, changes), (0.7, [OverloadState.OVERLOADED]))
        self.assertEqual((guard.snapshot()["receive_dropped"], guard.snapshot()["receive_queued_bytes"]), (134, 212_480))
        kernel[:] = [0, 2**32 - 1]
        guard.watch(lambda: (kernel[0], kernel[1]))
        kernel[1] = 3  # wrapped: four more
        clock.advance(0.02)
        self.assertEqual((guard.dropped, round(guard.share, 2)), (138, 0.49))

        cpu = [0.0]
        clock, guard, changes = self.guard(cpu=lambda: cpu[0])
        guard.watch(lambda: (0, kernel[1]))
        for _ in range(10):
            kernel[1] += 50
            cpu[0] += 0.002  # a tenth of a core
            clock.advance(0.02)
        self.assertEqual((guard.share, changes, guard.dropped), (1.0, [], 500))

    def test_receive_meter(self) -> None:
        """
        On Linux, a real UDP socket's queue and drops are read from the
        kernel (SO_MEMINFO): a buffer too small for what was sent drops
        the rest.  Not a socket (an in-memory port's): nothing to read.
        """
        import socket
        import sys

        from mgcpswitch.agent.overload import receive_meter

        self.assertIsNone(receive_meter(None))
        self.assertIsNone(receive_meter(object()))
        if not sys.platform.startswith("linux"):
            raise SkipTest("SO_MEMINFO is Linux's")
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(receiver.close)
        self.addCleanup(sender.close)
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        receiver.bind(("127.0.0.1", 0))
        meter = receive_meter(receiver)
        assert meter is not None
        self.assertEqual(meter(), (0, 0))
        for _ in range(100):
            sender.sendto(b"NTFY 1 aaln/1@gw MGCP 1.0\r\n", receiver.getsockname())
        queued, dropped = meter()
        self.assertGreater(queued, 0)
        self.assertGreater(dropped, 0)
        self.assertLess(dropped, 100)
        receiver.close()
        self.assertIsNone(receive_meter(receiver))

    def test_disabled(self) -> None:
        """enabled = no: no probe runs, every call is admitted."""
        clock, guard, _ = self.guard(enabled=False)
        self.assertEqual(clock.getDelayedCalls(), [])
        guard.observe(10.0)  # even if told the reactor is late, the share is what decides
        self.assertTrue(guard.admit() or guard.share < 1)

    def test_config(self) -> None:
        """[overload] keys are read and checked."""
        settings = parse_settings("[overload]\ntarget = 0.05\ntone = busy\nbusy = 0.7\nceiling = 0.8\n")
        self.assertEqual((settings.overload.target, settings.overload.tone, settings.overload.busy,
                          settings.overload.ceiling), (0.05, "busy", 0.7, 0.8))
        self.assertRaises(Exception, parse_settings, "[overload]\ndecrease = 1.5\n")
        self.assertRaises(Exception, parse_settings, "[overload]\nbusy = 2\n")


def overloaded(s: Switch) -> OverloadGuard:
    """The guard of C{s} shedding every new call (no probe: the share stays where the test puts it)."""
    guard = s.control.overload
    guard.stop()
    guard.settings = replace(guard.settings, floor=0.0)
    guard.share = 0.0  # as after a long run of late probes
    return guard


class Shedding(SynchronousTestCase):
    def test_a_shed_call_costs_two_transactions(self) -> None:
        """
        Overloaded, a new call is refused at its off-hook NTFY: the NTFY's
        response carries one RQNT (reorder; the hang-up re-arms the line
        by an embedded request, without a word to the agent), a record
        with cause overload, no connection; a call admitted before talks
        on and ends normally, and the line's next off-hook is a new call.
        """
        s = Switch()
        self.addCleanup(s.stop)
        a, b = talking(s, "1001", "2001")
        guard = overloaded(s)
        c = s.phone("1002")
        since = s.mark()
        c.off_hook()
        s.run(0.5)
        self.assertEqual(s.steps("aaln/2@rgw1", since), ["NTFY O:L/hd", "RQNT R:L/hu S:L/ro"])
        self.assertEqual([str(x) for x in c.signals], ["L/ro"])
        self.assertEqual(len(s.network.log) - since, 3)  # NTFY, its response + the RQNT, the RQNT's response
        line = s.line("aaln/2@rgw1")
        self.assertIs(line.state, LineState.IDLE)
        c.on_hook()
        s.run(1.0)
        self.assertEqual(s.steps("aaln/2@rgw1", since)[2:], [])  # the hang-up is not notified
        self.assertEqual((c.connections, s.phone("2002").ringing), ((), False))
        self.assertEqual(len(a.connections) + len(b.connections), 2)
        a.on_hook()
        b.on_hook()
        s.run(1.0)
        self.assertEqual(sorted(r.cause.value for r in s.recorder.records), ["normal", "overload"])
        stats = s.service.transaction_stats()["overload"]
        self.assertEqual((stats["calls_shed"], stats["admitted_share"]), (1, 0.0))
        self.assertTrue(s.idle())
        # No longer overloaded: the line's next off-hook is an ordinary call.
        guard.share = 1.0
        since = s.mark()
        a, b = talking(s, "1002", "2001")
        self.assertEqual(s.steps("aaln/2@rgw1", since)[:2], ["NTFY O:L/hd", "RQNT R:L/hu,D/[0-9#*T] S:L/dl"])
        a.on_hook()
        b.on_hook()
        s.run(1.0)
        self.assertTrue(s.idle())

    def test_embedded_dial_tone_sheds_at_the_digits(self) -> None:
        """
        Where the idle request embeds dial tone, the first NTFY carries the
        off-hook and the digits: the call is shed there (its record says
        what was dialled).  The re-arming request cannot embed dial tone
        again (an embedded request may not embed another, RFC 3435
        §2.3.3), so the line's next call starts with a plain off-hook NTFY,
        and the line gets the embedded request back once that call ends.
        """
        s = Switch(embedded=True)
        self.addCleanup(s.stop)
        overloaded(s)
        c = s.phone("1002")
        since = s.mark()
        c.off_hook()
        s.run(0.2)
        c.dial("2002", gap=0.05)
        s.run(0.5)
        self.assertEqual(s.steps("aaln/2@rgw1", since),
                         ["NTFY O:L/hd,D/2,D/0,D/0,D/2", "RQNT R:L/hu S:L/ro"])
        c.on_hook()
        s.run(1.0)
        self.assertEqual(len(s.steps("aaln/2@rgw1", since)), 2)
        self.assertEqual([(r.cause.value, r.callee) for r in s.recorder.records], [("overload", "2002")])
        self.assertTrue(s.idle())
        s.control.overload.share = 1.0
        since = s.mark()
        a, b = talking(s, "1002", "2001")
        self.assertEqual(s.steps("aaln/2@rgw1", since)[:3],
                         ["NTFY O:L/hd", "RQNT R:L/hu,D/[0-9#*T] S:L/dl", "NTFY O:D/2,D/0,D/0,D/1"])
        a.on_hook()
        b.on_hook()
        s.run(1.0)
        self.assertTrue(s.idle())
        since = s.mark()
        a, b = talking(s, "1002", "2001")
        self.assertEqual(s.steps("aaln/2@rgw1", since)[0], "NTFY O:L/hd,D/2,D/0,D/0,D/1")

    def test_unwatched_sheds_write_the_record_alone(self) -> None:
        """
        With nobody watching calls (no observer, no subscriber: a switch
        under a surge, typically), a shed call's record goes to the store
        as it would have (cause overload, the caller, what was dialled),
        the counters count it, and no call is made for it.
        """
        s = Switch(embedded=True)
        self.addCleanup(s.stop)
        s.control.events.observers.clear()
        s.control.events.watched = False
        overloaded(s)
        c = s.phone("1002")
        c.off_hook()
        s.run(0.2)
        c.dial("2002", gap=0.05)
        s.run(0.5)
        c.on_hook()
        s.run(0.5)
        [record] = s.control.store.records  # type: ignore[attr-defined]
        self.assertEqual((record.cause, record.caller, record.callee, record.caller_endpoint, record.answer),
                         (ReleaseCause.OVERLOAD, "1002", "2002", "aaln/2@rgw1", None))
        self.assertEqual((s.control.counters["calls_started"], s.control.counters["calls_ended"],
                          s.service.call_outcomes()["overload"]), (1, 1, 1))
        self.assertEqual([c.call_id for c in s.control.recent_calls()], [record.call_id])  # listed for the admin
        self.assertTrue(s.idle())

    def test_hung_up_before_the_tone(self) -> None:
        """
        The caller hangs up before the shed's RQNT arrives: the gateway
        answers 402 (already on hook) and the agent arms the line itself.
        """
        s = Switch(latency=0.05)
        self.addCleanup(s.stop)
        overloaded(s)
        c = s.phone("1002")
        c.off_hook()
        s.run(0.06)  # the NTFY is at the agent, its answer on its way
        c.on_hook()
        s.run(1.0)
        self.assertIs(s.line("aaln/2@rgw1").state, LineState.IDLE)
        self.assertTrue(s.idle())
        self.assertEqual([r.cause.value for r in s.recorder.records], ["overload"])


def unwatched(s: Switch) -> None:
    """Nobody watches calls (no observer, no subscriber): the switch in a surge, and the NTFY fast path's case."""
    s.control.events.observers.clear()
    s.control.events.watched = False


def overloaded_now(s: Switch) -> OverloadGuard:
    """L{overloaded}, and in the overloaded state, as its probe puts it once it sheds (the fast path is offered then)."""
    guard = overloaded(s)
    guard.state = OverloadState.OVERLOADED
    assert guard.changed is not None
    guard.changed(guard.state)
    return guard


def from_agent(s: Switch, since: int) -> list[bytes]:
    """The datagrams the agent sent from C{since}, each with its C{K:} line left out."""
    return [re.sub(rb"K: [^\r]*\r\n", b"", d.data) for d in s.network.log[since:] if d.source[1] == 2727]


class FastShedding(SynchronousTestCase):
    """
    Shed at the layer's NTFY fast path (calls unwatched): the bytes read
    and sent there are what the long way reads and sends, and the
    transactions keep their semantics (the RQNT retransmitted until
    answered, the NTFY's response replayed to its duplicate).
    """

    def shed_once(self, embedded: bool, fast: bool) -> tuple[list[bytes], Any]:
        s = Switch(embedded=embedded)
        self.addCleanup(s.stop)
        if fast:
            unwatched(s)
        overloaded_now(s)
        layer = s.service.protocol.transactions
        c = s.phone("1002")
        since = s.mark()
        c.off_hook()
        s.run(0.2)
        if embedded:
            c.dial("2002", gap=0.05)
            s.run(0.5)
        self.assertEqual(layer.counters["fast_path"], 1 if fast else 0)
        return from_agent(s, since), s

    def test_the_bytes_are_the_long_ways(self) -> None:
        for embedded in (False, True):
            fast, s = self.shed_once(embedded, True)
            slow, _ = self.shed_once(embedded, False)
            line = s.line("aaln/2@rgw1")
            [datagram] = fast
            [response, rqnt] = decode(datagram)
            self.assertEqual((response.code, response.comment, rqnt.endpoint), (200, "OK", "aaln/2@rgw1"))
            expected = b"%s.\r\n%s" % (
                encode(response),
                encode(cmd.rqnt(rqnt.transaction_id, rqnt.endpoint, line.request_id, cmd.SHED_EVENTS,
                                cmd.REORDER_TONE)),
            )
            self.assertEqual(datagram, expected)
            # The long way's datagram is the same but for the ids.
            ids = re.compile(rb"\b[0-9a-f]{6,}\b")
            self.assertEqual(ids.sub(b"#", slow[0]), ids.sub(b"#", datagram))
            [record] = s.control.store.records  # type: ignore[attr-defined]
            self.assertEqual((record.cause, record.caller, record.callee), (ReleaseCause.OVERLOAD, "1002",
                                                                             "2002" if embedded else None))
            self.assertEqual((s.service.call_outcomes()["overload"], s.control.overload.shed,
                              s.control.counters["calls_ended"]), (1, 1, 1))
            self.assertEqual([str(x) for x in s.phone("1002").signals], ["L/ro"])
            s.phone("1002").on_hook()
            s.run(1.0)
            self.assertTrue(s.idle())

    def test_the_rqnt_is_retransmitted_and_the_ntfy_answered_from_the_cache(self) -> None:
        """
        The datagram with the response and the RQNT is lost: the gateway
        repeats its NTFY and gets the response alone (from the layer's
        cache: the call is shed once), and the agent repeats the RQNT.
        """
        s = Switch()
        self.addCleanup(s.stop)
        unwatched(s)
        overloaded_now(s)
        c = s.phone("1002")
        since = s.mark()
        s.network.drop_next(lambda data: b"RQNT" in data and data.startswith(b"200"))
        c.off_hook()
        s.run(1.0)
        sent = from_agent(s, since)
        [first] = [re.sub(rb"K: [^\r]*\r\n", b"", d.data) for d in s.network.log[since:] if d.fate == "dropped"]
        ntfy_response, rqnt = first.split(b".\r\n")
        self.assertEqual(sent[0], first)
        self.assertIn(ntfy_response, sent[1:])  # the replay: the response alone
        self.assertIn(rqnt, sent[1:])  # the RQNT on its own
        layer = s.service.protocol.transactions
        self.assertEqual((layer.counters["fast_path"], layer.counters["replays"]), (1, 1))
        self.assertGreaterEqual(layer.counters["retransmissions"], 1)
        self.assertEqual((s.control.overload.shed, s.service.call_outcomes()["overload"]), (1, 1))
        self.assertEqual([str(x) for x in c.signals], ["L/ro"])
        self.assertEqual(layer.snapshot()["pending"], 0)
        c.on_hook()
        s.run(1.0)
        self.assertTrue(s.idle())

    def test_admitted_at_the_fast_path_is_drawn_once(self) -> None:
        """A new call the guard admits at the fast path goes the usual way, without a second draw."""
        s = Switch()
        self.addCleanup(s.stop)
        unwatched(s)
        guard = overloaded_now(s)
        guard.share = 1.0
        a, b = talking(s, "1002", "2001")
        self.assertEqual((guard.admitted, guard.shed), (1, 0))
        self.assertEqual(s.service.protocol.transactions.counters["fast_path"], 0)
        a.on_hook()
        b.on_hook()
        s.run(1.0)
        self.assertTrue(s.idle())
        self.assertEqual(s.service.call_outcomes()["normal"], 1)

    def test_other_ntfys_go_the_long_way(self) -> None:
        """
        Only a new call's first NTFY, whole, from its gateway's address, on
        an idle line, unwatched, is taken at the fast path (and then only
        after the guard's draw); a stopped agent takes none.
        """
        s = Switch()
        self.addCleanup(s.stop)
        unwatched(s)
        guard = overloaded_now(s)
        fast = s.control._first_notify
        gw = ("127.0.0.2", 2427)
        ok = b"NTFY 77 aaln/2@rgw1 MGCP 1.0\r\nX: 1f\r\nO: L/hd\r\n"
        for data, endpoint, source in [
            (ok.replace(b"L/hd", b"L/hf"), "aaln/2@rgw1", gw),  # a hook-flash
            (ok.replace(b"L/hd", b"L/hd,L/hu"), "aaln/2@rgw1", gw),
            (ok.replace(b"O: ", b"N: ca@[127.0.0.1]\r\nO: "), "aaln/2@rgw1", gw),  # another parameter
            (ok.replace(b"\r\n", b"\n"), "aaln/2@rgw1", gw),  # LF line ends
            (ok + b"\r\nv=0\r\n", "aaln/2@rgw1", gw),  # a body
            (ok, "aaln/2@rgw1", ("127.0.0.9", 2427)),  # not from the gateway's address
            (ok.replace(b"aaln/2", b"aaln/99"), "aaln/99@rgw1", gw),  # an endpoint it does not have
        ]:
            self.assertIsNone(fast(data, 77, endpoint, source), data)
        s.control.events.watched = True
        self.assertIsNone(fast(ok, 77, "aaln/2@rgw1", gw))
        s.control.events.watched = False
        self.assertEqual((guard.admitted, guard.shed), (0, 0))
        self.assertIsNotNone(fast(ok, 77, "aaln/2@rgw1", gw))
        self.assertEqual((guard.admitted, guard.shed), (0, 1))
        layer = s.service.protocol.transactions
        self.assertEqual(list(layer._fast_paths), [b"NTFY"])
        guard.changed(OverloadState.NORMAL)  # every new call admitted: NTFYs are not read twice
        self.assertEqual(layer._fast_paths, {})
        guard.changed(OverloadState.OVERLOADED)
        s.control.stop()
        self.assertEqual(layer._fast_paths, {})
        guard.changed(OverloadState.OVERLOADED)
        self.assertEqual(layer._fast_paths, {})

    def test_the_admin_lists_them_as_when_watched(self) -> None:
        """
        The admin's recent calls (and a call's page) show a shed call as
        they show one shed while watched, and keep as many as the ended calls.
        """
        views = []
        for watched in (True, False):
            s = Switch(embedded=True, ended_calls_kept=3)
            self.addCleanup(s.stop)
            if not watched:
                unwatched(s)
            overloaded_now(s)
            c = s.phone("1002")
            for _ in range(4):
                c.off_hook()
                s.run(0.2)
                c.dial("2002", gap=0.05)
                s.run(0.5)
                c.on_hook()
                s.run(0.5)
            listed = s.service.list_calls()
            self.assertEqual(len(listed), 3)
            self.assertEqual(s.service.get_call(listed[-1].call_id), listed[-1])
            self.assertIsNone(s.service.get_call("nonesuch"))
            views.append([replace(v, call_id="", started=0.0, ended=0.0) for v in listed])
        self.assertEqual(views[0], views[1])
        self.assertEqual((views[1][0].cause, views[1][0].caller, views[1][0].state),
                         (ReleaseCause.OVERLOAD, "aaln/2@rgw1", CallState.ENDED))


    def test_a_gateway_of_a_profile_gets_the_rqnt_in_it(self) -> None:
        """The template is for gateways of plain MGCP 1.0: to one that registered with a profile the RQNT says it."""
        s = Switch()
        self.addCleanup(s.stop)
        unwatched(s)
        overloaded_now(s)
        s.control.gateway("rgw1").version = "MGCP 1.0 NCS 1.0"
        c = s.phone("1002")
        since = s.mark()
        c.off_hook()
        s.run(0.5)
        [datagram] = from_agent(s, since)
        self.assertIn(b"aaln/2@rgw1 MGCP 1.0 NCS 1.0\r\nX: ", datagram)
        self.assertEqual(s.service.protocol.transactions.counters["fast_path"], 1)
        self.assertEqual((s.control.overload.shed, s.service.call_outcomes()["overload"]), (1, 1))


class Background(SynchronousTestCase):
    """
    Work that is not calls' (lines resynchronising after a restart: issue
    15) neither cuts the share at the ceiling nor is read as the calls' CPU.
    """

    def guard(self, storm: list[bool]) -> tuple[Clock, OverloadGuard]:
        """
        A guard whose agent spends 2 ms of CPU per call admitted, 0.3 ms per
        call shed, and, while C{storm[0]}, 40 % of a core resynchronising.
        """
        clock = Clock()
        spent = [0.0, 0.0]  # CPU seconds, when last read

        def cpu() -> float:
            now = clock.seconds()
            if storm[0]:
                spent[0] += 0.4 * (now - spent[1])
            spent[1] = now
            return spent[0] + guard.admitted * 0.002 + guard.shed * 0.0003

        guard = OverloadGuard(clock, OverloadSettings(), random.Random(1), cpu=cpu, wall=clock.seconds,
                              background=lambda: storm[0])
        guard.start()
        self.addCleanup(guard.stop)
        return clock, guard

    def offer(self, clock: Clock, guard: OverloadGuard, rate: int, seconds: float) -> tuple[int, int]:
        return Guard.offer(self, clock, guard, rate, seconds)  # type: ignore[arg-type]

    def test_a_storm_does_not_lower_the_rate(self) -> None:
        """
        At 300 calls/s the guard learns 2 ms a call (a rate of 400 under the 0.8 ceiling); a
        storm of three seconds taking the agent to a full core refuses no
        call and leaves the cost and the rate as they were.
        """
        storm = [False]
        clock, guard = self.guard(storm)
        self.offer(clock, guard, 300, 5)
        assert guard.cost is not None
        self.assertApproximates(guard.cost, 0.002, 0.0002)
        storm[0] = True
        self.assertEqual(self.offer(clock, guard, 300, 3), (900, 0))
        self.assertApproximates(guard.busy, 1.0, 0.05)
        self.assertApproximates(guard.cost, 0.002, 0.0002)
        self.assertApproximates(guard.rate, 400, 40)
        storm[0] = False
        self.assertEqual(self.offer(clock, guard, 300, 2), (600, 0))
        self.assertIs(guard.state, OverloadState.NORMAL)

    def test_counted_as_calls_it_would(self) -> None:
        """
        The same storm, for three seconds, not said to be background: the
        cost read rises by half and the rate falls below the 300 calls a
        second offered.
        """
        storm = [False]
        clock, guard = self.guard(storm)
        guard._background = lambda: False  # the guard as it was: every CPU second is the calls'
        self.offer(clock, guard, 300, 5)
        storm[0] = True
        self.offer(clock, guard, 300, 3)
        assert guard.cost is not None and guard.rate is not None
        self.assertGreater(guard.cost, 0.003)
        self.assertLess(guard.rate, 300)

    def test_no_ceiling_cut_while_resynchronising(self) -> None:
        """
        With no rate learned yet, the agent at a full core and the reactor
        10 ms late: the share holds while lines resynchronise, and is cut
        by the ceiling otherwise; lateness past the target twice cuts it
        either way.  Once the storm is over, the ceiling counts again
        after L{OverloadGuard.SETTLE} probes.
        """
        storm = [True]
        clock, guard = self.guard(storm)
        for _ in range(50):
            guard.observe(0.01, 1.0)
        self.assertEqual(guard.share, 1.0)
        guard.observe(0.05, 1.0)
        guard.observe(0.05, 1.0)
        self.assertEqual(guard.share, 0.7)
        for _ in range(40):
            guard.observe(0.0, 1.0)
        self.assertEqual(guard.share, 1.0)  # grows back on time, the core full of the storm
        storm[0] = False
        for _ in range(guard.SETTLE - 1):  # the smoothed CPU share still holds the storm's work
            guard.observe(0.01, 1.0)
        self.assertEqual(guard.share, 1.0)
        guard.observe(0.01, 1.0)
        self.assertLess(guard.share, 1.0)
