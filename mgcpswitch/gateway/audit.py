# -*- test-case-name: tests.test_gateway_commands -*-
"""
Audits: AuditEndpoint and AuditConnection (RFC 3435 §2.3.10, §2.3.11;
digest §2.7, §2.8).

Every C{F:} item a residential gateway has is answered, an item without a
value comes back empty (C{D:}), and items that do not apply (connection
items in AUEP, unknown names) are silently left out.  Each item is one row
of L{AUDIT_ITEMS}: the response keyword and how to read it.  A wildcard
AUEP lists the endpoints in C{Z:} lines and ignores C{F:}; a list that
cannot fit in the datagram size we advertise (C{MD:}) is refused with 533.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

from twisted.internet.interfaces import IReactorTime

from ..mgcp import (
    EMPTY_SDP,
    Capabilities,
    Command,
    ConnectionMode,
    Event,
    EventName,
    ParamCode as P,
    QuarantineHandling,
    RemoteProtocolError,
    RequestedEvent,
    Response,
    RestartMethod,
    SessionDescription,
)
from .config import GatewayConfig
from .connection import CODECS, Connection
from .endpoint import Endpoint
from .packages import PACKAGE_LIST, Hook

__all__ = ["audit_endpoints", "audit_connection", "AuditContext", "AUDIT_ITEMS"]

@runtime_checkable
class AuditContext(Protocol):
    """What the audits read of the gateway beyond the endpoint (the gateway provides it)."""

    config: GatewayConfig
    clock: IReactorTime
    restart_due: float | None  # when endpoints out of service for a restart come back
    graceful_due: float | None  # when a graceful restart takes them out


_MODES_TEXT = ";".join(m.value for m in ConnectionMode)
_PACKAGES_TEXT = ";".join(name for name, _ in PACKAGE_LIST)


def audit_endpoints(context: AuditContext, command: Command, endpoints: list[Endpoint]) -> Response:
    txid = command.transaction_id
    if command.endpoint.is_wildcard:
        size = sum(len(ep.name) + 5 for ep in endpoints) + 20
        if size > context.config.max_datagram:
            raise RemoteProtocolError(533, f"{len(endpoints)} endpoints do not fit in one response")
        # F: SHOULD NOT be sent with a wildcard and MUST be ignored (§2.3.10).
        return Response.create(200, txid, "OK", specific_endpoint_ids=tuple(ep.name for ep in endpoints))
    [ep] = endpoints
    values: dict[str, Any] = {}
    for item in command.params.get(P.REQUESTED_INFO, ()):
        row = AUDIT_ITEMS.get(item)
        if row is not None:
            keyword, read = row
            values[keyword] = read(context, ep)
    return Response.create(200, txid, "OK", **values)


def audit_connection(context: AuditContext, command: Command, ep: Endpoint, conn: Connection) -> Response:
    values: dict[str, Any] = {}
    info = command.params.get(P.REQUESTED_INFO, ())
    for item in info:
        if item is P.CALL_ID:
            values["call_id"] = conn.call_id
        elif item is P.NOTIFIED_ENTITY:
            values["notified_entity"] = ep.notified_entity
        elif item is P.LOCAL_CONNECTION_OPTIONS:
            values["local_options"] = conn.options if conn.options is not None else ""
        elif item is P.CONNECTION_MODE:
            values["mode"] = conn.mode
        elif item is P.CONNECTION_PARAMETERS:
            values["connection_parameters"] = conn.statistics()
    # Descriptors last, local before remote; a missing one is "v=0" (§3.3.7).
    descriptors: list[SessionDescription] = []
    if P.LOCAL_DESCRIPTOR in info:
        descriptors.append(conn.local_sdp or EMPTY_SDP)
    if P.REMOTE_DESCRIPTOR in info:
        descriptors.append(conn.remote_sdp or EMPTY_SDP)
    sdp = descriptors[0] if descriptors else None
    second = descriptors[1] if len(descriptors) > 1 else None
    return Response.create(200, command.transaction_id, "OK", sdp=sdp, second_sdp=second, **values)


def _requested(context: AuditContext, ep: Endpoint) -> tuple[RequestedEvent, ...]:
    """The list in force (the embedded one when active) and the persistent events."""
    listed = {item.name for item in ep.requested}
    return ep.requested + tuple(p for p in ep.persistent if p.name not in listed)


def _detect(context: AuditContext, ep: Endpoint) -> tuple[Event, ...]:
    return (ep.detect or ()) + tuple(Event(p.name, p.params) for p in ep.persistent)


def _capabilities(context: AuditContext, ep: Endpoint) -> tuple[Capabilities, ...]:
    """One C{A:} per codec (§3.2.2.3), with its bandwidth at our packetization."""
    ptime = context.config.packetization
    out = []
    for name in context.config.codecs:
        codec = CODECS[name.upper()]
        options: list[tuple[str, str]] = [("a", codec.name), ("p", "10-200")]
        if codec.voice:
            options.append(("b", str(round(codec.kbps + 320 / ptime))))
        options += [("e", "on"), ("s", "on"), ("nt", "IN"), ("v", _PACKAGES_TEXT), ("m", _MODES_TEXT)]
        out.append(Capabilities(tuple(options)))
    return tuple(out)


def _restart_delay(context: AuditContext, ep: Endpoint) -> int:
    """C{RD}: what an RSIP sent now would carry (§2.3.10)."""
    now = context.clock.seconds()
    procedure = ep.procedure
    if procedure is not None and procedure.method is RestartMethod.DISCONNECTED and procedure.since is not None:
        return int(now - procedure.since)
    if ep.out_reason == "restart":
        due = context.restart_due
    elif ep.restart_method is RestartMethod.GRACEFUL:
        due = context.graceful_due
    else:
        due = None
    return max(0, int(round(due - now))) if due is not None else 0


#: F: item -> (response keyword, reader).
AUDIT_ITEMS: dict[Any, tuple[str, Callable[[AuditContext, Endpoint], Any]]] = {
    P.REQUESTED_EVENTS: ("requested_events", _requested),
    P.DIGIT_MAP: ("digit_map", lambda context, ep: ep.digit_map if ep.digit_map is not None else ""),
    P.SIGNAL_REQUESTS: ("signal_requests", lambda context, ep: ep.audit_signals()),
    P.REQUEST_ID: ("request_id", lambda context, ep: ep.request_id),
    P.QUARANTINE_HANDLING: ("quarantine_handling", lambda context, ep: QuarantineHandling(
        ep.quarantine_handling.effective_loop, ep.quarantine_handling.effective_processing)),
    P.NOTIFIED_ENTITY: ("notified_entity", lambda context, ep: ep.notified_entity),
    P.CONNECTION_ID: ("connection_id", lambda context, ep: tuple(ep.connections)),
    P.DETECT_EVENTS: ("detect_events", _detect),
    P.OBSERVED_EVENTS: ("observed_events", lambda context, ep: tuple(ep.observed)),
    P.EVENT_STATES: ("event_states", lambda context, ep: (
        Event(EventName("L/hd" if ep.hook is Hook.OFF else "L/hu")),)),
    P.BEARER_INFORMATION: ("bearer_information", lambda context, ep: ep.bearer),
    P.RESTART_METHOD: ("restart_method", lambda context, ep: ep.restart_method),
    P.RESTART_DELAY: ("restart_delay", _restart_delay),
    P.REASON_CODE: ("reason_code", lambda context, ep: ep.reason),
    P.PACKAGE_LIST: ("package_list", lambda context, ep: PACKAGE_LIST),
    P.MAX_DATAGRAM: ("max_datagram", lambda context, ep: context.config.max_datagram),
    P.CAPABILITIES: ("capabilities", _capabilities),
    P.PERSISTENT_EVENTS: ("persistent_events", lambda context, ep: ep.persistent),
    P.NOTIFICATION_STATE: ("notification_state", lambda context, ep: ep.notification_state),
}
