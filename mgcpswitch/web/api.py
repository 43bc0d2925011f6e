# -*- test-case-name: tests.test_web_api -*-
"""
The JSON API of the web admin.

Every route is an C{async} handler returning C{(code, body)}; one wrapper
(L{JSONResource.render}) runs it, writes the body as JSON and maps errors
to codes: L{ApiError} carries its own, a L{StandbyError} is 503 (the
agent stands by in a cluster: its admin is read-only, and the body names
the active agent), any other L{CallControlError} 409, a transaction
timeout 504, a failed MGCP transaction 502, and anything else is a bug,
logged with C{log.failure} and answered 500.  Nothing raises into the
reactor.  The resources read state and ask for actions only through
L{ICallControl}.

Routes (names in paths are percent-decoded per segment; an endpoint name
may be given percent-encoded, C{aaln%2F1%40gw}, or plain, C{aaln/1@gw}: it
runs to the first segment holding C{@}):

    GET    /api                              this list
    GET    /api/gateways                     all gateways
    GET    /api/gateways/NAME                one gateway
    POST   /api/gateways/NAME/service        {"in_service": bool}
    GET    /api/endpoints[?gateway=NAME]     endpoints
    GET    /api/endpoints/EP                 one endpoint
    POST   /api/endpoints/EP/audit           AUEP it
    GET    /api/endpoints/EP/services        its services (forwarding, DND, message waiting, ...)
    PATCH  /api/endpoints/EP/services        {"dnd": true, "forward_always": "2003", ...}: change some
    GET    /api/calls                        calls (without ladders)
    POST   /api/calls                        {"from": EP, "to": EP} -> 201
    GET    /api/calls/ID                     one call with its MGCP ladder
    GET    /api/calls/ID/flow                its ladder as a flow graph (columns, messages)
    GET    /api/calls/ID/ladder.pcap         its ladder as a pcap (UDP, real addresses and times)
    DELETE /api/calls/ID                     hang it up
    GET    /api/trunks                       trunks (SIP): state, registration, channels, counters, calls
    GET    /api/trunks/NAME                  one trunk
    GET    /api/stats                        transactions, calls, gateways, overload, the cluster (or null)
    GET    /api/events                       server-sent events (and a C{stats} sample a second)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.http import RESPONSES
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from ..agent.model import (
    CallState,
    CallView,
    ClusterView,
    EndpointView,
    GatewayState,
    GatewayView,
    LineState,
    Role,
    event_name,
)
from ..agent.services import check_services
from ..errors import CallControlError, StandbyError, TransactionFailed, TransactionTimeout
from ..interfaces import ICallControl
from ..mgcp import EndpointName, RemoteProtocolError
from .flow import build_flow
from .pcap import CONTENT_TYPE as PCAP, pcap

__all__ = [
    "ApiError",
    "Raw",
    "JSONResource",
    "ApiRoot",
    "EventStream",
    "write_json",
    "registered_endpoints",
    "active_calls",
]

MAX_BODY = 64 * 1024
KEEPALIVE_INTERVAL = 15.0
MAX_STREAMS = 64
STATS_INTERVAL = 1.0  # seconds between the event stream's "stats" samples (the page's live chart)

#: Where the call agent listens, for flows whose ladder did not record it.
AgentAddress = Callable[[], "tuple[str, int] | None"]

Body = Any
Handler = Callable[[Any], Awaitable[Any]]


Headers = Mapping[bytes, "bytes | Sequence[bytes]"]  # a list of values sends the header once per value


class ApiError(Exception):
    """An answer other than success: a status code, a short error name, a reason, and headers."""

    def __init__(self, code: int, error: str, reason: str, headers: Headers | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.error = error
        self.reason = reason
        self.headers = dict(headers or {})


def not_found(reason: str) -> ApiError:
    return ApiError(404, "not-found", reason)


def bad_request(reason: str) -> ApiError:
    return ApiError(400, "bad-request", reason)


@dataclass(frozen=True, slots=True)
class Raw:
    """A body that is not JSON (the Prometheus text, say)."""

    content_type: bytes
    data: bytes


# A handler that took the request over (the event stream) returns this.
STREAMING = object()


def encode_body(body: Body) -> tuple[bytes, bytes]:
    """The content type and bytes of C{body}: JSON, or L{Raw} as it is."""
    if isinstance(body, Raw):
        return body.content_type, body.data
    return b"application/json; charset=utf-8", json.dumps(body, separators=(",", ":")).encode("ascii") + b"\n"


def _header_lines(content_type: bytes, data: bytes, headers: Headers | None) -> list[tuple[bytes, list[bytes]]]:
    """Every answer's headers: the caller's, then the body's type and length, never cached, never sniffed."""
    lines = [(name, [value] if isinstance(value, bytes) else list(value)) for name, value in (headers or {}).items()]
    return lines + [
        (b"content-type", [content_type]),
        (b"cache-control", [b"no-store"]),
        (b"x-content-type-options", [b"nosniff"]),
        (b"content-length", [b"%d" % len(data)]),
    ]


