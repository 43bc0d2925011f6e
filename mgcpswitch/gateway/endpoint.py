# -*- test-case-name: tests.test_gateway_notifications -*-
"""
One analog line's endpoint: hook state, the notification request in force
(requested events, detect events, persistent events, digit map, quarantine
handling), the observed events list, the quarantine buffer and the
notification state, the signals being played, and the connections.

The rules come from RFC 3435 §2.3.3 and §4.4.1 (digest §1.11-§1.14, §4.6)
and RFC 3660 §2.2 (digit collection):

  - an event is processed against C{R:} (then the persistent events) and
    its actions run: N notifies, A accumulates, D accumulates into the dial
    string and notifies when the digit map matches or cannot match, S swaps
    audio, I ignores, K keeps time-out signals running (any requested event
    without K stops them), E activates the embedded request;
  - a notification puts the endpoint in notification state: events in
    (R or T) plus the persistent ones are quarantined until the NTFY gets a
    response; with C{Q: step} quarantining goes on until the next RQNT
    ("lockstep"), with C{Q: loop} the quarantine is processed again at once;
  - a new RQNT replaces R, S (and D when given), resets the dial string,
    leaves notification state at once, and then discards or processes the
    quarantined events (and events accumulated but not yet notified) as its
    C{Q:} says;
  - digits are reported one by one in C{O:} (C{D/5,D/0,D/0,D/1}), in the
    order they were accumulated, as RFC 3435 §2.3.4 recommends when other
    events may be interleaved; C{D/T} appears where the timer expired.

Validation lives in L{requests}; this module applies what was validated,
so an RQNT that fails changes nothing (§4.4.2).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from ..mgcp import (
    Action,
    Command,
    DigitMap,
    EmbeddedRequest,
    EndpointName,
    Event,
    EventName,
    LoopControl,
    MatchStatus,
    InterDigitTimer,
    NotificationState,
    NotifiedEntity,
    ParamCode as P,
    QuarantineHandling,
    QuarantineProcessing,
    ReasonCode,
    RemoteProtocolError,
    RequestedEvent,
    Response,
    RestartMethod,
    SessionDescription,
    SignalRequest,
)
from .config import GatewayConfig
from .connection import Connection
from .packages import DIGITS, Hook, SignalType
from .requests import (
    Matcher,
    PlannedSignal,
    check_signal,
    compile_detect,
    compile_requested,
    expand_dollar,
    first_match,
)
from .timers import Timers

__all__ = ["Endpoint", "EndpointContext", "RequestPlan", "Notification", "KEEP", "remote_descriptor"]

#: "keep the current value" in a L{RequestPlan}.
KEEP: Any = object()

_NOTIFY, _ACCUMULATE, _DIGITS = Action.NOTIFY, Action.ACCUMULATE, Action.ACCUMULATE_DIGIT_MAP
_SWAP, _KEEP_SIGNALS = Action.SWAP, Action.KEEP_SIGNALS
_DEFAULT_ACTIONS = (Action.NOTIFY,)
_DEFAULT_QUARANTINE = QuarantineHandling(LoopControl.STEP, QuarantineProcessing.PROCESS)
_TIMER_EVENT = Event(EventName("D/T"))
_OEF = Event(EventName("B/oef"))
_QBO = Event(EventName("B/qbo"))
_TO = SignalType.TIME_OUT
_BR = SignalType.BRIEF


def remote_descriptor(sdp: SessionDescription | None) -> SessionDescription | None:
    """
    The remote descriptor a CRCX or MDCX carries, or None (none, or the
    C{v=0}-only "there is none").  One missing a line SDP requires -- o=,
    s=, t=, an m=, a c= in the session or in every stream (RFC 3435 §3.4,
    RFC 4566 §5) -- is in error: 509.  Checked before negotiation, which
    refuses what is well formed but unsupported (505), so a truncated
    descriptor is not taken for an unsupported one.
    """
    if sdp is None or sdp.is_empty:
        return None
    kinds = {line[0] for line in sdp.lines}
    missing = [f"{kind}=" for kind in "ostm" if kind not in kinds]
    if not missing and sdp.session_connection is None and any(m.connection is None for m in sdp.media):
        missing.append("c=")
    if missing:
        raise RemoteProtocolError(509, f"remote descriptor without {', '.join(missing)}")
    return sdp


@dataclass(slots=True)
class RequestPlan:
    """
    A notification request (standalone or encapsulated) checked against
    one endpoint and ready to commit; C{KEEP} fields leave the current
    value alone.
    """

    request_id: str
    requested: tuple[RequestedEvent, ...]
    matchers: tuple[Matcher, ...]
    signals: tuple[PlannedSignal, ...]
    digit_map: Any = KEEP
    quarantine: QuarantineHandling = _DEFAULT_QUARANTINE
    detect: Any = KEEP  # (events, matchers)
    persistent: Any = KEEP  # (requested, matchers)
    notified_entity: NotifiedEntity | None = None


class Notification:
    """
    One NTFY: its command, whether the transaction layer is carrying it,
    and who waits for its answer.
    """

    __slots__ = ("endpoint", "command", "layer", "outcome", "failed", "_waiters")

    def __init__(self, endpoint: Endpoint, command: Command) -> None:
        self.endpoint = endpoint
        self.command = command
        self.layer: Deferred[Response] | None = None
        self.outcome: Response | Failure | None = None
        self.failed = False
        self._waiters: list[Deferred[Any]] = []

    def deferred(self) -> Deferred[Any]:
        """Fires with the NTFY's response (or fails as its transaction did)."""
        if isinstance(self.outcome, Failure):
            return fail(self.outcome)
        if self.outcome is not None:
            return succeed(self.outcome)
        d: Deferred[Any] = Deferred()
        self._waiters.append(d)
        return d

    def resolve(self, outcome: Response | Failure) -> None:
        self.outcome = outcome
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)


