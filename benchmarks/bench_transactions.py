#!/usr/bin/env python3
"""
Benchmark of the MGCP transaction layer over real loopback UDP (issue 4).
A benchmark, not a test: it asserts nothing, it prints figures.

    PYTHONPATH=. python benchmarks/bench_transactions.py \\
        [--duration 10] [--runs 3] [--windows 1,8,64] [--payload rqnt|auep] \\
        [--skip-raw] [--skip-bare] [--skip-osmo] [--json] [--max-other P] \\
        [--responder-t-hist S] [--no-gc] [--profile [--profile-clock cpu|wall]] \\
        [--in-process N]

Variants, all with a client in this process keeping W requests in flight
(each completion immediately starts the next one in its slot) for
--duration seconds, repeated --runs times in the order 1, 8, 64, 1, 8, 64...
(each window running every variant in turn, so machine noise spreads over
all of them):

  layer  a CallAgentProtocol (mgcpswitch.transport) sending one command per
         transaction with send_command() to a GatewayProtocol in a separate
         process whose handler answers every command 200 synchronously.
         Client config: TransactionConfig(max_in_flight=1024) so that the
         per-peer cap (default 64) never queues window 64; min_rto stays at
         its default 0.1 s (a round trip over 100 ms would be retransmitted,
         and would show in the retrans column).  The client acknowledges
         responses with K: (the default), so requests carry a K: line and the
         responder purges its history with it, as in production.  The
         responder runs the default TransactionConfig (T-HIST 30 s: it keeps
         every transaction id of the last 30 s).
  raw    the baseline: a bare Twisted DatagramProtocol in a separate process
         answering every datagram with a datagram of the MGCP response's
         size, and a bare DatagramProtocol client sending datagrams of the
         MGCP request's size (including its K: line): no codec, no Deferred,
         no timer.  One "transaction" = one round trip.
  bare   the "bare prototype": the raw client plus one Deferred and one
         reactor.callLater retransmission timer (cancelled on the answer) per
         request, against the same echo process: raw -> bare is the cost of
         Deferred + timer, bare -> layer the cost of codec + layer.
  osmo   the layer client against a private osmo-mgw 1.10 (started by PID on
         127.0.0.33 by tests/support/osmo.py, loglevel error, 256 endpoints),
         through its own CallAgentProtocol with the peer option
         response_acks=False (osmo-mgw answers K: with 539) and
         initial_rto = min_rto = 0.5 s, the anchor's fixed 500 ms: a spurious
         retransmission of a wildcard CRCX seizes a second endpoint and RTP
         port pair, and tests/support/osmo.py gives osmo-mgw only 200 RTP
         ports (100 connections), so with the default 0.1 s floor a loaded
         machine ran it out of ports (CRCX 400).  Each slot loops wildcard CRCX (rtpbridge/*@mgw, C:, L: p:20, a:PCMU,
         M: recvonly) -> DLCX of the returned Z:/I:.  Each CRCX and each DLCX
         is one transaction.  After every run a wildcard DLCX releases the
         trunk and the VTY's "show mgcp active" is counted (must be 0).

Per run: transactions/s (completions during the run / measured run time),
p50/p99 latency (time.perf_counter() around each transaction in the
client), retransmissions and timeouts the client's layer counted, CPU of
the client (os.times()) and of the peer process (/proc/PID/stat) as % of
one CPU and as microseconds of CPU per transaction, and "other load": the
whole machine's busy time minus the client and the peer, i.e. processes
that are not ours, as ../shared/peers/osmo-mgw/bench.py does, except that
busy = nproc x wall - (idle + iowait) from /proc/stat instead of the sum of
the busy tick fields, which on this kernel misses much of a UDP ping-pong's
busy time (see _common.machine_idle_ticks; the JSON keeps the tick-based
figure too, as other_cpu_busy_ticks).  Per-transaction CPU is the figure
that survives other load on the machine best; throughput does not.
The summary gives medians over the runs and the ratios layer/raw and
bare/raw per window.  The garbage collector is on in both processes, as in
a running server.

Every run also records the garbage collector's time and longest pause in
the client and (for the layer variant) in the responder, whose history of
T-HIST seconds of transactions is most of the objects the collector walks.

--profile runs one layer run at the first window of --windows (use
--windows 8) under cProfile instead of the benchmark and prints the top
functions by own time, then own time summed by module group (thread CPU
time by default: with a wall clock, a sendto() that wakes the responder and
gets this process preempted is charged tens of microseconds).

--in-process N wires a client layer and a responder layer back to back
through a list (no sockets, no reactor loop) and prints microseconds per
transaction spent in each: the layer + codec cost alone, quick and much
less sensitive to other load than the UDP figures; with --profile it also
profiles the client layer's calls.

Every helper process is started here and stopped by its PID at the end,
also on Ctrl-C or an exception; helpers also get SIGTERM if this process
dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import statistics
import sys
import time
import traceback
from time import perf_counter
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (HERE, ROOT):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from _common import (  # noqa: E402
    CLK_TCK, Child, GcTimer, machine_busy_ticks, machine_idle_ticks, machine_info, own_cpu_seconds, pct, print_machine,
    proc_cpu_ticks, proc_rss_mb,
)

from twisted.internet.defer import Deferred  # noqa: E402
from twisted.internet.protocol import DatagramProtocol  # noqa: E402
from zope.interface import implementer  # noqa: E402

from mgcpswitch.interfaces import ICommandHandler  # noqa: E402
from mgcpswitch.mgcp import Command, Response, Verb, encode  # noqa: E402
from mgcpswitch.transaction import Role, TransactionConfig, TransactionLayer  # noqa: E402
from mgcpswitch.transport import CallAgentProtocol, GatewayProtocol  # noqa: E402

ENDPOINT = "aaln/1@bench.gw"
OSMO_IP = "127.0.0.33"
OSMO_DOMAIN = "mgw"
CLIENT_CONFIG = TransactionConfig(max_in_flight=1024)
# Against osmo-mgw: the anchor (bench.py) retransmitted after 500 ms, and a
# spurious retransmission of a wildcard CRCX seizes a second endpoint and a
# second RTP port pair (tests/support/osmo.py gives osmo-mgw 200 RTP ports,
# i.e. 100 connections): keep the timer at 500 ms at least, as the anchor did.
OSMO_CONFIG = TransactionConfig(max_in_flight=1024, initial_rto=0.5, min_rto=0.5)
SAMPLE_TXID = 123456789
CLIENT_GC: GcTimer | None = None  # installed by main()  # 9 digits: the allocator starts at a random id, nearly always 9 digits


def template_command(payload: str) -> Command:
    """The command the layer client sends (txid 0: the layer allocates one)."""
    if payload == "auep":
        return Command.create(Verb.AUEP, 0, ENDPOINT, requested_info="R,D,S")
    return Command.create(
        Verb.RQNT, 0, ENDPOINT, request_id="1a2b",
        requested_events="L/hu(N), D/[0-9#*T](D)", signal_requests="L/dl",
    )


def wire_sizes(payload: str) -> tuple[bytes, bytes]:
    """A request as the layer puts it on the wire (with a one-id K: line) and the 200."""
    command = template_command(payload).with_transaction_id(SAMPLE_TXID)
    command = command.with_params(response_ack=((SAMPLE_TXID - 1, SAMPLE_TXID - 1),))
    return encode(command), encode(Response.create(200, SAMPLE_TXID))


# ---------------------------------------------------------------------------
# The helper processes (this same file, run with --serve).


@implementer(ICommandHandler)
class Answer200:
    """Answers every command 200, synchronously."""

    def command_received(self, command: Command, source: Any) -> Response:
        return Response.create(200, command.transaction_id)


@implementer(ICommandHandler)
class Refuse:
    """The clients' handler: they expect no commands."""

    def command_received(self, command: Command, source: Any) -> Response:
        return Response.create(504, command.transaction_id, "not expected")


