# -*- test-case-name: tests.test_transaction -*-
"""
Test doubles for MGCP over UDP: an in-memory datagram network driven by a
L{task.Clock}, a fake reactor whose C{listenUDP} attaches to it, and
transaction ids in sequence (L{SequentialIds}) for tests that read them.

Twisted's L{twisted.internet.testing.MemoryReactor} implements TCP, SSL and
UNIX but not UDP, so we keep our own, checked against the real interfaces
with C{verifyClass} at import.  The network scripts loss, duplication,
delay and reordering from a seeded random source, and records every
datagram (time, source, destination, bytes, fate) so tests can assert the
exact MGCP ladder.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet.interfaces import IListeningPort, IReactorUDP, IUDPTransport
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyClass

from .transaction import Address, as_address
from .txid import MAX_TXID, txid_add

__all__ = ["MemoryNetwork", "MemoryUDPPort", "MemoryReactor", "Datagram", "SequentialIds", "run_timers"]


@dataclass(frozen=True)
class Datagram:
    """One datagram the network carried (or dropped)."""

    time: float
    source: Address
    destination: Address
    data: bytes
    fate: str  # "delivered", "dropped", "duplicated", "unreachable"


@implementer(IUDPTransport, IListeningPort)
class MemoryUDPPort:
    """A UDP socket bound to an address of a L{MemoryNetwork}."""

    def __init__(self, network: MemoryNetwork, address: Address, protocol: DatagramProtocol) -> None:
        self.network = network
        self.address = address
        self.protocol = protocol
        self.connected = True

    def write(self, packet: bytes, addr: Address | None = None) -> None:
        if not self.connected:
            raise OSError("port closed")
        if addr is None:
            raise OSError("no destination")
        if len(packet) > self.network.max_datagram:
            raise OSError(f"datagram of {len(packet)} bytes is too large")
        self.network.send(self.address, as_address(addr), packet)

    def connect(self, host: str, port: int) -> None:
        raise NotImplementedError("connected UDP is not simulated")

    def getHost(self) -> Any:  # noqa: N802
        from twisted.internet.address import IPv4Address

        return IPv4Address("UDP", self.address[0], self.address[1])

    def stopListening(self) -> None:  # noqa: N802
        if self.connected:
            self.connected = False
            self.network.unbind(self.address)
            self.protocol.doStop()

    loseConnection = stopListening

    def startListening(self) -> None:  # noqa: N802
        pass

    def setBroadcastAllowed(self, enabled: bool) -> None:  # noqa: N802
        pass

    def getBroadcastAllowed(self) -> bool:  # noqa: N802
        return False


class MemoryNetwork:
    """
    Carries datagrams between L{MemoryUDPPort}s after C{latency} seconds of
    the clock, with scripted faults:

      - C{loss}, C{duplicate}: probabilities applied to every datagram (or
        per direction with L{set_link});
      - C{jitter}: extra uniform delay in [0, jitter], which reorders;
      - L{drop_next}: drop the next datagram(s) matching a predicate.

    Everything random comes from C{rng}, so a test is deterministic.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        latency: float = 0.0,
        jitter: float = 0.0,
        loss: float = 0.0,
        duplicate: float = 0.0,
        seed: int = 0,
        record: bool = True,
        max_datagram: int = 65507,
    ) -> None:
        self.clock = clock
        self.latency = latency
        self.jitter = jitter
        self.loss = loss
        self.duplicate = duplicate
        self.rng = random.Random(seed)
        self.record = record
        self.max_datagram = max_datagram
        self.ports: dict[Address, MemoryUDPPort] = {}
        self.log: list[Datagram] = []
        self._links: dict[tuple[Address, Address], tuple[float, float]] = {}
        self._drops: list[list[Any]] = []
        self._next_port = 40000

    # -- wiring --------------------------------------------------------

    def bind(self, address: Address, protocol: DatagramProtocol) -> MemoryUDPPort:
        host, port = address[0] or "127.0.0.1", address[1]
        if port == 0:
            port = self._ephemeral(host)
        address = (host, port)
        if address in self.ports:
            raise OSError(f"address {address} already in use")
        udp = MemoryUDPPort(self, address, protocol)
        self.ports[address] = udp
        protocol.makeConnection(udp)
        return udp

    def unbind(self, address: Address) -> None:
        self.ports.pop(as_address(address), None)

    def _ephemeral(self, host: str) -> int:
        while (host, self._next_port) in self.ports:
            self._next_port += 1
        self._next_port += 1
        return self._next_port - 1

    # -- faults --------------------------------------------------------

    def set_link(self, source: Address, destination: Address, *, loss: float = 0.0,
                 duplicate: float = 0.0) -> None:
        """Loss and duplication for datagrams from C{source} to C{destination}."""
        self._links[(as_address(source), as_address(destination))] = (loss, duplicate)

    def drop_next(self, predicate: Callable[[bytes], bool] = lambda data: True, count: int = 1) -> None:
        """Drop the next C{count} datagrams whose bytes satisfy C{predicate}."""
        self._drops.append([predicate, count])

    # -- carrying ------------------------------------------------------

    def send(self, source: Address, destination: Address, data: bytes) -> None:
        now = self.clock.seconds()
        for rule in self._drops:
            if rule[1] > 0 and rule[0](data):
                rule[1] -= 1
                if rule[1] == 0:
                    self._drops.remove(rule)
                self._note(now, source, destination, data, "dropped")
                return
        loss, duplicate = self._links.get((source, destination), (self.loss, self.duplicate))
        if loss and self.rng.random() < loss:
            self._note(now, source, destination, data, "dropped")
            return
        copies = 2 if duplicate and self.rng.random() < duplicate else 1
        self._note(now, source, destination, data, "delivered" if copies == 1 else "duplicated")
        for _ in range(copies):
            delay = self.latency + (self.rng.uniform(0, self.jitter) if self.jitter else 0.0)
            self.clock.callLater(delay, self._deliver, source, destination, data)

    def _deliver(self, source: Address, destination: Address, data: bytes) -> None:
        port = self.ports.get(destination)
        if port is None or not port.connected:
            self._note(self.clock.seconds(), source, destination, data, "unreachable")
            return
        port.protocol.datagramReceived(data, source)

    def _note(self, now: float, source: Address, destination: Address, data: bytes, fate: str) -> None:
        if self.record:
            self.log.append(Datagram(now, source, destination, data, fate))

    def pump(self, limit: int = 100_000) -> None:
        """Deliver everything due now (and what that provokes), without moving time."""
        for _ in range(limit):
            due = [c for c in self.clock.getDelayedCalls() if c.getTime() <= self.clock.seconds()]
            if not due:
                return
            self.clock.advance(0)
        raise RuntimeError("the network did not settle")

    def run(self, seconds: float, step: float = 0.01) -> None:
        """Advance the clock by C{seconds} in steps, delivering on the way."""
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end - 1e-12:
            self.pump()
            self.clock.advance(min(step, end - self.clock.seconds()))
        self.pump()

    def messages(self, source: Address | None = None, destination: Address | None = None) -> list[bytes]:
        """Bytes of datagrams delivered (or duplicated), optionally filtered."""
        return [
            d.data for d in self.log
            if d.fate in ("delivered", "duplicated")
            and (source is None or d.source == tuple(source))
            and (destination is None or d.destination == tuple(destination))
        ]


