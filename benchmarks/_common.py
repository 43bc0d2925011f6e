"""
Helpers shared by the benchmarks: the machine, CPU accounting from /proc,
percentiles, and starting/stopping helper processes by PID.

Standard library only; Linux /proc for the CPU figures (elsewhere they are
reported as unknown).
"""

from __future__ import annotations

import datetime
import os
import platform
import select
import shlex
import signal
import subprocess
import sys
from typing import Any, Optional

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_revision() -> str:
    """The checkout's commit, and whether mgcpswitch/ has uncommitted changes."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "mgcpswitch"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + (" + uncommitted changes in mgcpswitch/" if dirty else "")


def machine_info(argv: list[str]) -> dict[str, Any]:
    """What the header of a benchmark prints: interpreter, machine, date, command."""
    return {
        "revision": git_revision(),
        "python": sys.version.replace("\n", " "),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in argv),
        "cwd": os.getcwd(),
    }


def print_machine(info: dict[str, Any]) -> None:
    print("# date        %s" % info["date"])
    print("# command     %s" % info["command"])
    print("#   (cwd      %s)" % info["cwd"])
    print("# python      %s %s (%s)" % (info["implementation"], info["python"], info["executable"]))
    print("# machine     %s, %s, nproc %s, %s" % (info["platform"], info["machine"], info["nproc"], info["cpu"]))
    if info.get("revision"):
        print("# revision    %s" % info["revision"])
    if info["loadavg_at_start"] is not None:
        print("# loadavg     %.2f %.2f %.2f (at start)" % tuple(info["loadavg_at_start"]))


def proc_cpu_ticks(pid: int) -> Optional[int]:
    """utime + stime of a process, in clock ticks (None when it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12])  # fields 14 and 15


def proc_rss_mb(pid: int) -> Optional[float]:
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def machine_busy_ticks() -> Optional[int]:
    """
    Busy ticks of the whole machine, all CPUs: user+nice+system+irq+softirq+steal
    (the osmo-mgw anchor's method).  Tick-sampled: on this kernel it misses
    busy time of ping-pong loads (see L{machine_idle_ticks}).
    """
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)


def machine_idle_ticks() -> Optional[int]:
    """
    Idle + iowait ticks of the whole machine, all CPUs.  With NO_HZ the idle
    time is accounted exactly (from idle entry/exit), whereas the busy
    fields are sampled by the tick, which rarely fires during the short
    bursts of a UDP ping-pong: measured here, a 5 s ping-pong between two
    processes showed 833 of the expected 1000 ticks in /proc/stat, and
    "busy ticks" came out 30 points below the two processes' own CPU time.
    So busy = nproc x wall - idle is the better estimate.
    """
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return v[3] + v[4]


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def pct(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (as the osmo-mgw anchor's bench.py)."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[k]


class Child:
    """
    A helper process we started, known by its PID only.  Its first stdout
    line is read by L{read_line}; L{stop} sends SIGTERM to that PID (then
    SIGKILL after a grace period) and reaps it.
    """

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=None, env=env,
        )
        self.pid = self.process.pid

    def read_line(self, timeout: float = 10.0) -> str:
        stdout = self.process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        if not ready:
            raise TimeoutError("no output from %s (pid %d) within %.0f s" % (self.argv[-1], self.pid, timeout))
        line = stdout.readline().decode("utf-8", "replace")
        if not line:
            raise RuntimeError("pid %d exited (status %s)" % (self.pid, self.process.poll()))
        return line.rstrip("\n")

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signum)

    def stop(self, timeout: float = 5.0) -> str:
        """Stop by PID; return whatever it printed after its first line."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout)
        rest = ""
        if self.process.stdout is not None:
            try:
                rest = self.process.stdout.read().decode("utf-8", "replace")
            except (OSError, ValueError):
                pass
            self.process.stdout.close()
        return rest


class GcTimer:
    """
    Time spent in the cyclic garbage collector, per generation, through
    C{gc.callbacks}: collections, seconds, and the longest pause since the
    last L{take}.
    """

    def __init__(self) -> None:
        import gc
        from time import perf_counter

        self._clock = perf_counter
        self._started = 0.0
        self.reset()
        gc.callbacks.append(self._callback)

    def reset(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.max_pause = 0.0
        self.max_generation = -1

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = self._clock()
            return
        pause = self._clock() - self._started
        generation = info.get("generation", 2)
        self.count[generation] += 1
        self.seconds[generation] += pause
        if pause > self.max_pause:
            self.max_pause = pause
            self.max_generation = generation

    def take(self) -> dict[str, Any]:
        """The figures since the last take (or since installation), then reset."""
        out = {
            "collections": list(self.count),
            "seconds": [round(s, 4) for s in self.seconds],
            "max_pause_ms": round(self.max_pause * 1e3, 2),
            "max_pause_generation": self.max_generation,
        }
        self.reset()
        return out
