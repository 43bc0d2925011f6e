# -*- test-case-name: tests.test_agent_overload -*-
"""
Overload control: admit fewer new calls when the agent falls behind, so
that the calls it admits complete, instead of every call failing.

Why: past its capacity, a call agent's answers come later than the
gateways' retransmission timers, both sides retransmit, the work per call
doubles and the completed rate collapses (RFC 6357 §3 describes the same
collapse for SIP servers).  The cure is to refuse the excess early and
cheaply: a call refused at its first NTFY costs the agent that NTFY and
one RQNT riding with its response (the caller hears reorder, the record's
cause is C{overload}), two transactions of a completed call's eleven.

What is measured, at each probe (a timer asking to run every C{interval}
seconds): how late it ran (the reactor was busy with other work: a turn
that handled a burst of datagrams), and the share of a core the process
used since the previous probe (its CPU time, read at every probe: a
system call of a few microseconds, fifty times a second).

Lateness alone does not say that the agent is the cause: on a machine
shared with other busy processes the reactor also runs late while the
agent waits for a core, and shedding calls then only loses them (on this
project's shared 2-core machine the guard shed three calls in four with
the agent at 18 % of a core).  So a late probe counts only if the process
used at least C{busy} of a core over that same interval: a late turn
spent on its own work, not waiting for a core.

Why per probe, and not smoothed over a second as before: by the time a
lateness averaged over ten probes rose, the datagrams of a second of
surge were queued, the admitted calls' setups took seconds and the
gateways retransmitted (2x the knee: p99 setup 1.3 s, 2 % retransmitted).
Two probes in a row, each later than the target, are overload: a backlog
keeps every turn long, while a single long turn (a garbage collection, a
batch of records written, the periodic work of a busy agent) is not, and
shedding for one cost calls at the knee itself (a few dozen every five
seconds at 300 calls/s when a single turn of twice the target counted).
The CPU share leads it: past C{ceiling} of a core
(smoothed over about five probes, 100 ms) the agent has no spare
capacity left, the next burst queues, and the share admitted falls as
soon as the reactor runs a quarter of the target late.  Under a
simulated clock (tests, in-process benchmarks) CPU seconds over its
seconds mean nothing: a probe whose clock interval differs from real
time by more than half counts the agent idle (a test suite on a loaded
machine shed calls in simulated-time tests before this).

What the kernel says, where it can (Linux, C{SO_MEMINFO} on the agent's
UDP socket, read at each probe with the CPU time): datagrams it dropped
because the agent's receive buffer was full.  That buffer holds about
166 small datagrams by default (212,992 bytes at 1,280 bytes of kernel
accounting each), some 30 ms of the agent's work: past it the surge
does not queue, it is lost, and lateness cannot grow much beyond one
buffer's worth of work, while every datagram lost comes back as a
retransmission 200 ms or more later (part of the seconds-long setups
of the 4x surge).  A drop is evidence no single long turn gives: the
agent did not read in time.  And since the agent reads at most
L{mgcpswitch.transport.READ_TURN} datagrams a turn, so that timers run
between, a backlog of datagrams no longer makes the probes late: it
shows here, once the buffer is full (the late probes that remain are
long timers and the collector's pauses).  So a probe that saw drops,
the agent busy, cuts the share at once, without waiting for a second
late probe.  Busy, as for
lateness: on the shared machine, offered the knee rate with the agent
given a third of a core, drops that cut the share whatever the CPU share
made it shed two calls in three and complete 93 calls a second, against
215 when nothing was shed there (the calls it sheds cost CPU too, and the
agent's trouble was a core, not its own work).

What is done: admission control with additive increase and
multiplicative decrease (RFC 7339's loss-based feedback, applied to our
own admission).  At each late probe after a late one (both above
C{target}, the agent busy) the share of new calls admitted is cut by
C{decrease}, and so is it at each probe that saw the kernel drop
datagrams; at each probe with the CPU share above C{ceiling} (and the
lateness above a quarter of the target), by the ceiling over the CPU
share (a few per cent: the signal is continuous); never below C{floor}.
Once the lateness is below half the target and the CPU share below the
ceiling minus a headroom of 0.1, it grows back by C{increase} per probe
(between the two it holds, so that it does not swing around the
ceiling).  The agent is "overloaded" while the share is below one.
Calls already admitted are never touched: the decision is taken at a new
call's first NTFY (L{mgcpswitch.agent.routing.Router.shed}).

And before any of that (C{capacity}, on by default): an admission rate.
The agent learns its CPU per call while it carries calls, and admits at
most the new calls per second that fit under the ceiling, the calls it
sheds paid for; past it, a new call is refused at once, from the first
one (L{_learn} says why a reaction alone comes too late).  Once there is
a rate, it alone answers the CPU share, and the share admitted answers
only lateness and drops (the ceiling's cut and headroom apply without a
rate only).  The agent is also "overloaded" while that rate refuses
calls, and for a second after.

Neither the ceiling nor the CPU per call counts work that is not calls'
(C{background}: lines resynchronising after a restart, issue 15).  A
registration storm fills the core on its own for a second or more (10,000
lines: 20,000 transactions), paced by its audits in flight, and ends by
itself; shedding calls then frees nothing, and the storm's CPU read as
the calls' would set the rate too low for seconds after it (on this
project's machine the ceiling alone shed 230 of 552 new calls over 3 s
after ten gateways registered, the reactor 11 ms late at worst).  The
alarms still count: lateness past the target twice and drops mean calls
wait or are lost, whatever the work.  The CPU share is smoothed, so it
still holds the storm's work for a few probes after it ends: the two
wait L{SETTLE} probes more (without, in one run of the lean 300 calls/s
step, the ceiling cut the share as the storm ended: 17 calls shed).

What is said: one log line when the agent becomes overloaded (its CPU
share, how late the reactor runs, the share admitted) and one when it
recovers (how long it lasted, how many new calls were shed of how many,
the lowest share), never one per shed call: a surge sheds thousands.
"""

