#!/usr/bin/env python3
"""
Graceful overload (issue 15 §2): the switch offered 2x and 4x its knee.
A benchmark, not a test: it prints figures and the acceptance verdicts.

    PYTHONPATH=. python benchmarks/bench_overload.py --knee 500 [--factors 2,4] [--surge 30]
        [--before 10] [--after 15] [--workers 2] [--gateways 10] [--lines 1000] [--json FILE]
        [--receive-buffer BYTES]

    PYTHONPATH=. python benchmarks/bench_overload.py --shed-cost [--calls 500] [--repo DIR] [--embedded]

--shed-cost measures, without sockets or timing, what a shed call costs
the agent against an admitted one: bench_agent.py's harness (the real
CallControlService on an in-process reactor, scripted gateways) plays N
calls with the guard admitting every one, then N with it shedding every
one, each under valgrind's callgrind twice (N and 5N calls; instructions
per call are the difference over 4N), and counts the datagrams each way
per call.  The scripted gateway plays a shed call as a phone would: off
hook (with the digits when the idle request embeds dial tone), dial the
number if it hears dial tone, hang up when it hears the overload tone,
and notify the hang-up only if the agent asked for it.  With --repo,
another checkout is measured by the same script (the shed decided after
the digits there, if that is what its code does).

Without --knee it first finds the knee with the lean generator the way
bench_calls.py does (--rates, --step; a step is good with no failed call,
p99 setup < 50 ms and >= 95 % of the rate completed).

Each factor F is one run of the lean generator (C{mgcpload run --lean})
against a fresh switch: --before s at the knee, then --surge s at F x the
knee (C{--surge F,BEFORE,SURGE}), then --after s at the knee again, all in
the measured window, with a per-second timeline of calls started,
completed, refused (reorder) and failed.  Then the switch's endpoints are
read for connections left over.  Per factor it prints:

  - completed calls/s during the surge, and as a share of the knee
    (acceptance: >= 90 %);
  - p99 setup of the calls admitted (acceptance: < 100 ms), over the run;
  - the refused calls' treatment: from the last digit to the reorder tone,
    p50 / p99 / max (acceptance: < 100 ms);
  - retransmissions (the generator's NTFYs repeated + the agent's commands
    received twice) as a share of the transactions (acceptance: < 1 %);
  - connections left on the switch's endpoints once the calls drained
    (acceptance: 0);
  - recovery: the first second after the surge from which no call is
    refused and calls complete at >= 90 % of the knee (acceptance: <= 5 s);
  - the guard's counters (/api/stats "overload") and the agent's CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import urllib.request
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _switchproc as sp  # noqa: E402
from _common import machine_info, print_machine  # noqa: E402
from bench_calls import HEADER, cpu_line, good, row, run_workers  # noqa: E402


def say(text: str) -> None:
    print(text, flush=True)


def connections_left(switch: sp.Switch) -> int:
    """Connections the switch's endpoints still hold."""
    with urllib.request.urlopen(f"http://127.0.0.1:{switch.web_port}/api/endpoints", timeout=60) as r:
        endpoints = json.loads(r.read())["endpoints"]
    return sum(len(e.get("connections") or ()) for e in endpoints)


def step(a: Any, config: str, switch: sp.Switch, rate: float, duration: float, warmup: float,
         extra: list[str]) -> dict[str, Any]:
    args = ["run", "--config", config, "--duration", str(duration), "--warmup", str(warmup), "--hold",
            str(a.hold), "--agent-pid", str(switch.pid), "-q", "--lean", "--rate", str(rate)] + extra
    if a.workers > 1:
        report = run_workers(args, a.workers, a.gateways)
    else:
        report, _ = sp.load_tool(args + ["--raw"])
    report["command"] = "scripts/mgcpload " + " ".join(shlex.quote(x) for x in args)
    return report


def fresh_switch(a: Any) -> tuple[str, sp.Switch]:
    agent_port = sp.free_udp_port()
    base_port = sp.free_udp_range(a.gateways)
    web_port = sp.free_tcp_port()
    config = sp.write_config(a.gateways, a.lines, agent_port, base_port, web_port)
    if a.receive_buffer:
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text.replace("[switch]\n", f"[switch]\nreceive_buffer = {a.receive_buffer}\n", 1))
    if a.overload:
        with open(config, "a") as f:
            f.write("\n[overload]\n" + "".join(f"{key.strip()} = {value.strip()}\n"
                                                for key, value in (item.split("=", 1) for item in a.overload)))
    switch = sp.Switch(config, web_port)
    switch.start()
    return config, switch