def send(request: Any, code: int, content_type: bytes, data: bytes, headers: Headers | None = None) -> None:
    """Answer C{request} and finish it; do nothing if the client has gone meanwhile."""
    if getattr(request, "channel", None) is None:
        return
    request.setResponseCode(code)
    for name, values in _header_lines(content_type, data, headers):
        request.responseHeaders.setRawHeaders(name, values)
    request.write(data)
    request.finish()


def raw_answer(error: ApiError) -> bytes:
    """
    C{error} as a whole HTTP/1.1 response that closes the connection: for
    a request refused before Twisted's L{Request} is ready to answer it
    (see L{mgcpswitch.web.site.AdminRequest}).
    """
    content_type, data = encode_body(error_body(error.error, error.reason))
    head = [b"HTTP/1.1 %d %s" % (error.code, RESPONSES.get(error.code, b"Error"))]
    for name, values in _header_lines(content_type, data, {**error.headers, b"connection": b"close"}):
        head.extend(name + b": " + value for value in values)
    return b"\r\n".join(head) + b"\r\n\r\n" + data


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload-too-large", f"the body is larger than {limit} bytes")


def write_json(request: Any, code: int, body: Body, headers: Headers | None = None) -> None:
    """Answer C{request} with C{body} as JSON (or L{Raw})."""
    send(request, code, *encode_body(body), headers)


def error_body(error: str, reason: str) -> dict[str, str]:
    return {"error": error, "reason": reason}


class JSONResource(Resource):
    """
    A leaf resource whose routes map the rest of the path to one handler
    per method.  Subclasses implement L{routes}.
    """

    isLeaf = True
    log = Logger()

    def routes(self, path: tuple[str, ...]) -> Mapping[bytes, Handler]:
        """
        The handlers for C{path} (the segments below this resource, decoded)
        by method; raise L{ApiError} (404, 400) when the path names nothing.
        """
        raise NotImplementedError

    def render(self, request: Any) -> int:
        ensureDeferred(self._respond(request))
        return NOT_DONE_YET

    async def _respond(self, request: Any) -> None:
        headers: Headers = {}
        try:
            result = await self._handle(request)
            if result is STREAMING:
                return
            code, body = result
            content_type, data = encode_body(body)
        except ApiError as e:
            code, headers = e.code, e.headers
            content_type, data = encode_body(error_body(e.error, e.reason))
        except StandbyError as e:
            code, (content_type, data) = 503, encode_body(dict(error_body("standby", str(e)), active=e.active))
        except CallControlError as e:
            code, (content_type, data) = 409, encode_body(error_body("conflict", str(e)))
        except TransactionTimeout as e:
            code, (content_type, data) = 504, encode_body(error_body("gateway-timeout", str(e)))
        except TransactionFailed as e:
            body = dict(error_body("gateway-error", str(e)), mgcp_code=e.code)
            code, (content_type, data) = 502, encode_body(body)
        except Exception:
            self.log.failure(
                "admin request {method} {uri} failed",
                method=request.method.decode("ascii", "replace"),
                uri=request.uri.decode("ascii", "replace"),
            )
            body = error_body("internal-error", "the switch failed to answer; see its log")
            code, (content_type, data) = 500, encode_body(body)
        send(request, code, content_type, data, headers)

    async def _handle(self, request: Any) -> Any:
        handlers = self.routes(_segments(request))
        method = b"GET" if request.method == b"HEAD" else request.method
        handler = handlers.get(method)
        if handler is None:
            allowed = sorted(handlers) + ([b"HEAD"] if b"GET" in handlers else [])
            raise ApiError(
                405,
                "method-not-allowed",
                f"{request.method.decode('ascii', 'replace')} is not allowed here; use "
                + ", ".join(m.decode("ascii") for m in allowed),
                {b"allow": b", ".join(allowed)},
            )
        return await handler(request)


