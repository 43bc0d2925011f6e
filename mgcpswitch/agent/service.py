# -*- test-case-name: tests.test_agent_calls -*-
"""
L{CallControlService}: the call agent as a Twisted service, and the face
the admin sees (L{ICallControl}).

It owns the UDP socket (a L{CallAgentProtocol} on the configured port),
the L{CallControl} that handles what arrives, and the observers; starting
it binds the socket and starts keepalives, stopping it stops them all and
flushes the observers that are services (the CDR writer).

In a cluster (an L{IClusterMember}), the agent commands gateways only
while it is active.  Each term as active is a fresh L{CallControl}: built
while the agent stands by (so a takeover does not wait for it), started
when the agent becomes active (it loads the shared store, takes back the
talking calls, and audits and re-arms every endpoint with its own C{N:}),
and dropped whole when the agent stops being active: its commands still
waiting are abandoned unsent and it writes nothing more, so nothing of
an earlier term can reach a gateway or the store.  A standby answers a
gateway's RSIP with 521 and the active's name in C{N:} (RFC 3435
§2.3.12) and leaves everything else unanswered, so that a gateway whose
agent is gone keeps retransmitting (§4.3) until an agent takes over.
"""

from __future__ import annotations

import random
import socket
from collections import Counter
from dataclasses import replace
from typing import Any, Callable, Iterable, Optional

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, DeferredList, fail, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from zope.interface import implementer

from ..config import Settings
from ..errors import CallControlError, ConfigError, StandbyError
from ..interfaces import (
    ICallControl,
    ICallObserver,
    IClusterMember,
    ICommandHandler,
    IDialPlan,
    IGatewayProfile,
    IMessageWaiting,
    IMessageWaitingSource,
    IPeerListener,
    IStore,
)
from ..mgcp import Command, NotifiedEntity, Response, Verb
from ..transaction import PeerState, Tally, Unanswered
from ..transport import CallAgentProtocol
from ..trunk import TrunkView
from .calls import LegState
from .control import CallControl
from .model import CallView, ClusterView, EndpointView, GatewayView
from .overload import receive_meter

__all__ = ["CallControlService"]


