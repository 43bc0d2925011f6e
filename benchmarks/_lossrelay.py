#!/usr/bin/env python3
"""
A lossy UDP relay between a call agent and its gateways, in its own
process (benchmarks/bench_loss.py starts it): every datagram, each way, is
dropped, duplicated or held back with the given chances, drawn from one
seeded generator.

    python benchmarks/_lossrelay.py --agent 127.0.0.1:A --listen Q \\
        --pairs G1:R1,G2:R2 [--drop 0.3] [--duplicate 0.05] [--delay 0.05] \\
        [--delay-seconds 0.3] [--seed 1]

The gateways aim at 127.0.0.1:Q; the agent is configured with gateway i at
127.0.0.1:Ri.  A datagram from gateway port Gi goes to the agent from Ri; one
from the agent to Ri goes to gateway port Gi from Q.  So each side sees one
fixed peer address, as without the relay.

SIGUSR1 stops the faults (the loss "stops"); SIGTERM ends the relay.  It
prints one JSON line of counts when the faults stop and when it ends.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
from collections import Counter
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol


class Faults:
    def __init__(self, drop: float, duplicate: float, delay: float, delay_seconds: float, seed: int) -> None:
        self.drop, self.duplicate, self.delay, self.delay_seconds = drop, duplicate, delay, delay_seconds
        self.rng = random.Random(seed)
        self.on = True
        self.counts: Counter[str] = Counter()

    def send(self, port: Any, data: bytes, address: tuple[str, int], direction: str) -> None:
        counts = self.counts
        counts[direction] += 1
        if self.on:
            chance = self.rng.random
            if chance() < self.drop:
                counts[direction + " dropped"] += 1
                return
            if chance() < self.duplicate:
                counts[direction + " duplicated"] += 1
                port.write(data, address)
            if chance() < self.delay:
                counts[direction + " delayed"] += 1
                reactor.callLater(self.delay_seconds, port.write, data, address)
                return
        port.write(data, address)


class GatewayFacing(DatagramProtocol):
    """Port Q: datagrams from gateway port Gi go on to the agent from Ri."""

    def __init__(self, faults: Faults, agent: tuple[str, int]) -> None:
        self.faults, self.agent = faults, agent
        self.towards_agent: dict[int, Any] = {}  # Gi -> the Ri port

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        port = self.towards_agent.get(addr[1])
        if port is not None:
            self.faults.send(port, data, self.agent, "to agent")


class AgentFacing(DatagramProtocol):
    """Port Ri: datagrams from the agent go on to gateway port Gi from Q."""

    def __init__(self, faults: Faults, gateway_facing: GatewayFacing, gateway_port: int) -> None:
        self.faults, self.gateway_facing, self.gateway_port = faults, gateway_facing, gateway_port

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        self.faults.send(self.gateway_facing.transport, data, ("127.0.0.1", self.gateway_port), "to gateways")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", required=True)
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--pairs", required=True, help="G1:R1,G2:R2,...")
    p.add_argument("--drop", type=float, default=0.3)
    p.add_argument("--duplicate", type=float, default=0.05)
    p.add_argument("--delay", type=float, default=0.05)
    p.add_argument("--delay-seconds", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    host, _, port = a.agent.rpartition(":")
    faults = Faults(a.drop, a.duplicate, a.delay, a.delay_seconds, a.seed)
    facing = GatewayFacing(faults, (host, int(port)))
    reactor.listenUDP(a.listen, facing, interface="127.0.0.1")
    for pair in a.pairs.split(","):
        g, r = (int(x) for x in pair.split(":"))
        facing.towards_agent[g] = reactor.listenUDP(r, AgentFacing(faults, facing, g), interface="127.0.0.1")

    def report(event: str) -> None:
        print(json.dumps({"event": event, **faults.counts}), flush=True)

    def stop_faults(*_: Any) -> None:
        reactor.callFromThread(lambda: (setattr(faults, "on", False), report("faults stopped")))

    def end(*_: Any) -> None:
        reactor.callFromThread(lambda: (report("ended"), reactor.stop()))

    signal.signal(signal.SIGUSR1, stop_faults)
    signal.signal(signal.SIGTERM, end)
    print(json.dumps({"event": "listening"}), flush=True)
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    sys.exit(main())
