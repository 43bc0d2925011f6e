#!/usr/bin/env python3
"""
Calls per second through one call-agent process (issue 8): a ramp that
finds the knee, the highest rate with 0 failed calls and p99 call setup
under 50 ms.  A benchmark, not a test: it prints figures.

    PYTHONPATH=. python benchmarks/bench_calls.py \\
        [--quick] [--gateways 10] [--lines 1000] [--rates 100,250,...] [--step 20] \\
        [--warmup 5] [--hold 1] [--open-loop 1000] [--bisect 3] [--max-other 0.3] \\
        [--profile RATE|knee] [--json FILE] [--lean] [--compare RATE] [--no-prototype]

What it does:

  1. writes a switch INI with C{mgcpload config} (K gateways x M lines on
     127.0.0.1, each its own UDP port; C{ladder = no}, no observers,
     keepalive 60 s; free ports), and starts the switch as a subprocess:
     C{twistd -n --pidfile= mgcpswitch --config INI --no-simulator} with
     PYTHONPATH at the repository (started and stopped by PID); waits
     until its admin answers;
  2. for each rate: runs C{mgcpload run --rate R --warmup W --duration D
     --hold H --json} as a separate process (which registers its
     gateways, RSIP restart and audits, before each step), and reads its
     report: completed calls/s, failures, setup p50/p99, the agent's and
     the tool's CPU (from /proc) and the other load on the machine;
     before each step it waits (up to --quiet-wait s) for the machine's
     other load to fall below --max-other CPUs, since this 2-core machine
     is shared;
  3. a step is "good" when it had no failed call, p99 setup < 50 ms and
     completed at least 95 % of the target rate; the ramp stops after two
     bad steps in a row, then bisects --bisect times between the last
     good and the first bad rate; the knee is the best good rate;
  4. one open-loop step at maximum (C{--open-loop C} calls in progress);
  5. with C{--profile RATE} (or C{knee}): one more step at that rate while
     py-spy records both the agent and the tool; own time by function and
     by area, samples waiting in epoll (idle) left out.

C{--lean} runs every step with the lean generator (C{mgcpload run --lean},
issue 15), whose CPU per call is a fraction of the agent's, so that the
agent is the process that saturates.  At the knee and at the first bad
step the benchmark prints each process's share of a core and which one
ran out first.  C{--compare RATE} first runs one step at RATE with each
generator (the full simulator, then the lean one): CPU per call of the
agent and of the generator side by side.

The bare call-agent prototype of issue 15 (C{shared/baselines}, found
beside the checkout; C{$MGCP_BASELINES} overrides) runs in the same run,
before the ramp, as its README says: its server's CPU per transaction is
printed beside the agent's CPU per call and per transaction at the knee,
with their ratio (C{--no-prototype} skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _switchproc as sp  # noqa: E402
from _common import machine_info, print_machine  # noqa: E402

QUICK_RATES = [100, 500, 1000, 2000]
FULL_RATES = [100, 250, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000]


def say(text: str) -> None:
    print(text, flush=True)


def good(r: dict[str, Any], rate: float) -> bool:
    p99 = r["setup_ms"].get("p99")
    return (r["failed"] == 0 and r["unfinished"] == 0 and p99 is not None and p99 < 50.0
            and r["calls_per_second"] >= 0.95 * rate)


def row(label: str, r: dict[str, Any]) -> str:
    cpu = r.get("cpu") or {}
    s = r["setup_ms"]

    def pc(v: Optional[float]) -> str:
        return "   -" if v is None else f"{v * 100:4.0f}"

    def ms(v: Optional[float]) -> str:
        return "      -" if v is None else f"{v:7.1f}"

    failures = ",".join(f"{k}:{v}" for k, v in r["failures"].items()) or "-"
    per_call = tool_call = ratio = "-"
    if cpu.get("agent_cpu_seconds") is not None and r["completions_in_window"]:
        per_call = f"{cpu['agent_cpu_seconds'] / r['completions_in_window'] * 1e6:.0f}"
        tool_call = f"{cpu['tool_cpu_seconds'] / r['completions_in_window'] * 1e6:.0f}"
        if cpu["agent_cpu_seconds"]:
            ratio = f"{cpu['tool_cpu_seconds'] / cpu['agent_cpu_seconds']:.2f}"
    return (f"| {label:>9} | {r['calls_per_second']:8.1f} | {r['attempted']:6d} | {r['failed']:5d} "
            f"| {ms(s.get('p50'))} | {ms(s.get('p99'))} | {ms(s.get('max'))} | {r['transactions_per_second']:7.0f} "
            f"| {r['retransmissions']:4d}/{r['duplicates_received']:<5d} | {pc(cpu.get('agent_cpu'))} % "
            f"| {pc(cpu.get('tool_cpu'))} % | {pc(cpu.get('other_load'))} % | {per_call:>6} | {tool_call:>6} | {ratio:>5} "
            f"| {failures}")


HEADER = (
    "| rate      | calls/s  | calls  | fail  | p50 ms  | p99 ms  | max ms  | MGCP/s  | retr/dup   | agent  "
    "| tool   | other  | agent us/call | tool us/call | tool/agent | failures\n"
    "|----------:|---------:|-------:|------:|--------:|--------:|--------:|--------:|-----------:|-------:"
    "|-------:|-------:|-------:|-------:|------:|---------"
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short steps, few rates (a smoke run)")
    p.add_argument("--gateways", type=int, default=10)
    p.add_argument("--lines", type=int, default=1000)
    p.add_argument("--rates", default=None, help="comma-separated calls/s")
    p.add_argument("--step", type=float, default=None, help="measured seconds per step (default 20; quick 5)")
    p.add_argument("--warmup", type=float, default=None, help="default 5; quick 2")
    p.add_argument("--hold", type=float, default=1.0)
    p.add_argument("--open-loop", type=int, default=None, help="calls in progress (default 1000; 0: skip)")
    p.add_argument("--bisect", type=int, default=None, help="bisection steps (default 3; quick 1)")
    p.add_argument("--max-other", type=float, default=0.3, help="wait for other load below this many CPUs")
    p.add_argument("--quiet-wait", type=float, default=90.0)
    p.add_argument("--profile", default=None,
                   help="py-spy both processes during one more step at this rate, or 'knee'")
    p.add_argument("--profile-dir", default="/tmp")
    p.add_argument("--json", default=None, help="write every step's report to FILE")
    p.add_argument("--workers", type=int, default=1,
                   help="load-tool processes per step, each with its share of the gateways and the rate")
    p.add_argument("--lean", action="store_true", help="the lean generator (mgcpload run --lean) in every step")
    p.add_argument("--compare", type=float, default=None,
                   help="first one step at this rate with each generator (simulator, lean)")
    p.add_argument("--no-prototype", action="store_true", help="do not run the bare prototype baseline")
    a = p.parse_args()
    quick = a.quick
    step = a.step if a.step is not None else (5.0 if quick else 20.0)
    warmup = a.warmup if a.warmup is not None else (2.0 if quick else 5.0)
    rates = [float(x) for x in a.rates.split(",")] if a.rates else (QUICK_RATES if quick else FULL_RATES)
    bisect = a.bisect if a.bisect is not None else (1 if quick else 3)
    open_loop = a.open_loop if a.open_loop is not None else (500 if quick else 1000)

    info = machine_info(sys.argv)
    print_machine(info)
    say(f"# code        {sp.code_state()}")
    agent_port = sp.free_udp_port()
    base_port = sp.free_udp_range(a.gateways)
    web_port = sp.free_tcp_port()
    config = sp.write_config(a.gateways, a.lines, agent_port, base_port, web_port)
    say(f"# switch      {a.gateways} gateways x {a.lines} lines = {a.gateways * a.lines} endpoints; "
        f"agent 127.0.0.1:{agent_port}, gateways on 127.0.0.1:{base_port}..{base_port + a.gateways - 1}; "
        f"config {config}")
    say(f"# steps       warm-up {warmup:g} s + {step:g} s measured; hold {a.hold:g} s; answer at once; "
        f"caller hangs up; setup = last digit -> callee rings and caller hears ringback")
    baseline = sp.echo_baseline()
    say(f"# baseline    bare Twisted UDP echo, stdlib client in ping-pong: {baseline['round_trips_per_s']:,.0f} "
        f"round trips/s, echo CPU {baseline['echo_cpu_us_per_rt']:.1f} us per round trip (before the ramp)")
    say(f"# generator   {'lean (mgcpload run --lean)' if a.lean else 'full simulated gateways'}"
        f"{f', {a.workers} processes' if a.workers > 1 else ''}")
    prototype = run_prototype(a)
    switch = sp.Switch(config, web_port)
    switch.start()
    try:
        run_ramp(a, info, config, switch, step, warmup, rates, bisect, open_loop, prototype)
    finally:
        switch.stop()
        say(f"# switch stopped (pid {switch.pid}); log {switch.log_path}")
    baseline = sp.echo_baseline()
    say(f"# baseline    bare Twisted UDP echo, stdlib client in ping-pong: {baseline['round_trips_per_s']:,.0f} "
        f"round trips/s, echo CPU {baseline['echo_cpu_us_per_rt']:.1f} us per round trip (after the ramp)")


def run_prototype(a: Any) -> Optional[dict[str, Any]]:
    """The bare prototype's CPU per transaction, measured now (None when skipped or not found)."""
    if a.no_prototype:
        return None
    where = sp.find_baselines()
    if where is None:
        say("# prototype   not found (shared/baselines beside the checkout, or $MGCP_BASELINES): skipped")
        return None
    result = sp.prototype_baseline(where)
    say(f"# prototype   bare Twisted call agent of issue 15 (NTFY -> 200 + RQNT -> 200), window "
        f"{result['window']}: {result['txn_per_s']:,.0f} transactions/s, server CPU "
        f"{result['server_cpu_us_per_txn']:.1f} us per transaction ({result['command']})")
    return result


