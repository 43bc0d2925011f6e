"""
Helpers of the call benchmarks (bench_calls, bench_memory, bench_rsip_storm):
start the switch as a subprocess from a generated INI and stop it by PID,
run the load tool as a subprocess and read its JSON, wait for a quiet
machine, profile a process with py-spy.

Standard library only (plus the repository for mgcpswitch.load.make_config).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from _common import machine_idle_ticks, proc_cpu_ticks, proc_rss_mb  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
TWISTD = [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]


def code_state() -> str:
    """The commit and how many files differ from it (others edit the tree while we measure)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
        files = [line[3:] for line in dirty if line.strip()]
        return f"{head} + {len(files)} modified file(s): {', '.join(files)}" if files else head
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = REPO + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_udp_range(count: int, host: str = "127.0.0.1", start: int | None = None) -> int:
    """
    A base port with C{count} free UDP ports above it (checked by binding;
    a random start, so that concurrent benchmarks rarely pick the same).
    """
    import random

    base = start if start is not None else random.randrange(20000, 60000 - count)
    while base + count < 65000:
        socks = []
        try:
            for i in range(count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((host, base + i))
            return base
        except OSError:
            base += count + 1
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free UDP port range")


class Switch:
    """C{twistd -n mgcpswitch --config FILE --no-simulator}, started and stopped by PID."""

    def __init__(self, config_path: str, web_port: int, log_path: Optional[str] = None) -> None:
        self.config_path = config_path
        self.web_port = web_port
        self.log_path = log_path or config_path + ".log"
        self.argv = TWISTD + ["-n", "--pidfile=", "--logfile", self.log_path, "mgcpswitch",
                              "--config", config_path, "--no-simulator"]
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> None:
        self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT, env=env(), cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the switch exited ({self.process.returncode}); see {self.log_path}")
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"the switch did not answer on 127.0.0.1:{self.web_port} in {timeout:g} s")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/api/stats", timeout=5) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    def gateways(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/api/gateways", timeout=30) as r:
            return json.loads(r.read())["gateways"]  # type: ignore[no-any-return]

    def rss_mb(self) -> Optional[float]:
        return proc_rss_mb(self.pid)

    def cpu_ticks(self) -> Optional[int]:
        return proc_cpu_ticks(self.pid)

    def stop(self, timeout: float = 10.0) -> None:
        p = self.process
        if p is None or p.poll() is not None:
            return
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=timeout)


def write_config(gateways: int, lines: int, agent_port: int, base_port: int, web_port: int,
                 directory: Optional[str] = None, **kwargs: Any) -> str:
    from mgcpswitch.load import make_config

    text = make_config(gateways, lines, base_port=base_port, agent=("127.0.0.1", agent_port),
                       web=str(web_port), **kwargs)
    fd, path = tempfile.mkstemp(prefix=f"mgcpload-{gateways}x{lines}-", suffix=".ini", dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load_tool(args: list[str], timeout: float = 900.0,
              on_stderr: Any = None) -> tuple[dict[str, Any], "subprocess.Popen[bytes]"]:
    """
    Run C{mgcpload ARGS --json}; its JSON report.  Its stderr goes to ours;
    with C{on_stderr}, each of its lines is also given to C{on_stderr(line)}
    as it comes (from a thread that alone reads the pipe).
    """
    import threading

    argv = [sys.executable, os.path.join(REPO, "scripts", "mgcpload")] + args + ["--json"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=None if on_stderr is None else subprocess.PIPE,
                         env=env(), cwd=REPO)

    def read_stderr() -> None:
        assert p.stderr is not None
        for raw in p.stderr:
            line = raw.decode("utf-8", "replace")
            on_stderr(line)
            sys.stderr.write(line)
            sys.stderr.flush()

    def overdue() -> None:
        if p.poll() is None:  # still ours, not reaped
            os.kill(p.pid, signal.SIGTERM)

    reader = threading.Thread(target=read_stderr, name="mgcpload-stderr", daemon=True)
    killer = threading.Timer(timeout, overdue)
    if on_stderr is not None:
        reader.start()
    killer.start()
    try:
        assert p.stdout is not None
        out = p.stdout.read()  # not communicate(): it would read stderr too
        p.wait(timeout=30)
    except BaseException:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            p.wait(timeout=30)
        raise
    finally:
        killer.cancel()
        if on_stderr is not None:
            reader.join(timeout=10)
    try:
        return json.loads(out), p
    except json.JSONDecodeError:
        raise RuntimeError(f"mgcpload exited {p.returncode} without a report: {out[-500:]!r}") from None


def start_load_tool(args: list[str]) -> "subprocess.Popen[bytes]":
    argv = [sys.executable, os.path.join(REPO, "scripts", "mgcpload")] + args + ["--json"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=None, env=env(), cwd=REPO)


def other_load(pids: list[int], seconds: float = 1.0) -> float:
    """CPUs busy on the machine beyond C{pids}, over C{seconds} (idle-based, see _common)."""
    ncpu = os.cpu_count() or 1
    i0 = machine_idle_ticks()
    c0 = sum(proc_cpu_ticks(p) or 0 for p in pids)
    t0 = time.monotonic()
    time.sleep(seconds)
    i1 = machine_idle_ticks()
    c1 = sum(proc_cpu_ticks(p) or 0 for p in pids)
    wall = time.monotonic() - t0
    if i0 is None or i1 is None:
        return 0.0
    busy = ncpu - (i1 - i0) / CLK_TCK / wall
    return max(0.0, busy - (c1 - c0) / CLK_TCK / wall)


def wait_quiet(pids: list[int], max_other: float, max_wait: float, say: Any = print) -> float:
    """Wait up to C{max_wait} s for other load below C{max_other} CPUs; the last reading."""
    deadline = time.monotonic() + max_wait
    reading = other_load(pids)
    while reading > max_other and time.monotonic() < deadline:
        say(f"# waiting for a quieter machine: other load {reading * 100:.0f} % of a core "
            f"(> {max_other * 100:.0f} %)")
        time.sleep(4.0)
        reading = other_load(pids)
    return reading


class PySpy:
    """C{py-spy record --format raw} of a PID for a while (collapsed stacks)."""

    def __init__(self, pid: int, seconds: float, output: str, rate: int = 250, native: bool = False) -> None:
        exe = os.path.join(os.path.dirname(sys.executable), "py-spy")
        if not os.path.exists(exe):
            exe = shutil.which("py-spy") or exe
        if not os.path.exists(exe):
            # A profiling tool, not a dependency of the switch: the benchmark
            # installs it beside its own Python when asked to profile.
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "py-spy"],
                           check=True)
        self.output = output
        self.argv = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
                     "--format", "raw", "--function", "--nonblocking", "-o", output] + (["--native"] if native else [])
        self.process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait(self, timeout: float = 120.0) -> None:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGINT)
            self.process.wait(timeout=10)