def _segments(request: Any) -> tuple[str, ...]:
    path = list(request.postpath)
    if path and path[-1] == b"":  # a trailing slash
        path.pop()
    try:
        return tuple(segment.decode("utf-8") for segment in path)
    except UnicodeDecodeError:
        raise bad_request("the path is not UTF-8") from None


def _endpoint_name(text: str, *, concrete: bool = True) -> str:
    try:
        name = EndpointName.parse(text)
    except RemoteProtocolError:
        raise bad_request(
            f"bad endpoint name {text!r}: expected local@domain, like aaln/1@gw1.example.net"
        ) from None
    if concrete and name.is_wildcard:
        raise bad_request(f"endpoint name {text!r} is a wildcard; name one endpoint")
    return str(name)


def _split_endpoint(path: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """An endpoint name runs to the first segment holding C{@}."""
    for i, segment in enumerate(path):
        if "@" in segment:
            return _endpoint_name("/".join(path[: i + 1])), path[i + 1 :]
    raise bad_request(
        f"bad endpoint name {'/'.join(path)!r}: expected local@domain, like aaln/1@gw1.example.net"
    )


def read_json(request: Any, *, required: bool = True) -> dict[str, Any]:
    """
    The JSON object in the body.  Every POST and PATCH must say
    C{Content-Type: application/json}, even with no body: a cross-site form
    cannot (and a cross-site script cannot without a preflight the admin
    never grants).
    """
    content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type != b"application/json":
        raise ApiError(415, "unsupported-media-type", "send the body as Content-Type: application/json")
    request.content.seek(0)
    data = request.content.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise too_large(MAX_BODY)
    if not data.strip():
        if required:
            raise bad_request("the body is empty; expected a JSON object")
        return {}
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise bad_request(f"malformed JSON body: {e}") from None
    except RecursionError:  # json recurses per level: [[[[... 30,000 deep
        raise bad_request("the JSON body nests too deeply") from None
    if not isinstance(value, dict):
        raise bad_request("the body must be a JSON object")
    return value


def _string_field(body: Mapping[str, Any], key: str) -> str:
    if key not in body:
        raise bad_request(f"missing field {key!r}")
    value = body[key]
    if not isinstance(value, str):
        raise bad_request(f"field {key!r} must be a string")
    return value


async def _settle(result: Any) -> Any:
    """Await C{result} if call control answered with a Deferred."""
    if isinstance(result, Deferred):
        return await result
    return result


def call_json(view: CallView, *, ladder: bool) -> dict[str, Any]:
    """A call as JSON; without the ladder, its length instead."""
    if ladder:
        data = view.to_json()
        data["ladder_length"] = len(view.ladder)
    else:
        data = replace(view, ladder=()).to_json()
        del data["ladder"]
    return data


def _who(request: Any) -> str:
    user = request.getUser()
    return user.decode("utf-8", "replace") if user else "-"


def registered_endpoints(gateways: Iterable[GatewayView], endpoints: Iterable[EndpointView]) -> int:
    """
    Endpoints call control can reach: audited (state known) on a gateway
    that is up or draining.
    """
    live = {g.name for g in gateways if g.state in (GatewayState.UP, GatewayState.DRAINING)}
    return sum(1 for e in endpoints if e.gateway in live and e.state is not LineState.UNKNOWN)


def active_calls(calls: Iterable[CallView]) -> int:
    return sum(1 for c in calls if c.state is not CallState.ENDED)


def cluster_json(view: ClusterView | None) -> dict[str, Any] | None:
    """
    The agent's place in its cluster (None: a single agent), with
    C{read_only}: why its admin refuses changes (it is not the active
    agent), or None when it takes them.
    """
    if view is None:
        return None
    data = view.to_json()
    data["read_only"] = None if view.role is Role.ACTIVE else str(StandbyError(view.holder))
    return data


def stats_json(control: ICallControl, now: float) -> dict[str, Any]:
    """
    C{GET /api/stats}: transactions (with call control's counters, the
    store's and the overload guard's snapshot), calls, gateways, endpoints
    and the cluster.
    """
    views = control.list_gateways()
    gateways: dict[str, int] = {s.value: 0 for s in GatewayState}
    for g in views:
        gateways[g.state.value] += 1
    endpoints = control.list_endpoints()
    return {
        "now": now,
        "transactions": control.transaction_stats(),
        "calls": {"active": active_calls(control.list_calls()), "outcomes": dict(control.call_outcomes())},
        "gateways": gateways,
        "endpoints": {"total": len(endpoints), "registered": registered_endpoints(views, endpoints)},
        "cluster": cluster_json(control.cluster()),
    }


def snapshot(control: ICallControl, now: float) -> dict[str, Any]:
    """Everything the admin page shows, as the API gives it: rendered with the page."""
    return {
        "now": now,
        "gateways": [g.to_json() for g in control.list_gateways()],
        "endpoints": [e.to_json() for e in control.list_endpoints()],
        "calls": [call_json(c, ladder=False) for c in control.list_calls()],
        "trunks": [t.to_json() for t in control.list_trunks()],
        "stats": stats_json(control, now),
    }


def live_figures(control: ICallControl, now: float) -> dict[str, Any]:
    """
    One sample for the page's live chart: calls in progress, and running
    totals of calls started and of MGCP transactions (commands sent and
    received), from which the page draws calls/s and transactions/s; the
    cluster (L{cluster_json}), so that the page shows a takeover and the
    lease's age within a second; the overload guard's snapshot (or None
    when the agent has none) and the trunks, so that shedding and a trunk
    going down or filling up show within a second too.
    """
    calls = control.list_calls()
    active = active_calls(calls)
    stats = control.transaction_stats()
    counters: Mapping[str, int] = stats.get("counters", {})
    transactions = sum(v for k, v in counters.items() if k.startswith(("commands_sent ", "commands_received ")))
    return {
        "now": now,
        "active_calls": active,
        "calls": active + sum(control.call_outcomes().values()),
        "transactions": transactions,
        "cluster": cluster_json(control.cluster()),
        "overload": stats.get("overload"),
        "trunks": [t.to_json() for t in control.list_trunks()],
    }


def call_flow(control: ICallControl, view: CallView, agent: AgentAddress | None) -> dict[str, Any]:
    """A call and its ladder as a flow graph (see L{mgcpswitch.web.flow})."""
    flow = build_flow(view, {g.name: g for g in control.list_gateways()}, agent() if agent else None)
    return dict(flow.to_json(), call=call_json(view, ladder=False))


class _ControlResource(JSONResource):
    def __init__(self, control: ICallControl, clock: IReactorTime) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's Resource is unannotated upstream
        self.control = control
        self.clock = clock

    def now(self) -> float:
        return self.clock.seconds()


class GatewaysResource(_ControlResource):
    def routes(self, path: tuple[str, ...]) -> Mapping[bytes, Handler]:
        match path:
            case ():
                return {b"GET": self.list}
            case (name,):
                return {b"GET": partial(self.show, name)}
            case (name, "service"):
                return {b"POST": partial(self.set_service, name)}
        raise not_found(f"no such route: /api/gateways/{'/'.join(path)}")

    def _gateway(self, name: str) -> Any:
        view = self.control.get_gateway(name)
        if view is None:
            raise not_found(f"unknown gateway {name!r}")
        return view

    async def list(self, request: Any) -> tuple[int, Body]:
        return 200, {"now": self.now(), "gateways": [g.to_json() for g in self.control.list_gateways()]}

    async def show(self, name: str, request: Any) -> tuple[int, Body]:
        return 200, self._gateway(name).to_json()

    async def set_service(self, name: str, request: Any) -> tuple[int, Body]:
        body = read_json(request)
        self._gateway(name)
        in_service = body.get("in_service")
        if not isinstance(in_service, bool):
            raise bad_request("field 'in_service' must be true or false")
        self.log.info(
            "admin: gateway {gateway} in_service={in_service} by {user}",
            gateway=name,
            in_service=in_service,
            user=_who(request),
        )
        await _settle(self.control.set_gateway_in_service(name, in_service))
        return 200, self._gateway(name).to_json()


class EndpointsResource(_ControlResource):
    def routes(self, path: tuple[str, ...]) -> Mapping[bytes, Handler]:
        if not path:
            return {b"GET": self.list}
        name, rest = _split_endpoint(path)
        match rest:
            case ():
                return {b"GET": partial(self.show, name)}
            case ("audit",):
                return {b"POST": partial(self.audit, name)}
            case ("services",):
                return {b"GET": partial(self.services, name), b"PATCH": partial(self.change_services, name)}
        raise not_found(f"no such route below endpoint {name}: {'/'.join(rest)}")

    def _endpoint(self, name: str) -> EndpointView:
        view = self.control.get_endpoint(name)
        if view is None:
            raise not_found(f"unknown endpoint {name!r}")
        return view

    async def list(self, request: Any) -> tuple[int, Body]:
        gateway = None
        values = request.args.get(b"gateway")
        if values:
            try:
                gateway = values[0].decode("utf-8")
            except UnicodeDecodeError:
                raise bad_request("the gateway parameter is not UTF-8") from None
            if self.control.get_gateway(gateway) is None:
                raise not_found(f"unknown gateway {gateway!r}")
        endpoints = self.control.list_endpoints(gateway)
        return 200, {"now": self.now(), "endpoints": [e.to_json() for e in endpoints]}

    async def show(self, name: str, request: Any) -> tuple[int, Body]:
        return 200, self._endpoint(name).to_json()

    async def audit(self, name: str, request: Any) -> tuple[int, Body]:
        read_json(request, required=False)
        self._endpoint(name)
        self.log.info("admin: audit {endpoint} by {user}", endpoint=name, user=_who(request))
        view = await self.control.audit_endpoint(name)
        return 200, view.to_json()

    async def services(self, name: str, request: Any) -> tuple[int, Body]:
        services = self._endpoint(name).services
        return 200, services.to_json() if services is not None else {}

    async def change_services(self, name: str, request: Any) -> tuple[int, Body]:
        """
        Change the fields the body names, leave the others (a merge
        patch); checked field by field here, so that a mistake is a 400
        naming the field, before call control is asked.
        """
        body = read_json(request)
        self._endpoint(name)
        try:
            changes = check_services(body)
        except ValueError as e:
            raise bad_request(str(e)) from None
        self.log.info(
            "admin: services of {endpoint} {changes} by {user}", endpoint=name, changes=changes, user=_who(request)
        )
        view = await self.control.set_line_services(name, changes)
        return 200, view.to_json()


class CallsResource(_ControlResource):
    def __init__(self, control: ICallControl, clock: IReactorTime, agent: AgentAddress | None = None) -> None:
        super().__init__(control, clock)
        self.agent = agent

    def routes(self, path: tuple[str, ...]) -> Mapping[bytes, Handler]:
        match path:
            case ():
                return {b"GET": self.list, b"POST": self.originate}
            case (call_id,):
                return {b"GET": partial(self.show, call_id), b"DELETE": partial(self.hangup, call_id)}
            case (call_id, "flow"):
                return {b"GET": partial(self.flow, call_id)}
            case (call_id, "ladder.pcap"):
                return {b"GET": partial(self.pcap, call_id)}
        raise not_found(f"no such route: /api/calls/{'/'.join(path)}")

    def _call(self, call_id: str) -> CallView:
        view = self.control.get_call(call_id)
        if view is None:
            raise not_found(f"unknown call {call_id!r}")
        return view

    async def list(self, request: Any) -> tuple[int, Body]:
        calls = [call_json(c, ladder=False) for c in self.control.list_calls()]
        return 200, {"now": self.now(), "calls": calls}

    async def show(self, call_id: str, request: Any) -> tuple[int, Body]:
        return 200, dict(call_json(self._call(call_id), ladder=True), now=self.now())

    async def flow(self, call_id: str, request: Any) -> tuple[int, Body]:
        return 200, dict(call_flow(self.control, self._call(call_id), self.agent), now=self.now())

    async def pcap(self, call_id: str, request: Any) -> tuple[int, Body]:
        view = self._call(call_id)
        flow = build_flow(view, {g.name: g for g in self.control.list_gateways()}, self.agent() if self.agent else None)
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in call_id)
        request.setHeader(b"content-disposition", f'attachment; filename="call-{name}.pcap"'.encode("ascii"))
        return 200, Raw(PCAP, pcap(flow.datagrams))

    async def originate(self, request: Any) -> tuple[int, Body]:
        body = read_json(request)
        a = _endpoint_name(_string_field(body, "from"))
        b = _endpoint_name(_string_field(body, "to"))
        if a.lower() == b.lower():
            raise bad_request("'from' and 'to' name the same endpoint")
        for name in (a, b):
            if self.control.get_endpoint(name) is None:
                raise not_found(f"unknown endpoint {name!r}")
        self.log.info("admin: originate {caller} -> {callee} by {user}", caller=a, callee=b, user=_who(request))
        call_id = await self.control.originate(a, b)
        request.setHeader(b"location", b"/api/calls/" + str(call_id).encode("utf-8"))
        return 201, {"call_id": call_id, "from": a, "to": b}

    async def hangup(self, call_id: str, request: Any) -> tuple[int, Body]:
        view = self._call(call_id)
        if view.state is CallState.ENDED:
            raise ApiError(409, "conflict", f"call {call_id!r} has already ended")
        self.log.info("admin: hang up {call_id} by {user}", call_id=call_id, user=_who(request))
        await _settle(self.control.hangup(call_id))
        after = self.control.get_call(call_id)
        if after is None:
            return 200, {"call_id": call_id, "state": CallState.ENDED.value}
        return 200, call_json(after, ladder=False)


