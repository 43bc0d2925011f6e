# -*- test-case-name: tests.test_load -*-
"""
C{mgcpload}: a load generator for the call agent (issue 8).

It runs K simulated gateways of M lines each in its own process against a
running call agent, over real UDP, registers them, and places complete
basic calls at a target rate (or keeps C calls in progress, open loop),
then reports what happened.  Three subcommands:

  - C{mgcpload config --gateways K --lines M ...} prints a switch INI for
    that population, so that one file configures both the switch
    (C{twistd -n mgcpswitch --config FILE --no-simulator}) and the tool;
  - C{mgcpload run --config FILE --rate R --duration D ...} reads the same
    file, builds and binds the gateways, waits until every line is armed
    (holds the switch's C{R: L/hd}), runs the calls, and prints a report
    (text, or JSON with C{--json});
  - C{mgcpload register --config FILE [--restart-delay S] [--track]} only
    registers (the RSIP storm): the time until every line is armed, and
    with C{--track} the AUEPs and RQNTs each line received and the audits
    in flight per gateway.

A call, as the tool drives it (the digest §7 basic call):

  1. the caller goes off hook; it must hear dial tone (C{L/dl});
  2. it dials the callee's number (no gap between digits by default);
  3. the callee must ring (C{L/rg}) and the caller hear ringback (C{G/rt});
     I{setup latency} is the time from the last digit pressed (the moment
     the caller's endpoint accumulated it, which is when the digit map
     matched and the NTFY with the digits went out) to the later of
     "callee ringing" and "caller hears ringback", both seen on the
     gateways in this process;
  4. after C{--answer-delay} the callee answers; both lines must hold one
     C{sendrecv} connection;
  5. after C{--hold} seconds one side hangs up (the caller, the callee, or
     alternately), the other must hear busy tone (C{L/bz}) and hangs up;
  6. the call is I{completed} when both lines are on hook, hold no
     connection, play no signal and are armed again for C{L/hd}.

A step that does not happen in time fails the call with a cause
(C{no-dial-tone}, C{busy}, C{reorder}, C{no-ringing}, C{not-connected},
C{no-busy-tone}, C{not-released}, C{mgcp-timeout} when one of the
gateways' NTFYs timed out); the tool then hangs both lines up and waits for
them to be idle again before using them again, or sets them aside as
I{suspect} if they do not recover.

Library code takes the reactor as an argument (L{LoadRunner}); only
L{main} picks the running one.  The CPU figures come from C{/proc} (Linux).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Callable, Optional, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from .config import Settings, parse_settings
from .errors import TransactionTimeout
from .gateway import GatewayConfig, SimulatedGateway
from .gateway.packages import Hook, SignalType
from .mgcp import ConnectionMode, EventName

__all__ = [
    "LoadOptions",
    "LoadRunner",
    "Report",
    "make_config",
    "format_report",
    "find_agent_pid",
    "main",
]

_DIAL_TONE = EventName("L/dl")
_RINGBACK = EventName("G/rt")
_BUSY = EventName("L/bz")
_REORDER = EventName("L/ro")
_RINGING = EventName("L/rg")
_OFF_HOOK_EVENT = EventName("L/hd")
_SENDRECV = ConnectionMode.SENDRECV
_ON = Hook.ON
_OFF = Hook.OFF
_BRIEF = SignalType.BRIEF

#: Failure causes, in the order the report lists them.
CAUSES = (
    "no-dial-tone", "busy", "reorder", "no-ringing", "not-connected", "no-busy-tone",
    "not-released", "mgcp-timeout",
)


# ---------------------------------------------------------------------------
# config


def number_width(total_lines: int) -> int:
    """Digits in a directory number for C{total_lines} lines (at least 4, never a leading 0)."""
    width = 4
    while total_lines > 9 * 10 ** (width - 1):
        width += 1
    return width


def gateway_layout(
    gateways: int, lines: int, address: str = "127.0.0.1", base_port: int = 30000,
    distinct_addresses: bool = False,
) -> list[tuple[str, str, int, str, str]]:
    """C{(name, address, port, first number, last number)} of each gateway."""
    if gateways < 1 or lines < 1:
        raise ValueError("need at least one gateway and one line")
    width = number_width(gateways * lines)
    first = 10 ** (width - 1)
    out = []
    for g in range(gateways):
        if distinct_addresses:
            host = f"127.1.{(g + 1) // 250}.{(g + 1) % 250 + 1}"
            port = base_port
        else:
            host = address
            port = base_port + g
            if port > 65535:
                raise ValueError("too many gateways for one address: use --distinct-addresses")
        low = first + g * lines
        out.append((f"lg{g + 1}", host, port, str(low), str(low + lines - 1)))
    return out


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def make_config(
    gateways: int,
    lines: int,
    *,
    address: str = "127.0.0.1",
    base_port: int = 30000,
    agent: tuple[str, int] = ("127.0.0.1", 2727),
    distinct_addresses: bool = False,
    web: Optional[str] = "free",
    observers: Sequence[str] = (),
    ladder: bool = False,
    embedded_dial_tone: bool = True,
    keepalive_interval: float = 60.0,
    audit_concurrency: Optional[int] = None,
    no_answer_timeout: float = 60.0,
    command: Optional[str] = None,
) -> str:
    """
    A switch INI for K gateways C{lg1..lgK} of M lines each.  C{web}: a
    port number, C{"free"} (a free port now), C{"default"} (no C{[web]}
    section: 127.0.0.1:8080), or None (C{[web]} on port 0: any).
    """
    layout = gateway_layout(gateways, lines, address, base_port, distinct_addresses)
    width = number_width(gateways * lines)
    out = [
        "# A switch for mgcpload: %d gateway(s) x %d line(s) = %d endpoints." % (gateways, lines, gateways * lines),
        "# The same file configures the switch and the load tool:",
        "#   twistd -n --pidfile= mgcpswitch --config FILE --no-simulator",
        "#   mgcpload run --config FILE --rate 500 --duration 20",
    ]
    if command:
        out.append("# Generated by: " + command)
    out += [
        "",
        "[switch]",
        f"interface = {agent[0]}",
        f"port = {agent[1]}",
        "dynamic_gateways = no",
        f"keepalive_interval = {keepalive_interval:g}",
        f"no_answer_timeout = {no_answer_timeout:g}",
        "digit_map = (" + "x" * width + ")",
        "dial_plan = static",
        "observers = " + ", ".join(observers),
        "ladder = " + ("yes" if ladder else "no"),
        # Dial tone from the idle request itself: 13 transactions per call, not 15.
        "embedded_dial_tone = " + ("yes" if embedded_dial_tone else "no"),
    ]
    if audit_concurrency is not None:
        out.append(f"audit_concurrency = {audit_concurrency}")
    if web != "default":
        port = free_tcp_port() if web == "free" else (0 if web is None else int(web))
        out += ["", "[web]", f"listen = tcp:{port}:interface=127.0.0.1"]
    for name, host, port, low, high in layout:
        out += [
            "",
            f"[gateway:{name}]",
            f"address = {host}",
            f"port = {port}",
            f"lines = {lines}",
            f"numbers = {low}-{high}",
        ]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# /proc


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
    """CPU of the agent (by PID), of this process, and of the machine, between two samples."""

    def __init__(self, agent_pid: Optional[int]) -> None:
        self.agent_pid = agent_pid
        self.tck = _clk_tck()
        self.ncpu = os.cpu_count() or 1
        self.start: Optional[tuple[float, Optional[int], float, Optional[int]]] = None

    def _sample(self) -> tuple[float, Optional[int], float, Optional[int]]:
        t = os.times()
        agent = read_proc_ticks(self.agent_pid) if self.agent_pid else None
        return time.monotonic(), agent, t.user + t.system, read_idle_ticks()

    def begin(self) -> None:
        self.start = self._sample()

    def end(self) -> dict[str, Any]:
        assert self.start is not None
        t0, a0, s0, i0 = self.start
        t1, a1, s1, i1 = self._sample()
        wall = max(t1 - t0, 1e-9)
        out: dict[str, Any] = {"wall_s": wall, "ncpu": self.ncpu}
        agent = (a1 - a0) / self.tck / wall if a0 is not None and a1 is not None else None
        tool = (s1 - s0) / wall
        out["agent_cpu"] = agent
        out["tool_cpu"] = tool
        if i0 is not None and i1 is not None:
            busy = self.ncpu - (i1 - i0) / self.tck / wall  # in CPUs
            out["machine_busy"] = busy
            out["other_load"] = busy - tool - (agent or 0.0) if agent is not None else None
        else:
            out["machine_busy"] = out["other_load"] = None
        out["agent_cpu_seconds"] = (a1 - a0) / self.tck if agent is not None else None  # type: ignore[operator]
        out["tool_cpu_seconds"] = s1 - s0
        return out


# ---------------------------------------------------------------------------
# the run


@dataclass
class LoadOptions:
    """What C{mgcpload run} does; the defaults are the command line's."""

    rate: Optional[float] = 100.0  # calls/s started; None: open loop
    concurrency: int = 100  # open loop: calls kept in progress
    duration: float = 10.0  # measurement window (s)
    warmup: float = 2.0  # calls started in the first W seconds are not counted
    hold: float = 1.0
    answer_delay: float = 0.0
    gap: float = 0.0  # between dialled digits
    hangup: str = "caller"  # caller | callee | alternate
    agent: Optional[tuple[str, int]] = None  # default: [switch] interface:port
    agent_pid: Optional[int] = None  # 0: find it; None: do not measure
    register_timeout: float = 120.0
    step_timeout: float = 5.0  # each of dial tone, ringing, connect, release
    recover_timeout: float = 15.0
    progress_interval: float = 2.0
    tick: float = 0.005  # the scheduler's period
    restart_delay: float = 0.0  # the gateways' MWD (RSIP storm)
    gateway_names: Optional[Sequence[str]] = None  # a subset of the configured gateways
    track_commands: bool = False  # count commands per line and audits in flight (RSIP storm)
    max_calls: Optional[int] = None  # stop starting calls after this many (tests)
    gc_freeze: bool = True  # gc.freeze() the population once registered
    raw_setups: bool = False  # put every measured setup latency in the report (to merge reports)


