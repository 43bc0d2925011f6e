# -*- test-case-name: tests.test_load -*-
"""
CPU and memory of the processes of a load run, from C{/proc} (Linux): the
agent's (by PID, found from its UDP port), this process's, and the
machine's idle time, so that a report can say which one saturated.
Elsewhere the figures are None.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Optional

__all__ = ["read_proc_ticks", "read_idle_ticks", "read_rss_kb", "find_agent_pid", "CpuSampler"]


def read_proc_ticks(pid: int) -> Optional[int]:
    """utime + stime of a process in clock ticks (None if unreadable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12])


def read_idle_ticks() -> Optional[int]:
    """Idle + iowait ticks of the machine (all CPUs) from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return v[3] + v[4]


def read_rss_kb(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _clk_tck() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return 100


def find_agent_pid(host: str, port: int) -> Optional[int]:
    """The process with a UDP socket bound to C{host:port} (via /proc/net/udp and /proc/*/fd)."""
    inodes = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local = parts[1]
                    addr_hex, _, port_hex = local.rpartition(":")
                    if int(port_hex, 16) != port:
                        continue
                    if table.endswith("udp") and len(addr_hex) == 8:
                        ip = socket.inet_ntoa(bytes.fromhex(addr_hex)[::-1])
                        if ip not in (host, "0.0.0.0"):
                            continue
                    inodes.add(parts[9])
        except (OSError, StopIteration):
            continue
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        fd_dir = f"/proc/{entry}/fd"
        try:
            for fd in os.listdir(fd_dir):
                try:
                    if os.readlink(f"{fd_dir}/{fd}") in targets:
                        return int(entry)
                except OSError:
                    continue
        except OSError:
            continue
    return None


class CpuSampler:
    """
    CPU of the agent (by PID), of this process, and of the machine, between
    two samples.  The wall clock here measures the host's processes, not
    the protocol: it is the one place of the tool that reads it.
    """

    def __init__(self, agent_pid: Optional[int]) -> None:
        self.agent_pid = agent_pid
        self.tck = _clk_tck()
        self.ncpu = os.cpu_count() or 1
        self.start: Optional[tuple[float, Optional[int], float, Optional[int], float]] = None

    def _sample(self) -> tuple[float, Optional[int], float, Optional[int], float]:
        t = os.times()
        agent = read_proc_ticks(self.agent_pid) if self.agent_pid else None
        return time.monotonic(), agent, t.user, read_idle_ticks(), t.system

    def begin(self) -> None:
        self.start = self._sample()

    def end(self) -> dict[str, Any]:
        assert self.start is not None
        t0, a0, u0, i0, k0 = self.start
        t1, a1, u1, i1, k1 = self._sample()
        wall = max(t1 - t0, 1e-9)
        out: dict[str, Any] = {"wall_s": wall, "ncpu": self.ncpu}
        agent = (a1 - a0) / self.tck / wall if a0 is not None and a1 is not None else None
        # User and kernel seconds are differenced apart, so that the kernel's
        # share can never exceed the whole by a rounding of the sum.
        tool_seconds = (u1 - u0) + (k1 - k0)
        tool = tool_seconds / wall
        out["agent_cpu"] = agent
        out["tool_cpu"] = tool
        if i0 is not None and i1 is not None:
            busy = self.ncpu - (i1 - i0) / self.tck / wall  # in CPUs
            out["machine_busy"] = busy
            out["other_load"] = busy - tool - (agent or 0.0) if agent is not None else None
        else:
            out["machine_busy"] = out["other_load"] = None
        out["agent_cpu_seconds"] = (a1 - a0) / self.tck if a0 is not None and a1 is not None else None
        out["tool_cpu_seconds"] = tool_seconds
        # The kernel's share (system calls: a datagram sent costs its delivery on loopback).
        out["tool_system_seconds"] = k1 - k0
        return out
