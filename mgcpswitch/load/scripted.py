# -*- test-case-name: tests.test_load -*-
"""
The scripted-call engine: full L{SimulatedGateway}s (C{rtp=False},
C{history_limit=0}) built from the settings, bound on the reactor, whose
lines (L{mgcpswitch.gateway.Line}) play the basic call of
L{mgcpswitch.load.script}.  Every message goes through the codec and the
transaction layer the switch uses, so it costs about as much CPU per call
as the agent; L{mgcpswitch.load.lean} is the cheap engine.
"""

from __future__ import annotations

import random as _random
from collections import Counter
from dataclasses import replace
from functools import lru_cache, partial
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, gatherResults
from twisted.python.failure import Failure

from ..config import Settings
from ..errors import TransactionTimeout
from ..gateway import FaultConfig, GatewayConfig, SimulatedGateway
from ..gateway.packages import Hook, SignalType
from ..mgcp import ConnectionMode, EventName, ParamCode, Verb
from .options import LoadOptions
from .schedule import CallScheduler
from .script import BUSY, DIAL_TONE, REORDER, RINGBACK, RINGING, BasicCall, Until

__all__ = ["LoadRunner"]

_OFF_HOOK_EVENT = EventName("L/hd")
_SENDRECV = ConnectionMode.SENDRECV
_ON = Hook.ON
_OFF = Hook.OFF
_BRIEF = SignalType.BRIEF


def _armed(ep: Any) -> bool:
    requested = ep.requested
    return len(requested) == 1 and requested[0].name == _OFF_HOOK_EVENT


def _idle(ep: Any) -> bool:
    """
    On hook, no connection, no tone, armed for off-hook: what a released
    line looks like.  Brief signals (the caller-id burst, C{L/ci}) may
    still be finishing.
    """
    if ep.hook is not _ON or ep.connections:
        return False
    requested = ep.requested
    if len(requested) != 1 or requested[0].name != _OFF_HOOK_EVENT:
        return False
    signals = ep.signals
    if signals:
        for playing in signals.values():
            if playing.plan.symbol.signal is not _BRIEF:
                return False
    return True


def _talking(ep: Any) -> bool:
    conns = ep.connections
    if len(conns) != 1:
        return False
    for conn in conns.values():
        return conn.mode is _SENDRECV
    return False


def _ep_of(line: Any) -> Any:
    """The endpoint behind a gateway Line: the predicates read it directly (Line's views copy)."""
    return line._ep


# The predicates are module-level functions of the Line that read its
# endpoint: no closure per wait.

def _hears_dial_tone(line: Any) -> bool:
    signals = line._ep.signals
    return DIAL_TONE in signals or REORDER in signals or BUSY in signals


def _hears_progress(line: Any) -> bool:
    signals = line._ep.signals
    return RINGBACK in signals or BUSY in signals or REORDER in signals


def _rings(line: Any) -> bool:
    return RINGING in line._ep.signals


def _hears_busy(line: Any) -> bool:
    return BUSY in line._ep.signals


def _line_talking(line: Any) -> bool:
    return _talking(line._ep)


def _line_idle(line: Any) -> bool:
    return _idle(line._ep)


_PREDICATES: dict[Until, Callable[[Any], bool]] = {
    Until.DIAL_TONE: _hears_dial_tone,
    Until.PROGRESS: _hears_progress,
    Until.RINGING: _rings,
    Until.TALKING: _line_talking,
    Until.BUSY_TONE: _hears_busy,
    Until.IDLE: _line_idle,
}


def _dialled(count: int, line: Any) -> bool:
    return len(line._ep.dial_string) >= count


@lru_cache(maxsize=None)
def _dialled_predicate(count: int) -> Callable[[Any], bool]:
    """One shared predicate per number width, not one per wait."""
    return partial(_dialled, count)


def _call_then(_: Any, then: Callable[[], None]) -> None:
    then()


def _ignore(_: Failure) -> None:
    return None


class _Party:
    """One line as the tool uses it: the gateway's Line, its endpoint, its number."""

    __slots__ = ("line", "ep", "number", "gateway")

    def __init__(self, line: Any, number: str, gateway: str) -> None:
        self.line = line
        self.ep = _ep_of(line)
        self.number = number
        self.gateway = gateway


