#!/usr/bin/env python3
"""
Calls under loss (issue 16's acceptance): the switch and its gateways in
separate processes on loopback, every datagram each way through a lossy
relay (benchmarks/_lossrelay.py): dropped with --drop, duplicated with
--duplicate, held back --delay-seconds with --delay.

    PYTHONPATH=. python benchmarks/bench_loss.py [--drop 0.3] [--calls 10000] \\
        [--gateways 2] [--lines 100] [--rate 25] [--hold 1] [--keepalive 15]

One run: a fresh switch (C{twistd -n mgcpswitch --config INI
--no-simulator}, in-memory store, keepalive 15 s, started and stopped by
PID), the relay, and C{mgcpload run} (full simulated gateways, which
retransmit as RFC 3435 §3.5 says) placing calls at --rate for
--calls / --rate seconds: --calls are scheduled, and the tool starts fewer
when every pair of lines is busy (lossy calls last long: each line is in
one call at a time), which the report shows as attempted and behind
schedule.  When
the tool's window closes the relay stops its faults ("the loss stops"); the
tool drains its calls and keeps its gateways up --linger seconds, then says
what they hold.  Meanwhile this script polls the switch's admin API until
it has converged: every gateway up and every endpoint registered
("known"), then every endpoint idle and armed with no call in progress
("idle": a call the tool still waits on, up to --step-timeout, holds its
lines).

Printed: calls completed / failed by the tool's reason / unfinished, the
switch's call outcomes by cause (one per record), gateways marked down
(false downs: the gateways never stopped), the seconds from the end of the
loss to convergence, and what the gateways hold at the end (connections,
lines idle and armed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _switchproc as sp  # noqa: E402
from _common import machine_info, print_machine  # noqa: E402


def say(text: str) -> None:
    print(text, flush=True)


def get(web: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{web}{path}", timeout=10) as r:
        return json.loads(r.read())


def known(web: int) -> bool:
    """Every gateway up and every endpoint registered (audited, its state known)."""
    stats = get(web, "/api/stats")
    gateways, endpoints = stats["gateways"], stats["endpoints"]
    return bool(gateways.get("up") == sum(gateways.values()) and endpoints["registered"] == endpoints["total"])


def idle(web: int) -> bool:
    """Every endpoint idle (armed for off-hook) with no connection, and no call in progress."""
    endpoints = get(web, "/api/endpoints")["endpoints"]
    if any(e["state"] != "idle" or e.get("connections") for e in endpoints):
        return False
    return bool(get(web, "/api/stats")["calls"]["active"] == 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--drop", type=float, default=0.3, help="each way")
    p.add_argument("--duplicate", type=float, default=0.05)
    p.add_argument("--delay", type=float, default=0.05)
    p.add_argument("--delay-seconds", type=float, default=0.3)
    p.add_argument("--calls", type=int, default=10000, help="scheduled (the window is CALLS / RATE)")
    p.add_argument("--gateways", type=int, default=2)
    p.add_argument("--lines", type=int, default=100)
    p.add_argument("--rate", type=float, default=25.0, help="calls started per second")
    p.add_argument("--hold", type=float, default=1.0)
    p.add_argument("--keepalive", type=float, default=15.0)
    p.add_argument("--step-timeout", type=float, default=30.0, help="the tool's patience per call step")
    p.add_argument("--linger", type=float, default=40.0)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    print_machine(machine_info(sys.argv))
    say(f"code: {sp.code_state()}")
    duration = a.calls / a.rate
    k = a.gateways
    agent, queue, web = sp.free_udp_port(), sp.free_udp_port(), sp.free_tcp_port()
    relay_base = sp.free_udp_range(k)
    gateway_base = sp.free_udp_range(k, start=relay_base + k + 10)
    directory = tempfile.mkdtemp(prefix="bench-loss-")
    switch_ini = sp.write_config(k, a.lines, agent, relay_base, web, directory=directory,
                                 keepalive_interval=a.keepalive)
    tool_ini = sp.write_config(k, a.lines, queue, gateway_base, sp.free_tcp_port(), directory=directory,
                               keepalive_interval=a.keepalive)
    switch = sp.Switch(switch_ini, web)
    relay = tool = None
    try:
        switch.start()
        pairs = ",".join(f"{gateway_base + i}:{relay_base + i}" for i in range(k))
        relay = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "_lossrelay.py"), "--agent", f"127.0.0.1:{agent}",
             "--listen", str(queue), "--pairs", pairs, "--drop", str(a.drop), "--duplicate", str(a.duplicate),
             "--delay", str(a.delay), "--delay-seconds", str(a.delay_seconds), "--seed", str(a.seed)],
            stdout=subprocess.PIPE, text=True, env=sp.env(), cwd=sp.REPO)
        assert relay.stdout is not None
        relay.stdout.readline()  # listening
        say(f"{k} gateways x {a.lines} lines, {a.calls} calls at {a.rate:g}/s (hold {a.hold:g} s), "
            f"loss {a.drop:.0%} each way, {a.duplicate:.0%} duplicated, {a.delay:.0%} delayed "
            f"{a.delay_seconds:g} s; keepalive {a.keepalive:g} s")
        argv = [sys.executable, os.path.join(sp.REPO, "scripts", "mgcpload"), "run", "--config", tool_ini,
                "--rate", str(a.rate), "--duration", str(duration), "--warmup", "0", "--hold", str(a.hold),
                "--step-timeout", str(a.step_timeout), "--register-timeout", "300", "--agent-pid", str(switch.pid),
                "--linger", str(a.linger), "--seed", str(a.seed), "--json"]
        tool = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=sp.env(),
                                cwd=sp.REPO)
        loss_stopped: list[float] = []

        def watch_stderr() -> None:
            assert tool is not None and tool.stderr is not None and relay is not None
            for line in tool.stderr:
                sys.stderr.write(line)
                if "window closed" in line and not loss_stopped:
                    loss_stopped.append(time.monotonic())
                    os.kill(relay.pid, signal.SIGUSR1)

        watcher = threading.Thread(target=watch_stderr, daemon=True)
        watcher.start()
        reached: dict[str, float] = {}
        while tool.poll() is None:
            if loss_stopped:
                for what, check in (("known", known), ("idle", idle)):
                    if what not in reached and check(web):
                        reached[what] = time.monotonic() - loss_stopped[0]
                        say(f"every endpoint {what} {reached[what]:.1f} s after the loss stopped")
            time.sleep(0.5)
        out = tool.stdout.read() if tool.stdout else ""
        watcher.join(5)
        report = json.loads(out)
        stats = switch.stats()
        with open(switch.log_path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        downs = log.count(" is down")
        os.kill(relay.pid, signal.SIGTERM)
        relay_counts = [json.loads(line) for line in relay.stdout if line.strip()]
        say("")
        say(f"tool: attempted {report['attempted']}, completed {report['completed']}, failed {report['failed']} "
            f"{report['failures']}, unfinished {report['unfinished']}, behind schedule {report['behind_schedule']}; "
            f"registration {report['register_seconds']:.1f} s")
        say(f"switch: call outcomes {stats['calls']['outcomes']}")
        say(f"switch: 'gateway is down' logged {downs} time(s) (every one false: the gateways never stopped)")
        say(f"end (after {a.linger:g} s of no loss): {report.get('end_state')}")
        for what in ("known", "idle"):
            seconds = reached.get(what)
            say(f"every endpoint {what} after the loss stopped: "
                f"{'%.1f s' % seconds if seconds is not None else 'NOT before the tool ended'}")
        say(f"relay: {relay_counts}")
    finally:
        for proc in (tool, relay):
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(30)
        switch.stop()


if __name__ == "__main__":
    main()
