# -*- test-case-name: tests.test_agent_calls -*-
"""
Call control: registers gateways, drives their lines, connects calls.

L{CallControl} is the call agent's command handler (NTFY, RSIP and
gateway-initiated DLCX arrive here) and the owner of the gateway registry,
the per-line state machines (L{mgcpswitch.agent.lines}) and the calls.  A
call is two half-calls, an originating and a terminating L{Leg}, each owned
by the line it serves.  Every path that ends a call deletes each
connection the switch created: a DLCX per connection, carrying the request
that re-arms the line; a connection on a gateway that cannot be reached is
remembered and deleted by the audit when the gateway comes back.

L{CallControlService} wraps it as a Twisted service (listening socket,
keepalives, observers) and provides L{ICallControl} to the web admin.
"""

from __future__ import annotations

import ipaddress
import itertools
import random
from collections import Counter, deque
from typing import Any, Callable, Iterable, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..errors import (
    CallControlError,
    ProtocolError,
    RemoteProtocolError,
    TransactionAborted,
    TransactionTimeout,
)
from ..interfaces import (
    ICallControl,
    ICallObserver,
    ICommandHandler,
    IDialPlan,
    IGatewayProfile,
    IPeerListener,
)
from ..mgcp import (
    Command,
    Parameters,
    ConnectionMode,
    DigitMap,
    EndpointName,
    LocalConnectionOptions,
    ParamCode,
    Response,
    RestartMethod,
    ReturnCode,
    SessionDescription,
    Verb,
    encode,
    trusted_response,
)
from ..timeouts import TimeoutQueue
from ..transaction import Outbox, PeerState
from . import commands as cmd
from .lines import Action, LineInput, TRANSITIONS
from .model import (
    CallEnded,
    CallRecord,
    CallStarted,
    CallState,
    CallStateChanged,
    CallView,
    ConnectionView,
    EndpointStateChanged,
    EndpointView,
    GatewayState,
    GatewayStateChanged,
    GatewayView,
    LadderEntry,
    LineState,
    ReleaseCause,
    RouteDecision,
    RouteRequest,
)

__all__ = ["CallControl", "Gateway", "Line", "Call", "Leg"]

P = ParamCode
_OK = Response  # marker for type hints


class Gateway:
    """A gateway as the registry knows it."""

    __slots__ = (
        "name", "key", "settings", "address", "allowed", "match_port", "state", "in_service",
        "last_rsip", "last_rsip_at", "last_seen", "keepalive", "keepalive_interval", "profile",
        "lines", "counters", "audit_queue", "audits_in_flight",
    )

    def __init__(self, settings: Any, profile: Any, keepalive_interval: float) -> None:
        self.name: str = settings.name
        self.key = settings.name.lower()
        self.settings = settings
        self.address: tuple[str, int] = (settings.address, settings.port)
        self.allowed = settings.allowed
        self.match_port: bool = settings.match_port
        self.state = GatewayState.UNKNOWN
        self.in_service = True
        self.last_rsip: Optional[str] = None
        self.last_rsip_at: Optional[float] = None
        self.last_seen: Optional[float] = None
        self.keepalive: Optional[IDelayedCall] = None
        self.keepalive_interval = keepalive_interval
        self.profile = profile
        self.lines: dict[str, Line] = {}
        self.counters: Counter[str] = Counter()
        self.audit_queue: deque[Line] = deque()
        self.audits_in_flight = 0

    def accepts(self, address: tuple[str, int]) -> bool:
        """Whether a datagram from C{address} may speak for this gateway."""
        if self.match_port and address[1] != self.address[1]:
            return False
        host = address[0]
        if host == self.address[0]:
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in network for network in self.allowed)

    @property
    def usable(self) -> bool:
        return self.in_service and self.state in (GatewayState.UP, GatewayState.REGISTERING)


class Line:
    """One endpoint (an analog line) and its state machine."""

    __slots__ = (
        "name", "key", "gateway", "number", "state", "hook", "request_id", "leg", "digit_map",
        "in_service", "last_event", "connections", "needs_audit", "dialling_armed",
    )

    def __init__(self, name: EndpointName, gateway: Gateway, number: Optional[str], digit_map: DigitMap) -> None:
        self.name = name
        self.key = name.lower()
        self.gateway = gateway
        self.number = number
        self.state = LineState.UNKNOWN
        self.hook = "unknown"
        self.request_id: Optional[str] = None
        self.leg: Optional[Leg] = None
        self.digit_map = digit_map
        self.in_service = True
        self.last_event: Optional[str] = None
        self.connections: dict[str, str] = {}  # connection id -> call id (ours, on the gateway)
        # The gateway may hold a connection we could not delete (or whose
        # CRCX answer was lost): an audit lists them and deletes the ones
        # we do not know.
        self.needs_audit = False
        self.dialling_armed = False  # its request is the idle one with dial tone embedded


class Leg:
    """A half-call: one line's part of a call."""

    __slots__ = (
        "call", "line", "originating", "connection_id", "local_sdp", "remote_sdp", "stats",
        "creating", "deleting", "released", "mode", "rearm",
    )

    def __init__(self, call: Call, line: Line, originating: bool) -> None:
        self.call = call
        self.line = line
        self.originating = originating
        self.connection_id: Optional[str] = None
        self.local_sdp: Optional[SessionDescription] = None
        self.remote_sdp: Optional[SessionDescription] = None
        self.stats: dict[str, int] = {}
        self.creating = False  # a CRCX is in flight
        self.deleting = False  # a DLCX is in flight
        self.released = False
        self.mode: Optional[ConnectionMode] = None
        self.rearm: Optional[tuple[Any, Any]] = None  # the request the DLCX carried


class Call:
    __slots__ = (
        "call_id", "state", "caller", "callee", "dialled", "started", "answered", "ended", "cause",
        "ladder", "no_answer", "originated", "originate_deferred", "pending_connect",
        "modifying", "ended_deferreds", "target", "saved_request",
    )

    def __init__(self, call_id: str, started: float, dialled: str) -> None:
        self.call_id = call_id
        self.state = CallState.SETUP
        self.caller: Optional[Leg] = None
        self.callee: Optional[Leg] = None
        self.dialled = dialled
        self.started = started
        self.answered: Optional[float] = None
        self.ended: Optional[float] = None
        self.cause: Optional[ReleaseCause] = None
        self.ladder: Optional[list[tuple[float, str, str, Any]]] = None
        self.no_answer: Optional[Any] = None  # a Timeout of the no-answer queue
        self.originated = False
        self.originate_deferred: Optional[Deferred[str]] = None
        self.pending_connect = False  # the callee answered while the caller's MDCX ran
        self.modifying = False  # an MDCX on the caller's connection is in flight
        self.ended_deferreds: list[Deferred[None]] = []
        self.target: Optional[Line] = None  # originated calls: the second party
        self.saved_request: Optional[tuple[Optional[str], bool]] = None

    def legs(self) -> Iterable[Leg]:
        if self.caller is not None:
            yield self.caller
        if self.callee is not None:
            yield self.callee


_ACTIONS: dict[Action, str] = {
    Action.NONE: "",
    Action.DIAL_TONE: "_do_dial_tone",
    Action.ARM_IDLE: "_do_arm_idle",
    Action.ROUTE: "_do_route",
    Action.BUSY_TONE: "_do_busy_tone",
    Action.REORDER_TONE: "_do_reorder_tone",
    Action.ANSWER: "_do_answer",
    Action.CALL_FAR_END: "_do_call_far_end",
    Action.RELEASE: "_do_release",
    Action.AUDIT: "_do_audit",
}