class _Call(BasicCall):
    """A basic call on simulated gateway lines: waits are C{Line.when} Deferreds."""

    __slots__ = ("waits",)

    def __init__(self, runner: LoadRunner, caller: _Party, callee: _Party, measured: bool,
                 caller_hangs_up: bool) -> None:
        super().__init__(runner, caller, callee, measured, caller_hangs_up)
        self.waits: list[Deferred[Any]] = []

    def _wait(self, party: _Party, until: Until, then: Callable[[], None]) -> None:
        predicate = _dialled_predicate(len(self.callee.number)) if until is Until.DIALLED else _PREDICATES[until]
        d = party.line.when(predicate)
        if d.called:
            then()
            return
        self.waits.append(d)
        d.addCallback(_call_then, then)

    def _clear_waits(self) -> None:
        waits, self.waits = self.waits, []
        for d in waits:
            if not d.called:
                d.cancel()
                d.addErrback(_ignore)

    def _ntfy(self, d: Deferred[Any]) -> None:
        d.addErrback(self._ntfy_failed)

    def _ntfy_failed(self, failure: Failure) -> None:
        if failure.check(TransactionTimeout):
            self.ntfy_timed_out()

    def _off_hook(self, party: _Party) -> None:
        self._ntfy(party.line.off_hook())

    def _on_hook(self, party: _Party, recovering: bool = False) -> None:
        d = party.line.on_hook()
        if recovering:
            d.addErrback(_ignore)
        else:
            self._ntfy(d)

    def _dial(self, party: _Party, number: str) -> None:
        self._ntfy(party.line.dial(number, gap=self.runner.options.gap))

    def _hears(self, party: _Party, signal: str) -> bool:
        return signal in party.ep.signals

    def _is_off_hook(self, party: _Party) -> bool:
        return party.ep.hook is _OFF


