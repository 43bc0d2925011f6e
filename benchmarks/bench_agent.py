#!/usr/bin/env python3
"""
The call agent's own cost per basic call, alone in its process: the real
CallControlService (transaction layer, codec, call control) on the
in-memory network, against scripted gateways that answer with canned
datagrams and drive calls with pre-built NTFYs (no simulated gateway, no
sockets).  A benchmark, not a test: it prints figures.

The agent runs on this script's own reactor (L{BenchReactor}): timers in
a heap, as Twisted's real reactor keeps them, and datagrams handed over
in order from a queue.  The tests' MemoryReactor (a task.Clock that sorts
every pending call on each callLater and each step) cost about a quarter
of the figure by itself, which hid the agent's own cost; since the harness
is this script's, old and new code (--repo) run on the same one.

    python benchmarks/bench_agent.py [--calls 2000] [--lines 100] [--repo DIR] [--callgrind]

Two figures, for one checkout or, with --repo, another one (the same
script measures old and new code one after the other):
  - CPU microseconds per call (time.process_time over the measured calls),
    which depends on the machine and on what else it runs;
  - with --callgrind, instructions per call: the script runs itself twice
    under valgrind's callgrind (N and 5N calls) and prints the difference
    over 4N calls, which is repeatable whatever else the machine does
    (the way to compare old and new code on a shared machine).

Each call is: caller off hook, dial tone, digits, the callee's CRCX and
MDCXs, the callee answers, the caller hangs up, both DLCXs, the callee
hangs up.  The scripted gateways answer every command at once (no loss),
as a gateway on loopback would.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

# At module level, not in the reactor's methods: an import statement run
# per timer and per pump (callLater, _push, _run_due) cost thousands of
# instructions each (the import system reads the module's spec, raising
# and clearing an AttributeError): 55 thousand a call, 2 % of the figure,
# the harness's cost and not the agent's.
from twisted.internet.base import DelayedCall as _DelayedCall

HERE = os.path.dirname(os.path.abspath(__file__))

_CMD = re.compile(rb"^([A-Z]{4}) (\d+) (\S+)", re.M)
_X = re.compile(rb"^X: ?(\S+)", re.M)


def ini(lines: int, store: bool) -> str:
    return (
        "[switch]\ninterface = 127.0.0.1\nport = 2727\nobservers =\nladder = no\nkeepalive_interval = 0\n"
        + ("[store]\nurl = memory\n" if store else "")
        + f"[gateway:gwa]\naddress = 127.0.0.2\nlines = {lines}\nnumbers = 1001-{1000 + lines}\n"
        + f"[gateway:gwb]\naddress = 127.0.0.3\nlines = {lines}\nnumbers = 2001-{2000 + lines}\n"
    )


class ScriptedGateway:
    """A datagram protocol answering the agent's commands with canned bytes; it remembers X: per line."""

    def __init__(self, address: tuple[str, int], agent: tuple[str, int]) -> None:
        self.address = address
        self.agent = agent
        self.transport: Any = None
        self.requests: dict[bytes, bytes] = {}  # endpoint -> X:
        self.connections = 0
        self._txid = 500_000_000 + address[0].__hash__() % 1000 * 100_000
        host = address[0]
        self._sdp = (b"\r\nv=0\r\no=- 1 1 IN IP4 " + host.encode() + b"\r\ns=-\r\nc=IN IP4 " + host.encode()
                     + b"\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\n")

    def makeConnection(self, transport: Any) -> None:  # noqa: N802
        self.transport = transport

    def doStop(self) -> None:  # noqa: N802
        pass

    def datagramReceived(self, data: bytes, source: Any) -> None:  # noqa: N802
        answers = []
        for part in data.split(b"\r\n.\r\n"):
            m = _CMD.match(part)
            if m is None:
                continue  # a response to our NTFY
            verb, txid, endpoint = m.groups()
            x = _X.search(part)
            if x is not None:
                self.requests[endpoint] = x.group(1)
            if verb == b"CRCX":
                self.connections += 1
                answers.append(b"200 " + txid + b" OK\r\nI: C" + str(self.connections).encode() + b"\r\n" + self._sdp)
            elif verb == b"DLCX":
                answers.append(b"250 " + txid + b" OK\r\nP: PS=0, OS=0, PR=0, OR=0, PL=0, JI=0, LA=0\r\n")
            elif verb == b"AUEP":
                answers.append(b"200 " + txid + b" OK\r\nES: L/hu\r\n")
            else:
                answers.append(b"200 " + txid + b" OK\r\n")
        for answer in answers:
            self.transport.write(answer, self.agent)

    def notify(self, endpoint: bytes, events: bytes) -> None:
        self._txid += 1
        x = self.requests.get(endpoint, b"0")
        self.transport.write(b"NTFY %d %s MGCP 1.0\r\nX: %s\r\nO: %s\r\n" % (self._txid, endpoint, x, events),
                             self.agent)


