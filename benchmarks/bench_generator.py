"""
The lean load generator's instructions per call in its real process:
C{mgcpload run --lean} under valgrind's callgrind, against the real agent
(C{twistd -n mgcpswitch}, native) on loopback UDP.  A benchmark, not a
test: it prints figures.

    python benchmarks/bench_generator.py [--repo DIR] [--rates 10,20] [--seconds 20]

Why: issue 15 §1 wants the generator at no more than a quarter of the
agent's CPU per call, and its real CPU, measured beside the agent on a
shared machine, moves by more than most changes save.  Instructions do
not depend on the machine's speed or load, so old and new generator code
(C{--repo}) compare one after the other; the agent is the same in both
(C{--agent-repo}, default this checkout).  What callgrind leaves out is
the kernel's side (a C{sendto} on loopback delivers the datagram) and
what a wake-up costs beyond its instructions; C{run --lean} reports the
tool's system time for that (C{cpu.tool_system_seconds}).

How (as bench_process.py for the agent): the generator starts with
instrumentation off, registers at near native speed, and once calls flow
the instrumentation is on for C{--seconds}; the calls come from the
agent's C{/api/stats}.  The generator ticks at C{--tick} ms (default 20,
not the run's 2) so that its ticks keep their period under callgrind at
both rates; what it does per second whatever the rate (the ticks) is
solved out with two rates: C{instructions = per_call * calls + per_second
* seconds}.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _switchproc as sp  # noqa: E402


def measure(repo: str, agent_repo: str, rate: float, seconds: float, tick: float, gateways: int, lines: int,
            out_dir: str) -> dict[str, Any]:
    """One window at C{rate}: the generator's instructions and the calls the agent completed."""
    agent_port = sp.free_udp_port()
    base_port = sp.free_udp_range(gateways)
    web_port = sp.free_tcp_port()
    config = sp.write_config(gateways, lines, agent_port, base_port, web_port, directory=out_dir)
    agent_env = dict(os.environ)
    agent_env["PYTHONPATH"] = agent_repo
    agent = subprocess.Popen(sp.TWISTD + ["-n", "--pidfile=", "--logfile", config + ".log", "mgcpswitch", "--config",
                                          config, "--no-simulator"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=agent_env, cwd=agent_repo)
    switch = sp.Switch(config, web_port)
    out = os.path.join(out_dir, f"callgrind-{rate:g}.out")
    tool_env = dict(os.environ)
    tool_env["PYTHONPATH"] = repo
    tool_env["PYTHONHASHSEED"] = "0"
    tool = None
    try:
        sp.wait_for_admin(switch, agent, 60, 0.5)
        tool = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", sys.executable,
             os.path.join(repo, "scripts", "mgcpload"), "run", "--config", config, "--duration", str(seconds + 600),
             "--warmup", "1", "--hold", "1", "--tick", str(tick), "-q", "--lean", "--rate", str(rate)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=tool_env, cwd=repo)

        completed = lambda: sp.completed_calls(switch)  # noqa: E731
        deadline = time.monotonic() + 300
        while completed() < 10:  # registered, and calls flowing
            if time.monotonic() > deadline or tool.poll() is not None:
                raise RuntimeError("no calls completed")
            time.sleep(1)
        time.sleep(2)
        c0 = completed()
        wall = sp.callgrind_window(tool.pid, seconds)
        c1 = completed()
        subprocess.run(["callgrind_control", "-d", str(tool.pid)], capture_output=True, check=True)
        outcomes = switch.stats()["calls"]["outcomes"]
    finally:
        if tool is not None:
            tool.send_signal(signal.SIGTERM)
            try:
                tool.wait(timeout=120)
            except subprocess.TimeoutExpired:
                tool.kill()
                tool.wait()
        switch.process = agent
        switch.stop()
    total = sp.callgrind_total(out)
    return {"rate": rate, "calls": c1 - c0, "seconds": wall, "instructions": total, "outcomes": outcomes}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(HERE)
    p.add_argument("--repo", default=here, help="the checkout whose generator runs (default: this one)")
    p.add_argument("--agent-repo", default=here, help="the checkout whose agent runs (default: this one)")
    p.add_argument("--rates", default="10,20", help="two calls/s rates (default 10,20)")
    p.add_argument("--seconds", type=float, default=20.0, help="instrumented seconds per rate")
    p.add_argument("--tick", type=float, default=20.0, help="the generator's tick in ms (default 20)")
    p.add_argument("--gateways", type=int, default=4)
    p.add_argument("--lines", type=int, default=100)
    a = p.parse_args()
    rates = [float(r) for r in a.rates.split(",")]
    if len(rates) != 2 or rates[0] == rates[1]:
        p.error("--rates takes two different rates")
    repo, agent_repo = os.path.abspath(a.repo), os.path.abspath(a.agent_repo)
    with tempfile.TemporaryDirectory(prefix="bench-generator-") as out_dir:
        runs = [measure(repo, agent_repo, r, a.seconds, a.tick, a.gateways, a.lines, out_dir) for r in rates]
    for r in runs:
        print(f"{repo}: {r['rate']:g} calls/s: {r['calls']} calls in {r['seconds']:.0f} s, "
              f"{r['instructions'] / 1e6:,.1f} million instructions, "
              f"{r['instructions'] / max(r['calls'], 1) / 1e3:,.0f} thousand per call (all in); "
              f"outcomes {r['outcomes']}", flush=True)
    per_call, per_second = sp.per_call_and_second(*runs)
    print(f"{repo}: {per_call / 1e3:,.0f} thousand instructions per call, "
          f"{per_second / 1e6:,.2f} million per second whatever the rate")


if __name__ == "__main__":
    main()
