#!/usr/bin/env python3
"""
Calls per second through a SIP trunk (issue 18, phase 1), driven by SIPp,
and the trunk process's CPU per call from /proc.  A benchmark, not a
test: it prints figures.

    PYTHONPATH=. python benchmarks/bench_sip.py [--calls 2000] [--rate 200] [--limit 100] [--hold 0]

For each of two far ends, in the same run, one after the other:

  - baseline: SIPp's own UAS (C{sipp -sn uas}), a C++ answering machine;
  - trunk: a Python process running one L{SipTrunk} on the real reactor
    whose incoming handler answers every call at once with canned SDP
    (C{--serve}, started and stopped by PID);

it runs SIPp's UAC (C{sipp -sn uac}) placing C{--calls} calls at
C{--rate} calls/s with at most C{--limit} at once, each held C{--hold}
ms, and reports: calls completed and failed (from SIPp's statistics
file), calls/s achieved (completed / wall time), the far end's CPU per
call (utime + stime from /proc, before and after), and the trunk's
figures as ratios to the baseline's.  Every process is on 127.0.0.1,
started by this script and stopped by its PID.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import CLK_TCK, Child, machine_info, print_machine, proc_cpu_ticks  # noqa: E402


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


def serve(port: int) -> None:
    """The trunk under test: answers every call at once; prints its port, runs until SIGTERM."""
    import random

    from twisted.internet import reactor

    from mgcpswitch.config import TrunkSettings
    from mgcpswitch.mgcp import RtpMap, SessionDescription
    from mgcpswitch.sip.trunk import SipTrunk

    canned = SessionDescription.create("127.0.0.1", 30000, [0], rtpmaps=[RtpMap(0, "PCMU", 8000)], ptime=20)

    def incoming(call: object) -> None:
        call.answer(canned)  # type: ignore[attr-defined]

    settings = TrunkSettings(name="bench", address="127.0.0.1", port=port, local_port=0, keepalive_interval=0.0,
                             max_channels=100_000)
    trunk = SipTrunk(settings, reactor, incoming, rng=random.Random())
    trunk.startService()
    print(trunk.agent.port, flush=True)
    reactor.addSystemEventTrigger("before", "shutdown", trunk.stopService)
    reactor.run()


def run_sipp(sipp: str, target: int, args: argparse.Namespace, directory: str) -> dict[str, float]:
    port = free_port()
    stat = os.path.join(directory, f"stat-{target}.csv")
    argv = [sipp, "-sn", "uac", f"127.0.0.1:{target}", "-s", "2001", "-i", "127.0.0.1", "-p", str(port),
            "-mi", "127.0.0.1", "-mp", str(free_port()), "-r", str(args.rate), "-l", str(args.limit),
            "-m", str(args.calls), "-d", str(args.hold), "-nostdin", "-timeout", f"{args.timeout}s",
            "-trace_stat", "-stf", stat, "-fd", "1000"]
    start = time.monotonic()
    done = subprocess.run(argv, cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=args.timeout + 30)
    elapsed = time.monotonic() - start
    with open(stat, newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    last = rows[-1]
    return {
        "elapsed": elapsed,
        "completed": float(last["SuccessfulCall(C)"]),
        "failed": float(last["FailedCall(C)"]),
        "exit": float(done.returncode),
    }


def measure(name: str, far: Child, port: int, sipp: str, args: argparse.Namespace, directory: str) -> dict[str, float]:
    before = proc_cpu_ticks(far.pid)
    result = run_sipp(sipp, port, args, directory)
    after = proc_cpu_ticks(far.pid)
    cpu = (after - before) / CLK_TCK if before is not None and after is not None else float("nan")
    result["cpu"] = cpu
    result["cps"] = result["completed"] / result["elapsed"]
    result["cpu_per_call_ms"] = 1000 * cpu / max(result["completed"], 1)
    print(f"{name:9s} {int(result['completed']):6d} done {int(result['failed']):4d} failed  "
          f"{result['cps']:7.1f} calls/s  far end CPU {cpu:6.2f} s = {result['cpu_per_call_ms']:.3f} ms/call  "
          f"(sipp exit {int(result['exit'])})")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=200, help="calls/s SIPp places")
    parser.add_argument("--limit", type=int, default=100, help="calls in progress at most")
    parser.add_argument("--hold", type=int, default=0, help="ms each call is held")
    parser.add_argument("--timeout", type=int, default=120)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return 0
    sipp = shutil.which("sipp")
    if sipp is None:
        print("SIPp is not installed (Debian sip-tester; scripts/run-tests installs it)", file=sys.stderr)
        return 2
    print_machine(machine_info(sys.argv))
    print(f"# {args.calls} calls at {args.rate}/s, at most {args.limit} at once, held {args.hold} ms; SIPp uac on 127.0.0.1")
    directory = tempfile.mkdtemp(prefix="bench-sip-")
    try:
        uas_port = free_port()
        uas = Child([sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port), "-mi", "127.0.0.1",
                     "-mp", str(free_port()), "-nostdin", "-bg"])
        # -bg: SIPp forks; its first line names the PID of the background SIPp.
        line = uas.read_line(10)
        uas_pid = int(line.split("PID=[")[1].split("]")[0]) if "PID=[" in line else uas.pid
        baseline_far = _Pid(uas_pid)
        baseline = measure("baseline", baseline_far, uas_port, sipp, args, directory)
        baseline_far.stop()
        uas.stop()
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        trunk_child = Child([sys.executable, os.path.abspath(__file__), "--serve", str(free_port())], env=env)
        trunk_port = int(trunk_child.read_line(20))
        trunk = measure("trunk", trunk_child, trunk_port, sipp, args, directory)
        trunk_child.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"trunk / baseline: calls/s {trunk['cps'] / baseline['cps']:.2f}x, "
          f"CPU per call {trunk['cpu_per_call_ms'] / max(baseline['cpu_per_call_ms'], 1e-9):.1f}x")
    return 0 if trunk["failed"] == 0 else 1


class _Pid:
    """A background SIPp known by the PID it printed: stopped by that PID."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def stop(self) -> None:
        import signal

        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


if __name__ == "__main__":
    sys.exit(main())
