# -*- test-case-name: tests.test_agent_calls -*-
"""
Views and events: what leaves call control.

L{Views} turns the registry's and the calls' live objects into the frozen
views of L{mgcpswitch.agent.model} (the admin's JSON, the CDR, the ladder);
L{EventBus} fans events out to observers (plugins: CDR writers, webhooks)
and subscribers (the admin's event stream) on a later reactor turn, after
the change they describe, so no observer ever runs in the middle of one.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterable, Optional

from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..interfaces import ICallObserver
from ..mgcp import encode
from .calls import Call, Leg
from .model import (
    CallCheckpoint,
    CallRecord,
    CallView,
    ConnectionView,
    EndpointStateChanged,
    EndpointView,
    GatewayView,
    LadderEntry,
    LegView,
    ReleaseCause,
)
from .gateways import Endpoint, Gateway

__all__ = ["EventBus", "Views", "lost_record"]


class EventBus:
    """
    Observers see call and gateway events; subscribers see those and every
    endpoint state change.  Both run on a later turn, in order; a failure
    of one is logged, counted and contained.
    """

    log = Logger()

    def __init__(
        self, clock: IReactorTime, observers: Iterable[ICallObserver], counters: Counter[str],
        subscribed: Callable[[bool], None] = lambda _: None,
    ) -> None:
        """
        @param subscribed: told C{True} when the first subscriber comes and
            C{False} when the last goes (endpoint events are made only then).
        """
        self._clock = clock
        self.observers = [ICallObserver(o) for o in observers]
        self.subscribers: list[Callable[[Any], None]] = []
        self._subscribed = subscribed
        self._counters = counters
        self._events: list[Any] = []
        self._delivery: Optional[IDelayedCall] = None
        self.watched = bool(self.observers)  # anyone listens: views are built only then

    def publish(self, event: Any) -> None:
        """Queue an event; it is delivered on a later turn, after the change."""
        self._events.append(event)
        if self._delivery is None:
            self._delivery = self._clock.callLater(0, self._deliver)

    def _deliver(self) -> None:
        self._delivery = None
        events, self._events = self._events, []
        for event in events:
            if type(event) is not EndpointStateChanged:
                for observer in self.observers:
                    maybeDeferred(observer.call_event, event).addErrback(self._observer_failed, observer)
            for subscriber in list(self.subscribers):
                try:
                    subscriber(event)
                except Exception:
                    self.log.failure("subscriber failed")

    def _observer_failed(self, failure: Failure, observer: Any) -> None:
        self._counters["observer_failures"] += 1
        self.log.failure("observer {observer} failed", failure, observer=getattr(observer, "name", observer))

    def add_observer(self, observer: ICallObserver) -> None:
        self.observers.append(ICallObserver(observer))
        self.watched = True

    def subscribe(self, subscriber: Callable[[Any], None]) -> Callable[[], None]:
        self.subscribers.append(subscriber)
        self.watched = True
        if len(self.subscribers) == 1:
            self._subscribed(True)

        def unsubscribe() -> None:
            if subscriber in self.subscribers:
                self.subscribers.remove(subscriber)
                self.watched = bool(self.observers or self.subscribers)
                if not self.subscribers:
                    self._subscribed(False)

        return unsubscribe

    def stop(self) -> None:
        if self._delivery is not None and self._delivery.active():
            self._delivery.cancel()
        self._delivery = None


class Views:
    """
    Frozen views of live objects.  C{local} is the call agent's own
    address ("host:port", once it listens), for the ladders.
    """

    def __init__(self) -> None:
        self.local: Optional[str] = None

    @staticmethod
    def gateway(gateway: Gateway) -> GatewayView:
        calls = {leg.call for e in gateway.endpoints.values() for leg in e.line.legs}
        return GatewayView(
            name=gateway.name,
            host=gateway.address[0],
            port=gateway.address[1],
            state=gateway.state,
            in_service=gateway.in_service,
            endpoints=len(gateway.endpoints),
            active_calls=len(calls),
            last_rsip=gateway.last_rsip,
            last_rsip_at=gateway.last_rsip_at,
            last_seen=gateway.last_seen,
            keepalive_interval=gateway.keepalive_interval,
            profile=getattr(gateway.profile, "name", "default"),
            counters=dict(gateway.counters),
        )

    @staticmethod
    def endpoint(endpoint: Endpoint) -> EndpointView:
        line = endpoint.line
        legs = {leg.connection_id: leg for leg in line.legs if leg.connection_id}
        connections = []
        for connection_id, call_id in endpoint.connections.items():
            leg = legs.get(connection_id)
            connections.append(ConnectionView(
                connection_id=connection_id,
                call_id=call_id,
                mode=leg.mode.value if leg is not None and leg.mode is not None else "unknown",
                local_sdp=str(leg.local_sdp) if leg is not None and leg.local_sdp else None,
                remote_sdp=str(leg.remote_sdp) if leg is not None and leg.remote_sdp else None,
            ))
        active = line.leg
        return EndpointView(
            name=str(endpoint.name),
            gateway=endpoint.gateway.name,
            state=line.state,
            hook=line.hook,
            in_service=endpoint.in_service and endpoint.gateway.in_service,
            call_id=active.call.call_id if active is not None else None,
            connections=tuple(connections),
            number=endpoint.number,
            last_event=line.last_event,
            calls=tuple(leg.call.call_id for leg in line.legs),
            held=tuple(leg.call.call_id for leg in line.legs if leg.held),
            waiting=tuple(leg.call.call_id for leg in line.legs if leg.waiting),
            conference=any(leg.conference for leg in line.legs),
            services=endpoint.services,
        )

    def call(self, call: Call, ladder: bool = False) -> CallView:
        caller, callee = call.caller, call.callee
        entries: tuple[LadderEntry, ...] = ()
        if ladder and call.ladder is not None:
            entries = tuple(self._ladder_entry(*item) for item in call.ladder)
            signalling = self._trunk_entries(call)
            if signalling:
                entries = tuple(sorted(entries + signalling, key=lambda e: e.time))  # stable: order kept at a tie
        return CallView(
            call_id=call.call_id,
            state=call.state,
            caller=party(caller)[0] if caller else "",
            callee=party(callee)[0] if callee else None,
            dialled=call.dialled,
            started=call.started,
            answered=call.answered,
            ended=call.ended,
            cause=call.cause,
            codec=call.codec,
            ladder=entries,
            ladder_length=len(call.ladder) if call.ladder is not None else 0,
            legs=tuple(_leg_view(leg) for leg in call.legs),
            forwarded_from=call.forwarded_from,
            transferred_by=call.transferred_by,
            related=call.related,
        )

    @staticmethod
    def record(call: Call) -> CallRecord:
        """The call's CDR."""
        caller, callee = call.caller, call.callee
        assert caller is not None and call.ended is not None
        a_name, a_number = party(caller)
        b_name, b_number = party(callee) if callee is not None else (None, None)
        if callee is not None and callee.trunk is not None:
            b_number = callee.trunk.number  # the number called out
        return CallRecord(
            call_id=call.call_id,
            caller=a_number or a_name,
            callee=(b_number or b_name) if b_name is not None else call.dialled or None,
            caller_endpoint=a_name,
            callee_endpoint=b_name,
            caller_connection=caller.connection_id,
            callee_connection=callee.connection_id if callee is not None else None,
            codec=call.codec,
            start=call.started,
            answer=call.answered,
            end=call.ended,
            cause=call.cause or ReleaseCause.NORMAL,
            caller_stats=dict(caller.stats),
            callee_stats=dict(callee.stats) if callee is not None else {},
            forwarded_from=call.forwarded_from,
            transferred_by=call.transferred_by,
            related=call.related,
        )

    @staticmethod
    def _trunk_entries(call: Call) -> tuple[LadderEntry, ...]:
        """The SIP messages of the call's trunk legs, beside the MGCP ones (while it was their call)."""
        out = []
        for leg in call.legs + call.former:
            party = leg.trunk
            messages = getattr(party.call, "messages", None) if party is not None else None
            if not messages:
                continue
            settings = getattr(party.trunk, "settings", None)
            local = f"{settings.local_address}:{settings.local_port}" if settings is not None else None
            for time, direction, data, address in messages:
                text = data.decode("utf-8", "replace")
                out.append(LadderEntry(time, direction, party.endpoint, text.split("\r\n", 1)[0], text,
                                       local=local, remote=f"{address[0]}:{address[1]}"))
        return tuple(out)

    def _ladder_entry(self, time: float, direction: str, gateway: Gateway, message: Any) -> LadderEntry:
        text = encode(message).decode("utf-8", "replace")
        host, port = gateway.address
        remote = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return LadderEntry(time, direction, gateway.name, text.split("\r\n", 1)[0], text,
                           local=self.local, remote=remote)