def cpu_line(r: dict[str, Any]) -> str:
    """Each process's share of a core in a step, and which one ran out first."""
    cpu = r.get("cpu") or {}
    agent = cpu.get("agent_cpu")
    tools = cpu.get("tool_cpu_by_worker") or [cpu.get("tool_cpu")]
    tools = [t for t in tools if t is not None]
    busy, ncpu = cpu.get("machine_busy"), cpu.get("ncpu") or 1
    if agent is None or not tools:
        return "CPU not measured"
    text = (f"agent {agent * 100:.0f} % of a core, {r.get('generator') or 'generator'} "
            + " + ".join(f"{t * 100:.0f} %" for t in tools)
            + (f", machine busy {busy * 100:.0f} % of {ncpu} cores" if busy is not None else ""))
    if agent >= 0.9 and agent >= max(tools):
        return text + ": the AGENT saturated"
    if max(tools) >= 0.9:
        return text + ": a GENERATOR process saturated"
    if busy is not None and busy >= 0.9 * ncpu:
        return text + ": the MACHINE saturated (every core busy) before either process"
    return text + ": no process at a full core"


def per_call_line(r: dict[str, Any], prototype: Optional[dict[str, Any]]) -> str:
    """The agent's CPU per call and per transaction, the generator's, and the ratios."""
    per = r.get("cpu_per_call_us") or {}
    agent, tool, per_tx = per.get("agent"), per.get("tool"), per.get("agent_per_transaction")
    if agent is None or tool is None:
        return "CPU per call not measured"
    text = (f"agent {agent:.0f} us per call, {per_tx:.1f} us per transaction; generator {tool:.0f} us per call "
            f"({tool / agent:.2f} x the agent's)")
    if prototype is not None and per_tx:
        base = prototype["server_cpu_us_per_txn"]
        text += (f"; prototype {base:.1f} us per transaction: the agent spends {per_tx / base:.1f} x the "
                 f"prototype per transaction")
    return text


