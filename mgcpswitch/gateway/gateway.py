# -*- test-case-name: tests.test_gateway_commands -*-
"""
The simulated residential gateway: analog lines C{aaln/1..N@domain} that
execute MGCP commands as RFC 3435 and RFC 3660 say a real gateway does.

L{SimulatedGateway} is the command handler of a L{GatewayProtocol} (the
shared transaction layer): it resolves the endpoint name, checks every
part of a command before changing anything (so a failing command, an
encapsulated RQNT included, changes nothing: RFC 3435 §4.4.2), then
commits.  It sends the gateway's own commands (NTFY, RSIP, DLCX) to each
endpoint's notified entity, runs the restart and disconnected procedures
(L{restart}), and injects faults when configured.

Choices where the RFCs leave room (each pinned by a test):

  - the restart procedure answers commands that arrive before its RSIP is
    acknowledged with 2xx and the RSIP piggybacked ahead (§4.4.6 allows
    2xx or 405; the piggyback keeps the order);
  - a DLCX naming an endpoint (or a call) on which nothing is left to
    delete answers 250 (§2.3.9: it succeeds on a valid endpoint);
  - an NTFY that would go out before the endpoint's RSIP is acknowledged
    waits for that acknowledgement (the RSIP must be the first thing the
    call agent sees, §4.4.6); NTFYs still unanswered ride ahead of a new
    one in the same datagram (§4.4.1);
  - an NTFY that a command triggers towards the command's source (an
    auto-answering phone's off-hook, quarantined events an RQNT
    processes) rides after the command's response in the same datagram
    (L{Reply.after}), its own transaction; when older NTFYs are still
    unanswered it goes at once in their bundle instead (they share fate);
  - a slow answer (fault injection) executes the command when it answers,
    so a DLCX or a newer command can abort it with 407 (§4.4.4);
  - local connections (C{Z2:}) are not implemented: 507;
  - EPCF accepts C{e:A} and C{e:mu}; another value gets 532, another
    attribute 539;
  - NTFY, RSIP and MESG sent to a gateway get 504 (they go the other way);
  - when the gateway stops, Deferreds waiting for an NTFY's answer are
    left unfired rather than failed.
"""

from __future__ import annotations

import random as _random
from dataclasses import replace
from typing import Any, Callable, Iterable

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..errors import TransactionAborted, TransactionTimeout
from ..interfaces import ICommandHandler, IPeerListener
from ..mgcp import (
    Command,
    ConnectionMode,
    EndpointName,
    Event,
    NotifiedEntity,
    ParamCode,
    ReasonCode,
    RemoteProtocolError,
    Response,
    ReturnCode,
    RestartMethod,
    Verb,
)
from ..transaction import Address, Outbox, PeerState, Reply, as_address
from ..transport import GatewayProtocol
from ..txid import TransactionIdAllocator
from .config import VERSIONS, FaultConfig, GatewayConfig
from .connection import (
    MODES_NEEDING_REMOTE,
    Connection,
    Negotiated,
    PortPool,
    check_mode,
    check_options,
    merge_options,
    negotiate,
)
from .audit import audit_connection, audit_endpoints
from .endpoint import Endpoint, Notification, RequestPlan, remote_descriptor
from .faults import FaultyGatewayProtocol
from .line import Line
from .mixing import line_source
from .packages import PACKAGE_LIST
from .restart import Restarts
from .timers import Timers

__all__ = ["SimulatedGateway", "REASONS"]

P = ParamCode
_OK = ReturnCode.OK
_AUDITS = frozenset({Verb.AUEP, Verb.AUCX})
#: responses that are not announced by a piggybacked RSIP (§4.4.6).
_RESTART_CODES = frozenset({405, 501, 520})
#: C{E:} texts of RFC 3435 §2.5.
REASONS = {
    0: "Endpoint state is normal",
    900: "Endpoint malfunctioning",
    901: "Endpoint taken out of service",
    902: "Loss of lower layer connectivity",
    903: "QoS resource reservation was lost",
    904: "Manual intervention",
    905: "Facility failure",
}
_ENCAPSULATED = frozenset({
    P.REQUEST_ID, P.REQUESTED_EVENTS, P.SIGNAL_REQUESTS, P.DIGIT_MAP, P.DETECT_EVENTS,
    P.QUARANTINE_HANDLING, P.PERSISTENT_EVENTS,
})


