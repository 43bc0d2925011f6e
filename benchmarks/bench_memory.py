#!/usr/bin/env python3
"""
Memory per registered idle endpoint of the call agent (issue 8; target
<= 2 KB each), at 10k and 100k endpoints, measured two ways:

  rss         out of process: the switch (C{twistd -n mgcpswitch --config
              INI --no-simulator}, started and stopped by PID) with K
              gateways x 1,000 lines; VmRSS from /proc/PID/status of
                - a switch configured with 1 gateway x 1 line (empty),
                - the switch with the population configured, before any
                  gateway registered (configured),
                - the same after C{mgcpload register} (a separate process)
                  registered every endpoint, every line was armed and idle
                  and the switch's admin counted every endpoint registered,
                  and 2 s more (registered);
              the gateways' RSIPs are spread over 0.5 s per gateway
              (C{--spread-per-gateway}): 100 gateways restarting within the
              same second overload this 2-core machine (the switch
              retransmits its audits, marks gateways disconnected and
              audits them again; see docs/PERFORMANCE.md, "RSIP storm");
              per endpoint = (registered - empty) / N, and of which
              registration = (registered - configured) / N.
  tracemalloc in process: CallControlService on the in-memory network
              (mgcpswitch.testing), the same INI; Python heap bytes traced
              by tracemalloc, after gc.collect(), before the call agent is
              built (0), once it is built and started (configured), and
              once simulated gateways (in the same process, same network)
              registered every endpoint, every line was armed, and the
              gateways were stopped and dropped (registered).  What stays
              is the agent's; RSS includes the interpreter and allocator
              slack, this does not.

    PYTHONPATH=. python benchmarks/bench_memory.py \\
        [--sizes 10,100] [--tracemalloc-sizes 10] [--lines 1000] [--skip-rss] [--skip-tracemalloc]

--sizes (RSS) and --tracemalloc-sizes are numbers of gateways of --lines
lines each.  tracemalloc at 100 gateways takes hours: the in-memory
network's clock (twisted.internet.task.Clock) sorts every pending timer at
each step, and 100k lines keep many.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shlex
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _switchproc as sp  # noqa: E402
from _common import machine_info, print_machine  # noqa: E402


def say(text: str) -> None:
    print(text, flush=True)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start_switch(gateways: int, lines: int) -> tuple[sp.Switch, str]:
    agent_port = sp.free_udp_port()
    base = sp.free_udp_range(gateways)
    web = sp.free_tcp_port()
    config = sp.write_config(gateways, lines, agent_port, base, web)
    switch = sp.Switch(config, web)
    switch.start(timeout=120)
    return switch, config


def by_rss(gateways: int, lines: int, empty_kb: int, spread: float) -> dict[str, Any]:
    n = gateways * lines
    switch, config = start_switch(gateways, lines)
    try:
        time.sleep(2.0)
        configured = rss_kb(switch.pid)
        t0 = time.monotonic()
        report, proc = sp.load_tool(["register", "--config", config, "--agent-pid", str(switch.pid), "-q",
                                     "--register-timeout", "600", "--restart-delay", str(spread)], timeout=900)
        took = time.monotonic() - t0
        # Every line is armed; wait until the switch counts every endpoint
        # registered (each gateway up: its audits all answered).
        deadline = time.monotonic() + 600
        while True:
            stats = switch.stats()
            if stats["endpoints"]["registered"] >= n or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        up = time.monotonic() - t0
        time.sleep(2.0)
        registered = rss_kb(switch.pid)
        return {
            "endpoints": n, "empty_kb": empty_kb, "configured_kb": configured, "registered_kb": registered,
            "per_endpoint_bytes": (registered - empty_kb) * 1024 / n,
            "registration_bytes": (registered - configured) * 1024 / n,
            "configuration_bytes": (configured - empty_kb) * 1024 / n,
            "registered_endpoints": stats["endpoints"]["registered"], "total_endpoints": stats["endpoints"]["total"],
            "register_s": report["all_armed_s"], "tool_wall_s": took, "all_up_s": up,
            "retransmissions": report["retransmissions"], "duplicates": report["duplicates_received"],
        }
    finally:
        switch.stop()


def by_tracemalloc(gateways: int, lines: int) -> dict[str, Any]:
    import tracemalloc

    from mgcpswitch.agent.dialplan import StaticDialPlan
    from mgcpswitch.agent.model import LineState
    from mgcpswitch.agent.profiles import DEFAULT_PROFILE
    from mgcpswitch.agent.service import CallControlService
    from mgcpswitch.config import parse_settings
    from mgcpswitch.gateway import GatewayConfig, SimulatedGateway
    from mgcpswitch.load import make_config
    from mgcpswitch.testing import MemoryNetwork, MemoryReactor

    from twisted.logger import globalLogBeginner

    # Twisted buffers log events (and the objects they name) until logging
    # begins: begin it, to nowhere, so that nothing is kept by the buffer.
    globalLogBeginner.beginLoggingTo([lambda event: None], redirectStandardIO=False)
    n = gateways * lines
    text = make_config(gateways, lines, base_port=31000, web="default")
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    reactor = MemoryReactor()
    network = MemoryNetwork(reactor, latency=0.0002, record=False)
    reactor.network = network
    settings = parse_settings(text)
    service = CallControlService(reactor, settings, StaticDialPlan.from_settings(settings),
                                 {"default": DEFAULT_PROFILE}, [], random_source=random.Random(1))
    service.startService()
    gc.collect()
    configured = tracemalloc.get_traced_memory()[0]
    gws = [
        SimulatedGateway(reactor, GatewayConfig(
            domain=g.name, lines=len(g.endpoints), port=g.port, interface=g.address,
            call_agent=("127.0.0.1", 2727), rtp=False, history_limit=0,
        ), random=random.Random(i))
        for i, g in enumerate(settings.gateways)
    ]
    for gw in gws:
        gw.start()
    control = service.control
    t0 = time.monotonic()
    for _ in range(100_000):
        network.run(0.5, step=0.001)
        if all(l.state is LineState.IDLE for l in control._lines.values()) and \
                all(_armed(line) for gw in gws for line in gw.lines):
            break
    took = time.monotonic() - t0
    registered_lines = sum(1 for l in control._lines.values() if l.state is LineState.IDLE)
    for gw in gws:
        gw.stop()
    network.pump()
    del gws, gw
    gc.collect()
    registered = tracemalloc.get_traced_memory()[0]
    # What the agent holds, biggest first (by allocation site, top 8).
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*mgcpswitch*")])
    top = [(str(s.traceback[0]), s.size) for s in snapshot.statistics("lineno")[:8]]
    tracemalloc.stop()
    service.stopService()
    return {
        "endpoints": n, "configured_bytes_total": configured - base, "registered_bytes_total": registered - base,
        "per_endpoint_bytes": (registered - base) / n, "registration_bytes": (registered - configured) / n,
        "configuration_bytes": (configured - base) / n, "registered_endpoints": registered_lines,
        "simulated_s": reactor.seconds(), "wall_s": took, "top": top,
    }


def _armed(line: Any) -> bool:
    req = line._ep.requested
    return len(req) == 1 and req[0].name == "L/hd"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10,100", help="gateways per run, comma separated")
    p.add_argument("--lines", type=int, default=1000)
    p.add_argument("--skip-rss", action="store_true")
    p.add_argument("--spread-per-gateway", type=float, default=0.5,
                   help="the gateways' RSIPs are spread over this many seconds per gateway (default 0.5: "
                        "100 gateways register within 50 s; all at once overloads the switch, see the docs)")
    p.add_argument("--skip-tracemalloc", action="store_true")
    p.add_argument("--tracemalloc-sizes", default="10", help="gateways per in-process run (default 10)")
    a = p.parse_args()
    print_machine(machine_info(sys.argv))
    say(f"# code        {sp.code_state()}")
    sizes = [int(x) for x in a.sizes.split(",")]
    say("# target      <= 2048 bytes per registered idle endpoint")
    if not a.skip_rss:
        empty_switch, _ = start_switch(1, 1)
        time.sleep(2.0)
        empty = rss_kb(empty_switch.pid)
        empty_switch.stop()
        say(f"# rss: empty switch (1 gateway x 1 line): VmRSS {empty} kB")
        say("")
        say("| method | endpoints | empty MB | configured MB | registered MB | bytes/endpoint | of which registration "
            "| of which configuration | registered | lines armed s | all up s | agent's retransmissions |")
        say("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for k in sizes:
            r = by_rss(k, a.lines, empty, a.spread_per_gateway * k)
            say(f"| RSS (VmRSS) | {r['endpoints']:,} | {r['empty_kb'] / 1024:.1f} | {r['configured_kb'] / 1024:.1f} "
                f"| {r['registered_kb'] / 1024:.1f} | **{r['per_endpoint_bytes']:.0f}** | {r['registration_bytes']:.0f} "
                f"| {r['configuration_bytes']:.0f} | {r['registered_endpoints']:,}/{r['total_endpoints']:,} "
                f"| {r['register_s']:.1f} | {r['all_up_s']:.1f} | {r['duplicates']} |")
    if not a.skip_tracemalloc:
        say("")
        say("| method | endpoints | configured MB | registered MB | bytes/endpoint | of which registration "
            "| of which configuration | registered | wall s |")
        say("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        tops = []
        for k in [int(x) for x in a.tracemalloc_sizes.split(",")]:
            r = by_tracemalloc(k, a.lines)
            tops.append(r)
            say(f"| tracemalloc (in process) | {r['endpoints']:,} | {r['configured_bytes_total'] / 2**20:.1f} "
                f"| {r['registered_bytes_total'] / 2**20:.1f} | **{r['per_endpoint_bytes']:.0f}** "
                f"| {r['registration_bytes']:.0f} | {r['configuration_bytes']:.0f} | {r['registered_endpoints']:,} "
                f"| {r['wall_s']:.0f} |")
        r = tops[-1]
        say("")
        say(f"# biggest allocation sites in mgcpswitch after registration ({r['endpoints']:,} endpoints):")
        for where, size in r["top"]:
            say(f"#   {size / r['endpoints']:7.0f} B/endpoint  {where}")


if __name__ == "__main__":
    import signal

    def _terminated(signum: int, frame: Any) -> None:
        raise SystemExit(f"terminated by signal {signum}")  # so that finally: stops the switch

    signal.signal(signal.SIGTERM, _terminated)
    main()