def run_ramp(a: Any, info: dict[str, Any], config: str, switch: sp.Switch, step: float, warmup: float,
             rates: list[float], bisect: int, open_loop: int, prototype: Optional[dict[str, Any]] = None) -> None:
    say(f"# switch pid  {switch.pid}: {' '.join(shlex.quote(x) for x in switch.argv[3:])}")
    results: list[dict[str, Any]] = []

    def run_step(label: str, extra: list[str], rate: Optional[float], lean: bool = a.lean) -> dict[str, Any]:
        other = sp.wait_quiet([switch.pid], a.max_other, a.quiet_wait, say)
        args = ["run", "--config", config, "--duration", str(step), "--warmup", str(warmup),
                "--hold", str(a.hold), "--agent-pid", str(switch.pid), "-q"] + extra + (["--lean"] if lean else [])
        if a.workers > 1:
            report = run_workers(args, a.workers, a.gateways)
        else:
            report, proc = sp.load_tool(args)
        report["label"] = label
        report["other_before"] = other
        report["command"] = "scripts/mgcpload " + " ".join(shlex.quote(x) for x in args)
        results.append(report)
        say(row(label, report) + ("" if rate is None else ("  ok" if good(report, rate) else "  BAD")))
        return report

    say("")
    say(HEADER)
    if a.compare:
        simulator = run_step(f"sim {a.compare:g}", ["--rate", str(a.compare)], a.compare, lean=False)
        lean = run_step(f"lean {a.compare:g}", ["--rate", str(a.compare)], a.compare, lean=True)
        say(f"# at {a.compare:g} calls/s, full simulator: {per_call_line(simulator, prototype)}")
        say(f"# at {a.compare:g} calls/s, lean generator: {per_call_line(lean, prototype)}")
        say("")
    tested: dict[float, bool] = {}
    bad_in_row = 0
    for rate in rates:
        r = run_step(f"{rate:g}", ["--rate", str(rate)], rate)
        tested[rate] = good(r, rate)
        bad_in_row = 0 if tested[rate] else bad_in_row + 1
        if bad_in_row >= 2:
            break
    # Bisection between the best good rate and the first bad one above it.
    for _ in range(bisect):
        goods = [r for r, ok in tested.items() if ok]
        low = max(goods) if goods else 0.0
        bads = [r for r, ok in tested.items() if not ok and r > low]
        if not bads:
            break
        high = min(bads)
        if high - low <= max(25.0, 0.04 * high):
            break
        mid = round((low + high) / 2 / 25) * 25 or (low + high) / 2
        if mid in tested:
            break
        r = run_step(f"{mid:g}", ["--rate", str(mid)], mid)
        tested[mid] = good(r, mid)
    if open_loop:
        run_step(f"open{open_loop}", ["--open-loop", "--concurrency", str(open_loop)], None)
    goods = [r for r, ok in tested.items() if ok]
    knee = max(goods) if goods else None
    say("")
    if knee is not None:
        knee_report = next(r for r in results if r["label"] == f"{knee:g}")
        say(f"# knee        {knee:g} calls/s: {knee_report['calls_per_second']:.1f} completed/s, 0 failed, "
            f"p99 setup {knee_report['setup_ms']['p99']:.1f} ms")
        say(f"#   CPU       {cpu_line(knee_report)}")
        say(f"#   per call  {per_call_line(knee_report, prototype)}")
    else:
        say("# knee        none: no step met 0 failures and p99 < 50 ms")
    bad = sorted(r for r, ok in tested.items() if not ok and (knee is None or r > knee))
    if bad:
        first_bad = next(r for r in results if r["label"] == f"{bad[0]:g}")
        say(f"# first bad   {bad[0]:g} calls/s: {cpu_line(first_bad)}")
    profile: dict[str, Any] = {}
    if a.profile:
        rate = knee if a.profile == "knee" else float(a.profile)
        if rate:
            profile = profile_step(a, rate, switch, config, step, warmup, say)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": info, "knee": knee, "steps": results, "profile": profile,
                       "prototype": prototype}, f, indent=2,
                      default=str)
        say(f"# json        {a.json}")