class TrunksResource(_ControlResource):
    """C{/api/trunks}: the trunks' views; C{/api/trunks/NAME}: one (any case), or 404."""

    def routes(self, path: tuple[str, ...]) -> Mapping[bytes, Handler]:
        match path:
            case ():
                return {b"GET": self.list}
            case (name,):
                return {b"GET": partial(self.show, name)}
        raise not_found(f"no such route: /api/trunks/{'/'.join(path)}")

    async def list(self, request: Any) -> tuple[int, Body]:
        return 200, {"now": self.now(), "trunks": [t.to_json() for t in self.control.list_trunks()]}

    async def show(self, name: str, request: Any) -> tuple[int, Body]:
        view = self.control.get_trunk(name)
        if view is None:
            known = ", ".join(t.name for t in self.control.list_trunks()) or "none configured"
            raise not_found(f"no trunk {name!r} (trunks: {known})")
        return 200, view.to_json()


class StatsResource(_ControlResource):
    def routes(self, path: tuple[str, ...]) -> Mapping[bytes, Handler]:
        if path:
            raise not_found(f"no such route: /api/stats/{'/'.join(path)}")
        return {b"GET": self.stats}

    async def stats(self, request: Any) -> tuple[int, Body]:
        return 200, stats_json(self.control, self.now())


