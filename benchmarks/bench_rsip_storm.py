#!/usr/bin/env python3
"""
RSIP storm (issue 8): 10k endpoints (10 gateways x 1,000 lines) restart
within one second against a running switch: every endpoint registered,
audits paced, nothing lost; time to steady state.

    PYTHONPATH=. python benchmarks/bench_rsip_storm.py \\
        [--gateways 10] [--lines 1000] [--spread 1.0] [--runs 3] [--audit-concurrency N]

Each run: a fresh switch (C{twistd -n mgcpswitch --config INI
--no-simulator}, started and stopped by PID; the INI from C{mgcpload
config}: no observers, no ladder, keepalive 60 s); then C{mgcpload register
--restart-delay SPREAD --track} in its own process: each gateway sends its
C{RSIP *@lgN RM: restart} after a uniform random delay in [0, SPREAD]
(GatewayConfig.restart_delay, RFC 3435 §4.4.6), and the tool counts, per
line, the AUEPs and RQNTs its gateway received, and the most lines of one
gateway audited but not yet armed at once (= audits in flight at the
switch: answers go back at once and loopback keeps datagrams in order).

Steady state = every line armed (holds the switch's C{R: L/hd}); the time
is measured from the start of the gateways (the first RSIP is due at the
earliest delay drawn).  Afterwards the switch's admin API must show every
endpoint registered and every gateway up.

And what the overload guard said meanwhile, from the switch's log (its
one line when the agent becomes overloaded, one when it recovers): the
episodes, how late the reactor ran when each began (smoothed over two
probes of 20 ms), the datagrams the kernel dropped unread then, the
seconds overloaded and the lowest share of new calls admitted.  A
registration must not make the guard shed the calls of the lines that
are up (issue 15).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _switchproc as sp  # noqa: E402
from _common import machine_info, print_machine  # noqa: E402


def say(text: str) -> None:
    print(text, flush=True)


_OVERLOADED = re.compile(r"overloaded: .*?runs (\d+) ms late .*?(\d+) datagrams dropped")
_RECOVERED = re.compile(r"no longer overloaded after ([\d.]+) s: .*?lowest share admitted (\d+)%")


def guard_said(log: str) -> dict[str, Any]:
    """The overload guard's episodes in this part of the switch's log (L{mgcpswitch.agent.overload})."""
    began = [(int(m.group(1)), int(m.group(2))) for m in _OVERLOADED.finditer(log)]
    ended = [(float(m.group(1)), int(m.group(2)) / 100) for m in _RECOVERED.finditer(log)]
    return {
        "episodes": len(began),
        "late_ms": max((late for late, _ in began), default=0),
        "dropped": sum(dropped for _, dropped in began),
        "seconds": sum(seconds for seconds, _ in ended),
        "lowest_share": min((share for _, share in ended), default=1.0),
    }


def one_run(a: Any, n: int) -> dict[str, Any]:
    agent_port = sp.free_udp_port()
    base = sp.free_udp_range(a.gateways)
    web = sp.free_tcp_port()
    config = sp.write_config(a.gateways, a.lines, agent_port, base, web,
                             audit_concurrency=a.audit_concurrency)
    switch = sp.Switch(config, web)
    switch.start()
    try:
        other = sp.wait_quiet([switch.pid], a.max_other, a.quiet_wait, say)
        logged = os.path.getsize(switch.log_path)
        report, _ = sp.load_tool(["register", "--config", config, "--restart-delay", str(a.spread),
                                  "--track", "--agent-pid", str(switch.pid), "-q", "--seed", str(n)])
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            stats = switch.stats()
            if stats["endpoints"]["registered"] >= a.gateways * a.lines:
                break
            time.sleep(0.1)
        gateways = switch.gateways()
        with open(switch.log_path, errors="replace") as f:
            f.seek(logged)
            report["guard"] = guard_said(f.read())
        report["agent_registered"] = stats["endpoints"]["registered"]
        report["agent_total"] = stats["endpoints"]["total"]
        report["gateway_states"] = sorted({g["state"] for g in gateways})
        report["agent_counters"] = stats["transactions"]["counters"]
        report["other_before"] = other
        return report
    finally:
        switch.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gateways", type=int, default=10)
    p.add_argument("--lines", type=int, default=1000)
    p.add_argument("--spread", type=float, default=1.0, help="RSIPs within this many seconds")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--audit-concurrency", type=int, default=None, help="[switch] audit_concurrency (default 16)")
    p.add_argument("--max-other", type=float, default=0.3)
    p.add_argument("--quiet-wait", type=float, default=60.0)
    a = p.parse_args()
    print_machine(machine_info(sys.argv))
    say(f"# code        {sp.code_state()}")
    n = a.gateways * a.lines
    limit = a.audit_concurrency or 16
    baseline = sp.echo_baseline()
    say(f"# baseline    bare Twisted UDP echo, stdlib client in ping-pong: {baseline['round_trips_per_s']:,.0f} "
        f"round trips/s, echo CPU {baseline['echo_cpu_us_per_rt']:.1f} us per round trip")
    say(f"# storm       {a.gateways} gateways x {a.lines} lines = {n:,} endpoints, RSIPs within {a.spread:g} s; "
        f"audit_concurrency {limit}")
    say("")
    say("| run | RSIPs due (s) | all armed (s) | after last RSIP (s) | p50 / p90 / p99 armed (s) | AUEP/line | "
        "arming RQNT/line | max audits in flight/gw | retrans (gw) / dup (agent's) | timeouts | registered | "
        "gateways | agent CPU | other | overloaded: episodes / most late (ms) / dropped / seconds / lowest share |")
    say("|---:|---|---:|---:|---|---|---|---:|---|---:|---|---|---:|---:|---|")
    ok = True
    for run in range(1, a.runs + 1):
        r = one_run(a, run)
        au = r["audits"]
        cpu = r.get("cpu") or {}
        armed = r["armed_s"]
        g = r["guard"]
        exact = au["auep_per_line"] == {1: n} or au["auep_per_line"] == {"1": n}
        armed_once = au["arming_rqnt_per_line"] in ({1: n}, {"1": n})
        registered = r["agent_registered"] == n
        bounded = au["max_audits_in_flight_per_gateway"] <= limit
        ok = ok and exact and armed_once and registered and bounded and r["timeouts"] == 0
        say(f"| {run} | {r['rsip_due_s']['first']:.3f}..{r['rsip_due_s']['last']:.3f} | {r['all_armed_s']:.2f} "
            f"| {r['after_last_rsip_s']:.2f} | {armed['p50']:.2f} / {armed['p90']:.2f} / {armed['p99']:.2f} "
            f"| {au['auep_per_line']} | {au['arming_rqnt_per_line']} | {au['max_audits_in_flight_per_gateway']} "
            f"| {r['retransmissions']} / {r['duplicates_received']} | {r['timeouts']} "
            f"| {r['agent_registered']:,}/{r['agent_total']:,} | {','.join(r['gateway_states'])} "
            f"| {(cpu.get('agent_cpu') or 0) * 100:.0f} % | {(cpu.get('other_load') or 0) * 100:.0f} % "
            f"| {g['episodes']} / {g['late_ms']} / {g['dropped']} / {g['seconds']:.1f} / {g['lowest_share']:.2f} |")
    say("")
    say("# verdict     " + ("every endpoint registered, each line audited once and armed once, audits in flight "
                           f"<= {limit} per gateway, no timeout" if ok else "SOMETHING WAS LOST OR UNBOUNDED: see the table"))


if __name__ == "__main__":
    import signal

    def _terminated(signum: int, frame: Any) -> None:
        raise SystemExit(f"terminated by signal {signum}")  # so that finally: stops the switch

    signal.signal(signal.SIGTERM, _terminated)
    main()
