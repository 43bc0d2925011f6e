# -*- test-case-name: tests.test_load -*-
"""
The part of a load run that does not depend on how the gateways are
simulated: which gateways of the settings to play, the pool of idle lines,
starting calls at a rate (or keeping C calls in progress) on the reactor's
clock, the answer and hang-up queues, the deadline watchdog, the measured
window, the outcomes, registration figures and the L{Report}.

An engine (L{mgcpswitch.load.scripted.LoadRunner}, the simulated gateways;
L{mgcpswitch.load.lean.LeanRunner}, the lean generator) subclasses
L{CallScheduler} and supplies the gateways, the parties, the calls and the
transaction counters.  A call only needs C{start}, C{answer}, C{hang_up},
C{expired}, C{deadline}, C{measured}, C{setup}, C{caller} and C{callee};
it reports its end with L{CallScheduler.finished}.
"""

from __future__ import annotations

import sys
from collections import Counter, deque
from dataclasses import asdict
from typing import Any, Callable, Optional, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall

from ..config import Settings
from ..transport import connect_address
from .options import CAUSES, LoadOptions
from .procstat import CpuSampler, find_agent_pid, read_rss_kb
from .report import Report, cpu_per_call, milliseconds, percentile, saturation_verdict

__all__ = ["CallScheduler", "Call", "Arming"]


class Call(Protocol):
    """What the scheduler asks of a call in progress."""

    caller: Any
    callee: Any
    measured: bool
    setup: Optional[float]
    deadline: float

    def start(self) -> None: ...
    def answer(self) -> None: ...
    def hang_up(self) -> None: ...
    def expired(self) -> None: ...


class Arming:
    """
    A registration in progress: L{one} for each line armed; C{deferred}
    fires with the seconds until the last one, or fails after the register
    timeout (once C{gave_up} has undone the engine's waits).
    """

    def __init__(self, scheduler: CallScheduler, gave_up: Callable[[], None]) -> None:
        self.scheduler = scheduler
        self.t0 = scheduler.now()
        self.remaining = len(scheduler.parties)
        self.gave_up = gave_up
        self.deferred: Deferred[float] = Deferred()
        timer = scheduler.reactor.callLater(scheduler.options.register_timeout, self._timed_out)
        self.deferred.addBoth(_cancelling, timer)

    def one(self, _: Any = None) -> None:
        now = self.scheduler.now()
        self.scheduler.arm_times.append(now - self.t0)
        self.remaining -= 1
        if self.remaining == 0 and not self.deferred.called:
            self.deferred.callback(now - self.t0)

    def _timed_out(self) -> None:
        if self.deferred.called:
            return
        self.gave_up()
        self.deferred.errback(RuntimeError(
            f"{self.remaining} of {len(self.scheduler.parties)} lines not armed after "
            f"{self.scheduler.options.register_timeout:g} s: is the switch running with this configuration?"
        ))


def _cancelling(result: Any, timer: Any) -> Any:
    if timer.active():
        timer.cancel()
    return result


