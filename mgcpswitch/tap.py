# -*- test-case-name: tests.test_tap -*-
"""
C{twistd mgcpswitch}: the call agent, its web admin, and (from the
configuration's C{[simulator]} section) simulated gateways in the same
process; with C{--demo}, scripted subscribers placing calls.

This module and L{mgcpswitch.gwtap} are the only ones that pick the
running reactor; everything below takes it as an argument.
"""

from __future__ import annotations

import errno
import gc
from typing import Any, NoReturn, Optional

from twisted.application.service import IService, IServiceCollection, MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.python import usage

from .config import Settings, load_settings
from .errors import ConfigError
from .transport import connect_address

__all__ = ["Options", "SwitchService", "makeService", "build_switch"]


def exit_with(error: ConfigError, source: str) -> NoReturn:
    """
    End twistd with one line naming what to fix (and exit status 1), not a
    traceback: the configuration file, then the section and key.
    """
    where = "" if error.path[0] == source else f"{source}: "
    raise SystemExit(f"mgcpswitch: {where}{error}")


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
        """
        Read the configuration.  A mistake in the file ends twistd with one
        line naming it; a bad option value is a usage error.
        """
        from dataclasses import replace

        from .config import check_web_settings, interface

        try:
            settings = load_settings(self["config"])
        except ConfigError as e:
            exit_with(e, self["config"] or "<embedded defaults>")
        switch = settings.switch
        if self["port"] is not None:
            switch = replace(switch, port=self["port"])
        if self["interface"] is not None:
            try:
                switch = replace(switch, interface=interface(self["interface"]))
            except ValueError as e:
                raise usage.UsageError(f"--interface: {e}") from None
        if settings.cluster is not None and settings.cluster.name is None and switch.interface in ("", "0.0.0.0", "::"):
            raise usage.UsageError("--interface: a cluster's agent listening on every address needs [cluster] name")
        web = settings.web
        if self["web"] is not None:
            web = replace(web, listen=self["web"])
        try:
            check_web_settings(web)
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
    from .agent.store import build_store
    from .plugin import PluginContext, enable

    plugins = enable(settings, PluginContext(reactor=reactor, settings=settings))
    top = SwitchService(reactor, settings.source)
    if settings.cluster is not None:
        member = build_member(reactor, settings)
        member.setServiceParent(top)  # before call control: it stops after, with the last writes
        control = CallControlService(
            reactor, settings, plugins.dial_plan, dict(plugins.profiles), plugins.observers,
            cluster=member, allocator=member.allocator,
        )
    else:
        control = CallControlService(
            reactor, settings, plugins.dial_plan, dict(plugins.profiles), plugins.observers,
            store=build_store(reactor, settings.store),
        )
    top.add(control, "switch", port="port", address="interface")
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
            gateway_service = GatewayService(SimulatedGateway(reactor, GatewayConfig(
                domain=gateway.name,
                lines=len(gateway.endpoints),
                port=gateway.port,
                interface=gateway.address,
                call_agent=(connect_address(settings.switch.interface, gateway.address), settings.switch.port),
                restart_delay=0.0,
                media=settings.simulator.media,
                rtp=settings.simulator.rtp,
            )))
            service: IService = gateway_service  # named and parented as a service (Twisted's API)
            service.setName(f"gateway:{gateway.name}")
            top.add(service, f"gateway:{gateway.name}", port="port", address="address")
            gateways.append(gateway_service)
    if web:
        from .web import build_web_service

        try:
            # Where the call agent listens, for the admin's flows and pcaps of ladders that lack it.
            service = build_web_service(control, settings.web, reactor, agent=lambda: control.address)
        except (ValueError, OSError) as e:  # strports cannot parse it, or read its key or certificate
            reason = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) else str(e)
            raise ConfigError(("web", "listen"), f"{settings.web.listen!r}: {reason}") from None
        service.setName("web")
        top.add(service, "web", port="listen", address="listen")
    if demo:
        from .demo import DemoService

        demo_service: IService = DemoService(reactor, settings, [g.gateway for g in gateways])
        demo_service.setName("demo")
        demo_service.setServiceParent(top)
    if parent is not None:
        switch: IService = top
        switch.setServiceParent(parent)
    return top


def build_member(reactor: Any, settings: Settings) -> Any:
    """
    This agent's membership of the cluster C{[store] url} and C{[cluster]}
    describe (a L{mgcpswitch.cluster.service.ClusterService}).  The
    database need not be up yet: the agent stands by until it is.
    """
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        raise ConfigError(("store", "url"), "a PostgreSQL store needs psycopg: pip install 'mgcpswitch[postgresql]'")
    from .cluster.leadership import LeaseSettings
    from .cluster.service import ClusterService, MemberSettings

    try:
        conninfo_to_dict(settings.store.url)
    except psycopg.ProgrammingError as e:
        raise ConfigError(("store", "url"), f"not a PostgreSQL URL: {e}") from None
    cluster, store = settings.cluster, settings.store
    assert cluster is not None
    member = ClusterService(reactor, reactor, MemberSettings(
        dsn=store.url, name=cluster.member_name(settings.switch),
        lease=LeaseSettings(heartbeat=cluster.heartbeat, lease=cluster.lease, idle_timeout=cluster.idle_timeout),
        batch_size=store.batch_size, flush_interval=store.flush_interval, txid_block_size=cluster.txid_block_size,
    ))
    service: IService = member
    service.setName("cluster")
    return member


