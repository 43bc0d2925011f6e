#!/usr/bin/env python3
"""
Calls per second through the switch's SIP trunk (issue 18), SIPp driving
the load, and the call agent's CPU per trunk call beside its CPU per
line-to-line call at the same rate, in one run.  A benchmark, not a test:
it prints figures.

    PYTHONPATH=. python benchmarks/bench_trunk.py [--rate 100] [--duration 20] [--warmup 4] [--hold 1]
        [--gateways 10] [--lines 100]

What it does, every process on 127.0.0.1, started by this script and
stopped by its PID:

  1. writes a switch INI with C{mgcpload config} (K gateways x M lines,
     C{ladder = no}, no observers) plus a C{[trunk:sipp]} section, and
     starts the switch: C{twistd -n mgcpswitch --config INI --no-simulator};
  2. B{line to line} (the baseline): C{mgcpload run --lean --rate R} (lean
     gateways, a caller and a callee line per call, answered at once, held
     C{--hold} s, the caller hangs up); the agent's CPU in the measured
     window over the calls completed in it (the tool's own report);
  3. B{through the trunk}: C{mgcpload answer} registers the same lean
     gateways, whose lines answer every call and hang up when the far end
     has; SIPp's own UAC scenario (C{sipp -sd uac}) calls the lines' numbers
     in turn (an injection file) through the trunk at R calls/s, each held
     C{--hold} s, then SIPp sends BYE: INVITE, 100, 180, 200, ACK, BYE, 200
     on the trunk; RQNT (ring), NTFY (off hook), CRCX, DLCX, RQNT (busy
     tone), NTFY (on hook) on the line.  A first SIPp run of C{--warmup}
     seconds is not measured; in the second, the agent's CPU (utime + stime
     from /proc, before and after SIPp) over the calls SIPp completed;
  4. prints both, and the trunk step's calls/s and CPU per call as ratios
     to the line-to-line step's.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _switchproc as sp  # noqa: E402
from _common import CLK_TCK, machine_info, print_machine, proc_cpu_ticks  # noqa: E402

TRUNK = """
[trunk:sipp]
address = 127.0.0.1
port = {sipp}
local_port = {local}
keepalive_interval = 0
max_channels = 100000
ring_timeout = 30
"""


def say(text: str) -> None:
    print(text, flush=True)


def uac_scenario(sipp: str) -> str:
    """SIPp's built-in UAC calling the number of each line of the injection file in turn."""
    text = subprocess.run([sipp, "-sd", "uac"], capture_output=True, text=True, timeout=30).stdout
    if "[service]" not in text or "</scenario>" not in text:
        raise RuntimeError("sipp -sd uac printed no scenario")
    return text.replace("[service]", "[field0]")


def line_to_line(a: argparse.Namespace, config: str, pid: int) -> dict[str, Any]:
    """The baseline step: mgcpload's lean generator placing calls between lines at the rate."""
    report, _ = sp.load_tool(["run", "--config", config, "--lean", "--rate", str(a.rate), "--duration",
                              str(a.duration), "--warmup", str(a.warmup), "--hold", str(a.hold),
                              "--agent-pid", str(pid), "--quiet"])
    cpu = report.get("cpu") or {}
    done = report["completions_in_window"]
    seconds = cpu.get("agent_cpu_seconds")
    return {"completed": done, "failed": report["failed"] + report["unfinished"], "cps": report["calls_per_second"],
            "cpu": seconds, "cpu_per_call_ms": 1000 * seconds / done if seconds is not None and done else None,
            "setup": f"p50 {report['setup_ms'].get('p50')} / p99 {report['setup_ms'].get('p99')} ms "
                     "(last digit -> ringing and ringback)"}


