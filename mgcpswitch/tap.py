# -*- test-case-name: tests.test_tap -*-
"""
C{twistd mgcpswitch}: the call agent, its web admin, and (from the
configuration's C{[simulator]} section) simulated gateways in the same
process; with C{--demo}, scripted subscribers placing calls.

This module and L{mgcpswitch.gwtap} are the only ones that pick the
running reactor; everything below takes it as an argument.
"""

from __future__ import annotations

import gc
from typing import Any, Optional

from twisted.application.service import IServiceCollection, MultiService
from twisted.python import usage

from .config import Settings, load_settings
from .errors import ConfigError, MGCPError

__all__ = ["Options", "SwitchService", "makeService", "build_switch"]


class Options(usage.Options):
    synopsis = "[--config FILE] [--demo]"
    longdesc = (
        "Run the mgcpswitch call agent (UDP 2727), its web admin (127.0.0.1:8080) and the "
        "simulated gateways of the configuration's [simulator] section.  With no --config, "
        "the embedded defaults run two simulated gateways of eight lines each on loopback."
    )
    optParameters = [
        ["config", "c", None, "INI configuration file (see etc/mgcpswitch.ini); default: embedded"],
        ["port", "p", None, "UDP port of the call agent (overrides [switch] port)", int],
        ["interface", "i", None, "address to listen on (overrides [switch] interface)"],
        ["web", "w", None, "web admin strports description (overrides [web] listen)"],
    ]
    optFlags = [
        ["demo", "d", "scripted subscribers place calls between the simulated lines"],
        ["no-simulator", None, "do not run the [simulator] gateways in this process"],
        ["trace", None, "log every MGCP message (costs ~20 us per message)"],
    ]
    compData = usage.Completions(optActions={"config": usage.CompleteFiles("*.ini")})

    settings: Settings

    def postOptions(self) -> None:  # noqa: N802
        from dataclasses import replace

        try:
            settings = load_settings(self["config"])
        except ConfigError as e:
            raise usage.UsageError(f"configuration error: {e}") from None
        switch = settings.switch
        if self["port"] is not None:
            switch = replace(switch, port=self["port"])
        if self["interface"] is not None:
            switch = replace(switch, interface=self["interface"])
        web = settings.web
        if self["web"] is not None:
            web = replace(web, listen=self["web"])
        # Decided on the endpoint Twisted builds from the description, not on its text.
        from .web.listen import check_exposure

        try:
            check_exposure(web)
        except ConfigError as e:
            raise usage.UsageError(f"--web: {e}" if self["web"] is not None else f"configuration error: {e}") from None
        transactions = settings.transactions
        if self["trace"]:
            transactions = replace(transactions, trace=True)
        if self["demo"] and self["no-simulator"]:
            raise usage.UsageError("--demo drives the simulated gateways: it cannot be used with --no-simulator")
        if self["demo"] and not settings.simulator.gateways:
            raise usage.UsageError("--demo needs simulated gateways ([simulator] gateways = ...)")
        self.settings = replace(settings, switch=switch, web=web, transactions=transactions)


def build_switch(
    reactor: Any,
    settings: Settings,
    *,
    demo: bool = False,
    simulate: bool = True,
    web: bool = True,
    parent: Optional[IServiceCollection] = None,
) -> SwitchService:
    """
    Build the services of a switch: call control (first, so that the
    simulated gateways find it listening), the simulated gateways, the web
    admin, and the demo subscribers.  Children are named:
    C{call-control}, C{gateway:NAME}, C{web}, C{demo}.
    """
    from .agent.service import CallControlService
    from .interfaces import ICallObserverFactory, IDialPlanFactory, IGatewayProfile
    from .plugin import PluginContext, available, find

    context = PluginContext(reactor=reactor, settings=settings)
    try:
        dial_plan = find(IDialPlanFactory, settings.switch.dial_plan).build(
            settings.plugins.get(settings.switch.dial_plan, {}), context
        )
        observers = [
            find(ICallObserverFactory, name).build(settings.plugins.get(name, {}), context)
            for name in settings.switch.observers
        ]
    except MGCPError as e:
        raise ConfigError(("switch", "dial_plan/observers"), str(e)) from None
    profiles = available(IGatewayProfile)
    for gateway in settings.gateways:
        if gateway.profile not in profiles:
            raise ConfigError(
                (f"gateway:{gateway.name}", "profile"),
                f"no gateway profile {gateway.profile!r}; available: {', '.join(sorted(profiles))}",
            )
    top = SwitchService(reactor)
    control = CallControlService(reactor, settings, dial_plan, profiles, observers)
    control.setServiceParent(top)
    gateways = []
    if simulate and settings.simulator.gateways:
        from .gateway import GatewayConfig, GatewayService, SimulatedGateway

        for name in settings.simulator.gateways:
            gateway = settings.gateway(name)
            assert gateway is not None
            if any(local != f"aaln/{i}" for i, local in enumerate(gateway.endpoints, 1)):
                raise ConfigError(
                    (f"gateway:{gateway.name}", "endpoints"),
                    "a simulated gateway has lines aaln/1..N: use 'lines = N'",
                )
            service = GatewayService(SimulatedGateway(reactor, GatewayConfig(
                domain=gateway.name,
                lines=len(gateway.endpoints),
                port=gateway.port,
                interface=gateway.address,
                call_agent=(_connect_address(settings.switch.interface), settings.switch.port),
                restart_delay=0.0,
                media=settings.simulator.media,
                rtp=settings.simulator.rtp,
            )))
            service.setName(f"gateway:{gateway.name}")
            service.setServiceParent(top)
            gateways.append(service)
    if web:
        from .web import build_web_service

        # Where the call agent listens, for the admin's flows and pcaps of ladders that lack it.
        service = build_web_service(control, settings.web, reactor, agent=lambda: control.address)
        service.setName("web")
        service.setServiceParent(top)
    if demo:
        from .demo import DemoService

        service = DemoService(reactor, settings, [g.gateway for g in gateways])
        service.setName("demo")
        service.setServiceParent(top)
    if parent is not None:
        top.setServiceParent(parent)
    return top


def _connect_address(interface: str) -> str:
    """Where local gateways reach a call agent bound to C{interface}."""
    return "127.0.0.1" if interface in ("", "0.0.0.0") else ("::1" if interface == "::" else interface)


def makeService(options: Options) -> SwitchService:  # noqa: N802
    from twisted.internet import reactor

    service = build_switch(
        reactor, options.settings, demo=bool(options["demo"]), simulate=not options["no-simulator"]
    )
    service.freeze_gc = True
    return service


class SwitchService(MultiService):
    """
    The switch's top service.  With C{freeze_gc} (set by the twistd entry
    point only: a test process must keep collecting what its tests leave),
    once the reactor runs, what is alive then (modules, classes, the
    configuration, gateways and their lines) is moved out of the garbage
    collector's full passes with C{gc.freeze()}.  Those objects live as
    long as the process; scanning them made each full pass of a
    10,000-line switch take 25 ms or more, a stall every few seconds under
    load that showed in p99 call setup.
    """

    freeze_gc = False

    def __init__(self, reactor: Any) -> None:
        super().__init__()
        self._reactor = reactor

    def startService(self) -> None:  # noqa: N802
        super().startService()
        if self.freeze_gc:
            self._reactor.callWhenRunning(freeze_startup_objects)


def freeze_startup_objects() -> None:
    gc.collect()
    gc.freeze()
