# -*- test-case-name: tests.test_gateway_faults -*-
"""
Fault injection for reliability tests: a L{GatewayProtocol} that drops,
duplicates or delays a fraction of the datagrams it sends and receives,
drawing every decision from one seeded generator, so that a test run is
reproducible.  Slow answers (a provisional C{100} first, the final response
later) are the gateway's business: see L{SimulatedGateway.command_received}.

The plain L{GatewayProtocol} is used when no datagram fault is configured,
so a gateway without faults pays nothing for this.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime

from ..interfaces import ICommandHandler, IPeerListener
from ..transaction import Address, TransactionConfig
from ..transport import GatewayProtocol
from .config import FaultConfig
from .timers import Timers

__all__ = ["FaultyGatewayProtocol"]


class FaultyGatewayProtocol(GatewayProtocol):
    """
    A gateway protocol with datagram faults in both directions.
    C{counters} counts what was dropped, duplicated and delayed.
    """

    def __init__(
        self,
        clock: IReactorTime,
        handler: ICommandHandler,
        config: TransactionConfig,
        listener: IPeerListener | None,
        *,
        faults: FaultConfig,
        rng: random.Random,
        timers: Timers,
        **layer_options: Any,
    ) -> None:
        super().__init__(clock, handler, config, listener, **layer_options)
        self.faults = faults
        self._rng = rng
        self._timers = timers
        self.fault_counters: Counter[str] = Counter()

    def _inject(self, deliver: Callable[[bytes, Address], None], datagram: bytes,
                address: Address, direction: str) -> None:
        faults = self.faults
        chance = self._rng.random
        counters = self.fault_counters
        if faults.drop and chance() < faults.drop:
            counters[direction + "_dropped"] += 1
            return
        copies = 1
        if faults.duplicate and chance() < faults.duplicate:
            counters[direction + "_duplicated"] += 1
            copies = 2
        for _ in range(copies):
            if faults.delay and chance() < faults.delay:
                counters[direction + "_delayed"] += 1
                self._timers.call_later(faults.delay_seconds, self._late, deliver, datagram, address)
            else:
                deliver(datagram, address)

    def _late(self, deliver: Callable[[bytes, Address], None], datagram: bytes, address: Address) -> None:
        if self.transport is None:
            return
        try:
            deliver(datagram, address)
        except OSError:
            pass  # lost like any datagram

    def _write(self, datagram: bytes, address: Address) -> None:
        self._inject(super()._write, datagram, address, "sent")

    def datagramReceived(self, datagram: bytes, addr: Address) -> None:  # noqa: N802
        self._inject(super().datagramReceived, datagram, addr, "received")