from __future__ import annotations

import enum
import random
import socket
import struct
import sys
import time
from typing import Any, Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..config import OverloadSettings

__all__ = ["OverloadState", "OverloadGuard", "receive_meter"]

# Linux's SO_MEMINFO (include/uapi/asm-generic/socket.h): nine u32, of
# which [0] is the receive queue's kernel memory (SK_MEMINFO_RMEM_ALLOC)
# and [8] the datagrams dropped (SK_MEMINFO_DROPS).
_SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)
_MEMINFO = struct.Struct("9I")

ReceiveMeter = Callable[[], "tuple[int, int]"]


def receive_meter(sock: Any) -> Optional[ReceiveMeter]:
    """
    A reader of C{sock}'s receive queue: (bytes queued, datagrams dropped
    since it was opened), from the kernel; None where the kernel does not
    say (not Linux, not a real socket: a test's in-memory port).
    """
    if not sys.platform.startswith("linux") or not isinstance(sock, socket.socket):
        return None
    size, unpack, level = _MEMINFO.size, _MEMINFO.unpack, socket.SOL_SOCKET

    def read() -> tuple[int, int]:
        info = unpack(sock.getsockopt(level, _SO_MEMINFO, size))
        return info[0], info[8]

    try:
        read()
    except (OSError, struct.error):
        return None
    return read


class OverloadState(enum.Enum):
    __hash__ = object.__hash__
    NORMAL = "normal"
    OVERLOADED = "overloaded"