@dataclass
class Report:
    """The outcome of a run; L{format_report} prints it, C{asdict} makes the JSON."""

    config: dict[str, Any] = field(default_factory=dict)
    mode: str = ""
    target_rate: Optional[float] = None
    concurrency: Optional[int] = None
    gateways: int = 0
    lines: int = 0
    register_seconds: Optional[float] = None
    window_seconds: float = 0.0
    attempted: int = 0
    completed: int = 0
    failed: int = 0
    unfinished: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    suspect_lines: int = 0
    calls_per_second: float = 0.0
    completions_in_window: int = 0
    started_per_second: float = 0.0
    behind_schedule: int = 0
    starved_ticks: int = 0
    setup_ms: dict[str, Optional[float]] = field(default_factory=dict)
    setup_definition: str = (
        "from the last digit pressed on the caller's line to the later of "
        "'callee rings (L/rg)' and 'caller hears ringback (G/rt)', seen on the tool's gateways"
    )
    transactions_per_second: float = 0.0
    transactions: dict[str, int] = field(default_factory=dict)
    retransmissions: int = 0
    timeouts: int = 0
    duplicates_received: int = 0
    cpu: dict[str, Any] = field(default_factory=dict)
    agent_pid: Optional[int] = None
    agent_rss_kb: Optional[int] = None
    saturation: str = ""
    peak_in_progress: int = 0
    audits: dict[str, Any] = field(default_factory=dict)
    setups_raw: Optional[list[float]] = None  # seconds, sorted (--raw)


def percentile(sorted_values: Sequence[float], q: float) -> Optional[float]:
    """Nearest-rank percentile of a sorted sequence (None when empty)."""
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[k]


def _armed(ep: Any) -> bool:
    requested = ep.requested
    return len(requested) == 1 and requested[0].name == _OFF_HOOK_EVENT


def _idle(ep: Any) -> bool:
    """
    On hook, no connection, no tone, armed for off-hook: what a released
    line looks like.  Brief signals (the caller-id burst, C{L/ci}) may
    still be finishing.
    """
    if ep.hook is not _ON or ep.connections:
        return False
    requested = ep.requested
    if len(requested) != 1 or requested[0].name != _OFF_HOOK_EVENT:
        return False
    signals = ep.signals
    if signals:
        for playing in signals.values():
            if playing.plan.symbol.signal is not _BRIEF:
                return False
    return True


def _talking(ep: Any) -> bool:
    conns = ep.connections
    if len(conns) != 1:
        return False
    for conn in conns.values():
        return conn.mode is _SENDRECV
    return False


def _ep_of(line: Any) -> Any:
    """The endpoint behind a gateway Line: the predicates read it directly (Line's views copy)."""
    return line._ep


def _hears_dial_tone(line: Any) -> bool:
    return _DIAL_TONE in line._ep.signals


def _hears_progress(line: Any) -> bool:
    signals = line._ep.signals
    return _RINGBACK in signals or _BUSY in signals or _REORDER in signals


def _rings(line: Any) -> bool:
    return _RINGING in line._ep.signals


def _hears_busy(line: Any) -> bool:
    return _BUSY in line._ep.signals


def _dialled(count: int, line: Any) -> bool:
    return len(line._ep.dial_string) >= count


def _line_talking(line: Any) -> bool:
    return _talking(line._ep)


def _line_idle(line: Any) -> bool:
    return _idle(line._ep)


def _call_then(_: Any, then: Callable[[], None]) -> None:
    then()


