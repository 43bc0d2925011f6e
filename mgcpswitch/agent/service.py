# -*- test-case-name: tests.test_agent_calls -*-
"""
L{CallControlService}: the call agent as a Twisted service.

It owns the UDP socket (a L{CallAgentProtocol} on the configured port),
the L{CallControl} that handles what arrives, and the observers; starting
it binds the socket and starts keepalives, stopping it stops them all and
flushes the observers that are services (the CDR writer).
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.logger import Logger
from zope.interface import implementer

from ..interfaces import ICallControl, ICallObserver, IDialPlan, IGatewayProfile
from ..transport import CallAgentProtocol
from .control import CallControl

__all__ = ["CallControlService"]


@implementer(ICallControl)
class CallControlService(Service):
    """
    The call agent: listens on C{settings.switch.interface}:C{port} (2727)
    and serves the configured gateways.  Provides L{ICallControl} by
    delegating to its L{CallControl} (C{self.control}).
    """

    name = "call-control"
    log = Logger()

    def __init__(
        self,
        reactor: Any,
        settings: Any,
        dial_plan: IDialPlan,
        profiles: dict[str, IGatewayProfile],
        observers: Iterable[ICallObserver] = (),
        random_source: Any = None,
    ) -> None:
        self._reactor = reactor
        self.settings = settings
        self._observers = list(observers)
        self.control = CallControl(reactor, settings, dial_plan, profiles, self._observers, random_source)
        jitter = {"random": random_source.uniform} if random_source is not None else {}
        self.protocol = CallAgentProtocol(
            reactor, self.control, settings.transactions, listener=self.control,
            accept=self.control.accept_source, **jitter,
        )
        self.control.set_sender(self.protocol.transactions)
        self.port: Any = None

    @property
    def address(self) -> tuple[str, int]:
        host = self.port.getHost()
        return (host.host, host.port)

    def startService(self) -> None:  # noqa: N802
        super().startService()
        for observer in self._observers:
            if IService.providedBy(observer) and not observer.running:
                observer.startService()
        switch = self.settings.switch
        self.port = self._reactor.listenUDP(switch.port, self.protocol, interface=switch.interface)
        self.log.info(
            "call agent listening on {interface}:{port} for {count} gateway(s)",
            interface=switch.interface, port=self.port.getHost().port,
            count=len(self.settings.gateways),
        )
        self.control.start_gateways()

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
        return DeferredList(ds)

    # ICallControl, by delegation.
    def __getattr__(self, name: str) -> Any:
        if name in ICallControl.names():
            return getattr(self.control, name)
        raise AttributeError(name)
