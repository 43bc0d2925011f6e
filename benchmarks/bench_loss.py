#!/usr/bin/env python3
"""
Calls under loss (issue 16): real processes on loopback, datagrams lost,
duplicated and delayed both ways between the switch and its gateways.

    PYTHONPATH=. python benchmarks/bench_loss.py [--calls 10000] [--losses 0,0.2,0.3] \\
        [--gateways 4] [--lines 250] [--rate 40] [--duplicate 0.05] [--delay 0.05]

For each loss rate, in one run: a fresh switch (C{twistd -n mgcpswitch
--config INI --no-simulator}, started and stopped by PID; the INI from
C{mgcpload config}, CDRs in a SQLite file of a temporary directory,
keepalive 15 s), then C{mgcpload run --calls N --drop LOSS --duplicate
--delay --settle S} in its own process: its simulated gateways (the real
gateway code, L{mgcpswitch.gateway.faults}) drop, duplicate and delay that
fraction of the datagrams they send and receive, so the loss is each way.
After the last call the tool stops the faults and keeps its gateways
running C{--settle} seconds; meanwhile this script reads the switch's
C{/api/endpoints} and C{/api/gateways} every half second.

What is checked, per rate:

  - every call the tool placed completed, or failed with a cause (none
    unfinished); every call the switch started has exactly one CDR (rows =
    C{calls_started}, by cause); calls the switch never saw (the caller's
    digits did not get through before the tool gave up) are the difference
    with the tool's attempts;
  - no connection left on any gateway, every line idle and armed, on the
    gateways (the tool's census) and at the switch (every endpoint idle, on
    hook, without connection, every gateway up);
  - convergence: the time from the faults stopping to the first reading of
    the switch showing that;
  - false downs: gateways the switch declared down (its log's "is down"),
    although none ever was; beside them, its liveness probes that got no
    answer (C{keepalive_timeouts}).

The verdict line says whether every invariant held and whether >= 95 % of
the calls completed at 20 % loss.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _switchproc as sp  # noqa: E402
from _common import machine_info, print_machine  # noqa: E402


def say(text: str) -> None:
    print(text, flush=True)


def get_json(url: str, timeout: float = 30.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def switch_view(web: int) -> dict[str, Any]:
    """The switch's endpoints and gateways, summed up: how many are not idle, armed and up."""
    base = f"http://127.0.0.1:{web}"
    endpoints = get_json(base + "/api/endpoints")["endpoints"]
    gateways = get_json(base + "/api/gateways")["gateways"]
    not_idle = [e["name"] for e in endpoints
                if e["state"] != "idle" or e["hook"] != "on" or e["connections"] or e["call_id"]]
    return {
        "endpoints": len(endpoints),
        "not_idle": len(not_idle),
        "not_idle_sample": not_idle[:5],
        "connections": sum(len(e["connections"]) for e in endpoints),
        "states": dict(Counter(e["state"] for e in endpoints)),
        "gateways_not_up": sorted(g["name"] for g in gateways if g["state"] != "up"),
    }


def converged(view: dict[str, Any], expected: int) -> bool:
    return view["endpoints"] == expected and view["not_idle"] == 0 and not view["gateways_not_up"]