def find_knee(a: Any) -> Optional[float]:
    config, switch = fresh_switch(a)
    say(HEADER)
    tested: dict[float, bool] = {}
    try:
        for rate in [float(x) for x in a.rates.split(",")]:
            r = step(a, config, switch, rate, a.step, 2.0, [])
            tested[rate] = good(r, rate)
            say(row(f"{rate:g}", r) + ("  ok" if tested[rate] else "  BAD"))
            if not tested[rate]:
                break
    finally:
        switch.stop()
    goods = [r for r, ok in tested.items() if ok]
    return max(goods) if goods else None


def recovery(timeline: list[dict[str, int]], end: int, knee: float) -> Optional[int]:
    """Seconds after the surge's end until no call is refused and completions reach 90 % of the knee."""
    by_second = {e["second"]: e for e in timeline}
    last = max(by_second) if by_second else end
    for s in range(end, last + 1):
        tail = [by_second.get(t, {}) for t in range(s, last + 1)]
        if all(not e.get("reorder") for e in tail) and by_second.get(s, {}).get("completed", 0) >= 0.9 * knee:
            return s - end
    return None


def _shed_run(calls: int, shed: bool, embedded: bool, fed: bool = False) -> dict[str, Any]:
    """
    C{calls} calls through bench_agent's harness, every one admitted or
    every one shed; C{fed}: shed calls whose NTFY, and the 200 to the RQNT
    the agent answers it with, are fed straight to the agent's protocol,
    so that only the agent's cost is counted (the scripted gateway's
    parsing and answering is about a fifth of a shed call's count
    otherwise: 75 of 420 thousand instructions at afa882e).
    """
    import re
    from dataclasses import replace

    import bench_agent as ba
    from mgcpswitch import config as config_module
    from mgcpswitch.agent.dialplan import StaticDialPlan
    from mgcpswitch.agent.profiles import DEFAULT_PROFILE
    from mgcpswitch.agent.service import CallControlService

    datagrams = [0]  # both ways: what the scripted gateways receive and send
    signal_re = re.compile(rb"^S: ?(.*?)\r$", re.M)
    events_re = re.compile(rb"^R: ?(.*?)\r$", re.M)

    class Gateway(ba.ScriptedGateway):
        """Also remembers each endpoint's last S: and R: (what the phone hears, what the agent watches)."""

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.heard: dict[bytes, tuple[bytes, bytes]] = {}

        def datagramReceived(self, data: bytes, source: Any) -> None:  # noqa: N802
            datagrams[0] += 1
            for part in data.split(b"\r\n.\r\n"):
                m = ba._CMD.match(part)
                if m is not None and m.group(1) in (b"RQNT", b"CRCX", b"MDCX", b"DLCX"):
                    sig, ev = signal_re.search(part), events_re.search(part)
                    if ev is not None:
                        self.heard[m.group(3)] = (sig.group(1) if sig else b"", ev.group(1))
            super().datagramReceived(data, source)

    lines = 100
    text = ba.ini(lines, hasattr(config_module, "StoreSettings"))
    if embedded:
        text = text.replace("[switch]\n", "[switch]\nembedded_dial_tone = yes\n", 1)
    settings = config_module.parse_settings(text)
    reactor = ba.BenchReactor()
    agent = ("127.0.0.1", 2727)
    service = CallControlService(reactor, settings, StaticDialPlan.from_settings(settings), {"default": DEFAULT_PROFILE})
    service.startService()
    gwa, gwb = Gateway(("127.0.0.2", 2427), agent), Gateway(("127.0.0.3", 2427), agent)
    for gw, domain in ((gwa, b"gwa"), (gwb, b"gwb")):
        reactor.bind(gw.address, gw)
        gw.transport.write(b"RSIP 1 *@%s MGCP 1.0\r\nRM: restart\r\n" % domain, agent)
    reactor.run(2.0, step=0.05)
    guard = service.control.overload
    guard.stop()
    guard.settings = replace(guard.settings, floor=0.0)
    guard.share = 0.0 if shed else 1.0
    if shed and getattr(guard, "changed", None) is not None:
        from mgcpswitch.agent.overload import OverloadState

        guard.state = OverloadState.OVERLOADED  # as the guard's probe sets it once it sheds
        guard.changed(guard.state)
    def counting(write: Any) -> Any:
        def counted(packet: bytes, addr: Any = None) -> None:
            datagrams[0] += 1
            write(packet, addr)
        return counted

    for gw in (gwa, gwb):
        gw.transport.write = counting(gw.transport.write)
    step = reactor.pump

    def shed_call(i: int) -> None:
        n = i % lines + 1
        a = b"aaln/%d@gwa" % n
        digits = b"D/2,D/%03d" % n  # as bench_agent.py dials
        gwa.notify(a, b"L/hd," + digits if embedded else b"L/hd")
        step()
        if b"L/dl" in gwa.heard[a][0]:
            gwa.notify(a, digits)
            step()
        if b"L/hu(N)" in gwa.heard[a][1] or b"L/hu," in gwa.heard[a][1] or gwa.heard[a][1] == b"L/hu":
            gwa.notify(a, b"L/hu")  # the agent asked to hear the hang-up
            step()
        reactor.advance(0.001)

    def basic_call(i: int) -> None:
        ba.basic_call(gwa, gwb, reactor, i % lines + 1, embedded)

    protocol, queue = service.protocol, reactor.queue
    requests = dict(gwa.requests)
    fed_txid = [700_000_000]

    def fed_call(i: int) -> None:
        n = i % lines + 1
        a = b"aaln/%d@gwa" % n
        fed_txid[0] += 1
        events = b"L/hd,D/2,D/%03d" % n if embedded else b"L/hd"
        protocol.datagramReceived(b"NTFY %d %s MGCP 1.0\r\nX: %s\r\nO: %s\r\n"
                                  % (fed_txid[0], a, requests.get(a, b"0"), events), gwa.address)
        _, _, data = queue.popleft()  # the NTFY's 200 and the RQNT
        start = data.index(b"RQNT ") + 5
        x = data.index(b"\nX: ", start) + 4
        requests[a] = data[x:data.index(b"\r", x)]
        protocol.datagramReceived(b"200 %s OK\r\n" % data[start:data.index(b" ", start)], gwa.address)
        datagrams[0] += 3
        reactor.advance(0.001)

    one = (fed_call if fed else shed_call) if shed else basic_call
    for i in range(min(calls, 200)):
        one(i)
    import gc

    gc.freeze()  # as the switch does once started (see bench_agent.run)
    before, datagrams[0] = service.control.counters["calls_started"], 0
    for i in range(calls):
        one(i)
    done = service.control.counters["calls_started"] - before
    outcomes = service.call_outcomes()
    service.stopService()
    return {"calls": done, "datagrams_per_call": datagrams[0] / max(calls, 1), "outcomes": dict(outcomes)}