def _split(extra: list[str], workers: int) -> list[str]:
    """A worker's share of --rate R or --concurrency C."""
    out = list(extra)
    for flag in ("--rate", "--concurrency"):
        if flag in out:
            i = out.index(flag) + 1
            out[i] = str(float(out[i]) / workers) if flag == "--rate" else str(max(1, int(out[i]) // workers))
    return out


def run_workers(args: list[str], workers: int, gateways: int) -> dict[str, Any]:
    """
    The step with C{workers} load-tool processes, each simulating its share
    of the gateways at its share of the rate; their reports merged (setup
    percentiles from every latency, CPU of the tools summed).
    """
    from mgcpswitch.load import Report, percentile
    from mgcpswitch.load.report import cpu_per_call

    names = [f"lg{i}" for i in range(1, gateways + 1)]
    procs = []
    for w in range(workers):
        mine = names[w::workers]
        procs.append(sp.start_load_tool(_split(args, workers) + ["--raw", "--gateways", ",".join(mine)]))
    reports = []
    for p in procs:
        out, _ = p.communicate(timeout=900)
        reports.append(json.loads(out))
    merged = dict(reports[0])
    for key in ("attempted", "completed", "failed", "unfinished", "completions_in_window", "retransmissions",
                "timeouts", "duplicates_received", "suspect_lines", "peak_in_progress", "gateways", "lines"):
        merged[key] = sum(r[key] for r in reports)
    for key in ("calls_per_second", "started_per_second", "transactions_per_second"):
        merged[key] = sum(r[key] for r in reports)
    failures: dict[str, int] = {}
    for r in reports:
        for k, v in r["failures"].items():
            failures[k] = failures.get(k, 0) + v
    merged["failures"] = failures
    transactions: dict[str, int] = {}
    for r in reports:
        for k, v in r["transactions"].items():
            transactions[k] = transactions.get(k, 0) + v
    merged["transactions"] = transactions
    setups = sorted(x for r in reports for x in (r.get("setups_raw") or []))
    ms = (lambda v: None if v is None else v * 1000.0)
    merged["setup_ms"] = {"p50": ms(percentile(setups, 0.5)), "p95": ms(percentile(setups, 0.95)),
                          "p99": ms(percentile(setups, 0.99)), "max": ms(setups[-1] if setups else None),
                          "count": len(setups)}
    refusals = sorted(x for r in reports for x in (r.get("refusals_raw") or []))
    merged["refused_ms"] = {"p50": ms(percentile(refusals, 0.5)), "p99": ms(percentile(refusals, 0.99)),
                            "max": ms(refusals[-1] if refusals else None), "count": len(refusals)}
    seconds: dict[int, dict[str, int]] = {}
    for r in reports:
        for entry in r.get("timeline") or []:
            into = seconds.setdefault(entry["second"], {"second": entry["second"]})
            for k, v in entry.items():
                if k != "second":
                    into[k] = into.get(k, 0) + v
    merged["timeline"] = [seconds[k] for k in sorted(seconds)]
    cpus = [r.get("cpu") or {} for r in reports]
    agent = [c["agent_cpu"] for c in cpus if c.get("agent_cpu") is not None]
    agent_s = [c["agent_cpu_seconds"] for c in cpus if c.get("agent_cpu_seconds") is not None]
    busy = [c["machine_busy"] for c in cpus if c.get("machine_busy") is not None]
    tool = sum(c.get("tool_cpu") or 0.0 for c in cpus)
    cpu: dict[str, Any] = {
        "agent_cpu": sum(agent) / len(agent) if agent else None,
        "agent_cpu_seconds": sum(agent_s) / len(agent_s) if agent_s else None,
        "tool_cpu": tool,
        "tool_cpu_seconds": sum(c.get("tool_cpu_seconds") or 0.0 for c in cpus),
        "tool_cpu_by_worker": [c.get("tool_cpu") for c in cpus],
        "machine_busy": sum(busy) / len(busy) if busy else None,
        "ncpu": cpus[0].get("ncpu"),
    }
    cpu["other_load"] = (cpu["machine_busy"] - tool - cpu["agent_cpu"]
                         if busy and cpu["agent_cpu"] is not None else None)
    merged["cpu"] = cpu
    merged["cpu_per_call_us"] = cpu_per_call(Report(
        cpu=cpu, completions_in_window=merged["completions_in_window"], transactions=transactions))
    for r in reports:
        r.pop("setups_raw", None)
        r.pop("refusals_raw", None)
    merged.pop("setups_raw", None)
    merged.pop("refusals_raw", None)
    merged["workers"] = reports
    a_cpu = cpu["agent_cpu"] or 0.0
    top_worker = max(c.get("tool_cpu") or 0.0 for c in cpus)
    text = (f"agent CPU {a_cpu * 100:.0f} % of one core; {workers} tool processes used {tool * 100:.0f} % "
            f"(the busiest {top_worker * 100:.0f} %); machine busy "
            f"{(cpu['machine_busy'] or 0) * 100:.0f} % of {cpu['ncpu']} cores")
    if a_cpu >= 0.9:
        text += ": the agent saturated first"
    elif top_worker >= 0.9:
        text += ": a TOOL process saturated first"
    elif (cpu["machine_busy"] or 0) >= 0.9 * (cpu["ncpu"] or 2):
        text += ": the MACHINE saturated (all cores busy) before either process"
    merged["saturation"] = text
    return merged


def profile_step(a: Any, rate: float, switch: sp.Switch, config: str, step: float, warmup: float,
                 say: Any) -> dict[str, Any]:
    """One step at C{rate} with py-spy on the agent and on the tool, over the measured window."""
    sp.wait_quiet([switch.pid], a.max_other, a.quiet_wait, say)
    args = ["run", "--config", config, "--duration", str(step), "--warmup", str(warmup), "--hold", str(a.hold),
            "--agent-pid", str(switch.pid), "-q", "--rate", str(rate)] + (["--lean"] if a.lean else [])
    tool = sp.start_load_tool(args)
    # Registration first (each line armed), then warm-up: start recording into the window.
    time.sleep(1.0)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        stats = switch.stats()
        if stats["endpoints"]["registered"] >= a.gateways * a.lines and stats["calls"]["active"] > 0:
            break
        time.sleep(0.2)
    time.sleep(warmup)
    agent_raw = os.path.join(a.profile_dir, f"mgcpswitch-agent-{rate:g}.txt")
    tool_raw = os.path.join(a.profile_dir, f"mgcpload-tool-{rate:g}.txt")
    spies = [sp.PySpy(switch.pid, step - 2, agent_raw), sp.PySpy(tool.pid, step - 2, tool_raw)]
    for s in spies:
        s.wait()
    out, _ = tool.communicate(timeout=300)
    report = json.loads(out)
    say("")
    say(f"## profile at {rate:g} calls/s (py-spy record --rate 250 --function --nonblocking, "
        f"{step - 2:g} s inside the measured window)")
    say(HEADER)
    say(row(f"{rate:g}", report))
    result: dict[str, Any] = {"report": report}
    for name, raw in (("agent", agent_raw), ("tool", tool_raw)):
        total, top, areas = sp.top_functions(raw, 25)
        say("")
        say(f"### {name}: {total} samples; own time by function (top 25)")
        for fn, k, share in top:
            say(f"  {share * 100:5.1f} %  {fn}")
        say(f"### {name}: own time by area")
        for ar, k in areas.most_common():
            say(f"  {k / total * 100:5.1f} %  {ar}")
        result[name] = {"samples": total, "top": top, "areas": dict(areas), "raw": raw}
    return result


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(f"terminated by signal {signum}")


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, _terminated)
    main()