class CallScheduler:
    """
    Places calls on an engine's parties and fires with a L{Report}.

    @param reactor: provides C{IReactorTime} and C{IReactorUDP} (the real
        reactor, or L{mgcpswitch.testing.MemoryReactor} in tests).
    @param out: where progress lines go (None: nowhere).
    @ivar gateways: the engine's gateways (counted in the report).
    @ivar parties: the engine's lines; each is in at most one call.
    """

    #: The engine's name in the report.
    generator = ""

    def __init__(self, reactor: Any, settings: Settings, options: LoadOptions,
                 out: Any = None, random: Any = None) -> None:
        import random as _random

        self.reactor = reactor
        # The reactor's clock itself, not a method that asks it: a call reads it a dozen times.
        self.now: Callable[[], float] = reactor.seconds
        self.settings = settings
        self.options = options
        self.out = out
        self.random = random if random is not None else _random.Random()
        switch = settings.switch
        names = options.gateway_names
        self.chosen = [g for g in settings.gateways if names is None or g.name in names]
        if not self.chosen:
            raise ValueError("no gateway to simulate in the configuration")
        self.agent = options.agent or (connect_address(switch.interface, self.chosen[0].address), switch.port)
        for g in self.chosen:
            if any(local != f"aaln/{i}" for i, local in enumerate(g.endpoints, 1)):
                raise ValueError(f"[gateway:{g.name}]: the tool simulates lines aaln/1..N: use 'lines = N'")
            if not g.numbers:
                raise ValueError(f"[gateway:{g.name}]: the lines need numbers")
        self.gateways: list[Any] = []
        self.parties: list[Any] = []
        self.answer_queue: deque[tuple[float, Call]] = deque()
        self.hold_queue: deque[tuple[float, Call]] = deque()
        self.in_progress: set[Call] = set()
        self.suspect: list[Any] = []
        self.ntfy_timeouts = 0
        # statistics
        self.t_begin = 0.0  # when calls start (after registration)
        self.window_start = 0.0
        self.window_end = 0.0
        self.started = 0
        self.started_measured = 0
        self.outcomes: Counter[str] = Counter()  # measured calls: "completed" or a cause
        self.all_outcomes: Counter[str] = Counter()
        self.setups: list[float] = []
        self.refusals: list[float] = []  # measured calls refused with reorder: last digit -> reorder (s)
        # Per second of the window: calls started, completed, refused (reorder), failed otherwise.
        self.timeline: dict[int, Counter[str]] = {}
        self.completions_in_window = 0
        self.peak_in_progress = 0
        self.calls_due = 0
        self.starved_ticks = 0
        self.slots = 0
        self._alternate = False
        self._next_watch = 0.0
        self._ticker: Optional[LoopingCall] = None
        self._progress: Optional[LoopingCall] = None
        self._done: Optional[Deferred[Report]] = None
        self._phase = "idle"
        self._closing: Any = None
        self._settle_timer: Any = None
        self._settle_watcher: Any = None
        self._settle: dict[str, Any] = {}
        self._cpu: Optional[CpuSampler] = None
        self._cpu_result: dict[str, Any] = {}
        self._tx_start: Counter[str] = Counter()
        self._tx_end: Counter[str] = Counter()
        self._last_progress = (0.0, 0)
        self.register_seconds: Optional[float] = None
        self.arm_times: list[float] = []
        self.rsip_waits: list[float] = []
        self.audit: Any = None  # an engine's per-line command tracker (register --track)
        # A cProfile.Profile to run over the window only (mgcpload run --profile): registration and
        # drain left out, so that its call count divides by the calls completed in the window.
        self.profiler: Any = None
        self._python_calls: Optional[int] = None
        agent_pid = options.agent_pid
        if agent_pid == 0:
            agent_pid = find_agent_pid(self.agent[0], self.agent[1])
        self.agent_pid = agent_pid

    def pool(self) -> None:
        """
        The idle pool, once the engine filled C{parties}: shuffled, so that
        callers and callees spread over the gateways in every combination;
        lines go back to the end when their call ends.
        """
        pool = list(self.parties)
        self.random.shuffle(pool)
        self.idle: deque[Any] = deque(pool)

    def _say(self, text: str) -> None:
        if self.out is not None:
            self.out.write(text + "\n")
            self.out.flush()

    # -- the engine's part -----------------------------------------------------

    def start_gateways(self) -> Deferred[float]:
        """Bind and start every gateway; fires with the seconds until every line was armed."""
        raise NotImplementedError

    def stop_gateways(self) -> Deferred[Any]:
        raise NotImplementedError

    def _gateway_counters(self) -> Counter[str]:
        """C{commands_received}, C{commands_sent}, C{retransmissions}, C{timeouts}, C{duplicates}."""
        raise NotImplementedError

    def new_call(self, caller: Any, callee: Any, measured: bool, caller_hangs_up: bool) -> Call:
        raise NotImplementedError

    def party_state(self, party: Any) -> tuple[str, int, bool]:
        """A line's endpoint name, the connections its gateway holds for it, and whether it is idle."""
        raise NotImplementedError

    def every(self, interval: float, f: Callable[[], None]) -> Any:
        """C{f()} now and every C{interval} s until the result's C{stop()} (a running C{LoopingCall})."""
        loop = LoopingCall(f)
        loop.clock = self.reactor
        loop.start(interval, now=True)
        return loop

    def stop_faults(self) -> None:
        """End the engine's fault injection (an engine without any has nothing to do)."""

    def fault_counters(self) -> Counter[str]:
        """What the fault injection did: C{sent_dropped}, C{received_duplicated}, ..."""
        return Counter()

    def census(self) -> tuple[dict[str, int], int]:
        """The connections left per endpoint (those holding any), and how many lines are not idle."""
        connections: dict[str, int] = {}
        busy = 0
        for party in self.parties:
            name, held, idle = self.party_state(party)
            if held:
                connections[name] = held
            if not idle:
                busy += 1
        return connections, busy

    # -- registration ----------------------------------------------------------

    def register(self) -> Deferred[dict[str, Any]]:
        """
        Only register: start the gateways, wait until every line is armed,
        and fire with the figures of that (the RSIP storm benchmark).
        """
        import time

        before = self._gateway_counters()
        t0 = time.monotonic()
        cpu = CpuSampler(self.agent_pid) if sys.platform.startswith("linux") else None
        if cpu is not None:
            cpu.begin()

        def done(seconds: float) -> dict[str, Any]:
            after = self._gateway_counters()
            after.subtract(before)
            times = sorted(self.arm_times)
            out: dict[str, Any] = {
                "generator": self.generator,
                "gateways": len(self.gateways),
                "lines": len(self.parties),
                "restart_delay": self.options.restart_delay,
                "rsip_due_s": {"first": min(self.rsip_waits, default=None),
                               "last": max(self.rsip_waits, default=None)},
                "all_armed_s": seconds,
                "armed_s": {"p50": percentile(times, 0.5), "p90": percentile(times, 0.9),
                            "p99": percentile(times, 0.99), "max": times[-1] if times else None},
                "after_last_rsip_s": seconds - max(self.rsip_waits, default=0.0),
                "wall_s": time.monotonic() - t0,
                "retransmissions": after.get("retransmissions", 0),
                "timeouts": after.get("timeouts", 0),
                "duplicates_received": after.get("duplicates", 0),
                "commands_received": after.get("commands_received", 0),
                "commands_sent": after.get("commands_sent", 0),
                "cpu": cpu.end() if cpu is not None else {},
                "agent_pid": self.agent_pid,
            }
            if self.audit is not None:
                out["audits"] = self.audit.summary()
            return out

        return self.start_gateways().addCallback(done)

    def arming(self, gave_up: Callable[[], None]) -> Arming:
        """Count the lines as they get armed (see L{Arming}); C{gave_up()} runs at the register timeout."""
        self._say(f"mgcpload: {len(self.gateways)} {self.generator} gateway(s), {len(self.parties)} lines; "
                  f"registering with {self.agent[0]}:{self.agent[1]}")
        return Arming(self, gave_up)

    # -- the run ---------------------------------------------------------------

    def run(self) -> Deferred[Report]:
        """Register, place calls for warm-up + duration, drain, report."""
        return self.start_gateways().addCallback(self._registered)

    def _registered(self, seconds: float) -> Deferred[Report]:
        self.register_seconds = seconds
        self._say(f"mgcpload: every line armed in {seconds:.2f} s")
        if self.options.gc_freeze:
            import gc

            gc.collect()
            gc.freeze()
        return self.place_calls()

    def place_calls(self) -> Deferred[Report]:
        opts = self.options
        now = self.now()
        self.t_begin = now
        self.window_start = now + opts.warmup
        self.window_end = self.window_start + opts.duration
        self._phase = "warmup" if opts.warmup > 0 else "window"
        self._done = Deferred()
        self._ticker = self.every(opts.tick, self._tick)
        if opts.progress_interval > 0 and self.out is not None:
            self._progress = LoopingCall(self._show_progress)
            self._progress.clock = self.reactor
            self._progress.start(opts.progress_interval, now=False)
        if opts.warmup > 0:
            self.reactor.callLater(opts.warmup, self._window_opens)
        else:
            self._window_opens()
        self._closing = self.reactor.callLater(opts.warmup + opts.duration, self._window_closes)
        return self._done

    def _window_opens(self) -> None:
        self._phase = "window"
        self._tx_start = self._gateway_counters()
        if self.agent_pid is not None or self.options.agent_pid is not None:
            self._cpu = CpuSampler(self.agent_pid)
            self._cpu.begin()
        elif sys.platform.startswith("linux") and self.out is not None:
            self._cpu = CpuSampler(None)
            self._cpu.begin()
        self._last_progress = (self.now(), self.completions_in_window)
        if self.profiler is not None:
            self.profiler.enable()

    def _window_closes(self) -> None:
        if self._phase not in ("warmup", "window"):
            return
        if self._closing is not None and self._closing.active():
            self._closing.cancel()  # all of --calls ended first
        self._phase = "drain"
        if self.profiler is not None:
            import pstats

            self.profiler.disable()
            self._python_calls = pstats.Stats(self.profiler).total_calls  # type: ignore[attr-defined]
        self._tx_end = self._gateway_counters()
        if self._cpu is not None:
            self._cpu_result = self._cpu.end()
        self._say(f"mgcpload: window closed; draining {len(self.in_progress)} call(s) in progress")
        self._maybe_finish()

    def _tick(self) -> None:
        now = self.now()
        answers = self.answer_queue
        while answers and answers[0][0] <= now:
            answers.popleft()[1].answer()
        holds = self.hold_queue
        while holds and holds[0][0] <= now:
            holds.popleft()[1].hang_up()
        if now >= self._next_watch:
            self._next_watch = now + 0.1
            self._watchdog(now)
        if self._phase in ("warmup", "window"):
            opts = self.options
            if opts.rate is not None:
                # One clock, one counter: the calls due since the start that
                # have not had their slot yet.  A backlog (no idle lines)
                # carries over, but never more than a second's worth.
                due = int(self._offered(now)) + 1 - self.slots
                cap = max(1, int(opts.rate * (opts.surge[0] if opts.surge else 1.0)))
                if due > cap:
                    self.calls_due += due - cap
                    self.slots += due - cap
                    due = cap
            else:
                due = opts.concurrency - len(self.in_progress)
            while due > 0:
                if opts.max_calls is not None and self.started >= opts.max_calls:
                    break
                if not self._start_call(now):
                    self.starved_ticks += 1
                    break
                self.slots += 1
                due -= 1
        self._maybe_finish()

    def _watchdog(self, now: float) -> None:
        for call in [c for c in self.in_progress if c.deadline < now]:
            call.expired()

    def _offered(self, now: float) -> float:
        """The calls due since the start at --rate, and during a surge at factor x the rate."""
        opts = self.options
        assert opts.rate is not None
        due = (now - self.t_begin) * opts.rate
        if opts.surge is not None:
            factor, start, length = opts.surge
            surged = min(max(now - self.window_start - start, 0.0), length)
            due += (factor - 1.0) * opts.rate * surged
        return due

    def _note(self, now: float, what: str) -> None:
        """Count C{what} in the window's second C{now} falls in."""
        if self.window_start <= now < self.window_end:
            second = int(now - self.window_start)
            counts = self.timeline.get(second)
            if counts is None:
                counts = self.timeline[second] = Counter()
            counts[what] += 1

    def refused(self, call: Call, waited: Optional[float]) -> None:
        """A call heard reorder C{waited} s after its last digit (a call the switch shed, say)."""
        if call.measured and waited is not None:
            self.refusals.append(waited)

    def _start_call(self, now: float) -> bool:
        idle = self.idle
        if len(idle) < 2:
            return False
        caller = idle.popleft()
        callee = idle.popleft()
        measured = self._phase == "window" and now < self.window_end
        hangup = self.options.hangup
        if hangup == "alternate":
            self._alternate = not self._alternate
            caller_first = self._alternate
        else:
            caller_first = hangup != "callee"
        call = self.new_call(caller, callee, measured, caller_first)
        self.in_progress.add(call)
        self._note(now, "started")
        self.started += 1
        if measured:
            self.started_measured += 1
        if len(self.in_progress) > self.peak_in_progress:
            self.peak_in_progress = len(self.in_progress)
        call.start()
        return True

    def finished(self, call: Call, cause: Optional[str], recovered: bool) -> None:
        """A call ended: counted, and its lines back in the pool (or set aside as suspect)."""
        self.in_progress.discard(call)
        now = self.now()
        outcome = cause or "completed"
        self._note(now, outcome if outcome in ("completed", "reorder") else "failed")
        self.all_outcomes[outcome] += 1
        if call.measured:
            self.outcomes[outcome] += 1
            if call.setup is not None:
                self.setups.append(call.setup)
        if cause is None and self.window_start <= now < self.window_end:
            self.completions_in_window += 1
        if recovered:
            self.idle.append(call.caller)
            self.idle.append(call.callee)
        else:
            self.suspect.extend((call.caller, call.callee))

    def _maybe_finish(self) -> None:
        max_calls = self.options.max_calls
        if max_calls is not None and self._phase == "window" and self.started >= max_calls \
                and not self.in_progress:
            # Every call of --calls ended: the window closes now, not at its end.
            self.window_end = self.now()
            self._window_closes()
            return
        if self._phase == "drain" and not self.in_progress and self._done is not None:
            if self._ticker is not None and self._ticker.running:
                self._ticker.stop()
            if self._progress is not None and self._progress.running:
                self._progress.stop()
            if self.options.settle > 0:
                self._settle_begins()
            else:
                self._report()

    def _report(self) -> None:
        self._phase = "done"
        d, self._done = self._done, None
        if d is not None:
            d.callback(self.report())

    def _settle_begins(self) -> None:
        """
        The last call ended: the faults stop, and the gateways keep running
        C{options.settle} seconds, noting when every line is idle again (on
        hook, no connection, armed for off-hook), as the lines see it.
        """
        self._phase = "settle"
        self.stop_faults()
        now = self.now()
        self._settle = {"seconds": self.options.settle, "faults_stopped_at": now, "idle_after_s": None}
        self._say(f"mgcpload: faults stopped; settling for {self.options.settle:g} s")
        self._settle_watcher = LoopingCall(self._settle_watch)
        self._settle_watcher.clock = self.reactor
        self._settle_watcher.start(0.1, now=True)
        self._settle_timer = self.reactor.callLater(self.options.settle, self.end_settle)

    def end_settle(self) -> None:
        """
        The settle ends (its time is up, or the tool is stopped during it:
        C{mgcpload run} calls this on SIGTERM): the report, with the census
        of now.  Outside the settle, nothing.
        """
        if self._phase != "settle":
            return
        if self._settle_timer is not None and self._settle_timer.active():
            self._settle_timer.cancel()
        self._settle_watch()
        self._settle_watcher.stop()
        self._settle["ended_after_s"] = self.now() - self._settle["faults_stopped_at"]
        self._report()

    def _settle_watch(self) -> None:
        if self._settle["idle_after_s"] is None and self.census()[1] == 0:
            self._settle["idle_after_s"] = self.now() - self._settle["faults_stopped_at"]

    def _show_progress(self) -> None:
        now = self.now()
        t, n = self._last_progress
        if self._phase == "warmup":
            rate = 0.0
            label = "warm-up"
        else:
            rate = (self.completions_in_window - n) / max(now - t, 1e-9)
            label = self._phase
        self._last_progress = (now, self.completions_in_window)
        failed = sum(v for k, v in self.all_outcomes.items() if k != "completed")
        setups = sorted(self.setups)
        p99 = percentile(setups, 0.99)
        self._say(
            f"[{now - self.t_begin:7.1f} s {label:7}] {rate:8.1f} calls/s  in progress {len(self.in_progress):6d}"
            f"  completed {self.all_outcomes['completed']:8d}  failed {failed:5d}"
            f"  p99 setup {p99 * 1000 if p99 is not None else float('nan'):7.1f} ms"
        )

    # -- the report --------------------------------------------------------------

    def report(self) -> Report:
        opts = self.options
        window = self.window_end - self.window_start  # opts.duration, unless --calls ended it
        setups = sorted(self.setups)
        refusals = sorted(self.refusals)
        failures = {k: v for k, v in self.outcomes.items() if k != "completed"}
        failed = sum(failures.values())
        completed = self.outcomes["completed"]
        diff = Counter(self._tx_end)
        diff.subtract(self._tx_start)
        tx = {k: v for k, v in diff.items() if v}
        sent_received = tx.get("commands_received", 0) + tx.get("commands_sent", 0)
        r = Report(
            config={k: v for k, v in asdict(opts).items() if k not in ("gateway_names",)},
            generator=self.generator,
            mode="rate" if opts.rate is not None else "open-loop",
            target_rate=opts.rate,
            concurrency=opts.concurrency if opts.rate is None else None,
            gateways=len(self.gateways),
            lines=len(self.parties),
            register_seconds=self.register_seconds,
            window_seconds=window,
            attempted=self.started_measured,
            completed=completed,
            failed=failed,
            unfinished=self.started_measured - completed - failed,
            failures={c: failures.get(c, 0) for c in CAUSES if failures.get(c)},
            suspect_lines=len(self.suspect),
            calls_per_second=self.completions_in_window / window if window else 0.0,
            completions_in_window=self.completions_in_window,
            started_per_second=self.started_measured / window if window else 0.0,
            behind_schedule=int(self.calls_due),
            starved_ticks=self.starved_ticks,
            setup_ms={
                "p50": milliseconds(percentile(setups, 0.50)),
                "p95": milliseconds(percentile(setups, 0.95)),
                "p99": milliseconds(percentile(setups, 0.99)),
                "max": milliseconds(setups[-1] if setups else None),
                "count": len(setups),
            },
            refused_ms={
                "p50": milliseconds(percentile(refusals, 0.50)),
                "p99": milliseconds(percentile(refusals, 0.99)),
                "max": milliseconds(refusals[-1] if refusals else None),
                "count": len(refusals),
            },
            timeline=[{"second": s, **self.timeline[s]} for s in sorted(self.timeline)],
            transactions_per_second=sent_received / window if window else 0.0,
            transactions=tx,
            retransmissions=tx.get("retransmissions", 0),
            timeouts=tx.get("timeouts", 0),
            duplicates_received=tx.get("duplicates", 0),
            cpu=self._cpu_result,
            agent_pid=self.agent_pid,
            agent_rss_kb=read_rss_kb(self.agent_pid) if self.agent_pid else None,
            peak_in_progress=self.peak_in_progress,
        )
        r.cpu_per_call_us = cpu_per_call(r)
        if self._python_calls is not None and self.completions_in_window:
            r.python_calls_per_call = self._python_calls / self.completions_in_window
        if opts.raw_setups:
            r.setups_raw = setups
            r.refusals_raw = refusals
        r.saturation = saturation_verdict(r)
        if self.audit is not None:
            r.audits = self.audit.summary()
        connections, busy = self.census()
        r.connections_left = sum(connections.values())
        r.connections_left_by_endpoint = connections
        r.lines_not_idle = busy
        r.faults = dict(self.fault_counters())
        r.settle = dict(self._settle)
        return r