def encode_event(event: Any) -> bytes:
    """One server-sent event: C{event: NAME}, C{data: JSON}, a blank line."""
    data = event.to_json()
    call = getattr(event, "call", None)
    if isinstance(call, CallView):
        data["call"] = call_json(call, ladder=False)
    text = json.dumps(data, separators=(",", ":"))
    return b"event: %s\ndata: %s\n\n" % (event_name(event).encode("ascii"), text.encode("ascii"))


@implementer(IPushProducer)
class EventStream:
    """
    One client of C{/api/events}: subscribed to call control until the
    connection goes.  When the connection pushes back (a slow reader), events
    are dropped and counted, and a C{resync} event tells the page to fetch
    everything again once it drains.
    """

    log = Logger()

    def __init__(
        self,
        request: Any,
        control: ICallControl,
        clock: IReactorTime,
        keepalive: float,
        on_close: Callable[[EventStream], None],
    ) -> None:
        self.request = request
        self.control = control
        self.clock = clock
        self.keepalive = keepalive
        self.on_close = on_close
        self.paused = False
        self.dropped = 0
        self.closed = False
        self._unsubscribe: Callable[[], Any] | None = None
        self._pinger: LoopingCall | None = None

    def start(self) -> None:
        request = self.request
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-accel-buffering", b"no")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.notifyFinish().addBoth(self._finished)
        request.registerProducer(self, True)
        request.write(b"retry: 3000\n: mgcpswitch events\n\n")
        self._unsubscribe = self.control.subscribe(self.event_received)
        self._pinger = LoopingCall(self._ping)
        self._pinger.clock = self.clock
        self._pinger.start(self.keepalive, now=False)

    def event_received(self, event: Any) -> None:
        """Call control's observer: serialise and send (never raises)."""
        if self.closed:
            return
        try:
            frame = encode_event(event)
        except Exception:
            self.log.failure("could not encode {event_type} for the event stream", event_type=type(event).__name__)
            return
        if self.paused:
            self.dropped += 1
            return
        self.request.write(frame)

    def offer(self, frame: bytes) -> None:
        """Send C{frame} unless the reader is behind (a sample is not worth a resync)."""
        if not self.closed and not self.paused:
            self.request.write(frame)

    def _ping(self) -> None:
        if not self.paused:
            self.request.write(b": keepalive\n\n")

    # IPushProducer
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if self.dropped and not self.closed:
            self.log.info("event stream resynchronised after dropping {dropped} events", dropped=self.dropped)
            self.request.write(b'event: resync\ndata: {"dropped":%d}\n\n' % self.dropped)
            self.dropped = 0

    def stopProducing(self) -> None:
        self._close()

    def _finished(self, result: Any) -> None:
        self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._pinger is not None and self._pinger.running:
            self._pinger.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.on_close(self)


