# -*- test-case-name: tests.test_load_lean -*-
"""
The lean engine (C{mgcpload run --lean}): the basic call of
L{mgcpswitch.load.script} played on L{mgcpswitch.load.wire.LeanGateway}s,
which answer from pre-built datagrams with minimal parsing, so that the
tool spends a fraction of the agent's CPU per call and the agent, not the
tool, is what saturates (issue 15 §1).

It is a mode of the same tool rather than a separate generator: the same
INI, options, scheduler, report and CPU sampling, and so the same figures
side by side with the full simulator (C{bench_calls.py --lean}).

Waits are no Deferreds: a call keeps at most three (line, condition,
continuation) entries, and a line tells its call (L{LeanCall.poke}) after
every change; the call runs the continuations whose conditions hold.
Digits are pressed all at once (no C{--gap}); C{register --track} needs the
simulator.

L{LeanRunner.answer} (C{mgcpload answer}) places no call: its lines answer
the calls something else places on them (SIPp through a SIP trunk of the
switch) and hang up when the far end has (busy tone), so that calls in
from a trunk can be driven at a rate by another program.
"""

from __future__ import annotations

import random as _random
import time
from collections import Counter
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from ..config import Settings
from .options import LoadOptions
from .schedule import CallScheduler
from .script import BUSY, DIAL_TONE, REORDER, RINGBACK, RINGING, BasicCall, Until
from .wire import LeanEndpoint, LeanGateway, LeanTimers

__all__ = ["LeanRunner", "LeanCall"]

_PROGRESS = frozenset((RINGBACK, BUSY, REORDER))
_SLICE = 0.1  # seconds of the own loop between two turns of the reactor
_ROUNDS = 256  # rounds of reads per tick, at most
_LOOK = 0.01  # how often the own loop looks for a timer of the reactor added during its slice


# What each condition reads on a lean line (the call is there for DIALLED).

def _hears_dial_tone(ep: LeanEndpoint, call: LeanCall) -> bool:
    signals = ep.signals
    return DIAL_TONE in signals or REORDER in signals or BUSY in signals


def _dialled(ep: LeanEndpoint, call: LeanCall) -> bool:
    return ep.pressed >= len(call.callee.number)


def _hears_progress(ep: LeanEndpoint, call: LeanCall) -> bool:
    return not _PROGRESS.isdisjoint(ep.signals)


def _rings(ep: LeanEndpoint, call: LeanCall) -> bool:
    return RINGING in ep.signals


def _talking(ep: LeanEndpoint, call: LeanCall) -> bool:
    return ep.talking()


def _hears_busy(ep: LeanEndpoint, call: LeanCall) -> bool:
    return BUSY in ep.signals


def _idle(ep: LeanEndpoint, call: LeanCall) -> bool:
    return ep.idle()


_HOLDS: dict[Until, Callable[[LeanEndpoint, "LeanCall"], bool]] = {
    Until.DIAL_TONE: _hears_dial_tone,
    Until.DIALLED: _dialled,
    Until.PROGRESS: _hears_progress,
    Until.RINGING: _rings,
    Until.TALKING: _talking,
    Until.BUSY_TONE: _hears_busy,
    Until.IDLE: _idle,
}