def _error(code: int, reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(code, reason)


class _Slow:
    """A command whose execution and answer are held back (fault injection)."""

    __slots__ = ("command", "source", "deferred", "timer", "key")

    def __init__(self, command: Command, source: Address, key: str,
                 cancelled: Callable[[_Slow], None]) -> None:
        self.command = command
        self.source = source
        self.key = key
        self.deferred: Deferred[Any] = Deferred(lambda d: cancelled(self))
        self.timer: Any = None


@implementer(ICommandHandler, IPeerListener)
class SimulatedGateway:
    """
    A residential gateway with C{config.lines} analog lines.

    It is the context its parts receive (L{endpoint.EndpointContext},
    L{line.LineContext}, L{audit.AuditContext},
    L{restart.RestartContext}): they see only what those narrow protocols
    name, and import nothing of this module.

    @param reactor: provides C{IReactorTime} and C{IReactorUDP}; the only
        clock the gateway uses.
    @param random: the source of every random choice (restart and
        disconnected timers, retransmission jitter, ids); seed it in tests.
    @param resolver: C{resolver(name) -> Deferred[str]} for call agent host
        names (default: the reactor's non-blocking C{resolve}).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        config: GatewayConfig = GatewayConfig(),
        random: _random.Random | None = None,
        resolver: Callable[[str], Deferred[str]] | None = None,
    ) -> None:
        self.reactor = reactor
        self.clock = reactor
        self.config = config
        self.random = random if random is not None else _random.Random()
        self.timers = Timers(reactor)
        self.stopped = False
        #: While a command executes: the NTFYs for its source that it
        #: triggered, which ride after its response (Reply.after).
        self._outbox: Outbox | None = None
        self._resolver = resolver if resolver is not None else getattr(reactor, "resolve", None)
        self._resolved: dict[str, tuple[str, float]] = {}
        self._resolving: dict[str, list[Deferred[str]]] = {}
        faults = config.faults
        self._fault_rng = _random.Random(faults.seed)
        self._slow_rate = faults.slow_answer
        self._slow: dict[str, list[_Slow]] = {}
        transaction = config.transaction
        if faults.slow_answer and transaction.provisional_after is None:
            transaction = replace(transaction, provisional_after=0.0)  # the 100 goes out at once
        options: dict[str, Any] = {
            "random": self.random.uniform,
            "allocator": TransactionIdAllocator(key=self.random.randbytes(32)),
        }
        self.protocol: GatewayProtocol
        if faults.datagram_faults:
            self.protocol = FaultyGatewayProtocol(
                reactor, self, transaction, self, faults=faults, rng=self._fault_rng,
                timers=self.timers, **options,
            )
        else:
            self.protocol = GatewayProtocol(reactor, self, transaction, self, **options)
        host, port = config.call_agent
        domain = f"[{host}]" if ":" in host else host
        self.provisioned_entity = NotifiedEntity(None, domain, port)
        self.domain = config.domain
        self.wildcard_name = EndpointName(f"*@{config.domain}")
        self.endpoints: tuple[Endpoint, ...] = tuple(
            Endpoint(self, n, EndpointName(f"aaln/{n}@{config.domain}"), self.provisioned_entity)
            for n in range(1, config.lines + 1)
        )
        self._by_key = {ep.key: ep for ep in self.endpoints}
        self._domain_key = config.domain.lower()
        self.lines: tuple[Line, ...] = tuple(Line(self, ep) for ep in self.endpoints)
        for line, ep in zip(self.lines, self.endpoints):
            ep.line = line
        self.ports = PortPool(reactor, config.interface, config.rtp, config.rtp_port_base)
        self._next_connection = self.random.randrange(0x10000000, 0x7FFFFFFF)
        self.restarts = Restarts(self)
        self.peer_states: dict[Address, PeerState] = {}
        self._port: Any = None
        self.restart_due: float | None = None
        self._restart_timer: Any = None
        self.graceful_due: float | None = None
        self._graceful_timer: Any = None
        self._handlers: dict[Any, Callable[[Command, Address], tuple[Response, list[Endpoint]]]] = {
            Verb.EPCF: self._epcf,
            Verb.RQNT: self._rqnt,
            Verb.CRCX: self._crcx,
            Verb.MDCX: self._mdcx,
            Verb.DLCX: self._dlcx,
            Verb.AUEP: self._auep,
            Verb.AUCX: self._aucx,
        }

    # -- life cycle --------------------------------------------------------

    def start(self) -> None:
        """
        Listen on C{config.port}, then start the restart procedure: one
        C{RSIP *@domain RM: restart} after a uniform random delay in
        [0, MWD] (RFC 3435 §4.4.6).
        """
        config = self.config
        self._port = self.reactor.listenUDP(config.port, self.protocol, interface=config.interface)
        wait = self.random.uniform(0.0, config.restart_delay) if config.restart_delay > 0 else 0.0
        self.log.info(
            "gateway {domain} with {lines} lines on {address}; RSIP restart in {wait:.3f} s",
            domain=config.domain, lines=config.lines, address=self.address, wait=wait,
        )
        self.restarts.begin(self.endpoints, RestartMethod.RESTART, wait=wait)

    def stop(self) -> Deferred[None]:
        """
        Stop listening, release every RTP port, cancel every timer; fires
        when the sockets are closed.
        """
        if self.stopped:
            return succeed(None)
        self.stopped = True
        self.restarts.stop()
        closing = []
        for ep in self.endpoints:
            for conn in list(ep.connections.values()):
                conn.stop_media()
                closing.append(self.ports.release(conn.port, conn.listening))
                conn.listening = None
            ep.connections.clear()
            ep.digit_timer = None
            for playing in ep.signals.values():
                playing.timer = None
        self._slow.clear()
        self.timers.cancel_all()
        port, self._port = self._port, None
        if port is not None:
            closing.append(port.stopListening())
        else:
            self.protocol.transactions.stop()
        self.log.info("gateway {domain} stopped", domain=self.config.domain)
        waits = [d for d in closing if isinstance(d, Deferred)]
        if not waits:
            return succeed(None)
        return gatherResults(waits, consumeErrors=True).addCallback(lambda _: None)

    @property
    def address(self) -> tuple[str, int]:
        host = self._port.getHost()
        return (host.host, host.port)

    def line(self, n: int) -> Line:
        if not 1 <= n <= len(self.lines):
            raise IndexError(f"no line {n} (1..{len(self.lines)})")
        return self.lines[n - 1]

    def connection_count(self) -> int:
        return sum(len(ep.connections) for ep in self.endpoints)

    def stop_faults(self) -> None:
        """
        The fault injection ends (a reliability run's loss stops): no more
        datagrams dropped, duplicated or delayed, no more slow answers.
        What was already held back still arrives.
        """
        self._slow_rate = 0.0
        if isinstance(self.protocol, FaultyGatewayProtocol):
            self.protocol.faults = FaultConfig()

    # -- IPeerListener -----------------------------------------------------

    def peer_state_changed(self, address: Address, state: PeerState) -> None:
        """
        Kept for operators (C{peer_states} holds the call agents that are
        not answering well); endpoints go disconnected on their own
        commands' timeouts, not on this (§4.3).
        """
        if state is PeerState.REACHABLE:
            self.peer_states.pop(as_address(address), None)
        else:
            self.peer_states[as_address(address)] = state
        self.log.info("call agent {peer} is {state}", peer=address, state=state.value)
        if state is PeerState.SUSPECT:
            self._resolved.clear()  # Max1: look the call agents' names up again (§4.3)
        elif state is PeerState.DISCONNECTED:
            self._next_call_agent(as_address(address))

    def _next_call_agent(self, address: Address) -> None:
        """
        Max2 repetitions to one address of the call agent list (RFC 3435
        §4.3): the endpoints whose commands went there move to the next
        address of the list (their notified entity follows, and their
        NTFYs still unanswered go there at once), and so does the
        provisioned entity, which later restarts announce to.
        """
        agents = self.config.call_agents
        if len(agents) < 2 or address not in agents:
            return
        host, port = agents[(agents.index(address) + 1) % len(agents)]
        entity = NotifiedEntity(None, f"[{host}]" if ":" in host else host, port)
        self.log.info("call agent {peer} is gone: endpoints move to {entity}", peer=address, entity=str(entity))
        provisioned = self._entity_address(self.provisioned_entity)
        if provisioned == address:
            self.provisioned_entity = entity
        for ep in self.endpoints:
            if ep.notified_entity.is_empty:
                current = ep.last_source or provisioned  # where an empty entity sends (§2.1.4)
            else:
                current = ep.ne_address or self._entity_address(ep.notified_entity)
            if current is not None and tuple(current) == address:
                self.set_notified_entity(ep, entity)

    @staticmethod
    def _entity_address(entity: NotifiedEntity) -> Address | None:
        """An entity's address when it names an IP literal (names are not looked up here)."""
        if entity.is_empty:
            return None
        host = entity.domain[1:-1] if entity.domain.startswith("[") else entity.domain
        return (host, entity.port_or_default) if isIPAddress(host) or isIPv6Address(host) else None

    # -- ICommandHandler ---------------------------------------------------

    def command_received(self, command: Command, source: Address) -> Any:
        if self._slow:
            self._abort_conflicting(command)
        if self._slow_rate and self._fault_rng.random() < self._slow_rate:
            return self._answer_slowly(command, source)
        return self._execute(command, source)

    def _execute(self, command: Command, source: Address) -> Response | Reply:
        """
        Run a command.  An NTFY it triggers towards its source (an
        auto-answering phone's off-hook on the ringing CRCX, quarantined
        events an RQNT processes) rides after the response in one
        datagram, as the call agent expects it: after the answer.
        """
        outbox = self._outbox = Outbox(source)
        try:
            result = self._run(command, source)
        except BaseException:
            outbox.send_now(self.protocol.send_command)
            raise
        finally:
            self._outbox = None
        return outbox.reply(result)

    def _run(self, command: Command, source: Address) -> Response | Reply:
        txid = command.transaction_id
        if command.version not in VERSIONS and command.version.upper() not in VERSIONS:
            return Response(528, txid, "Unsupported protocol version or profile")
        handler = self._handlers.get(command.verb)
        if handler is None:
            return Response(504, txid, f"{command.verb} is not executed by a gateway")
        try:
            response, endpoints = handler(command, source)
        except RemoteProtocolError as e:
            response = self._refusal(e, txid)
            endpoints = self._known(command.endpoint)
        if command.verb in _AUDITS:
            for ep in endpoints:
                if ep.procedure is not None:
                    self.restarts.command_arrived(ep)
            return response
        if response.code < 300:
            for ep in endpoints:
                ep.last_source = source
        if response.code in _RESTART_CODES:
            return response
        rsips: list[Command] = []
        for ep in endpoints:
            procedure = ep.procedure
            if procedure is not None:
                rsip = self.restarts.before_response(procedure)
                if rsip is not None and rsip not in rsips:
                    rsips.append(rsip)
        return Reply(response, before=tuple(rsips)) if rsips else response

    def _refusal(self, error: RemoteProtocolError, txid: int) -> Response:
        comment = "".join(ch if " " <= ch <= "~" else "?" for ch in error.reason)[:80]
        if error.code == 518:
            return Response.create(518, txid, comment, package_list=PACKAGE_LIST)
        return Response(error.code, txid, comment)

    # -- slow answers (fault injection) -------------------------------------

    def _answer_slowly(self, command: Command, source: Address) -> Deferred[Any]:
        """
        Execute and answer after C{slow_seconds}; the transaction layer
        sends C{100} meanwhile (RFC 3435 §3.5.6).  Aborted by later commands
        as §4.4.4 says (see L{_abort_conflicting}).
        """
        entry = _Slow(command, source, command.endpoint.lower(), self._forget_slow)
        self._slow.setdefault(entry.key, []).append(entry)
        entry.timer = self.timers.call_later(self.config.faults.slow_seconds, self._slow_due, entry)
        return entry.deferred

    def _slow_due(self, entry: _Slow) -> None:
        self._forget_slow(entry)
        entry.deferred.callback(self._execute(entry.command, entry.source))

    def _forget_slow(self, entry: _Slow) -> None:
        self.timers.cancel(entry.timer)
        pending = self._slow.get(entry.key)
        if pending is not None and entry in pending:
            pending.remove(entry)
            if not pending:
                del self._slow[entry.key]

    def _abort_conflicting(self, command: Command) -> None:
        """
        RFC 3435 §4.4.4: a DLCX aborts a pending CRCX or MDCX on the
        endpoint (on the connection, when it names one); a new MDCX on a
        connection, RQNT or EPCF aborts the older pending one.  The aborted
        command is answered 407.
        """
        pending = self._slow.get(command.endpoint.lower())
        if not pending:
            return
        verb = command.verb
        cid = command.connection_id
        for entry in list(pending):
            old = entry.command
            if verb is Verb.DLCX:
                hit = old.verb is Verb.CRCX or (
                    old.verb is Verb.MDCX and (cid is None or (old.connection_id or "").upper() == cid.upper())
                )
            elif verb in (Verb.MDCX, Verb.RQNT, Verb.EPCF):
                hit = old.verb is verb and (verb is not Verb.MDCX or old.connection_id == cid)
            else:
                hit = False
            if hit:
                self._forget_slow(entry)
                entry.deferred.callback(Response(407, old.transaction_id, "Transaction aborted"))

    # -- endpoints -----------------------------------------------------------

    def _targets(self, name: EndpointName) -> list[Endpoint]:
        """The endpoints a name means (500 when none: RFC 3435 §2.1.2)."""
        ep = self._by_key.get(name.lower())
        if ep is not None:
            return [ep]
        if name.domain.lower() == self._domain_key and name.is_wildcard:
            found = [ep for ep in self.endpoints if name.matches(ep.name)]
            if found:
                return found
        raise _error(500, f"unknown endpoint {name}")

    def _one(self, name: EndpointName) -> Endpoint:
        ep = self._by_key.get(name.lower())
        if ep is None:
            raise _error(500, f"unknown endpoint {name}")
        return ep

    def _known(self, name: EndpointName) -> list[Endpoint]:
        try:
            return self._targets(name)
        except RemoteProtocolError:
            return []

    @staticmethod
    def _in_service(endpoints: Iterable[Endpoint]) -> None:
        for ep in endpoints:
            if not ep.in_service:
                raise _error(501, f"{ep.name} is out of service")

    def _bearer(self, params: Any) -> tuple[tuple[str, str], ...] | None:
        bearer = params.get(P.BEARER_INFORMATION)
        if bearer is None:
            return None
        for key, value in bearer:
            if key != "e":
                raise _error(539, f"unsupported bearer attribute {key}")
            if value.lower() not in ("a", "mu"):
                raise _error(532, f"unsupported bearer encoding {value}")
        return tuple((k, v.lower() if v.lower() == "mu" else "A") for k, v in bearer)

    def _new_connection_id(self) -> str:
        """Hex, unique on the gateway; the counter makes reuse within 3 minutes impossible (§2.1.3.2)."""
        self._next_connection = (self._next_connection + 1) & 0xFFFFFFFF or 1
        return format(self._next_connection, "X")

    # -- commands ------------------------------------------------------------

    def _epcf(self, command: Command, source: Address) -> tuple[Response, list[Endpoint]]:
        endpoints = self._targets(command.endpoint)
        self._in_service(endpoints)
        bearer = self._bearer(command.params)
        if bearer is not None:
            for ep in endpoints:
                ep.bearer = bearer
        return Response(_OK, command.transaction_id, "OK"), endpoints

    def _rqnt(self, command: Command, source: Address) -> tuple[Response, list[Endpoint]]:
        endpoints = self._targets(command.endpoint)
        self._in_service(endpoints)
        params = command.params
        plans = [ep.plan(params) for ep in endpoints]  # all checked before any is applied (§4.4.2)
        bearer = self._bearer(params)
        for ep, plan in zip(endpoints, plans):
            if bearer is not None:
                ep.bearer = bearer
            ep.commit(plan)
        return Response(_OK, command.transaction_id, "OK"), endpoints

    def _commit_request(
        self, ep: Endpoint, params: Any, bearer: tuple[tuple[str, str], ...] | None, plan: RequestPlan | None
    ) -> None:
        """
        The rest of a checked CRCX, MDCX or DLCX: its bearer information,
        its encapsulated notification request, or else its bare C{N:}.
        """
        if bearer is not None:
            ep.bearer = bearer
        if plan is not None:
            ep.commit(plan)
        elif P.NOTIFIED_ENTITY in params:
            self.set_notified_entity(ep, params[P.NOTIFIED_ENTITY])

    def _pick(self, name: EndpointName) -> Endpoint:
        """C{$}: an in-service endpoint without connections (410 when none, §2.3.5)."""
        if name.domain.lower() != self._domain_key:
            raise _error(500, f"unknown endpoint {name}")
        matching = [ep for ep in self.endpoints if name.matches(ep.name)]
        if not matching:
            raise _error(500, f"unknown endpoint {name}")
        for ep in matching:
            if ep.in_service and not ep.connections:
                return ep
        raise _error(410, "no endpoint available")

    def _crcx(self, command: Command, source: Address) -> tuple[Response, list[Endpoint]]:
        params = command.params
        name = command.endpoint
        ep = self._pick(name) if name.is_any_of else self._one(name)
        if not ep.in_service:
            raise _error(501, f"{ep.name} is out of service")
        endpoints = [ep]
        mode = check_mode(params[P.CONNECTION_MODE])
        if P.SECOND_ENDPOINT_ID in params:
            raise _error(507, "local connections (Z2) are not supported")
        remote = remote_descriptor(command.sdp)
        if mode in MODES_NEEDING_REMOTE and remote is None:
            raise _error(527, f"mode {mode} needs a remote connection descriptor")
        options = params.get(P.LOCAL_CONNECTION_OPTIONS)
        if options is not None:
            check_options(options)
        config = self.config
        if len(ep.connections) >= config.max_connections:
            raise _error(540, f"{ep.name} holds {len(ep.connections)} connections already")
        negotiated = negotiate(config.codecs, options, remote, config.packetization)
        cid = self._new_connection_id()
        plan = None
        if P.REQUEST_ID in params:
            flags = ep.connection_flags
            flags[cid] = remote is not None
            plan = ep.plan(params, flags, dollar=cid)
        bearer = self._bearer(params)
        # commit
        conn = Connection(cid, params[P.CALL_ID], mode, ep.connections, line_source(str(ep.name)))
        conn.options = options
        conn.remote_sdp = remote
        conn.negotiated = negotiated
        try:
            conn.port, conn.listening = self.ports.reserve(conn)
        except CannotListenError as e:
            raise _error(403, f"no RTP port: {e}") from None
        conn.build_local_sdp(config.media_address)
        ep.connections[cid] = conn
        self._commit_request(ep, params, bearer, plan)
        if config.media:
            conn.update_media(self.clock, True)
        if config.history_limit:
            ep.note(f"connection {cid} created ({mode}, port {conn.port})")
        ep.changed()
        if name.is_any_of:
            response = Response.create(200, command.transaction_id, "OK", specific_endpoint_id=ep.name,
                                       connection_id=cid, sdp=conn.local_sdp)
        else:
            response = Response.create(200, command.transaction_id, "OK", connection_id=cid,
                                       sdp=conn.local_sdp)
        return response, endpoints

    def _connection(self, ep: Endpoint, command: Command) -> Connection:
        cid = command.connection_id
        conn = ep.connections.get(cid.upper()) if cid else None
        if conn is None:
            raise _error(515, f"no connection {cid} on {ep.name}")
        call = command.params.get(P.CALL_ID)
        if call is not None and call.lower() != conn.call_id.lower():
            raise _error(516, f"connection {cid} belongs to another call")
        return conn

    def _mdcx(self, command: Command, source: Address) -> tuple[Response, list[Endpoint]]:
        params = command.params
        ep = self._one(command.endpoint)
        if not ep.in_service:
            raise _error(501, f"{ep.name} is out of service")
        conn = self._connection(ep, command)
        mode = check_mode(params[P.CONNECTION_MODE]) if P.CONNECTION_MODE in params else conn.mode
        given = params.get(P.LOCAL_CONNECTION_OPTIONS)
        if given is not None:
            check_options(given)
        options = merge_options(conn.options, given)
        remote = remote_descriptor(command.sdp)
        current_remote = remote if remote is not None else conn.remote_sdp
        if mode in MODES_NEEDING_REMOTE and current_remote is None:
            raise _error(527, f"mode {mode} needs a remote connection descriptor")
        negotiated: Negotiated | None
        if given is not None or remote is not None:
            negotiated = negotiate(self.config.codecs, options, current_remote, self.config.packetization)
        else:
            negotiated = conn.negotiated
        plan = None
        if P.REQUEST_ID in params:
            flags = ep.connection_flags
            flags[conn.connection_id] = current_remote is not None
            plan = ep.plan(params, flags, dollar=conn.connection_id)
        bearer = self._bearer(params)
        # commit
        renegotiated = negotiated != conn.negotiated
        conn.mode = mode
        conn.options = options
        conn.remote_sdp = current_remote
        conn.negotiated = negotiated
        if renegotiated:
            conn.build_local_sdp(self.config.media_address)
        self._commit_request(ep, params, bearer, plan)
        if self.config.media:
            conn.update_media(self.clock, True)
        if self.config.history_limit:
            ep.note(f"connection {conn.connection_id} modified ({mode})")
        ep.changed()
        # The local descriptor goes back only when session parameters changed (§2.3.6).
        sdp = conn.local_sdp if renegotiated else None
        return Response(_OK, command.transaction_id, "OK", sdp=sdp), [ep]

    def _dlcx(self, command: Command, source: Address) -> tuple[Response, list[Endpoint]]:
        params = command.params
        txid = command.transaction_id
        if command.connection_id is not None:
            ep = self._one(command.endpoint)
            if not ep.in_service:
                raise _error(501, f"{ep.name} is out of service")
            conn = self._connection(ep, command)
            plan = None
            if P.REQUEST_ID in params:
                flags = ep.connection_flags
                del flags[conn.connection_id]
                plan = ep.plan(params, flags)
            bearer = self._bearer(params)
            statistics = conn.statistics()
            self.release_connection(ep, conn)
            self._commit_request(ep, params, bearer, plan)
            return Response.create(250, txid, "Connection deleted", connection_parameters=statistics), [ep]
        # Several connections (§2.3.9): by call and/or endpoint; no encapsulation.
        if not _ENCAPSULATED.isdisjoint(params):
            raise _error(539, "a DLCX of several connections carries no notification request")
        endpoints = self._targets(command.endpoint)
        if command.endpoint.is_wildcard:
            endpoints = [ep for ep in endpoints if ep.in_service]
        else:
            self._in_service(endpoints)
        bearer = self._bearer(params)
        call = params.get(P.CALL_ID)
        call = call.lower() if call is not None else None
        for ep in endpoints:
            for conn in list(ep.connections.values()):
                if call is None or conn.call_id.lower() == call:
                    self.release_connection(ep, conn)
            if bearer is not None:
                ep.bearer = bearer
            if P.NOTIFIED_ENTITY in params:
                self.set_notified_entity(ep, params[P.NOTIFIED_ENTITY])
        return Response(250, txid, "Connection deleted"), endpoints

    def release_connection(self, ep: Endpoint, conn: Connection) -> None:
        """Delete a connection: media, port, signals on it (C{of}), graceful shutdown."""
        conn.stop_media()
        self.ports.release(conn.port, conn.listening)
        conn.listening = None
        del ep.connections[conn.connection_id]
        failures = ep.connection_signals_failed(conn.connection_id)
        if self.config.history_limit:
            ep.note(f"connection {conn.connection_id} deleted")
        if ep.graceful and not ep.connections:
            self._take_out(ep, "graceful")
        ep.changed()
        for event in failures:
            ep.detect_event(event)

    def swap_audio(self, ep: Endpoint) -> None:
        """The S action (§2.3.3): with one inactive and one sendrecv connection, swap their modes."""
        conns = list(ep.connections.values())
        if len(conns) != 2:
            return
        a, b = conns
        modes = {a.mode, b.mode}
        if modes == {ConnectionMode.INACTIVE, ConnectionMode.SENDRECV}:
            a.mode, b.mode = b.mode, a.mode
            if self.config.media:
                a.update_media(self.clock, True)
                b.update_media(self.clock, True)
            ep.note("audio swapped")
            ep.changed()

    # -- audits --------------------------------------------------------------

    def _auep(self, command: Command, source: Address) -> tuple[Response, list[Endpoint]]:
        name = command.endpoint
        endpoints = self._targets(name) if name.is_wildcard else [self._one(name)]
        return audit_endpoints(self, command, endpoints), endpoints

    def _aucx(self, command: Command, source: Address) -> tuple[Response, list[Endpoint]]:
        ep = self._one(command.endpoint)
        return audit_connection(self, command, ep, self._connection(ep, command)), [ep]

    # -- notified entity and outgoing commands --------------------------------

    def set_notified_entity(self, ep: Endpoint, entity: NotifiedEntity) -> None:
        """
        A new C{N:} (§2.1.4); commands still waiting for an answer are
        retransmitted to the new call agent (§4.3).
        """
        if entity == ep.notified_entity:
            return
        ep.notified_entity = entity
        ep.ne_address = None
        ep.note(f"notified entity {entity}")
        if ep.sent:
            self._transmit(ep, None)
        ep.changed()

    def ne_address(self, ep: Endpoint) -> Address | Deferred[Address]:
        """
        Where the endpoint's commands go: the notified entity (an IP literal
        directly, a name through the resolver, cached C{resolve_ttl}
        seconds); an empty one means the source of the last successful
        non-audit command (§2.1.4).
        """
        address = ep.ne_address
        if address is not None:
            return address
        entity = ep.notified_entity
        if entity.is_empty:
            if ep.last_source is not None:
                return ep.last_source
            entity = self.provisioned_entity
        host = entity.domain[1:-1] if entity.domain.startswith("[") else entity.domain
        port = entity.port_or_default
        if isIPAddress(host) or isIPv6Address(host):
            if not ep.notified_entity.is_empty:
                ep.ne_address = (host, port)
            return (host, port)
        key = host.lower()
        cached = self._resolved.get(key)
        now = self.clock.seconds()
        if cached is not None and cached[1] > now:
            return (cached[0], port)
        return self._resolve(key).addCallback(lambda ip: (ip, port))

    def _resolve(self, host: str) -> Deferred[str]:
        """One query per name at a time; answers cached C{resolve_ttl} seconds."""
        d: Deferred[str] = Deferred()
        waiters = self._resolving.get(host)
        if waiters is not None:
            waiters.append(d)
            return d
        self._resolving[host] = [d]
        now = self.clock.seconds()
        self._resolved = {k: v for k, v in self._resolved.items() if v[1] > now}
        if self._resolver is None:
            self._resolved_now(Failure(LookupError(f"cannot resolve {host}: no resolver")), host)
        else:
            self._resolver(host).addBoth(self._resolved_now, host)
        return d

    def _resolved_now(self, result: Any, host: str) -> None:
        waiters = self._resolving.pop(host, [])
        if not isinstance(result, Failure):
            self._resolved[host] = (result, self.clock.seconds() + self.config.resolve_ttl)
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)

    def allocate_transaction_id(self) -> int:
        return self.protocol.allocate_transaction_id()

    def send_command(self, command: Command, address: Address) -> Deferred[Response]:
        return self.protocol.send_command(command, address)

    def build_notify(self, ep: Endpoint, observed: tuple[Event, ...]) -> Command:
        return Command.create(
            Verb.NTFY, self.allocate_transaction_id(), ep.name,
            notified_entity=ep.ntfy_entity, request_id=ep.request_id, observed_events=observed,
            version=self.config.version,
        )

    def send_notification(self, ep: Endpoint, notification: Notification) -> None:
        """Send an NTFY, or hold it until the endpoint's RSIP is acknowledged."""
        procedure = ep.procedure
        if procedure is not None and not procedure.done:
            ep.held.append(notification)
            self.restarts.activity(ep)
            return
        self._transmit(ep, notification)

    def flush_held(self, ep: Endpoint) -> None:
        held, ep.held = ep.held, []
        for notification in held:
            self._transmit(ep, notification)

    def _transmit(self, ep: Endpoint, new: Notification | None) -> None:
        if self.stopped:
            return
        address = self.ne_address(ep)
        if isinstance(address, Deferred):
            address.addCallbacks(
                lambda a: self._transmit_to(ep, new, a),
                lambda f: self._unreachable(ep, new, f),
            )
        else:
            self._transmit_to(ep, new, address)

    def _transmit_to(self, ep: Endpoint, new: Notification | None, address: Address) -> None:
        """
        Send C{new} with the NTFYs still unanswered ahead of it in one
        datagram, oldest first, under their own transaction ids (RFC 3435
        §4.4.1), so they keep their order and share fate.
        """
        if self.stopped:
            return
        old = ep.sent
        outbox = self._outbox
        if outbox is not None and not old and new is not None and outbox.source == tuple(address):
            d = outbox.add(new.command)
            ep.sent = [new]
            new.layer = d
            d.addCallbacks(self._ntfy_answered, self._ntfy_failed, callbackArgs=(new, d), errbackArgs=(new, d))
            return
        for n in old:
            layer, n.layer = n.layer, None
            if layer is not None:
                layer.cancel()  # resent below in the same bundle
        bundle = old + [new] if new is not None else list(old)
        if not bundle:
            return
        ep.sent = bundle
        deferreds = self.protocol.transactions.send_commands([n.command for n in bundle], address)
        for n, d in zip(bundle, deferreds):
            n.layer = d
            d.addCallbacks(self._ntfy_answered, self._ntfy_failed, callbackArgs=(n, d), errbackArgs=(n, d))

    def _unreachable(self, ep: Endpoint, new: Notification | None, failure: Failure) -> None:
        self.log.info("cannot reach the call agent of {endpoint}: {error}", endpoint=ep.name,
                      error=failure.getErrorMessage())
        if new is not None:
            new.failed = True
            new.resolve(failure)
        self.restarts.disconnected(ep)

    def _ntfy_answered(self, response: Response, n: Notification, d: Deferred[Response]) -> None:
        if n.layer is not d:
            return
        n.layer = None
        ep = n.endpoint
        if n in ep.sent:
            ep.sent.remove(n)
        ep.notification_done(n)
        n.resolve(response)

    def _ntfy_failed(self, failure: Failure, n: Notification, d: Deferred[Response]) -> None:
        if n.layer is not d:
            return None  # cancelled to be resent in a new bundle
        n.layer = None
        ep = n.endpoint
        if n in ep.sent:
            ep.sent.remove(n)
        if failure.check(TransactionAborted):
            return None  # the gateway stopped: whoever waits is left waiting
        if failure.check(TransactionTimeout):
            n.failed = True
            self.restarts.disconnected(ep)
        else:
            self.log.failure("NTFY from {endpoint} failed", failure, endpoint=ep.name)
        n.resolve(failure)
        return None

    # -- operator actions -----------------------------------------------------

    def restart(self, method: RestartMethod = RestartMethod.RESTART, delay: float = 0) -> Deferred[Any]:
        """
        Operator-initiated RSIP for every endpoint (RFC 3435 §2.3.12,
        §4.4.5): C{restart} resets the endpoints (out of service for
        C{delay} seconds, then an updated RSIP with RD 0), C{forced} takes
        them out of service at once, C{graceful} after C{delay} seconds
        (0: as each line's calls end), C{cancel-graceful} cancels that.

        @return: fires with the RSIP's final response (with a list of them
            when endpoints with different notified entities need several),
            or fails with L{TransactionTimeout} when the call agent does
            not answer (the disconnected procedure then goes on).
        """
        if method is RestartMethod.DISCONNECTED or not isinstance(method, RestartMethod):
            raise ValueError(f"an operator cannot restart with {method}")
        rd = int(delay)
        endpoints = list(self.endpoints)
        if method is RestartMethod.RESTART:
            self.timers.cancel(self._restart_timer)
            self.timers.cancel(self._graceful_timer)
            self.graceful_due = None
            for ep in endpoints:
                ep.reset()
                ep.notified_entity, ep.ne_address = self.provisioned_entity, None
                ep.graceful = False
                ep.reason = ReasonCode(0)
                self._set_service(ep, rd == 0, None if rd == 0 else "restart")
            if rd:
                self.restart_due = self.clock.seconds() + delay
                self._restart_timer = self.timers.call_later(delay, self._back_in_service)
        elif method is RestartMethod.FORCED:
            self.timers.cancel(self._graceful_timer)
            self.graceful_due = None
            for ep in endpoints:
                self._take_out(ep, "forced")
            rd = 0
        elif method is RestartMethod.GRACEFUL:
            if rd:
                self.graceful_due = self.clock.seconds() + delay
                self.timers.cancel(self._graceful_timer)
                self._graceful_timer = self.timers.call_later(delay, self._graceful_expired)
            else:
                for ep in endpoints:
                    ep.graceful = True
                    if not ep.connections:
                        self._take_out(ep, "graceful")
        else:  # cancel-graceful
            self.timers.cancel(self._graceful_timer)
            self.graceful_due = None
            for ep in endpoints:
                if ep.graceful or ep.out_reason == "graceful":
                    ep.graceful = False
                    self._set_service(ep, True, None)
            rd = 0
        return self._announce(endpoints, method, rd)

    def _announce(self, endpoints: list[Endpoint], method: RestartMethod, delay: int,
                  reason: ReasonCode | None = None) -> Deferred[Any]:
        """One RSIP per notified entity: C{*@domain} when it covers every endpoint."""
        groups: dict[Any, list[Endpoint]] = {}
        for ep in endpoints:
            groups.setdefault(ep.notified_entity, []).append(ep)
        waits = []
        for group in groups.values():
            if len(group) == len(self.endpoints):
                waits.append(self.restarts.begin(group, method, delay=delay, reason=reason).wait())
            else:
                for ep in group:
                    waits.append(self.restarts.begin((ep,), method, delay=delay, reason=reason).wait())
        if len(waits) == 1:
            return waits[0]
        return gatherResults(waits, consumeErrors=True)

    def _set_service(self, ep: Endpoint, in_service: bool, reason: str | None) -> None:
        ep.in_service = in_service
        ep.out_reason = reason
        ep.note("in service" if in_service else f"out of service ({reason})")
        ep.changed()

    def _take_out(self, ep: Endpoint, reason: str) -> None:
        ep.stop_all_signals()
        for conn in list(ep.connections.values()):
            self.release_connection(ep, conn)
        ep.graceful = False
        self._set_service(ep, False, reason)

    def _back_in_service(self) -> None:
        self._restart_timer = None
        self.restart_due = None
        back = [ep for ep in self.endpoints if ep.out_reason == "restart"]
        for ep in back:
            self._set_service(ep, True, None)
        if back:
            self._announce(back, RestartMethod.RESTART, 0).addErrback(lambda f: None)

    def _graceful_expired(self) -> None:
        self._graceful_timer = None
        self.graceful_due = None
        for ep in self.endpoints:
            self._take_out(ep, "graceful")
        self._announce(list(self.endpoints), RestartMethod.FORCED, 0).addErrback(lambda f: None)

    def fail_line(self, n: int, reason: int = 900) -> Deferred[Any]:
        """
        The line broke: a gateway-initiated DLCX for each of its connections,
        with C{E:} and C{P:} (RFC 3435 §2.3.8), in one datagram; then the
        line is out of service (501) until L{restore_line} or a restart.

        @return: fires with the list of DLCX responses.
        """
        ep = self.line(n)._ep
        code = ReasonCode(reason, REASONS.get(reason, ""))
        commands = [
            Command.create(
                Verb.DLCX, self.protocol.allocate_transaction_id(), ep.name,
                call_id=conn.call_id, connection_id=conn.connection_id, reason_code=code,
                connection_parameters=conn.statistics(), version=self.config.version,
            )
            for conn in ep.connections.values()
        ]
        self._take_out(ep, "failed")
        ep.reason = code
        ep.note(f"line failed ({code})")
        if not commands:
            return succeed([])
        address = self.ne_address(ep)
        if isinstance(address, Deferred):
            return address.addCallback(
                lambda a: gatherResults(self.protocol.transactions.send_commands(commands, a), consumeErrors=True)
            )
        return gatherResults(self.protocol.transactions.send_commands(commands, address), consumeErrors=True)

    def restore_line(self, n: int) -> Deferred[Any]:
        """A failed line is repaired: back in service, announced with RSIP restart."""
        ep = self.line(n)._ep
        ep.reset()
        ep.reason = ReasonCode(0)
        self._set_service(ep, True, None)
        return self._announce([ep], RestartMethod.RESTART, 0)

    def user_activity(self, ep: Endpoint) -> None:
        if ep.procedure is not None:
            self.restarts.activity(ep)