@implementer(ICommandHandler, IPeerListener, ICallControl)
class CallControl:
    """
    The call agent's brain.  Construct with the reactor (the only clock),
    the settings, a dial plan and the transaction sender; then
    L{start_gateways} begins keepalives and audits.
    """

    log = Logger()

    def __init__(
        self,
        clock: Any,
        settings: Any,
        dial_plan: IDialPlan,
        profiles: dict[str, IGatewayProfile],
        observers: Iterable[ICallObserver] = (),
        random_source: Optional[random.Random] = None,
    ) -> None:
        self._clock = clock
        self.settings = settings
        self._switch = settings.switch
        self._dial_plan = IDialPlan(dial_plan)
        self._observers = list(observers)
        self._subscribers: list[Callable[[Any], None]] = []
        self._events: list[Any] = []
        self._events_call: Optional[IDelayedCall] = None
        self._sender: Any = None
        # Stopgap until call control is rewritten: while a command from a
        # gateway is handled, the commands for its source, which ride after
        # the response (Reply.after, RFC 3435 §4.4.1).
        self._outbox: Optional[Outbox] = None
        rng = random_source or random.Random()
        self._call_prefix = format(rng.getrandbits(32), "08x")
        self._call_counter = itertools.count(1)
        self._request_counter = itertools.count(rng.randrange(1, 1 << 24))
        self._gateways: dict[str, Gateway] = {}
        self._by_address: dict[tuple[str, int], Gateway] = {}
        self._lines: dict[str, Line] = {}
        self._numbers: dict[str, Line] = {}
        self._calls: dict[str, Call] = {}
        self._ended: deque[Call] = deque(maxlen=max(settings.switch.ended_calls_kept, 1))
        self.counters: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self._options = LocalConnectionOptions.create(
            packetization=settings.switch.packetization, codecs=settings.switch.codecs
        )
        self._ladder = settings.switch.ladder
        self._embedded = settings.switch.embedded_dial_tone
        self._idle_events = cmd.DIALLING_ON_OFF_HOOK if self._embedded else cmd.OFF_HOOK_EVENTS
        self._default_profile = profiles.get("default")
        self._audits_in_flight = 0  # across every gateway
        self._no_answer_timeouts = TimeoutQueue(clock, settings.switch.no_answer_timeout, self._no_answer)
        self._audit_waiting: dict[Gateway, None] = {}  # gateways held by the switch-wide cap
        for gateway_settings in settings.gateways:
            self.add_gateway(gateway_settings, profiles.get(gateway_settings.profile))

    # -- wiring --------------------------------------------------------

    def set_sender(self, sender: Any) -> None:
        """The transaction layer commands go out through (set once at start)."""
        self._sender = sender
        for gateway in self._gateways.values():
            if gateway.profile is not None and not gateway.profile.response_acks:
                sender.set_peer_options(gateway.address, response_acks=False)

    def add_gateway(self, gateway_settings: Any, profile: Any = None) -> Gateway:
        interval = gateway_settings.keepalive_interval
        if interval is None:
            interval = self._switch.keepalive_interval
        gateway = Gateway(gateway_settings, profile, interval)
        self._gateways[gateway.key] = gateway
        self._by_address[gateway.address] = gateway
        digit_map_text = gateway_settings.digit_map
        for i, local in enumerate(gateway_settings.endpoints):
            name = EndpointName(gateway_settings.endpoint_name(local))
            number = gateway_settings.numbers[i] if gateway_settings.numbers else None
            dm = self._dial_plan.digit_map(name)
            if digit_map_text:
                dm = DigitMap.parse(digit_map_text)
            line = Line(name, gateway, number, dm)
            gateway.lines[line.key.partition("@")[0]] = line
            self._lines[line.key] = line
            if number:
                self._numbers[number] = line
        return gateway

    def accept_source(self, address: tuple[str, int]) -> bool:
        """
        The firewall to known gateways: whether a datagram from C{address}
        may be processed at all.  Unknown sources are dropped and counted
        (unless dynamic gateways are allowed).
        """
        if tuple(address) in self._by_address or self._switch.dynamic_gateways:
            return True
        for gateway in self._gateways.values():
            if gateway.accepts(address):
                return True
        self.counters["dropped_unknown_source"] += 1
        return False

    def start_gateways(self) -> None:
        """Begin keepalives; gateways register themselves with RSIP."""
        for gateway in self._gateways.values():
            self._schedule_keepalive(gateway, first=True)

    def stop(self) -> None:
        for gateway in self._gateways.values():
            if gateway.keepalive is not None and gateway.keepalive.active():
                gateway.keepalive.cancel()
            gateway.keepalive = None
        self._no_answer_timeouts.stop()
        for call in list(self._calls.values()):
            call.no_answer = None
        if self._events_call is not None and self._events_call.active():
            self._events_call.cancel()
        self._events_call = None

    # -- sending -------------------------------------------------------

    def _txid(self) -> int:
        return self._sender.allocate_transaction_id()  # type: ignore[no-any-return]

    def _request_id(self, line: Line) -> str:
        rid = format(next(self._request_counter), "x")
        line.request_id = rid
        line.dialling_armed = False
        return rid

    def _send(self, gateway: Gateway, command: Command, call: Optional[Call] = None) -> Deferred[Response]:
        gateway.counters["commands_sent"] += 1
        if call is not None and call.ladder is not None:
            call.ladder.append((self._clock.seconds(), "out", gateway.name, command))
        outbox = self._outbox
        if outbox is not None and outbox.source == tuple(gateway.address):
            d = outbox.add(command)
        else:
            d = self._sender.send_command(command, gateway.address)
        if call is not None and call.ladder is not None:
            d.addCallback(self._note_response, gateway, call)
        return d  # type: ignore[no-any-return]

    def _note_response(self, response: Response, gateway: Gateway, call: Call) -> Response:
        if call.ladder is not None:
            call.ladder.append((self._clock.seconds(), "in", gateway.name, response))
        return response

    # -- the command handler ---------------------------------------------

    def command_received(self, command: Command, source: tuple[str, int]) -> Any:
        outbox = self._outbox = Outbox(source)
        try:
            response = self._command_received(command, source)
        except BaseException:
            outbox.send_now(self._sender.send_command)
            raise
        finally:
            self._outbox = None
        return outbox.reply(response)

    def _command_received(self, command: Command, source: tuple[str, int]) -> Any:
        endpoint = command.endpoint
        domain = endpoint.rpartition("@")[2].lower()
        gateway = self._gateways.get(domain)
        if gateway is None:
            if not self._switch.dynamic_gateways:
                self.counters["refused_unknown_gateway"] += 1
                raise RemoteProtocolError(500, "unknown gateway")
            gateway = self._learn_gateway(endpoint.rpartition("@")[2], source)
        if not gateway.accepts(source):
            self.counters["refused_wrong_gateway"] += 1
            self.log.warn(
                "refused {verb} for {endpoint} from {source}: not {gateway}'s address",
                verb=str(command.verb), endpoint=endpoint, source=source, gateway=gateway.name,
            )
            raise RemoteProtocolError(500, "endpoint unknown from this address")
        gateway.last_seen = self._clock.seconds()
        gateway.counters["commands_received"] += 1
        verb = command.verb
        if verb is Verb.NTFY:
            return self._notify(gateway, command)
        if verb is Verb.RSIP:
            return self._restart_in_progress(gateway, command)
        if verb is Verb.DLCX:
            return self._gateway_deleted(gateway, command)
        if verb is Verb.MESG:
            return Response(ReturnCode.OK, command.transaction_id, "OK")
        raise RemoteProtocolError(504, f"{verb} is not accepted by a call agent")

    def _line(self, gateway: Gateway, endpoint: EndpointName) -> Line:
        line = gateway.lines.get(endpoint.rpartition("@")[0].lower())
        if line is None:
            if gateway.settings.dynamic and not endpoint.is_wildcard:
                return self._learn_line(gateway, endpoint)
            raise RemoteProtocolError(500, "endpoint unknown")
        return line

    # -- dynamic gateways ----------------------------------------------------

    def _learn_gateway(self, domain: str, source: tuple[str, int]) -> Gateway:
        """A gateway not in the configuration ([switch] dynamic_gateways = yes)."""
        from ..config import GatewaySettings

        self.counters["gateways_learned"] += 1
        self.log.info("learned gateway {domain} at {source}", domain=domain, source=source)
        settings = GatewaySettings(
            name=domain, address=source[0], port=source[1],
            allowed=(ipaddress.ip_network(source[0]),), dynamic=True,
        )
        gateway = self.add_gateway(settings, self._default_profile)
        self._schedule_keepalive(gateway)
        return gateway

    def _learn_line(self, gateway: Gateway, endpoint: EndpointName) -> Line:
        name = EndpointName(endpoint)
        line = Line(name, gateway, None, self._dial_plan.digit_map(name))
        gateway.lines[line.key.partition("@")[0]] = line
        self._lines[line.key] = line
        return line

    def _discover(self, gateway: Gateway) -> None:
        """Learn a dynamic gateway's endpoints: AUEP *@domain lists them (Z:)."""
        command = cmd.auep(self._txid(), EndpointName(f"*@{gateway.name}"), ())
        self._send(gateway, command).addCallbacks(
            self._discovered, self._keepalive_failed, (gateway,), None, (gateway,)
        )

    def _discovered(self, response: Response, gateway: Gateway) -> None:
        names = response.params.get(P.SPECIFIC_ENDPOINT_ID, ())
        for name in names:
            if name.rpartition("@")[0].lower() not in gateway.lines and not name.is_wildcard:
                self._learn_line(gateway, name)
        self._audit_lines(gateway, list(gateway.lines.values()))

    def _notify(self, gateway: Gateway, command: Command) -> Response:
        line = self._line(gateway, command.endpoint)
        call = line.leg.call if line.leg is not None else None
        if call is not None and call.ladder is not None:
            call.ladder.append((self._clock.seconds(), "in", gateway.name, command))
        observed = command.params.get(P.OBSERVED_EVENTS, ())
        digits = []
        hook_events = []
        for event in observed:
            name = event.name
            if name.startswith("D/"):
                digits.append(name[2:])
            elif name in ("L/hd", "L/hu", "L/hf"):
                hook_events.append(name)
        response = trusted_response(ReturnCode.OK, command.transaction_id, "OK", _NO_PARAMS)
        if call is not None and call.ladder is not None:
            call.ladder.append((self._clock.seconds(), "out", gateway.name, response))
        # The events in the order observed; the digit string is what the map matched.
        for name in hook_events:
            if name == "L/hd":
                line.hook = "off"
                line.last_event = "L/hd"
                leg = line.leg
                if leg is not None and leg.originating and leg.call.originated \
                        and line.state is LineState.RINGING:
                    self._input(line, LineInput.PICKED_UP)
                elif line.dialling_armed and command.request_id == line.request_id:
                    self._input(line, LineInput.OFF_HOOK_DIALLING)
                else:
                    self._input(line, LineInput.OFF_HOOK)
                if digits and line.state in (LineState.DIAL_TONE, LineState.COLLECTING):
                    self._input(line, LineInput.DIGITS, digits="".join(digits))
                    digits = []
            elif name == "L/hu":
                line.hook = "on"
                line.last_event = "L/hu"
                self._input(line, LineInput.ON_HOOK)
                digits = []
        if digits:
            line.last_event = "D/" + "".join(digits)
            self._input(line, LineInput.DIGITS, digits="".join(digits))
        return response

    # -- the state machine -----------------------------------------------

    def _input(self, line: Line, event: LineInput, **context: Any) -> None:
        entry = TRANSITIONS.get((line.state, event))
        if entry is None:
            self.counters["ignored_inputs"] += 1
            self.log.debug(
                "{line}: {event} ignored in state {state}",
                line=line.name, event=event.value, state=line.state.value,
            )
            if event in (LineInput.OFF_HOOK, LineInput.ON_HOOK) and line.leg is None \
                    and line.state not in (LineState.UNKNOWN, LineState.OUT_OF_SERVICE):
                # A hook change our view did not expect: the gateway has just
                # notified it and now waits for a request.  Start over from
                # what the phone is doing rather than leave it waiting.
                self.counters["resynchronised"] += 1
                line.state = LineState.IDLE
                if event is LineInput.OFF_HOOK:
                    self._input(line, LineInput.OFF_HOOK)
                else:
                    self._do_arm_idle(line)
            return
        state, action = entry
        previous = line.state
        line.state = state
        if state is not previous and self._subscribers:
            # Endpoint changes go to live subscribers (the admin's event
            # stream) only: observers are told of calls and gateways, and
            # building a view per transition would cost ten per call.
            self._publish(EndpointStateChanged(self._endpoint_view(line), previous))
        method = _ACTIONS[action]
        if method:
            getattr(self, method)(line, **context)

    def _do_dial_tone(self, line: Line) -> None:
        request_id = self._request_id(line)
        command = cmd.rqnt(
            self._txid(), line.name, request_id, cmd.DIALLING_EVENTS, cmd.DIAL_TONE, line.digit_map
        )
        self._send(line.gateway, command).addCallbacks(
            self._dial_tone_done, self._command_failed, (line, request_id), None, (line,)
        )

    def _dial_tone_done(self, response: Response, line: Line, request_id: str) -> None:
        if response.code == ReturnCode.ALREADY_ON_HOOK:
            line.hook = "on"
            self._input(line, LineInput.ON_HOOK)
        elif response.code >= 300:
            self._line_error(line, response)
        elif line.request_id == request_id:
            self._input(line, LineInput.ARMED)

    def _do_arm_idle(self, line: Line) -> None:
        if self._embedded:
            request_id = self._request_id(line)
            line.dialling_armed = True
            command = cmd.rqnt(
                self._txid(), line.name, request_id, self._idle_events, cmd.NO_SIGNALS, line.digit_map
            )
            self._send(line.gateway, command).addCallbacks(
                self._armed, self._command_failed, (line,), None, (line,)
            )
        else:
            self._arm(line, cmd.OFF_HOOK_EVENTS)

    def _do_busy_tone(self, line: Line) -> None:
        self._arm(line, cmd.HANG_UP_EVENTS, cmd.BUSY_TONE)

    def _do_reorder_tone(self, line: Line) -> None:
        self._arm(line, cmd.HANG_UP_EVENTS, cmd.REORDER_TONE)

    def _arm(self, line: Line, events: tuple, signals: tuple = ()) -> None:  # type: ignore[type-arg]
        request_id = self._request_id(line)
        command = cmd.rqnt(self._txid(), line.name, request_id, events, signals)
        self._send(line.gateway, command).addCallbacks(
            self._armed, self._command_failed, (line,), None, (line,)
        )

    def _armed(self, response: Response, line: Line) -> None:
        code = response.code
        if code == ReturnCode.ALREADY_OFF_HOOK:
            # Glare: the line went off hook before our request arrived.
            line.hook = "off"
            self._input(line, LineInput.OFF_HOOK)
        elif code == ReturnCode.ALREADY_ON_HOOK:
            line.hook = "on"
            self._input(line, LineInput.ON_HOOK)
        elif code >= 300:
            self._line_error(line, response)

    def _line_error(self, line: Line, response: Response) -> None:
        self.counters["line_errors"] += 1
        self.log.warn(
            "{line}: the gateway answered {code} {comment}",
            line=line.name, code=int(response.code), comment=response.comment,
        )
        if response.code in (ReturnCode.UNKNOWN_ENDPOINT, ReturnCode.ENDPOINT_NOT_READY):
            self._input(line, LineInput.OUT_OF_SERVICE)

    def _command_failed(self, failure: Failure, line: Line) -> None:
        if failure.trap(TransactionTimeout, TransactionAborted) is TransactionAborted:
            return  # shutting down
        self.counters["line_timeouts"] += 1
        self.log.info("{line}: command timed out", line=line.name)

    # -- routing and call setup -------------------------------------------

    def _do_route(self, line: Line, digits: str) -> None:
        gateway = line.gateway
        if not gateway.usable:
            self._input(line, LineInput.ROUTE_FAILED)
            return
        dialled = digits.rstrip("T")
        request = RouteRequest(str(line.name), dialled, line.number)
        maybeDeferred(self._dial_plan.route, request).addCallbacks(
            self._routed, self._route_failed, (line, dialled), None, (line,)
        )

    def _route_failed(self, failure: Failure, line: Line) -> None:
        self.log.failure("dial plan failed for {line}", failure, line=line.name)
        self.outcomes[ReleaseCause.REJECTED.value] += 1
        if line.state is LineState.ROUTING:
            self._input(line, LineInput.ROUTE_FAILED)

    def _routed(self, decision: RouteDecision, line: Line, dialled: str) -> None:
        if line.state is not LineState.ROUTING:
            return  # the caller hung up while the dial plan thought
        target = self._lines.get(decision.target.lower()) if decision.target else None
        if target is None:
            cause = decision.cause or ReleaseCause.UNKNOWN_NUMBER
            self._record_failed_attempt(line, dialled, cause)
            self._input(line, LineInput.ROUTE_FAILED)
            return
        if target is line or target.state is not LineState.IDLE or not target.gateway.usable \
                or not target.in_service:
            self._record_failed_attempt(line, dialled, ReleaseCause.BUSY, target)
            self._input(line, LineInput.ROUTE_BUSY)
            return
        call = self._new_call(dialled)
        call.caller = Leg(call, line, True)
        line.leg = call.caller
        self._setup_callee_and_caller(call, target)

    def _new_call(self, dialled: str) -> Call:
        call_id = f"{self._call_prefix}{next(self._call_counter):x}"
        call = Call(call_id, self._clock.seconds(), dialled)
        if self._ladder:
            call.ladder = []
        self._calls[call_id] = call
        self.counters["calls_started"] += 1
        if self._subscribers or self._observers:
            self._publish(CallStarted(self._call_view(call)))
        return call

    def _setup_callee_and_caller(self, call: Call, target: Line) -> None:
        call.callee = Leg(call, target, False)
        target.leg = call.callee
        self._input(target, LineInput.INCOMING)
        caller = call.caller
        assert caller is not None
        caller.creating = True
        request_id = self._request_id(caller.line)
        command = cmd.crcx(
            self._txid(), caller.line.name, call.call_id, ConnectionMode.RECVONLY, self._options,
            request_id=request_id, events=cmd.HANG_UP_EVENTS,
        )
        caller.mode = ConnectionMode.RECVONLY
        self._send(caller.line.gateway, command, call).addCallbacks(
            self._caller_created, self._setup_timed_out, (caller,), None, (caller,)
        )

    def _created(self, response: Response, leg: Leg) -> bool:
        """Record a CRCX answer; whether the call may go on."""
        leg.creating = False
        call = leg.call
        if response.is_success and response.connection_id:
            leg.connection_id = response.connection_id
            leg.local_sdp = response.sdp
            leg.line.connections[response.connection_id] = call.call_id
            if call.state in (CallState.RELEASING, CallState.ENDED):
                self._delete_leg(leg)  # released while the CRCX ran
                return False
            if response.sdp is None:
                self._release(call, ReleaseCause.GATEWAY_ERROR)  # a 200 without SDP is unusable
                return False
            return True
        if call.state not in (CallState.RELEASING, CallState.ENDED):
            if response.code == ReturnCode.ALREADY_OFF_HOOK and not leg.originating:
                leg.line.hook = "off"
                self._release(call, ReleaseCause.BUSY)
            else:
                self.log.warn(
                    "CRCX on {line} failed: {code} {comment}",
                    line=leg.line.name, code=int(response.code), comment=response.comment,
                )
                self._release(call, ReleaseCause.GATEWAY_ERROR)
        else:
            self._leg_released(leg)
        return False

    def _caller_created(self, response: Response, caller: Leg) -> None:
        if not self._created(response, caller):
            return
        call = caller.call
        callee = call.callee
        assert callee is not None
        callee.creating = True
        request_id = self._request_id(callee.line)
        caller_line = caller.line
        signals = (cmd.RINGING[0], cmd.caller_id(self._clock.seconds(), caller_line.number, None))
        callee.mode = ConnectionMode.SENDRECV
        callee.remote_sdp = caller.local_sdp
        command = cmd.crcx(
            self._txid(), callee.line.name, call.call_id, ConnectionMode.SENDRECV, self._options,
            sdp=caller.local_sdp, request_id=request_id, events=cmd.OFF_HOOK_EVENTS,
            signals=signals,
        )
        self._send(callee.line.gateway, command, call).addCallbacks(
            self._callee_created, self._setup_timed_out, (callee,), None, (callee,)
        )

    def _callee_created(self, response: Response, callee: Leg) -> None:
        if not self._created(response, callee):
            return
        call = callee.call
        caller = call.caller
        assert caller is not None and caller.connection_id is not None
        call.state = CallState.ALERTING
        if self._subscribers or self._observers:
            self._publish(CallStateChanged(self._call_view(call), CallState.SETUP))
        caller.remote_sdp = callee.local_sdp
        if call.pending_connect:
            # The callee answered while its CRCX was answered: no ringback.
            self._connect(call, sdp=callee.local_sdp)
            return
        call.modifying = True
        request_id = self._request_id(caller.line)
        command = cmd.mdcx(
            self._txid(), caller.line.name, call.call_id, caller.connection_id,
            ConnectionMode.RECVONLY, sdp=callee.local_sdp, request_id=request_id,
            events=cmd.HANG_UP_EVENTS, signals=cmd.RINGBACK,
        )
        self._send(caller.line.gateway, command, call).addCallbacks(
            self._caller_ringing, self._setup_timed_out, (caller,), None, (caller,)
        )
        call.no_answer = self._no_answer_timeouts.add(call)

    def _caller_modified(self, response: Response, caller: Leg, on_hook: ReleaseCause) -> bool:
        """
        The answer to an MDCX of the caller's connection: whether the call
        goes on.  A call released meanwhile resumes its release; an error
        releases it (C{on_hook} when the caller had already hung up).
        """
        call = caller.call
        call.modifying = False
        if call.state in (CallState.RELEASING, CallState.ENDED):
            self._continue_release(call)
            return False
        if response.code >= 300:
            if response.code == ReturnCode.ALREADY_ON_HOOK:
                caller.line.hook = "on"
                self._release(call, on_hook)
            else:
                self._release(call, ReleaseCause.GATEWAY_ERROR)
            return False
        return True

    def _caller_ringing(self, response: Response, caller: Leg) -> None:
        if not self._caller_modified(response, caller, ReleaseCause.ABANDONED):
            return
        call = caller.call
        self._input(caller.line, LineInput.ALERTING)
        if call.pending_connect:
            self._connect(call)

    def _setup_timed_out(self, failure: Failure, leg: Leg) -> None:
        """A setup command got no answer: whatever it created must go."""
        if failure.trap(TransactionTimeout, TransactionAborted) is TransactionAborted:
            return  # shutting down
        call = leg.call
        if leg.creating:
            leg.creating = False
            # The CRCX may have been executed and its answer lost: the audit
            # will find the connection and delete it.
            self._mark_stale(leg.line)
        if call.modifying and leg is call.caller:
            call.modifying = False
        self.counters["setup_timeouts"] += 1
        self._release(call, ReleaseCause.GATEWAY_TIMEOUT)
        # The call may already have been releasing (its gateway declared
        # down) and waiting for this command: go on with it.
        self._continue_release(call)

    def _no_answer(self, call: Call) -> None:
        call.no_answer = None
        if call.state is CallState.ALERTING or (call.originated and call.state is CallState.SETUP):
            self._release(call, ReleaseCause.NO_ANSWER)

    def _do_answer(self, line: Line) -> None:
        """The callee went off hook: talk."""
        leg = line.leg
        if leg is None:
            return
        call = leg.call
        # Watch the callee for its hang-up (the ringing stopped on the event).
        request_id = self._request_id(line)
        self._send(line.gateway, cmd.rqnt(self._txid(), line.name, request_id, cmd.HANG_UP_EVENTS), call)\
            .addCallbacks(self._armed, self._command_failed, (line,), None, (line,))
        caller = call.caller
        if call.modifying or leg.creating or caller is None or caller.remote_sdp is None:
            # Answered before our MDCX (ringback) ran, or even before the
            # callee's CRCX answer arrived: connect when they have.
            call.pending_connect = True
        else:
            self._connect(call)

    def _connect(self, call: Call, sdp: Optional[SessionDescription] = None) -> None:
        call.pending_connect = False
        caller = call.caller
        assert caller is not None and caller.connection_id is not None
        call.modifying = True
        request_id = self._request_id(caller.line)
        caller.mode = ConnectionMode.SENDRECV
        command = cmd.mdcx(
            self._txid(), caller.line.name, call.call_id, caller.connection_id,
            ConnectionMode.SENDRECV, sdp=sdp, request_id=request_id, events=cmd.HANG_UP_EVENTS,
        )
        if call.no_answer is not None:
            call.no_answer.cancel()
        call.no_answer = None
        call.answered = self._clock.seconds()
        previous = call.state
        call.state = CallState.CONNECTED
        if self._subscribers or self._observers:
            self._publish(CallStateChanged(self._call_view(call), previous))
        self._send(caller.line.gateway, command, call).addCallbacks(
            self._connected, self._setup_timed_out, (caller,), None, (caller,)
        )

    def _connected(self, response: Response, caller: Leg) -> None:
        if not self._caller_modified(response, caller, ReleaseCause.NORMAL):
            return
        if caller.line.state is LineState.ROUTING:
            self._input(caller.line, LineInput.ALERTING)
        self._input(caller.line, LineInput.ANSWERED)

    # -- release -----------------------------------------------------------

    def _do_release(self, line: Line, cause: Optional[ReleaseCause] = None) -> None:
        leg = line.leg
        if leg is None:
            # Nothing to release (a late event): bring the line back.
            self._finish_line(line)
            return
        call = leg.call
        if cause is None:
            if call.state is CallState.CONNECTED:
                cause = ReleaseCause.NORMAL
            elif leg.originating:
                cause = ReleaseCause.ABANDONED
            else:
                cause = ReleaseCause.NO_ANSWER
        self._release(call, cause)

    def _release(self, call: Call, cause: ReleaseCause) -> None:
        """End a call: delete every connection it holds, re-arm both lines."""
        if call.state in (CallState.RELEASING, CallState.ENDED):
            return
        previous = call.state
        call.state = CallState.RELEASING
        call.cause = cause
        if call.no_answer is not None:
            call.no_answer.cancel()
        call.no_answer = None
        if call.originate_deferred is not None:
            d, call.originate_deferred = call.originate_deferred, None
            d.errback(CallControlError(f"call {call.call_id} ended: {cause.value}"))
        if self._subscribers or self._observers:
            self._publish(CallStateChanged(self._call_view(call), previous))
        for leg in call.legs():
            line = leg.line
            if line.state not in (LineState.RELEASING, LineState.OUT_OF_SERVICE, LineState.UNKNOWN):
                self._input(line, LineInput.FAR_END_RELEASED)
        self._continue_release(call)

    def _continue_release(self, call: Call) -> None:
        """Delete what can be deleted now; the rest when its command returns."""
        if call.modifying:
            return  # an MDCX is in flight on the caller's connection: wait for it
        for leg in call.legs():
            if leg.released or leg.deleting or leg.creating:
                continue
            self._delete_leg(leg)

    def _rearm_request(self, line: Line, cause: Optional[ReleaseCause]) -> tuple[tuple, tuple]:  # type: ignore[type-arg]
        """
        The request a DLCX carries to re-arm its line: watch for off-hook, or,
        for a line left off hook, for the hang-up with busy tone (the other
        party hung up, or was busy) or reorder tone (the call failed).
        """
        if line.hook == "off":
            if cause in (ReleaseCause.NORMAL, ReleaseCause.BUSY, ReleaseCause.ADMIN, None):
                return cmd.HANG_UP_EVENTS, cmd.BUSY_TONE
            return cmd.HANG_UP_EVENTS, cmd.REORDER_TONE
        return self._idle_events, cmd.NO_SIGNALS

    def _delete_leg(self, leg: Leg) -> None:
        line = leg.line
        gateway = line.gateway
        call = leg.call
        if leg.connection_id is None:
            leg.released = True
            self._leg_released(leg)
            return
        if gateway.state is GatewayState.DOWN:
            # It cannot hear us: delete when it comes back (the audit does).
            self._mark_stale(line)
            line.connections.pop(leg.connection_id, None)
            self._leg_released(leg)
            return
        leg.deleting = True
        events, signals = self._rearm_request(line, call.cause)
        leg.rearm = (events, signals)
        request_id = self._request_id(line)
        embedded = events is cmd.DIALLING_ON_OFF_HOOK
        command = cmd.dlcx(
            self._txid(), line.name, call.call_id, leg.connection_id, request_id, events, signals,
            line.digit_map if embedded else None,
        )
        line.dialling_armed = embedded
        self._send(gateway, command, call).addCallbacks(
            self._deleted, self._delete_timed_out, (leg,), None, (leg,)
        )

    def _deleted(self, response: Response, leg: Leg) -> None:
        leg.deleting = False
        line = leg.line
        code = response.code
        if code in (ReturnCode.ALREADY_ON_HOOK, ReturnCode.ALREADY_OFF_HOOK):
            # The hook changed under our encapsulated request, which failed the
            # whole DLCX (they share fate): retry with the right request.
            line.hook = "on" if code == ReturnCode.ALREADY_ON_HOOK else "off"
            self._delete_leg(leg)
            return
        if response.is_success or code == ReturnCode.INCORRECT_CONNECTION_ID:
            stats = response.params.get(P.CONNECTION_PARAMETERS)
            if stats is not None and hasattr(stats, "values"):
                leg.stats = dict(stats.values)
            if leg.connection_id is not None:
                line.connections.pop(leg.connection_id, None)
        else:
            self.log.warn(
                "DLCX on {line} failed: {code} {comment}",
                line=line.name, code=int(code), comment=response.comment,
            )
            if leg.connection_id is not None:
                self._mark_stale(line)
                line.connections.pop(leg.connection_id, None)
        leg.released = True
        self._leg_released(leg, rearmed=response.is_success and response.code != 515)

    def _delete_timed_out(self, failure: Failure, leg: Leg) -> None:
        if failure.trap(TransactionTimeout, TransactionAborted) is TransactionAborted:
            return  # shutting down
        leg.deleting = False
        line = leg.line
        if leg.connection_id is not None:
            self._mark_stale(line)
            line.connections.pop(leg.connection_id, None)
        leg.released = True
        self._leg_released(leg, rearmed=False)

    def _mark_stale(self, line: Line) -> None:
        """
        The gateway may hold a connection of this line that we could not
        delete: audit the line now if its gateway answers, or when it
        comes back (every line of a returning gateway is audited).
        """
        line.needs_audit = True
        self.counters["lines_marked_stale"] += 1
        if line.gateway.state is GatewayState.UP and line not in line.gateway.audit_queue:
            self._clock.callLater(0, self._do_audit, line)

    def _leg_released(self, leg: Leg, rearmed: bool = False) -> None:
        leg.released = True
        line = leg.line
        if line.leg is leg:
            line.leg = None
            if line.state is LineState.RELEASING:
                if rearmed and leg.rearm is not None:
                    # The state follows the request the DLCX carried; if the
                    # hook changed since, the gateway has notified it (or
                    # will), so act on it now.
                    events, signals = leg.rearm
                    if events is self._idle_events:
                        self._input(line, LineInput.RELEASED_ON_HOOK)
                        if line.hook == "off":
                            self._input(line, LineInput.OFF_HOOK)
                    else:
                        self._input(line, LineInput.RELEASED_REORDER if signals is cmd.REORDER_TONE
                                    else LineInput.RELEASED_OFF_HOOK)
                        if line.hook == "on":
                            self._input(line, LineInput.ON_HOOK)
                else:
                    self._finish_line(line, leg.call.cause, self._glare(leg))
            elif line.state in (LineState.RINGING, LineState.ROUTING, LineState.RINGBACK,
                                LineState.CONNECTED, LineState.DIAL_TONE):
                self._finish_line(line, leg.call.cause, self._glare(leg))
        call = leg.call
        if all(l.released for l in call.legs()):
            self._end(call)

    @staticmethod
    def _glare(leg: Leg) -> bool:
        """A callee that went off hook by itself before it could be rung."""
        return not leg.originating and leg.call.answered is None and leg.line.hook == "off"

    def _finish_line(
        self, line: Line, cause: Optional[ReleaseCause] = None, callee_glare: bool = False
    ) -> None:
        """
        Bring a line that has no connection left back to idle, or to a tone
        if it is off hook; a callee that was off hook before it could be
        rung gets dial tone (it is placing a call of its own).
        """
        line.leg = None
        gateway = line.gateway
        if gateway.state in (GatewayState.DOWN, GatewayState.UNKNOWN, GatewayState.REGISTERING):
            line.state = LineState.UNKNOWN  # the audit will arm it
            return
        if line.hook == "off" and callee_glare:
            line.state = LineState.IDLE
            self._input(line, LineInput.OFF_HOOK)
            return
        if line.hook == "off":
            events, signals = self._rearm_request(line, cause)
            if signals is cmd.REORDER_TONE:
                line.state = LineState.REORDER
                self._do_reorder_tone(line)
            else:
                line.state = LineState.BUSY
                self._do_busy_tone(line)
        else:
            line.state = LineState.IDLE
            self._do_arm_idle(line)

    def _end(self, call: Call) -> None:
        if call.state is CallState.ENDED:
            return
        call.state = CallState.ENDED
        call.ended = self._clock.seconds()
        self._calls.pop(call.call_id, None)
        ended = self._ended
        if len(ended) == ended.maxlen:
            # The call about to drop off the list of ended calls lets go of
            # its legs: each leg points back at its call, and that cycle
            # kept every finished call for the garbage collector's passes
            # (about 16,000 objects per full pass at 300 calls/s).
            gone = ended[0]
            gone.caller = gone.callee = None
        ended.append(call)
        cause = call.cause or ReleaseCause.NORMAL
        self.outcomes[cause.value] += 1
        self.counters["calls_ended"] += 1
        if self._observers or self._subscribers:
            record = self._record(call)
            self._publish(CallEnded(self._call_view(call), record))
        for d in call.ended_deferreds:
            d.callback(None)
        call.ended_deferreds = []

    def _record(self, call: Call) -> CallRecord:
        caller, callee = call.caller, call.callee
        assert caller is not None and call.ended is not None
        return CallRecord(
            call_id=call.call_id,
            caller=caller.line.number or str(caller.line.name),
            callee=(callee.line.number or str(callee.line.name)) if callee else call.dialled or None,
            caller_endpoint=str(caller.line.name),
            callee_endpoint=str(callee.line.name) if callee else None,
            caller_connection=caller.connection_id,
            callee_connection=callee.connection_id if callee else None,
            codec=_codec(call),
            start=call.started,
            answer=call.answered,
            end=call.ended,
            cause=call.cause or ReleaseCause.NORMAL,
            caller_stats=dict(caller.stats),
            callee_stats=dict(callee.stats) if callee else {},
        )

    def _record_failed_attempt(
        self, line: Line, dialled: str, cause: ReleaseCause, target: Optional[Line] = None
    ) -> None:
        """A call that never got a connection still gets its CDR."""
        call = self._new_call(dialled)
        call.caller = Leg(call, line, True)
        call.caller.released = True
        if target is not None:
            call.callee = Leg(call, target, False)
            call.callee.released = True
        call.cause = cause
        call.state = CallState.RELEASING
        self._end(call)

    # -- RSIP, gateway-initiated DLCX, audits --------------------------------

    def _restart_in_progress(self, gateway: Gateway, command: Command) -> Response:
        method = command.params.get(P.RESTART_METHOD)
        if not isinstance(method, RestartMethod):
            raise RemoteProtocolError(518, f"unsupported restart method {method}")
        delay = command.params.get(P.RESTART_DELAY, 0)
        now = self._clock.seconds()
        gateway.last_rsip = method.value
        gateway.last_rsip_at = now
        local = command.endpoint.rpartition("@")[0].lower()
        if "*" in local:
            lines = [l for l in gateway.lines.values() if command.endpoint.matches(str(l.name))]
        else:
            line = gateway.lines.get(local)
            if line is None:
                raise RemoteProtocolError(500, "endpoint unknown")
            lines = [line]
        self.counters["rsip_" + method.value] += 1
        self.log.info(
            "{gateway}: RSIP {method} for {count} endpoint(s), delay {delay}",
            gateway=gateway.name, method=method.value, count=len(lines), delay=delay,
        )
        if method is RestartMethod.GRACEFUL:
            self._set_gateway_state(gateway, GatewayState.DRAINING)
        elif method is RestartMethod.CANCEL_GRACEFUL:
            if gateway.state is GatewayState.DRAINING:
                self._set_gateway_state(gateway, GatewayState.UP)
        elif method is RestartMethod.FORCED:
            for line in lines:
                self._lost(line)
                line.state = LineState.OUT_OF_SERVICE
            if len(lines) == len(gateway.lines):
                self._set_gateway_state(gateway, GatewayState.DOWN)
        else:  # restart, disconnected
            self._set_gateway_state(gateway, GatewayState.REGISTERING)
            if method is RestartMethod.RESTART:
                for line in lines:
                    self._lost(line)  # the gateway's connections are gone
            # Audit after our 200 is on its way (a gateway may answer 405 to
            # commands until its restart procedure has completed, §4.4.6).
            if gateway.settings.dynamic and "*" in local:
                self._clock.callLater(delay, self._discover, gateway)
            else:
                self._clock.callLater(delay, self._audit_lines, gateway, lines)
        return Response(ReturnCode.OK, command.transaction_id, "OK")

    def _lost(self, line: Line) -> None:
        """The gateway lost this line's state: end its call, forget its connections."""
        line.connections.clear()
        line.state = LineState.UNKNOWN  # first: releasing the call must not arm it
        leg = line.leg
        if leg is not None:
            leg.connection_id = None  # nothing to delete on this side
            leg.creating = False
            self._release(leg.call, ReleaseCause.GATEWAY_RESTART)
            if line.leg is leg:
                leg.released = True
                self._leg_released(leg)
        line.state = LineState.UNKNOWN
        line.hook = "unknown"

    def _gateway_deleted(self, gateway: Gateway, command: Command) -> Response:
        """A gateway deleted a connection itself (line failure, §2.3.8)."""
        line = self._line(gateway, command.endpoint)
        connection_id = command.connection_id
        self.counters["gateway_dlcx"] += 1
        if connection_id is not None:
            line.connections.pop(connection_id, None)
        leg = line.leg
        if leg is not None and (connection_id is None or leg.connection_id == connection_id):
            stats = command.params.get(P.CONNECTION_PARAMETERS)
            if stats is not None and hasattr(stats, "values"):
                leg.stats = dict(stats.values)
            leg.connection_id = None
            self._release(leg.call, ReleaseCause.GATEWAY_ERROR)
        return Response(ReturnCode.OK, command.transaction_id, "OK")

    def _audit_lines(self, gateway: Gateway, lines: Iterable[Line]) -> None:
        queued = set(gateway.audit_queue)  # a gateway back twice must not get two rounds
        for line in lines:
            if line.leg is None:
                line.state = LineState.UNKNOWN
            if line not in queued:
                gateway.audit_queue.append(line)
        self._pump_audits(gateway)

    def _do_audit(self, line: Line) -> None:
        if line in line.gateway.audit_queue:
            return
        line.gateway.audit_queue.append(line)
        self._pump_audits(line.gateway)

    def _pump_audits(self, gateway: Gateway) -> None:
        """
        Audit at most audit_concurrency lines of a gateway at a time, and at
        most 8 x audit_concurrency across the switch, so that a storm of
        restarting gateways is paced too; a gateway waiting for the
        switch-wide budget is resumed when an audit anywhere completes.
        """
        limit = self._switch.audit_concurrency
        while gateway.audit_queue and gateway.audits_in_flight < limit:
            if self._audits_in_flight >= 8 * limit:
                self._audit_waiting[gateway] = None
                break
            line = gateway.audit_queue.popleft()
            gateway.audits_in_flight += 1
            self._audits_in_flight += 1
            self._send(gateway, cmd.auep(self._txid(), line.name)).addCallbacks(
                self._audited, self._audit_timed_out, (line,), None, (line,)
            ).addBoth(self._audit_done, gateway)
        if not gateway.audit_queue and not gateway.audits_in_flight:
            if gateway.state is GatewayState.REGISTERING:
                self._set_gateway_state(gateway, GatewayState.UP)

    def _audit_done(self, result: Any, gateway: Gateway) -> None:
        gateway.audits_in_flight -= 1
        self._audits_in_flight -= 1
        self._pump_audits(gateway)
        while self._audit_waiting and self._audits_in_flight < 8 * self._switch.audit_concurrency:
            waiting = next(iter(self._audit_waiting))
            del self._audit_waiting[waiting]
            self._pump_audits(waiting)
        if isinstance(result, Failure):
            self.log.failure("audit failed on {gateway}", result, gateway=gateway.name)

    def _audited(self, response: Response, line: Line) -> Optional[Deferred[Any]]:
        self.counters["audits"] += 1
        if response.code >= 300:
            self._line_error(line, response)
            if response.code in (ReturnCode.UNKNOWN_ENDPOINT, ReturnCode.ENDPOINT_NOT_READY):
                line.state = LineState.OUT_OF_SERVICE
            return None
        states = response.params.get(P.EVENT_STATES, ())
        names = {event.name for event in states}
        if "L/hd" in names:
            line.hook = "off"
        elif "L/hu" in names:
            line.hook = "on"
        on_gateway = set(response.connection_ids)
        leg = line.leg
        ours = {leg.connection_id} if leg is not None and leg.connection_id else set()
        if leg is not None and leg.connection_id and leg.connection_id not in on_gateway:
            # We thought a call was up; the gateway has no such connection.
            leg.connection_id = None
            self._release(leg.call, ReleaseCause.GATEWAY_RESTART)
        gateway = line.gateway
        if leg is not None and leg.creating:
            # A CRCX is in flight here: its connection would look unknown.
            # Keep the line marked; the next keepalive audits it again.
            self._arm_after_audit(line)
            return None
        line.needs_audit = False
        stale = on_gateway - ours
        if stale:
            self.counters["stale_connections"] += len(stale)
            self.log.info(
                "{line}: deleting {count} stale connection(s)", line=line.name, count=len(stale)
            )
            # One DLCX per connection, never the whole endpoint: a call may
            # start on the line while these are in flight.
            for connection_id in sorted(stale):
                self._send(gateway, cmd.dlcx(self._txid(), line.name, connection_id=connection_id))\
                    .addErrback(self._command_failed, line)
        self._arm_after_audit(line)
        return None

    def _arm_after_audit(self, line: Line) -> None:
        line.connections = {k: v for k, v in line.connections.items()
                            if line.leg is not None and line.leg.connection_id == k}
        if line.leg is not None or line.state is not LineState.UNKNOWN:
            return
        if line.hook == "off":
            self._input(line, LineInput.OFF_HOOK)
        else:
            self._input(line, LineInput.ON_HOOK)

    def _audit_timed_out(self, failure: Failure, line: Line) -> None:
        if failure.trap(TransactionTimeout, TransactionAborted) is TransactionAborted:
            return  # shutting down
        self.counters["audit_timeouts"] += 1

    # -- gateway liveness ------------------------------------------------

    def _schedule_keepalive(self, gateway: Gateway, first: bool = False) -> None:
        if gateway.keepalive_interval <= 0:
            return
        gateway.keepalive = self._clock.callLater(
            gateway.keepalive_interval, self._keepalive, gateway
        )

    def _keepalive(self, gateway: Gateway) -> None:
        gateway.keepalive = None
        if gateway.state is GatewayState.UP and not gateway.audit_queue:
            # Self-healing: a line whose audit failed (timed out), or that may
            # hold a connection we could not delete, is audited again.
            stuck = [l for l in gateway.lines.values()
                     if (l.state is LineState.UNKNOWN and l.leg is None) or l.needs_audit]
            if stuck:
                self.counters["reaudits"] += len(stuck)
                self._audit_lines(gateway, stuck)
        now = self._clock.seconds()
        recent = gateway.last_seen is not None and now - gateway.last_seen < gateway.keepalive_interval
        if recent and gateway.state is GatewayState.UP:
            self._schedule_keepalive(gateway)
            return
        if not gateway.lines:
            return
        first = next(iter(gateway.lines.values()))
        self.counters["keepalives"] += 1
        d = self._send(gateway, cmd.auep(self._txid(), first.name, cmd.KEEPALIVE_INFO))
        d.addCallbacks(self._keepalive_answered, self._keepalive_failed, (gateway,), None, (gateway,))

    def _keepalive_answered(self, response: Response, gateway: Gateway) -> None:
        gateway.last_seen = self._clock.seconds()
        if gateway.state in (GatewayState.DOWN, GatewayState.UNKNOWN) and gateway.in_service:
            # Back (or never registered): resynchronise every line.
            self._set_gateway_state(gateway, GatewayState.REGISTERING)
            self._audit_lines(gateway, list(gateway.lines.values()))
        self._schedule_keepalive(gateway)

    def _keepalive_failed(self, failure: Failure, gateway: Gateway) -> None:
        if failure.trap(TransactionTimeout, TransactionAborted) is TransactionAborted:
            return  # shutting down
        self.counters["keepalive_timeouts"] += 1
        self._gateway_down(gateway)
        self._schedule_keepalive(gateway)

    def peer_state_changed(self, address: tuple[str, int], state: PeerState) -> None:
        gateway = self._by_address.get(tuple(address))
        if gateway is None:
            return
        if state is PeerState.DISCONNECTED:
            self._gateway_down(gateway)
        elif state is PeerState.REACHABLE and gateway.state is GatewayState.DOWN:
            self._set_gateway_state(gateway, GatewayState.REGISTERING)
            self._audit_lines(gateway, list(gateway.lines.values()))

    def _gateway_down(self, gateway: Gateway) -> None:
        if gateway.state is GatewayState.DOWN:
            return
        self.log.warn("{gateway} is down", gateway=gateway.name)
        self._set_gateway_state(gateway, GatewayState.DOWN)
        for line in gateway.lines.values():
            leg = line.leg
            if leg is not None:
                self._release(leg.call, ReleaseCause.GATEWAY_RESTART)

    def _set_gateway_state(self, gateway: Gateway, state: GatewayState) -> None:
        previous = gateway.state
        if previous is state:
            return
        gateway.state = state
        if self._subscribers or self._observers:
            self._publish(GatewayStateChanged(self._gateway_view(gateway), previous))

    # -- observers ---------------------------------------------------------

    def _publish(self, event: Any) -> None:
        """Queue an event; observers run on a later turn, after the change."""
        self._events.append(event)
        if self._events_call is None:
            self._events_call = self._clock.callLater(0, self._deliver_events)

    def _deliver_events(self) -> None:
        self._events_call = None
        events, self._events = self._events, []
        for event in events:
            if type(event) is not EndpointStateChanged:
                for observer in self._observers:
                    maybeDeferred(observer.call_event, event).addErrback(
                        self._observer_failed, observer
                    )
            for subscriber in list(self._subscribers):
                try:
                    subscriber(event)
                except Exception:
                    self.log.failure("subscriber failed")

    def _observer_failed(self, failure: Failure, observer: Any) -> None:
        self.counters["observer_failures"] += 1
        self.log.failure(
            "observer {observer} failed", failure, observer=getattr(observer, "name", observer)
        )

    def add_observer(self, observer: ICallObserver) -> None:
        self._observers.append(ICallObserver(observer))

    # -- ICallControl ------------------------------------------------------

    def subscribe(self, observer: Callable[[Any], None]) -> Callable[[], None]:
        self._subscribers.append(observer)

        def unsubscribe() -> None:
            if observer in self._subscribers:
                self._subscribers.remove(observer)

        return unsubscribe

    def _gateway_view(self, gateway: Gateway) -> GatewayView:
        return GatewayView(
            name=gateway.name,
            host=gateway.address[0],
            port=gateway.address[1],
            state=gateway.state,
            in_service=gateway.in_service,
            endpoints=len(gateway.lines),
            active_calls=sum(1 for line in gateway.lines.values() if line.leg is not None),
            last_rsip=gateway.last_rsip,
            last_rsip_at=gateway.last_rsip_at,
            last_seen=gateway.last_seen,
            keepalive_interval=gateway.keepalive_interval,
            profile=getattr(gateway.profile, "name", "default"),
            counters=dict(gateway.counters),
        )

    def _endpoint_view(self, line: Line) -> EndpointView:
        connections = []
        leg = line.leg
        for connection_id, call_id in line.connections.items():
            mine = leg is not None and leg.connection_id == connection_id
            connections.append(ConnectionView(
                connection_id=connection_id,
                call_id=call_id,
                mode=(leg.mode.value if mine and leg.mode else "unknown"),
                local_sdp=str(leg.local_sdp) if mine and leg.local_sdp else None,
                remote_sdp=str(leg.remote_sdp) if mine and leg.remote_sdp else None,
            ))
        return EndpointView(
            name=str(line.name),
            gateway=line.gateway.name,
            state=line.state,
            hook=line.hook,
            in_service=line.in_service and line.gateway.in_service,
            call_id=leg.call.call_id if leg is not None else None,
            connections=tuple(connections),
            number=line.number,
            last_event=line.last_event,
        )

    def _call_view(self, call: Call, ladder: bool = False) -> CallView:
        caller, callee = call.caller, call.callee
        entries: tuple[LadderEntry, ...] = ()
        if ladder and call.ladder is not None:
            entries = tuple(_ladder_entry(*item) for item in call.ladder)
        return CallView(
            call_id=call.call_id,
            state=call.state,
            caller=str(caller.line.name) if caller else "",
            callee=str(callee.line.name) if callee else None,
            dialled=call.dialled,
            started=call.started,
            answered=call.answered,
            ended=call.ended,
            cause=call.cause,
            codec=_codec(call),
            ladder=entries,
            ladder_length=len(call.ladder) if call.ladder is not None else 0,
        )

    def list_gateways(self) -> list[GatewayView]:
        return [self._gateway_view(g) for g in self._gateways.values()]

    def get_gateway(self, name: str) -> Optional[GatewayView]:
        gateway = self._gateways.get(name.lower())
        return self._gateway_view(gateway) if gateway is not None else None

    def list_endpoints(self, gateway: Optional[str] = None) -> list[EndpointView]:
        if gateway is not None:
            record = self._gateways.get(gateway.lower())
            if record is None:
                return []
            return [self._endpoint_view(line) for line in record.lines.values()]
        return [self._endpoint_view(line) for line in self._lines.values()]

    def get_endpoint(self, name: str) -> Optional[EndpointView]:
        line = self._lines.get(name.lower())
        return self._endpoint_view(line) if line is not None else None

    def list_calls(self) -> list[CallView]:
        return [self._call_view(c) for c in list(self._calls.values()) + list(self._ended)]

    def get_call(self, call_id: str) -> Optional[CallView]:
        call = self._calls.get(call_id)
        if call is None:
            for ended in self._ended:
                if ended.call_id == call_id:
                    call = ended
                    break
        return self._call_view(call, ladder=True) if call is not None else None

    def active_calls(self) -> int:
        return len(self._calls)

    def originate(self, a: str, b: str) -> Deferred[str]:
        """
        Click-to-dial: ring C{a} (showing C{b}'s number); when C{a} answers,
        call C{b} as if C{a} had dialled it.
        """
        first = self._lines.get(a.lower())
        second = self._lines.get(b.lower())
        for name, line in ((a, first), (b, second)):
            if line is None:
                return _fail(CallControlError(f"unknown endpoint {name}"))
            if line.state is not LineState.IDLE or not line.gateway.usable or not line.in_service:
                return _fail(CallControlError(f"{name} is busy or out of service ({line.state.value})"))
        assert first is not None and second is not None
        if first is second:
            return _fail(CallControlError("cannot call a line from itself"))
        call = self._new_call(second.number or str(second.name))
        call.originated = True
        call.target = second
        call.caller = Leg(call, first, True)
        first.leg = call.caller
        self._input(first, LineInput.INCOMING)
        d: Deferred[str] = Deferred()
        call.originate_deferred = d
        call.saved_request = (first.request_id, first.dialling_armed)
        request_id = self._request_id(first)
        command = cmd.rqnt(
            self._txid(), first.name, request_id, cmd.OFF_HOOK_EVENTS,
            (cmd.RINGING[0], cmd.caller_id(self._clock.seconds(), second.number, "mgcpswitch")),
        )
        self._send(first.gateway, command, call).addCallbacks(
            self._originate_ringing, self._setup_timed_out, (call,), None, (call.caller,)
        )
        return d

    def _originate_ringing(self, response: Response, call: Call) -> None:
        d, call.originate_deferred = call.originate_deferred, None
        caller = call.caller
        if response.code == ReturnCode.ALREADY_OFF_HOOK and caller is not None \
                and call.state is CallState.SETUP and call.saved_request is not None \
                and call.saved_request[1]:
            # An idle request with dial tone embedded: the line is dialling
            # on its own (we could not know).  Our ring request failed as a
            # whole, so the gateway still runs the old one: leave the line
            # to it, as if we had never rung.
            line = caller.line
            line.request_id, line.dialling_armed = call.saved_request
            line.leg = None
            line.state = LineState.IDLE
            caller.released = True
            call.cause = ReleaseCause.BUSY
            call.state = CallState.RELEASING
            if d is not None:
                d.errback(CallControlError(f"{line.name} is busy (off hook)"))
            self._end(call)
            return
        if response.code == ReturnCode.ALREADY_OFF_HOOK and caller is not None \
                and call.state is CallState.SETUP:
            # The user lifted the handset just as we rang it: that is the
            # answer (its NTFY may have arrived already, or may follow).
            caller.line.hook = "off"
            if caller.line.state is LineState.RINGING:
                self._input(caller.line, LineInput.PICKED_UP)
            if d is not None:
                d.callback(call.call_id)
            return
        if response.code >= 300:
            if d is not None:
                d.errback(CallControlError(f"cannot ring: {response.code} {response.comment}"))
            self._release(call, ReleaseCause.GATEWAY_ERROR)
            return
        if call.state is CallState.SETUP:
            call.no_answer = self._no_answer_timeouts.add(call)
        if d is not None:
            d.callback(call.call_id)

    def _do_call_far_end(self, line: Line) -> None:
        """The first party of an originated call answered: now call the second."""
        leg = line.leg
        if leg is None:
            return
        call = leg.call
        if call.no_answer is not None:
            call.no_answer.cancel()
        call.no_answer = None
        target = call.target
        assert target is not None
        if target.state is not LineState.IDLE or not target.gateway.usable:
            self._release(call, ReleaseCause.BUSY)
            return
        self._setup_callee_and_caller(call, target)

    def hangup(self, call_id: str) -> Deferred[None]:
        call = self._calls.get(call_id)
        if call is None:
            return _fail(CallControlError(f"no call {call_id}"))
        d: Deferred[None] = Deferred()
        call.ended_deferreds.append(d)
        self._release(call, ReleaseCause.ADMIN)
        return d

    def audit_endpoint(self, name: str) -> Deferred[EndpointView]:
        line = self._lines.get(name.lower())
        if line is None:
            return _fail(CallControlError(f"unknown endpoint {name}"))

        def audited(response: Response) -> EndpointView:
            if response.code >= 300:
                raise CallControlError(f"audit of {name}: {response.code} {response.comment}")
            states = {event.name for event in response.params.get(P.EVENT_STATES, ())}
            if "L/hd" in states:
                line.hook = "off"
            elif "L/hu" in states:
                line.hook = "on"
            return self._endpoint_view(line)

        return self._send(line.gateway, cmd.auep(self._txid(), line.name)).addCallback(audited)

    def set_gateway_in_service(self, name: str, in_service: bool) -> Deferred[GatewayView]:
        gateway = self._gateways.get(name.lower())
        if gateway is None:
            return _fail(CallControlError(f"unknown gateway {name}"))
        gateway.in_service = in_service
        if not in_service:
            self._set_gateway_state(gateway, GatewayState.OUT_OF_SERVICE)
        elif gateway.state is GatewayState.OUT_OF_SERVICE:
            self._set_gateway_state(gateway, GatewayState.REGISTERING)
            self._audit_lines(gateway, list(gateway.lines.values()))
        return succeed(self._gateway_view(gateway))

    def transaction_stats(self) -> dict[str, Any]:
        stats = self._sender.snapshot() if self._sender is not None else {}
        stats["call_control"] = dict(self.counters)
        return stats  # type: ignore[no-any-return]

    def call_outcomes(self) -> dict[str, int]:
        return dict(self.outcomes)

    # For tests and the admin: internal lookups.
    def line(self, name: str) -> Optional[Line]:
        return self._lines.get(name.lower())

    def gateway(self, name: str) -> Optional[Gateway]:
        return self._gateways.get(name.lower())

    def calls(self) -> list[Call]:
        return list(self._calls.values())


_NO_PARAMS = Parameters()


def _codec(call: Call) -> Optional[str]:
    """
    The call's codec: the first the callee's gateway answered with.  Read
    from the SDP only when a view or record needs it (parsing the media
    section on every call showed in profiles).
    """
    callee = call.callee
    sdp = callee.local_sdp if callee is not None else None
    audio = sdp.audio if sdp is not None else None
    codecs = audio.codecs if audio is not None else ()
    return codecs[0] if codecs else None


def _fail(error: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(error)
    return d


def _ladder_entry(time: float, direction: str, gateway: str, message: Any) -> LadderEntry:
    text = encode(message).decode("utf-8", "replace")
    return LadderEntry(time, direction, gateway, text.split("\r\n", 1)[0], text)