class Echo(DatagramProtocol):
    """Answers every datagram with its first C{size} bytes (padded if shorter)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.count = 0

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        self.count += 1
        size = self.size
        if len(data) >= size:
            self.transport.write(data[:size], addr)
        else:
            self.transport.write(data + b"\0" * (size - len(data)), addr)


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def responder_config(t_hist: float) -> TransactionConfig:
    default = TransactionConfig()
    if t_hist == default.t_hist:
        return default
    return TransactionConfig(t_hist=t_hist, longtran=min(default.longtran, t_hist / 2))


def serve(kind: str, port: int, response_size: int, t_hist: float, no_gc: bool) -> int:
    """Run a responder on 127.0.0.1:port; print its port, then STATS lines on SIGUSR1 and at exit."""
    _die_with_parent()
    if no_gc:
        gc.disable()
    gc_timer = GcTimer()
    from twisted.internet import reactor

    if kind == "mgcp":
        proto: Any = GatewayProtocol(reactor, Answer200(), responder_config(t_hist))
    else:
        proto = Echo(response_size)
    listening = reactor.listenUDP(port, proto, interface="127.0.0.1")

    def stats() -> None:
        out: dict[str, Any] = {"pid": os.getpid(), "rss_mb": proc_rss_mb(os.getpid()),
                               "gc": gc_timer.take(), "gc_tracked_objects": len(gc.get_objects())}
        if kind == "mgcp":
            snap = proto.transactions.snapshot()
            out["history"] = snap["history"]
            out["counters"] = snap["counters"]
        else:
            out["datagrams"] = proto.count
        print("STATS " + json.dumps(out), flush=True)

    signal.signal(signal.SIGUSR1, lambda *a: reactor.callFromThread(stats))
    print("PORT %d" % listening.getHost().port, flush=True)
    reactor.run()
    stats()
    return 0


def start_responder(kind: str, response_size: int = 0, t_hist: float = 30.0,
                    no_gc: bool = False) -> tuple[Child, int]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    child = Child(
        [sys.executable, os.path.abspath(__file__), "--serve", kind, "--port", "0",
         "--response-size", str(response_size), "--responder-t-hist", str(t_hist)]
        + (["--no-gc"] if no_gc else []),
        env=env,
    )
    try:
        line = child.read_line(timeout=20)
        if not line.startswith("PORT "):
            raise RuntimeError("unexpected first line from the %s responder: %r" % (kind, line))
        return child, int(line.split()[1])
    except BaseException:
        child.stop()
        raise


def responder_stats(child: Child) -> dict[str, Any]:
    child.signal(signal.SIGUSR1)
    line = child.read_line(timeout=10)
    return json.loads(line[len("STATS "):]) if line.startswith("STATS ") else {"raw": line}


# ---------------------------------------------------------------------------
# One run: W slots in flight for D seconds.


class Run:
    """
    The bookkeeping of one run.  Clients append each completed transaction's
    latency to C{lat} while C{running}; C{running} turns False at the end of
    the run, after which each slot stops and calls L{slot_done}.
    """

    def __init__(self, reactor: Any, window: int, duration: float, peer_pid: int | None) -> None:
        self.reactor = reactor
        self.window = window
        self.duration = duration
        self.peer_pid = peer_pid
        self.lat: list[float] = []
        self.running = False
        self.outstanding = 0
        self.codes: dict[Any, int] = {}
        self.failures = 0
        self.late = 0  # completions after the end of the run
        self._drained: Deferred[None] | None = None

    def begin(self, start_slot: Callable[[int], None]) -> Deferred[None]:
        gc.collect()
        if CLIENT_GC is not None:
            CLIENT_GC.reset()
        self.cpu0 = own_cpu_seconds()
        self.peer0 = proc_cpu_ticks(self.peer_pid) if self.peer_pid else None
        self.busy0 = machine_busy_ticks()
        self.idle0 = machine_idle_ticks()
        self.t0 = perf_counter()
        self.running = True
        self._drained = Deferred()
        self.reactor.callLater(self.duration, self._end)
        for slot in range(self.window):
            self.outstanding += 1
            start_slot(slot)
        return self._drained

    def _end(self) -> None:
        self.running = False
        self.t1 = perf_counter()
        self.cpu1 = own_cpu_seconds()
        self.peer1 = proc_cpu_ticks(self.peer_pid) if self.peer_pid else None
        self.busy1 = machine_busy_ticks()
        self.idle1 = machine_idle_ticks()
        self.gc = CLIENT_GC.take() if CLIENT_GC is not None else None
        self.drain_timer = self.reactor.callLater(5.0, self._drain_timeout)
        if self.outstanding == 0:
            self._fire()

    def slot_done(self) -> None:
        """A slot stopped (after the end of the run)."""
        self.outstanding -= 1
        if self.outstanding == 0 and not self.running:
            self._fire()

    def _fire(self) -> None:
        if self.drain_timer.active():
            self.drain_timer.cancel()
        d, self._drained = self._drained, None
        if d is not None:
            d.callback(None)

    def _drain_timeout(self) -> None:
        d, self._drained = self._drained, None
        if d is not None:
            d.callback(None)

    def result(self, variant: str, **extra: Any) -> dict[str, Any]:
        wall = self.t1 - self.t0
        lat = sorted(self.lat)
        client = 100.0 * (self.cpu1 - self.cpu0) / wall
        peer = None
        if self.peer0 is not None and self.peer1 is not None:
            peer = 100.0 * (self.peer1 - self.peer0) / CLK_TCK / wall
        other = other_ticks = None
        if self.idle0 is not None and self.idle1 is not None:
            busy = 100.0 * (os.cpu_count() or 1) - 100.0 * (self.idle1 - self.idle0) / CLK_TCK / wall
            other = busy - client - (peer or 0.0)
        if self.busy0 is not None and self.busy1 is not None:
            other_ticks = 100.0 * (self.busy1 - self.busy0) / CLK_TCK / wall - client - (peer or 0.0)
        tps = len(lat) / wall
        r = {
            "variant": variant, "window": self.window, "wall_s": wall, "transactions": len(lat),
            "tps": tps, "p50_ms": pct(lat, 0.5) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3,
            "client_cpu": client, "peer_cpu": peer, "other_cpu": other, "other_cpu_busy_ticks": other_ticks,
            "client_us_per_tx": client * 1e4 / tps if tps else None,
            "peer_us_per_tx": peer * 1e4 / tps if tps and peer is not None else None,
            "codes": {str(k): v for k, v in sorted(self.codes.items(), key=lambda kv: str(kv[0]))},
            "failures": self.failures, "left_in_flight": self.outstanding, "late": self.late,
            "client_gc": self.gc,
        }
        r.update(extra)
        return r


class RawClient(DatagramProtocol):
    """W datagrams in flight, no codec, no Deferred, no timer."""

    def __init__(self, requests: list[bytes], key_len: int, address: tuple[str, int], run: Run) -> None:
        self.requests = requests
        self.keys = {req[:key_len]: slot for slot, req in enumerate(requests)}
        self.key_len = key_len
        self.address = address
        self.run = run
        self.sent_at = [0.0] * len(requests)
        self.unknown = 0

    def start(self, slot: int) -> None:
        self.sent_at[slot] = perf_counter()
        self.transport.write(self.requests[slot], self.address)

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        now = perf_counter()
        slot = self.keys.get(data[:self.key_len])
        if slot is None:
            self.unknown += 1
            return
        run = self.run
        if run.running:
            run.lat.append(now - self.sent_at[slot])
            self.sent_at[slot] = perf_counter()
            self.transport.write(self.requests[slot], self.address)
        else:
            run.late += 1
            run.slot_done()


class BareClient(DatagramProtocol):
    """The bare prototype: the raw client plus a Deferred and a callLater timer per request."""

    RTO = 0.2

    def __init__(self, reactor: Any, requests: list[bytes], key_len: int, address: tuple[str, int],
                 run: Run) -> None:
        self.reactor = reactor
        self.requests = requests
        self.keys = [req[:key_len] for req in requests]
        self.key_len = key_len
        self.address = address
        self.run = run
        self.waiting: dict[bytes, tuple[Deferred[bytes], Any]] = {}
        self.unknown = 0
        self.retransmissions = 0

    def start(self, slot: int) -> None:
        t0 = perf_counter()
        d: Deferred[bytes] = Deferred()
        d.addCallback(self._done, slot, t0)
        timer = self.reactor.callLater(self.RTO, self._retransmit, slot, self.RTO)
        self.waiting[self.keys[slot]] = (d, timer)
        self.transport.write(self.requests[slot], self.address)

    def _retransmit(self, slot: int, delay: float) -> None:
        key = self.keys[slot]
        entry = self.waiting.get(key)
        if entry is None:
            return
        self.retransmissions += 1
        self.transport.write(self.requests[slot], self.address)
        self.waiting[key] = (entry[0], self.reactor.callLater(delay * 2, self._retransmit, slot, delay * 2))

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        entry = self.waiting.pop(data[:self.key_len], None)
        if entry is None:
            self.unknown += 1
            return
        d, timer = entry
        timer.cancel()
        d.callback(data)

    def _done(self, data: bytes, slot: int, t0: float) -> None:
        now = perf_counter()
        run = self.run
        if run.running:
            run.lat.append(now - t0)
            self.start(slot)
        else:
            run.late += 1
            run.slot_done()

    def stop(self) -> None:
        for d, timer in self.waiting.values():
            if timer.active():
                timer.cancel()
        self.waiting.clear()


class CountingAgent(CallAgentProtocol):
    """A CallAgentProtocol that counts the datagrams and bytes it writes and reads."""

    n_out = bytes_out = n_in = bytes_in = 0

    def _write(self, datagram: bytes, address: Any) -> None:
        self.n_out += 1
        self.bytes_out += len(datagram)
        super()._write(datagram, address)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        self.n_in += 1
        self.bytes_in += len(datagram)
        self.transactions.datagram_received(datagram, addr)


def _counter_delta(after: dict[Any, int], before: dict[Any, int], name: str) -> int:
    return after.get(name, 0) - before.get(name, 0)


class LayerClient:
    """W transactions in flight through a CallAgentProtocol to the MGCP responder."""

    def __init__(self, reactor: Any, agent: CountingAgent, command: Command, address: tuple[str, int]) -> None:
        self.reactor = reactor
        self.agent = agent
        self.command = command
        self.address = address

    def run(self, window: int, duration: float, peer_pid: int) -> Deferred[dict[str, Any]]:
        run = Run(self.reactor, window, duration, peer_pid)
        agent = self.agent
        send = agent.send_command
        command = self.command
        address = self.address
        codes = run.codes

        def start(slot: int) -> None:
            t0 = perf_counter()
            send(command, address).addCallbacks(done, failed, callbackArgs=(t0,))

        def done(response: Response, t0: float) -> None:
            now = perf_counter()
            if run.running:
                run.lat.append(now - t0)
                code = response.code
                codes[code] = codes.get(code, 0) + 1
                start(0)
            else:
                run.late += 1
                run.slot_done()

        def failed(failure: Any) -> None:
            run.failures += 1
            if run.running:
                start(0)
            else:
                run.slot_done()

        before = dict(agent.transactions.counters)
        io_before = (agent.n_out, agent.bytes_out, agent.n_in, agent.bytes_in)

        def finish(_: None) -> dict[str, Any]:
            after = agent.transactions.counters
            n_out = agent.n_out - io_before[0]
            n_in = agent.n_in - io_before[2]
            return run.result(
                "layer",
                retrans=_counter_delta(after, before, "retransmissions"),
                timeouts=_counter_delta(after, before, "timeouts"),
                dup_responses=_counter_delta(after, before, "dropped_unknown_response"),
                req_bytes=(agent.bytes_out - io_before[1]) / n_out if n_out else None,
                resp_bytes=(agent.bytes_in - io_before[3]) / n_in if n_in else None,
            )

        return run.begin(start).addCallback(finish)


class OsmoClient:
    """W slots of wildcard CRCX -> DLCX against osmo-mgw through the layer."""

    def __init__(self, reactor: Any, agent: CountingAgent, address: tuple[str, int]) -> None:
        self.reactor = reactor
        self.agent = agent
        self.address = address
        self.crcx: list[Command] = []

    def _crcx(self, slot: int) -> Command:
        while len(self.crcx) <= slot:
            n = len(self.crcx)
            self.crcx.append(Command.create(
                Verb.CRCX, 0, "rtpbridge/*@%s" % OSMO_DOMAIN, call_id="b%x" % n,
                local_options="p:20, a:PCMU", mode="recvonly",
            ))
        return self.crcx[slot]

    def run(self, window: int, duration: float, peer_pid: int) -> Deferred[dict[str, Any]]:
        run = Run(self.reactor, window, duration, peer_pid)
        agent = self.agent
        send = agent.send_command
        address = self.address
        codes = run.codes
        errors = {"crcx_200_without_z_or_i": 0}
        for slot in range(window):
            self._crcx(slot)
        crcx = self.crcx

        def start(slot: int) -> None:
            t0 = perf_counter()
            send(crcx[slot], address).addCallbacks(
                crcx_done, failed, callbackArgs=(slot, t0), errbackArgs=(slot,))

        def crcx_done(response: Response, slot: int, t0: float) -> None:
            now = perf_counter()
            code = response.code
            if run.running:
                run.lat.append(now - t0)
                key = "CRCX %d" % code
                codes[key] = codes.get(key, 0) + 1
            else:
                run.late += 1
            endpoint = response.specific_endpoint
            connection = response.connection_id
            if code == 200 and (endpoint is None or connection is None):
                errors["crcx_200_without_z_or_i"] += 1
            if code == 200 and endpoint is not None and connection is not None:
                # Also after the end of the run: release what we seized.
                t1 = perf_counter()
                send(Command.create(
                    Verb.DLCX, 0, endpoint, call_id=crcx[slot].call_id, connection_id=connection,
                ), address).addCallbacks(dlcx_done, failed, callbackArgs=(slot, t1), errbackArgs=(slot,))
            elif run.running:
                start(slot)
            else:
                run.slot_done()

        def dlcx_done(response: Response, slot: int, t0: float) -> None:
            now = perf_counter()
            if run.running:
                run.lat.append(now - t0)
                key = "DLCX %d" % response.code
                codes[key] = codes.get(key, 0) + 1
                start(slot)
            else:
                run.late += 1
                run.slot_done()

        def failed(failure: Any, slot: int) -> None:
            run.failures += 1
            if run.running:
                start(slot)
            else:
                run.slot_done()

        before = dict(agent.transactions.counters)
        return run.begin(start).addCallback(
            lambda _: (run, {
                "retrans": _counter_delta(agent.transactions.counters, before, "retransmissions"),
                "timeouts": _counter_delta(agent.transactions.counters, before, "timeouts"),
                "dup_responses": _counter_delta(
                    agent.transactions.counters, before, "dropped_unknown_response"),
                **errors,
            }))


def print_profile(profiler: Any, top: int, transactions: int, stream: Any) -> None:
    """Top functions by own time, then own time summed by module group, per transaction."""
    import pstats

    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(top)
    groups: dict[str, list[float]] = {}
    total_calls = 0
    for (filename, _line, name), (_cc, nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        total_calls += nc
        if "/mgcpswitch/mgcp/" in filename:
            group = "codec and message values (mgcpswitch/mgcp/)"
        elif filename.endswith("mgcpswitch/transaction.py") or filename.endswith("mgcpswitch/txid.py"):
            group = "transaction layer (transaction.py, txid.py)"
        elif filename.endswith("mgcpswitch/transport.py"):
            group = "transport.py"
        elif filename.endswith("twisted/internet/defer.py"):
            group = "Twisted Deferred (defer.py)"
        elif filename.endswith("twisted/internet/base.py"):
            group = "Twisted reactor: callLater/cancel, loop (base.py)"
        elif "/twisted/" in filename:
            group = "Twisted other (udp.py, abstract.py, log, epoll)"
        elif filename == "~":
            if "sendto" in name or "recvfrom" in name or "poll" in name:
                group = "socket syscalls and epoll (built-in)"
            else:
                group = "built-ins (dict.get, len, str.join, isinstance, ...)"
        elif filename == "<string>":
            group = "dataclass __init__ (frozen messages)"
        else:
            group = "other (%s)" % os.path.basename(filename)
        groups.setdefault(group, [0.0, 0])
        groups[group][0] += tt
        groups[group][1] += nc
    total = sum(v[0] for v in groups.values()) or 1.0
    print("own time by group (profiled; per-call profiler overhead inflates groups with many small calls):",
          file=stream)
    for group, (tt, nc) in sorted(groups.items(), key=lambda kv: -kv[1][0]):
        print("  %5.1f%%  %7.2f us/tx  %6.1f calls/tx  %s" % (
            100 * tt / total, tt / transactions * 1e6, nc / transactions, group), file=stream)
    print("  total %.1f function calls per transaction" % (total_calls / transactions), file=stream)


# ---------------------------------------------------------------------------
# In-process: the two layers wired back to back, no sockets.


def in_process(payload: str, window: int, transactions: int, profile: Any = None) -> tuple[float, float]:
    """
    A call-agent layer and a gateway layer exchanging datagrams through a
    list instead of sockets (the reactor supplies callLater but does not
    run): microseconds of wall time per transaction spent in each, timed
    around each delivery.  No I/O, no reactor loop: the layer + codec cost
    alone.  With C{profile}, only the client's calls are profiled.
    """
    from twisted.internet import reactor

    queue: list[tuple[bool, bytes]] = []
    client = TransactionLayer(reactor, lambda d, a: queue.append((False, d)), Refuse(), Role.CALL_AGENT,
                              CLIENT_CONFIG)
    server = TransactionLayer(reactor, lambda d, a: queue.append((True, d)), Answer200(), Role.GATEWAY,
                              TransactionConfig())
    command = template_command(payload)
    a_addr, b_addr = ("127.0.0.1", 1), ("127.0.0.1", 2)
    done = [0]

    def ok(response: Response) -> None:
        done[0] += 1
        if done[0] + window <= transactions:
            client.send_command(command, b_addr).addCallback(ok)

    t_client = t_server = 0.0
    gc.collect()
    t = perf_counter()
    for _ in range(window):
        client.send_command(command, b_addr).addCallback(ok)
    t_client += perf_counter() - t
    pop = queue.pop
    while queue:
        to_client, datagram = pop(0) if window > 1 else pop()
        if to_client:
            if profile is not None:
                profile.enable()
            t = perf_counter()
            client.datagram_received(datagram, b_addr)
            t_client += perf_counter() - t
            if profile is not None:
                profile.disable()
        else:
            t = perf_counter()
            server.datagram_received(datagram, a_addr)
            t_server += perf_counter() - t
    client.stop()
    server.stop()
    # The reactor never ran: drop the (cancelled) timers it was handed.
    reactor._newTimedCalls.clear()  # type: ignore[attr-defined]
    return t_client / done[0] * 1e6, t_server / done[0] * 1e6


def run_in_process(args: argparse.Namespace, out: Callable[[str], None]) -> list[dict[str, Any]]:
    n = args.in_process
    out("# in-process: client layer <-> responder layer through a list, no sockets, %d transactions "
        "per run, %d runs per window; us of wall time per transaction (min and median of runs)" % (n, args.runs))
    out("# window  client_min  client_med  responder_min  responder_med")
    rows = []
    for w in args.windows:
        results = [in_process(args.payload, w, n) for _ in range(args.runs)]
        cs = sorted(r[0] for r in results)
        ss = sorted(r[1] for r in results)
        row = {"window": w, "client_us_min": cs[0], "client_us_median": statistics.median(cs),
               "responder_us_min": ss[0], "responder_us_median": statistics.median(ss)}
        rows.append(row)
        out("%8d %11.1f %11.1f %14.1f %14.1f" % (w, cs[0], row["client_us_median"], ss[0], row["responder_us_median"]))
    if args.profile:
        import cProfile

        w = args.windows[0]
        profiler = cProfile.Profile(time.thread_time if args.profile_clock == "cpu" else perf_counter)
        in_process(args.payload, w, n, profile=profiler)
        out("# cProfile (%s time) of the client layer's calls only, in-process, window %d, %d transactions"
            % (args.profile_clock, w, n))
        print_profile(profiler, args.profile_top, n, sys.stderr if args.json else sys.stdout)
    return rows


# ---------------------------------------------------------------------------
# The driver.


def sleep(reactor: Any, seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


class Bench:
    def __init__(self, args: argparse.Namespace, reactor: Any) -> None:
        self.args = args
        self.reactor = reactor
        self.children: list[Child] = []
        self.mgw: Any = None
        self.results: list[dict[str, Any]] = []
        self.responder_stats: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.completed = False
        self.request, self.response = wire_sizes(args.payload)
        self.key_len = len(self.request.split(b" ", 1)[0]) + 1 + 9

    def out(self, text: str = "") -> None:
        print(text, file=sys.stderr if self.args.json else sys.stdout, flush=True)

    # -- processes ------------------------------------------------------

    def start_processes(self) -> None:
        a = self.args
        self.mgcp, self.mgcp_port = start_responder("mgcp", t_hist=a.responder_t_hist, no_gc=a.no_gc)
        self.children.append(self.mgcp)
        self.out("# responder   mgcp: GatewayProtocol pid %d on 127.0.0.1:%d (handler answers "
                 "Response.create(200, txid) synchronously; T-HIST %g s)"
                 % (self.mgcp.pid, self.mgcp_port, a.responder_t_hist))
        if not (a.skip_raw and a.skip_bare):
            self.echo, self.echo_port = start_responder("echo", len(self.response), no_gc=a.no_gc)
            self.children.append(self.echo)
            self.out("# responder   echo: Twisted DatagramProtocol pid %d on 127.0.0.1:%d (answers %d bytes)"
                     % (self.echo.pid, self.echo_port, len(self.response)))
        if not a.skip_osmo:
            from tests.support.osmo import start_osmo_mgw

            try:
                self.mgw = start_osmo_mgw(ip=OSMO_IP, loglevel="error", endpoints=256, domain=OSMO_DOMAIN)
            except Exception as e:  # unittest.SkipTest when not installed
                self.notes.append("osmo-mgw skipped: %s" % e)
                self.out("# osmo-mgw    NOT RUN: %s" % e)
            else:
                self.out("# osmo-mgw    pid %d on %s:%d, loglevel error, 256 endpoints (dir %s); client: "
                         "its own CallAgentProtocol, response_acks=False for the peer, max_in_flight=1024, "
                         "initial_rto = min_rto = 0.5 s (the anchor's 500 ms)"
                         % (self.mgw.process.pid, self.mgw.ip, self.mgw.port, self.mgw.directory))

    def stop_processes(self) -> None:
        for child in self.children:
            try:
                rest = child.stop()
            except Exception as e:
                self.out("# could not stop pid %d: %s" % (child.pid, e))
                continue
            for line in rest.splitlines():
                if line.startswith("STATS "):
                    stats = json.loads(line[6:])
                    stats["at"] = "exit"
                    self.responder_stats.append(stats)
        self.children = []
        if self.mgw is not None:
            try:
                self.mgw.stop()
            finally:
                self.mgw = None

    # -- variants -------------------------------------------------------

    def _listen(self, proto: Any) -> Any:
        return self.reactor.listenUDP(0, proto, interface="127.0.0.1")

    def raw_requests(self, window: int) -> list[bytes]:
        # The sample request with a slot-specific transaction id (same length).
        head, rest = self.request.split(b" ", 1)
        tail = rest.split(b" ", 1)[1]
        return [b"%s %09d %s" % (head, 100000000 + slot, tail) for slot in range(window)]

    async def run_raw(self, window: int) -> dict[str, Any]:
        run = Run(self.reactor, window, self.args.duration, self.echo.pid)
        client = RawClient(self.raw_requests(window), self.key_len, ("127.0.0.1", self.echo_port), run)
        port = self._listen(client)
        try:
            await run.begin(client.start)
        finally:
            await port.stopListening()
        return run.result("raw", retrans=0, timeouts=0, unknown=client.unknown,
                          req_bytes=len(client.requests[0]), resp_bytes=len(self.response))

    async def run_bare(self, window: int) -> dict[str, Any]:
        run = Run(self.reactor, window, self.args.duration, self.echo.pid)
        client = BareClient(self.reactor, self.raw_requests(window), self.key_len,
                            ("127.0.0.1", self.echo_port), run)
        port = self._listen(client)
        try:
            await run.begin(client.start)
        finally:
            client.stop()
            await port.stopListening()
        return run.result("bare", retrans=client.retransmissions, timeouts=0, unknown=client.unknown,
                          req_bytes=len(client.requests[0]), resp_bytes=len(self.response))

    async def run_layer(self, window: int) -> dict[str, Any]:
        result = await self.layer.run(window, self.args.duration, self.mgcp.pid)
        stats = responder_stats(self.mgcp)
        result["responder_history"] = stats.get("history")
        result["responder_rss_mb"] = stats.get("rss_mb")
        result["responder_gc"] = stats.get("gc")
        result["responder_gc_tracked_objects"] = stats.get("gc_tracked_objects")
        return result

    async def run_osmo(self, window: int) -> dict[str, Any]:
        mgw = self.mgw
        run, extra = await self.osmo.run(window, self.args.duration, mgw.process.pid)
        cleanup = await self.osmo_cleanup()
        result = run.result("osmo", **extra)
        result.update(cleanup)
        return result

    async def osmo_cleanup(self) -> dict[str, Any]:
        from tests.support.osmo import active_connections

        # Give straggling answers (e.g. to a retransmitted wildcard CRCX) a moment.
        await sleep(self.reactor, 0.2)
        try:
            response = await self.osmo_agent.send_command(
                Command.create(Verb.DLCX, 0, "rtpbridge/*@%s" % OSMO_DOMAIN), self.mgw.address)
            cleanup: Any = int(response.code)
        except Exception as e:
            cleanup = "failed: %s" % e
        try:
            active: Any = active_connections(self.mgw.ip)
        except Exception as e:
            active = "vty failed: %s" % e
        return {"cleanup": cleanup, "active_after": active}

    # -- the whole benchmark --------------------------------------------

    def setup_clients(self) -> None:
        self.agent = CountingAgent(self.reactor, Refuse(), CLIENT_CONFIG)
        self.agent_port = self._listen(self.agent)
        self.layer = LayerClient(self.reactor, self.agent, template_command(self.args.payload),
                                 ("127.0.0.1", self.mgcp_port))
        if self.mgw is not None:
            self.osmo_agent = CountingAgent(self.reactor, Refuse(), OSMO_CONFIG)
            self.osmo_port = self._listen(self.osmo_agent)
            self.osmo_agent.transactions.set_peer_options(self.mgw.address, response_acks=False)
            self.osmo = OsmoClient(self.reactor, self.osmo_agent, self.mgw.address)

    async def main(self) -> None:
        a = self.args
        self.setup_clients()
        variants: list[tuple[str, Callable[[int], Any]]] = [("layer", self.run_layer)]
        if not a.skip_raw:
            variants.append(("raw", self.run_raw))
        if not a.skip_bare:
            variants.append(("bare", self.run_bare))
        if self.mgw is not None:
            variants.append(("osmo", self.run_osmo))
        # Warm up (codec caches, first peer RTT sample), not recorded.
        warm = self.layer.run(1, 0.5, self.mgcp.pid)
        await warm
        responder_stats(self.mgcp)
        self.out("# variant window     tx/s  p50_ms  p99_ms  client%  peer%  other%  client_us/tx  peer_us/tx"
                 "  retrans timeouts  details")
        for r in range(a.runs):
            for w in a.windows:
                for name, fn in variants:
                    busy_before = await self.wait_quiet() if a.max_other is not None else None
                    result = await fn(w)
                    result["run"] = r + 1
                    result["busy_before"] = busy_before
                    self.results.append(result)
                    self.out(format_run(result))
                    await sleep(self.reactor, 0.5)
        self.completed = True

    async def wait_quiet(self) -> float | None:
        """Wait (up to --quiet-wait s) until the machine, with ours idle, is below --max-other % busy."""
        deadline = time.monotonic() + self.args.quiet_wait
        ncpu = os.cpu_count() or 1
        while True:
            idle0, t0 = machine_idle_ticks(), perf_counter()
            await sleep(self.reactor, 1.0)
            idle1, t1 = machine_idle_ticks(), perf_counter()
            if idle0 is None or idle1 is None:
                return None
            busy = 100.0 * ncpu - 100.0 * (idle1 - idle0) / CLK_TCK / (t1 - t0)
            if busy <= self.args.max_other or time.monotonic() > deadline:
                return busy
            self.out("# machine %.0f%% busy (not us); waiting" % busy)
            await sleep(self.reactor, 2.0)

    async def profile(self) -> None:
        import cProfile

        self.setup_clients()
        await self.layer.run(1, 0.5, self.mgcp.pid)
        window = self.args.windows[0]
        # CPU time, not wall time: with a wall clock, a sendto() that wakes
        # the responder and gets this process preempted (2 vCPUs, other load)
        # is charged tens of microseconds.
        clock = time.thread_time if self.args.profile_clock == "cpu" else time.perf_counter
        profiler = cProfile.Profile(clock)
        profiler.enable()
        result = await self.layer.run(window, self.args.duration, self.mgcp.pid)
        profiler.disable()
        self.out(format_run(result))
        self.out("# cProfile (%s time) of the client process, layer variant, window %d, %.0f s, %d transactions"
                 % (self.args.profile_clock, window, self.args.duration, result["transactions"]))
        print_profile(profiler, self.args.profile_top, result["transactions"],
                      sys.stdout if not self.args.json else sys.stderr)
        self.completed = True


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else spec % value


def format_run(r: dict[str, Any]) -> str:
    details = []
    if r.get("codes"):
        details.append("codes=" + ",".join("%s:%d" % (k.replace(" ", "/"), v) for k, v in r["codes"].items()))
    for key in ("failures", "left_in_flight", "unknown", "dup_responses", "crcx_200_without_z_or_i"):
        if r.get(key):
            details.append("%s=%s" % (key, r[key]))
    if r.get("req_bytes") is not None:
        details.append("bytes=%.0f/%.0f" % (r["req_bytes"], r["resp_bytes"] or 0))
    if r.get("responder_history") is not None:
        details.append("resp_history=%d rss=%.0fMB" % (r["responder_history"], r["responder_rss_mb"] or 0))
    gcs = []
    for who in ("client", "responder"):
        g = r.get(who + "_gc")
        if g:
            gcs.append("%s %.2fs/%.0fms" % (who[:4], sum(g["seconds"]), g["max_pause_ms"]))
    if gcs:
        details.append("gc(total/max)=" + ",".join(gcs))
    if "cleanup" in r:
        details.append("cleanup=%s active_after=%s" % (r["cleanup"], r["active_after"]))
    return "%-7s %6d %8.0f %7.3f %7.3f %8s %6s %7s %13s %11s %8d %8d  %s" % (
        r["variant"], r["window"], r["tps"], r["p50_ms"], r["p99_ms"],
        _fmt(r["client_cpu"], "%.0f"), _fmt(r["peer_cpu"], "%.0f"), _fmt(r["other_cpu"], "%.0f"),
        _fmt(r["client_us_per_tx"], "%.1f"), _fmt(r["peer_us_per_tx"], "%.1f"),
        r["retrans"], r["timeouts"], " ".join(details))


def summarize(results: list[dict[str, Any]], windows: list[int]) -> list[dict[str, Any]]:
    rows = []
    variants = []
    for r in results:
        if r["variant"] not in variants:
            variants.append(r["variant"])
    for variant in variants:
        for w in windows:
            rs = [r for r in results if r["variant"] == variant and r["window"] == w]
            if not rs:
                continue

            def med(key: str) -> Any:
                values = [r[key] for r in rs if r.get(key) is not None]
                return statistics.median(values) if values else None

            rows.append({
                "variant": variant, "window": w, "runs": len(rs), "tps": med("tps"),
                "p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"),
                "client_cpu": med("client_cpu"), "peer_cpu": med("peer_cpu"), "other_cpu": med("other_cpu"),
                "client_us_per_tx": med("client_us_per_tx"), "peer_us_per_tx": med("peer_us_per_tx"),
                "retrans": sum(r["retrans"] for r in rs), "timeouts": sum(r["timeouts"] for r in rs),
                "failures": sum(r["failures"] for r in rs),
            })
    return rows


def print_summary(bench: Bench, rows: list[dict[str, Any]], windows: list[int]) -> dict[str, Any]:
    out = bench.out
    runs = max((row["runs"] for row in rows), default=0)
    out()
    out("## Medians of %d runs per window" % runs)
    out()
    out("| variant | window | tx/s | p50 ms | p99 ms | client CPU % | peer CPU % | other load % "
        "| client µs/tx | peer µs/tx | retrans | timeouts |")
    out("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        out("| %s | %d | %.0f | %.3f | %.3f | %s | %s | %s | %s | %s | %d | %d |" % (
            row["variant"], row["window"], row["tps"], row["p50_ms"], row["p99_ms"],
            _fmt(row["client_cpu"], "%.0f"), _fmt(row["peer_cpu"], "%.0f"), _fmt(row["other_cpu"], "%.0f"),
            _fmt(row["client_us_per_tx"], "%.1f"), _fmt(row["peer_us_per_tx"], "%.1f"),
            row["retrans"], row["timeouts"]))
    by = {(row["variant"], row["window"]): row for row in rows}
    ratios = []
    if any(v == "raw" for v, _ in by):
        out()
        out("## Ratios to the raw Twisted echo (median tx/s over median round trips/s)")
        out()
        out("| window | layer / raw | bare / raw | layer / bare | goal layer/raw >= 0.50 "
            "| CPU/tx raw / layer, client | CPU/tx raw / layer, client+peer |")
        out("|---:|---:|---:|---:|---|---:|---:|")
        for w in windows:
            raw = by.get(("raw", w))
            layer = by.get(("layer", w))
            bare = by.get(("bare", w))
            if raw is None or not raw["tps"]:
                continue
            lr = layer["tps"] / raw["tps"] if layer else None
            br = bare["tps"] / raw["tps"] if bare else None
            lb = layer["tps"] / bare["tps"] if layer and bare else None
            cpu_client = cpu_both = None
            if layer and raw["client_us_per_tx"] and layer["client_us_per_tx"]:
                cpu_client = raw["client_us_per_tx"] / layer["client_us_per_tx"]
                if raw["peer_us_per_tx"] and layer["peer_us_per_tx"]:
                    cpu_both = (raw["client_us_per_tx"] + raw["peer_us_per_tx"]) / (
                        layer["client_us_per_tx"] + layer["peer_us_per_tx"])
            ratios.append({"window": w, "layer_raw": lr, "bare_raw": br, "layer_bare": lb,
                           "cpu_per_tx_raw_layer_client": cpu_client, "cpu_per_tx_raw_layer_both": cpu_both})
            out("| %d | %s | %s | %s | %s | %s | %s |" % (
                w, _fmt(lr, "%.2f"), _fmt(br, "%.2f"), _fmt(lb, "%.2f"),
                "-" if lr is None else ("met" if lr >= 0.5 else "NOT met"),
                _fmt(cpu_client, "%.2f"), _fmt(cpu_both, "%.2f")))
    return {"rows": rows, "ratios": ratios}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per run (default 10)")
    ap.add_argument("--runs", type=int, default=3, help="runs per window and variant (default 3)")
    ap.add_argument("--windows", default="1,8,64", help="transactions in flight, comma-separated")
    ap.add_argument("--payload", choices=("rqnt", "auep"), default="rqnt",
                    help="the command the layer client sends (default: a small RQNT)")
    ap.add_argument("--skip-raw", action="store_true", help="no raw Twisted echo baseline")
    ap.add_argument("--skip-bare", action="store_true", help="no bare Deferred+callLater prototype")
    ap.add_argument("--skip-osmo", action="store_true", help="no osmo-mgw runs")
    ap.add_argument("--max-other", type=float, default=None, metavar="P",
                    help="before each run wait (up to --quiet-wait s) until the machine is below P%% busy "
                         "without us (default: do not wait; other load is recorded either way)")
    ap.add_argument("--quiet-wait", type=float, default=60.0, metavar="S")
    ap.add_argument("--json", action="store_true", help="print one JSON document (progress goes to stderr)")
    ap.add_argument("--profile", action="store_true",
                    help="instead of the benchmark: one layer run at the first window under cProfile")
    ap.add_argument("--profile-top", type=int, default=15)
    ap.add_argument("--in-process", type=int, default=0, metavar="N",
                    help="instead of the benchmark: the two layers back to back without sockets, N "
                         "transactions per run, --runs runs per window (a quick, I/O-free figure of the "
                         "layer's own cost)")
    ap.add_argument("--profile-clock", choices=("cpu", "wall"), default="cpu",
                    help="cProfile timer: thread CPU time (default) or wall time")
    ap.add_argument("--responder-t-hist", type=float, default=TransactionConfig().t_hist,
                    help="T-HIST of the MGCP responder (default %(default)s s, the RFC's; it keeps every "
                         "transaction id this long)")
    ap.add_argument("--no-gc", action="store_true",
                    help="disable the garbage collector in the client and the responders (default: on)")
    ap.add_argument("--serve", choices=("mgcp", "echo"), help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--response-size", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv[1:])
    if args.serve:
        return serve(args.serve, args.port, args.response_size, args.responder_t_hist, args.no_gc)
    try:
        args.windows = [int(w) for w in args.windows.split(",") if w.strip()]
    except ValueError:
        ap.error("--windows takes comma-separated integers")
    if not args.windows or min(args.windows) < 1 or args.runs < 1 or args.duration <= 0:
        ap.error("need windows >= 1, runs >= 1, duration > 0")
    if args.profile:
        args.skip_raw = args.skip_bare = args.skip_osmo = True

    from twisted.internet import reactor

    if args.in_process:
        info = machine_info([os.path.basename(sys.executable)] + argv)
        if not args.json:
            print_machine(info)
        log = (lambda text: print(text, file=sys.stderr)) if args.json else print
        rows = run_in_process(args, log)
        if args.json:
            print(json.dumps({"machine": info, "payload": args.payload, "in_process": rows}, indent=1))
        return 0

    if args.no_gc:
        gc.disable()
    global CLIENT_GC
    CLIENT_GC = GcTimer()
    info = machine_info([os.path.basename(sys.executable)] + argv)
    info["pythonpath"] = os.environ.get("PYTHONPATH", "")
    bench = Bench(args, reactor)
    if not args.json:
        print_machine(info)
    bench.out("# payload     %s: request %d bytes on the wire (with a one-id K: line), response %d bytes"
              % (args.payload, len(bench.request), len(bench.response)))
    bench.out("#   request   %r" % bench.request)
    bench.out("#   response  %r" % bench.response)
    bench.out("# client      CallAgentProtocol, TransactionConfig(max_in_flight=1024) so window 64 is never "
              "queued by the per-peer cap (default 64); min_rto %.1f s, initial_rto %.1f s (defaults)"
              % (CLIENT_CONFIG.min_rto, CLIENT_CONFIG.initial_rto))
    if args.profile:
        bench.out("# plan        profile: one layer run of %.0f s at window %d under cProfile"
                  % (args.duration, args.windows[0]))
    else:
        bench.out("# plan        %d run(s) x %.0f s, windows %s, order %s; variants %s" % (
            args.runs, args.duration, ",".join(map(str, args.windows)),
            "interleaved (" + ", ".join(map(str, args.windows * min(args.runs, 2))) + ", ...)",
            ", ".join(v for v, skip in (("layer", False), ("raw", args.skip_raw), ("bare", args.skip_bare),
                                        ("osmo", args.skip_osmo)) if not skip)))
    if args.max_other is not None:
        bench.out("# quiet       before each run, waiting up to %.0f s for the machine to be below %.0f%% busy"
                  % (args.quiet_wait, args.max_other))
    bench.out("# gc          %s in the client and the responders" % ("DISABLED" if args.no_gc else "enabled"))
    bench.out("# other%% = whole machine busy (%d00%% minus idle+iowait of /proc/stat) minus client minus peer:"
              " load that is not ours" % (os.cpu_count() or 1))

    status = {"code": 0}
    started = time.monotonic()
    try:
        bench.start_processes()

        async def driver() -> None:
            try:
                if args.profile:
                    await bench.profile()
                else:
                    await bench.main()
            except BaseException:
                traceback.print_exc()
                status["code"] = 1
            finally:
                if reactor.running:
                    reactor.stop()

        reactor.callWhenRunning(lambda: Deferred.fromCoroutine(driver()))
        reactor.run()
        if status["code"] == 0 and not bench.completed:
            bench.out("# INTERRUPTED after %d runs" % len(bench.results))
            status["code"] = 130
    finally:
        bench.stop_processes()
    summary = print_summary(bench, summarize(bench.results, args.windows), args.windows) if bench.results else {}
    for stats in bench.responder_stats:
        bench.out("# responder at exit: %s" % json.dumps(stats, sort_keys=True))
    for note in bench.notes:
        bench.out("# %s" % note)
    bench.out("# total time %.0f s" % (time.monotonic() - started))
    if args.json:
        print(json.dumps({
            "machine": info, "payload": args.payload, "request": bench.request.decode("latin-1"),
            "response": bench.response.decode("latin-1"),
            "client_config": {"max_in_flight": CLIENT_CONFIG.max_in_flight, "min_rto": CLIENT_CONFIG.min_rto},
            "duration": args.duration, "runs": args.runs, "windows": args.windows,
            "results": bench.results, "summary": summary, "responder_stats": bench.responder_stats,
            "notes": bench.notes,
        }, indent=1))
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
