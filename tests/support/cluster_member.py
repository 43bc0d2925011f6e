"""
A cluster member in a process of its own, for the tests and benchmarks
that kill or freeze the active by its PID:

    python -m tests.support.cluster_member DSN NAME [HEARTBEAT LEASE IDLE_TIMEOUT]

It runs a L{ClusterService} on the real reactor and prints one line per
change, flushed at once (C{time} is C{time.time()} of the change):

    standby
    active EPOCH TIME
    written BATCHES
    lost REASON TIME

While it holds its lease it writes a registration (the gateway
C{member-NAME}, C{last_rsip_at} counting up) every 50 ms through its
store, as call control would, checking L{ClusterService.holds_lease}
first; C{written} says how many batches its store has committed.  SIGTERM stops it cleanly (it hands over).

L{MemberProcess} starts one from a test and turns its lines into
Deferreds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Any, Optional

from twisted.internet.defer import Deferred

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def main(argv: list[str]) -> None:
    import time

    from twisted.internet import reactor, task

    from mgcpswitch.agent.model import GatewayRecord, GatewayState
    from mgcpswitch.cluster.leadership import LeaseSettings
    from mgcpswitch.cluster.service import ClusterService, MemberSettings

    dsn, name = argv[0], argv[1]
    lease = LeaseSettings(*(float(a) for a in argv[2:5])) if len(argv) >= 5 else LeaseSettings()

    def say(*words: Any) -> None:
        print(*words, flush=True)

    written = batches = 0

    def write() -> None:
        nonlocal written, batches
        if cluster.store.batches != batches:
            batches = cluster.store.batches
            say("written", batches)
        if cluster.holds_lease():
            written += 1
            cluster.store.gateway_changed(
                GatewayRecord(f"member-{name}", "127.0.0.1", 2427, GatewayState.UP, "restart", float(written))
            )

    cluster = ClusterService(
        reactor, reactor, MemberSettings(dsn, name, lease, flush_interval=0.1),
        became_active=lambda epoch: say("active", epoch, repr(time.time())),
        lost_leadership=lambda reason: say("lost", reason.value, repr(time.time())),
    )
    task.LoopingCall(write).start(0.05, now=False)
    reactor.callWhenRunning(cluster.startService)
    reactor.callWhenRunning(say, "standby")
    reactor.addSystemEventTrigger("before", "shutdown", cluster.stopService)
    reactor.run()


class MemberProcess:
    """A member we started, known by its PID; its lines come back as Deferreds on the reactor."""

    def __init__(self, reactor: Any, dsn: str, name: str, lease: Optional[tuple[float, float, float]] = None) -> None:
        self._reactor = reactor
        self.name = name
        argv = [sys.executable, "-m", "tests.support.cluster_member", dsn, name]
        argv += [str(x) for x in lease or ()]
        self.process = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        self.pid = self.process.pid
        self.lines: list[str] = []
        self._waiting: list[tuple[str, int, Deferred[str]]] = []
        self._reader = threading.Thread(target=self._read, name=f"member-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._reactor.callFromThread(self._line, raw.decode("utf-8", "replace").rstrip("\n"))

    def _line(self, line: str) -> None:
        self.lines.append(line)
        waiting = []
        for prefix, start, d in self._waiting:
            if line.startswith(prefix):
                d.callback(line)
            else:
                waiting.append((prefix, start, d))
        self._waiting = waiting

    def next_line(self, prefix: str) -> Deferred[str]:
        """The first line starting with C{prefix} printed from now on."""
        d: Deferred[str] = Deferred()
        self._waiting.append((prefix, len(self.lines), d))
        return d

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signum)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop it by its PID: SIGCONT (in case it is frozen), SIGTERM, then SIGKILL; reap it."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout)
        else:
            self.process.wait()
        self._reader.join(timeout)  # it reads to the end of the output, then ends
        if self.process.stdout is not None:
            self.process.stdout.close()


if __name__ == "__main__":
    main(sys.argv[1:])
