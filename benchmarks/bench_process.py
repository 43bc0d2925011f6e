"""
The call agent's instructions per call in its real process: C{twistd -n
mgcpswitch} on loopback UDP, driven by the lean generator (C{mgcpload run
--lean}), the agent under valgrind's callgrind.  A benchmark, not a test:
it prints figures.

    python benchmarks/bench_process.py [--repo DIR] [--rates 3,8] [--seconds 60]

Why beside bench_agent.py: that one counts the agent's own work in one
process with no sockets and no reactor, which is what call control, the
transaction layer and the codec cost.  This one counts everything the real
process runs per call: Twisted's reactor (epoll, the per-event dispatch and
its log context), the socket calls' Python side, the real timers, the
overload guard's probes, the admin's and the store's periodic work.  Only
the kernel's side of the system calls is missing (callgrind counts user
space).  Like bench_agent's count it does not depend on the speed of the
machine, so old and new code (C{--repo}) compare one after the other.
It is not quite immune to the load, though: on a busy machine the agent
under callgrind answers late enough for the generator to retransmit, and
the duplicates cost instructions (it prints how many); runs of the same
code have differed by up to 5 %.

How: the agent starts with instrumentation off (C{--instr-atstart=no}), so
startup and registration run at near native speed; once calls flow, the
instrumentation is switched on for C{--seconds} with C{callgrind_control},
and the calls the agent completed in that window are read from its
C{/api/stats}.  At a low rate each datagram is its own wake-up of the
reactor, and whatever the process does per second (the guard's probes,
sweeps) is charged to few calls; so it measures at two rates and solves
C{instructions = per_call * calls + per_second * seconds} for both.  The
rates must be low enough for the agent under callgrind (about 50x slower
than native) to keep up: the default 2 and 5 calls/s with 2 x 50 lines.
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


def measure(repo: str, rate: float, seconds: float, gateways: int, lines: int, out_dir: str) -> dict[str, Any]:
    """One window at C{rate}: the agent's instructions and the calls it completed."""
    agent_port = sp.free_udp_port()
    base_port = sp.free_udp_range(gateways)
    web_port = sp.free_tcp_port()
    config = sp.write_config(gateways, lines, agent_port, base_port, web_port, directory=out_dir)
    with open(config, "a") as f:
        # Under callgrind the agent runs ~50x slower than native, which its
        # overload guard reads as a busy core: it would shed calls, and a
        # shed call costs a sixth of a connected one.
        f.write("\n[overload]\nenabled = no\n")
    out = os.path.join(out_dir, f"callgrind-{rate:g}.out")
    env = dict(os.environ)
    env["PYTHONPATH"] = repo
    env["PYTHONHASHSEED"] = "0"  # dict and set orders, and so the instructions, the same every run
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"] + sp.TWISTD + [
        "-n", "--pidfile=", "--logfile", config + ".log", "mgcpswitch", "--config", config, "--no-simulator"]
    agent = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env, cwd=repo)
    switch = sp.Switch(config, web_port)
    tool = None
    try:
        sp.wait_for_admin(switch, agent, 300, 1)
        tool = sp.start_load_tool(["run", "--config", config, "--duration", str(seconds + 600), "--warmup", "1",
                                   "--hold", "1", "-q", "--lean", "--rate", str(rate)])

        completed = lambda: sp.completed_calls(switch)  # noqa: E731
        deadline = time.monotonic() + 300
        while completed() < 20:  # registered, and calls flowing
            if time.monotonic() > deadline:
                raise RuntimeError("no calls completed")
            time.sleep(2)
        time.sleep(5)
        c0 = completed()
        t_before = switch.stats()["transactions"]["counters"]
        wall = sp.callgrind_window(agent.pid, seconds)
        c1 = completed()
        t_after = switch.stats()["transactions"]["counters"]
        outcomes = switch.stats()["calls"]["outcomes"]
        if set(outcomes) != {"normal"}:
            raise RuntimeError(f"calls that did not end normally: {outcomes}")
    finally:
        if tool is not None:
            tool.kill()
            tool.wait()
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=300)
    total = sp.callgrind_total(out)
    # Work the calls did not ask for: the generator's retransmissions (the
    # agent under callgrind answered late, on a loaded machine) and the
    # agent's own.
    extra = {k: t_after.get(k, 0) - t_before.get(k, 0) for k in ("duplicates", "retransmissions")}
    return {"rate": rate, "calls": c1 - c0, "seconds": wall, "instructions": total, "outcomes": outcomes,
            "extra": extra}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", default=os.path.dirname(HERE), help="the checkout whose agent runs (default: this one)")
    p.add_argument("--rates", default="2,5", help="two calls/s rates (default 2,5)")
    p.add_argument("--seconds", type=float, default=90.0, help="instrumented seconds per rate")
    p.add_argument("--gateways", type=int, default=2)
    p.add_argument("--lines", type=int, default=50)
    a = p.parse_args()
    rates = [float(r) for r in a.rates.split(",")]
    if len(rates) != 2 or rates[0] == rates[1]:
        p.error("--rates takes two different rates")
    repo = os.path.abspath(a.repo)
    with tempfile.TemporaryDirectory(prefix="bench-process-") as out_dir:
        runs = [measure(repo, r, a.seconds, a.gateways, a.lines, out_dir) for r in rates]
    for r in runs:
        print(f"{repo}: {r['rate']:g} calls/s: {r['calls']} calls in {r['seconds']:.0f} s, "
              f"{r['instructions'] / 1e6:,.1f} million instructions, "
              f"{r['instructions'] / max(r['calls'], 1) / 1e3:,.0f} thousand per call (all in); "
              f"duplicates received {r['extra']['duplicates']}, retransmitted {r['extra']['retransmissions']}")
    per_call, per_second = sp.per_call_and_second(*runs)
    print(f"{repo}: {per_call / 1e3:,.0f} thousand instructions per call, "
          f"{per_second / 1e6:,.2f} million per second whatever the rate")


if __name__ == "__main__":
    main()
