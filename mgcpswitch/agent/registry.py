# -*- test-case-name: tests.test_agent_registry -*-
"""
The registry: gateways and their endpoints, as the call agent knows them.

It owns gateway and endpoint state and nothing about calls: the source
firewall (which addresses may speak for which gateway), RSIP (RFC 3435
§2.3.12, §4.4.6), audits and their pacing (after a restart every line is
audited, at most C{audit_concurrency} at a time per gateway and
L{SWITCH_WIDE} times that across the switch), keepalives (an AUEP to a gateway not heard
from for an interval), and gateways learnt at run time.

A registration storm (every gateway of a neighbourhood back after a power
cut) must not stall the calls of the lines that are up: an RSIP's and an
audit's bookkeeping is done L{SLICE} endpoints a reactor turn, and the
answers to the audits are read a few dozen a turn
(L{mgcpswitch.transport.READ_TURN}), so no turn of registration work is
much longer than a few milliseconds.

What it learns that matters to calls it tells its L{IRegistryListener}
(the coordinator): endpoints whose connections the gateway lost, audits
beginning and their answers, a gateway gone down.  The listener decides
what that means for lines and calls.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, deque
from typing import Any, Callable, Iterable, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..config import GatewaySettings, LineServices, Settings
from ..errors import RemoteProtocolError, TransactionAborted, TransactionTimeout
from ..interfaces import IDialPlan, IGatewayProfile, ITransactionSender
from ..mgcp import (
    DEFAULT_VERSION,
    Command,
    LocalConnectionOptions,
    DigitMap,
    EndpointName,
    ParamCode,
    Response,
    RestartMethod,
    ReturnCode,
    know_endpoint,
)
from ..transaction import PeerState, as_address
from . import commands as cmd
from .gateways import Address, Endpoint, Gateway, IRegistryListener, Outage
from .model import GatewayState, Hook, LineState

__all__ = ["Registry", "in_profile"]

P = ParamCode
#: Seconds after start before a gateway that has not registered (RSIP) is
#: probed and audited: gateways that restart with the agent announce
#: themselves first, and one that stayed up is resynchronised in seconds.
STARTUP_PROBE = 1.0
#: Endpoints whose bookkeeping (an RSIP's lines reset and calls ended, an
#: audit's lines reset and queued) one reactor turn does; the rest waits
#: for the turns after.  Why: a wildcard RSIP names every line of its
#: gateway, and a power cut brings every gateway back at once: ten RSIPs
#: of 1,000 lines read in one turn kept the reactor 33 ms (in process, an
#: idle machine; more on a busy one) from anything else, the overload
#: guard's probe included.  A slice of 100 idle lines is about a third of
#: a millisecond.
SLICE = 100
#: Audits in flight across the switch, at most, in C{audit_concurrency}s.
#: Why four: each audit's answer brings an arming RQNT's, so 4 x 16 audits
#: leave at most 128 answers on their way to the agent, within the ~166
#: small datagrams its socket holds by default (C{receive_buffer}) while it
#: works through a turn.  At eight, 256 could be, and a storm lost some:
#: 13 datagrams at 10,000 lines, 117 at 100,000, 12,700-15,400 commands
#: repeated; at four none was lost, 300-360 and 5,600 repeated, and steady
#: state came as soon, within the runs' spread (docs/PERFORMANCE.md, "RSIP
#: storm").
SWITCH_WIDE = 4


class _Batch:
    """Bookkeeping for endpoints of one gateway, done a slice a turn (L{Registry._later})."""

    __slots__ = ("gateway", "endpoints", "done", "each", "then")

    def __init__(self, gateway: Gateway, endpoints: list[Endpoint], each: Callable[[list[Endpoint]], None],
                 then: Optional[Callable[[], None]]) -> None:
        self.gateway = gateway
        self.endpoints = endpoints
        self.done = 0
        self.each = each
        self.then = then


class Registry:
    """
    Gateways and endpoints.  Commands go out through C{sender}; state
    changes of gateways are reported to C{changed(gateway, previous)}.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        settings: Settings,
        dial_plan: IDialPlan,
        profiles: dict[str, IGatewayProfile],
        sender: ITransactionSender,
        listener: IRegistryListener,
        counters: Counter[str],
        changed: Callable[[Gateway, GatewayState], None],
    ) -> None:
        self._clock = clock
        self._switch = settings.switch
        self._dial_plan = dial_plan
        self._sender = sender
        self._listener = listener
        self._changed = changed
        self.counters = counters
        self._default_profile = profiles.get("default")
        self.gateways: dict[str, Gateway] = {}
        self.endpoints: dict[str, Endpoint] = {}  # by full name, lower case
        self.numbers: dict[str, Endpoint] = {}
        self._by_address: dict[Address, Gateway] = {}
        self._audits_in_flight = 0  # across every gateway
        self._registering: dict[Gateway, None] = {}  # gateways resynchronising their lines (REGISTERING)
        self._audit_waiting: dict[Gateway, None] = {}  # gateways held by the switch-wide cap
        self._batches: deque[_Batch] = deque()  # bookkeeping still to do, oldest first
        self._turn: Optional[IDelayedCall] = None  # the next turn of bookkeeping
        self._startup: Optional[IDelayedCall] = None
        self._lco: dict[tuple[tuple[str, ...], int], LocalConnectionOptions] = {}
        self._lines = settings.lines
        self._line_defaults = settings.services.lines
        self.ready = False  # audits wait for start (the coordinator has its calls back)
        for gateway_settings in settings.gateways:
            self.add_gateway(gateway_settings, profiles.get(gateway_settings.profile))

    # -- the directory ---------------------------------------------------

    def add_gateway(self, settings: GatewaySettings, profile: Optional[IGatewayProfile] = None) -> Gateway:
        interval = settings.keepalive_interval
        if interval is None:
            interval = self._switch.keepalive_interval
        gateway = Gateway(settings, profile, interval)
        # The codecs to ask of it: the switch's, in its order, that its
        # profile says it has (or, with none in common, the profile's own).
        switch = self._switch
        able = tuple(getattr(profile, "codecs", ()) or switch.codecs)
        codecs = tuple(c for c in switch.codecs if c.upper() in {a.upper() for a in able}) or able
        gateway.options = self._options(codecs, switch.packetization)
        if {c.upper() for c in codecs} != {c.upper() for c in switch.codecs}:
            gateway.codecs = frozenset(c.upper() for c in codecs)
        self.gateways[gateway.key] = gateway
        self._by_address[gateway.address] = gateway
        own_map = DigitMap.parse(settings.digit_map) if settings.digit_map else None
        for i, local in enumerate(settings.endpoints):
            name = EndpointName(settings.endpoint_name(local))
            number = settings.numbers[i] if settings.numbers else None
            self._add_endpoint(gateway, name, number, own_map or self._dial_plan.digit_map(name))
        if profile is not None and not profile.response_acks:
            set_options = getattr(self._sender, "set_peer_options", None)
            if set_options is not None:
                set_options(gateway.address, response_acks=False)
        return gateway

    def _options(self, codecs: tuple[str, ...], packetization: int) -> LocalConnectionOptions:
        """One LCO value per distinct (codecs, packetization): the codec memoises its text by identity."""
        key = (codecs, packetization)
        options = self._lco.get(key)
        if options is None:
            options = self._lco[key] = LocalConnectionOptions.create(packetization=packetization, codecs=codecs)
        return options

    def _add_endpoint(self, gateway: Gateway, name: EndpointName, number: Optional[str],
                      digit_map: DigitMap) -> Endpoint:
        services = self._lines.get(name.lower(), self._line_defaults)
        endpoint = Endpoint(name, gateway, number, digit_map, services)
        know_endpoint(name)  # the line's commands decode to this very name
        gateway.endpoints[endpoint.key.partition("@")[0]] = endpoint
        self.endpoints[endpoint.key] = endpoint
        if number:
            self.numbers[number] = endpoint
        return endpoint

    def gateway(self, name: str) -> Optional[Gateway]:
        return self.gateways.get(name.lower())

    def endpoint(self, name: str) -> Optional[Endpoint]:
        return self.endpoints.get(name.lower())

    def accept_source(self, address: Address) -> bool:
        """
        The firewall to known gateways: whether a datagram from C{address}
        may be processed at all.  Unknown sources are dropped and counted
        (unless dynamic gateways are allowed).
        """
        if tuple(address) in self._by_address or self._switch.dynamic_gateways:
            return True
        for gateway in self.gateways.values():
            if gateway.accepts(address):
                return True
        self.counters["dropped_unknown_source"] += 1
        return False

    def sender_of(self, command: Command, source: Address) -> Gateway:
        """
        The gateway a command from C{source} speaks for, or a
        L{RemoteProtocolError} (500) when it may not speak for it.
        """
        domain = command.endpoint.rpartition("@")[2]
        gateway = self.gateways.get(domain.lower())
        if gateway is None:
            if not self._switch.dynamic_gateways:
                self.counters["refused_unknown_gateway"] += 1
                raise RemoteProtocolError(500, "unknown gateway")
            gateway = self._learn_gateway(domain, source)
        if source != gateway.address and not gateway.accepts(source):  # its own address: at once
            self.counters["refused_wrong_gateway"] += 1
            self.log.warn(
                "refused {verb} for {endpoint} from {source}: not {gateway}'s address",
                verb=str(command.verb), endpoint=command.endpoint, source=source, gateway=gateway.name,
            )
            raise RemoteProtocolError(500, "endpoint unknown from this address")
        gateway.last_seen = self._clock.seconds()
        gateway.counters["commands_received"] += 1
        return gateway

    def endpoint_of(self, gateway: Gateway, name: EndpointName) -> Endpoint:
        """The endpoint a command names (a dynamic gateway's is learnt), or 500."""
        endpoint = gateway.endpoints.get(name.rpartition("@")[0].lower())
        if endpoint is None:
            if gateway.settings.dynamic and not name.is_wildcard:
                return self._add_endpoint(gateway, EndpointName(name), None, self._dial_plan.digit_map(name))
            raise RemoteProtocolError(500, "endpoint unknown")
        return endpoint

    @staticmethod
    def set_services(endpoint: Endpoint, services: LineServices) -> None:
        """A line's services changed (a star code, the operator, the store at start)."""
        endpoint.services = services
        endpoint.call_events = cmd.HANG_UP_FLASH_EVENTS if services.flash else cmd.HANG_UP_EVENTS

    def set_state(self, gateway: Gateway, state: GatewayState) -> None:
        previous = gateway.state
        if previous is not state:
            gateway.state = state
            if state is GatewayState.REGISTERING:
                self._registering[gateway] = None
            else:
                self._registering.pop(gateway, None)
            self._changed(gateway, previous)

    def send(self, gateway: Gateway, command: Command) -> Deferred[Response]:
        gateway.counters["commands_sent"] += 1
        return self._sender.send_command(in_profile(gateway, command), gateway.address)

    # -- gateways learnt at run time -------------------------------------

    def _learn_gateway(self, domain: str, source: Address) -> Gateway:
        """A gateway not in the configuration ([switch] dynamic_gateways = yes)."""
        self.counters["gateways_learned"] += 1
        self.log.info("learned gateway {domain} at {source}", domain=domain, source=source)
        settings = GatewaySettings(
            name=domain, address=source[0], port=source[1],
            allowed=(ipaddress.ip_network(source[0]),), dynamic=True,
        )
        gateway = self.add_gateway(settings, self._default_profile)
        self._schedule_keepalive(gateway)
        return gateway

    def _discover(self, gateway: Gateway) -> None:
        """Learn a dynamic gateway's endpoints: AUEP *@domain lists them (Z:)."""
        command = cmd.auep(self._sender.allocate_transaction_id(), EndpointName(f"*@{gateway.name}"), ())
        self.send(gateway, command).addCallbacks(
            self._discovered, self._keepalive_failed, (gateway,), errbackArgs=(gateway,)
        )

    def _discovered(self, response: Response, gateway: Gateway) -> None:
        for name in response.params.get(P.SPECIFIC_ENDPOINT_ID, ()):
            if name.rpartition("@")[0].lower() not in gateway.endpoints and not name.is_wildcard:
                self._add_endpoint(gateway, name, None, self._dial_plan.digit_map(name))
        self.audit(gateway, list(gateway.endpoints.values()))

    # -- RSIP ------------------------------------------------------------

    def restart_in_progress(self, gateway: Gateway, command: Command) -> Response:
        """
        An RSIP (RFC 3435 §2.3.12): what it means for the gateway and its
        endpoints.  C{restart} with a delay: the endpoints are restarting
        (out of service until the delay ends, when the gateway should say
        so again; they are audited then anyway).  C{graceful} with a delay:
        out of service when it ends.  C{disconnected}: RD says how long the
        gateway was cut off, so the audit starts at once.  A gateway served
        by another call agent is redirected there (521 with N:).
        """
        redirect = gateway.settings.redirect
        if redirect is not None:
            self.counters["rsip_redirected"] += 1
            return Response.create(521, command.transaction_id, "Redirected", notified_entity=redirect)
        method = command.params.get(P.RESTART_METHOD)
        if not isinstance(method, RestartMethod):
            raise RemoteProtocolError(518, f"unsupported restart method {method}")
        delay = command.params.get(P.RESTART_DELAY, 0)
        gateway.last_rsip = method.value
        gateway.last_rsip_at = self._clock.seconds()
        gateway.version = command.version  # NCS 1.0 gateways are spoken to in NCS
        local = command.endpoint.rpartition("@")[0].lower()
        if local == "*":  # every endpoint of the gateway (§2.1.2): no name to match, 1,000 of them cost 2.5 ms
            endpoints = list(gateway.endpoints.values())
        elif "*" in local:
            endpoints = [e for e in gateway.endpoints.values() if command.endpoint.matches(str(e.name))]
        else:
            endpoint = gateway.endpoints.get(local)
            if endpoint is None:
                raise RemoteProtocolError(500, "endpoint unknown")
            endpoints = [endpoint]
        self.counters["rsip_" + method.value] += 1
        self.log.info(
            "{gateway}: RSIP {method} for {count} endpoint(s), delay {delay}",
            gateway=gateway.name, method=method.value, count=len(endpoints), delay=delay,
        )
        whole = len(endpoints) == len(gateway.endpoints)
        # What is left of an earlier RSIP's bookkeeping is done first, as if
        # it had been done when that RSIP came; then this one, the newer
        # word of the gateway, is handled as before (its timers replace the
        # earlier one's).
        self._finish(gateway)
        if method is not RestartMethod.DISCONNECTED:
            self._cancel(gateway)
        if method is RestartMethod.GRACEFUL:
            self.set_state(gateway, GatewayState.DRAINING)
            if delay:
                gateway.timer = self._clock.callLater(delay, self._drained, gateway, endpoints, whole)
        elif method is RestartMethod.CANCEL_GRACEFUL:
            if gateway.state is GatewayState.DRAINING:
                self.set_state(gateway, GatewayState.UP)
        elif method is RestartMethod.FORCED:
            self._out_of_service(gateway, endpoints, whole)
        else:  # restart, disconnected
            self.set_state(gateway, GatewayState.REGISTERING)
            # Audit after our 200 is on its way (a gateway may answer 405 to
            # commands until its restart procedure has completed, §4.4.6),
            # and after its lines are reset.
            if gateway.settings.dynamic and "*" in local:
                resync: Callable[[], None] = lambda: self._discover(gateway)  # noqa: E731
            else:
                resync = lambda: self.audit(gateway, endpoints)  # noqa: E731
            if method is RestartMethod.RESTART:
                outage = Outage.RESTARTING if delay else Outage.RESTARTED
                due = self._clock.seconds() + delay
                self._later(gateway, endpoints, lambda part: self._listener.endpoints_lost(part, outage),
                            lambda: self._resync_at(gateway, due, resync))
            else:  # RD: how long it was disconnected, not how long to wait
                gateway.timer = self._clock.callLater(0, resync)
        return Response(ReturnCode.OK, command.transaction_id, "OK")

    def _resync_at(self, gateway: Gateway, due: float, resync: Callable[[], None]) -> None:
        """A restart's lines are reset: audit them when its delay ends (from the RSIP's arrival)."""
        gateway.timer = self._clock.callLater(max(0.0, due - self._clock.seconds()), resync)

    def _out_of_service(self, gateway: Gateway, endpoints: list[Endpoint], whole: bool) -> None:
        """
        Endpoints out of service until a later restart (forced, a graceful
        restart's delay ended): the gateway, when they are all of it, is
        down at once, so that no call is routed to a line not yet reset.
        """
        if whole:
            self.set_state(gateway, GatewayState.DOWN)
        self._later(gateway, endpoints, lambda part: self._listener.endpoints_lost(part, Outage.OUT_OF_SERVICE))

    def _drained(self, gateway: Gateway, endpoints: list[Endpoint], whole: bool) -> None:
        """A graceful restart's delay ended: its endpoints are out of service until a restart."""
        gateway.timer = None
        self.counters["graceful_expired"] += 1
        self._out_of_service(gateway, endpoints, whole)

    @staticmethod
    def _cancel(gateway: Gateway) -> None:
        if gateway.timer is not None and gateway.timer.active():
            gateway.timer.cancel()
        gateway.timer = None

    # -- bookkeeping a slice a turn ----------------------------------------

    def resynchronising(self) -> bool:
        """
        Whether lines are being resynchronised (reset, queued or audited):
        work that is not calls', which the overload guard does not count
        as theirs (L{mgcpswitch.agent.overload.OverloadGuard}'s C{background}).

        That is a gateway registering (after its RSIP, or back after it was
        found down: every line audited), or the lines of a gateway not up
        being reset (a forced RSIP, a graceful one's delay run out).  Not
        the few audits of a gateway that is up (a keepalive's self-healing
        audit of stuck lines, a line marked stale): those are the calls'
        own upkeep, and counting them suspended the guard's CPU ceiling for
        their round trip and ten probes after, at every keepalive.
        """
        if self._registering:
            return True
        return any(batch.gateway.state is not GatewayState.UP for batch in self._batches)

    def _later(self, gateway: Gateway, endpoints: list[Endpoint], each: Callable[[list[Endpoint]], None],
               then: Optional[Callable[[], None]] = None) -> None:
        """
        C{each(part)} for every L{SLICE} endpoints of C{endpoints}, one
        part a reactor turn (across gateways, oldest batch first), then
        C{then()}: the reactor reads datagrams and runs timers between, so
        that calls on other lines go on while a gateway registers.
        """
        gateway.batches += 1
        self._batches.append(_Batch(gateway, endpoints, each, then))
        self._next_turn()

    def _next_turn(self) -> None:
        if self._turn is None:
            self._turn = self._clock.callLater(0, self._run_turn)

    def _run_turn(self) -> None:
        """One turn's bookkeeping: at most L{SLICE} endpoints."""
        self._turn = None
        budget, batches = SLICE, self._batches
        while batches and budget > 0:
            batch = batches[0]
            start = batch.done
            batch.done = end = min(len(batch.endpoints), start + budget)
            budget -= end - start
            last = end == len(batch.endpoints)
            if last:
                batches.popleft()
                batch.gateway.batches -= 1
            self._do(batch, batch.endpoints[start:end], last)
        if batches:
            self._next_turn()

    def _do(self, batch: _Batch, part: list[Endpoint], last: bool) -> None:
        try:
            batch.each(part)
            if last and batch.then is not None:
                batch.then()
        except Exception:
            self.log.failure("bookkeeping of {count} endpoint(s) of {gateway}", count=len(part),
                             gateway=batch.gateway.name)

    def _finish(self, gateway: Gateway) -> None:
        """What is left of the gateway's batches, at once and in order."""
        while gateway.batches:
            batch = next(b for b in self._batches if b.gateway is gateway)
            self._batches.remove(batch)
            gateway.batches -= 1
            start, batch.done = batch.done, len(batch.endpoints)
            self._do(batch, batch.endpoints[start:], True)

    # -- audits ----------------------------------------------------------

    def audit(self, gateway: Gateway, endpoints: Iterable[Endpoint], reset: bool = True) -> None:
        """
        Resynchronise endpoints: with C{reset} their lines are unknown until
        their audit answers (the gateway restarted, or was away); without,
        only lines still unknown are armed by it (a gateway found at start,
        whose lines may already have been driven since).
        """
        def each(part: list[Endpoint]) -> None:
            if reset:
                self._listener.auditing(part)
            queue = gateway.audit_queue
            queued = set(queue)  # a gateway back twice must not get two rounds
            queue.extend(e for e in part if e not in queued)
            self._pump(gateway)

        self._later(gateway, list(endpoints), each)

    def recheck(self, endpoint: Endpoint) -> None:
        """
        The gateway may hold a connection of this endpoint that the switch
        could not delete: audit it now if its gateway answers, or when it
        comes back (every endpoint of a returning gateway is audited).
        """
        endpoint.needs_audit = True
        self.counters["lines_marked_stale"] += 1
        gateway = endpoint.gateway
        if gateway.state is GatewayState.UP and endpoint not in gateway.audit_queue:
            self._clock.callLater(0, self._recheck_now, endpoint)

    def _recheck_now(self, endpoint: Endpoint) -> None:
        gateway = endpoint.gateway
        if endpoint not in gateway.audit_queue:
            gateway.audit_queue.append(endpoint)
            self._pump(gateway)

    def _pump(self, gateway: Gateway) -> None:
        """
        Audit at most audit_concurrency endpoints of a gateway at a time,
        and at most L{SWITCH_WIDE} x audit_concurrency across the switch, so that a
        storm of restarting gateways is paced too; a gateway waiting for
        the switch-wide budget is resumed when an audit anywhere completes.
        """
        if not self.ready:
            return
        limit = self._switch.audit_concurrency
        while gateway.audit_queue and gateway.audits_in_flight < limit:
            if self._audits_in_flight >= SWITCH_WIDE * limit:
                self._audit_waiting[gateway] = None
                break
            endpoint = gateway.audit_queue.popleft()
            gateway.audits_in_flight += 1
            self._audits_in_flight += 1
            self.send(gateway, cmd.auep(self._sender.allocate_transaction_id(), endpoint.name))\
                .addCallbacks(self._audited, self._audit_timed_out, (endpoint,), errbackArgs=(endpoint,))\
                .addBoth(self._audit_done, gateway)
        if not gateway.audit_queue and not gateway.audits_in_flight and not gateway.batches:
            if gateway.state is GatewayState.REGISTERING:
                self.set_state(gateway, GatewayState.UP)

    def _audit_done(self, result: Any, gateway: Gateway) -> None:
        """
        An audit ended: the next ones go out now, and gateways held by the
        switch-wide cap go on.  (Answered at once, as on loopback, the
        next answers come in the same read; the transport ends a read
        after L{mgcpswitch.transport.READ_TURN} datagrams, so timers and
        calls still get their turns during a storm.)
        """
        gateway.audits_in_flight -= 1
        self._audits_in_flight -= 1
        self._pump(gateway)
        while self._audit_waiting and self._audits_in_flight < SWITCH_WIDE * self._switch.audit_concurrency:
            waiting = next(iter(self._audit_waiting))
            del self._audit_waiting[waiting]
            self._pump(waiting)
        if isinstance(result, Failure):
            self.log.failure("audit failed on {gateway}", result, gateway=gateway.name)

    def _audited(self, response: Response, endpoint: Endpoint) -> None:
        self.counters["audits"] += 1
        if response.code >= 300:
            self._listener.endpoint_failed(endpoint, response)
            return
        names = {event.name for event in response.params.get(P.EVENT_STATES, ())}
        hook = Hook.OFF if "L/hd" in names else Hook.ON if "L/hu" in names else Hook.UNKNOWN
        # The listener says whether the audit settled the line: with a CRCX
        # still unanswered it cannot tell that connection from a stale one,
        # and the line stays marked for the next keepalive's audit.
        endpoint.needs_audit = False
        if not self._listener.audited(endpoint, hook, frozenset(response.connection_ids)):
            endpoint.needs_audit = True

    def _audit_timed_out(self, failure: Failure, endpoint: Endpoint) -> None:
        if failure.trap(TransactionTimeout, TransactionAborted) is TransactionAborted:
            return  # shutting down
        self.counters["audit_timeouts"] += 1

    # -- liveness ---------------------------------------------------------

    def start(self) -> None:
        """
        Begin keepalives, and resynchronise at start: gateways register
        themselves with RSIP when they restart, but a call agent that
        restarts finds gateways that are up and have nothing to say.  So
        each gateway not heard from within C{STARTUP_PROBE} seconds is
        probed (an AUEP, whatever the keepalive setting); one that answers
        has every endpoint audited (paced as after an RSIP): the stale
        connections go, idle lines are armed.
        """
        self.ready = True
        for gateway in self.gateways.values():
            self._schedule_keepalive(gateway)
            self._pump(gateway)  # audits asked for before (an RSIP while the store loaded)
        self._startup = self._clock.callLater(STARTUP_PROBE, self._probe_unheard)

    def _probe_unheard(self) -> None:
        self._startup = None
        for gateway in list(self.gateways.values()):
            if gateway.state is GatewayState.UNKNOWN and gateway.in_service and gateway.settings.redirect is None:
                self.probe(gateway)

    def probe(self, gateway: Gateway) -> None:
        """A liveness check now (unless one is in flight): an AUEP; no answer means down."""
        if gateway.probing or not gateway.endpoints:
            return
        if gateway.keepalive is not None and gateway.keepalive.active():
            gateway.keepalive.cancel()
        gateway.keepalive = None
        gateway.probing = True
        gateway.probe_since = self._clock.seconds()
        self.counters["keepalives"] += 1
        first = next(iter(gateway.endpoints.values()))
        command = cmd.auep(self._sender.allocate_transaction_id(), first.name, cmd.KEEPALIVE_INFO)
        self.send(gateway, command).addCallbacks(
            self._keepalive_answered, self._keepalive_failed, (gateway,), errbackArgs=(gateway,)
        )

    def stop(self) -> None:
        if self._startup is not None and self._startup.active():
            self._startup.cancel()
        self._startup = None
        if self._turn is not None and self._turn.active():
            self._turn.cancel()
        self._turn = None
        self._batches.clear()
        for gateway in self.gateways.values():
            if gateway.keepalive is not None and gateway.keepalive.active():
                gateway.keepalive.cancel()
            gateway.keepalive = None
            self._cancel(gateway)
            gateway.batches = 0

    def _schedule_keepalive(self, gateway: Gateway) -> None:
        if gateway.keepalive_interval > 0 and gateway.settings.redirect is None:
            gateway.keepalive = self._clock.callLater(gateway.keepalive_interval, self._keepalive, gateway)

    def _keepalive(self, gateway: Gateway) -> None:
        gateway.keepalive = None
        if gateway.state is GatewayState.UP and not gateway.audit_queue and not gateway.batches:
            # Self-healing: an endpoint whose audit failed (timed out), or
            # that may hold a connection we could not delete, is audited again.
            stuck = [e for e in gateway.endpoints.values() if e.needs_audit or _unarmed(e)]
            if stuck:
                self.counters["reaudits"] += len(stuck)
                self.audit(gateway, stuck)
        now = self._clock.seconds()
        recent = gateway.last_seen is not None and now - gateway.last_seen < gateway.keepalive_interval
        if recent and gateway.state is GatewayState.UP:
            self._schedule_keepalive(gateway)
            return
        self.probe(gateway)

    def _keepalive_answered(self, response: Response, gateway: Gateway) -> None:
        gateway.probing = False
        gateway.last_seen = self._clock.seconds()
        if gateway.state in (GatewayState.DOWN, GatewayState.UNKNOWN) and gateway.in_service:
            # Back, or found at start without an RSIP: resynchronise every endpoint.
            back = gateway.state is GatewayState.DOWN
            self.set_state(gateway, GatewayState.REGISTERING)
            self.audit(gateway, list(gateway.endpoints.values()), reset=back)
        self._schedule_keepalive(gateway)

    def _keepalive_failed(self, failure: Failure, gateway: Gateway) -> None:
        if failure.trap(TransactionTimeout, TransactionAborted) is TransactionAborted:
            return  # shutting down
        gateway.probing = False
        self.counters["keepalive_timeouts"] += 1
        if gateway.last_seen is not None and gateway.probe_since is not None \
                and gateway.last_seen >= gateway.probe_since:
            # Its AUEP went unanswered, yet it spoke meanwhile (a command, an
            # answer): alive, on a lossy path.  Down means silent.
            self.counters["probes_lost"] += 1
        else:
            self.gateway_down(gateway)
        self._schedule_keepalive(gateway)

    def peer_state_changed(self, address: Address, state: PeerState) -> None:
        """
        The transaction layer's view of a peer is a hint, not a verdict: a
        command repeated Max1 or Max2 times (RFC 3435 §4.3) fails that
        transaction (and at most its call); whether the gateway is down is
        for a liveness check to say, so one is made at once.  A gateway
        that answers again after it was found down is resynchronised.
        """
        gateway = self._by_address.get(as_address(address))
        if gateway is None:
            return
        if state is PeerState.REACHABLE:
            gateway.last_seen = self._clock.seconds()  # it answered: alive
            if gateway.state is GatewayState.DOWN and gateway.in_service:
                self.set_state(gateway, GatewayState.REGISTERING)
                self.audit(gateway, list(gateway.endpoints.values()))
        else:
            self.counters["gateways_suspect"] += 1
            self.probe(gateway)

    def gateway_down(self, gateway: Gateway) -> None:
        if gateway.state is GatewayState.DOWN:
            return
        self.counters["gateways_down"] += 1
        self.log.warn("{gateway} is down", gateway=gateway.name)
        self.set_state(gateway, GatewayState.DOWN)
        self._listener.gateway_down(gateway)

    def set_in_service(self, gateway: Gateway, in_service: bool) -> None:
        """The operator takes a gateway out of service (no new calls) or back in (audited)."""
        gateway.in_service = in_service
        if not in_service:
            self.set_state(gateway, GatewayState.OUT_OF_SERVICE)
        elif gateway.state is GatewayState.OUT_OF_SERVICE:
            self.set_state(gateway, GatewayState.REGISTERING)
            self.audit(gateway, list(gateway.endpoints.values()))


def _unarmed(endpoint: Endpoint) -> bool:
    """An endpoint whose line was left unknown with no call (its audit failed)."""
    line = endpoint.line
    return line.state is LineState.UNKNOWN and not line.legs


def in_profile(gateway: Gateway, command: Command) -> Command:
    """
    C{command} in the protocol version the gateway registered with: a
    gateway that says C{MGCP 1.0 NCS 1.0} (a profile, RFC 3435 §3.2.1) is
    spoken to in it.
    """
    if gateway.version is DEFAULT_VERSION:
        return command
    return Command(command.verb, command.transaction_id, command.endpoint, command.params, command.sdp,
                   gateway.version)