class OverloadGuard:
    """
    Watches the reactor's lateness on C{clock} and says whether to admit a
    new call (L{admit}).  C{changed(state)} is told when the state changes.
    """

    log = Logger()
    LATENESS_SMOOTHING = 0.5  # weight of the newest probe in the lateness the CPU ceiling and recovery read
    BUSY_SMOOTHING = 0.2  # about five probes (100 ms) of CPU share
    SHOWN_SMOOTHING = 0.1  # the lateness shown (/api/stats, /metrics): about ten probes
    HEADROOM = 0.1  # the share grows back only below the ceiling minus this: between, it holds
    EARLY = 0.25  # at the CPU ceiling, a lateness of this much of the target is enough
    LEARNING = 0.02  # weight of the newest probe in the CPU per call learned: about a second of probes
    LEARN_FROM = 50.0  # calls/s admitted, at least, for the CPU per call to be read from them
    FALLING = 0.2  # the calls/s (100 ms) this share below their mean over a second: the cost is not read
    CALM = 50  # probes (a second) without a call refused by the rate before it no longer counts as overload
    SETTLE = 10  # probes after background work ends before the CPU share is the calls' again (busy still holds it)

    def __init__(
        self, clock: IReactorTime, settings: OverloadSettings = OverloadSettings(),
        random_source: Optional[random.Random] = None,
        changed: Optional[Callable[[OverloadState], None]] = None,
        cpu: Callable[[], float] = time.process_time,
        wall: Callable[[], float] = time.monotonic,
        background: Callable[[], bool] = lambda: False,
    ) -> None:
        """
        @param cpu: the process's CPU time in seconds (injected: tests give
            one that advances with their clock, as a busy agent's would).
        @param wall: real time in seconds, to tell a simulated C{clock}
            (tests give their clock's C{seconds}).
        @param background: whether the agent is busy with work that is not
            calls' now (lines resynchronising): the ceiling does not cut
            the share and the CPU per call is not read meanwhile.
        """
        self._clock = clock
        self._background = background
        self._after_background = self.SETTLE  # probes since background work was last seen
        self._cpu = cpu
        self._wall = wall
        self._wall_at = 0.0
        self.settings = settings
        self._random = (random_source or random.Random()).random
        self.changed = changed
        self.share = 1.0  # of new calls admitted
        self.late = 0.0  # smoothed over two probes, seconds
        self._last_late = 0.0  # the previous probe's lateness: two late in a row are overload
        self.lateness = 0.0  # smoothed over about ten, seconds: what is shown
        self.busy = 0.0  # smoothed share of a core the process used
        self.state = OverloadState.NORMAL
        self.admitted = 0
        self.shed = 0
        self.episodes = 0  # times the agent became overloaded
        # The current episode, for the line that ends it: when it began, the counts then, the lowest share.
        self._began = 0.0
        self._counts_then = (0, 0)
        self._lowest = 1.0
        self._due = 0.0
        self._ran = 0.0  # when the last probe ran
        self._cpu_at = 0.0  # the process's CPU time then
        self._probe: Optional[IDelayedCall] = None
        self._meter: Optional[ReceiveMeter] = None  # the agent's socket, read at each probe (L{watch})
        self._drops_at = 0  # the drops it had counted then
        self.dropped = 0  # datagrams the kernel dropped at the agent's socket since it was watched
        self.queued = 0  # bytes in its receive queue at the last probe
        # The admission rate (settings.capacity): what a call costs, learned, and the bucket that admits at that rate.
        self.cost: Optional[float] = None  # CPU seconds per admitted call (a shed one counts shed_cost of it)
        self.rate: Optional[float] = None  # new calls per second admitted at most; None: not learned yet
        self.capped = 0  # new calls refused by the rate (counted in shed too)
        self._tokens = 0.0
        self._filled = 0.0  # when the bucket was last filled
        self._burst = 0.0
        self._admitting = 0.0  # calls/s admitted, smoothed as busy is
        self._shedding = 0.0  # and shed
        self._paying = 0.0  # calls/s paid for (admitted, and shed at their share), over about a second
        self._counted = (0, 0, 0)  # admitted, shed, capped at the last probe
        self._calm = self.CALM  # probes since the rate last refused a call
        self._steady = 0  # probes in a row with at least LEARN_FROM calls/s admitted

    def watch(self, meter: Optional[ReceiveMeter]) -> None:
        """
        Read the agent's socket's receive queue and drops at each probe
        (L{receive_meter}; None: nothing to read, as for a socket closed).
        """
        self._meter = meter
        if meter is not None:
            self._drops_at = meter()[1]

    def stop(self) -> None:
        if self._probe is not None and self._probe.active():
            self._probe.cancel()
        self._probe = None

    def admit(self) -> bool:
        """
        Whether to admit a new call now: the share admitted draws first,
        then the admission rate's bucket, where one is learned.
        """
        share = self.share
        if share >= 1.0 or self._random() < share:
            rate = self.rate
            if rate is not None:
                now = self._clock.seconds()
                tokens = self._tokens + (now - self._filled) * rate
                self._filled = now
                if tokens > self._burst:
                    tokens = self._burst
                if tokens < 1.0:
                    self._tokens = tokens
                    self.capped += 1
                    self.shed += 1
                    return False
                self._tokens = tokens - 1.0
            self.admitted += 1
            return True
        self.shed += 1
        return False

    def snapshot(self) -> dict[str, Any]:
        """For /api/stats and /metrics."""
        return {
            "state": self.state.value, "admitted_share": round(self.share, 4),
            "lateness_ms": round(self.lateness * 1000, 3), "busy": round(self.busy, 3), "calls_admitted": self.admitted,
            "calls_shed": self.shed, "episodes": self.episodes,
            "admission_rate": None if self.rate is None else round(self.rate, 1),
            "cpu_per_call_ms": None if self.cost is None else round(self.cost * 1000, 4),
            "calls_refused_by_rate": self.capped,
            **({"receive_dropped": self.dropped, "receive_queued_bytes": self.queued} if self._meter else {}),
        }

    # -- the probe ---------------------------------------------------------------

    def _schedule(self) -> None:
        interval = self.settings.interval
        self._due = self._clock.seconds() + interval
        self._probe = self._clock.callLater(interval, self._probed)

    def start(self) -> None:
        if self.settings.enabled and self._probe is None:
            self._ran, self._cpu_at, self._wall_at = self._clock.seconds(), self._cpu(), self._wall()
            self._schedule()

    def _probed(self) -> None:
        now, cpu, wall = self._clock.seconds(), self._cpu(), self._wall()
        late = max(0.0, now - self._due)
        elapsed = now - self._ran
        busy = (cpu - self._cpu_at) / elapsed if elapsed > 0 else 0.0
        if abs((wall - self._wall_at) - elapsed) > elapsed / 2:
            # The clock is not real time (a simulated one: tests, in-process
            # benchmarks): CPU seconds over its seconds mean nothing.
            busy = 0.0
        self._ran, self._cpu_at, self._wall_at = now, cpu, wall
        self._schedule()
        dropped = 0
        if self._meter is not None:
            try:
                self.queued, drops = self._meter()
            except OSError:  # the socket closed under us (the service stopping)
                self._meter = None
            else:
                dropped, self._drops_at = (drops - self._drops_at) % 2**32, drops  # a u32 in the kernel: it wraps
                self.dropped += dropped
        self.observe(late, busy, dropped, elapsed)

    def observe(self, late: float, busy: float = 1.0, dropped: int = 0, elapsed: Optional[float] = None) -> None:
        """
        One probe ran C{late} seconds after it was due; the process used
        C{busy} of a core since the previous probe (C{elapsed} seconds ago:
        the interval if not given), and the kernel dropped C{dropped}
        datagrams meant for the agent meanwhile.
        """
        settings = self.settings
        self.late += self.LATENESS_SMOOTHING * (late - self.late)
        self.lateness += self.SHOWN_SMOOTHING * (late - self.lateness)
        self.busy += self.BUSY_SMOOTHING * (busy - self.busy)
        previous, self._last_late = self._last_late, late
        self._after_background = 0 if self._background() else self._after_background + 1
        background = self._after_background < self.SETTLE
        # With an admission rate, the rate holds the CPU at the ceiling, and
        # the share answers only the alarms (lateness, drops): cutting it
        # at the ceiling too, the two would pull the calls admitted below
        # what fits, and the share would climb back only after the surge.
        rate = self.rate
        if (dropped or (late > settings.target and previous > settings.target)) and busy >= settings.busy:
            # Datagrams lost, or late twice in a row, on its own work: behind.
            self.share = max(settings.floor, self.share * settings.decrease)
        elif rate is None and self.busy >= settings.ceiling and self.late > settings.target * self.EARLY \
                and not background:
            # No spare capacity: cut by how far over the ceiling (a few per
            # cent a probe), since this signal is continuous, not an alarm.
            self.share = max(settings.floor, self.share * max(settings.decrease, settings.ceiling / self.busy))
        elif self.share < 1.0 and (self.late < settings.target / 2 or busy < settings.busy) \
                and (rate is not None or self.busy < settings.ceiling - self.HEADROOM or background):
            self.share = min(1.0, self.share + settings.increase)
        self._lowest = min(self._lowest, self.share)
        if settings.capacity:
            self._learn(busy, settings.interval if elapsed is None else elapsed, background)
        state = OverloadState.OVERLOADED if self.share < 1.0 or self._calm < self.CALM else OverloadState.NORMAL
        if state is not self.state:
            self.state = state
            if state is OverloadState.OVERLOADED:
                self.episodes += 1
                self._began, self._counts_then, self._lowest = self._clock.seconds(), (self.shed, self.admitted), self.share
                self.log.warn(
                    "overloaded: the agent uses {busy:.0%} of a core (ceiling {ceiling:.0%}), the reactor runs "
                    "{late:.0f} ms late (target {target:.0f} ms), {dropped} datagrams dropped unread; "
                    "admitting {share:.0%} of new calls{limit}",
                    busy=self.busy, ceiling=settings.ceiling, late=self.late * 1000,
                    target=settings.target * 1000, dropped=dropped, share=self.share,
                    limit="" if self.rate is None else f", at most {self.rate:.0f} a second", rate=self.rate,
                )
            else:
                shed, admitted = self.shed - self._counts_then[0], self.admitted - self._counts_then[1]
                self.log.info(
                    "no longer overloaded after {seconds:.1f} s: {shed} of {offered} new calls shed "
                    "(lowest share admitted {lowest:.0%}); every new call is admitted again",
                    seconds=self._clock.seconds() - self._began, shed=shed, offered=shed + admitted,
                    lowest=self._lowest, shed_total=self.shed,
                )
            if self.changed is not None:
                self.changed(state)

    def _learn(self, busy: float, elapsed: float, background: bool = False) -> None:
        """
        Learn what a call costs and set the admission rate from it.

        Why: the share admitted is a reaction; it falls only once the
        reactor runs late or the kernel drops datagrams, and a surge from
        the knee to four times it starts with every call admitted (the
        share is one), so its first few hundred milliseconds queue and
        their calls take seconds to set up.  The agent's CPU per call is
        known before the surge, though: the smoothed CPU share over the
        smoothed rate of calls admitted (a shed call counting C{shed_cost}
        of one, the ratio measured by C{bench_overload.py --shed-cost}),
        read once at least L{LEARN_FROM} calls a second have been admitted
        for a second (below, the agent's fixed work would weigh on it; in
        a call's first hundred milliseconds, the CPU share has not caught
        up with the calls admitted: a surge from idle would read them as
        nearly free), and not while the calls fall: their rate over the
        last 100 ms more than L{FALLING} below its mean over a second.
        A call's work does not all come when it is admitted: its release
        comes when it ends.  When new calls stop or fall (a surge ends, a
        busy hour ends), the releases of the calls still up go on while
        the calls admitted fall, and read as the calls' cost they made the
        next calls look dearer (C{bench_calls.py}'s 480 calls/s step, after
        the 400 step and a pause: a rate of 377-433 a second learned, so a
        cost of 1.8-2.1 ms against the 1.4-1.6 measured, and 3-178 calls
        refused in the step's first 3 s in six runs).  When they rise, the
        calls look cheaper for as long, and that is read: the cost learned
        at a lower rate is too high for a higher one (the agent's fixed
        work is spread over fewer calls), and holding it while the calls
        rise refused calls at 400 a second after a step at 200 (50 in
        2.4 s, the agent at 39 % of a core).  Calls that last longer than
        a second still bias the reading after a fall, by their release's
        share of their work.  The rate admitted is what fits under the ceiling
        once the calls shed are paid for: C{ceiling / cost - shed_cost *
        shed rate}, never below the floor's share of the first term.  Under
        that rate the bucket never refuses a call; over it, the excess is
        refused from its first call on.

        The cost is read all the time, the rate binding or not: with the
        agent below the ceiling it reads a little high and the rate sits
        above the calls admitted, which then grow until the agent is at
        the ceiling; above it, the rate falls.  Under a simulated clock
        (C{busy} 0) nothing is learned and no rate is set, and while the
        agent resynchronises lines (C{background}, and L{SETTLE} probes
        after, while the smoothed CPU share still holds that work) the cost
        learned before stands: that CPU is not the calls'.
        """
        settings = self.settings
        admitted, shed, capped = self.admitted, self.shed, self.capped
        before = self._counted
        self._counted = (admitted, shed, capped)
        self._calm = 0 if capped > before[2] else self._calm + 1
        if elapsed <= 0.0:
            return
        smoothing = self.BUSY_SMOOTHING
        self._admitting += smoothing * ((admitted - before[0]) / elapsed - self._admitting)
        self._shedding += smoothing * ((shed - before[1]) / elapsed - self._shedding)
        self._steady = self._steady + 1 if self._admitting >= self.LEARN_FROM else 0
        paying = self._admitting + settings.shed_cost * self._shedding
        self._paying += self.LEARNING * (paying - self._paying)
        if busy > 0.0 and self._steady >= self.CALM and not background \
                and paying >= (1.0 - self.FALLING) * self._paying:
            sample = self.busy / paying
            self.cost = sample if self.cost is None else self.cost + self.LEARNING * (sample - self.cost)
        if self.cost is None:
            return
        most = settings.ceiling / self.cost
        rate = max(settings.floor * most, most - settings.shed_cost * self._shedding)
        if self.rate is None:
            self._tokens, self._filled = max(1.0, rate * settings.burst), self._clock.seconds()
        self.rate, self._burst = rate, max(1.0, rate * settings.burst)