class EventsResource(_ControlResource):
    """
    C{GET /api/events}: call and gateway changes as server-sent events,
    and every C{stats_interval} seconds a C{stats} event (L{live_figures})
    for the page's live chart, computed once for all streams.
    """

    def __init__(
        self,
        control: ICallControl,
        clock: IReactorTime,
        keepalive: float = KEEPALIVE_INTERVAL,
        max_streams: int = MAX_STREAMS,
        stats_interval: float = STATS_INTERVAL,
    ) -> None:
        super().__init__(control, clock)
        self.keepalive = keepalive
        self.max_streams = max_streams
        self.streams: set[EventStream] = set()
        self._sampler = LoopingCall(self._sample)
        self._sampler.clock = clock
        self.stats_interval = stats_interval

    def routes(self, path: tuple[str, ...]) -> Mapping[bytes, Handler]:
        if path:
            raise not_found(f"no such route: /api/events/{'/'.join(path)}")
        return {b"GET": self.stream}

    async def stream(self, request: Any) -> Any:
        if request.method == b"HEAD":
            return 200, Raw(b"text/event-stream; charset=utf-8", b"")
        if getattr(request, "channel", None) is None:
            return STREAMING  # the client left while we were authenticating it
        if len(self.streams) >= self.max_streams:
            raise ApiError(503, "too-many-streams", f"already {len(self.streams)} event streams open")
        stream = EventStream(request, self.control, self.clock, self.keepalive, self._closed)
        self.streams.add(stream)
        stream.start()
        stream.offer(self._frame())  # the chart's first point, at once
        if not self._sampler.running:
            self._sampler.start(self.stats_interval, now=False)
        return STREAMING

    def _frame(self) -> bytes:
        data = json.dumps(live_figures(self.control, self.now()), separators=(",", ":"))
        return b"event: stats\ndata: %s\n\n" % data.encode("ascii")

    def _sample(self) -> None:
        frame = self._frame()
        for stream in list(self.streams):
            stream.offer(frame)

    def _closed(self, stream: EventStream) -> None:
        self.streams.discard(stream)
        if not self.streams and self._sampler.running:
            self._sampler.stop()


