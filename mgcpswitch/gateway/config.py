# -*- test-case-name: tests.test_gateway_options -*-
"""
Settings of the simulated gateway: frozen, validated at construction.

Timer defaults come from RFC 3435 and RFC 3660 through the digest
(../shared/spec/mgcp-digest.md §0): Tdinit 15 s, Tdmax 600 s, Tdmin 15 s
(our inference, the RFC gives none), T-partial 16 s, T-critical 4 s.  The
restart avalanche delay (MWD) defaults to 0 rather than the RFC's 600 s for
residential gateways because a simulator is started by tests and demos;
`--restart-delay` sets it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..mgcp import DEFAULT_VERSION
from ..transaction import TransactionConfig

__all__ = ["FaultConfig", "GatewayConfig", "VERSIONS"]

#: The protocol versions a simulated gateway takes: MGCP 1.0, and MGCP 1.0
#: with the NCS 1.0 profile (PacketCable's, RFC 3435 §3.2.1: the profile
#: follows the version).  Anything else is answered 528.
VERSIONS = (DEFAULT_VERSION, "MGCP 1.0 NCS 1.0")


def _fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1], not {value!r}")


@dataclass(frozen=True)
class FaultConfig:
    """
    Fault injection for reliability tests: each rate is the fraction of
    datagrams (both directions) or commands it applies to, drawn from a
    generator seeded with C{seed} (None: unseeded).

    @ivar drop: datagrams silently lost.
    @ivar duplicate: datagrams delivered twice.
    @ivar delay: datagrams held back C{delay_seconds} (which reorders them).
    @ivar slow_answer: commands executed and answered only after
        C{slow_seconds}, with a provisional C{100} at once.
    """

    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    delay_seconds: float = 0.5
    slow_answer: float = 0.0
    slow_seconds: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "delay", "slow_answer"):
            _fraction(name, getattr(self, name))
        if self.delay_seconds < 0 or self.slow_seconds < 0:
            raise ValueError("delay_seconds and slow_seconds must not be negative")

    @property
    def datagram_faults(self) -> bool:
        return bool(self.drop or self.duplicate or self.delay)

    @property
    def any(self) -> bool:
        return self.datagram_faults or bool(self.slow_answer)


@dataclass(frozen=True)
class GatewayConfig:
    """
    @ivar domain: the gateway's domain name: endpoints are C{aaln/1..N@domain}.
    @ivar lines: number of analog lines.
    @ivar port: UDP port for MGCP (0: any free port).
    @ivar interface: address to bind MGCP and RTP to.
    @ivar call_agent: the provisioned notified entity (host, port); a host
        name is resolved with the reactor's resolver, never blocking.
    @ivar backup_agents: further call agent addresses, in order: when a
        call agent stops answering (Max2 repetitions, RFC 3435 §4.3) the
        endpoints it served move to the next one of the list.
    @ivar restart_delay: MWD: the first RSIP goes out after a uniform random
        delay in [0, MWD] seconds (RFC 3435 §4.4.6).
    @ivar tdinit, tdmin, tdmax: the "disconnected" timers (§4.4.7).
    @ivar codecs: what the endpoints can do, in preference order.
    @ivar packetization: default packetization period (ms).
    @ivar max_connections: connections one line can hold (540 beyond).
    @ivar rtp: bind a real UDP port per connection; False allocates port
        numbers without binding anything (load tests).
    @ivar media: send 20 ms RTP packets in send-capable modes and count
        packets both ways for the C{P:} statistics.
    @ivar t_partial, t_critical: inter-digit timers of RFC 3660 §2.2.
    @ivar rtp_address: the address written in local SDP (default: the
        interface, or 127.0.0.1 when bound to all interfaces).
    @ivar rtp_port_base: first port number handed out when C{rtp} is False.
    @ivar max_datagram: the C{MD:} we report; larger audit answers get 533.
    @ivar observed_limit: observed events kept before C{B/oef}.
    @ivar quarantine_limit: quarantined events kept before C{B/qbo}.
    @ivar history_limit: entries kept in each line's history (0: none).
    @ivar resolve_ttl: how long a resolved call agent name is cached.
    @ivar version: what the gateway's own commands (RSIP, NTFY, DLCX) say
        after the endpoint: C{MGCP 1.0}, or C{MGCP 1.0 NCS 1.0} for an NCS
        gateway (the call agent then speaks NCS to it).  Commands in any of
        L{VERSIONS} are taken whatever this is.
    """

    domain: str = "rgw1"
    lines: int = 8
    port: int = 2427
    interface: str = "127.0.0.1"
    call_agent: tuple[str, int] = ("127.0.0.1", 2727)
    backup_agents: tuple[tuple[str, int], ...] = ()
    restart_delay: float = 0.0
    tdinit: float = 15.0
    tdmin: float = 15.0
    tdmax: float = 600.0
    codecs: tuple[str, ...] = ("PCMU", "PCMA", "G729", "telephone-event")
    packetization: int = 20
    max_connections: int = 2
    rtp: bool = True
    media: bool = False
    transaction: TransactionConfig = field(default_factory=TransactionConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)
    t_partial: float = 16.0
    t_critical: float = 4.0
    rtp_address: str | None = None
    rtp_port_base: int = 16384
    max_datagram: int = 8192
    observed_limit: int = 64
    quarantine_limit: int = 64
    history_limit: int = 200
    resolve_ttl: float = 300.0
    version: str = DEFAULT_VERSION

    def __post_init__(self) -> None:
        if not self.domain or "@" in self.domain or any(c.isspace() for c in self.domain):
            raise ValueError(f"bad gateway domain {self.domain!r}")
        if self.lines < 1:
            raise ValueError("a gateway needs at least one line")
        if not 0 <= self.port < 65536:
            raise ValueError(f"bad port {self.port}")
        for host, port in self.call_agents:
            if not host or not 0 < port < 65536:
                raise ValueError(f"bad call agent address {(host, port)!r}")
        if self.restart_delay < 0:
            raise ValueError("restart_delay must not be negative")
        if not 1.0 <= self.tdinit <= self.tdmax or self.tdmin < 0:
            raise ValueError("need 1 <= tdinit <= tdmax and tdmin >= 0 (RFC 3435 §4.4.7)")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self.packetization < 1:
            raise ValueError("packetization must be positive")
        unknown = [c for c in self.codecs if c.upper() not in _KNOWN_CODECS]
        if unknown or not self.codecs:
            raise ValueError(f"unsupported codecs {unknown!r}; known: {sorted(_KNOWN_CODECS)}")
        if self.t_partial <= 0 or self.t_critical <= 0:
            raise ValueError("inter-digit timers must be positive")
        if self.version not in VERSIONS:
            raise ValueError(f"unsupported version {self.version!r}; known: {', '.join(VERSIONS)}")
        if self.faults.slow_answer and self.faults.slow_seconds >= self.transaction.execution_timeout:
            raise ValueError("slow_seconds must stay below the transaction's execution_timeout")

    @property
    def call_agents(self) -> tuple[tuple[str, int], ...]:
        """The call agent list: the provisioned one, then the backups."""
        return (self.call_agent, *self.backup_agents)

    @property
    def media_address(self) -> str:
        if self.rtp_address:
            return self.rtp_address
        if self.interface in ("", "0.0.0.0", "::"):
            return "127.0.0.1"
        return self.interface


_KNOWN_CODECS = frozenset({"PCMU", "PCMA", "G729", "TELEPHONE-EVENT"})