class _Port:
    """The transport of one bound protocol: writes go to the reactor's queue."""

    def __init__(self, reactor: "BenchReactor", address: tuple[str, int], protocol: Any) -> None:
        self.reactor = reactor
        self.address = address
        self.protocol = protocol

    def write(self, packet: bytes, addr: Any = None) -> None:
        self.reactor.queue.append((self.address, tuple(addr), packet))

    def getHost(self) -> Any:  # noqa: N802
        from twisted.internet.address import IPv4Address

        return IPv4Address("UDP", *self.address)

    def stopListening(self) -> None:  # noqa: N802
        self.reactor.ports.pop(self.address, None)
        self.protocol.doStop()

    loseConnection = stopListening


class BenchReactor:
    """
    The least reactor the agent needs (IReactorTime, listenUDP): timers in
    a heap of Twisted DelayedCalls, as the real reactor keeps them, and
    datagrams delivered in the order written, at once.
    """

    def __init__(self) -> None:
        from collections import deque

        self.now = 0.0
        self.ports: dict[tuple[str, int], Any] = {}
        self.queue: Any = deque()
        self._timers: list[Any] = []
        self._seq = 0

    def seconds(self) -> float:
        return self.now

    def callLater(self, delay: float, f: Any, *args: Any, **kw: Any) -> Any:  # noqa: N802
        call = _DelayedCall(self.now + delay, f, args, kw, _ignore, self._push, seconds=self.seconds)
        self._push(call)
        return call

    def _push(self, call: Any) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (call.getTime(), self._seq, call))

    def getDelayedCalls(self) -> list[Any]:  # noqa: N802
        return [c for _, _, c in self._timers if c.active()]

    def listenUDP(self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> _Port:  # noqa: N802
        return self.bind((interface or "127.0.0.1", port), protocol)

    def bind(self, address: tuple[str, int], protocol: Any) -> _Port:
        udp = self.ports[address] = _Port(self, address, protocol)
        protocol.makeConnection(udp)
        return udp

    def _run_due(self) -> bool:
        timers, ran = self._timers, False
        while timers and timers[0][0] <= self.now:
            when, _, call = heapq.heappop(timers)
            if call.cancelled or call.called:
                continue
            if call.getTime() > when:  # delayed meanwhile
                self._push(call)
                continue
            call.called = 1
            call.func(*call.args, **call.kw)
            ran = True
        return ran

    def pump(self) -> None:
        """Deliver every datagram and run every timer due now, until none is left."""
        queue, ports = self.queue, self.ports
        while True:
            while queue:
                source, destination, data = queue.popleft()
                port = ports.get(destination)
                if port is not None:
                    port.protocol.datagramReceived(data, source)
            if not self._run_due() and not queue:
                return

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.pump()

    def run(self, seconds: float, step: float) -> None:
        end = self.now + seconds
        while self.now < end - 1e-12:
            self.advance(min(step, end - self.now))


def basic_call(gwa: ScriptedGateway, gwb: ScriptedGateway, reactor: BenchReactor, n: int,
               embedded: bool = False) -> None:
    """
    One basic call between line C{n} of each gateway: off hook and digits
    (one NTFY where the idle request embeds dial tone), the callee answers,
    the caller hangs up, then the callee.
    """
    a, b = b"aaln/%d@gwa" % n, b"aaln/%d@gwb" % n
    step = reactor.pump
    digits = b"D/2,D/%03d" % n
    if embedded:
        gwa.notify(a, b"L/hd," + digits)
        step()
    else:
        gwa.notify(a, b"L/hd")
        step()
        gwa.notify(a, digits)
        step()
    gwb.notify(b, b"L/hd")
    step()
    gwa.notify(a, b"L/hu")
    step()
    gwb.notify(b, b"L/hu")
    step()
    reactor.advance(0.001)


def _ignore(call: Any) -> None:
    """A cancelled timer stays in the heap and is skipped when due (as in Twisted's reactor)."""


def run(calls: int, lines: int) -> dict[str, Any]:
    from mgcpswitch import config as config_module
    from mgcpswitch.agent.dialplan import StaticDialPlan
    from mgcpswitch.agent.profiles import DEFAULT_PROFILE
    from mgcpswitch.agent.service import CallControlService

    store = hasattr(config_module, "StoreSettings")
    settings = config_module.parse_settings(ini(lines, store))
    reactor = network = BenchReactor()
    agent = ("127.0.0.1", 2727)
    service = CallControlService(reactor, settings, StaticDialPlan.from_settings(settings), {"default": DEFAULT_PROFILE})
    service.startService()
    gwa = ScriptedGateway(("127.0.0.2", 2427), agent)
    gwb = ScriptedGateway(("127.0.0.3", 2427), agent)
    network.bind(gwa.address, gwa)
    network.bind(gwb.address, gwb)
    for gw, domain in ((gwa, b"gwa"), (gwb, b"gwb")):
        gw.transport.write(b"RSIP 1 *@%s MGCP 1.0\r\nRM: restart\r\n" % domain, agent)
    network.run(2.0, step=0.05)

    def call(i: int) -> None:
        basic_call(gwa, gwb, reactor, i % lines + 1)

    for i in range(min(calls, 200)):
        call(i)
    # As the switch does once started (mgcpswitch.tap): what startup built
    # lives as long as the process, and the collector need not scan it on
    # every full collection (here ~50k objects: the configuration, the
    # endpoints, the imported modules).
    gc.freeze()
    started = service.control.counters["calls_started"]
    t0 = time.process_time()
    for i in range(calls):
        call(i)
    cpu = time.process_time() - t0
    done = service.control.counters["calls_started"] - started
    outcomes = service.call_outcomes()
    assert set(outcomes) <= {"normal"}, outcomes  # every call a completed one, none shed or failed
    service.stopService()
    return {"calls": done, "cpu_us_per_call": cpu / max(done, 1) * 1e6, "outcomes": outcomes}


def callgrind(calls: int, lines: int, repo: str) -> float:
    """Instructions per call: two runs under callgrind, the difference over the extra calls."""
    counts = []
    for n in (calls, 5 * calls):
        with tempfile.TemporaryDirectory(prefix="bench-agent-") as d:
            out = subprocess.run(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={d}/cg.out", sys.executable,
                 os.path.abspath(__file__), "--calls", str(n), "--lines", str(lines), "--repo", repo, "--quiet"],
                capture_output=True, text=True, check=True,
            )
        m = re.search(r"Collected : (\d+)", out.stderr)
        assert m is not None, out.stderr[-2000:]
        counts.append(int(m.group(1)))
    return (counts[1] - counts[0]) / (4 * calls)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--lines", type=int, default=100)
    p.add_argument("--repo", default=os.path.dirname(HERE), help="the checkout whose mgcpswitch to measure")
    p.add_argument("--callgrind", action="store_true", help="instructions per call, under valgrind")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args()
    sys.path.insert(0, a.repo)
    if a.callgrind:
        sys.path.insert(0, HERE)
        from _common import machine_info, print_machine

        print_machine(machine_info(sys.argv))
        per_call = callgrind(a.calls, a.lines, a.repo)
        print(f"{a.repo}: {per_call / 1e3:.0f} thousand instructions per call (callgrind, {4 * a.calls} calls)")
        return
    result = run(a.calls, a.lines)
    if not a.quiet:
        print(f"{a.repo}: {result['calls']} calls, {result['cpu_us_per_call']:.0f} us CPU per call, "
              f"outcomes {result['outcomes']}")


if __name__ == "__main__":
    main()