@implementer(ICallControl, ICommandHandler, IPeerListener, IMessageWaiting)
class CallControlService(Service):
    """
    The call agent: listens on C{settings.switch.interface}:C{port} (2727)
    and serves the configured gateways.  C{control} is its L{CallControl};
    the socket's commands and peer reports go to it.
    """

    name = "call-control"
    log = Logger()

    def __init__(
        self,
        reactor: Any,
        settings: Settings,
        dial_plan: IDialPlan,
        profiles: dict[str, IGatewayProfile],
        observers: Iterable[ICallObserver] = (),
        random_source: Optional[random.Random] = None,
        store: Optional[IStore] = None,
        cluster: Optional[IClusterMember] = None,
        allocator: Optional[Any] = None,
    ) -> None:
        """
        @param cluster: this agent's membership of a cluster, if any (its
            store is then the cluster's, whatever C{store} says).
        @param allocator: the transaction ids (a cluster's come from blocks).
        """
        self._reactor = reactor
        self.settings = settings
        self._observers = list(observers)
        jitter: dict[str, Any] = {"random": random_source.uniform} if random_source is not None else {}
        if allocator is not None:
            jitter["allocator"] = allocator
        # The protocol hands what arrives to this service, which hands it to
        # call control: so call control can be given its sender when built.
        self.protocol = CallAgentProtocol(
            reactor, self, settings.transactions, listener=self, accept=self._accept, **jitter,
        )
        self._cluster = cluster
        if cluster is not None:
            store = cluster.store
            cluster.became_active = self._became_active
            cluster.lost_leadership = self._lost_leadership
            self.protocol.transactions.may_command = cluster.holds_lease
        # Trunks live as long as the service (each term's call control uses them).
        self.trunks: dict[str, Any] = {}
        if settings.trunks:
            from ..plugin import PluginContext, build_trunks

            self.trunks = build_trunks(settings, PluginContext(reactor=reactor, settings=settings), self._call_in)
            for trunk in self.trunks.values():
                trunk.keep_messages = settings.switch.ladder  # their messages join the calls' ladders
        self._build: Callable[[], CallControl] = lambda: CallControl(
            reactor, settings, dial_plan, profiles, self.protocol.transactions, self._observers,
            random_source, store, self._counters, self._outcomes, self.trunks,
        )
        self._counters: Counter[str] = Tally()  # counted a few times a call: increments in C
        self._outcomes: Counter[str] = Tally()
        self._subscribers: dict[Callable[[Any], None], Callable[[], None]] = {}
        self.control = self._build()
        self._active = cluster is None  # whether the agent may command gateways
        self.port: Any = None

    # -- the socket's two listeners, forwarded -----------------------------

    def command_received(self, command: Command, source: tuple[str, int]) -> Any:
        if self._active:
            return self.control.command_received(command, source)
        return self._standby_answer(command)

    # -- a cluster's agent ----------------------------------------------------

    def _standby_answer(self, command: Command) -> Response:
        """
        A standby's answer: an RSIP is redirected to the active (521 with
        its name in N:, RFC 3435 §2.3.12); anything else, or an RSIP when no
        active is known, is left unanswered (L{Unanswered}): the gateway
        retransmits, and an agent that takes over meanwhile answers.
        """
        assert self._cluster is not None
        self._counters["standby_commands"] += 1
        holder = self._cluster.view().holder
        if command.verb is Verb.RSIP and holder is not None and holder != self._member_name():
            self._counters["standby_redirects"] += 1
            return Response.create(521, command.transaction_id, "Redirected",
                                   notified_entity=NotifiedEntity.parse(holder))
        raise Unanswered(f"{command.verb} {command.transaction_id}: this agent stands by")

    def _member_name(self) -> str:
        """
        The N: gateways reach this agent at: the member's view's name, not
        its C{name}, which a member that is a Twisted service (the
        ClusterService) holds as its service name ("cluster").
        """
        assert self._cluster is not None
        return str(self._cluster.view().name)

    def _became_active(self, epoch: int) -> None:
        assert self._cluster is not None
        prefix = self._cluster.call_id_prefix
        assert prefix is not None
        if self.control.started:
            self._retire()  # the last term's call control, if not retired yet
        self.log.info("active in epoch {epoch}: taking over the gateways", epoch=epoch)
        self.control.begin_term(prefix, NotifiedEntity.parse(self._member_name()))
        self._active = True
        if self.running:
            self.control.start()  # else startService starts it

    def _lost_leadership(self, reason: Any) -> None:
        self.log.warn("no longer active ({reason}): standing by", reason=getattr(reason, "value", reason))
        self._active = False  # from now on, what gateways send gets a standby's answer
        # The rest on the next turn: this may be called from inside a send
        # (a lease found expired), with the term's code on the stack.
        self._reactor.callLater(0, self._retire_if_standing_by)

    def _retire_if_standing_by(self) -> None:
        if not self._active and self.control.started:
            self._retire()

    def _retire(self) -> None:
        """
        The term is over: its commands still waiting are abandoned unsent,
        its call control stops and writes nothing more, and a fresh one
        waits for the next term.
        """
        self.protocol.transactions.abandon()
        old = self.control
        old.retire()
        self._counters["terms_ended"] += 1
        self.control = self._build()
        self.control.views.local = old.views.local
        for subscriber in self._subscribers:
            self._subscribers[subscriber] = self.control.events.subscribe(subscriber)

    def _call_in(self, trunk: str, call: Any) -> None:
        """A call in from a trunk: a standby cannot take it (503: the peer may try another route)."""
        if self._active:
            self.control.trunks.incoming(trunk, call)
        else:
            self._counters["standby_trunk_calls"] += 1
            call.reject(503)

    def peer_state_changed(self, address: tuple[str, int], state: PeerState) -> None:
        if self._active:
            self.control.peer_state_changed(address, state)

    def _accept(self, address: tuple[str, int]) -> bool:
        return self.control.registry.accept_source(address)

    @property
    def address(self) -> tuple[str, int]:
        host = self.port.getHost()
        return (host.host, host.port)

    def startService(self) -> None:  # noqa: N802
        super().startService()  # type: ignore[no-untyped-call]  # Service is unannotated upstream
        store = self.control.store
        if self._cluster is None and IService.providedBy(store) and not store.running:
            IService(store).startService()  # a cluster's store is its member's to start and stop
        for observer in self._observers:
            if IService.providedBy(observer) and not observer.running:
                IService(observer).startService()
            if IMessageWaitingSource.providedBy(observer):
                observer.attach(self)  # a voicemail system drives message waiting through us
        switch = self.settings.switch
        self.port = self._reactor.listenUDP(switch.port, self.protocol, interface=switch.interface)
        sock = getattr(self.port, "socket", None)  # a real socket (not a test's in-memory port)
        if switch.receive_buffer and sock is not None:
            self._size_receive_buffer(sock, switch.receive_buffer)
        # The overload guard reads the kernel's drops at this socket (a full receive buffer).
        self.control.overload.watch(receive_meter(sock))
        for trunk in self.trunks.values():
            try:
                trunk.startService()
            except CannotListenError as e:
                reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
                raise ConfigError((f"trunk:{trunk.name}", "local_port"),
                                  f"cannot listen on {e.interface or '*'}:{e.port}: {reason}") from None
        host, port = self.address
        self.control.views.local = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.log.info(
            "call agent listening on {interface}:{port} for {count} gateway(s)",
            interface=switch.interface, port=port, count=len(self.settings.gateways),
        )
        if self._active:
            self.control.start()

    def _size_receive_buffer(self, sock: Any, size: int) -> None:
        """
        Ask for C{[switch] receive_buffer} bytes; say what the kernel gave
        (Linux doubles the value asked for its own bookkeeping and caps it
        at net.core.rmem_max, silently).
        """
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        given = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        if given < size:
            self.log.warn(
                "receive buffer: asked for {asked} bytes, the kernel gave {given} "
                "(raise net.core.rmem_max to give more)", asked=size, given=given,
            )
        else:
            self.log.info("receive buffer: {given} bytes", given=given)

    def stopService(self) -> Deferred[Any]:  # noqa: N802
        super().stopService()  # type: ignore[no-untyped-call]  # Service is unannotated upstream
        self.control.stop()
        ds = [maybeDeferred(trunk.stopService) for trunk in self.trunks.values() if trunk.running]
        if self.port is not None:
            self.control.overload.watch(None)
            ds.append(maybeDeferred(self.port.stopListening))
            self.port = None
        for observer in self._observers:
            if IService.providedBy(observer) and observer.running:
                ds.append(maybeDeferred(observer.stopService))
        store = self.control.store
        if self._cluster is None and IService.providedBy(store) and store.running:
            ds.append(maybeDeferred(store.stopService))  # flushes what is queued
        return DeferredList(ds)

    # -- ICallControl --------------------------------------------------------

    def list_gateways(self) -> list[GatewayView]:
        views = self.control.views
        return [views.gateway(g) for g in self.control.registry.gateways.values()]

    def get_gateway(self, name: str) -> Optional[GatewayView]:
        gateway = self.control.registry.gateway(name)
        return self.control.views.gateway(gateway) if gateway is not None else None

    def list_endpoints(self, gateway: Optional[str] = None) -> list[EndpointView]:
        registry = self.control.registry
        if gateway is None:
            endpoints: Iterable[Any] = registry.endpoints.values()
        else:
            record = registry.gateway(gateway)
            endpoints = record.endpoints.values() if record is not None else ()
        return [self.control.views.endpoint(e) for e in endpoints]

    def get_endpoint(self, name: str) -> Optional[EndpointView]:
        endpoint = self.control.registry.endpoint(name)
        return self.control.views.endpoint(endpoint) if endpoint is not None else None

    def list_calls(self) -> list[CallView]:
        views = self.control.views
        return [views.call(c) for c in self.control.recent_calls()]

    def get_call(self, call_id: str) -> Optional[CallView]:
        call = self.control.call(call_id)
        return self.control.views.call(call, ladder=True) if call is not None else None

    def active_calls(self) -> int:
        return len(self.control.calls())

    def _refused_here(self) -> Optional[Deferred[Any]]:
        """A standby's admin is read-only: the failure to give, or None."""
        if self._active:
            return None
        assert self._cluster is not None
        return fail(StandbyError(self._cluster.view().holder))

    def originate(self, a: str, b: str) -> Deferred[str]:
        return self._refused_here() or self.control.operator.originate(a, b)

    def hangup(self, call_id: str) -> Deferred[None]:
        return self._refused_here() or self.control.operator.hangup(call_id)

    def audit_endpoint(self, name: str) -> Deferred[EndpointView]:
        return self._refused_here() or \
            self.control.operator.audit_endpoint(name).addCallback(self.control.views.endpoint)

    def set_gateway_in_service(self, name: str, in_service: bool) -> Deferred[GatewayView]:
        refused = self._refused_here()
        if refused is not None:
            return refused
        gateway = self.control.registry.gateway(name)
        if gateway is None:
            return fail(CallControlError(f"unknown gateway {name}"))
        self.control.registry.set_in_service(gateway, in_service)
        return succeed(self.control.views.gateway(gateway))

    def set_line_services(self, name: str, changes: dict[str, Any]) -> Deferred[EndpointView]:
        refused = self._refused_here()
        if refused is not None:
            return refused
        try:
            endpoint = self.control.operator.change_services(name, changes)
        except CallControlError as e:
            return fail(e)
        return succeed(self.control.views.endpoint(endpoint))

    def set_message_waiting(self, line: str, waiting: bool) -> None:
        if not self._active:
            assert self._cluster is not None
            raise StandbyError(self._cluster.view().holder)
        self.control.operator.set_message_waiting(line, waiting)

    def transaction_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.protocol.transactions.snapshot()
        stats["call_control"] = dict(self.control.counters)
        stats["store"] = self.control.store.stats()
        stats["overload"] = self.control.overload.snapshot()
        return stats

    def cluster(self) -> Optional[ClusterView]:
        return self._cluster.view() if self._cluster is not None else None

    def call_outcomes(self) -> dict[str, int]:
        return dict(self.control.outcomes)

    def list_trunks(self) -> list[TrunkView]:
        # Call control's side of each trunk: the calls in progress with a leg on it.
        calls: dict[str, list[str]] = {}
        for call in self.control.calls():
            for name in {leg.trunk.name for leg in call.legs if leg.trunk is not None and leg.state is not LegState.GONE}:
                calls.setdefault(name, []).append(call.call_id)
        return [replace(trunk.view(), calls=tuple(calls.get(name, ()))) for name, trunk in sorted(self.trunks.items())]

    def get_trunk(self, name: str) -> Optional[TrunkView]:
        wanted = name.lower()
        return next((view for view in self.list_trunks() if view.name.lower() == wanted), None)

    def subscribe(self, observer: Callable[[Any], None]) -> Callable[[], None]:
        # Kept here too: each term's call control has its own event bus.
        self._subscribers[observer] = self.control.events.subscribe(observer)

        def unsubscribe() -> None:
            self._subscribers.pop(observer, lambda: None)()

        return unsubscribe
