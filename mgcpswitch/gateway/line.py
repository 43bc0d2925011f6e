# -*- test-case-name: tests.test_gateway_line -*-
"""
The driving API: a L{Line} is a telephone on one of the gateway's analog
lines.  Tests, the demo and the load tool lift it off hook, dial, flash and
hang up, and read what the line is doing (ringing, tones, connections and
their SDP).

Actions return Deferreds that fire when the notification the action caused
(if any) got its response, so a script can wait for the call agent's
reaction without polling; L{Line.when} waits for any condition on the
line.  Every delay (the gap between dialled digits) runs on the gateway's
clock.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Protocol, runtime_checkable

from twisted.internet.defer import Deferred, gatherResults, succeed

from ..mgcp import DigitMap, Event, EventName, NotificationState, NotifiedEntity, RequestedEvent
from .config import GatewayConfig
from .connection import ConnectionState
from .endpoint import Endpoint, Notification
from .packages import DIGITS, Hook, SignalType
from .timers import Timers

__all__ = ["Line", "LineContext", "RINGING"]

#: The ringing signals of the line package (RFC 3660 §2.4).
RINGING = frozenset(EventName(f"L/{name}") for name in ["rg"] + [f"r{i}" for i in range(8)])


@runtime_checkable
class LineContext(Protocol):
    """What the driving API needs of the gateway (the gateway provides it)."""

    config: GatewayConfig
    timers: Timers
    stopped: bool

    def user_activity(self, ep: Endpoint) -> None:
        """The user did something on the line (a waiting RSIP may start, §4.4.6)."""


class Line:
    """One analog line of a simulated gateway, seen from the telephone."""

    def __init__(self, context: LineContext, endpoint: Endpoint) -> None:
        self._context = context
        self._ep = endpoint

    def __repr__(self) -> str:
        return f"<Line {self.name} {self.hook}-hook signals={sorted(self.signals)}>"

    # -- reading -------------------------------------------------------------

    @property
    def name(self) -> str:
        return str(self._ep.name)

    @property
    def number(self) -> int:
        return self._ep.number

    @property
    def hook(self) -> str:
        """C{"on"} or C{"off"}."""
        return self._ep.hook.value

    @property
    def signals(self) -> frozenset[EventName]:
        """Time-out signals playing, on/off signals on, brief signals still playing."""
        return frozenset(self._ep.signals)

    @property
    def ringing(self) -> bool:
        return any(key in RINGING for key in self._ep.signals)

    @property
    def tone(self) -> EventName | None:
        """The tone the handset hears (a time-out or on/off signal of the endpoint), if any."""
        for key, playing in self._ep.signals.items():
            if key.connection is None and key not in RINGING and playing.plan.symbol.signal is not SignalType.BRIEF:
                return key
        return None

    @property
    def caller_id(self) -> tuple[str, ...] | None:
        """Parameters of the last C{L/ci} signal (unquoted)."""
        return self._ep.caller_id

    @property
    def connections(self) -> tuple[ConnectionState, ...]:
        return tuple(conn.state() for conn in self._ep.connections.values())

    @property
    def request_id(self) -> str | None:
        return self._ep.request_id

    @property
    def requested_events(self) -> tuple[RequestedEvent, ...]:
        return self._ep.requested

    @property
    def observed_events(self) -> tuple[Event, ...]:
        return tuple(self._ep.observed)

    @property
    def digit_map(self) -> DigitMap | None:
        return self._ep.digit_map

    @property
    def dial_string(self) -> str:
        return self._ep.dial_string

    @property
    def in_service(self) -> bool:
        return self._ep.in_service

    @property
    def notified_entity(self) -> NotifiedEntity:
        return self._ep.notified_entity

    @property
    def notification_state(self) -> NotificationState:
        return self._ep.notification_state

    @property
    def history(self) -> list[tuple[float, str]]:
        """C{(time, what happened)}, newest last; bounded by C{config.history_limit}."""
        return self._ep.history

    # -- acting ----------------------------------------------------------------

    def off_hook(self) -> Deferred[Any]:
        """
        Lift the handset.  Fires with the response to the NTFY this caused,
        with None when it caused none (or the phone was already off hook).
        """
        if self._ep.hook is Hook.OFF:
            return succeed(None)
        self._context.user_activity(self._ep)
        return _answered(self._ep.set_hook(True))

    def on_hook(self) -> Deferred[Any]:
        """Hang up; fires like L{off_hook}."""
        if self._ep.hook is Hook.ON:
            return succeed(None)
        self._context.user_activity(self._ep)
        return _answered(self._ep.set_hook(False))

    def flash(self) -> Deferred[Any]:
        """
        A hook-flash (C{L/hf}); fires like L{off_hook}.

        @raise ValueError: the phone is on hook.
        """
        if self._ep.hook is Hook.ON:
            raise ValueError(f"{self.name} is on hook: no hook-flash")
        self._context.user_activity(self._ep)
        self._ep.note("hook-flash")
        return _answered(self._ep.detect_event(Event(EventName("L/hf"))))

    def dial(self, digits: str, gap: float = 0.1) -> Deferred[Any]:
        """
        Press C{digits} (0-9 * # A-D) one by one, C{gap} seconds apart on the
        gateway's clock.  Fires after the last digit was processed and the
        NTFYs the digits caused were answered, with the last response (None
        when no NTFY went out).

        @raise ValueError: an unknown digit, or the phone is on hook.
        """
        digits = digits.upper()
        bad = [d for d in digits if d not in DIGITS]
        if bad or not digits:
            raise ValueError(f"cannot dial {digits!r}")
        if self._ep.hook is Hook.ON:
            raise ValueError(f"{self.name} is on hook: no dialling")
        dialling = _Dialling(self._context, self._ep, digits, gap)
        dialling.press(0)
        return dialling.result

    def event(self, name: str, *params: str) -> Deferred[Any]:
        """Any other event on the line (C{"G/ft"}, C{"L/p"}); fires like L{off_hook}."""
        return _answered(self._ep.detect_event(Event(EventName.parse(name), params)))

    # -- waiting ---------------------------------------------------------------

    def when(self, predicate: Callable[[Line], bool]) -> Deferred[Line]:
        """
        Fires with the line as soon as C{predicate(line)} holds: at once if
        it does now, else after the state change that makes it true.
        Cancelling the Deferred forgets the wait.
        """
        if predicate(self):
            return succeed(self)
        waiters = self._ep.waiters
        # The canceller finds the entry by its Deferred: a closure over the
        # entry would make every wait a reference cycle.
        d: Deferred[Line] = Deferred(partial(_forget, waiters))
        waiters.append((predicate, d))
        return d

    def when_signal(self, name: str) -> Deferred[Line]:
        """Fires when signal C{name} (C{"L/rg"}, C{"G/rt"}) is playing on the line."""
        key = EventName.parse(name)
        return self.when(lambda line: key in line.signals)


def _forget(waiters: list[tuple[Callable[[Any], bool], Deferred[Any]]], d: Deferred[Any]) -> None:
    for i, (_, waiting) in enumerate(waiters):
        if waiting is d:
            del waiters[i]
            return


class _Dialling:
    """
    One C{Line.dial}: presses the digits on the gateway's timers.  A class,
    not a closure that schedules itself, so that no reference cycle is left
    behind for the garbage collector.
    """

    __slots__ = ("context", "ep", "digits", "gap", "events", "notifications", "result")

    def __init__(self, context: LineContext, ep: Endpoint, digits: str, gap: float) -> None:
        self.context = context
        self.ep = ep
        self.digits = digits
        self.gap = gap
        self.events = [Event(EventName("D/" + d)) for d in digits]
        self.notifications: list[Notification] = []
        self.result: Deferred[Any] = Deferred()

    def press(self, i: int) -> None:
        context, ep = self.context, self.ep
        if context.stopped:
            return
        context.user_activity(ep)
        if context.config.history_limit:
            ep.note(f"digit {self.digits[i]}")
        notification = ep.detect_event(self.events[i])
        if notification is not None:
            self.notifications.append(notification)
        if i + 1 < len(self.events):
            context.timers.call_later(self.gap, self.press, i + 1)
        elif self.notifications:
            gatherResults([n.deferred() for n in self.notifications], consumeErrors=True).addCallbacks(
                self._answered, self._failed
            )
        else:
            self.result.callback(None)

    def _answered(self, responses: list[Any]) -> None:
        self.result.callback(responses[-1])

    def _failed(self, failure: Any) -> None:
        self.result.errback(failure.value.subFailure)


def _answered(notification: Notification | None) -> Deferred[Any]:
    return notification.deferred() if notification is not None else succeed(None)