def run_timers(clock: Clock, until: float | None = None, limit: int = 1_000_000) -> None:
    """
    Advance C{clock} exactly to each next scheduled call, running it, until
    none is left (or the next is later than C{until}).  Stepping by a fixed
    increment accumulates float error; this hits every deadline exactly.
    """
    for _ in range(limit):
        calls = clock.getDelayedCalls()
        if not calls:
            break
        when = min(c.getTime() for c in calls)
        if until is not None and when > until:
            clock.advance(until - clock.seconds())
            return
        clock.advance(max(0.0, when - clock.seconds()))
    else:
        raise RuntimeError("timers did not settle")
    if until is not None and clock.seconds() < until:
        clock.advance(until - clock.seconds())


@implementer(IReactorUDP)
class MemoryReactor(Clock):
    """A L{Clock} whose C{listenUDP} binds to a L{MemoryNetwork}."""

    def __init__(self, network: MemoryNetwork | None = None) -> None:
        super().__init__()
        self.network = network if network is not None else MemoryNetwork(self)

    def listenUDP(  # noqa: N802
        self, port: int, protocol: DatagramProtocol, interface: str = "", maxPacketSize: int = 8192
    ) -> MemoryUDPPort:
        return self.network.bind((interface or "127.0.0.1", port), protocol)

    def listenMulticast(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        raise NotImplementedError("multicast is not simulated")


class SequentialIds:
    """
    Transaction ids in sequence from C{start}, wrapping after 999,999,999:
    predictable on purpose, for tests that write the ids they expect (the
    transaction layer's own allocator draws them unpredictably).
    """

    def __init__(self, start: int = 1) -> None:
        if not 1 <= start <= MAX_TXID:
            raise ValueError(f"transaction id {start} out of range")
        self._next = start

    def allocate(self) -> int:
        txid = self._next
        self._next = txid_add(txid, 1)
        return txid


verifyClass(IUDPTransport, MemoryUDPPort)
verifyClass(IReactorUDP, MemoryReactor)