_ROUTES = [
    ("GET", "/api", "this list"),
    ("GET", "/api/gateways", "all gateways"),
    ("GET", "/api/gateways/NAME", "one gateway"),
    ("POST", "/api/gateways/NAME/service", 'take out of or back into service: {"in_service": bool}'),
    ("GET", "/api/endpoints?gateway=NAME", "endpoints, of one gateway or all"),
    ("GET", "/api/endpoints/ENDPOINT", "one endpoint (aaln%2F1%40gw or aaln/1@gw)"),
    ("POST", "/api/endpoints/ENDPOINT/audit", "audit it (AUEP)"),
    ("GET", "/api/endpoints/ENDPOINT/services", "its services: forwarding, do-not-disturb, message waiting, ..."),
    ("PATCH", "/api/endpoints/ENDPOINT/services", 'change some: {"dnd": true, "forward_always": "2003", ...}'),
    ("GET", "/api/calls", "calls in progress and recently ended"),
    ("POST", "/api/calls", 'originate: {"from": ENDPOINT, "to": ENDPOINT}'),
    ("GET", "/api/calls/ID", "one call with its MGCP ladder"),
    ("GET", "/api/calls/ID/flow", "its ladder as a flow graph: columns (agent, endpoints) and messages"),
    ("GET", "/api/calls/ID/ladder.pcap", "its ladder as a pcap for Wireshark (UDP, real addresses and times)"),
    ("DELETE", "/api/calls/ID", "hang it up"),
    ("GET", "/api/trunks", "trunks: state (OPTIONS), registration, channels in use/max, counters, calls on each"),
    ("GET", "/api/trunks/NAME", "one trunk"),
    ("GET", "/api/stats", "transaction, call and gateway statistics; overload; the cluster (role, epoch, active) or null"),
    ("GET", "/api/events", "server-sent events of call and gateway changes, and live stats samples"),
    ("GET", "/metrics", "Prometheus metrics"),
]


