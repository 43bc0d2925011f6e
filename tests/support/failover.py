"""
A pair of real call agents over a real PostgreSQL, and telephones, for
the failover tests and benchmark: everything in processes of its own,
started and stopped by PID.

    rig = PairRig(server, dsn, lines=500)   # two gateways of 500 lines
    rig.start()                             # agent A active, agent B standing by, every line armed
    rig.phones.ask("talk 200")
    killed_at = rig.signal_active(signal.SIGKILL)
    ...
    rig.stop()

Each agent is C{twistd -n mgcpswitch --config PAIR.ini --no-simulator
--port P}: one INI for both (the pair shares the database, the gateways
and the cluster settings; each agent's name is its address).  Their log
lines are read in a thread and stamped with C{time.time()} on arrival, so
the moment a standby says it is active can be compared with the moment
the test signalled the active.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Optional

from .cluster_member import ROOT

TWISTD = [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]
ACTIVE = "active in epoch"
STANDING_BY = "standing by"



def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: [cluster] heartbeat, lease, idle_timeout: the defaults.
LEASE = (0.25, 1.0, 1.5)


def pair_config(dsn_url: str, lines: int, base_port: int, gateways: int = 2,
                lease: tuple[float, float, float] = LEASE) -> str:
    """The pair's INI: gateways of C{lines} lines each, the PostgreSQL store, the cluster."""
    from mgcpswitch.load.population import make_config

    text: str = make_config(gateways=gateways, lines=lines, address="127.0.0.1", base_port=base_port,
                            agent=("127.0.0.1", 2727), web="free", store=dsn_url)
    # The overload guard is off: on a shared, loaded machine it would shed
    # some of the 200 calls placed at once, and these tests are about failover.
    heartbeat, expiry, idle = lease
    return text + (f"\n[cluster]\nheartbeat = {heartbeat}\nlease = {expiry}\nidle_timeout = {idle}\n"
                   "\n[overload]\nenabled = no\n")


def url_of(dsn: str) -> str:
    """A libpq C{key=value} string of the test server as the postgresql:// URL [store] wants."""
    fields = dict(item.split("=", 1) for item in dsn.split())
    return f"postgresql://{fields['user']}@/{fields['dbname']}?host={fields['host']}&port={fields['port']}"


class Lines:
    """A child's output lines, each stamped with time.time() on arrival, read by a thread."""

    def __init__(self, stream: Any, keep: Optional[list[tuple[float, str]]] = None) -> None:
        self.queue: queue.Queue[tuple[float, str]] = queue.Queue()
        self.seen: list[tuple[float, str]] = keep if keep is not None else []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for raw in stream:
            item = (time.time(), raw.decode("utf-8", "replace").rstrip("\n"))
            self.seen.append(item)
            self.queue.put(item)
        self.queue.put((time.time(), ""))  # end of output

    def wait(self, text: str, timeout: float, since: float = 0.0) -> Optional[float]:
        """When a line containing C{text} arrived at or after C{since} (already or within C{timeout}), else None."""
        for at, line in list(self.seen):
            if at >= since and text in line:
                return at
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                return None
            try:
                at, line = self.queue.get(timeout=left)
            except queue.Empty:
                return None
            if at >= since and text in line:
                return at
            if line == "" and at >= since:  # the process ended
                return None

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class Agent:
    """One C{twistd -n mgcpswitch} of the pair, known by its PID."""

    def __init__(self, config: str, port: int, log_dir: str) -> None:
        self.port = port
        self.name = f"mgcpswitch@127.0.0.1:{port}"
        self.config = config
        self.log_path = os.path.join(log_dir, f"agent-{port}.log")
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.lines: Optional[Lines] = None
        self.history: list[tuple[float, str]] = []

    def start(self) -> None:
        argv = TWISTD + ["-n", "--pidfile=", "mgcpswitch", "--config", self.config, "--no-simulator",
                         "--port", str(self.port), "--web", "tcp:0:interface=127.0.0.1"]
        env = dict(os.environ, PYTHONPATH=ROOT)
        self.process = subprocess.Popen(argv, cwd=os.path.dirname(self.config), env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = Lines(self.process.stdout, self.history)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> float:
        """Send C{signum} by PID; the time just before."""
        at = time.time()
        os.kill(self.pid, signum)
        return at

    def wait(self, text: str, timeout: float, since: float = 0.0) -> Optional[float]:
        assert self.lines is not None
        return self.lines.wait(text, timeout, since)

    def stop(self, timeout: float = 15.0) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout)
        else:
            process.wait()
        if self.lines is not None:
            self.lines.join(timeout)
        if process.stdout is not None:
            process.stdout.close()

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(line for _, line in self.history[-n:])


