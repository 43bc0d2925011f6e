# -*- test-case-name: tests.test_agent_calls -*-
"""
L{CallControlService}: the call agent as a Twisted service, and the face
the admin sees (L{ICallControl}).

It owns the UDP socket (a L{CallAgentProtocol} on the configured port),
the L{CallControl} that handles what arrives, and the observers; starting
it binds the socket and starts keepalives, stopping it stops them all and
flushes the observers that are services (the CDR writer).
"""

from __future__ import annotations

import random
from typing import Any, Callable, Iterable, Optional

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, DeferredList, fail, maybeDeferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from ..config import Settings
from ..errors import CallControlError
from ..interfaces import (
    ICallControl,
    ICallObserver,
    ICommandHandler,
    IDialPlan,
    IMessageWaiting,
    IMessageWaitingSource,
    IGatewayProfile,
    IPeerListener,
    IStore,
)
from ..mgcp import Command
from ..transaction import PeerState
from ..transport import CallAgentProtocol
from .control import CallControl
from .model import CallView, EndpointView, GatewayView

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
    ) -> None:
        self._reactor = reactor
        self.settings = settings
        self._observers = list(observers)
        jitter = {"random": random_source.uniform} if random_source is not None else {}
        # The protocol hands what arrives to this service, which hands it to
        # call control: so call control can be given its sender when built.
        self.protocol = CallAgentProtocol(
            reactor, self, settings.transactions, listener=self, accept=self._accept, **jitter,
        )
        self.control = CallControl(
            reactor, settings, dial_plan, profiles, self.protocol.transactions, self._observers,
            random_source, store,
        )
        self.port: Any = None

    # -- the socket's two listeners, forwarded -----------------------------

    def command_received(self, command: Command, source: tuple[str, int]) -> Any:
        return self.control.command_received(command, source)

    def peer_state_changed(self, address: tuple[str, int], state: PeerState) -> None:
        self.control.peer_state_changed(address, state)

    def _accept(self, address: tuple[str, int]) -> bool:
        return self.control.registry.accept_source(address)

    @property
    def address(self) -> tuple[str, int]:
        host = self.port.getHost()
        return (host.host, host.port)

    def startService(self) -> None:  # noqa: N802
        super().startService()
        store = self.control.store
        if IService.providedBy(store) and not store.running:
            store.startService()
        for observer in self._observers:
            if IService.providedBy(observer) and not observer.running:
                observer.startService()
            if IMessageWaitingSource.providedBy(observer):
                observer.attach(self)  # a voicemail system drives message waiting through us
        switch = self.settings.switch
        self.port = self._reactor.listenUDP(switch.port, self.protocol, interface=switch.interface)
        host, port = self.address
        self.control.views.local = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.log.info(
            "call agent listening on {interface}:{port} for {count} gateway(s)",
            interface=switch.interface, port=port, count=len(self.settings.gateways),
        )
        self.control.start()

    def stopService(self) -> Deferred[Any]:  # noqa: N802
        super().stopService()
        self.control.stop()
        ds = []
        if self.port is not None:
            ds.append(maybeDeferred(self.port.stopListening))
            self.port = None
        for observer in self._observers:
            if IService.providedBy(observer) and observer.running:
                ds.append(maybeDeferred(observer.stopService))
        store = self.control.store
        if IService.providedBy(store) and store.running:
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

    def originate(self, a: str, b: str) -> Deferred[str]:
        return self.control.operator.originate(a, b)

    def hangup(self, call_id: str) -> Deferred[None]:
        return self.control.operator.hangup(call_id)

    def audit_endpoint(self, name: str) -> Deferred[EndpointView]:
        return self.control.operator.audit_endpoint(name).addCallback(self.control.views.endpoint)

    def set_gateway_in_service(self, name: str, in_service: bool) -> Deferred[GatewayView]:
        gateway = self.control.registry.gateway(name)
        if gateway is None:
            return fail(CallControlError(f"unknown gateway {name}"))
        self.control.registry.set_in_service(gateway, in_service)
        return succeed(self.control.views.gateway(gateway))

    def set_line_services(self, name: str, changes: dict[str, Any]) -> Deferred[EndpointView]:
        try:
            endpoint = self.control.change_services(name, changes)
        except CallControlError as e:
            return fail(e)
        return succeed(self.control.views.endpoint(endpoint))

    def set_message_waiting(self, line: str, waiting: bool) -> None:
        self.control.set_message_waiting(line, waiting)

    def transaction_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.protocol.transactions.snapshot()
        stats["call_control"] = dict(self.control.counters)
        stats["store"] = self.control.store.stats()
        return stats

    def call_outcomes(self) -> dict[str, int]:
        return dict(self.control.outcomes)

    def subscribe(self, observer: Callable[[Any], None]) -> Callable[[], None]:
        return self.control.events.subscribe(observer)