class IndexResource(JSONResource):
    def routes(self, path: tuple[str, ...]) -> Mapping[bytes, Handler]:
        if path:
            raise not_found(f"no such route: /api/{'/'.join(path)}")
        return {b"GET": self.index}

    async def index(self, request: Any) -> tuple[int, Body]:
        return 200, {"routes": [{"method": m, "path": p, "what": w} for m, p, w in _ROUTES]}


class _Unknown(JSONResource):
    """Any name below C{/api} that is not a route: 404 whatever the method."""

    def __init__(self, name: bytes) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's Resource is unannotated upstream
        self.name = name.decode("utf-8", "replace")

    def routes(self, path: tuple[str, ...]) -> Mapping[bytes, Handler]:
        raise not_found("no such route: " + "/".join(("/api", self.name) + path))


class ApiRoot(Resource):
    """C{/api}: the JSON resources by (bytes) child name."""

    def __init__(
        self,
        control: ICallControl,
        clock: IReactorTime,
        agent: AgentAddress | None = None,
        stats_interval: float = STATS_INTERVAL,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's Resource is unannotated upstream
        self.index = IndexResource()  # type: ignore[no-untyped-call]  # its __init__ is Resource's, unannotated upstream
        self.putChild(b"gateways", GatewaysResource(control, clock))
        self.putChild(b"endpoints", EndpointsResource(control, clock))
        self.putChild(b"calls", CallsResource(control, clock, agent))
        self.putChild(b"trunks", TrunksResource(control, clock))
        self.putChild(b"stats", StatsResource(control, clock))
        self.putChild(b"events", EventsResource(control, clock, stats_interval=stats_interval))

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b"":
            return self.index
        return _Unknown(path)

    def render(self, request: Any) -> Any:
        return self.index.render(request)
