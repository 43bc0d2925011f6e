# -*- test-case-name: tests.test_agent_registry -*-
"""
Gateways and endpoints as the call agent knows them: the values the
registry (L{mgcpswitch.agent.registry}) keeps and the rest of the agent
reads, and what the registry tells the coordinator (L{IRegistryListener}).
"""

from __future__ import annotations

import enum
import ipaddress
from collections import Counter, deque
from typing import Iterable, Optional

from twisted.internet.interfaces import IDelayedCall
from zope.interface import Interface

from ..config import GatewaySettings, LineServices
from ..interfaces import IGatewayProfile
from ..mgcp import DEFAULT_VERSION, DigitMap, EndpointName, LocalConnectionOptions, Response
from ..transaction import Tally
from . import commands as cmd
from .lines import Line
from .model import GatewayState, Hook

__all__ = ["Gateway", "Endpoint", "IRegistryListener", "Outage", "Address"]

Address = tuple[str, int]


class Outage(enum.Enum):
    """Until when endpoints whose state the gateway lost are away."""

    __hash__ = object.__hash__
    RESTARTED = "restarted"  # back now: audited
    RESTARTING = "restarting"  # back when the restart delay ends
    OUT_OF_SERVICE = "out-of-service"  # until a later restart


class IRegistryListener(Interface):
    """What the registry tells the coordinator (all called after its own state changed)."""

    def endpoints_lost(endpoints: Iterable[Endpoint], outage: Outage) -> None:
        """
        The gateway dropped these endpoints' connections (an RSIP restart
        or forced, a graceful restart's delay ending): an L{Outage} says
        until when.
        """

    def auditing(endpoints: Iterable[Endpoint]) -> None:
        """An audit of these endpoints begins: their lines' state is unknown until it answers."""

    def audited(endpoint: Endpoint, hook: Hook, connection_ids: frozenset[str]) -> bool:
        """
        An endpoint's audit answered: its hook (a L{Hook}, UNKNOWN when
        not said) and the connection ids the gateway holds for it.  Returns
        whether that settled the line (False: a connection was being
        created, so the line must be audited again later).
        """

    def endpoint_failed(endpoint: Endpoint, response: Response) -> None:
        """A command to the endpoint was answered with an error."""

    def gateway_down(gateway: Gateway) -> None:
        """The gateway stopped answering (or took every endpoint out of service)."""


class Gateway:
    """A gateway as the registry knows it."""

    __slots__ = (
        "name", "key", "settings", "address", "allowed", "match_port", "state", "in_service",
        "last_rsip", "last_rsip_at", "last_seen", "keepalive", "keepalive_interval", "profile",
        "endpoints", "counters", "audit_queue", "audits_in_flight", "batches", "probing", "probe_since",
        "timer", "version", "options", "codecs",
    )

    def __init__(self, settings: GatewaySettings, profile: Optional[IGatewayProfile],
                 keepalive_interval: float) -> None:
        self.name: str = settings.name
        self.key = settings.name.lower()
        self.settings = settings
        self.address: Address = (settings.address, settings.port)
        self.allowed = settings.allowed
        self.match_port: bool = settings.match_port
        self.state = GatewayState.UNKNOWN
        self.in_service = True
        self.last_rsip: Optional[str] = None
        self.last_rsip_at: Optional[float] = None
        self.last_seen: Optional[float] = None  # when it last sent a command, or answered after a doubt
        self.keepalive: Optional[IDelayedCall] = None
        self.keepalive_interval = keepalive_interval
        self.profile = profile
        self.endpoints: dict[str, Endpoint] = {}  # by local name, lower case
        self.counters: Counter[str] = Tally()  # two increments a datagram: in C
        self.audit_queue: deque[Endpoint] = deque()
        self.audits_in_flight = 0
        self.batches = 0  # RSIP or audit bookkeeping of its endpoints still to do, a slice a turn
        self.probing = False  # a liveness AUEP is in flight
        self.probe_since: Optional[float] = None  # when it was sent
        self.timer: Optional[IDelayedCall] = None  # a restart's or graceful restart's delay
        self.version = DEFAULT_VERSION  # MGCP 1.0, or the profile it registered with (NCS 1.0)
        # What to ask of it in LCO, and the codecs to offer it (None: any).
        self.options: Optional[LocalConnectionOptions] = None
        self.codecs: Optional[frozenset[str]] = None

    def accepts(self, address: Address) -> bool:
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

    def __repr__(self) -> str:
        return f"<Gateway {self.name} {self.state.value}>"


class Endpoint:
    """
    One endpoint of a gateway (an analog line).

    @ivar connections: the connections the switch holds on it (connection
        id -> call id), written by whoever creates and deletes them.
    @ivar needs_audit: the gateway may hold a connection the switch could
        not delete (or whose CRCX answer was lost): audit it again.
    @ivar services: its services (L{LineServices}): the configuration's,
        then what star codes or the operator changed.
    """

    __slots__ = ("name", "key", "gateway", "number", "digit_map", "in_service", "needs_audit",
                 "connections", "line", "services", "call_events", "mwi_shown")

    def __init__(self, name: EndpointName, gateway: Gateway, number: Optional[str],
                 digit_map: DigitMap, services: LineServices = LineServices()) -> None:
        self.name = name
        self.key = name.lower()
        self.gateway = gateway
        self.number = number
        self.digit_map = digit_map
        self.in_service = True
        self.needs_audit = False
        self.connections: dict[str, str] = {}
        self.line = Line(self)
        self.services = services
        # What a line in a call is asked to report: the hang-up, and the
        # hook-flash when one of its services uses it.
        self.call_events = cmd.HANG_UP_FLASH_EVENTS if services.flash else cmd.HANG_UP_EVENTS
        self.mwi_shown: Optional[bool] = None  # the indicator the gateway was last told

    def __repr__(self) -> str:
        return f"<Endpoint {self.name}>"
