#!/usr/bin/env python3
"""
Benchmark of failover with real processes (issue 14).  A benchmark, not
a test: it asserts nothing, it prints figures.

    PYTHONPATH=. python benchmarks/bench_failover.py [--kills 10] [--lines 500] \\
        [--talking 200] [--ringing 20] [--signal KILL|STOP] [--json]

Run from the repository root.  The rig is the failover tests'
(tests/support/failover.py): a throwaway PostgreSQL (fsync and
synchronous_commit on), two C{twistd -n mgcpswitch --no-simulator} agents
with the [cluster] defaults, and two simulated gateways of --lines lines
each in a process of their own, both agents in their call agent list.

Each round: --talking calls answered and --ringing calls left ringing;
once their checkpoints are in the database, the active is sent the
signal (SIGKILL, or SIGSTOP then SIGCONT once the other took over).
Measured from the moment just before the signal:

  detection   the standby's "active in epoch" log line arrives
  re-home     every endpoint of both gateways sends to the new active
  recovery    that, and every idle line armed again, no connection left
              outside the talking calls, every talking call still up

Then the ringing calls' lines hang up, the talking calls are released by
their callers: a call is kept when it was still talking after the
takeover and released normally; lost otherwise.  The killed agent is
started again (SIGKILL) or left thawed (SIGSTOP) and stands by for the
next round.  Transaction ids are checked across the whole run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from _common import machine_info, print_machine  # noqa: E402

from tests.support.failover import ACTIVE, PairRig  # noqa: E402
from tests.support.postgres import start_postgres  # noqa: E402


def wait_for(predicate: Any, timeout: float) -> bool:
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.05)
    return True


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"median {statistics.median(values) * 1000:8.1f} ms   max {max(values) * 1000:8.1f} ms"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--lines", type=int, default=500, help="lines per gateway (two gateways)")
    parser.add_argument("--talking", type=int, default=200)
    parser.add_argument("--ringing", type=int, default=20)
    parser.add_argument("--signal", choices=("KILL", "STOP"), default="KILL")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv[1:])
    info = machine_info(argv)
    print_machine(info)
    server = start_postgres(durable=True)
    rounds: list[dict[str, Any]] = []
    reused = 0
    try:
        dsn = server.create_database()
        rig = PairRig(dsn, lines=args.lines)
        try:
            rig.start()
            assert rig.phones is not None
            phones = rig.phones

            def count(sql: str) -> int:
                return int(server.query(dsn, sql)[0][0])

            for n in range(1, args.kills + 1):
                answered_before = count("SELECT count(*) FROM cdr WHERE answer IS NOT NULL")
                talk = phones.ask(f"talk {args.talking}")
                ring = phones.ask(f"setup {args.ringing}")
                wait_for(lambda: count("SELECT count(*) FROM calls") >= talk["talking"], 15.0)
                old = rig.active()
                new = rig.other(old)
                at = old.signal(getattr(signal, "SIG" + args.signal))
                detected = new.wait(ACTIVE, 30.0, since=at)
                watched = phones.ask(f"watch 127.0.0.1:{new.port}")
                if args.signal == "STOP":
                    old.signal(signal.SIGCONT)
                    old.wait("no longer active", 10.0, since=at)
                phones.ask("hangup-setup")
                released = phones.ask("release")
                kept = released["released"]
                wait_for(lambda: count("SELECT count(*) FROM cdr WHERE answer IS NOT NULL")
                         >= answered_before + kept, 15.0)
                records = count("SELECT count(*) FROM cdr WHERE answer IS NOT NULL AND cause = 'normal'")
                stats = phones.ask("stats")
                reused = stats["reused"]
                row = {
                    "round": n, "talking": talk["talking"], "ringing": ring["ringing"],
                    "detection": detected - at if detected else None,
                    "rehome": watched["rehomed"] - at if watched["rehomed"] else None,
                    "recovery": watched["recovered"] - at if watched["recovered"] else None,
                    "kept": kept, "lost": talk["talking"] - kept,
                    "still_talking_after_takeover": watched["talking_lines"] // 2,
                    "setup_connections_left": watched["setup_connections"],
                    "connections_left": stats["connections"],
                    "normal_records": records - answered_before, "txids_reused": reused,
                }
                rounds.append(row)
                print(f"round {n:2d}: detection {row['detection'] or float('nan'):6.3f} s  "
                      f"re-home {row['rehome'] or float('nan'):6.3f} s  "
                      f"recovery {row['recovery'] or float('nan'):6.3f} s  "
                      f"kept {kept}/{talk['talking']}  ringing cleared {ring['ringing']} "
                      f"(connections left {watched['setup_connections']})  txids reused {reused}", flush=True)
                if args.signal == "KILL":
                    old.stop()
                    started = time.time()
                    old.start()
                    old.wait("call agent listening", 60.0, since=started)
        finally:
            rig.stop()
            shutil.rmtree(rig.directory, ignore_errors=True)
    finally:
        server.destroy()

    def column(key: str) -> list[float]:
        return [r[key] for r in rounds if r[key] is not None]

    print()
    print(f"# {len(rounds)} x SIG{args.signal} of the active, {2 * args.lines} lines, "
          f"{args.talking} talking + {args.ringing} ringing calls each time")
    print(f"detection  {summary(column('detection'))}")
    print(f"re-home    {summary(column('rehome'))}")
    print(f"recovery   {summary(column('recovery'))}")
    print(f"calls kept {sum(r['kept'] for r in rounds)}, lost {sum(r['lost'] for r in rounds)}; "
          f"records normal {sum(r['normal_records'] for r in rounds)}; "
          f"connections left after release {sum(r['connections_left'] for r in rounds)}; txids reused {reused}")
    if args.json:
        print(json.dumps({"machine": info, "rounds": rounds}))


if __name__ == "__main__":
    main(sys.argv)