def shed_cost(a: Any) -> None:
    """Instructions (callgrind) and datagrams per call, admitted and shed (see the module's docstring)."""
    import re
    import subprocess
    import tempfile

    if a.shed_child:
        sys.path.insert(0, a.repo)
        r = _shed_run(a.calls, a.shed_child != "admitted", a.embedded, a.shed_child == "shed-fed")
        print(json.dumps(r))
        return
    print_machine(machine_info(sys.argv))
    say(f"# code        {a.repo}")
    for kind in a.kinds.split(","):
        counts, report = [], {}
        for n in (a.calls, 5 * a.calls):
            with tempfile.TemporaryDirectory(prefix="bench-shed-") as d:
                out = subprocess.run(
                    ["valgrind", "--tool=callgrind", f"--callgrind-out-file={d}/cg.out", sys.executable,
                     os.path.abspath(__file__), "--shed-cost", "--shed-child", kind, "--calls", str(n),
                     "--repo", a.repo] + (["--embedded"] if a.embedded else []),
                    capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": a.repo},
                )
            m = re.search(r"Collected : (\d+)", out.stderr)
            assert m is not None, out.stderr[-2000:]
            counts.append(int(m.group(1)))
            report = json.loads(out.stdout.strip().splitlines()[-1])
        per_call = (counts[1] - counts[0]) / (4 * a.calls)
        say(f"# {kind:9} {per_call / 1e3:.0f} thousand instructions per call (callgrind, {4 * a.calls} calls), "
            f"{report['datagrams_per_call']:.1f} datagrams per call, outcomes {report['outcomes']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--knee", type=float, default=None, help="calls/s (default: find it first)")
    p.add_argument("--rates", default="200,300,400,500,600,700,800,1000", help="for finding the knee")
    p.add_argument("--step", type=float, default=10.0, help="measured seconds per knee step")
    p.add_argument("--factors", default="2,4")
    p.add_argument("--surge", type=float, default=30.0, help="seconds at F x the knee")
    p.add_argument("--before", type=float, default=10.0, help="seconds at the knee before the surge")
    p.add_argument("--after", type=float, default=15.0, help="seconds at the knee after it")
    p.add_argument("--hold", type=float, default=1.0)
    p.add_argument("--workers", type=int, default=2, help="lean generator processes")
    p.add_argument("--gateways", type=int, default=10)
    p.add_argument("--lines", type=int, default=1000)
    p.add_argument("--json", default=None)
    p.add_argument("--receive-buffer", type=int, default=0,
                   help="the switch's [switch] receive_buffer, bytes (0: the system's default)")
    p.add_argument("--overload", action="append", default=[], metavar="KEY=VALUE",
                   help="a key of the switch's [overload] section (repeatable), e.g. capacity=no")
    p.add_argument("--shed-cost", action="store_true", help="instructions per call, admitted and shed (callgrind)")
    p.add_argument("--calls", type=int, default=500, help="with --shed-cost")
    p.add_argument("--embedded", action="store_true", help="with --shed-cost: the idle request embeds dial tone")
    p.add_argument("--repo", default=os.path.dirname(HERE), help="with --shed-cost: the checkout to measure")
    p.add_argument("--kinds", default="admitted,shed", help="with --shed-cost: which calls to measure "
                   "(admitted, shed, shed-fed: shed calls fed to the agent's protocol, no scripted gateway)")
    p.add_argument("--shed-child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.shed_cost:
        shed_cost(a)
        return
    info = machine_info(sys.argv)
    print_machine(info)
    say(f"# code        {sp.code_state()}")
    knee = a.knee
    if knee is None:
        knee = find_knee(a)
        if knee is None:
            say("# knee        none: no step met 0 failures and p99 < 50 ms")
            return
    say(f"# knee        {knee:g} calls/s")
    results = []
    for factor in [float(x) for x in a.factors.split(",")]:
        config, switch = fresh_switch(a)
        try:
            duration = a.before + a.surge + a.after
            r = step(a, config, switch, knee, duration, 2.0, ["--surge", f"{factor:g},{a.before:g},{a.surge:g}"])
            time.sleep(3.0)  # the last releases settle
            left = connections_left(switch)
            guard = switch.stats()["transactions"].get("overload", {})
        finally:
            switch.stop()
        timeline = r.get("timeline") or []
        first, last = int(a.before), int(a.before + a.surge)
        during = [e for e in timeline if first <= e["second"] < last]
        completed = sum(e.get("completed", 0) for e in during) / max(len(during), 1)
        tx = r["transactions"].get("commands_received", 0) + r["transactions"].get("commands_sent", 0)
        retr = r["retransmissions"] + r["duplicates_received"]
        back = recovery(timeline, last, knee)
        refused = r.get("refused_ms") or {}
        setup = r["setup_ms"]
        verdicts = {
            "completed >= 90 % of the knee": completed >= 0.9 * knee,
            "admitted p99 setup < 100 ms": setup.get("p99") is not None and setup["p99"] < 100.0,
            "refused within 100 ms": not refused.get("count") or (refused.get("p99") or 0) < 100.0,
            "retransmissions < 1 %": tx > 0 and retr / tx < 0.01,
            "0 connections left": left == 0,
            "back at the knee within 5 s": back is not None and back <= 5,
        }
        say("")
        say(f"## {factor:g} x the knee: {factor * knee:g} calls/s offered for {a.surge:g} s "
            f"({a.before:g} s at the knee before, {a.after:g} s after)")
        say(f"#   command   {r['command']} (x {a.workers} processes, each half the gateways and the rate)")
        say(f"#   surge     {completed:.1f} completed calls/s = {completed / knee * 100:.0f} % of the knee")
        say(f"#   admitted  {r['completed']} completed, p99 setup {setup.get('p99') or float('nan'):.1f} ms "
            f"(p50 {setup.get('p50') or float('nan'):.1f}, max {setup.get('max') or float('nan'):.1f})")
        say(f"#   refused   {refused.get('count', 0)} calls heard reorder; last digit -> reorder p50 "
            f"{refused.get('p50') or float('nan'):.1f} ms, p99 {refused.get('p99') or float('nan'):.1f} ms, "
            f"max {refused.get('max') or float('nan'):.1f} ms")
        say(f"#   failures  {r['failures'] or 'none'}")
        say(f"#   retrans   {r['retransmissions']} NTFYs repeated + {r['duplicates_received']} duplicate commands "
            f"of {tx} transactions = {retr / max(tx, 1) * 100:.2f} %")
        say(f"#   left      {left} connections on the switch's endpoints after the run")
        say(f"#   recovery  {'never' if back is None else f'{back} s'} after the surge")
        say(f"#   guard     {guard}")
        say(f"#   CPU       {cpu_line(r)}")
        say("#   timeline  second: started/completed/refused/failed")
        say("#             " + "  ".join(
            f"{e['second']}:{e.get('started', 0)}/{e.get('completed', 0)}/{e.get('reorder', 0)}/{e.get('failed', 0)}"
            for e in timeline))
        for name, ok in verdicts.items():
            say(f"#   {'ok  ' if ok else 'FAIL'}      {name}")
        results.append({"factor": factor, "report": r, "completed_per_s": completed, "connections_left": left,
                        "recovery_s": back, "guard": guard, "verdicts": verdicts})
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": info, "knee": knee, "results": results}, f, indent=2, default=str)


if __name__ == "__main__":
    main()
