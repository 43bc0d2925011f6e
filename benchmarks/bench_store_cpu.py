#!/usr/bin/env python3
"""
The call agent's CPU per call with the PostgreSQL store (a one-member
cluster) beside the SQLite default, at the same call rate, in one run
(issue 14: within 15 %).  A benchmark, not a test: it prints figures.

    PYTHONPATH=. python benchmarks/bench_store_cpu.py [--rate 50] [--duration 15] [--warmup 3]
        [--hold 1] [--rounds 2] [--gateways 10] [--lines 100]

Every process on 127.0.0.1, started by this script and stopped by its PID:
for each round, each variant in turn (sqlite, postgres, sqlite, postgres,
... so that the machine's other load falls on both alike):

  1. the switch, C{twistd -n mgcpswitch --config INI --no-simulator}, the
     INI from C{mgcpload config} (K gateways x M lines, no ladder, no
     observers) with C{[store] url} set to a fresh SQLite file, or to a
     fresh database of a throwaway PostgreSQL (fsync and synchronous_commit
     on, as SQLite's default journal is durable too) with C{[cluster]}'s
     defaults: the single member becomes active;
  2. C{mgcpload run --lean --rate R} (a caller and a callee line per call,
     answered at once, held --hold s, the caller hangs up): per call a
     checkpoint when answered, its deletion and the CDR when it ends;
  3. the agent's CPU (utime + stime from /proc) over the measured window,
     divided by the calls completed in it (the load tool's report).

It prints each run, then per variant the median CPU per call and the
ratio PostgreSQL / SQLite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import _switchproc as sp  # noqa: E402
from _common import machine_info, print_machine  # noqa: E402

from tests.support.failover import url_of  # noqa: E402
from tests.support.postgres import start_postgres  # noqa: E402


def run(a: argparse.Namespace, store: str, directory: str, name: str) -> dict[str, Any]:
    agent_port = sp.free_udp_port()
    base_port = sp.free_udp_range(a.gateways)
    web_port = sp.free_tcp_port()
    config = sp.write_config(a.gateways, a.lines, agent_port, base_port, web_port, directory=directory, store=store)
    switch = sp.Switch(config, web_port, log_path=os.path.join(directory, f"{name}.log"))
    switch.start(timeout=60)
    try:
        report, _ = sp.load_tool(["run", "--config", config, "--lean", "--rate", str(a.rate),
                                  "--duration", str(a.duration), "--warmup", str(a.warmup), "--hold", str(a.hold),
                                  "--agent-pid", str(switch.pid), "--quiet"])
        stats = switch.stats()
    finally:
        switch.stop()
    seconds = (report.get("cpu") or {}).get("agent_cpu_seconds")
    done = report["completions_in_window"]
    return {
        "variant": name, "completed": done, "failed": report["failed"] + report["unfinished"],
        "cps": report["calls_per_second"], "cpu": seconds,
        "cpu_per_call_ms": 1000 * seconds / done if seconds is not None and done else None,
        "takeovers": ((stats.get("cluster") or {}).get("takeovers")),
        "shed": ((stats.get("transactions") or {}).get("overload") or {}).get("calls_shed"),
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--hold", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--gateways", type=int, default=10)
    p.add_argument("--lines", type=int, default=100)
    a = p.parse_args(argv[1:])
    print_machine(machine_info(argv))
    directory = tempfile.mkdtemp(prefix="bench-store-cpu-")
    server = start_postgres(durable=True)
    results: dict[str, list[dict[str, Any]]] = {"sqlite": [], "postgres": []}
    try:
        for n in range(a.rounds):
            for variant in ("sqlite", "postgres"):
                if variant == "sqlite":
                    store = "sqlite:" + os.path.join(directory, f"store-{n}.sqlite")
                else:
                    store = url_of(server.create_database())
                r = run(a, store, directory, f"{variant}-{n}")
                results[variant].append(r)
                print(f"{variant:8} round {n + 1}: {r['completed']:5d} calls ({r['failed']} failed, {r['shed']} shed "
                      f"by the overload guard) at {r['cps']:.1f}/s, agent CPU {r['cpu']:.2f} s = "
                      f"{r['cpu_per_call_ms']:.3f} ms/call; takeovers {r['takeovers']}", flush=True)
    finally:
        server.destroy()
        shutil.rmtree(directory, ignore_errors=True)
    medians = {v: statistics.median(r["cpu_per_call_ms"] for r in rs if r["cpu_per_call_ms"])
               for v, rs in results.items()}
    print()
    print(f"| variant  | agent CPU per call (median of {a.rounds}) | vs SQLite |")
    print("| --- | ---: | ---: |")
    for variant, per in medians.items():
        print(f"| {variant:8} | {per:.3f} ms | {per / medians['sqlite']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