class Watcher:
    """Reads the switch every half second from when the tool says the faults stopped."""

    def __init__(self, web: int, expected: int) -> None:
        self.web = web
        self.expected = expected
        self.stopped_at: Optional[float] = None
        self.readings: list[tuple[float, dict[str, Any]]] = []
        self.errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def heard(self, line: str) -> None:
        """A line the tool wrote on stderr: its "faults stopped" starts the readings."""
        if "faults stopped" in line and self.stopped_at is None:
            self.faults_stopped()

    def faults_stopped(self) -> None:
        self.stopped_at = time.time()
        self._thread = threading.Thread(target=self._poll, name="watch-switch", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            t = time.time()
            try:
                self.readings.append((t, switch_view(self.web)))
            except Exception as e:  # noqa: BLE001 - a reading missed is said, not fatal
                self.errors[type(e).__name__ + ": " + str(e)[:100]] += 1
            self._stop.wait(0.5)

    def finish(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def convergence(self) -> Optional[float]:
        """Seconds from the faults stopping to the first reading showing every endpoint idle and armed."""
        if self.stopped_at is None:
            return None
        for t, view in self.readings:
            if converged(view, self.expected):
                return max(0.0, t - self.stopped_at)
        return None

    def last(self) -> Optional[dict[str, Any]]:
        return self.readings[-1][1] if self.readings else None


def cdr_rows(path: str) -> tuple[int, int, Counter[str], int]:
    """Rows, distinct call ids, rows by cause, and answered rows of the CDR table."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT call_id, cause, answer FROM cdr").fetchall()
    return len(rows), len({r[0] for r in rows}), Counter(r[1] for r in rows), sum(1 for r in rows if r[2])


def one_rate(a: Any, loss: float, directory: str) -> dict[str, Any]:
    agent_port = sp.free_udp_port()
    base = sp.free_udp_range(a.gateways)
    web = sp.free_tcp_port()
    db = os.path.join(directory, f"cdr-{loss:g}.sqlite")
    config = sp.write_config(a.gateways, a.lines, agent_port, base, web, directory=directory,
                             keepalive_interval=a.keepalive, store=f"sqlite:{db}")
    if not a.overload_guard:
        with open(config, "a", encoding="utf-8") as f:
            f.write("\n[overload]\nenabled = no\n")
    switch = sp.Switch(config, web)
    switch.start()
    expected = a.gateways * a.lines
    watcher = Watcher(web, expected)
    try:
        args = [
            "run", "--config", config, "--calls", str(a.calls), "--rate", str(a.rate),
            "--duration", f"{a.calls / a.rate:.3f}", "--warmup", "0", "--hold", str(a.hold),
            "--step-timeout", str(a.step_timeout), "--settle", str(a.settle),
            "--register-timeout", "300", "--agent-pid", str(switch.pid), "--seed", str(a.seed),
            "--progress-interval", "10",
        ]
        if loss or a.duplicate or a.delay:
            args += ["--drop", str(loss), "--duplicate", str(a.duplicate), "--delay", str(a.delay),
                     "--delay-seconds", str(a.delay_seconds)]
        budget = a.calls / a.rate + a.settle + 900
        report, _ = sp.load_tool(args, budget, on_stderr=watcher.heard)
        watcher.finish()
        stats = switch.stats()
    finally:
        watcher.finish()
        switch.stop()  # SIGTERM: the store flushes what it holds
    log = open(switch.log_path, encoding="utf-8", errors="replace").read()
    rows, distinct, causes, answered = cdr_rows(db)
    cc = stats["transactions"]["call_control"]
    return {
        "loss": loss,
        "report": report,
        "cc": cc,
        "outcomes": stats["calls"]["outcomes"],
        "rows": rows,
        "distinct": distinct,
        "causes": causes,
        "answered": answered,
        "downs_logged": log.count(" is down"),
        "tracebacks": log.count("Traceback"),
        "convergence": watcher.convergence(),
        "watch_errors": dict(watcher.errors),
        "switch_end": watcher.last(),
        "expected": expected,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=10_000, help="calls per loss rate (default 10,000)")
    p.add_argument("--losses", default="0,0.2,0.3", help="loss rates each way, comma separated")
    p.add_argument("--duplicate", type=float, default=0.05)
    p.add_argument("--delay", type=float, default=0.05)
    p.add_argument("--delay-seconds", type=float, default=0.5)
    p.add_argument("--gateways", type=int, default=4)
    p.add_argument("--lines", type=int, default=250)
    p.add_argument("--rate", type=float, default=40.0, help="calls started per second")
    p.add_argument("--hold", type=float, default=1.0)
    p.add_argument("--step-timeout", type=float, default=10.0,
                   help="how long a party waits for each step (dial tone, ringing, connect, release)")
    p.add_argument("--settle", type=float, default=30.0, help="seconds the gateways run after the faults stop")
    p.add_argument("--keepalive", type=float, default=15.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--overload-guard", choices=("on", "off"), default="on",
                   help="the switch's [overload] guard; 'off' on a shared machine, where other processes' "
                        "CPU makes the reactor late and calls are shed as 'overload', which is not the loss")
    p.add_argument("--json", default=None, help="also write the figures to FILE")
    a = p.parse_args()
    a.overload_guard = a.overload_guard == "on"
    print_machine(machine_info(sys.argv))
    say(f"# code        {sp.code_state()}")
    say(f"# population  {a.gateways} gateways x {a.lines} lines; {a.calls:,} calls per rate at {a.rate:g}/s, "
        f"hold {a.hold:g} s, step timeout {a.step_timeout:g} s; duplicates {a.duplicate * 100:g} %, "
        f"delays {a.delay * 100:g} % ({a.delay_seconds:g} s), each way; keepalive {a.keepalive:g} s; "
        f"settle {a.settle:g} s; overload guard {'on' if a.overload_guard else 'off'}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-loss-") as directory:
        for text in a.losses.split(","):
            loss = float(text)
            say(f"# loss {loss * 100:g} % ...")
            results.append(one_rate(a, loss, directory))
    say("")
    say("| loss each way | attempted | completed | failed (tool's cause) | CDR rows = calls started | "
        "CDRs by cause | false downs | suspect | connections left | lines not idle (gw / switch) | "
        "converged after faults stop | agent CPU |")
    say("|---:|---:|---:|---|---|---|---:|---:|---:|---|---:|---:|")
    ok = True
    at_20: Optional[float] = None
    for r in results:
        rep, cc = r["report"], r["cc"]
        end = r["switch_end"] or {}
        started = cc.get("calls_started", 0)
        clean = (
            rep["unfinished"] == 0 and rep["attempted"] == a.calls
            and r["rows"] == r["distinct"] == started == cc.get("calls_ended", 0)
            and rep["connections_left"] == 0 and rep["lines_not_idle"] == 0
            and r["convergence"] is not None and r["convergence"] <= 30.0
            and end.get("connections", 1) == 0 and r["tracebacks"] == 0
        )
        ok = ok and clean
        share = rep["completed"] / rep["attempted"] if rep["attempted"] else 0.0
        if abs(r["loss"] - 0.2) < 1e-9:
            at_20 = share
        failures = ", ".join(f"{k} {v}" for k, v in rep["failures"].items()) or "-"
        causes = ", ".join(f"{k} {v}" for k, v in r["causes"].most_common())
        conv = "-" if r["convergence"] is None else f"{r['convergence']:.1f} s"
        cpu = (rep.get("cpu") or {}).get("agent_cpu")
        say(f"| {r['loss'] * 100:g} % | {rep['attempted']:,} | {rep['completed']:,} ({share * 100:.1f} %) "
            f"| {rep['failed']:,}: {failures} | {r['rows']:,} = {started:,} | {causes} "
            f"| {r['downs_logged']} ({cc.get('keepalive_timeouts', 0)} probes failed) | {cc.get('gateways_suspect', 0)} "
            f"| {rep['connections_left']} | {rep['lines_not_idle']} / {end.get('not_idle', '?')} | {conv} "
            f"| {'-' if cpu is None else f'{cpu * 100:.0f} %'} |")
    say("")
    for r in results:
        rep = r["report"]
        say(f"# {r['loss'] * 100:g} %: faults injected {rep['faults']}; the tool's gateways retransmitted "
            f"{rep['retransmissions']:,}, timed out {rep['timeouts']}; set aside {rep['suspect_lines']} suspect "
            f"line(s); every line idle on the gateways {rep['settle'].get('idle_after_s')} s after the faults "
            f"stopped; switch at the end {r['switch_end']}"
            + (f"; readings of the switch that failed: {r['watch_errors']}" if r["watch_errors"] else ""))
    enough = at_20 is None or at_20 >= 0.95
    say("# verdict     " + (
        "every call completed or ended with a cause; one CDR per call the switch started; no connection left; "
        "every line idle and armed within 30 s of the loss stopping" if ok else
        "AN INVARIANT FAILED: see the table") + (
        "" if at_20 is None else f"; at 20 % loss {at_20 * 100:.1f} % completed ({'>=' if enough else 'BELOW'} 95 %)"))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump([{k: v for k, v in r.items() if k != "report"} | {"report": r["report"]} for r in results],
                      f, indent=2, default=str)


if __name__ == "__main__":

    def _terminated(signum: int, frame: Any) -> None:
        raise SystemExit(f"terminated by signal {signum}")  # so that finally: stops the switch

    signal.signal(signal.SIGTERM, _terminated)
    main()