def makeService(options: Options) -> SwitchService:  # noqa: N802
    """
    The switch twistd runs.  A configuration mistake found while building
    it (a plugin's section, an unknown plugin) or while starting it (a port
    in use) ends twistd with one line naming the section and key.
    """
    from twisted.internet import reactor

    try:
        service = build_switch(
            reactor, options.settings, demo=bool(options["demo"]), simulate=not options["no-simulator"]
        )
    except ConfigError as e:
        exit_with(e, options.settings.source)
    service.freeze_gc = True
    # A daemon's parent waits for the child's word on a pipe that only an
    # Exception writes to (SystemExit would leave it waiting for ever): there
    # the error goes to the parent, which prints it, and to the log.
    parent = options.parent
    service.exit_on_error = parent is None or bool(parent.get("nodaemon", True))
    return service


class SwitchService(MultiService):
    """
    The switch's top service.

    Its children listen on what the configuration names (L{add} records
    the section and keys); a child that cannot listen makes starting fail
    with a L{ConfigError} naming them (C{[switch] port: cannot listen on
    127.0.0.1:2727: Address already in use}).  Stopping stops the children
    that started (or listen after their privileged start), so a switch that
    failed to start can be stopped.
    With C{exit_on_error} (set by the twistd entry point only) that error
    ends the process with one line instead (twistd -n).

    With C{freeze_gc} (set by the twistd entry point only: a test process
    must keep collecting what its tests leave), once the reactor runs, what
    is alive then (modules, classes, the configuration, gateways and their
    lines) is moved out of the garbage collector's full passes with
    C{gc.freeze()}.  Those objects live as long as the process; scanning
    them made each full pass of a 10,000-line switch take 25 ms or more, a
    stall every few seconds under load that showed in p99 call setup.
    Young collections are then made rarer (L{YOUNG_COLLECTION}).
    """

    freeze_gc = False
    exit_on_error = False

    def __init__(self, reactor: Any, source: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # MultiService is unannotated upstream
        self._reactor = reactor
        self._source = source  # where the configuration came from, for exit_on_error
        self._origins: dict[str, tuple[str, str, str]] = {}
        self._privileged: list[IService] = []  # children whose privileged start is done

    def add(self, service: IService, section: str, *, port: str, address: str) -> None:
        """Add a child that listens where C{[section] port} and C{address} say."""
        service.setServiceParent(self)
        self._origins[service.name] = (section, port, address)

    def privilegedStartService(self) -> None:  # noqa: N802
        Service.privilegedStartService(self)
        for child in list(self):
            self._start(child, child.privilegedStartService)
            self._privileged.append(child)  # the admin listens from here on

    def startService(self) -> None:  # noqa: N802
        Service.startService(self)
        for child in list(self):
            self._start(child, child.startService)
        if self.freeze_gc:
            self._reactor.callWhenRunning(freeze_startup_objects)

    def stopService(self) -> Deferred[Any]:  # noqa: N802
        """Stop the children that run or listen (all of them, unless starting failed)."""
        Service.stopService(self)
        started = [child for child in reversed(list(self)) if child.running or child in self._privileged]
        self._privileged = []
        return DeferredList([maybeDeferred(child.stopService) for child in started])

    def _start(self, child: IService, start: Any) -> None:
        try:
            start()
        except CannotListenError as e:
            error = self._cannot_listen(child, e)
            if self.exit_on_error:
                exit_with(error, self._source)
            raise error from None
        except ConfigError as error:  # a child that names what to fix itself (a trunk's port)
            if self.exit_on_error:
                exit_with(error, self._source)
            raise

    def _cannot_listen(self, child: IService, e: CannotListenError) -> ConfigError:
        section, port, address = self._origins.get(child.name, (child.name, "port", "address"))
        reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
        key = address if getattr(e.socketError, "errno", None) == errno.EADDRNOTAVAIL else port
        return ConfigError((section, key), f"cannot listen on {e.interface or '*'}:{e.port}: {reason}")


#: Allocations between two young collections in the switch (CPython's
#: default: 700).  Why: a switch's live calls hold tens of thousands of
#: tracked objects, most of which die with their call.  At 700, young
#: collections came 27 times a second at 400 calls/s and promoted enough
#: of them that a full collection (18-100 ms) ran every 6-7 s, since the
#: freeze keeps the oldest generation small.  At 2,000, four full
#: collections a run instead of ten; at the knee (400 calls/s) none of
#: eight surges was followed by the 12-14 s of refusals that three of four
#: had at 700 (docs/PERFORMANCE.md, eighth round: few runs, on a machine
#: that got faster meanwhile; a lead more than a proof).  At 10,000 the
#: young collections themselves paused 34 ms.  Most of what those young
#: collections promoted was the codec's table churn, gone since (ninth
#: round): 2,000 against 700 was not measured again after that.
YOUNG_COLLECTION = 2000


def freeze_startup_objects() -> None:
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION, middle, oldest)
