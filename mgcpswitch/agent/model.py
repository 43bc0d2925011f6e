# -*- test-case-name: tests.test_agent_machines -*-
"""
Frozen views of call-control state, and the events observers receive.

These are the only shapes that leave call control: the web admin renders
them (each has C{to_json()}), observers and CDR writers receive them.  They
are snapshots: holding one never keeps call control's objects alive or
lets anyone change them.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Union

from ..config import LineServices

__all__ = [
    "GatewayState",
    "LineState",
    "Hook",
    "CallState",
    "ReleaseCause",
    "GatewayView",
    "ClusterView",
    "Role",
    "ConnectionView",
    "LegView",
    "EndpointView",
    "LadderEntry",
    "CallView",
    "CallRecord",
    "GatewayRecord",
    "LineServices",
    "LineRecord",
    "LegCheckpoint",
    "CallCheckpoint",
    "StoredState",
    "RouteRequest",
    "RouteDecision",
    "CallStarted",
    "CallStateChanged",
    "CallEnded",
    "GatewayStateChanged",
    "EndpointStateChanged",
    "CallTransferred",
    "CallForwarded",
    "CallsJoined",
    "LineServicesChanged",
    "Event",
    "event_name",
]


class GatewayState(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: hash by identity, in C
    UNKNOWN = "unknown"  # configured, not heard from yet
    REGISTERING = "registering"  # RSIP received, audit in progress
    UP = "up"
    DRAINING = "draining"  # graceful restart announced: no new calls
    DOWN = "down"  # unreachable (Max2, timeouts) or forced out of service
    OUT_OF_SERVICE = "out-of-service"  # taken out by the operator


class LineState(enum.Enum):
    """The states of one analog line as call control drives it."""

    __hash__ = object.__hash__  # members are singletons: hash by identity, in C

    UNKNOWN = "unknown"  # not audited yet
    IDLE = "idle"
    DIAL_TONE = "dial-tone"
    COLLECTING = "collecting"
    ROUTING = "routing"
    RINGING = "ringing"  # this line is being alerted
    RINGBACK = "ringback"  # this line hears ringback
    CONNECTED = "connected"
    BUSY = "busy"  # hearing busy tone
    REORDER = "reorder"  # hearing reorder tone
    RELEASING = "releasing"
    RESTARTING = "restarting"  # the gateway restarts it, back after the RSIP's delay
    OUT_OF_SERVICE = "out-of-service"
    HOLDING = "holding"  # off hook with only held or waiting calls: a flash brings one back
    RECALLING = "recalling"  # on hook, rung again for a held or waiting call
    CONFERENCE = "conference"  # three-way: this line's two calls mixed on its gateway
    CONFIRMED = "confirmed"  # a feature code was accepted (confirmation tone): waiting for the hang-up


class Hook(enum.Enum):
    """A line's hook as the gateway last reported it."""

    __hash__ = object.__hash__  # members are singletons: hash by identity, in C
    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"