class LoadRunner(CallScheduler):
    """
    The load tool on full simulated gateways, built from the settings and
    bound on C{reactor}; L{run} registers them, places calls and fires with
    a L{mgcpswitch.load.report.Report}.
    """

    generator = "simulator"

    def __init__(self, reactor: Any, settings: Settings, options: LoadOptions,
                 out: Any = None, random: Any = None) -> None:
        super().__init__(reactor, settings, options, out, random)
        for g in self.chosen:
            gw = SimulatedGateway(reactor, GatewayConfig(
                domain=g.name, lines=len(g.endpoints), port=g.port, interface=g.address,
                call_agent=self.agent, restart_delay=options.restart_delay, rtp=False, history_limit=0,
                faults=self._faults(options.faults),
            ), random=_random.Random(self.random.getrandbits(32)))
            self.gateways.append(gw)
            self.parties.extend(_Party(line, number, g.name) for line, number in zip(gw.lines, g.numbers))
        self.pool()
        if options.track_commands:
            self.audit = _AuditTracker()
            for gw in self.gateways:
                self.audit.wrap(gw)

    def new_call(self, caller: _Party, callee: _Party, measured: bool, caller_hangs_up: bool) -> _Call:
        return _Call(self, caller, callee, measured, caller_hangs_up)

    def _faults(self, faults: Optional[FaultConfig]) -> FaultConfig:
        """
        Each gateway's own fault generator: seeded from the run's (C{--seed})
        when the faults name no seed, so that a seeded run is reproducible.
        """
        if faults is None:
            return FaultConfig()
        return faults if faults.seed is not None else replace(faults, seed=self.random.getrandbits(32))

    def party_state(self, party: _Party) -> tuple[str, int, bool]:
        ep = party.ep
        return str(ep.name), len(ep.connections), _idle(ep)

    def stop_faults(self) -> None:
        for gw in self.gateways:
            gw.stop_faults()

    def fault_counters(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for gw in self.gateways:
            total.update(getattr(gw.protocol, "fault_counters", {}))
        return total

    # -- registration ----------------------------------------------------------

    def start_gateways(self) -> Deferred[float]:
        """Bind and start every gateway; fires with the seconds until every line was armed."""
        waits: list[Deferred[Any]] = []

        def gave_up() -> None:
            for w in waits:
                if not w.called:
                    w.cancel()
                    w.addErrback(_ignore)

        arming = self.arming(gave_up)
        for party in self.parties:
            w = party.line.when(lambda line, ep=party.ep: _armed(ep))
            w.addCallback(arming.one)
            waits.append(w)
        for gw in self.gateways:
            self._note_rsip_wait(gw)
            gw.start()
        return arming.deferred

    def _note_rsip_wait(self, gw: SimulatedGateway) -> None:
        """Remember when the gateway's first RSIP is due (its restart procedure's C{wait})."""
        restarts = gw.restarts
        begin = restarts.begin
        waits = self.rsip_waits

        def noting(*args: Any, **kwargs: Any) -> Any:
            waits.append(float(kwargs.get("wait", 0.0)))
            restarts.begin = begin  # type: ignore[method-assign]  # only the first
            return begin(*args, **kwargs)

        restarts.begin = noting  # type: ignore[method-assign]  # to note the RSIP waits

    def stop_gateways(self) -> Deferred[Any]:
        return gatherResults([gw.stop() for gw in self.gateways], consumeErrors=True)

    def _gateway_counters(self) -> Counter[str]:
        # Through snapshot(), the transaction layer's public view: counters
        # named "name" or "name VERB/CODE", summed here by name.
        total: Counter[str] = Counter()
        for gw in self.gateways:
            for key, value in gw.protocol.transactions.snapshot()["counters"].items():
                total[key.partition(" ")[0]] += value
        return total


class _AuditTracker:
    """
    Counts, per line, the AUEPs and RQNTs its gateway received (wrapping
    each gateway's command handler from outside), and the most lines of a
    gateway audited but not yet armed at once: with answers given at once
    and datagrams kept in order on loopback, that is the number of audits
    the switch had in flight to that gateway.
    """

    def __init__(self) -> None:
        self.auep: Counter[str] = Counter()
        self.rqnt: Counter[str] = Counter()
        self.armed_rqnt: Counter[str] = Counter()  # RQNTs asking for L/hd only
        self.open: dict[str, set[str]] = {}
        self.peak: dict[str, int] = {}
        self.first_rsip: dict[str, float] = {}
        self.other: Counter[str] = Counter()

    def wrap(self, gw: SimulatedGateway) -> None:
        original = gw.command_received
        domain = gw.config.domain
        self.open[domain] = set()
        self.peak[domain] = 0
        tracker = self

        def command_received(command: Any, source: Any) -> Any:
            tracker.seen(domain, command)
            return original(command, source)

        gw.command_received = command_received  # type: ignore[method-assign]  # to count what it is sent

    def seen(self, domain: str, command: Any) -> None:
        name = str(command.endpoint).lower()
        verb = command.verb
        open_ = self.open[domain]
        if verb is Verb.AUEP:
            if "*" in name or not command.params.get(ParamCode.REQUESTED_INFO):
                self.other["auep-keepalive"] += 1
                return
            self.auep[name] += 1
            open_.add(name)
            if len(open_) > self.peak[domain]:
                self.peak[domain] = len(open_)
        elif verb is Verb.RQNT:
            self.rqnt[name] += 1
            requested = command.params.get(ParamCode.REQUESTED_EVENTS, ())
            if len(requested) == 1 and requested[0].name == _OFF_HOOK_EVENT:
                self.armed_rqnt[name] += 1
            open_.discard(name)
        else:
            self.other[str(verb)] += 1
            open_.discard(name)

    def summary(self) -> dict[str, Any]:
        return {
            "auep_per_line": dict(Counter(self.auep.values())),
            "rqnt_per_line": dict(Counter(self.rqnt.values())),
            "arming_rqnt_per_line": dict(Counter(self.armed_rqnt.values())),
            "lines_audited": len(self.auep),
            "lines_armed": len(self.armed_rqnt),
            "max_audits_in_flight_per_gateway": max(self.peak.values()) if self.peak else 0,
            "audits_in_flight_by_gateway": dict(self.peak),
            "other_commands": dict(self.other),
        }