def top_functions(raw_path: str, count: int = 20) -> tuple[int, list[tuple[str, int, float]], Counter[str]]:
    """
    Own time by function from py-spy raw (collapsed) stacks: the leaf frame
    of each sample, leaving out samples waiting in epoll (idle).  Returns
    (busy samples, [(function, samples, share)], and the share by area (see
    L{area})).
    """
    own: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    with open(raw_path) as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            k = int(n)
            frames = stack.split(";")
            leaf = frames[-1]
            if leaf.startswith("EPollReactor.doPoll") or leaf.startswith("epoll_wait"):
                continue  # waiting in epoll: idle, not CPU
            own[leaf] += k
            areas[area(frames)] += k
            total += k
    top = [(name, k, k / total if total else 0.0) for name, k in own.most_common(count)]
    return total, top, areas


_AREAS = (
    ("mgcpswitch/mgcp/_codec", "codec (decode/encode)"),
    ("mgcpswitch/mgcp/", "codec values (mgcp/*)"),
    ("mgcpswitch/transaction", "transaction layer"),
    ("mgcpswitch/agent/", "call control (agent/*)"),
    ("mgcpswitch/gateway/", "simulated gateway (gateway/*)"),
    ("mgcpswitch/load", "load tool logic"),
    ("twisted/internet/defer", "Deferred machinery"),
    ("twisted/logger", "logging (twisted.logger)"),
    ("twisted/python/log", "reactor dispatch (log.callWithLogger, context)"),
    ("twisted/python/context", "reactor dispatch (log.callWithLogger, context)"),
    ("twisted/web", "twisted.web"),
    ("twisted/internet/udp", "reactor/UDP I/O (sendto, recvfrom)"),
    ("twisted/internet/base", "reactor (timers, loop)"),
    ("twisted/internet/epollreactor", "reactor (epoll)"),
    ("twisted/internet/posixbase", "reactor (epoll)"),
    ("twisted/internet/task", "reactor (timers, loop)"),
)


def area(frames: list[str]) -> str:
    """The area a sample's own time belongs to: its innermost frame that is ours or Twisted's."""
    for frame in reversed(frames):
        for needle, name in _AREAS:
            if needle in frame:
                return name
    leaf = frames[-1]
    return "other: " + leaf.split(" (")[0]


ECHO = (
    "import sys\n"
    "from twisted.internet import reactor\n"
    "from twisted.internet.protocol import DatagramProtocol\n"
    "class Echo(DatagramProtocol):\n"
    "    def datagramReceived(self, data, addr):\n"
    "        self.transport.write(data[:18], addr)\n"
    "port = reactor.listenUDP(0, Echo(), interface='127.0.0.1')\n"
    "print(port.getHost().port, flush=True)\n"
    "reactor.run()\n"
)