class LeanCall(BasicCall):
    """A basic call on two lean lines; the lines poke it after each change."""

    __slots__ = ("waits",)

    def __init__(self, runner: LeanRunner, caller: LeanEndpoint, callee: LeanEndpoint, measured: bool,
                 caller_hangs_up: bool) -> None:
        super().__init__(runner, caller, callee, measured, caller_hangs_up)
        self.waits: list[tuple[LeanEndpoint, Callable[[LeanEndpoint, LeanCall], bool], Callable[[], None]]] = []
        caller.call = self
        callee.call = self

    def _wait(self, party: LeanEndpoint, until: Until, then: Callable[[], None]) -> None:
        holds = _HOLDS[until]
        if holds(party, self):
            then()
        else:
            self.waits.append((party, holds, then))

    def _clear_waits(self) -> None:
        self.waits = []

    def poke(self, line: LeanEndpoint) -> None:
        """
        C{line} changed: run every continuation on it whose condition now
        holds.  A condition reads only its own line, and every change of a
        line pokes its call, so the other line's waits need no look.
        """
        while True:
            for entry in self.waits:
                if entry[0] is line and entry[1](line, self):
                    self.waits.remove(entry)
                    entry[2]()
                    break  # the continuation may have changed the waits: look again
            else:
                return

    def _off_hook(self, party: LeanEndpoint) -> None:
        party.off_hook()

    def _on_hook(self, party: LeanEndpoint, recovering: bool = False) -> None:
        party.on_hook()

    def _dial(self, party: LeanEndpoint, number: str) -> None:
        party.press(number)

    def _hears(self, party: LeanEndpoint, signal: str) -> bool:
        return signal in party.signals

    def _is_off_hook(self, party: LeanEndpoint) -> bool:
        return party.off


class _Ticker:
    """
    C{f()} now and then every C{interval} s, on the reactor's timers: what
    the scheduler asks of a C{LoopingCall}, without its Deferred and its
    callbacks on every run (the lean generator ticks 500 times a second).
    A tick that raises is logged by the reactor; the next one still comes.
    """

    __slots__ = ("clock", "interval", "f", "_next")

    def __init__(self, clock: Any, interval: float, f: Callable[[], None]) -> None:
        self.clock = clock
        self.interval = interval
        self.f = f
        self._next: Any = None
        self._fire()

    @property
    def running(self) -> bool:
        return self._next is not None

    def _fire(self) -> None:
        self._next = self.clock.callLater(self.interval, self._fire)
        self.f()

    def stop(self) -> None:
        if self._next is not None:
            if self._next.active():
                self._next.cancel()
            self._next = None


class _Loop:
    """
    C{f()} at once and then every C{interval} s on a loop of our own, not on
    the reactor's timers: between ticks the process blocks in C{wait}
    (C{time.sleep}), and a tick costs that and what C{f} does (the
    reactor's iteration around a timed call cost half as much again as an
    empty tick on a small VM, and the lean generator ticks 500 times a
    second).  The loop runs in slices of at most C{_SLICE} s, ended early
    when one of the reactor's timers is due (the scheduler's window and
    progress timers, a registration timeout), so that the reactor still
    runs them, and its signals, in time.  Only for a process of its own: while a slice runs nothing else
    on the reactor does (C{mgcpload run --lean}, not the tests that run
    the switch in the same reactor).  A tick that raises is logged; the
    next one still comes.
    """

    __slots__ = ("reactor", "interval", "f", "running", "_next", "_wait")

    log = Logger()

    def __init__(self, reactor: Any, interval: float, f: Callable[[], None],
                 wait: Callable[[float], None] = time.sleep) -> None:
        self.reactor = reactor
        self.interval = interval
        self.f = f
        self.running = True
        self._wait = wait
        self._next = reactor.seconds()
        # The first slice at the reactor's next turn: the caller keeps the
        # loop (to stop it) and schedules its own timers first.
        reactor.callLater(0, self._slice)

    def _slice(self) -> None:
        reactor = self.reactor
        seconds = reactor.seconds
        timers_due = reactor.timeout
        interval, f, wait = self.interval, self.f, self._wait
        end = seconds() + _SLICE
        due = timers_due()
        look = end if due is None else seconds() + due
        while self.running:
            now = seconds()
            if now >= self._next:
                # A late tick is not made up for: the next one is a full interval away.
                self._next = max(self._next + interval, now + interval / 2)
                try:
                    f()
                except Exception:
                    self.log.failure("lean generator: a tick failed")
                continue
            if now >= end:
                break
            if now >= look:
                # The reactor's next timer: due now, or one added since we last
                # looked (every _LOOK s: a few microseconds each time).
                due = timers_due()
                if due is not None and due <= 0:
                    break
                look = now + (_LOOK if due is None else min(_LOOK, due))
            wait(self._next - now)
        if self.running:
            reactor.callLater(0, self._slice)

    def stop(self) -> None:
        self.running = False