class Phones:
    """The telephones' process (L{tests.support.failover_phones}): commands, and the answer to each."""

    def __init__(self, config: str, agents: list[Agent]) -> None:
        argv = [sys.executable, "-m", "tests.support.failover_phones", config,
                ",".join(f"127.0.0.1:{a.port}" for a in agents)]
        self.process = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.lines = Lines(self.process.stdout)
        self._answers: dict[str, list[dict[str, Any]]] = {}  # by command, read before their turn

    def ask(self, command: str, timeout: float = 120.0) -> dict[str, Any]:
        self.send(command)
        return self.answer(command, timeout)

    def send(self, command: str) -> None:
        """Send a command without waiting (L{answer} reads its answer)."""
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()

    def answer(self, command: str, timeout: float = 120.0) -> dict[str, Any]:
        """
        The answer to C{command}.  Commands sent together run side by side
        and are answered as each is done, not in the order sent: answers
        to others are kept for their own L{answer}.
        """
        deadline = time.time() + timeout
        while not self._answers.get(command):
            try:
                _, line = self.lines.queue.get(timeout=max(deadline - time.time(), 0.0))
            except queue.Empty:
                raise AssertionError(f"the phones did not answer {command!r} within {timeout} s") from None
            if not line:
                raise AssertionError(f"the phones ended while asked {command!r}")
            answer: dict[str, Any] = json.loads(line)
            self._answers.setdefault(answer.pop("command"), []).append(answer)
        answer = self._answers[command].pop(0)
        if "error" in answer:
            raise AssertionError(f"the phones failed {command!r}: {answer['error']}")
        return answer

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write(b"quit\n")
                self.process.stdin.close()
                self.process.wait(timeout=15)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.lines.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


class PairRig:
    """Two agents on one database, and two gateways of C{lines} lines each in the phones' process."""

    def __init__(self, dsn: str, lines: int = 500, lease: tuple[float, float, float] = LEASE) -> None:
        self.dsn = dsn
        self.directory = tempfile.mkdtemp(prefix="failover.")
        self.config = os.path.join(self.directory, "pair.ini")
        base = free_udp_port()
        while base > 65000:
            base = free_udp_port()
        with open(self.config, "w") as f:
            f.write(pair_config(url_of(dsn), lines, base, lease=lease))
        self.agents = [Agent(self.config, free_udp_port(), self.directory) for _ in range(2)]
        self.phones: Optional[Phones] = None

    def start(self) -> None:
        """Agent A first (it becomes active), then B (it stands by), then the phones (every line armed)."""
        first, second = self.agents
        first.start()
        if first.wait(ACTIVE, 60.0) is None:
            raise AssertionError(f"agent A never became active:\n{first.log_tail()}")
        second.start()
        if second.wait("call agent listening", 60.0) is None:
            raise AssertionError(f"agent B never started:\n{second.log_tail()}")
        self.phones = Phones(self.config, self.agents)
        armed = self.phones.ask("armed")
        if armed["not_armed"]:
            raise AssertionError(f"{armed['not_armed']} lines never armed:\n{first.log_tail()}")

    def active(self) -> Agent:
        """The agent that said it was active last (and is alive)."""
        best: tuple[float, Optional[Agent]] = (-1.0, None)
        for agent in self.agents:
            at = agent.wait(ACTIVE, 0.0)
            latest = max((t for t, line in agent.history if ACTIVE in line), default=None)
            if at is not None and latest is not None and agent.alive() and latest > best[0]:
                best = (latest, agent)
        assert best[1] is not None, "no agent is active"
        return best[1]

    def other(self, agent: Agent) -> Agent:
        return self.agents[1] if agent is self.agents[0] else self.agents[0]

    def query(self, server: Any, sql: str) -> list[tuple[Any, ...]]:
        return server.query(self.dsn, sql)  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.phones is not None:
            self.phones.stop()
        for agent in self.agents:
            agent.stop()