def echo_baseline(seconds: float = 3.0, size: int = 100) -> dict[str, Any]:
    """
    The machine's speed right now: a bare Twisted UDP echo (a subprocess,
    started and stopped by PID) and a stdlib client in strict ping-pong
    (window 1) for C{seconds}: round trips per second, and the echo's CPU
    per round trip.  Run before and after a benchmark, it shows how much of
    a change between runs is the machine.
    """
    p = subprocess.Popen([sys.executable, "-c", ECHO], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env())
    try:
        assert p.stdout is not None
        port = int(p.stdout.readline())
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1.0)
        payload = b"x" * size
        addr = ("127.0.0.1", port)
        for _ in range(100):
            s.sendto(payload, addr)
            s.recvfrom(2048)
        c0 = proc_cpu_ticks(p.pid) or 0
        n = 0
        t0 = time.monotonic()
        end = t0 + seconds
        while time.monotonic() < end:
            for _ in range(100):
                s.sendto(payload, addr)
                s.recvfrom(2048)
            n += 100
        wall = time.monotonic() - t0
        c1 = proc_cpu_ticks(p.pid) or 0
        s.close()
        return {"round_trips_per_s": n / wall, "echo_cpu_us_per_rt": (c1 - c0) / CLK_TCK / n * 1e6,
                "seconds": wall}
    finally:
        os.kill(p.pid, signal.SIGTERM)
        p.wait(timeout=10)


def find_baselines() -> Optional[str]:
    """
    The bare call-agent prototype of issue 15 (shared/baselines: read-only,
    not part of the repository): C{$MGCP_BASELINES}, or C{shared/baselines}
    beside the checkout (CI's layout) or beside the worktrees' parent.
    """
    candidates = [os.environ.get("MGCP_BASELINES", ""),
                  os.path.join(REPO, "..", "shared", "baselines"),
                  os.path.join(REPO, "..", "..", "shared", "baselines")]
    for path in candidates:
        if path and os.path.exists(os.path.join(path, "ca_server_twisted.py")):
            return os.path.abspath(path)
    return None


def prototype_baseline(directory: str, seconds: float = 6.0, window: int = 64,
                       endpoints: int = 1000) -> dict[str, Any]:
    """
    Run the prototype as its README says, in this run: its Twisted server
    (started and stopped by PID) answers NTFY and sends RQNT, its stdlib
    generator keeps C{window} cycles in flight and prints one C{RESULT
    {json}} line with the server's CPU per transaction.
    """
    server = subprocess.Popen([sys.executable, "ca_server_twisted.py", "--port", "0", "--lifetime", "120"],
                              cwd=directory, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, env=env())
    try:
        assert server.stdout is not None
        line = server.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the prototype server said {line!r}")
        port = int(line.split()[1])
        out = subprocess.run(
            [sys.executable, "gw_sim_stdlib.py", "--port", str(port), "--server-pid", str(server.pid),
             "--window", str(window), "--endpoints", str(endpoints), "--duration", str(seconds)],
            cwd=directory, capture_output=True, text=True, timeout=seconds + 60, env=env(),
        ).stdout
        results = [json.loads(x[len("RESULT "):]) for x in out.splitlines() if x.startswith("RESULT ")]
        if not results:
            raise RuntimeError(f"the prototype's generator printed no RESULT: {out[-300:]!r}")
        result: dict[str, Any] = results[-1]
        result["command"] = (f"python ca_server_twisted.py --port 0 --lifetime 120 & python gw_sim_stdlib.py "
                             f"--port PORT --server-pid PID --window {window} --endpoints {endpoints} "
                             f"--duration {seconds:g}")
        return result
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGTERM)
            server.wait(timeout=10)


# -- a real process under callgrind (bench_process.py, bench_generator.py) -----------------

def wait_for_admin(switch: "Switch", process: "subprocess.Popen[bytes]", timeout: float, poll: float) -> None:
    """Until the switch's admin answers (its reactor runs), or C{process} (the agent) is gone."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            switch.stats()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the agent did not start; see {switch.log_path}") from None
            time.sleep(poll)


def completed_calls(switch: "Switch") -> int:
    return sum(switch.stats()["calls"]["outcomes"].values())


def callgrind_window(pid: int, seconds: float) -> float:
    """Instrument the callgrind process C{pid} for C{seconds} (it ran with --instr-atstart=no); the wall time."""
    subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True, check=True)
    t0 = time.monotonic()
    time.sleep(seconds)
    subprocess.run(["callgrind_control", "-i", "off", str(pid)], capture_output=True, check=True)
    return time.monotonic() - t0


def callgrind_total(out: str) -> int:
    """The instructions counted in callgrind's output file(s) C{out}* (one per dump)."""
    import glob

    total = 0
    for path in glob.glob(out + "*"):
        with open(path) as fh:
            for line in fh:
                if line.startswith(("totals:", "summary:")):
                    total = max(total, int(line.split()[1]))
    return total


def per_call_and_second(lo: dict[str, Any], hi: dict[str, Any]) -> tuple[float, float]:
    """
    Solve C{instructions = per_call * calls + per_second * seconds} for two
    windows at different rates: what each call costs and what the process
    does every second whatever the rate (timers, probes, ticks).
    """
    det = lo["calls"] * hi["seconds"] - hi["calls"] * lo["seconds"]
    per_call = (lo["instructions"] * hi["seconds"] - hi["instructions"] * lo["seconds"]) / det
    per_second = (lo["calls"] * hi["instructions"] - hi["calls"] * lo["instructions"]) / det
    return per_call, per_second