class Answerer:
    """C{mgcpload answer}: the lines that answer SIPp's calls, started and stopped by PID."""

    def __init__(self, config: str, seconds: float) -> None:
        argv = [sys.executable, os.path.join(sp.REPO, "scripts", "mgcpload"), "answer", "--config", config,
                "--duration", str(seconds), "--json", "--quiet"]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=None, env=sp.env(), cwd=sp.REPO,
                                        text=True)

    def armed(self, timeout: float = 120.0) -> float:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"mgcpload answer did not arm its lines (exit {self.process.poll()})")
        return float(json.loads(line)["armed_seconds"])

    def stop(self) -> dict[str, Any]:
        """SIGTERM: it stops answering and prints its counts."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        out, _ = self.process.communicate(timeout=60)
        return json.loads(out) if out.strip() else {}


def run_sipp(sipp: str, a: argparse.Namespace, directory: str, trunk_port: int, sipp_port: int, calls: int,
             name: str) -> dict[str, Any]:
    """SIPp's UAC placing C{calls} calls at the rate through the trunk; its statistics."""
    stat = os.path.join(directory, f"{name}.csv")
    argv = [sipp, "-sf", os.path.join(directory, "uac.xml"), "-inf", os.path.join(directory, "numbers.csv"),
            f"127.0.0.1:{trunk_port}", "-i", "127.0.0.1", "-p", str(sipp_port), "-mi", "127.0.0.1",
            "-mp", str(sp.free_udp_port()), "-r", f"{a.rate:g}", "-l", str(int(a.rate * (a.hold + 5))),
            "-m", str(calls), "-d", str(int(a.hold * 1000)), "-nostdin", "-timeout", f"{a.timeout}s",
            "-trace_stat", "-stf", stat, "-fd", "1"]
    start = time.monotonic()
    done = subprocess.run(argv, cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          timeout=a.timeout + 60)
    elapsed = time.monotonic() - start
    with open(stat, newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    last = rows[-1]
    return {"elapsed": elapsed, "completed": int(last["SuccessfulCall(C)"]), "failed": int(last["FailedCall(C)"]),
            "exit": done.returncode, "invite_to_200_ms": _milliseconds(last.get("ResponseTime1(C)", "")),
            "command": " ".join(shlex.quote(x) for x in argv)}


def _milliseconds(text: str) -> float | None:
    """SIPp's HH:MM:SS:microseconds as milliseconds."""
    parts = text.split(":")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        return None
    h, m, s, us = (int(p) for p in parts)
    return ((h * 60 + m) * 60 + s) * 1000 + us / 1000


def through_the_trunk(a: argparse.Namespace, sipp: str, config: str, pid: int, directory: str,
                      trunk_port: int, sipp_port: int) -> dict[str, Any]:
    answerer = Answerer(config, a.warmup + a.duration + a.hold + 300)
    try:
        answerer.armed()
        run_sipp(sipp, a, directory, trunk_port, sipp_port, int(a.rate * a.warmup), "warmup")
        before = proc_cpu_ticks(pid)
        result = run_sipp(sipp, a, directory, trunk_port, sipp_port, int(a.rate * a.duration), "measured")
        after = proc_cpu_ticks(pid)
    finally:
        counts = answerer.stop()
    seconds = (after - before) / CLK_TCK if before is not None and after is not None else None
    done = result["completed"]
    # SIPp's wall time less the last call's hold and release: the time calls were started in.
    result.update(cpu=seconds, cpu_per_call_ms=1000 * seconds / done if seconds is not None and done else None,
                  cps=done / max(result["elapsed"] - a.hold, 1e-9), answerer=counts,
                  setup=f"INVITE -> 200 mean {result['invite_to_200_ms']} ms (SIPp's ResponseTime1, answered at once)")
    return result


def row(name: str, r: dict[str, Any], base: dict[str, Any]) -> str:
    """One step's figures, and its calls/s and CPU per call as ratios to the line-to-line step's."""
    per = r["cpu_per_call_ms"]
    ratio = per / base["cpu_per_call_ms"] if per and base["cpu_per_call_ms"] else None
    rate = r["cps"] / base["cps"] if base["cps"] else None
    return (f"| {name:23} | {r['completed']:6d} | {r['failed']:4d} | {r['cps']:7.1f} | "
            f"{'-' if rate is None else format(rate, '.2f') + 'x':>13} | "
            f"{'-' if r['cpu'] is None else format(r['cpu'], '.2f'):>11} | "
            f"{'-' if per is None else format(per, '.3f'):>13} | {'-' if ratio is None else format(ratio, '.2f') + 'x':>9} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=100.0, help="calls/s, both steps")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds of each step")
    p.add_argument("--warmup", type=float, default=4.0, help="unmeasured seconds before each")
    p.add_argument("--hold", type=float, default=1.0, help="talk time (s)")
    p.add_argument("--gateways", type=int, default=10)
    p.add_argument("--lines", type=int, default=100)
    p.add_argument("--timeout", type=int, default=300, help="SIPp's overall limit (s)")
    p.add_argument("--max-other", type=float, default=0.3, help="wait for other load below this many CPUs")
    p.add_argument("--quiet-wait", type=float, default=90.0)
    a = p.parse_args(argv)
    sipp = shutil.which("sipp")
    if sipp is None:
        print("SIPp is not installed (Debian sip-tester; scripts/run-tests installs it)", file=sys.stderr)
        return 2
    print_machine(machine_info(sys.argv))
    say(f"# code        {sp.code_state()}")
    directory = tempfile.mkdtemp(prefix="bench-trunk-")
    agent_port, trunk_port, sipp_port = sp.free_udp_port(), sp.free_udp_port(), sp.free_udp_port()
    base_port = sp.free_udp_range(a.gateways)
    web_port = sp.free_tcp_port()
    config = sp.write_config(a.gateways, a.lines, agent_port, base_port, web_port, directory=directory)
    with open(config, "a", encoding="utf-8") as f:
        f.write(TRUNK.format(sipp=sipp_port, local=trunk_port))
    from mgcpswitch.config import load_settings

    numbers = [n for g in load_settings(config).gateways for n in g.numbers]
    with open(os.path.join(directory, "numbers.csv"), "w", encoding="ascii") as f:
        f.write("SEQUENTIAL\n" + "".join(f"{n};\n" for n in numbers))
    with open(os.path.join(directory, "uac.xml"), "w", encoding="ascii") as f:
        f.write(uac_scenario(sipp))
    say(f"# switch      {a.gateways} gateways x {a.lines} lines; agent 127.0.0.1:{agent_port}; trunk "
        f"127.0.0.1:{trunk_port}; config {config}")
    say(f"# steps       {a.rate:g} calls/s; warm-up {a.warmup:g} s + {a.duration:g} s measured; hold {a.hold:g} s; "
        "answered at once")
    switch = sp.Switch(config, web_port)
    switch.start()
    try:
        sp.wait_quiet([switch.pid], a.max_other, a.quiet_wait, say)
        line = line_to_line(a, config, switch.pid)
        sp.wait_quiet([switch.pid], a.max_other, a.quiet_wait, say)
        trunk = through_the_trunk(a, sipp, config, switch.pid, directory, trunk_port, sipp_port)
    finally:
        switch.stop()
    say(f"# trunk step  {trunk['command']}")
    say(f"# answerer    {trunk['answerer']}")
    say(f"# setup       line to line: {line['setup']}; trunk: {trunk['setup']}")
    say("| path                    | calls  | fail | calls/s | calls/s ratio | agent CPU s | agent ms/call | CPU ratio |")
    say("|-------------------------|-------:|-----:|--------:|--------------:|------------:|--------------:|----------:|")
    say(row("line to line (mgcpload)", line, line))
    say(row("SIPp -> trunk -> line", trunk, line))
    shutil.rmtree(directory, ignore_errors=True)
    return 0 if trunk["failed"] == 0 and line["failed"] == 0 and trunk["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