class _Party:
    """One line as the tool uses it: the gateway's Line, its endpoint, its number."""

    __slots__ = ("line", "ep", "number", "gateway")

    def __init__(self, line: Any, number: str, gateway: str) -> None:
        self.line = line
        self.ep = _ep_of(line)
        self.number = number
        self.gateway = gateway


class _Call:
    """One basic call in progress; a small state machine driven by line waiters."""

    __slots__ = (
        "runner", "caller", "callee", "measured", "started", "t_digit", "t_ringback",
        "t_ringing", "setup", "step", "deadline", "waits", "pending", "done", "cause",
        "caller_hangs_up", "first", "other",
    )

    def __init__(self, runner: LoadRunner, caller: _Party, callee: _Party, measured: bool,
                 caller_hangs_up: bool) -> None:
        self.runner = runner
        self.caller = caller
        self.callee = callee
        self.measured = measured
        self.started = runner.now()
        self.t_digit: Optional[float] = None
        self.t_ringback: Optional[float] = None
        self.t_ringing: Optional[float] = None
        self.setup: Optional[float] = None
        self.step = "dial-tone"
        self.deadline = 0.0
        self.waits: list[Deferred[Any]] = []
        self.pending = 0
        self.done = False
        self.cause: Optional[str] = None
        self.caller_hangs_up = caller_hangs_up
        self.first: Optional[_Party] = None
        self.other: Optional[_Party] = None

    # -- helpers -----------------------------------------------------------

    def _wait(self, party: _Party, predicate: Callable[[Any], bool], then: Callable[[], None]) -> None:
        """
        Call C{then()} once C{predicate(line)} holds (at once if it does
        now).  The predicates are module-level functions of the Line that
        read its endpoint (see L{_ep_of}): no closure per wait.
        """
        d = party.line.when(predicate)
        if d.called:
            then()
            return
        self.waits.append(d)
        d.addCallback(_call_then, then)

    def _clear_waits(self) -> None:
        waits, self.waits = self.waits, []
        for d in waits:
            if not d.called:
                d.cancel()
                d.addErrback(lambda f: None)

    def _step(self, name: str, timeout: float) -> None:
        self._clear_waits()
        self.step = name
        self.deadline = self.runner.now() + timeout

    def _ntfy(self, d: Deferred[Any]) -> None:
        d.addErrback(self._ntfy_failed)

    def _ntfy_failed(self, failure: Failure) -> None:
        if failure.check(TransactionTimeout):
            self.runner.ntfy_timeouts += 1
            if not self.done and self.step != "recover":
                self.fail("mgcp-timeout")
        return None

    # -- the call ------------------------------------------------------------

    def start(self) -> None:
        self._step("dial-tone", self.runner.options.step_timeout)
        caller = self.caller
        self._ntfy(caller.line.off_hook())
        self._wait(caller, _hears_dial_tone, self._dial)

    def _dial(self) -> None:
        if self.done or self.step != "dial-tone":
            return
        self._step("setup", self.runner.options.step_timeout)
        self.pending = 2
        caller, callee = self.caller, self.callee
        digits = len(callee.number)
        self._wait(caller, partial(_dialled, digits), self._last_digit)
        self._wait(caller, _hears_progress, self._caller_progress)
        self._wait(callee, _rings, self._callee_ringing)
        self._ntfy(caller.line.dial(callee.number, gap=self.runner.options.gap))

    def _last_digit(self) -> None:
        if self.t_digit is None:
            self.t_digit = self.runner.now()

    def _caller_progress(self) -> None:
        if self.done or self.step != "setup":
            return
        signals = self.caller.ep.signals
        if _RINGBACK in signals:
            self.t_ringback = self.runner.now()
            self._setup_step()
        elif _BUSY in signals:
            self.fail("busy")
        else:
            self.fail("reorder")

    def _callee_ringing(self) -> None:
        if self.done or self.step != "setup":
            return
        self.t_ringing = self.runner.now()
        self._setup_step()

    def _setup_step(self) -> None:
        self.pending -= 1
        if self.pending:
            return
        assert self.t_ringback is not None and self.t_ringing is not None
        if self.t_digit is not None:
            self.setup = max(self.t_ringback, self.t_ringing) - self.t_digit
        runner = self.runner
        if runner.options.answer_delay > 0:
            self.step = "answer-delay"
            self.deadline = runner.now() + runner.options.answer_delay + runner.options.step_timeout
            runner.answer_queue.append((runner.now() + runner.options.answer_delay, self))
        else:
            self.answer()

    def answer(self) -> None:
        if self.done:
            return
        self._step("connect", self.runner.options.step_timeout)
        self.pending = 2
        self._ntfy(self.callee.line.off_hook())
        self._wait(self.caller, _line_talking, self._connected)
        self._wait(self.callee, _line_talking, self._connected)

    def _connected(self) -> None:
        if self.done or self.step != "connect":
            return
        self.pending -= 1
        if self.pending:
            return
        runner = self.runner
        self.step = "hold"
        self.deadline = runner.now() + runner.options.hold + runner.options.step_timeout
        runner.hold_queue.append((runner.now() + runner.options.hold, self))

    def hang_up(self) -> None:
        if self.done:
            return
        self._step("release", self.runner.options.step_timeout)
        first, other = (self.caller, self.callee) if self.caller_hangs_up else (self.callee, self.caller)
        self.first, self.other = first, other
        self.pending = 2
        self._ntfy(first.line.on_hook())
        self._wait(other, _hears_busy, self._busy_heard)
        self._wait(first, _line_idle, self._released)

    def _busy_heard(self) -> None:
        if self.done or self.step != "release":
            return
        other = self.other
        assert other is not None
        self._ntfy(other.line.on_hook())
        self._wait(other, _line_idle, self._released)

    def _released(self) -> None:
        self._party_idle("release", None)

    def _party_idle(self, step: str, cause: Optional[str]) -> None:
        """One party is idle again; with both, the call is finished."""
        if self.done or self.step != step:
            return
        self.pending -= 1
        if self.pending:
            return
        self.done = True
        self._clear_waits()
        self.runner.finished(self, cause, True)

    # -- failure ---------------------------------------------------------------

    def fail(self, cause: str) -> None:
        """Record the cause, hang both lines up, wait until they are idle."""
        if self.done or self.step == "recover":
            return
        self.cause = cause
        self._step("recover", self.runner.options.recover_timeout)
        self.pending = 2
        for party in (self.caller, self.callee):
            if party.ep.hook is _OFF:
                party.line.on_hook().addErrback(lambda f: None)
            self._wait(party, _line_idle, self._recovered)

    def _recovered(self) -> None:
        self._party_idle("recover", self.cause)

    def expired(self) -> None:
        """The current step's deadline passed."""
        if self.done:
            return
        if self.step == "recover":
            self.done = True
            self._clear_waits()
            self.runner.finished(self, self.cause, False)
            return
        if self.step == "release" and self.other is not None and self.other.ep.hook is _OFF \
                and _BUSY not in self.other.ep.signals:
            self.fail("no-busy-tone")
            return
        self.fail({
            "dial-tone": "no-dial-tone",
            "setup": "no-ringing",
            "answer-delay": "not-connected",
            "connect": "not-connected",
            "hold": "not-connected",
            "release": "not-released",
        }[self.step])