class _Playing:
    __slots__ = ("plan", "timer")

    def __init__(self, plan: PlannedSignal, timer: IDelayedCall | None) -> None:
        self.plan = plan
        self.timer = timer


@runtime_checkable
class EndpointContext(Protocol):
    """
    What an endpoint needs of the gateway it belongs to (the gateway
    provides it): its settings and clock, and the gateway-wide actions an
    endpoint's events lead to.
    """

    config: GatewayConfig
    clock: IReactorTime
    timers: Timers

    def set_notified_entity(self, ep: Endpoint, entity: NotifiedEntity) -> None:
        """A new C{N:} for the endpoint (its waiting commands follow it)."""

    def release_connection(self, ep: Endpoint, conn: Connection) -> None:
        """Delete one of the endpoint's connections and its media."""

    def swap_audio(self, ep: Endpoint) -> None:
        """The S action: swap the modes of the endpoint's two connections."""

    def build_notify(self, ep: Endpoint, observed: tuple[Event, ...]) -> Command:
        """The NTFY reporting C{observed}, with a fresh transaction id."""

    def send_notification(self, ep: Endpoint, notification: Notification) -> None:
        """Send an NTFY to the endpoint's notified entity (or hold it)."""


class Endpoint:
    """The state of one line's endpoint; driven by the gateway and the line."""

    def __init__(self, context: EndpointContext, number: int, name: EndpointName,
                 notified_entity: NotifiedEntity) -> None:
        self.context = context
        self.number = number
        self.name = name
        self.key = name.lower()
        self.hook = Hook.ON
        self.in_service = True
        self.out_reason: str | None = None
        self.graceful = False
        self.connections: dict[str, Connection] = {}
        self.bearer: tuple[tuple[str, str], ...] = (("e", "mu"),)
        # the notification request in force
        self.request_id = "0"
        self.requested: tuple[RequestedEvent, ...] = ()
        self.matchers: tuple[Matcher, ...] = ()
        self.persistent: tuple[RequestedEvent, ...] = ()
        self.persistent_matchers: tuple[Matcher, ...] = ()
        self.detect: tuple[Event, ...] | None = None
        self.detect_matchers: tuple[Matcher, ...] = ()
        self.quarantine_handling = _DEFAULT_QUARANTINE
        self.ntfy_entity: NotifiedEntity | None = None
        self.digit_map: DigitMap | None = None
        self.embedded_active = False
        # what happened
        self.dial_string = ""
        self.observed: list[Event] = []
        self.quarantine: deque[Event] = deque()
        self._overflowed = False
        self._qbo = False
        self.digit_timer: IDelayedCall | None = None
        self._timer_with_digits = False
        # signals
        self.signals: dict[EventName, _Playing] = {}
        self.caller_id: tuple[str, ...] | None = None
        # notifications
        self.current: Notification | None = None
        self.lockstep = False
        self.sent: list[Notification] = []
        self.held: list[Notification] = []
        # the notified entity and the restart state
        self.notified_entity = notified_entity
        self.ne_address: tuple[str, int] | None = None
        self.last_source: tuple[str, int] | None = None
        self.procedure: Any = None
        self.restart_method = RestartMethod.RESTART
        self.reason = ReasonCode(0)
        # the driving API: its Line, handed to the waiters' predicates
        self.line: Any = None
        self.waiters: list[tuple[Callable[[Any], bool], Deferred[Any]]] = []
        self.history: list[tuple[float, str]] = []

    # -- observation -----------------------------------------------------

    def note(self, text: str) -> None:
        limit = self.context.config.history_limit
        if limit:
            history = self.history
            history.append((self.context.clock.seconds(), text))
            if len(history) > limit + limit // 4:
                del history[: len(history) - limit]

    def changed(self) -> None:
        """Re-check the line's waiters after a state change."""
        if self.waiters:
            line = self.line
            ready = [(p, d) for p, d in self.waiters if p(line)]
            if ready:
                for item in ready:
                    self.waiters.remove(item)
                for _, d in ready:
                    d.callback(line)

    @property
    def connection_flags(self) -> dict[str, bool]:
        """Connection ids mapped to "has a remote descriptor" (for validation)."""
        return {cid: c.remote_sdp is not None for cid, c in self.connections.items()}

    @property
    def notification_state(self) -> NotificationState:
        if self.current is not None:
            return NotificationState.NOTIFICATION
        if self.lockstep:
            return NotificationState.LOCKSTEP
        return NotificationState.OTHER

    @property
    def quarantining(self) -> bool:
        return self.current is not None or self.lockstep

    # -- requests --------------------------------------------------------

    def plan(
        self,
        params: Any,
        connections: dict[str, bool] | None = None,
        dollar: str | None = None,
    ) -> RequestPlan:
        """
        Check a notification request (the parameters of an RQNT, or the
        encapsulated one of a CRCX/MDCX/DLCX) without changing anything.
        """
        if connections is None:
            connections = self.connection_flags
        requested = params.get(P.REQUESTED_EVENTS, ())
        signals = params.get(P.SIGNAL_REQUESTS, ())
        if dollar is not None:
            requested, signals = expand_dollar(requested, signals, dollar)
        digit_map = params[P.DIGIT_MAP] if P.DIGIT_MAP in params else KEEP
        has_map = (self.digit_map if digit_map is KEEP else digit_map) is not None
        matchers = compile_requested(requested, connections, self.hook, has_map)
        planned = tuple(check_signal(s, connections, self.hook) for s in signals)
        plan = RequestPlan(
            params.get(P.REQUEST_ID, self.request_id), requested, matchers, planned, digit_map,
            params.get(P.QUARANTINE_HANDLING, _DEFAULT_QUARANTINE),
            notified_entity=params.get(P.NOTIFIED_ENTITY),
        )
        if P.DETECT_EVENTS in params:
            events = params[P.DETECT_EVENTS]
            plan.detect = (events, compile_detect(events, connections))
        if P.PERSISTENT_EVENTS in params:
            persistent = params[P.PERSISTENT_EVENTS]
            plan.persistent = (persistent, compile_requested(persistent, connections, None, has_map))
        return plan

    def commit(self, plan: RequestPlan) -> None:
        """Apply a checked request (RFC 3435 §4.4.1: the rules in the module docstring)."""
        self._cancel_digit_timer()
        if plan.notified_entity is not None:
            self.context.set_notified_entity(self, plan.notified_entity)
        self.request_id = plan.request_id
        self.requested = plan.requested
        self.matchers = plan.matchers
        if plan.digit_map is not KEEP:
            self.digit_map = plan.digit_map
        self.quarantine_handling = plan.quarantine
        if plan.detect is not KEEP:
            self.detect, self.detect_matchers = plan.detect
        if plan.persistent is not KEEP:
            self.persistent, self.persistent_matchers = plan.persistent
        self.ntfy_entity = plan.notified_entity
        self.embedded_active = False
        self.dial_string = ""
        discard = plan.quarantine.processing is QuarantineProcessing.DISCARD
        if self.current is not None:
            # Leave notification state at once; the NTFY is still carried
            # (and retransmitted) until answered.
            self.current = None
            self.observed.clear()
        elif self.observed:
            if not discard:
                self.quarantine.extendleft(reversed(self.observed))
            self.observed.clear()
        self._overflowed = False
        self.lockstep = False
        if discard:
            self.quarantine.clear()
        self._qbo = False
        if self.context.config.history_limit:
            self.note(f"request X: {self.request_id} R: {', '.join(map(str, self.requested))}"
                      f" S: {', '.join(str(p.request) for p in plan.signals)}")
        self.apply_signals(plan.signals)
        self._arm_initial_timer()
        self.drain_quarantine()
        self.changed()

    def _activate_embedded(self, embedded: EmbeddedRequest) -> None:
        """
        An embedded request acts as a new RQNT with the same N, X, Q and T,
        except that the observed list and the quarantine are kept (§2.3.3).
        Failure raises C{B/enf} when the embedded request asked for it.
        """
        connections = self.connection_flags
        has_map = embedded.digit_map is not None or self.digit_map is not None
        try:
            matchers = compile_requested(embedded.requested_events, connections, self.hook, has_map)
            planned = tuple(check_signal(s, connections, self.hook) for s in embedded.signal_requests)
        except RemoteProtocolError as e:
            self._embedded_failed(embedded, e.code)
            return
        self._cancel_digit_timer()
        self.requested = embedded.requested_events
        self.matchers = matchers
        if embedded.digit_map is not None:
            self.digit_map = embedded.digit_map
        self.dial_string = ""
        self.embedded_active = True
        self.note("embedded request activated")
        self.apply_signals(planned)
        self._arm_initial_timer()

    def _embedded_failed(self, embedded: EmbeddedRequest, code: int) -> None:
        self.note(f"embedded request failed: {code}")
        for item in embedded.requested_events:
            if item.name == "B/enf":
                event = Event(EventName("B/enf"), (str(code),))
                actions = item.actions or _DEFAULT_ACTIONS
                if _NOTIFY in actions or _ACCUMULATE in actions:
                    self._observe(event)
                if _NOTIFY in actions and not self.quarantining:
                    self.notify()
                return

    def reset(self) -> None:
        """
        A restart: no signals, no connections, R = the (provisioned, empty)
        persistent events, no digit map, X: 0 (RFC 3435 §4.4.1, §4.4.6).
        """
        self.stop_all_signals()
        for cid in list(self.connections):
            self.context.release_connection(self, self.connections[cid])
        self._cancel_digit_timer()
        self.request_id = "0"
        self.requested = self.persistent = ()
        self.matchers = self.persistent_matchers = self.detect_matchers = ()
        self.detect = None
        self.quarantine_handling = _DEFAULT_QUARANTINE
        self.ntfy_entity = None
        self.digit_map = None
        self.embedded_active = False
        self.dial_string = ""
        self.observed.clear()
        self.quarantine.clear()
        self.current = None
        self.lockstep = False
        self.caller_id = None
        self.bearer = (("e", "mu"),)
        self.changed()

    # -- events ----------------------------------------------------------

    def detect_event(self, event: Event) -> Notification | None:
        """
        An event happened on the line (or a timer expired): quarantine it
        in notification state, else process it.  Returns the NTFY it
        triggered, if any.
        """
        if not self.in_service:
            return None
        if self.quarantining:
            name = event.name
            package, event_name, conn = name.package or "L", name.name, name.connection
            if (
                first_match(self.matchers, package, event_name, conn) is not None
                or first_match(self.detect_matchers, package, event_name, conn) is not None
                or first_match(self.persistent_matchers, package, event_name, conn) is not None
            ):
                if len(self.quarantine) < self.context.config.quarantine_limit:
                    self.quarantine.append(event)
                elif not self._qbo:
                    self._qbo = True
                    self.quarantine.append(_QBO)
            return None
        return self._process(event)

    def _process(self, event: Event) -> Notification | None:
        name = event.name
        package, event_name, conn = name.package or "L", name.name, name.connection
        if package == "D" and event_name in DIGITS and not self._timer_with_digits \
                and self.digit_timer is not None:
            self._cancel_digit_timer()  # the first digit cancels an immediate timer (RFC 3660 §2.2)
        matcher = first_match(self.matchers, package, event_name, conn)
        if matcher is None:
            matcher = first_match(self.persistent_matchers, package, event_name, conn)
            if matcher is None:
                return None
        actions = matcher.request.actions or _DEFAULT_ACTIONS
        if _KEEP_SIGNALS not in actions:
            self.stop_timeout_signals()
        notify = False
        embedded = None
        for action in actions:
            if action is _NOTIFY:
                self._observe(event)
                notify = True
            elif action is _ACCUMULATE:
                notify = self._observe(event) or notify
            elif action is _DIGITS:
                notify = self._observe(event) or notify
                notify = self._collect(event_name) or notify
            elif action is _SWAP:
                self.context.swap_audio(self)
            elif isinstance(action, EmbeddedRequest):
                embedded = action
        result = self.notify() if notify else None
        if embedded is not None:
            self._activate_embedded(embedded)
        return result

    def _observe(self, event: Event) -> bool:
        """Add to the observed list; True when the list overflowed into a notifying C{B/oef}."""
        if len(self.observed) < self.context.config.observed_limit:
            self.observed.append(event)
            return False
        if self._overflowed:
            return False
        self._overflowed = True
        matcher = first_match(self.matchers, "B", "oef", None)
        if matcher is None:
            return False
        self.observed.append(_OEF)
        return _NOTIFY in (matcher.request.actions or _DEFAULT_ACTIONS)

    def _collect(self, symbol: str) -> bool:
        """Digit collection (RFC 3435 §2.1.5, RFC 3660 §2.2); True: notify now."""
        self.dial_string += symbol
        self.changed()
        self._cancel_digit_timer()
        digit_map = self.digit_map
        if digit_map is None:
            return True
        result = digit_map.match(self.dial_string)
        if result.status is not MatchStatus.PARTIAL:
            return True
        if first_match(self.matchers, "D", "T", None) is not None:
            config = self.context.config
            delay = config.t_critical if result.timer is InterDigitTimer.SHORT else config.t_partial
            self._timer_with_digits = True
            self.digit_timer = self.context.timers.call_later(delay, self._digit_timeout)
        return False

    def _arm_initial_timer(self) -> None:
        """
        C{D/T} requested without the D action starts at once with
        T-critical and is cancelled by the first digit (RFC 3660 §2.2).
        """
        matcher = first_match(self.matchers, "D", "T", None)
        self._timer_with_digits = False
        if matcher is not None and _DIGITS not in matcher.request.actions:
            self.digit_timer = self.context.timers.call_later(self.context.config.t_critical, self._digit_timeout)

    def _digit_timeout(self) -> None:
        self.digit_timer = None
        self.detect_event(_TIMER_EVENT)

    def _cancel_digit_timer(self) -> None:
        if self.digit_timer is not None:
            self.context.timers.cancel(self.digit_timer)
            self.digit_timer = None

    # -- notifications ---------------------------------------------------

    def notify(self) -> Notification:
        """Send the observed events (RFC 3435 §2.3.4) and enter notification state."""
        self._cancel_digit_timer()
        command = self.context.build_notify(self, tuple(self.observed))
        notification = Notification(self, command)
        self.current = notification
        self.lockstep = self.quarantine_handling.loop is not LoopControl.LOOP
        if self.context.config.history_limit:
            self.note(f"NTFY X: {self.request_id} O: {', '.join(map(str, self.observed))}")
        self.context.send_notification(self, notification)
        self.changed()
        return notification

    def notification_done(self, notification: Notification) -> None:
        """
        The NTFY got a response (or, lost, the disconnected procedure
        completed): leave notification state, clear the observed list and
        the dial string; in loop mode, process the quarantine again.
        """
        if notification is not self.current:
            return  # a new RQNT already took the endpoint out of notification state
        self.current = None
        self.observed.clear()
        self._overflowed = False
        self.dial_string = ""
        if self.quarantine_handling.loop is LoopControl.LOOP:
            self.lockstep = False
            self.drain_quarantine()
        self.changed()

    def drain_quarantine(self) -> None:
        quarantine = self.quarantine
        while quarantine and not self.quarantining:
            self._process(quarantine.popleft())

    # -- signals ---------------------------------------------------------

    def apply_signals(self, planned: tuple[PlannedSignal, ...]) -> None:
        """
        A new C{S:} list (RFC 3435 §2.3.3): time-out signals not in it stop,
        those in it go on with their original timer; on/off signals change
        only when named; brief signals play.
        """
        signals = self.signals
        wanted = {p.key for p in planned}
        changed = False
        for key in [k for k, s in signals.items() if s.plan.symbol.signal is _TO and k not in wanted]:
            self._stop_signal(key)
            changed = True
        timers = self.context.timers
        for plan in planned:
            kind = plan.symbol.signal
            key = plan.key
            if kind is _TO:
                if key in signals:
                    continue
                timer = timers.call_later(plan.duration, self._signal_timeout, key) if plan.duration else None
                signals[key] = _Playing(plan, timer)
            elif kind is _BR:
                old = signals.get(key)
                if old is not None and old.timer is not None:
                    timers.cancel(old.timer)
                signals[key] = _Playing(plan, timers.call_later(plan.duration, self._brief_done, key))
                if key == "L/ci":
                    self.caller_id = tuple(_unquote(p) for p in plan.request.params)
            elif plan.turn_off:
                if key in signals:
                    self._stop_signal(key)
            else:
                signals[key] = _Playing(plan, None)
            changed = True
            if self.context.config.history_limit:
                self.note(f"signal {plan.request} on")
        if changed:
            self.changed()

    def _stop_signal(self, key: EventName) -> None:
        playing = self.signals.pop(key)
        if playing.timer is not None:
            self.context.timers.cancel(playing.timer)
        if self.context.config.history_limit:
            self.note(f"signal {key} off")

    def stop_timeout_signals(self) -> None:
        keys = [k for k, s in self.signals.items() if s.plan.symbol.signal is _TO]
        if keys:
            for key in keys:
                self._stop_signal(key)
            self.changed()

    def stop_all_signals(self) -> None:
        if self.signals:
            for key in list(self.signals):
                self._stop_signal(key)
            self.changed()

    def _signal_timeout(self, key: EventName) -> None:
        """A time-out signal ran its course: C{pkg/oc(pkg/sig[@conn])} (RFC 3435 §2.1.7)."""
        playing = self.signals.pop(key, None)
        if playing is None:
            return
        playing.timer = None
        self.note(f"signal {key} completed")
        self.changed()
        self.detect_event(Event(EventName.create(key.package, "oc"), (str(key),)))

    def _brief_done(self, key: EventName) -> None:
        playing = self.signals.pop(key, None)
        if playing is not None:
            self.changed()

    def stop_hook_signals(self) -> None:
        """Signals the new hook state cannot carry stop (ringing an off-hook phone)."""
        hook = self.hook
        keys = [
            k for k, s in self.signals.items()
            if s.plan.symbol.signal_hook is not None and s.plan.symbol.signal_hook is not hook
            and k.connection is None
        ]
        for key in keys:
            self._stop_signal(key)

    def connection_signals_failed(self, connection_id: str) -> list[Event]:
        """
        Signals on a deleted connection stop; a time-out signal that was
        playing failed (C{of}, RFC 3435 §2.1.7).
        """
        events = []
        for key in [k for k in self.signals if k.connection == connection_id]:
            playing = self.signals[key]
            self._stop_signal(key)
            if playing.plan.symbol.signal is _TO:
                events.append(Event(EventName.create(key.package, "of"), (str(key),)))
        return events

    def audit_signals(self) -> tuple[SignalRequest, ...]:
        return tuple(
            SignalRequest(key, playing.plan.request.params) for key, playing in self.signals.items()
        )

    # -- hook ------------------------------------------------------------

    def set_hook(self, off: bool) -> Notification | None:
        self.hook = Hook.OFF if off else Hook.ON
        self.note("off-hook" if off else "on-hook")
        self.stop_hook_signals()
        self.changed()
        return self.detect_event(Event(EventName("L/hd" if off else "L/hu")))


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1].replace('""', '"')
    return text