class LeanRunner(CallScheduler):
    """
    The load tool on lean gateways, built from the settings and bound on
    C{reactor}; the interface of L{mgcpswitch.load.scripted.LoadRunner}.

    @param polled: on real sockets, read the gateways' sockets at each
        tick of the scheduler (C{options.tick}; the command line makes it
        2 ms with C{--lean}) instead of when the reactor sees a datagram:
        one wake-up per tick rather than one per datagram, which costs more
        than the datagram's handling on a small VM, for at most a tick of
        added delay per answer (and so in the measured setup time, which
        spans three of the generator's answers).  Memory ports are always
        read at once.
    @param own_loop: with C{polled} real sockets, tick on a loop of our
        own (L{_Loop}) rather than on the reactor's timers: for a process
        that runs nothing else on its reactor.
    """

    generator = "lean"

    def __init__(self, reactor: Any, settings: Settings, options: LoadOptions,
                 out: Any = None, random: Any = None, timers: Optional[LeanTimers] = None,
                 polled: bool = True, own_loop: bool = False) -> None:
        super().__init__(reactor, settings, options, out, random)
        self.polled = polled
        self.own_loop = own_loop
        self._poller: Any = None
        self._timers_due = 0.0
        self._by_fd: dict[int, LeanGateway] = {}
        self._finish_answering: Optional[Callable[[], None]] = None  # while answer() runs
        if options.gap > 0:
            raise ValueError("the lean generator presses the whole number at once: --gap needs the simulator")
        if options.track_commands:
            raise ValueError("--track counts commands on the simulator's gateways: leave out --lean")
        timers = timers or LeanTimers()
        for g in self.chosen:
            gw = LeanGateway(reactor, g.name, len(g.endpoints), g.numbers, g.address, g.port, self.agent,
                             random=_random.Random(self.random.getrandbits(32)),
                             restart_delay=options.restart_delay, timers=timers)
            self.gateways.append(gw)
            self.parties.extend(gw.lines)
        self.pool()
        self._timers: Optional[_Ticker | _Loop] = None

    def every(self, interval: float, f: Callable[[], None]) -> _Ticker | _Loop:
        if self.own_loop and self._poller is not None:
            return _Loop(self.reactor, interval, f)
        return _Ticker(self.reactor, interval, f)

    def party_state(self, party: LeanEndpoint) -> tuple[str, int, bool]:
        return party.name.decode(), len(party.connections), party.idle()

    def new_call(self, caller: LeanEndpoint, callee: LeanEndpoint, measured: bool,
                 caller_hangs_up: bool) -> LeanCall:
        return LeanCall(self, caller, callee, measured, caller_hangs_up)

    def finished(self, call: Any, cause: Optional[str], recovered: bool) -> None:
        call.caller.call = None
        call.callee.call = None
        super().finished(call, cause, recovered)

    # -- the gateways ---------------------------------------------------------------

    def start_gateways(self) -> Deferred[float]:
        """Bind every gateway, send the RSIPs; fires with the seconds until every line was armed."""
        gateways = self.gateways

        def stop_watching(_: Any = None) -> Any:
            for gw in gateways:
                gw.watch = None
            return _

        arming = self.arming(stop_watching)

        def watch(ep: LeanEndpoint) -> None:
            if not ep.armed_seen and ep.armed:
                ep.armed_seen = True
                arming.one()

        t0 = self.now()
        for gw in gateways:
            for ep in gw.lines:
                ep.armed_seen = False
            gw.watch = watch
            gw.listen(self.reactor, polled=self.polled)
            self.rsip_waits.append(gw.rsip_at - t0)
            fd = gw.fileno() if self.polled else None
            if fd is not None:
                # One epoll of our own, asked without waiting at each tick:
                # which sockets have datagrams.
                if self._poller is None:
                    import select

                    self._poller = select.epoll()
                self._poller.register(fd, 1)  # EPOLLIN
                self._by_fd[fd] = gw
        self._timers = self.every(self.options.tick, self._tick_gateways)
        return arming.deferred.addCallback(stop_watching)

    def _tick_gateways(self) -> None:
        poller = self._poller
        if poller is not None:
            # One datagram per ready socket and round, until none is ready
            # (at most _ROUNDS rounds: the timers still run at a flood).
            by_fd = self._by_fd
            poll = poller.poll
            for _ in range(_ROUNDS):
                ready = poll(0)
                if not ready:
                    break
                for fd, _events in ready:
                    by_fd[fd].read()
        now = self.now()
        if now >= self._timers_due:
            # Retransmissions and the response cache need no finer grain
            # than 20 ms (the first retransmission waits 200 ms).
            self._timers_due = now + 0.02
            for gw in self.gateways:
                gw.tick(now)

    def place_calls(self) -> Deferred[Any]:
        # From now on the scheduler's tick also ticks the gateways: one
        # timer wake-up instead of two.
        if self._timers is not None and self._timers.running:
            self._timers.stop()
        return super().place_calls()

    def _tick(self) -> None:
        self._tick_gateways()
        super()._tick()

    def stop_gateways(self) -> Deferred[Any]:
        if self._timers is not None and self._timers.running:
            self._timers.stop()
        if self._poller is not None:
            self._poller.close()
            self._poller = None
        for gw in self.gateways:
            gw.stop()
        return succeed(None)

    def counters(self) -> Counter[str]:
        """The gateways' counters, summed (see L{LeanGateway.counters})."""
        total: Counter[str] = Counter()
        for gw in self.gateways:
            total.update(gw.counters)
        return total

    _gateway_counters = counters

    # -- answering what others place -----------------------------------------------

    def answer(self, ready: Optional[Callable[[float], None]] = None) -> Deferred[dict[str, Any]]:
        """
        Register; then every line that rings goes off hook at once and goes
        back on hook when it hears busy or reorder tone (its far end hung
        up, or the call failed), for C{options.duration} seconds or until
        the reactor stops.  C{ready(seconds)} is told when every line is
        armed.  Fires with the counts: answered, released, and the lines
        still off hook at the end.
        """
        counts: Counter[str] = Counter()

        def watch(ep: LeanEndpoint) -> None:
            if not ep.off:
                if RINGING in ep.signals:
                    counts["answered"] += 1
                    ep.off_hook()
            elif BUSY in ep.signals or REORDER in ep.signals:
                counts["released"] += 1
                ep.on_hook()

        def armed(seconds: float) -> Deferred[dict[str, Any]]:
            self.register_seconds = seconds
            self._say(f"mgcpload: every line armed in {seconds:.2f} s; answering for {self.options.duration:g} s")
            for gw in self.gateways:
                gw.watch = watch
            if ready is not None:
                ready(seconds)
            done: Deferred[dict[str, Any]] = Deferred()

            def finish() -> None:
                if done.called:
                    return
                if timer.active():
                    timer.cancel()
                done.callback({
                    "generator": self.generator, "gateways": len(self.gateways), "lines": len(self.parties),
                    "register_seconds": seconds, "answered": counts["answered"], "released": counts["released"],
                    "off_hook": sum(1 for ep in self.parties if ep.off),
                    "transactions": dict(self.counters()),
                })

            timer = self.reactor.callLater(self.options.duration, finish)
            self._finish_answering = finish
            return done

        return self.start_gateways().addCallback(armed)

    def stop_answering(self) -> None:
        """End L{answer} now (it fires with its counts); nothing to do before its lines are armed."""
        if self._finish_answering is not None:
            self._finish_answering()