def party(leg: Leg) -> tuple[str, Optional[str]]:
    """
    How views and records name a leg's party: its endpoint and number, or,
    beyond a trunk, C{trunk:NAME} and the far party's number.
    """
    trunk = leg.trunk
    if trunk is not None:
        return trunk.endpoint, trunk.number
    endpoint = leg.line.endpoint
    return str(endpoint.name), endpoint.number


def _leg_view(leg: Leg) -> LegView:
    name, number = party(leg)
    return LegView(
        endpoint=name,
        number=number,
        originating=leg.originating,
        state=leg.state.value,
        connection_id=leg.connection_id,
        mode=leg.mode.value if leg.mode is not None else None,
        held=leg.held,
        waiting=leg.waiting,
        conference=leg.conference,
    )


def lost_record(saved: CallCheckpoint, now: float) -> CallRecord:
    """The record of a call a restarted agent could not take back (it ends now)."""
    caller = next((leg for leg in saved.legs if leg.originating), saved.legs[0])
    callee = next((leg for leg in saved.legs if not leg.originating), None)
    return CallRecord(
        call_id=saved.call_id,
        caller=caller.endpoint,
        callee=callee.endpoint if callee is not None else saved.dialled or None,
        caller_endpoint=caller.endpoint,
        callee_endpoint=callee.endpoint if callee is not None else None,
        caller_connection=caller.connection_id,
        callee_connection=callee.connection_id if callee is not None else None,
        codec=saved.codec,
        start=saved.started,
        answer=saved.answered,
        end=now,
        cause=ReleaseCause.AGENT_RESTART,
    )
