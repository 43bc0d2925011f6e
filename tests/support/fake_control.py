"""
A fake L{ICallControl} for the web admin, mgcpctl and browser tests: canned
gateways, endpoints, calls and trunks that change the way call control's
would (originate rings, hang up ends, out of service, a line's services
change), every action recorded in C{actions}, and events handed to
subscribers synchronously.  L{FakeCallControl.stand_by} makes it a standby
of a cluster: it still shows everything, and refuses every change with
L{StandbyError}, as call control does.  L{FakeCallControl.overload} puts
its overload guard's snapshot where a shedding agent's would be.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyClass

from mgcpswitch.agent.model import (
    CallEnded,
    CallRecord,
    CallStarted,
    CallState,
    CallStateChanged,
    CallView,
    ClusterView,
    ConnectionView,
    EndpointStateChanged,
    EndpointView,
    GatewayState,
    GatewayStateChanged,
    GatewayView,
    LadderEntry,
    LegView,
    LineServices,
    LineServicesChanged,
    LineState,
    ReleaseCause,
    Role,
)
from mgcpswitch.agent.services import check_services
from mgcpswitch.errors import CallControlError, StandbyError
from mgcpswitch.interfaces import ICallControl
from mgcpswitch.trunk import RegistrationState, TrunkState, TrunkView

__all__ = ["FakeCallControl", "GW1", "GW2", "T0", "ACTIVE", "STANDBY"]

GW1 = "gw1.example.net"
GW2 = "gw2.example.net"
T0 = 1_700_000_000.0  # the fake's clock starts here (a real-looking epoch)

SNAPSHOT: dict[str, Any] = {
    "role": "call-agent",
    "counters": {
        "commands_sent AUEP": 4,
        "commands_sent CRCX": 6,
        "commands_sent RQNT": 9,
        "commands_received NTFY": 7,
        "commands_received RSIP": 2,
        "responses_received 200": 18,
        "responses_received 400": 1,
        "responses_sent 200": 9,
        "retransmissions": 3,
        "timeouts": 1,
        "duplicates": 2,
    },
    "pending": 1,
    "store": {"kind": "sqlite", "rows_written": 40, "batches_failed": 2, "rows_lost": 3, "cdrs_lost": 1, "waiting": 4},
    "history": 5,
    "executing": 0,
    "queued_incoming": 0,
    "latency_buckets": [0.001, 0.01, 0.1, 1.0],
    "latency_counts": [2, 10, 5, 1, 1],
    "peers": {"127.0.0.1:2427": {"rto": 0.2, "state": "reachable"}},
    "overload": {"state": "normal", "admitted_share": 1.0, "lateness_ms": 0.8, "calls_admitted": 40,
                 "calls_shed": 0, "episodes": 0},
}

#: The trunks, as their views say (call control's calls on them are set per test).
TRUNKS = {
    "provider": TrunkView(
        name="provider", kind="sip", peer="192.0.2.10:5060", state=TrunkState.UP,
        registration=RegistrationState.REGISTERED, channels_in_use=2, max_channels=30, calls_out=12, calls_in=5,
        answered_out=9, answered_in=4, refused_full=1, statuses={"out 200": 9, "out 486": 2, "in 200": 4, "in 487": 1},
        messages={"received": 160, "sent": 171, "malformed": 1, "stray_responses": 0, "retransmissions": 3,
                  "transactions": 2, "dialogs": 2},
    ),
    "backup": TrunkView(
        name="backup", kind="sip", peer="198.51.100.7:5070", state=TrunkState.DOWN,
        registration=RegistrationState.NONE, channels_in_use=0, max_channels=10,
    ),
}


#: The cluster's members, as the fake names them (their notified entities).
ACTIVE = "ca-a@127.0.0.1:2727"
STANDBY = "ca-b@127.0.0.4:2727"

#: A cluster member's counters, keyed as L{mgcpswitch.cluster.service.ClusterService.counters} keys them.
CLUSTER_COUNTERS = {
    "store_rows_written": 120, "store_batches": 12, "store_failures": 1, "store_lost_rows": 0,
    "store_refused_rows": 2, "store_pending": 3, "txid_blocks_drawn": 4, "txid_blocks_in_hand": 1,
    "leadership_attempts": 5, "leadership_renewals": 480, "leadership_renewal_failures": 1,
    "leadership_database_failures": 0, "takeovers": 1,
}


def _ladder(start: float, endpoint: str) -> tuple[LadderEntry, ...]:
    lines = [
        (0.000, "out", f"CRCX 1001 {endpoint} MGCP 1.0"),
        (0.012, "in", "200 1001 OK"),
        (0.020, "out", f"MDCX 1002 {endpoint} MGCP 1.0"),
        (0.031, "in", "200 1002 OK"),
    ]
    return tuple(
        LadderEntry(start + dt, direction, GW1, summary, summary + "\r\nC: c1\r\n") for dt, direction, summary in lines
    )


@implementer(ICallControl)
class FakeCallControl:
    """Canned state plus recorded actions.  C{fail_next} makes the next action fail."""

    def __init__(self, clock: Any = None) -> None:
        if clock is None:
            clock = Clock()
            clock.advance(T0 + 100)
        self.clock = clock
        self.actions: list[tuple[Any, ...]] = []
        self.observers: list[Callable[[Any], None]] = []
        self.fail_next: Exception | None = None
        self.hold_next: Deferred | None = None  # an action answers with this Deferred
        self.stats: dict[str, Any] = {**SNAPSHOT, "counters": dict(SNAPSHOT["counters"])}
        self.outcomes: dict[str, int] = {"normal": 3, "busy": 1, "no-answer": 0}
        self.cluster_view: ClusterView | None = None  # a single agent until made a member
        self.trunks: dict[str, TrunkView] = dict(TRUNKS)
        self._next_call = 1
        now = self.clock.seconds()
        self.gateways: dict[str, GatewayView] = {
            GW1: GatewayView(
                name=GW1, host="127.0.0.1", port=2427, state=GatewayState.UP, in_service=True,
                endpoints=4, active_calls=1, last_rsip="restart", last_rsip_at=now - 90,
                last_seen=now - 2, keepalive_interval=60.0, profile="residential",
                counters={"commands": 21, "responses": 19},
            ),
            GW2: GatewayView(
                name=GW2, host="127.0.0.2", port=2427, state=GatewayState.DOWN, in_service=True,
                endpoints=1, active_calls=0, last_rsip=None, last_rsip_at=None,
                last_seen=None, keepalive_interval=60.0, profile="residential",
            ),
        }
        a1, a2 = f"aaln/1@{GW1}", f"aaln/2@{GW1}"
        self.endpoints: dict[str, EndpointView] = {
            a1: EndpointView(
                a1, GW1, LineState.CONNECTED, "off", True, "c1",
                (ConnectionView("A1", "c1", "sendrecv", "v=0", "v=0"),), "1001", "hd",
                calls=("c1",), services=LineServices(name="Alice"),
            ),
            a2: EndpointView(
                a2, GW1, LineState.CONNECTED, "off", True, "c1",
                (ConnectionView("A2", "c1", "sendrecv", "v=0", "v=0"),), "1002", "hd",
                calls=("c1",), services=LineServices(),
            ),
            f"aaln/3@{GW1}": EndpointView(f"aaln/3@{GW1}", GW1, LineState.IDLE, "on", True, None, (), "1003",
                                          services=LineServices(forward_busy="1004", message_waiting=True)),
            f"aaln/4@{GW1}": EndpointView(f"aaln/4@{GW1}", GW1, LineState.IDLE, "on", True, None, (), "1004",
                                          services=LineServices()),
            f"aaln/1@{GW2}": EndpointView(f"aaln/1@{GW2}", GW2, LineState.UNKNOWN, "unknown", True, None,
                                          services=LineServices()),
        }
        legs = (LegView(a1, "1001", True, "open", "A1", "sendrecv"), LegView(a2, "1002", False, "open", "A2", "sendrecv"))
        self.calls: dict[str, CallView] = {
            "c1": CallView(
                "c1", CallState.CONNECTED, a1, a2, "1002", now - 30, now - 25, None, None, "PCMU",
                _ladder(now - 30, a1), len(_ladder(now - 30, a1)), legs,
            ),
            "c0": CallView(
                "c0", CallState.ENDED, a1, f"aaln/3@{GW1}", "1003", now - 600, None, now - 590,
                ReleaseCause.BUSY, None,
            ),
        }

    # -- reading ----------------------------------------------------------

    def list_gateways(self) -> list[GatewayView]:
        return list(self.gateways.values())

    def get_gateway(self, name: str) -> GatewayView | None:
        return self.gateways.get(name)

    def list_endpoints(self, gateway: str | None = None) -> list[EndpointView]:
        return [e for e in self.endpoints.values() if gateway is None or e.gateway == gateway]

    def get_endpoint(self, name: str) -> EndpointView | None:
        return self.endpoints.get(name)

    def list_calls(self) -> list[CallView]:
        return list(self.calls.values())

    def get_call(self, call_id: str) -> CallView | None:
        return self.calls.get(call_id)

    def transaction_stats(self) -> dict[str, Any]:
        return self.stats

    def call_outcomes(self) -> dict[str, int]:
        return dict(self.outcomes)

    def cluster(self) -> ClusterView | None:
        return self.cluster_view

    def list_trunks(self) -> list[TrunkView]:
        return [self.trunks[name] for name in sorted(self.trunks)]

    def get_trunk(self, name: str) -> TrunkView | None:
        return next((t for t in self.trunks.values() if t.name.lower() == name.lower()), None)

    def overload(self, share: float, shed: int, lateness_ms: float = 42.0) -> None:
        """From now on the guard admits C{share} of new calls, having shed C{shed} (share 1: normal again)."""
        before = self.stats["overload"]
        overloaded = share < 1.0
        self.stats["overload"] = {
            "state": "overloaded" if overloaded else "normal", "admitted_share": share, "lateness_ms": lateness_ms,
            "calls_admitted": before["calls_admitted"], "calls_shed": shed,
            "episodes": before["episodes"] + (1 if overloaded and before["state"] == "normal" else 0),
        }

    def stand_by(self, active: str | None = ACTIVE) -> None:
        """From now on a standby of a cluster whose active is C{active} (None: none is known)."""
        self.cluster_view = ClusterView(
            STANDBY, Role.STANDBY, 7, active, 0.4, T0 + 40, 0,
            {**CLUSTER_COUNTERS, "takeovers": 0, "store_rows_written": 0, "store_refused_rows": 0},
        )

    def take_over(self) -> None:
        """This member becomes the active (epoch 8)."""
        self.cluster_view = ClusterView(STANDBY, Role.ACTIVE, 8, STANDBY, 0.1, self.clock.seconds(), 1,
                                        dict(CLUSTER_COUNTERS))

    def subscribe(self, observer: Callable[[Any], None]) -> Callable[[], None]:
        self.observers.append(observer)
        return lambda: self.observers.remove(observer)

    # -- acting -----------------------------------------------------------

    def _answer(self, value: Any) -> Deferred:
        if self.cluster_view is not None and self.cluster_view.role is not Role.ACTIVE:
            return fail(StandbyError(self.cluster_view.holder))
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            return fail(error)
        if self.hold_next is not None:
            d, self.hold_next = self.hold_next, None
            return d
        return succeed(value)

    def emit(self, event: Any) -> None:
        for observer in list(self.observers):
            observer(event)

    def _set_line(self, name: str, state: LineState, call_id: str | None, hook: str) -> None:
        before = self.endpoints[name]
        after = replace(before, state=state, call_id=call_id, hook=hook)
        self.endpoints[name] = after
        self.emit(EndpointStateChanged(after, before.state))

    def _standing_by(self) -> bool:
        return self.cluster_view is not None and self.cluster_view.role is not Role.ACTIVE

    def originate(self, a: str, b: str) -> Deferred:
        self.actions.append(("originate", a, b))
        if self.fail_next is None and self.hold_next is None and not self._standing_by():
            for name in (a, b):
                if self.endpoints[name].call_id is not None:
                    return fail(CallControlError(f"endpoint {name} is busy"))
        call_id = f"call-{self._next_call}"
        d = self._answer(call_id)
        if not d.called or d.result != call_id:
            return d
        self._next_call += 1
        view = CallView(call_id, CallState.ALERTING, a, b, self.endpoints[b].number or "", self.clock.seconds(),
                        None, None, None, None, _ladder(self.clock.seconds(), a)[:2], 2)
        self.calls[call_id] = view
        self._set_line(a, LineState.RINGING, call_id, "on")
        self.emit(CallStarted(view))
        return d

    def connect(self, call_id: str) -> None:
        """What the gateway would do: both ends answer."""
        before = self.calls[call_id]
        after = replace(before, state=CallState.CONNECTED, answered=self.clock.seconds(), codec="PCMU")
        self.calls[call_id] = after
        for name in (after.caller, after.callee):
            self._set_line(name, LineState.CONNECTED, call_id, "off")
        self.emit(CallStateChanged(after, before.state))

    def hangup(self, call_id: str) -> Deferred:
        self.actions.append(("hangup", call_id))
        d = self._answer(None)
        if d.called and d.result is None:
            self._end(call_id)
        return d

    def _end(self, call_id: str) -> None:
        before = self.calls[call_id]
        now = self.clock.seconds()
        after = replace(before, state=CallState.ENDED, ended=now, cause=ReleaseCause.ADMIN)
        self.calls[call_id] = after
        for name in (after.caller, after.callee):
            if name and self.endpoints[name].call_id == call_id:
                self._set_line(name, LineState.IDLE, None, "on")
        record = CallRecord(
            call_id, after.caller, after.callee, after.caller, after.callee, None, None, after.codec,
            after.started, after.answered, now, ReleaseCause.ADMIN,
        )
        self.outcomes["admin"] = self.outcomes.get("admin", 0) + 1
        self.emit(CallEnded(after, record))

    def audit_endpoint(self, name: str) -> Deferred:
        self.actions.append(("audit", name))
        view = self.endpoints[name]
        if view.state is LineState.UNKNOWN and not self._standing_by():
            view = replace(view, state=LineState.IDLE, hook="on")
            self.endpoints[name] = view
        return self._answer(view)

    def set_gateway_in_service(self, name: str, in_service: bool) -> Deferred:
        self.actions.append(("in_service", name, in_service))
        d = self._answer(None)
        if d.called and d.result is None:
            before = self.gateways[name]
            state = GatewayState.UP if in_service else GatewayState.OUT_OF_SERVICE
            self.gateways[name] = replace(before, in_service=in_service, state=state)
            self.emit(GatewayStateChanged(self.gateways[name], before.state))
        return d

    def set_line_services(self, name: str, changes: dict[str, Any]) -> Deferred:
        """
        Records the change; a line is named by endpoint or number; an
        unknown line or service fails as call control would, and so does
        a standby.
        """
        self.actions.append(("services", name, dict(changes)))
        if self._standing_by():
            return self._answer(None)
        view = self.endpoints.get(name) or next((e for e in self.endpoints.values() if e.number == name), None)
        if view is None:
            return fail(CallControlError(f"unknown line {name}"))
        try:
            values = check_services(changes)
        except ValueError as e:
            return fail(CallControlError(str(e)))
        d = self._answer(None)
        if not d.called or d.result is not None:
            return d  # fail_next, hold_next
        before = view.services or LineServices()
        after = replace(before, **values)
        self.endpoints[view.name] = view = replace(view, services=after)
        if after != before:
            self.emit(LineServicesChanged(view.name, after))
        return d.addCallback(lambda _: view)


verifyClass(ICallControl, FakeCallControl)