class CallState(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: hash by identity, in C
    SETUP = "setup"
    ALERTING = "alerting"
    CONNECTED = "connected"
    RELEASING = "releasing"
    ENDED = "ended"


class ReleaseCause(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: hash by identity, in C
    NORMAL = "normal"  # a party hung up after answer
    BUSY = "busy"
    UNKNOWN_NUMBER = "unknown-number"
    NO_ANSWER = "no-answer"
    ABANDONED = "abandoned"  # the caller hung up before answer
    REJECTED = "rejected"  # the dial plan refused the call
    GATEWAY_ERROR = "gateway-error"  # a gateway answered a command with an error
    GATEWAY_TIMEOUT = "gateway-timeout"  # a gateway did not answer
    GATEWAY_RESTART = "gateway-restart"  # a gateway restarted or went down mid-call
    ADMIN = "admin"  # hung up by the operator
    AGENT_RESTART = "agent-restart"  # talking when the call agent stopped, gone when it came back
    UNAVAILABLE = "unavailable"  # a party's line or gateway could not take calls (out of service, restarting, draining)
    TRANSFERRED = "transferred"  # the line that held both calls hung up: its two parties were connected
    DND = "do-not-disturb"  # the callee does not take calls now
    FORWARD_LOOP = "forward-loop"  # forwarding went round in a circle, or too far
    CODEC_MISMATCH = "codec-mismatch"  # the parties' gateways have no codec in common
    CONGESTION = "congestion"  # a trunk or the network beyond it could not take the call (5xx)
    OVERLOAD = "overload"  # the call agent was overloaded and shed the call before it began


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _JSON:
    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in asdict(self).items()}  # type: ignore[call-overload]


class Role(enum.Enum):
    """A call agent's part in a cluster (agents sharing a PostgreSQL store)."""

    __hash__ = object.__hash__  # members are singletons: hash by identity, in C
    STOPPED = "stopped"
    STANDBY = "standby"  # watches the active; commands no gateway
    ACTIVE = "active"


@dataclass(frozen=True)
class ClusterView(_JSON):
    """What the faces show of an agent in a cluster."""

    name: str  # the member's name: the notified entity gateways reach it at
    role: Role
    epoch: Optional[int]  # held when active; the cluster's, as last seen, on a standby
    holder: Optional[str]  # the active's name, as last seen
    lease_age: Optional[float]  # seconds since the active's last renewal
    last_takeover: Optional[float]  # when the current epoch began (the database's clock, seconds since 1970)
    takeovers: int  # times this member became active
    counters: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class GatewayView(_JSON):
    name: str
    host: Optional[str]
    port: int
    state: GatewayState
    in_service: bool  # the operator's setting
    endpoints: int
    active_calls: int  # calls with a party on the gateway
    last_rsip: Optional[str]  # restart method
    last_rsip_at: Optional[float]
    last_seen: Optional[float]
    keepalive_interval: float
    profile: str
    counters: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ConnectionView(_JSON):
    connection_id: str
    call_id: str
    mode: str
    local_sdp: Optional[str]
    remote_sdp: Optional[str]


@dataclass(frozen=True)
class EndpointView(_JSON):
    name: str
    gateway: str
    state: LineState
    hook: Hook
    in_service: bool
    call_id: Optional[str]
    connections: tuple[ConnectionView, ...] = ()
    number: Optional[str] = None  # the directory number the dial plan gives it
    last_event: Optional[str] = None
    calls: tuple[str, ...] = ()  # every call with a party on this line (a held one, a waiting one)
    held: tuple[str, ...] = ()  # of those, the calls on hold
    waiting: tuple[str, ...] = ()  # the calls waiting to be answered (call waiting)
    conference: bool = False  # its calls are mixed (three-way)
    services: Optional[LineServices] = None


@dataclass(frozen=True)
class LadderEntry(_JSON):
    """One MGCP message of a call, for the admin's ladder diagram."""

    time: float
    direction: str  # "out" (agent -> gateway) or "in"
    gateway: str
    summary: str  # "CRCX 1204 aaln/1@gw" or "200 1204 OK"
    text: str  # the message
    local: Optional[str] = None  # "host:port" of the agent's socket, when recorded
    remote: Optional[str] = None  # "host:port" of the gateway, when recorded
    retransmission: bool = False  # the same message sent again
    piggybacked: bool = False  # travelled in one datagram with others


@dataclass(frozen=True)
class LegView(_JSON):
    """One party of a call (a half-call)."""

    endpoint: str
    number: Optional[str]
    originating: bool
    state: str  # of its connection: new, creating, open, modifying, deleting, gone
    connection_id: Optional[str]
    mode: Optional[str]
    held: bool = False
    waiting: bool = False  # call waiting: its line has not answered it yet
    conference: bool = False  # mixed with its line's other call (three-way)


@dataclass(frozen=True)
class CallView(_JSON):
    call_id: str
    state: CallState
    caller: str  # endpoint
    callee: Optional[str]
    dialled: str
    started: float
    answered: Optional[float]
    ended: Optional[float]
    cause: Optional[ReleaseCause]
    codec: Optional[str]
    ladder: tuple[LadderEntry, ...] = ()
    ladder_length: int = 0  # messages in the ladder, also when the view leaves them out
    legs: tuple[LegView, ...] = ()
    forwarded_from: Optional[str] = None  # the endpoint first called, when the call was forwarded
    transferred_by: Optional[str] = None  # the endpoint whose hang-up connected these two parties
    related: tuple[str, ...] = ()  # the calls a transfer or conference joined this one with


@dataclass(frozen=True)
class CallRecord(_JSON):
    """A CDR: one per call, written when the call ends."""

    call_id: str
    caller: str
    callee: Optional[str]
    caller_endpoint: str
    callee_endpoint: Optional[str]
    caller_connection: Optional[str]
    callee_connection: Optional[str]
    codec: Optional[str]
    start: float
    answer: Optional[float]
    end: float
    cause: ReleaseCause
    caller_stats: dict[str, int] = field(default_factory=dict)
    callee_stats: dict[str, int] = field(default_factory=dict)
    forwarded_from: Optional[str] = None  # the endpoint first called, when the call was forwarded
    transferred_by: Optional[str] = None  # the endpoint whose hang-up connected these two parties
    related: tuple[str, ...] = ()  # the calls a transfer or conference joined this one with


@dataclass(frozen=True)
class LineRecord(_JSON):
    """A line's services as the store keeps them, by endpoint."""

    endpoint: str
    services: LineServices

    @classmethod
    def from_json(cls, endpoint: str, services: dict[str, Any]) -> LineRecord:
        return cls(endpoint, LineServices(**services))


@dataclass(frozen=True)
class GatewayRecord(_JSON):
    """A gateway's registration, as the store keeps it."""

    name: str
    host: str
    port: int
    state: GatewayState
    last_rsip: Optional[str]
    last_rsip_at: Optional[float]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GatewayRecord:
        """The record L{to_json} gave (as the stores keep it)."""
        return cls(
            name=data["name"], host=data["host"], port=data["port"], state=GatewayState(data["state"]),
            last_rsip=data["last_rsip"], last_rsip_at=data["last_rsip_at"],
        )


@dataclass(frozen=True)
class LegCheckpoint(_JSON):
    endpoint: str
    originating: bool
    connection_id: Optional[str]
    mode: Optional[str]
    call_id: Optional[str] = None  # its connection's CallId, when not the call's (a transferred leg)


@dataclass(frozen=True)
class CallCheckpoint(_JSON):
    """A talking call, as the store keeps it: enough to find it again on the gateways."""

    call_id: str
    dialled: str
    started: float
    answered: Optional[float]
    legs: tuple[LegCheckpoint, ...]
    codec: Optional[str] = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallCheckpoint:
        """The checkpoint L{to_json} gave (as the stores keep it)."""
        return cls(
            call_id=data["call_id"], dialled=data["dialled"], started=data["started"],
            answered=data["answered"], legs=tuple(LegCheckpoint(**leg) for leg in data["legs"]),
            codec=data.get("codec"),
        )


@dataclass(frozen=True)
class StoredState:
    """What a store holds for an agent that starts: gateways and talking calls."""

    gateways: tuple[GatewayRecord, ...] = ()
    calls: tuple[CallCheckpoint, ...] = ()
    lines: tuple[LineRecord, ...] = ()


@dataclass(frozen=True)
class RouteRequest:
    """What a dial plan is asked to route."""

    endpoint: str  # the calling line (for a forward: the line forwarding)
    digits: str  # as the digit map matched them (a trailing T means the timer ended it)
    caller_number: Optional[str] = None
    reason: Optional[str] = None  # why, when not dialled: "forward-always", "forward-busy", ...


@dataclass(frozen=True)
class RouteDecision:
    """
    A dial plan's answer: a target endpoint, or a rejection with the cause
    to play (C{UNKNOWN_NUMBER} gives reorder tone).
    """

    target: Optional[str] = None
    cause: Optional[ReleaseCause] = None
    reason: str = ""

    @classmethod
    def to(cls, endpoint: str) -> RouteDecision:
        return cls(target=endpoint)

    @classmethod
    def reject(cls, cause: ReleaseCause = ReleaseCause.UNKNOWN_NUMBER, reason: str = "") -> RouteDecision:
        return cls(cause=cause, reason=reason)


@dataclass(frozen=True)
class CallStarted(_JSON):
    call: CallView


@dataclass(frozen=True)
class CallStateChanged(_JSON):
    call: CallView
    previous: CallState


@dataclass(frozen=True)
class CallEnded(_JSON):
    call: CallView
    record: CallRecord


@dataclass(frozen=True)
class GatewayStateChanged(_JSON):
    gateway: GatewayView
    previous: GatewayState


@dataclass(frozen=True)
class EndpointStateChanged(_JSON):
    endpoint: EndpointView
    previous: LineState


@dataclass(frozen=True)
class CallTransferred(_JSON):
    """
    A line hung up holding two calls and its two parties were connected:
    C{call} is the new call between them, C{calls} the two it replaced.
    """

    call: CallView
    calls: tuple[str, ...]
    by: str  # the endpoint that transferred


@dataclass(frozen=True)
class CallForwarded(_JSON):
    """A call for C{from_endpoint} rings C{to_endpoint} instead (always, busy, no answer)."""

    call: CallView
    from_endpoint: str
    to_endpoint: str
    reason: str  # "always", "busy", "no-answer", "dnd"


@dataclass(frozen=True)
class CallsJoined(_JSON):
    """A line joined its two calls (three-way calling): their parties hear each other."""

    endpoint: str
    calls: tuple[str, ...]


@dataclass(frozen=True)
class LineServicesChanged(_JSON):
    """A line's services changed (a star code, the operator, a plugin)."""

    endpoint: str
    services: LineServices


Event = Union[CallStarted, CallStateChanged, CallEnded, GatewayStateChanged, EndpointStateChanged,
              CallTransferred, CallForwarded, CallsJoined, LineServicesChanged]


def event_name(event: Event) -> str:
    """C{"call-started"}, C{"gateway-state-changed"}, ... for wire formats."""
    name = type(event).__name__
    return "".join("-" + c.lower() if c.isupper() else c for c in name).lstrip("-")