class LoadRunner:
    """
    The load tool's engine: gateways from the settings, bound on
    C{reactor}; L{run} registers them, places calls and fires with a
    L{Report}.

    @param reactor: provides C{IReactorTime} and C{IReactorUDP} (the real
        reactor, or L{mgcpswitch.testing.MemoryReactor} in tests).
    @param out: where progress lines go (None: nowhere).
    """

    def __init__(self, reactor: Any, settings: Settings, options: LoadOptions,
                 out: Any = None, random: Any = None) -> None:
        import random as _random

        self.reactor = reactor
        self.settings = settings
        self.options = options
        self.out = out
        self.random = random if random is not None else _random.Random()
        switch = settings.switch
        agent = options.agent or (_connect_address(switch.interface), switch.port)
        self.agent = agent
        names = options.gateway_names
        chosen = [g for g in settings.gateways if names is None or g.name in names]
        if not chosen:
            raise ValueError("no gateway to simulate in the configuration")
        self.gateways: list[SimulatedGateway] = []
        self.parties: list[_Party] = []
        per_gateway: list[list[_Party]] = []
        for g in chosen:
            if any(local != f"aaln/{i}" for i, local in enumerate(g.endpoints, 1)):
                raise ValueError(f"[gateway:{g.name}]: the tool simulates lines aaln/1..N: use 'lines = N'")
            if not g.numbers:
                raise ValueError(f"[gateway:{g.name}]: the lines need numbers")
            gw = SimulatedGateway(reactor, GatewayConfig(
                domain=g.name, lines=len(g.endpoints), port=g.port, interface=g.address,
                call_agent=agent, restart_delay=options.restart_delay, rtp=False, history_limit=0,
            ), random=_random.Random(self.random.getrandbits(32)))
            self.gateways.append(gw)
            parties = [_Party(line, number, g.name) for line, number in zip(gw.lines, g.numbers)]
            per_gateway.append(parties)
            self.parties.extend(parties)
        # A shuffled pool: callers and callees spread over the gateways in
        # every combination; lines go back to the end when their call ends.
        pool = list(self.parties)
        self.random.shuffle(pool)
        self.idle: deque[_Party] = deque(pool)
        self.answer_queue: deque[tuple[float, _Call]] = deque()
        self.hold_queue: deque[tuple[float, _Call]] = deque()
        self.in_progress: set[_Call] = set()
        self.suspect: list[_Party] = []
        self.ntfy_timeouts = 0
        # statistics
        self.t_begin = 0.0  # when calls start (after registration)
        self.window_start = 0.0
        self.window_end = 0.0
        self.started = 0
        self.started_measured = 0
        self.outcomes: Counter[str] = Counter()  # measured calls: "completed" or a cause
        self.all_outcomes: Counter[str] = Counter()
        self.setups: list[float] = []
        self.completions_in_window = 0
        self.peak_in_progress = 0
        self.calls_due = 0
        self.starved_ticks = 0
        self.slots = 0
        self._alternate = False
        self._next_watch = 0.0
        self._ticker: Optional[LoopingCall] = None
        self._progress: Optional[LoopingCall] = None
        self._done: Optional[Deferred[Report]] = None
        self._phase = "idle"
        self._cpu: Optional[CpuSampler] = None
        self._cpu_result: dict[str, Any] = {}
        self._tx_start: Counter[str] = Counter()
        self._tx_end: Counter[str] = Counter()
        self._last_progress = (0.0, 0)
        self.register_seconds: Optional[float] = None
        self.arm_times: list[float] = []
        self.rsip_waits: list[float] = []
        self.audit = _AuditTracker() if options.track_commands else None
        if self.audit is not None:
            for gw in self.gateways:
                self.audit.wrap(gw)
        agent_pid = options.agent_pid
        if agent_pid == 0:
            agent_pid = find_agent_pid(agent[0], agent[1])
        self.agent_pid = agent_pid

    def now(self) -> float:
        return self.reactor.seconds()  # type: ignore[no-any-return]

    def _say(self, text: str) -> None:
        if self.out is not None:
            self.out.write(text + "\n")
            self.out.flush()

    # -- registration ----------------------------------------------------------

    def start_gateways(self) -> Deferred[float]:
        """Bind and start every gateway; fires with the seconds until every line was armed."""
        t0 = self.now()
        d: Deferred[float] = Deferred()
        remaining = [len(self.parties)]
        self._say(f"mgcpload: {len(self.gateways)} gateway(s), {len(self.parties)} lines; "
                  f"registering with {self.agent[0]}:{self.agent[1]}")

        arm_times = self.arm_times

        def one(_: Any) -> None:
            arm_times.append(self.now() - t0)
            remaining[0] -= 1
            if remaining[0] == 0 and not d.called:
                d.callback(self.now() - t0)

        waits = []
        for party in self.parties:
            w = party.line.when(lambda line, ep=party.ep: _armed(ep))
            w.addCallback(one)
            waits.append(w)
        for gw in self.gateways:
            self._note_rsip_wait(gw)
            gw.start()

        def timed_out() -> None:
            if not d.called:
                for w in waits:
                    if not w.called:
                        w.cancel()
                        w.addErrback(lambda f: None)
                d.errback(RuntimeError(
                    f"{remaining[0]} of {len(self.parties)} lines not armed after "
                    f"{self.options.register_timeout:g} s: is the switch running with this configuration?"
                ))

        timer = self.reactor.callLater(self.options.register_timeout, timed_out)

        def cancel_timer(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        return d.addBoth(cancel_timer)

    def _note_rsip_wait(self, gw: SimulatedGateway) -> None:
        """Remember when the gateway's first RSIP is due (its restart procedure's C{wait})."""
        restarts = gw.restarts
        begin = restarts.begin
        waits = self.rsip_waits

        def noting(*args: Any, **kwargs: Any) -> Any:
            waits.append(float(kwargs.get("wait", 0.0)))
            restarts.begin = begin  # type: ignore[method-assign]  # only the first
            return begin(*args, **kwargs)

        restarts.begin = noting  # type: ignore[method-assign]

    def register(self) -> Deferred[dict[str, Any]]:
        """
        Only register: start the gateways, wait until every line is armed,
        and fire with the figures of that (the RSIP storm benchmark).
        """
        before = self._gateway_counters()
        t0 = time.monotonic()
        cpu = CpuSampler(self.agent_pid) if sys.platform.startswith("linux") else None
        if cpu is not None:
            cpu.begin()

        def done(seconds: float) -> dict[str, Any]:
            after = self._gateway_counters()
            after.subtract(before)
            times = sorted(self.arm_times)
            out: dict[str, Any] = {
                "gateways": len(self.gateways),
                "lines": len(self.parties),
                "restart_delay": self.options.restart_delay,
                "rsip_due_s": {"first": min(self.rsip_waits, default=None),
                               "last": max(self.rsip_waits, default=None)},
                "all_armed_s": seconds,
                "armed_s": {"p50": percentile(times, 0.5), "p90": percentile(times, 0.9),
                            "p99": percentile(times, 0.99), "max": times[-1] if times else None},
                "after_last_rsip_s": seconds - max(self.rsip_waits, default=0.0),
                "wall_s": time.monotonic() - t0,
                "retransmissions": after.get("retransmissions", 0),
                "timeouts": after.get("timeouts", 0),
                "duplicates_received": after.get("duplicates", 0),
                "commands_received": after.get("commands_received", 0),
                "commands_sent": after.get("commands_sent", 0),
                "cpu": cpu.end() if cpu is not None else {},
                "agent_pid": self.agent_pid,
            }
            if self.audit is not None:
                out["audits"] = self.audit.summary()
            return out

        return self.start_gateways().addCallback(done)

    def stop_gateways(self) -> Deferred[Any]:
        from twisted.internet.defer import gatherResults

        return gatherResults([gw.stop() for gw in self.gateways], consumeErrors=True)

    # -- the run ---------------------------------------------------------------

    def run(self) -> Deferred[Report]:
        """Register, place calls for warm-up + duration, drain, report."""
        d = self.start_gateways()
        d.addCallback(self._registered)
        return d

    def _registered(self, seconds: float) -> Deferred[Report]:
        self.register_seconds = seconds
        self._say(f"mgcpload: every line armed in {seconds:.2f} s")
        if self.options.gc_freeze:
            import gc

            gc.collect()
            gc.freeze()
        return self.place_calls()

    def place_calls(self) -> Deferred[Report]:
        opts = self.options
        now = self.now()
        self.t_begin = now
        self.window_start = now + opts.warmup
        self.window_end = self.window_start + opts.duration
        self._phase = "warmup" if opts.warmup > 0 else "window"
        self._done = Deferred()
        self._ticker = LoopingCall(self._tick)
        self._ticker.clock = self.reactor
        self._ticker.start(opts.tick, now=True)
        if opts.progress_interval > 0 and self.out is not None:
            self._progress = LoopingCall(self._show_progress)
            self._progress.clock = self.reactor
            self._progress.start(opts.progress_interval, now=False)
        if opts.warmup > 0:
            self.reactor.callLater(opts.warmup, self._window_opens)
        else:
            self._window_opens()
        self.reactor.callLater(opts.warmup + opts.duration, self._window_closes)
        return self._done

    def _gateway_counters(self) -> Counter[str]:
        # Through snapshot(), the transaction layer's public view: counters
        # named "name" or "name VERB/CODE", summed here by name.
        total: Counter[str] = Counter()
        for gw in self.gateways:
            for key, value in gw.protocol.transactions.snapshot()["counters"].items():
                total[key.partition(" ")[0]] += value
        return total

    def _window_opens(self) -> None:
        self._phase = "window"
        self._tx_start = self._gateway_counters()
        if self.agent_pid is not None or self.options.agent_pid is not None:
            self._cpu = CpuSampler(self.agent_pid)
            self._cpu.begin()
        elif sys.platform.startswith("linux") and self.out is not None:
            self._cpu = CpuSampler(None)
            self._cpu.begin()
        self._last_progress = (self.now(), self.completions_in_window)

    def _window_closes(self) -> None:
        self._phase = "drain"
        self._tx_end = self._gateway_counters()
        if self._cpu is not None:
            self._cpu_result = self._cpu.end()
        self._say(f"mgcpload: window closed; draining {len(self.in_progress)} call(s) in progress")
        self._maybe_finish()

    def _tick(self) -> None:
        now = self.now()
        answers = self.answer_queue
        while answers and answers[0][0] <= now:
            answers.popleft()[1].answer()
        holds = self.hold_queue
        while holds and holds[0][0] <= now:
            holds.popleft()[1].hang_up()
        if now >= self._next_watch:
            self._next_watch = now + 0.1
            self._watchdog(now)
        if self._phase in ("warmup", "window"):
            opts = self.options
            if opts.rate is not None:
                # One clock, one counter: the calls due since the start that
                # have not had their slot yet.  A backlog (no idle lines)
                # carries over, but never more than a second's worth.
                due = int((now - self.t_begin) * opts.rate) + 1 - self.slots
                cap = max(1, int(opts.rate))
                if due > cap:
                    self.calls_due += due - cap
                    self.slots += due - cap
                    due = cap
            else:
                due = opts.concurrency - len(self.in_progress)
            while due > 0:
                if opts.max_calls is not None and self.started >= opts.max_calls:
                    break
                if not self._start_call(now):
                    self.starved_ticks += 1
                    break
                self.slots += 1
                due -= 1
        self._maybe_finish()

    def _watchdog(self, now: float) -> None:
        for call in [c for c in self.in_progress if c.deadline < now]:
            call.expired()

    def _start_call(self, now: float) -> bool:
        idle = self.idle
        if len(idle) < 2:
            return False
        caller = idle.popleft()
        callee = idle.popleft()
        measured = self._phase == "window" and now < self.window_end
        hangup = self.options.hangup
        if hangup == "alternate":
            self._alternate = not self._alternate
            caller_first = self._alternate
        else:
            caller_first = hangup != "callee"
        call = _Call(self, caller, callee, measured, caller_first)
        self.in_progress.add(call)
        self.started += 1
        if measured:
            self.started_measured += 1
        if len(self.in_progress) > self.peak_in_progress:
            self.peak_in_progress = len(self.in_progress)
        call.start()
        return True

    def finished(self, call: _Call, cause: Optional[str], recovered: bool) -> None:
        self.in_progress.discard(call)
        now = self.now()
        outcome = cause or "completed"
        self.all_outcomes[outcome] += 1
        if call.measured:
            self.outcomes[outcome] += 1
            if call.setup is not None:
                self.setups.append(call.setup)
        if cause is None and self.window_start <= now < self.window_end:
            self.completions_in_window += 1
        if recovered:
            self.idle.append(call.caller)
            self.idle.append(call.callee)
        else:
            self.suspect.extend((call.caller, call.callee))

    def _maybe_finish(self) -> None:
        if self._phase == "drain" and not self.in_progress and self._done is not None:
            self._phase = "done"
            if self._ticker is not None and self._ticker.running:
                self._ticker.stop()
            if self._progress is not None and self._progress.running:
                self._progress.stop()
            d, self._done = self._done, None
            d.callback(self.report())

    def _show_progress(self) -> None:
        now = self.now()
        t, n = self._last_progress
        if self._phase == "warmup":
            rate = 0.0
            label = "warm-up"
        else:
            rate = (self.completions_in_window - n) / max(now - t, 1e-9)
            label = self._phase
        self._last_progress = (now, self.completions_in_window)
        failed = sum(v for k, v in self.all_outcomes.items() if k != "completed")
        setups = sorted(self.setups)
        p99 = percentile(setups, 0.99)
        self._say(
            f"[{now - self.t_begin:7.1f} s {label:7}] {rate:8.1f} calls/s  in progress {len(self.in_progress):6d}"
            f"  completed {self.all_outcomes['completed']:8d}  failed {failed:5d}"
            f"  p99 setup {p99 * 1000 if p99 is not None else float('nan'):7.1f} ms"
        )

    # -- the report --------------------------------------------------------------

    def report(self) -> Report:
        opts = self.options
        window = opts.duration
        setups = sorted(self.setups)
        failures = {k: v for k, v in self.outcomes.items() if k != "completed"}
        failed = sum(failures.values())
        completed = self.outcomes["completed"]
        diff = Counter(self._tx_end)
        diff.subtract(self._tx_start)
        tx = {k: v for k, v in diff.items() if v}
        sent_received = tx.get("commands_received", 0) + tx.get("commands_sent", 0)
        r = Report(
            config={k: v for k, v in asdict(opts).items() if k not in ("gateway_names",)},
            mode="rate" if opts.rate is not None else "open-loop",
            target_rate=opts.rate,
            concurrency=opts.concurrency if opts.rate is None else None,
            gateways=len(self.gateways),
            lines=len(self.parties),
            register_seconds=self.register_seconds,
            window_seconds=window,
            attempted=self.started_measured,
            completed=completed,
            failed=failed,
            unfinished=self.started_measured - completed - failed,
            failures={c: failures.get(c, 0) for c in CAUSES if failures.get(c)},
            suspect_lines=len(self.suspect),
            calls_per_second=self.completions_in_window / window if window else 0.0,
            completions_in_window=self.completions_in_window,
            started_per_second=self.started_measured / window if window else 0.0,
            behind_schedule=int(self.calls_due),
            starved_ticks=self.starved_ticks,
            setup_ms={
                "p50": _ms(percentile(setups, 0.50)),
                "p95": _ms(percentile(setups, 0.95)),
                "p99": _ms(percentile(setups, 0.99)),
                "max": _ms(setups[-1] if setups else None),
                "count": len(setups),  # type: ignore[dict-item]
            },
            transactions_per_second=sent_received / window if window else 0.0,
            transactions=tx,
            retransmissions=tx.get("retransmissions", 0),
            timeouts=tx.get("timeouts", 0),
            duplicates_received=tx.get("duplicates", 0),
            cpu=self._cpu_result,
            agent_pid=self.agent_pid,
            agent_rss_kb=read_rss_kb(self.agent_pid) if self.agent_pid else None,
            peak_in_progress=self.peak_in_progress,
        )
        if opts.raw_setups:
            r.setups_raw = setups
        r.saturation = saturation_verdict(r)
        if self.audit is not None:
            r.audits = self.audit.summary()
        return r


def _ms(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _connect_address(interface: str) -> str:
    return "127.0.0.1" if interface in ("", "0.0.0.0") else ("::1" if interface == "::" else interface)


class _AuditTracker:
    """
    Counts, per line, the AUEPs and RQNTs its gateway received (wrapping
    each gateway's command handler from outside), and the most lines of a
    gateway audited but not yet armed at once: with answers given at once
    and datagrams kept in order on loopback, that is the number of audits
    the switch had in flight to that gateway.
    """

    def __init__(self) -> None:
        self.auep: Counter[str] = Counter()
        self.rqnt: Counter[str] = Counter()
        self.armed_rqnt: Counter[str] = Counter()  # RQNTs asking for L/hd only
        self.open: dict[str, set[str]] = {}
        self.peak: dict[str, int] = {}
        self.first_rsip: dict[str, float] = {}
        self.other: Counter[str] = Counter()

    def wrap(self, gw: SimulatedGateway) -> None:
        original = gw.command_received
        domain = gw.config.domain
        self.open[domain] = set()
        self.peak[domain] = 0
        tracker = self

        def command_received(command: Any, source: Any) -> Any:
            tracker.seen(domain, command)
            return original(command, source)

        gw.command_received = command_received  # type: ignore[method-assign]

    def seen(self, domain: str, command: Any) -> None:
        from .mgcp import ParamCode, Verb

        name = str(command.endpoint).lower()
        verb = command.verb
        open_ = self.open[domain]
        if verb is Verb.AUEP:
            if "*" in name or not command.params.get(ParamCode.REQUESTED_INFO):
                self.other["auep-keepalive"] += 1
                return
            self.auep[name] += 1
            open_.add(name)
            if len(open_) > self.peak[domain]:
                self.peak[domain] = len(open_)
        elif verb is Verb.RQNT:
            self.rqnt[name] += 1
            requested = command.params.get(ParamCode.REQUESTED_EVENTS, ())
            if len(requested) == 1 and requested[0].name == _OFF_HOOK_EVENT:
                self.armed_rqnt[name] += 1
            open_.discard(name)
        else:
            self.other[str(verb)] += 1
            open_.discard(name)

    def summary(self) -> dict[str, Any]:
        return {
            "auep_per_line": dict(Counter(self.auep.values())),
            "rqnt_per_line": dict(Counter(self.rqnt.values())),
            "arming_rqnt_per_line": dict(Counter(self.armed_rqnt.values())),
            "lines_audited": len(self.auep),
            "lines_armed": len(self.armed_rqnt),
            "max_audits_in_flight_per_gateway": max(self.peak.values()) if self.peak else 0,
            "audits_in_flight_by_gateway": dict(self.peak),
            "other_commands": dict(self.other),
        }


def saturation_verdict(r: Report) -> str:
    """Which side ran out first, from the CPU shares (each process can use one core)."""
    cpu = r.cpu or {}
    agent = cpu.get("agent_cpu")
    tool = cpu.get("tool_cpu")
    other = cpu.get("other_load")
    healthy = r.failed == 0 and (r.setup_ms.get("p99") or 0) < 50.0
    if agent is None:
        if tool is None:
            return "CPU not measured"
        return (f"the tool used {tool * 100:.0f} % of one core; the agent's CPU is unknown "
                "(give --agent-pid)")
    text = f"agent CPU {agent * 100:.0f} % of one core while the tool used {tool * 100:.0f} %"
    if other is not None:
        text += f" (other load {other * 100:.0f} % of a core)"
    if agent >= 0.9 and agent >= tool:
        text += ": the agent saturated first"
    elif tool >= 0.9 and tool > agent:
        text += ": the TOOL saturated first (the figures are a floor for the agent)"
    elif other is not None and other >= 0.5 and not healthy:
        text += ": neither process is at a full core; the machine is shared (other load)"
    elif healthy:
        text += ": neither saturated"
    else:
        text += ": neither at a full core, yet calls failed or were slow (latency/scheduling, not CPU)"
    return text


def _fmt(value: Optional[float], digits: int = 1, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def format_report(r: Report) -> str:
    cpu = r.cpu or {}
    lines = [
        "mgcpload report",
        f"  population        {r.gateways} gateway(s), {r.lines} lines; registered and armed in "
        f"{_fmt(r.register_seconds, 2, ' s')}",
        "  load              " + (f"rate {r.target_rate:g} calls/s" if r.mode == "rate"
                                  else f"open loop, {r.concurrency} calls in progress")
        + f", hold {r.config.get('hold'):g} s, answer delay {r.config.get('answer_delay'):g} s, "
        f"warm-up {r.config.get('warmup'):g} s, window {r.window_seconds:g} s",
        f"  calls attempted   {r.attempted}  (started in the window; {r.started_per_second:.1f}/s)",
        f"  calls completed   {r.completed}",
        f"  calls failed      {r.failed}" + (
            "  (" + ", ".join(f"{k} {v}" for k, v in r.failures.items()) + ")" if r.failures else ""),
    ]
    if r.unfinished:
        lines.append(f"  unfinished        {r.unfinished}")
    if r.suspect_lines:
        lines.append(f"  suspect lines     {r.suspect_lines} (did not recover; set aside)")
    if r.behind_schedule or r.starved_ticks:
        lines.append(f"  idle lines ran out {r.starved_ticks} time(s); {r.behind_schedule} call slots dropped "
                     "(a backlog beyond one second): give more lines")
    lines += [
        f"  calls/s           {r.calls_per_second:.1f}  (completions in the window / {r.window_seconds:g} s)",
        f"  setup latency     p50 {_fmt(r.setup_ms.get('p50'), 2)}  p95 {_fmt(r.setup_ms.get('p95'), 2)}  "
        f"p99 {_fmt(r.setup_ms.get('p99'), 2)}  max {_fmt(r.setup_ms.get('max'), 2)} ms",
        f"                    ({r.setup_definition})",
        f"  MGCP transactions {r.transactions_per_second:.0f}/s  (the tool's gateways' commands "
        "received + sent)",
        f"  retransmissions   {r.retransmissions} by the tool's gateways; "
        f"{r.duplicates_received} duplicate commands received (the agent's retransmissions)",
        f"  timeouts          {r.timeouts} transactions of the tool's gateways timed out",
        f"  peak in progress  {r.peak_in_progress}",
        f"  agent CPU         {_fmt(_pct(cpu.get('agent_cpu')), 0, ' %')} of one core"
        + (f"  (pid {r.agent_pid}, RSS {r.agent_rss_kb / 1024:.0f} MB)" if r.agent_pid and r.agent_rss_kb else ""),
        f"  tool CPU          {_fmt(_pct(cpu.get('tool_cpu')), 0, ' %')} of one core",
        f"  other load        {_fmt(_pct(cpu.get('other_load')), 0, ' %')} of one core "
        f"(machine busy {_fmt(_pct(cpu.get('machine_busy')), 0, ' %')} of {cpu.get('ncpu', '?')} cores)",
    ]
    if r.completions_in_window and cpu.get("agent_cpu_seconds") is not None:
        per_call = cpu["agent_cpu_seconds"] / r.completions_in_window * 1e6
        tx = r.transactions.get("commands_received", 0) + r.transactions.get("commands_sent", 0)
        per_tx = cpu["agent_cpu_seconds"] / tx * 1e6 if tx else None
        lines.append(f"  agent CPU/call    {per_call:.0f} us per completed call, "
                     f"{_fmt(per_tx, 1)} us per transaction")
        lines.append(f"  tool CPU/call     {cpu['tool_cpu_seconds'] / r.completions_in_window * 1e6:.0f} us")
    if r.audits:
        lines.append(f"  audits            {json.dumps(r.audits)}")
    lines.append(f"  saturation        {r.saturation}")
    return "\n".join(lines)


def format_registration(r: dict[str, Any]) -> str:
    cpu = r.get("cpu") or {}
    armed = r["armed_s"]
    lines = [
        "mgcpload registration",
        f"  population        {r['gateways']} gateway(s), {r['lines']} lines; RSIPs due between "
        f"{_fmt(r['rsip_due_s']['first'], 3)} and {_fmt(r['rsip_due_s']['last'], 3)} s (restart delay "
        f"{r['restart_delay']:g} s)",
        f"  every line armed  after {r['all_armed_s']:.3f} s ({r['after_last_rsip_s']:.3f} s after the last RSIP); "
        f"lines armed by p50 {_fmt(armed['p50'], 3)} / p90 {_fmt(armed['p90'], 3)} / p99 {_fmt(armed['p99'], 3)} s",
        f"  transactions      {r['commands_received']} commands received, {r['commands_sent']} sent by the gateways",
        f"  retransmissions   {r['retransmissions']} by the gateways; {r['duplicates_received']} duplicates "
        "received (the agent's retransmissions)",
        f"  timeouts          {r['timeouts']}",
        f"  agent CPU         {_fmt(_pct(cpu.get('agent_cpu')), 0, ' %')} of one core; tool "
        f"{_fmt(_pct(cpu.get('tool_cpu')), 0, ' %')}; other load {_fmt(_pct(cpu.get('other_load')), 0, ' %')}",
    ]
    if r.get("audits"):
        a = r["audits"]
        lines += [
            f"  audits            AUEPs per line {a['auep_per_line']}; arming RQNTs (R: L/hd) per line "
            f"{a['arming_rqnt_per_line']}; RQNTs per line {a['rqnt_per_line']}",
            f"  audits in flight  at most {a['max_audits_in_flight_per_gateway']} per gateway "
            f"({a['audits_in_flight_by_gateway']})",
            f"  other commands    {a['other_commands']}",
        ]
    return "\n".join(lines)


def _pct(v: Optional[float]) -> Optional[float]:
    return None if v is None else v * 100.0


# ---------------------------------------------------------------------------
# command line


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    description = "\n\n".join(__doc__.split("\n\n")[1:3]) if __doc__ else None
    p = argparse.ArgumentParser(prog="mgcpload", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("config", help="print a switch INI for K gateways x M lines")
    c.add_argument("--gateways", "-k", type=int, required=True)
    c.add_argument("--lines", "-m", type=int, required=True)
    c.add_argument("--address", default="127.0.0.1", help="the gateways' address (default 127.0.0.1)")
    c.add_argument("--base-port", type=int, default=30000, help="gateway N listens on BASE+N-1")
    c.add_argument("--distinct-addresses", action="store_true",
                   help="each gateway on its own 127.1.x.y address (port BASE)")
    c.add_argument("--agent", type=_host_port, default=("127.0.0.1", 2727), help="HOST:PORT of the switch")
    c.add_argument("--web", default="free", help="web admin port, 'free' (default) or 'default' (8080)")
    c.add_argument("--observers", default="", help="observer plugins (default: none)")
    c.add_argument("--ladder", action="store_true", help="keep each call's ladder (default: no)")
    c.add_argument("--plain-dial-tone", action="store_true",
                   help="embedded_dial_tone = no: an NTFY and an RQNT per call for the dial tone")
    c.add_argument("--keepalive", type=float, default=60.0, help="keepalive_interval (default 60 s)")
    c.add_argument("--audit-concurrency", type=int, default=None)
    c.add_argument("--output", "-o", default=None, help="write to FILE instead of stdout")

    r = sub.add_parser("run", help="register the gateways and place calls")
    r.add_argument("--config", "-c", required=True, help="the INI (from 'mgcpload config')")
    r.add_argument("--agent", type=_host_port, default=None, help="HOST:PORT (default: [switch])")
    mode = r.add_mutually_exclusive_group()
    mode.add_argument("--rate", type=float, default=None, help="calls started per second (default 100)")
    mode.add_argument("--open-loop", action="store_true", help="keep --concurrency calls in progress")
    r.add_argument("--concurrency", type=int, default=100)
    r.add_argument("--duration", type=float, default=10.0, help="measurement window (s)")
    r.add_argument("--warmup", type=float, default=2.0, help="not measured (s)")
    r.add_argument("--hold", type=float, default=1.0, help="talk time (s)")
    r.add_argument("--answer-delay", type=float, default=0.0)
    r.add_argument("--gap", type=float, default=0.0, help="between dialled digits (s)")
    r.add_argument("--hangup", choices=("caller", "callee", "alternate"), default="caller")
    r.add_argument("--agent-pid", type=int, default=0,
                   help="the switch's PID for its CPU (default: found from its UDP port; -1: none)")
    r.add_argument("--step-timeout", type=float, default=5.0)
    r.add_argument("--register-timeout", type=float, default=120.0)
    r.add_argument("--restart-delay", type=float, default=0.0, help="gateways' RSIP spread (MWD)")
    r.add_argument("--gateways", default=None, help="simulate only these gateways (comma separated)")
    r.add_argument("--progress-interval", type=float, default=2.0)
    r.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    r.add_argument("--raw", action="store_true", help="every setup latency in the JSON (to merge runs)")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--profile", default=None,
                   help="write a cProfile of the tool to FILE (.prof) while it runs")
    g = sub.add_parser("register", help="only register the gateways (RSIP storm, memory)")
    g.add_argument("--config", "-c", required=True)
    g.add_argument("--agent", type=_host_port, default=None)
    g.add_argument("--restart-delay", type=float, default=0.0,
                   help="each gateway sends its RSIP after a uniform delay in [0, S]")
    g.add_argument("--agent-pid", type=int, default=0)
    g.add_argument("--register-timeout", type=float, default=300.0)
    g.add_argument("--track", action="store_true",
                   help="count AUEP/RQNT per line and the audits in flight per gateway")
    g.add_argument("--gateways", default=None)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--json", action="store_true")
    g.add_argument("--quiet", "-q", action="store_true")
    return p


def options_from_args(a: argparse.Namespace) -> LoadOptions:
    if a.command == "register":
        return LoadOptions(
            agent=a.agent, agent_pid=None if a.agent_pid < 0 else a.agent_pid,
            register_timeout=a.register_timeout, restart_delay=a.restart_delay,
            gateway_names=[n.strip() for n in a.gateways.split(",")] if a.gateways else None,
            track_commands=a.track, progress_interval=0,
        )
    return LoadOptions(
        rate=None if a.open_loop else (a.rate if a.rate is not None else 100.0),
        concurrency=a.concurrency,
        duration=a.duration,
        warmup=a.warmup,
        hold=a.hold,
        answer_delay=a.answer_delay,
        gap=a.gap,
        hangup=a.hangup,
        agent=a.agent,
        agent_pid=None if a.agent_pid < 0 else a.agent_pid,
        register_timeout=a.register_timeout,
        step_timeout=a.step_timeout,
        progress_interval=0 if a.quiet else a.progress_interval,
        restart_delay=a.restart_delay,
        gateway_names=[n.strip() for n in a.gateways.split(",")] if a.gateways else None,
        raw_setups=a.raw,
    )


def main(argv: Optional[list[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "config":
        import shlex

        text = make_config(
            args.gateways, args.lines, address=args.address, base_port=args.base_port,
            agent=args.agent, distinct_addresses=args.distinct_addresses, web=args.web,
            observers=[o.strip() for o in args.observers.split(",") if o.strip()],
            ladder=args.ladder, embedded_dial_tone=not args.plain_dial_tone,
            keepalive_interval=args.keepalive,
            audit_concurrency=args.audit_concurrency,
            command="mgcpload " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        )
        if args.output:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
        return
    with open(args.config, encoding="utf-8") as f:
        settings = parse_settings(f.read(), args.config)
    options = options_from_args(args)
    sys.exit(_run(settings, options, args))


def _run(settings: Settings, options: LoadOptions, args: argparse.Namespace) -> int:
    import random

    from twisted.internet.defer import maybeDeferred
    from twisted.internet.task import react
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    # Warnings and errors of the gateways on stderr; Twisted would otherwise
    # buffer every event (and what it names) in memory until logging begins.
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(
        textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(LogLevel.warn)]
    )], redirectStandardIO=False)

    result: dict[str, Any] = {}
    profiler = None
    if getattr(args, "profile", None):
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU time, not wall

    def done(report: Report) -> None:
        result["report"] = report

    def failed(failure: Failure) -> None:
        result["error"] = failure.getErrorMessage()
        sys.stderr.write(f"mgcpload: {failure.getErrorMessage()}\n")

    def main(reactor: Any) -> Any:
        # task.react hands us the running reactor: only the script picks it.
        runner = LoadRunner(reactor, settings, options, out=None if args.quiet else sys.stderr,
                            random=random.Random(args.seed))
        if profiler is not None:
            profiler.enable()
        work = runner.register if args.command == "register" else runner.run
        d = maybeDeferred(work).addCallbacks(done, failed)
        return d.addBoth(lambda _: runner.stop_gateways())

    try:
        react(main)
    except SystemExit:
        pass  # react exits when main's Deferred fires; the report follows
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    if "report" not in result:
        return 2
    report = result["report"]
    if args.command == "register":
        if args.json:
            sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
        else:
            sys.stdout.write(format_registration(report) + "\n")
        return 0
    if args.json:
        sys.stdout.write(json.dumps(asdict(report), indent=2, default=str) + "\n")
    else:
        sys.stdout.write(format_report(report) + "\n")
    return 0 if report.failed == 0 and report.unfinished == 0 else 1


if __name__ == "__main__":
    main()
